//! The audit log: one JSON line per gateway decision, allow or deny,
//! hash-chained so that changing, removing or reordering a line shows.
//!
//! Record `n` carries `prev` (record `n-1`'s hash, zeros for the first) and
//! `hash` = blake3 (keyed by the tag [`AUDIT_HASH_CONTEXT`]) of the record's
//! JSON without `hash`. A single writer task appends in batches and syncs
//! each batch to disk; requests queue their records on a bounded channel
//! (back-pressure, never an unbounded buffer). `quorate audit verify`
//! checks a log offline.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The blake3 key-derivation context of record hashes.
pub const AUDIT_HASH_CONTEXT: &str = "quorate 2026 audit record v1";
/// Records waiting for the writer before requests wait.
pub const AUDIT_QUEUE_MAX: usize = 16 * 1024;
/// Bytes of records written (and synced) together at most.
const BATCH_BYTES_MAX: usize = 512 * 1024;
/// Longest record the writer writes, newline included. Every field a
/// client can influence is cut to [`FIELD_BYTES_MAX`] (with its length
/// and hash), so a record never comes near it; the writer checks.
pub const RECORD_BYTES_MAX: usize = 4 * 1024;
/// Longest digest kept in a record (a sha-256's is 52 bytes).
const DIGEST_CHARS_MAX: usize = 96;
/// Longest client-supplied text kept in a record field, before JSON
/// escaping (at most 6 bytes per byte).
pub const FIELD_BYTES_MAX: usize = 256;
/// Longest line a reader accepts: more than any writer of this log ever
/// wrote (releases before [`RECORD_BYTES_MAX`] wrote paths whole, bounded
/// by the HTTP server's 64 KiB URI limit).
pub const LINE_BYTES_MAX: usize = 1024 * 1024;
/// How far back from the end a query reads.
const QUERY_TAIL_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// One decision, as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `http` (RFC 9421 signed), `p2p` (libp2p) or `local`.
    pub transport: String,
    /// The caller's DID, when it was authenticated.
    pub caller: Option<String>,
    /// `read`, `list`, `write`, `delete`.
    pub action: String,
    /// The resource asked for.
    pub resource: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// Why it was denied (a stable problem type), or why it failed.
    pub reason: Option<String>,
    /// The grant that allowed it.
    pub grant: Option<String>,
    /// Bytes of data sent (for a write: received).
    pub bytes: u64,
    /// The purpose the caller declared (absent if none: records without
    /// one hash as before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// For a write, the sha-256 of what was written, as `Content-Digest`
    /// writes it (absent otherwise, and so hashed as before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position, from 1.
    pub seq: u64,
    /// When (ms since the Unix epoch).
    pub time_ms: u64,
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
    /// The previous record's hash.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
}

#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    time_ms: u64,
    #[serde(flatten)]
    decision: &'a Decision,
    prev: &'a str,
}

fn record_hash(seq: u64, time_ms: u64, decision: &Decision, prev: &str) -> String {
    let body = serde_json::to_vec(&Unhashed {
        seq,
        time_ms,
        decision,
        prev,
    })
    .unwrap_or_default();
    let mut hasher = blake3::Hasher::new_derive_key(AUDIT_HASH_CONTEXT);
    hasher.update(&body);
    hasher.finalize().to_hex().to_string()
}

mod read;
#[cfg(test)]
mod tests;

use read::archived_end;
pub use read::{
    ChainVerified, Query, TAIL_CHECK_BYTES, Verified, query, segments, segments_dir, verify,
    verify_chain, verify_tail,
};

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why a log does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading the file.
    #[error("cannot read the audit log: {0}")]
    Io(#[from] std::io::Error),
    /// A line is broken or out of chain.
    #[error("line {line}: {reason}")]
    Broken {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file of the chain is broken.
    #[error("{}: {source}", file.display())]
    Segment {
        /// The file.
        file: PathBuf,
        /// What is wrong in it.
        source: Box<AuditError>,
    },
}

/// Sends decisions to the writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Auditor {
    queue: mpsc::Sender<(u64, Decision)>,
    path: PathBuf,
    health: Arc<Health>,
}

/// What the writer and the start-up check found, for the gateway (which
/// serves nobody while records cannot be written) and `/readyz`.
#[derive(Debug, Default)]
struct Health {
    /// Set while the last write failed; cleared once a retry succeeds.
    failing: AtomicBool,
    /// Why it failed.
    failure: Mutex<Option<String>>,
    /// Where the chain's end was found broken at start.
    broken: Mutex<Option<String>>,
    /// Decisions that could not be queued while the log failed.
    lost: AtomicU64,
    /// Writes that failed.
    write_failures: AtomicU64,
    /// Requests refused because writes failed, counted instead of
    /// recorded.
    refused_unrecorded: AtomicU64,
}

