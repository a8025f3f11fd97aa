//! Small files the node rewrites whole (the catalog, the access
//! requests): written to a fresh 0600 sibling, synced, renamed over the
//! old one, and the rename made durable, so a crash at any point leaves
//! the old contents or the new, never a mix, and a change is on disk
//! before anyone is told it was made.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

/// Replaces `path` with `contents`, durably (see the module).
pub fn replace(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // A sibling left by a crash is removed, so the one written is new and
    // gets its mode.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(&tmp)?;
    out.write_all(contents)?;
    out.sync_all()?;
    drop(out);
    fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// The contents of `path`, or `None` if there is no such file; an error
/// if it holds more than `max` bytes.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(Some(bytes))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_contents_privately_and_leaves_no_sibling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thing.json");
        assert_eq!(read_bounded(&path, 10).unwrap(), None);
        replace(&path, b"one").unwrap();
        // A sibling from a crash mid-write is replaced, not appended to.
        fs::write(dir.path().join("thing.json.tmp"), b"half").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(
            read_bounded(&path, 10).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert!(!dir.path().join("thing.json.tmp").exists());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(read_bounded(&path, 2).is_err());
    }
}
