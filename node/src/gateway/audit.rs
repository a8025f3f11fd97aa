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
    /// `read`, `list`, `write`.
    pub action: String,
    /// The resource asked for.
    pub resource: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// Why it was denied (a stable problem type), or why it failed.
    pub reason: Option<String>,
    /// The grant that allowed it.
    pub grant: Option<String>,
    /// Bytes of data sent.
    pub bytes: u64,
    /// The purpose the caller declared (absent if none: records without
    /// one hash as before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
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
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records.
    pub records: u64,
    /// The last record's hash (zeros when empty).
    pub head: String,
}

/// `line` parsed, if it is record `seq`, linked to `prev` and its hash is
/// its own; else what is wrong.
fn check_record(line: &[u8], seq: u64, prev: &str) -> Result<Record, String> {
    let record: Record = serde_json::from_slice(line).map_err(|e| format!("not a record: {e}"))?;
    if record.seq != seq {
        return Err(format!("seq {} where {seq} was expected", record.seq));
    }
    if record.prev != prev {
        return Err("prev does not match the previous record's hash".into());
    }
    let expected = record_hash(record.seq, record.time_ms, &record.decision, &record.prev);
    if record.hash != expected {
        return Err("hash does not match the record".into());
    }
    Ok(record)
}

/// How much of the log's end the node checks at start.
pub const TAIL_CHECK_BYTES: u64 = 256 * 1024;

/// Checks the records in the last [`TAIL_CHECK_BYTES`] of the log (every
/// one, if the log is shorter): each record's hash, and the links and
/// sequence between them. A bounded cost at every start, whatever the
/// log's length; `quorate audit verify` checks the whole log. Returns how
/// many records it checked.
pub fn verify_tail(path: &Path) -> Result<u64, AuditError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_CHECK_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(TAIL_CHECK_BYTES).read_to_end(&mut tail)?;
    // From inside the log, the first line read is a part of one: skip it.
    let lines = if start == 0 {
        &tail[..]
    } else {
        match tail.iter().position(|b| *b == b'\n') {
            Some(first) => &tail[first + 1..],
            None => &[][..],
        }
    };
    let mut previous: Option<Record> = None;
    let mut checked = 0u64;
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let broken = |reason: String| AuditError::Broken {
            line: previous
                .as_ref()
                .map_or(if start == 0 { 1 } else { 0 }, |r| r.seq + 1),
            reason,
        };
        let record = match &previous {
            Some(before) => check_record(line, before.seq + 1, &before.hash).map_err(broken)?,
            None if start == 0 => check_record(line, 1, ZERO_HASH).map_err(broken)?,
            // The first record read links to one not read: check only
            // its own hash.
            None => {
                let record: Record = serde_json::from_slice(line)
                    .map_err(|e| broken(format!("not a record: {e}")))?;
                check_record(line, record.seq, &record.prev).map_err(|reason| {
                    AuditError::Broken {
                        line: record.seq,
                        reason,
                    }
                })?
            }
        };
        checked += 1;
        previous = Some(record);
    }
    Ok(checked)
}

/// Checks every line's hash and link, from the first.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let file = File::open(path)?;
    let mut reader = BufReader::new(file);
    let mut prev = ZERO_HASH.to_owned();
    let mut line_no = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let broken = |reason: String| AuditError::Broken {
            line: line_no,
            reason,
        };
        if line.last() != Some(&b'\n') {
            return Err(broken("unterminated or over-long line".into()));
        }
        let record = check_record(&line[..line.len() - 1], line_no, &prev).map_err(broken)?;
        prev = record.hash;
    }
    Ok(Verified {
        records: line_no,
        head: prev,
    })
}

/// Filters for [`query`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Query {
    /// Only this caller's records.
    pub caller: Option<String>,
    /// Only `allow` or `deny`.
    pub decision: Option<String>,
    /// At most this many (newest last); default 100, at most 1000.
    pub limit: Option<usize>,
}

