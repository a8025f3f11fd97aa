//! The node home: one directory holding an organization's key, config,
//! admin token and data.
//!
//! ```text
//! HOME/
//!   key.pem        Ed25519 PKCS#8 PEM, mode 0600 (the member key)
//!   key.next.pem   the key a pending rotation moves to (`did rotate`)
//!   key.retired-*.pem  keys rotated away from, kept (never overwritten)
//!   admin.token    the bootstrap admin's bearer token for the local API, mode 0600
//!   tokens.json    named API tokens with their roles (hashes only), mode 0600
//!   config.toml    annotated configuration
//!   tls/           the gateway listener's certificate, key (0600) and authority
//!   data/          ledger store and objects
//! ```

pub mod config;
pub mod durable;
pub mod duration;
pub mod endorsement;
pub mod jwt_revocations;
pub mod lock;
pub mod tls;
pub mod tokens;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use quorate_did::{Did, Keypair, keyfile};
use zeroize::Zeroizing;

use config::{Config, TemplateValues};

/// File name of the member key.
pub const KEY_FILE: &str = "key.pem";
/// File name of the key a pending rotation moves to.
pub const NEXT_KEY_FILE: &str = "key.next.pem";
/// File name of the admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File name of the config.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the ledger store in the data directory.
pub const LEDGER_FILE: &str = "ledger.redb";
/// Bytes of randomness in an admin token (hex-encoded in the file).
pub const ADMIN_TOKEN_BYTES: usize = 32;
/// Longest organization name.
pub const NAME_LEN_MAX: usize = 64;

/// A node home directory.
#[derive(Debug, Clone)]
pub struct NodeHome {
    root: PathBuf,
}

/// What `init` should write.
#[derive(Debug, Clone)]
pub struct InitOptions<'a> {
    /// The organization's short name.
    pub name: &'a str,
    /// Port of the local API on 127.0.0.1.
    pub api_port: u16,
    /// TCP port of the p2p listener on 127.0.0.1.
    pub p2p_port: u16,
    /// Port of the gateway's TLS listener on 127.0.0.1.
    pub gateway_port: u16,
    /// Names the gateway's certificate carries besides the loopback ones.
    pub gateway_hosts: &'a [String],
    /// Re-initialize an existing home: rewrite config and admin token. The
    /// key is never replaced.
    pub force: bool,
}

/// What `init` did.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The member DID.
    pub did: Did,
    /// Whether an existing key was kept (only with `force`).
    pub kept_existing_key: bool,
    /// Whether an existing gateway certificate was kept (only with
    /// `force`): `gateway_hosts` did not reach it.
    pub kept_certificate: bool,
}

/// Why a home could not be initialized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The endorsement policy file cannot be written.
    #[error(transparent)]
    Policy(endorsement::PolicyFileError),
    /// The gateway's certificate cannot be made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The name is empty, too long, or has characters other than `[a-z0-9-]`.
    #[error("invalid name {name:?}: use 1 to {NAME_LEN_MAX} lowercase letters, digits or '-'")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The home already holds a node and `force` was not given.
    #[error("{} is already a Quorate node home (use --force to rewrite its config and admin token; the key is always kept)", path.display())]
    Exists {
        /// The home.
        path: PathBuf,
    },
    /// The existing key could not be loaded (with `force`).
    #[error(transparent)]
    ExistingKey(#[from] keyfile::LoadError),
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] keyfile::WriteError),
    /// The OS random source failed.
    #[error("no randomness from the operating system: {0}")]
    Random(getrandom::Error),
    /// A directory or file could not be created or replaced.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Why a home could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No node home at the path.
    #[error("{} is not a Quorate node home (no {KEY_FILE}); create one with `quorate node init --home {}`", path.display(), path.display())]
    Missing {
        /// The home.
        path: PathBuf,
    },
    /// The key file is unreadable, unsafe or malformed.
    #[error(transparent)]
    Key(#[from] keyfile::LoadError),
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] config::LoadError),
}

