//! Key files: PKCS#8 PEM, owner-only (mode 0600), refused when others can
//! read them.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::Keypair;
use crate::key::Pkcs8Error;

/// An Ed25519 PKCS#8 PEM is about 120 bytes; anything much larger is not a
/// key file and is refused before it is read whole.
pub const KEY_FILE_BYTES_MAX: u64 = 4096;

/// Why a key file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A file already exists at the path; keys are never overwritten here.
    #[error("{} already exists; refusing to overwrite a key", path.display())]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// The file could not be created or written.
    #[error("cannot write key file {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Why a key file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read key file {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Group or others may read or write the file.
    #[error(
        "key file {} has mode {mode:o}; it must be readable by its owner only (chmod 600)",
        path.display()
    )]
    Permissions {
        /// The path.
        path: PathBuf,
        /// The permission bits found.
        mode: u32,
    },
    /// The file is larger than any key file.
    #[error("key file {} is {len} bytes; not a key file", path.display())]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The contents are not a PKCS#8 PEM Ed25519 private key.
    #[error("key file {}: {source}", path.display())]
    Format {
        /// The path.
        path: PathBuf,
        /// What the decoder said.
        source: Pkcs8Error,
    },
}

/// Writes `key` to a new file at `path` with mode 0600. Fails if the file
/// exists: replacing a key is the caller's explicit decision (remove first).
pub fn write_new(path: &Path, key: &Keypair) -> Result<(), WriteError> {
    write_secret_file(path, key.to_pkcs8_pem().as_bytes())
}

/// Creates `path` with mode 0600 and writes `contents`, flushing to disk.
/// Refuses to replace an existing file. Used for keys and admin tokens.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let io_err = |source| WriteError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => WriteError::Exists {
            path: path.to_owned(),
        },
        _ => io_err(source),
    })?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// Reads a secret file written by [`write_secret_file`], checking that only
/// its owner can read it and that it is at most `len_max` bytes.
pub fn read_secret_file(path: &Path, len_max: u64) -> Result<Zeroizing<Vec<u8>>, LoadError> {
    let io_err = |source| LoadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(LoadError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if meta.len() > len_max {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    let mut contents = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    // `take` bounds the read even if the file grows after the metadata call.
    file.take(len_max + 1)
        .read_to_end(&mut contents)
        .map_err(io_err)?;
    Ok(contents)
}

/// Loads a key written by [`write_new`] (or any PKCS#8 PEM Ed25519 key with
/// owner-only permissions).
pub fn load(path: &Path) -> Result<Keypair, LoadError> {
    let contents = read_secret_file(path, KEY_FILE_BYTES_MAX)?;
    parse(&contents).map_err(|source| LoadError::Format {
        path: path.to_owned(),
        source,
    })
}

/// Parses a key file's contents (what [`load`] does after reading the
/// file): UTF-8 text holding a PKCS#8 PEM Ed25519 private key. Public so
/// the fuzz targets can reach the parser without a file.
pub fn parse(contents: &[u8]) -> Result<Keypair, Pkcs8Error> {
    let text = std::str::from_utf8(contents).map_err(|_| Pkcs8Error::not_text())?;
    Keypair::from_pkcs8_pem(text)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_key_is_owner_only_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let key = Keypair::generate().unwrap();
        write_new(&path, &key).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap().did(), key.did());
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let first = Keypair::generate().unwrap();
        write_new(&path, &first).unwrap();
        let err = write_new(&path, &Keypair::generate().unwrap()).unwrap_err();
        assert!(matches!(err, WriteError::Exists { .. }), "{err}");
        assert_eq!(load(&path).unwrap().did(), first.did());
    }

    #[test]
    fn refuses_group_or_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_new(&path, &Keypair::generate().unwrap()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            matches!(err, LoadError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn refuses_truncated_and_non_ed25519_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pem = Keypair::generate().unwrap().to_pkcs8_pem();
        let truncated = dir.path().join("truncated.pem");
        write_secret_file(&truncated, &pem.as_bytes()[..pem.len() / 2]).unwrap();
        assert!(matches!(load(&truncated), Err(LoadError::Format { .. })));

        // A P-256 key in PKCS#8 (generated with `openssl genpkey -algorithm EC
        // -pkeyopt ec_paramgen_curve:P-256`).
        let p256 = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9NMIC++SxFZs4Lu+\n\
iJGdemterUjYOkYsaniaG0kS4jOhRANCAATyGdr6Q9x8SBXj6phdcKvQaieB7lKt\n\
NIRP0N6kI7U+MHrRz2fLu8hRVIivFaj3/ymeYLhmxtSMYCWzJw3agiKi\n\
-----END PRIVATE KEY-----\n";
        let ec = dir.path().join("ec.pem");
        write_secret_file(&ec, p256.as_bytes()).unwrap();
        assert!(matches!(load(&ec), Err(LoadError::Format { .. })));

        let binary = dir.path().join("binary.pem");
        write_secret_file(&binary, &[0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(load(&binary), Err(LoadError::Format { .. })));
    }

    #[test]
    fn refuses_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pem");
        write_secret_file(&path, &vec![b'a'; 10_000]).unwrap();
        assert!(matches!(load(&path), Err(LoadError::TooLarge { .. })));
    }
}