/// How long the writer waits before it tries a failed write again.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

impl Auditor {
    /// Opens (creating) the log at `path`, repairs a torn last line, and
    /// starts the writer task.
    ///
    /// It checks the end of the chain first ([`verify_tail`]): a break
    /// (a record edited, removed or reordered) is logged as an error,
    /// counted in `/metrics` and reported by `/readyz` until the log is
    /// archived and the node restarted, and the node goes on appending.
    pub fn start(path: PathBuf) -> Result<(Self, tokio::task::JoinHandle<()>), AuditError> {
        Self::start_with_segments(path, 0)
    }

    /// [`Auditor::start`], moving the current file into [`segments_dir`]
    /// once it holds `segment_bytes` (0: never), the chain going on in a
    /// new file.
    pub fn start_with_segments(
        path: PathBuf,
        segment_bytes: u64,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), AuditError> {
        // An empty or missing current file (a crash just after a
        // rotation) continues from the last archived segment.
        let (seq, prev) = match recover(&path)? {
            (0, _) => archived_end(&path)?,
            end => end,
        };
        // The current file's first seq names its segment; unreadable (the
        // tail check reports it), it is where the segments end, plus one.
        let first = match first_seq(&path) {
            Ok(Some(first)) => first,
            Ok(None) | Err(_) => archived_end(&path)
                .map_or(seq, |(end, _)| end)
                .saturating_add(1),
        };
        let health = Arc::new(Health::default());
        match verify_tail(&path) {
            Ok(checked) => {
                tracing::debug!(target: "audit", checked, "the audit log's last records verify");
            }
            Err(e) => {
                let report = format!(
                    "the audit log {} is broken ({e}): records were changed, removed or reordered; check it with `quorate audit verify`, archive it and restart",
                    path.display()
                );
                tracing::error!(target: "audit", "{report}");
                *lock(&health.broken) = Some(report);
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let (queue, records) = mpsc::channel(AUDIT_QUEUE_MAX);
        let writer = health.clone();
        let rotation = (segment_bytes > 0).then(|| Rotation {
            path: path.clone(),
            segment_bytes,
            first,
        });
        let task = tokio::task::spawn_blocking(move || {
            write_loop(file, records, seq, prev, &writer, rotation)
        });
        Ok((
            Self {
                queue,
                path,
                health,
            },
            task,
        ))
    }

    /// Why records cannot be written now, if they cannot: the gateway then
    /// serves nobody.
    pub fn failure(&self) -> Option<String> {
        if !self.health.failing.load(Ordering::Acquire) {
            return None;
        }
        Some(lock(&self.health.failure).clone().unwrap_or_default())
    }

    /// Where the chain was found broken at start, if it was.
    pub fn broken(&self) -> Option<String> {
        lock(&self.health.broken).clone()
    }

    /// Writes that failed, decisions lost while they did, and requests
    /// refused meanwhile (counted, not recorded), since start.
    pub fn failure_counts(&self) -> (u64, u64, u64) {
        (
            self.health.write_failures.load(Ordering::Relaxed),
            self.health.lost.load(Ordering::Relaxed),
            self.health.refused_unrecorded.load(Ordering::Relaxed),
        )
    }

    /// Records a decision (waits if the writer is behind). Fields longer
    /// than [`FIELD_BYTES_MAX`] are cut, keeping their length and hash.
    pub async fn record(&self, decision: Decision) {
        let now = crate::agreement::driver::now().0;
        let decision = Decision {
            transport: bounded(decision.transport),
            caller: decision.caller.map(bounded),
            action: bounded(decision.action),
            resource: bounded(decision.resource),
            decision: bounded(decision.decision),
            reason: decision.reason.map(bounded),
            grant: decision.grant.map(bounded),
            bytes: decision.bytes,
            purpose: decision.purpose.map(bounded),
            // Written by the gateway (`sha-256=:…:`, 52 bytes), never by a
            // client; cut all the same so a record keeps its bound.
            digest: decision
                .digest
                .map(|d| d.chars().take(DIGEST_CHARS_MAX).collect()),
        };
        // While writes fail the gateway serves nobody, but decisions made
        // just before still arrive: they wait in the queue for the retry,
        // and past its bound are counted rather than left to block
        // requests.
        if self.health.failing.load(Ordering::Acquire) {
            // The refusals the failure itself causes are counted, not
            // queued: they would crowd out the decisions that matter.
            if decision.reason.as_deref()
                == Some(quorate_api::refusal::Code::AuditUnavailable.as_str())
            {
                self.health
                    .refused_unrecorded
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            if self.queue.try_send((now, decision)).is_err() {
                self.health.lost.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if self.queue.send((now, decision)).await.is_err() {
            tracing::error!(target: "audit", "the audit writer has stopped; a decision was not recorded");
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `text`, or if longer than [`FIELD_BYTES_MAX`] its first bytes (at a
/// character boundary) with its length and blake3 hash, so that the record
/// still names it unambiguously.
fn bounded(text: String) -> String {
    if text.len() <= FIELD_BYTES_MAX {
        return text;
    }
    let mut cut = FIELD_BYTES_MAX - 96;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = blake3::hash(text.as_bytes()).to_hex();
    format!(
        "{}…[{} bytes, blake3 {}]",
        &text[..cut],
        text.len(),
        &hash.as_str()[..32]
    )
}

/// The last record's seq and hash; truncates a torn last line (a crash in
/// the middle of a write) so the chain continues from the last whole one.
/// Reads back two records' worth, or further for a log written before
/// records were bounded.
fn recover(path: &Path) -> Result<(u64, String), AuditError> {
    last_record(path, true)
}

/// The last whole record's seq and hash; with `repair`, a torn last line
/// is cut (the current file), else left as it is (an archived segment,
/// perhaps read-only, is never written).
fn last_record(path: &Path, repair: bool) -> Result<(u64, String), AuditError> {
    let mut file = match OpenOptions::new().read(true).write(repair).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, ZERO_HASH.into())),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    let mut back = 2 * RECORD_BYTES_MAX as u64;
    let (start, tail, whole) = loop {
        let start = len.saturating_sub(back);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        (&mut file).take(back).read_to_end(&mut tail)?;
        let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        // The last whole line must start inside what was read: after a
        // newline, or at the file's start.
        if start == 0 || tail[..whole.saturating_sub(1)].contains(&b'\n') {
            break (start, tail, whole);
        }
        if back >= 2 * LINE_BYTES_MAX as u64 {
            return Err(AuditError::Broken {
                line: 0,
                reason: format!("the last record is longer than {LINE_BYTES_MAX} bytes"),
            });
        }
        back *= 4;
    };
    if whole < tail.len() && repair {
        file.set_len(start + whole as u64)?;
        file.sync_all()?;
        tracing::warn!(target: "audit", "removed a torn last line from {}", path.display());
    }
    let last = tail[..whole]
        .split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty());
    match last {
        None => Ok((0, ZERO_HASH.into())),
        Some(line) => {
            let record: Record = serde_json::from_slice(line).map_err(|e| AuditError::Broken {
                line: 0,
                reason: format!("the last record is unreadable: {e}"),
            })?;
            Ok((record.seq, record.hash))
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `batch` at the end of `file` and syncs it. `good` is the file's
/// length before the batch, taken at the first try: each retry first cuts
/// the file back to it, so what a failed try left never stays in the
/// middle of the chain; if the cut fails, nothing is written.
fn append(file: &mut File, batch: &[u8], good: &mut Option<u64>) -> std::io::Result<()> {
    injected_failure()?;
    match *good {
        Some(end) => {
            if file.metadata()?.len() != end {
                file.set_len(end)?;
                file.sync_data()?;
            }
        }
        None => *good = Some(file.metadata()?.len()),
    }
    file.write_all(batch).and_then(|()| file.sync_data())
}

/// When and where the writer moves the current file into a segment.
struct Rotation {
    /// The current file.
    path: PathBuf,
    /// Its size that makes it a segment.
    segment_bytes: u64,
    /// The seq of its first record (the next one's, while empty).
    first: u64,
}

impl Rotation {
    /// Moves the full current file into the segments (named by its first
    /// and last seq) and opens a new one; `last` is its last record. A
    /// crash between the rename and the new file leaves no current file,
    /// and the next start continues from the segment.
    fn rotate(&mut self, last: u64) -> std::io::Result<File> {
        let dir = segments_dir(&self.path);
        std::fs::create_dir_all(&dir)?;
        let segment = dir.join(format!("{:020}-{last:020}.log", self.first));
        std::fs::rename(&self.path, &segment)?;
        let file = match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(file) => file,
            Err(e) => {
                // Put it back, so the chain goes on where it is.
                std::fs::rename(&segment, &self.path)?;
                return Err(e);
            }
        };
        // From here the rotation has happened: a failed directory sync is
        // logged, not undone (the names are right either way).
        for synced in [Some(dir.as_path()), self.path.parent()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = File::open(synced).and_then(|d| d.sync_all()) {
                tracing::warn!(target: "audit", dir = %synced.display(), error = %e, "cannot sync the directory after a rotation");
            }
        }
        self.first = last.saturating_add(1);
        tracing::info!(target: "audit", segment = %segment.display(), "the audit log moved into a segment");
        Ok(file)
    }
}

/// The seq of the first record of the log at `path`, if it has one.
fn first_seq(path: &Path) -> Result<Option<u64>, AuditError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut line = Vec::new();
    BufReader::new(file)
        .take(LINE_BYTES_MAX as u64)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Ok(None);
    }
    let record: Record =
        serde_json::from_slice(&line[..line.len() - 1]).map_err(|e| AuditError::Broken {
            line: 1,
            reason: format!("not a record: {e}"),
        })?;
    Ok(Some(record.seq))
}

fn write_loop(
    mut file: File,
    mut records: mpsc::Receiver<(u64, Decision)>,
    mut seq: u64,
    mut prev: String,
    health: &Health,
    mut rotation: Option<Rotation>,
) {
    let mut batch = Vec::new();
    while let Some(first) = records.blocking_recv() {
        batch.clear();
        // The chain advances only over records that reached the disk: the
        // batch is built from copies, and kept until it is written.
        let (mut next_seq, mut next_prev) = (seq, prev.clone());
        let mut next = Some(first);
        while let Some((time_ms, decision)) = next {
            next_seq = next_seq.saturating_add(1);
            let hash = record_hash(next_seq, time_ms, &decision, &next_prev);
            let record = Record {
                seq: next_seq,
                time_ms,
                decision,
                prev: std::mem::replace(&mut next_prev, hash.clone()),
                hash,
            };
            let start = batch.len();
            if serde_json::to_writer(&mut batch, &record).is_ok() {
                batch.push(b'\n');
            }
            // Every field is bounded, so this holds by construction; the
            // readers' recovery relies on it.
            debug_assert!(batch.len() - start <= RECORD_BYTES_MAX);
            next = if batch.len() < BATCH_BYTES_MAX {
                records.try_recv().ok()
            } else {
                None
            };
        }
        // Until the batch is on disk nothing else is written, and the
        // gateway serves nobody (`Auditor::failure`).
        let mut good = None;
        while let Err(e) = append(&mut file, &batch, &mut good) {
            health.write_failures.fetch_add(1, Ordering::Relaxed);
            if !health.failing.swap(true, Ordering::AcqRel) {
                tracing::error!(target: "audit", error = %e, "cannot write the audit log: the gateway serves nobody until it can");
            }
            *lock(&health.failure) = Some(e.to_string());
            if records.is_closed() {
                // The node is stopping: nothing serves any more, and what
                // waits cannot be written. Counted, and the writer ends,
                // so the node stops (and frees its home).
                let mut lost = batch.iter().filter(|b| **b == b'\n').count() as u64;
                while records.try_recv().is_ok() {
                    lost += 1;
                }
                health.lost.fetch_add(lost, Ordering::Relaxed);
                tracing::error!(target: "audit", lost, "stopping with audit records that could not be written");
                return;
            }
            std::thread::sleep(RETRY_PAUSE);
        }
        if health.failing.swap(false, Ordering::AcqRel) {
            tracing::warn!(target: "audit", "the audit log is written again: the gateway serves");
        }
        (seq, prev) = (next_seq, next_prev);
        if let Some(rotation) = &mut rotation
            && file
                .metadata()
                .is_ok_and(|m| m.len() >= rotation.segment_bytes)
        {
            // A failed rotation loses nothing: the writer goes on in the
            // current file and tries again after the next batch.
            match rotation.rotate(seq) {
                Ok(new) => file = new,
                Err(e) => {
                    tracing::warn!(target: "audit", error = %e, "cannot move the audit log into a segment; it keeps growing");
                }
            }
        }
    }
}

/// The failure the test-only fault `audit-write-fails:PATH` injects while
/// the file PATH exists (as a full disk would), before anything is
/// written.
fn injected_failure() -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if let Some(flag) = crate::agreement::fault::audit_write_fails()
        && flag.exists()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left on device (injected)",
        ));
    }
    Ok(())
}
