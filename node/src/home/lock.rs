//! One node per home: an exclusive lock on `HOME/node.lock`, held for the
//! life of the process, which also records the pid for tooling.
//!
//! The operating system drops the lock when the process dies, even by
//! `kill -9`, so a stale lock never blocks a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// File name of the lock in the node home.
pub const LOCK_FILE: &str = "node.lock";

/// Held while the node runs; released on drop or process exit.
#[derive(Debug)]
pub struct HomeLock {
    _file: File,
    path: PathBuf,
}

/// Why the home could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process runs a node on this home.
    #[error("another node (pid {pid}) is running on {}", home.display())]
    Held {
        /// The home.
        home: PathBuf,
        /// The pid recorded by the holder, or "unknown".
        pid: String,
    },
    /// The lock file could not be opened or written.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl HomeLock {
    /// Takes the lock on `home`, or says who holds it.
    pub fn acquire(home: &Path) -> Result<Self, LockError> {
        let path = home.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    home: home.to_owned(),
                    pid: if pid.is_empty() {
                        "unknown".to_owned()
                    } else {
                        pid.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_home_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = HomeLock::acquire(dir.path()).unwrap();
        // The testnet launcher reads the same lock to see who runs.
        assert_eq!(
            quorate_testnet::launch::running_pid(dir.path()),
            Some(std::process::id())
        );
        let err = HomeLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert_eq!(quorate_testnet::launch::running_pid(dir.path()), None);
        HomeLock::acquire(dir.path()).unwrap();
    }
}
