//! The gateway's nonce journal: every nonce the gateway accepts is written
//! here before its request is served, so a request captured before a
//! restart is still refused as a replay after it.
//!
//! Two files of fixed-size records ([`Remembered::BYTES`] each), written in
//! turn: the writer switches to the other file, emptying it, every
//! [`NonceFile::period`] (twice the replay window). A nonce is needed for
//! at most two windows after it is written (its `created` may lie one
//! window ahead of the clock, and it is kept one window past `created`),
//! so the file being emptied holds only nonces that can no longer pass the
//! skew check. The files stay as small as the traffic of two windows.
//!
//! A record reaches the file with `write(2)` before the request is served,
//! so it survives the process being killed; the files are synced every
//! [`SYNC_INTERVAL`], so a power loss can forget at most that much.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quorate_api::gateway::NonceJournal;
use quorate_api::signature::{REPLAY_ENTRIES_MAX, Remembered, ReplayGuard};

/// The two files, in the data directory.
pub const NONCE_FILES: [&str; 2] = ["nonces.0", "nonces.1"];
/// How often the journal is synced to the disk.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Why the journal could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Reading, compacting or creating a file.
    #[error("nonce journal {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The journal; [`NonceJournal`] for the gateway.
#[derive(Debug)]
pub struct NonceFile {
    dir: PathBuf,
    period: Duration,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    index: usize,
    file: File,
    since: Instant,
}

impl NonceFile {
    /// Opens the journal in `dir` for a replay window of `window_secs`,
    /// and returns the guard holding every nonce still within its window
    /// at `now_secs`. Compacts: what is still needed is rewritten into the
    /// first file (atomically), and the second is emptied.
    pub fn open(
        dir: &Path,
        window_secs: u64,
        now_secs: i64,
    ) -> Result<(Self, ReplayGuard), OpenError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::Io { path, source }
        };
        let mut guard = ReplayGuard::new(window_secs);
        let mut live = Vec::new();
        for name in NONCE_FILES {
            let path = dir.join(name);
            for remembered in read_records(&path).map_err(io(&path))? {
                // Only what the guard took (within its window, once each).
                let before = guard.len();
                if guard.restore(remembered, now_secs).is_ok() && guard.len() > before {
                    live.push(remembered);
                }
            }
        }
        let first = dir.join(NONCE_FILES[0]);
        let compacted = dir.join("nonces.compact");
        let mut bytes = Vec::with_capacity(live.len() * Remembered::BYTES);
        for remembered in &live {
            bytes.extend_from_slice(&remembered.to_bytes());
        }
        write_synced(&compacted, &bytes).map_err(io(&compacted))?;
        std::fs::rename(&compacted, &first).map_err(io(&first))?;
        let second = dir.join(NONCE_FILES[1]);
        write_synced(&second, &[]).map_err(io(&second))?;
        sync_dir(dir).map_err(io(dir))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&first)
            .map_err(io(&first))?;
        let journal = Self {
            dir: dir.to_owned(),
            period: Duration::from_secs(2 * window_secs.max(1)),
            current: Mutex::new(Current {
                index: 0,
                file,
                since: Instant::now(),
            }),
        };
        Ok((journal, guard))
    }

    /// How long the writer stays on one file.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Syncs what was written to the disk (blocking).
    pub fn sync(&self) -> std::io::Result<()> {
        // The sync runs on a duplicate of the descriptor, outside the lock,
        // so requests keep writing meanwhile.
        let file = match self.current.lock() {
            Ok(current) => current.file.try_clone()?,
            Err(_) => return Err(std::io::Error::other("nonce journal lock poisoned")),
        };
        file.sync_data()
    }
}

impl NonceJournal for NonceFile {
    fn keep(&self, nonce: &Remembered) -> std::io::Result<()> {
        let Ok(mut current) = self.current.lock() else {
            return Err(std::io::Error::other("nonce journal lock poisoned"));
        };
        if current.since.elapsed() >= self.period {
            let index = 1 - current.index;
            let path = self.dir.join(NONCE_FILES[index]);
            // Sync the file we leave: from now on it is the only copy of
            // the nonces of the last period.
            current.file.sync_data()?;
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)?;
            *current = Current {
                index,
                file,
                since: Instant::now(),
            };
        }
        current.file.write_all(&nonce.to_bytes())
    }
}

/// The whole records of `path` (none if it is missing); a torn last record
/// (a crash in the middle of a write) is ignored.
fn read_records(path: &Path) -> std::io::Result<Vec<Remembered>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    // At most the guard's capacity is worth reading.
    (&mut file)
        .take((REPLAY_ENTRIES_MAX * Remembered::BYTES) as u64)
        .read_to_end(&mut bytes)?;
    Ok(bytes
        .chunks_exact(Remembered::BYTES)
        .filter_map(|chunk| <&[u8; Remembered::BYTES]>::try_from(chunk).ok())
        .map(Remembered::from_bytes)
        .collect())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_did::Keypair;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn nonces_survive_a_reopen_and_expire_with_their_window() {
        let dir = tempfile::tempdir().unwrap();
        let caller = Keypair::from_seed(&[3; 32]).did();
        let (journal, mut guard) = NonceFile::open(dir.path(), 30, NOW).unwrap();
        for (nonce, created) in [("a", NOW), ("b", NOW - 20), ("c", NOW + 25)] {
            let kept = guard.check(&caller, nonce, created, NOW).unwrap();
            journal.keep(&kept).unwrap();
        }
        drop(journal);
        // Reopened 15 s later: "b" (created 35 s before) has expired.
        let (_, mut guard) = NonceFile::open(dir.path(), 30, NOW + 15).unwrap();
        assert_eq!(guard.len(), 2);
        for nonce in ["a", "c"] {
            assert!(guard.check(&caller, nonce, NOW, NOW + 15).is_err());
        }
        // Compacted into the first file; the second is empty.
        let first = std::fs::metadata(dir.path().join(NONCE_FILES[0])).unwrap();
        assert_eq!(first.len(), 2 * Remembered::BYTES as u64);
        let second = std::fs::metadata(dir.path().join(NONCE_FILES[1])).unwrap();
        assert_eq!(second.len(), 0);
    }

    #[test]
    fn a_torn_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let caller = Keypair::from_seed(&[3; 32]).did();
        let (journal, mut guard) = NonceFile::open(dir.path(), 30, NOW).unwrap();
        journal
            .keep(&guard.check(&caller, "a", NOW, NOW).unwrap())
            .unwrap();
        drop(journal);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(NONCE_FILES[0]))
            .unwrap();
        file.write_all(&[7; 20]).unwrap();
        let (_, guard) = NonceFile::open(dir.path(), 30, NOW).unwrap();
        assert_eq!(guard.len(), 1);
    }
}