/// Why a key rotation step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotateError {
    /// The home or one of its keys could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A key file is unreadable, unsafe or malformed.
    #[error(transparent)]
    Key(#[from] keyfile::LoadError),
    /// The new key could not be written.
    #[error(transparent)]
    Write(#[from] keyfile::WriteError),
    /// No randomness for a new key.
    #[error("no randomness for a new key: {0}")]
    Random(getrandom::Error),
    /// Moving the key files failed.
    #[error("cannot move {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl NodeHome {
    /// The home at `root` (nothing is read yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The home directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the member key.
    pub fn key_path(&self) -> PathBuf {
        self.root.join(KEY_FILE)
    }

    /// Path of the admin token.
    pub fn admin_token_path(&self) -> PathBuf {
        self.root.join(ADMIN_TOKEN_FILE)
    }

    /// Path of the config.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// The data directory the config names (relative to the home unless
    /// absolute).
    pub fn data_dir(&self, config: &Config) -> PathBuf {
        if config.node.data_dir.is_absolute() {
            config.node.data_dir.clone()
        } else {
            self.root.join(&config.node.data_dir)
        }
    }

    /// The ledger store inside the data directory.
    pub fn ledger_path(&self, config: &Config) -> PathBuf {
        self.data_dir(config).join(LEDGER_FILE)
    }

    /// Creates the home: directory (0700), key, config, admin token, data dir.
    pub fn init(&self, options: &InitOptions<'_>) -> Result<InitReport, InitError> {
        validate_name(options.name)?;
        tls::check_names(options.gateway_hosts)?;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| InitError::Io { path, source }
        };
        let key_path = self.key_path();
        let existing = key_path.exists() || self.config_path().exists();
        if existing && !options.force {
            return Err(InitError::Exists {
                path: self.root.clone(),
            });
        }
        create_private_dir(&self.root).map_err(io_err(&self.root))?;

        let (key, kept_existing_key) = if key_path.exists() {
            (keyfile::load(&key_path)?, true)
        } else {
            let key = Keypair::generate().map_err(InitError::Random)?;
            keyfile::write_new(&key_path, &key)?;
            (key, false)
        };

        let config = config::render(&TemplateValues {
            name: options.name,
            api_port: options.api_port,
            p2p_port: options.p2p_port,
            gateway_port: options.gateway_port,
        });
        replace_file(&self.config_path(), config.as_bytes(), |path, contents| {
            write_plain(path, contents)
        })
        .map_err(io_err(&self.config_path()))?;

        let token = new_admin_token().map_err(InitError::Random)?;
        let token_path = self.admin_token_path();
        match fs::remove_file(&token_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&token_path)(e)),
        }
        keyfile::write_secret_file(&token_path, token.as_bytes())?;

        // An operator's policy is kept, --force or not: only a home without
        // one gets the careful defaults.
        let policy_path = self.endorsement_policy_path();
        if !policy_path.exists() {
            endorsement::write(
                &policy_path,
                &quorate_api::local::endorsement::EndorsementPolicy::careful(),
            )
            .map_err(InitError::Policy)?;
        }

        // Like the policy, a certificate already here (perhaps from the
        // organization's PKI) is kept; only a home without one gets its own.
        let kept_certificate = self.root.join(tls::GATEWAY_CERT_FILE).exists();
        if !kept_certificate {
            tls::install_self_issued(&self.root, options.name, options.gateway_hosts)?;
        }

        let data = self.root.join("data");
        create_private_dir(&data).map_err(io_err(&data))?;
        Ok(InitReport {
            did: key.did(),
            kept_existing_key,
            kept_certificate,
        })
    }

    /// Loads the member key, checking its permissions.
    pub fn load_key(&self) -> Result<Keypair, OpenError> {
        let path = self.key_path();
        if !path.exists() {
            return Err(OpenError::Missing {
                path: self.root.clone(),
            });
        }
        Ok(keyfile::load(&path)?)
    }

    /// Path of the key a pending rotation moves to.
    pub fn next_key_path(&self) -> PathBuf {
        self.root.join(NEXT_KEY_FILE)
    }

    /// The key to rotate to: the pending one if a rotation was started
    /// before (so a retry after an expired proposal names the same key),
    /// else a new one written to `key.next.pem` (0600).
    pub fn next_key(&self) -> Result<Keypair, RotateError> {
        let path = self.next_key_path();
        if path.exists() {
            return Ok(keyfile::load(&path)?);
        }
        let key = Keypair::generate().map_err(RotateError::Random)?;
        keyfile::write_new(&path, &key)?;
        Ok(key)
    }

    /// Loads the member key, first finishing a rotation the ledger has
    /// committed: when `is_member` accepts `key.next.pem`'s DID and not
    /// `key.pem`'s, the old key is kept as `key.retired-<ms>.pem` and the
    /// next one becomes `key.pem`. Each step is a link or an atomic rename,
    /// so a crash in between leaves a home this finishes on the next start.
    pub fn load_current_key(
        &self,
        is_member: impl Fn(&Did) -> bool,
    ) -> Result<Keypair, RotateError> {
        let key = self.load_key()?;
        let next_path = self.next_key_path();
        if !next_path.exists() {
            return Ok(key);
        }
        let next = keyfile::load(&next_path)?;
        if is_member(&key.did()) || !is_member(&next.did()) {
            return Ok(key);
        }
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let retired = self.root.join(format!("key.retired-{ms}.pem"));
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RotateError::Io { path, source }
        };
        fs::hard_link(self.key_path(), &retired).map_err(io_err(&retired))?;
        fs::rename(&next_path, self.key_path()).map_err(io_err(&next_path))?;
        fs::File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(io_err(&self.root))?;
        Ok(next)
    }

    /// The endorsement policy file.
    pub fn endorsement_policy_path(&self) -> PathBuf {
        self.root.join(endorsement::FILE)
    }

    /// Loads the config.
    pub fn load_config(&self) -> Result<Config, OpenError> {
        Ok(Config::load(&self.config_path())?)
    }
}