/// The newest records matching `query` (from the last 16 MiB of the log).
pub fn query(path: &Path, query: &Query) -> Result<Vec<Record>, AuditError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(QUERY_TAIL_BYTES_MAX);
    file.seek(SeekFrom::Start(start))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    let mut lines: &[u8] = &text;
    if start > 0 {
        // Skip the partial first line.
        let cut = lines
            .iter()
            .position(|b| *b == b'\n')
            .map_or(lines.len(), |p| p + 1);
        lines = &lines[cut..];
    }
    let mut out: Vec<Record> = lines
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Record>(line).ok())
        .filter(|r| {
            query
                .caller
                .as_ref()
                .is_none_or(|c| r.decision.caller.as_ref() == Some(c))
                && query
                    .decision
                    .as_ref()
                    .is_none_or(|d| &r.decision.decision == d)
        })
        .collect();
    let skip = out.len().saturating_sub(limit);
    out.drain(..skip);
    Ok(out)
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
        let (seq, prev) = recover(&path)?;
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
        let task =
            tokio::task::spawn_blocking(move || write_loop(file, records, seq, prev, &writer));
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

    /// Writes that failed, and decisions lost while they did, since start.
    pub fn failure_counts(&self) -> (u64, u64) {
        (
            self.health.write_failures.load(Ordering::Relaxed),
            self.health.lost.load(Ordering::Relaxed),
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
        };
        // While writes fail the gateway serves nobody, but decisions made
        // just before still arrive: they wait in the queue for the retry,
        // and past its bound are counted rather than left to block
        // requests.
        if self.health.failing.load(Ordering::Acquire) {
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
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
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
    if whole < tail.len() {
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

/// Writes `batch` at the end of `file` and syncs it; on failure cuts what
/// a partial write left, so the file ends at its last whole record.
fn append(file: &mut File, batch: &[u8]) -> std::io::Result<()> {
    injected_failure()?;
    let end = file.metadata()?.len();
    let written = file.write_all(batch).and_then(|()| file.sync_data());
    if written.is_err() {
        // Best effort: if this fails too, the torn line is cut at the
        // next start (`recover`).
        let _ = file.set_len(end).and_then(|()| file.sync_data());
    }
    written
}

fn write_loop(
    mut file: File,
    mut records: mpsc::Receiver<(u64, Decision)>,
    mut seq: u64,
    mut prev: String,
    health: &Health,
) {
    let mut batch = Vec::new();
    while let Some(first) = records.blocking_recv() {
        batch.clear();
        // The chain advances only over records that reached the disk: the
        // batch is built from copies, and kept until it is written.
        let (mut next_seq, mut next_prev) = (seq, prev.clone());
        let mut next = Some(first);
        while let Some((time_ms, decision)) = next {
            next_seq += 1;
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
        while let Err(e) = append(&mut file, &batch) {
            health.write_failures.fetch_add(1, Ordering::Relaxed);
            if !health.failing.swap(true, Ordering::AcqRel) {
                tracing::error!(target: "audit", error = %e, "cannot write the audit log: the gateway serves nobody until it can");
            }
            *lock(&health.failure) = Some(e.to_string());
            if records.is_closed() && records.is_empty() {
                // The node is stopping: nothing will serve meanwhile.
                return;
            }
            std::thread::sleep(RETRY_PAUSE);
        }
        if health.failing.swap(false, Ordering::AcqRel) {
            tracing::warn!(target: "audit", "the audit log is written again: the gateway serves");
        }
        (seq, prev) = (next_seq, next_prev);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(i: u64) -> Decision {
        Decision {
            purpose: None,
            transport: "http".into(),
            caller: Some("did:key:z6Mk".into()),
            action: "read".into(),
            resource: format!("a/{i}"),
            decision: if i.is_multiple_of(2) { "allow" } else { "deny" }.into(),
            reason: (i % 2 == 1).then(|| "no-grant".into()),
            grant: None,
            bytes: i,
        }
    }

    async fn write(path: &Path, n: u64) {
        let (auditor, task) = Auditor::start(path.to_owned()).unwrap();
        for i in 0..n {
            auditor.record(decision(i)).await;
        }
        drop(auditor);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn records_chain_across_restarts_and_any_edit_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write(&path, 5).await;
        write(&path, 5).await;
        let verified = verify(&path).unwrap();
        assert_eq!(verified.records, 10);

        let denies = query(
            &path,
            &Query {
                decision: Some("deny".into()),
                limit: Some(3),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(denies.len(), 3);
        assert!(denies.iter().all(|r| r.decision.decision == "deny"));
        assert_eq!(denies[2].seq, 9, "record 10 is an allow");

        let text = std::fs::read_to_string(&path).unwrap();
        let edits = [
            text.replacen("\"bytes\":4", "\"bytes\":5", 1),
            text.replacen("\"allow\"", "\"deny\"", 1),
            // Drop the third line.
            text.lines()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, l)| format!("{l}\n"))
                .collect(),
        ];
        for edited in edits {
            assert_ne!(edited, text);
            std::fs::write(&path, &edited).unwrap();
            assert!(matches!(verify(&path), Err(AuditError::Broken { .. })));
        }
    }

    #[tokio::test]
    async fn any_client_field_is_bounded_and_a_log_ending_in_the_largest_record_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (auditor, task) = Auditor::start(path.clone()).unwrap();
        let huge = "é\"\u{1}".repeat(30_000);
        let worst = Decision {
            purpose: Some(huge.clone()),
            transport: huge.clone(),
            caller: Some(huge.clone()),
            action: huge.clone(),
            resource: huge.clone(),
            decision: huge.clone(),
            reason: Some(huge.clone()),
            grant: Some(huge.clone()),
            bytes: u64::MAX,
        };
        auditor.record(worst).await;
        drop(auditor);
        task.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= RECORD_BYTES_MAX, "{} bytes", text.len());
        let record: Record = serde_json::from_str(text.trim_end()).unwrap();
        assert!(record.decision.resource.contains("bytes, blake3 "));
        assert_eq!(verify(&path).unwrap().records, 1);
        // The node starts again on it and the chain goes on.
        write(&path, 2).await;
        assert_eq!(verify(&path).unwrap().records, 3);
    }

    #[tokio::test]
    async fn a_log_whose_last_record_is_a_legacy_long_line_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write(&path, 1).await;
        // A record as releases before the bound wrote it: a 60 KB path.
        let (seq, prev) = recover(&path).unwrap();
        let decision = Decision {
            resource: "a".repeat(60_000),
            ..decision(1)
        };
        let hash = record_hash(seq + 1, 7, &decision, &prev);
        let record = Record {
            seq: seq + 1,
            time_ms: 7,
            decision,
            prev,
            hash,
        };
        let mut line = serde_json::to_vec(&record).unwrap();
        line.push(b'\n');
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&line)
            .unwrap();
        assert_eq!(verify(&path).unwrap().records, 2);
        write(&path, 1).await;
        assert_eq!(verify(&path).unwrap().records, 3);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write(&path, 3).await;
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"seq\":4,\"time").unwrap();
        drop(file);
        assert!(verify(&path).is_err());
        write(&path, 2).await;
        assert_eq!(verify(&path).unwrap().records, 5);
    }

    #[tokio::test]
    async fn the_tail_is_checked_at_start_and_a_break_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write(&path, 6).await;
        assert_eq!(verify_tail(&path).unwrap(), 6);
        let (auditor, task) = Auditor::start(path.clone()).unwrap();
        assert!(auditor.broken().is_none());
        drop(auditor);
        task.await.unwrap();
        // An edited record near the end: reported, and the log goes on.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"bytes\":4", "\"bytes\":40", 1)).unwrap();
        assert!(matches!(
            verify_tail(&path),
            Err(AuditError::Broken { line: 5, .. })
        ));
        let (auditor, task) = Auditor::start(path.clone()).unwrap();
        let report = auditor.broken().expect("the break is reported");
        assert!(report.contains("line 5"), "{report}");
        auditor.record(decision(7)).await;
        drop(auditor);
        task.await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 7);
    }

    #[tokio::test]
    async fn the_tail_check_reads_a_bounded_end_of_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        // Well over TAIL_CHECK_BYTES of records (each ~250 bytes).
        write(&path, 2_000).await;
        assert!(std::fs::metadata(&path).unwrap().len() > TAIL_CHECK_BYTES);
        let checked = verify_tail(&path).unwrap();
        assert!(checked > 100 && checked < 2_000, "{checked}");
        // An edit at the very start is beyond it (`verify` finds it).
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"bytes\":0", "\"bytes\":9", 1)).unwrap();
        assert!(verify_tail(&path).is_ok());
        assert!(matches!(
            verify(&path),
            Err(AuditError::Broken { line: 1, .. })
        ));
        // A reordering near the end is not.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(1_990, 1_991);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert!(verify_tail(&path).is_err());
    }

    /// A full disk, for real: `/dev/full` fails every write with ENOSPC.
    #[test]
    fn a_write_that_fails_does_not_advance_the_chain_and_is_reported() {
        if !Path::new("/dev/full").exists() {
            return;
        }
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let (queue, records) = mpsc::channel(4);
        let health = Arc::new(Health::default());
        let writer = health.clone();
        let task = std::thread::spawn(move || {
            write_loop(full, records, 41, "ab".repeat(32), &writer);
        });
        queue.blocking_send((1, decision(1))).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !health.failing.load(Ordering::Acquire) {
            assert!(std::time::Instant::now() < deadline, "no failure reported");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let auditor = Auditor {
            queue: queue.clone(),
            path: PathBuf::from("/dev/full"),
            health: health.clone(),
        };
        let failure = auditor.failure().expect("reported");
        assert!(failure.to_lowercase().contains("space"), "{failure}");
        assert!(auditor.failure_counts().0 >= 1);
        // Nothing more is written meanwhile; the writer stops with the node.
        drop((queue, auditor));
        task.join().unwrap();
    }
}
