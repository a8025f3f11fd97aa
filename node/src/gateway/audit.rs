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
        let record: Record = serde_json::from_slice(&line[..line.len() - 1])
            .map_err(|e| broken(format!("not a record: {e}")))?;
        if record.seq != line_no {
            return Err(broken(format!(
                "seq {} where {line_no} was expected",
                record.seq
            )));
        }
        if record.prev != prev {
            return Err(broken(
                "prev does not match the previous record's hash".into(),
            ));
        }
        let expected = record_hash(record.seq, record.time_ms, &record.decision, &record.prev);
        if record.hash != expected {
            return Err(broken("hash does not match the record".into()));
        }
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
}

impl Auditor {
    /// Opens (creating) the log at `path`, repairs a torn last line, and
    /// starts the writer task.
    pub fn start(path: PathBuf) -> Result<(Self, tokio::task::JoinHandle<()>), AuditError> {
        let (seq, prev) = recover(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let (queue, records) = mpsc::channel(AUDIT_QUEUE_MAX);
        let task = tokio::task::spawn_blocking(move || write_loop(file, records, seq, prev));
        Ok((Self { queue, path }, task))
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

fn write_loop(
    mut file: File,
    mut records: mpsc::Receiver<(u64, Decision)>,
    mut seq: u64,
    mut prev: String,
) {
    let mut batch = Vec::new();
    while let Some(first) = records.blocking_recv() {
        batch.clear();
        let mut next = Some(first);
        while let Some((time_ms, decision)) = next {
            seq += 1;
            let hash = record_hash(seq, time_ms, &decision, &prev);
            let record = Record {
                seq,
                time_ms,
                decision,
                prev: std::mem::replace(&mut prev, hash.clone()),
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
        if let Err(e) = file.write_all(&batch).and_then(|()| file.sync_data()) {
            tracing::error!(target: "audit", error = %e, "cannot write the audit log");
        }
    }
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
}