/// Checks an organization name: 1..=64 of `[a-z0-9-]`.
pub fn validate_name(name: &str) -> Result<(), InitError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InitError::InvalidName {
            name: name.to_owned(),
        })
    }
}

fn new_admin_token() -> Result<Zeroizing<String>, getrandom::Error> {
    let mut bytes = Zeroizing::new([0u8; ADMIN_TOKEN_BYTES]);
    getrandom::fill(bytes.as_mut())?;
    Ok(Zeroizing::new(hex::encode(bytes.as_ref())))
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

fn write_plain(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = fs::File::create(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Writes `contents` to a temporary sibling and renames it over `path`, so a
/// crash leaves either the old file or the new one, never half of one.
fn replace_file(
    path: &Path,
    contents: &[u8],
    write: impl Fn(&Path, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    write(&tmp, contents)?;
    fs::rename(&tmp, path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn options(force: bool) -> InitOptions<'static> {
        InitOptions {
            name: "org-a",
            api_port: 7700,
            p2p_port: 7701,
            gateway_port: 7702,
            gateway_hosts: &[],
            force,
        }
    }

    #[test]
    fn init_writes_a_private_home_that_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::new(dir.path().join("home"));
        let report = home.init(&options(false)).unwrap();
        assert!(!report.kept_existing_key);
        assert_eq!(home.load_key().unwrap().did(), report.did);
        assert_eq!(home.load_config().unwrap().node.name, "org-a");
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(home.key_path()), 0o600);
        assert_eq!(mode(home.admin_token_path()), 0o600);
        assert_eq!(mode(home.root().to_owned()), 0o700);
        let token = fs::read_to_string(home.admin_token_path()).unwrap();
        assert_eq!(token.len(), ADMIN_TOKEN_BYTES * 2);
    }

    #[test]
    fn init_refuses_an_existing_home_and_force_keeps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::new(dir.path());
        let first = home.init(&options(false)).unwrap();
        let token_before = fs::read_to_string(home.admin_token_path()).unwrap();
        assert!(matches!(
            home.init(&options(false)),
            Err(InitError::Exists { .. })
        ));
        let again = home.init(&options(true)).unwrap();
        assert!(again.kept_existing_key);
        assert_eq!(again.did, first.did);
        let token_after = fs::read_to_string(home.admin_token_path()).unwrap();
        assert_ne!(
            token_before, token_after,
            "--force issues a new admin token"
        );
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", "Org", "org a", "org/../x", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("org-b2").unwrap();
    }

    #[test]
    fn opening_a_missing_home_says_how_to_create_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = NodeHome::new(dir.path())
            .load_key()
            .unwrap_err()
            .to_string();
        assert!(err.contains("quorate node init"), "{err}");
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;

    fn home_with_key() -> (tempfile::TempDir, NodeHome, Did) {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = NodeHome::new(dir.path());
        let key = Keypair::generate().expect("randomness");
        keyfile::write_new(&home.key_path(), &key).expect("write key");
        (dir, home, key.did())
    }

    #[test]
    fn the_next_key_is_made_once_and_kept_until_the_ledger_names_it() {
        let (_dir, home, old) = home_with_key();
        let next = home.next_key().expect("next key").did();
        assert_eq!(home.next_key().expect("again").did(), next, "reused");
        assert_ne!(next, old);
        // The ledger still names the old key: nothing moves.
        let key = home.load_current_key(|did| *did == old).expect("load");
        assert_eq!(key.did(), old);
        assert!(home.next_key_path().exists());
    }

    #[test]
    fn a_committed_rotation_promotes_the_next_key_and_retires_the_old_one() {
        let (_dir, home, old) = home_with_key();
        let next = home.next_key().expect("next key").did();
        let key = home.load_current_key(|did| *did == next).expect("load");
        assert_eq!(key.did(), next);
        assert_eq!(home.load_key().expect("key.pem").did(), next);
        assert!(!home.next_key_path().exists());
        let retired: Vec<_> = fs::read_dir(home.root())
            .expect("read home")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("key.retired-"))
            .collect();
        assert_eq!(retired.len(), 1);
        assert_eq!(
            keyfile::load(&retired[0].path()).expect("retired").did(),
            old
        );
        // Loading again changes nothing.
        let again = home.load_current_key(|did| *did == next).expect("reload");
        assert_eq!(again.did(), next);
    }

    #[test]
    fn a_next_key_the_ledger_does_not_name_is_never_promoted() {
        let (_dir, home, old) = home_with_key();
        home.next_key().expect("next key");
        // Neither key is a member (say the member was removed): keep key.pem.
        let key = home.load_current_key(|_| false).expect("load");
        assert_eq!(key.did(), old);
        // Both named (cannot happen on one ledger): still the current key.
        let key = home.load_current_key(|_| true).expect("load");
        assert_eq!(key.did(), old);
        assert!(home.next_key_path().exists());
    }
}
