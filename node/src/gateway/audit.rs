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
    /// A file of the chain is broken.
    #[error("{}: {source}", file.display())]
    Segment {
        /// The file.
        file: PathBuf,
        /// What is wrong in it.
        source: Box<AuditError>,
    },
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records.
    pub records: u64,
    /// The last record's hash (zeros when empty).
    pub head: String,
    /// The first record's seq.
    pub first_seq: u64,
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
    let archived = segments(path)?;
    let mut checked = 0;
    // A current file just begun: the last segment's end is checked too.
    if std::fs::metadata(path).map_or(0, |m| m.len()) < TAIL_CHECK_BYTES
        && let Some(last) = archived.last()
    {
        checked += verify_tail_from(last, None).map_err(|source| AuditError::Segment {
            file: last.clone(),
            source: Box::new(source),
        })?;
    }
    // With segments, the current file continues where they end; without
    // any (none yet, or all archived away), from its own first record.
    let end = match archived.is_empty() {
        true => None,
        false => Some(archived_end(path)?),
    };
    let start = end
        .as_ref()
        .map(|(seq, prev)| (seq.saturating_add(1), prev.as_str()));
    Ok(checked + verify_tail_from(path, start)?)
}

/// [`verify_tail`] of one file whose first record must be `start`'s seq,
/// linked to its hash (the previous segment's end), or, without `start`,
/// whatever the first record says.
fn verify_tail_from(path: &Path, start_at: Option<(u64, &str)>) -> Result<u64, AuditError> {
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
            line: previous.as_ref().map_or(
                match start_at {
                    Some((seq, _)) if start == 0 => seq,
                    _ => 0,
                },
                |r| r.seq.saturating_add(1),
            ),
            reason,
        };
        let record = match (&previous, start_at) {
            (Some(before), _) => {
                check_record(line, before.seq.saturating_add(1), &before.hash).map_err(broken)?
            }
            (None, Some((seq, prev))) if start == 0 => {
                check_record(line, seq, prev).map_err(broken)?
            }
            // The first record read links to one not read: check only
            // its own hash.
            (None, _) => {
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

/// Checks every line's hash and link, from the first, of a log that
/// starts the chain (its first record is 1).
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    verify_file(path, Some((1, ZERO_HASH.to_owned())))
}

/// Checks every line of `path`: from `start` (the seq and `prev` its first
/// record must have), or, without one, from whatever its first record
/// says (a segment whose predecessors were archived away).
fn verify_file(path: &Path, start: Option<(u64, String)>) -> Result<Verified, AuditError> {
    let file = File::open(path)?;
    let mut reader = BufReader::new(file);
    let mut expected = start;
    let mut line_no = 0u64;
    let mut line = Vec::new();
    let (mut first_seq, mut head) = (None, None);
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
        let body = &line[..line.len() - 1];
        let (seq, prev) = match expected.take() {
            Some(expected) => expected,
            None => {
                let record: Record = serde_json::from_slice(body)
                    .map_err(|e| broken(format!("not a record: {e}")))?;
                (record.seq, record.prev)
            }
        };
        let record = check_record(body, seq, &prev).map_err(broken)?;
        first_seq.get_or_insert(record.seq);
        expected = Some((record.seq.saturating_add(1), record.hash.clone()));
        head = Some(record.hash);
    }
    let start_prev = || match &expected {
        Some((_, prev)) => prev.clone(),
        None => ZERO_HASH.to_owned(),
    };
    Ok(Verified {
        records: line_no,
        head: head.unwrap_or_else(start_prev),
        first_seq: first_seq.unwrap_or(expected.as_ref().map_or(1, |(seq, _)| *seq)),
    })
}

/// The directory the archived segments of the log at `path` go to
/// (`audit/` beside `audit.log`).
pub fn segments_dir(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("audit"), |dir| dir.join("audit"))
}

/// The archived segments of the log at `path`, oldest first. A segment is
/// named by its first and last records' seq, zero-padded, so names sort
/// as the chain runs.
pub fn segments(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = segments_dir(path);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.len() == 45 && name.ends_with(".log") && name.as_bytes()[20] == b'-' {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The seq and hash the chain reached in the archived segments (0 and
/// zeros without any): where the current segment continues.
fn archived_end(path: &Path) -> Result<(u64, String), AuditError> {
    for segment in segments(path)?.iter().rev() {
        match last_record(segment, false)? {
            // An empty segment (a rotation that went wrong) holds nothing
            // to continue from.
            (0, _) => continue,
            end => return Ok(end),
        }
    }
    Ok((0, ZERO_HASH.into()))
}

/// What [`verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerified {
    /// Records, in every segment.
    pub records: u64,
    /// The first record's seq (1 unless earlier segments were archived
    /// away).
    pub first_seq: u64,
    /// The last record's hash.
    pub head: String,
    /// Files checked, the current one last.
    pub files: usize,
}

/// Checks the whole chain of the log at `path`: its archived segments in
/// order, then the current file, each continuing where the one before
/// ended. A chain whose first segments were removed verifies from its
/// first remaining record (`first_seq` says where).
pub fn verify_chain(path: &Path) -> Result<ChainVerified, AuditError> {
    let mut files: Vec<PathBuf> = segments(path)?;
    if path.exists() || files.is_empty() {
        files.push(path.to_owned());
    }
    let mut next: Option<(u64, String)> = None;
    let (mut records, mut first_seq) = (0u64, None);
    for file in &files {
        let verified = verify_file(file, next.clone()).map_err(|source| AuditError::Segment {
            file: file.clone(),
            source: Box::new(source),
        })?;
        first_seq.get_or_insert(verified.first_seq);
        records += verified.records;
        next = Some((
            verified.first_seq.saturating_add(verified.records),
            verified.head.clone(),
        ));
    }
    let (_, head) = next.unwrap_or((1, ZERO_HASH.into()));
    Ok(ChainVerified {
        records,
        first_seq: first_seq.unwrap_or(1),
        head,
        files: files.len(),
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
    // The segments are listed first: a rotation between the two reads
    // then shows records in both, and the older copy is dropped.
    let newest_segment = segments(path)?.pop();
    let mut out = matching_tail(path, query)?;
    // Just after a rotation the current file holds little: the newest
    // segment's end fills the rest.
    if out.len() < limit
        && let Some(last) = newest_segment
    {
        let first = out.first().map_or(u64::MAX, |r| r.seq);
        let mut older = matching_tail(&last, query)?;
        older.retain(|r| r.seq < first);
        older.append(&mut out);
        out = older;
    }
    let skip = out.len().saturating_sub(limit);
    out.drain(..skip);
    Ok(out)
}

/// The records in the last [`QUERY_TAIL_BYTES_MAX`] of `path` that
/// `query` selects, oldest first.
fn matching_tail(path: &Path, query: &Query) -> Result<Vec<Record>, AuditError> {
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
    Ok(lines
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
        .collect())
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
            write_loop(full, records, 41, "ab".repeat(32), &writer, None);
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

    async fn write_segmented(path: &Path, from: u64, n: u64, segment_bytes: u64) {
        let (auditor, task) = Auditor::start_with_segments(path.to_owned(), segment_bytes).unwrap();
        for i in from..from + n {
            auditor.record(decision(i)).await;
            // Let the writer drain now and then, as real traffic does: it
            // rotates between batches.
            if i % 20 == 19 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        drop(auditor);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_log_moves_into_segments_and_the_chain_runs_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        // ~250-byte records, 16 KiB segments: several of them.
        write_segmented(&path, 0, 300, 16 * 1024).await;
        let archived = segments(&path).unwrap();
        assert!(archived.len() >= 3, "{archived:?}");
        let chain = verify_chain(&path).unwrap();
        assert_eq!((chain.records, chain.first_seq), (300, 1));
        assert_eq!(chain.files, archived.len() + 1);
        // The current file's end checks against the segments at start.
        assert!(verify_tail(&path).is_ok());
        // A query sees past a rotation: the newest records, in order.
        let newest = query(
            &path,
            &Query {
                limit: Some(100),
                ..Query::default()
            },
        )
        .unwrap();
        assert!(newest.len() >= 50, "{}", newest.len());
        assert_eq!(newest.last().unwrap().seq, 300);
        assert!(newest.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        // Restarted, the chain goes on.
        write_segmented(&path, 300, 50, 16 * 1024).await;
        assert_eq!(verify_chain(&path).unwrap().records, 350);
        // Each segment's name says its first and last records.
        let name = archived[1]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let (first, last) = name.trim_end_matches(".log").split_once('-').unwrap();
        let text = std::fs::read_to_string(&archived[1]).unwrap();
        let seqs: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<Record>(l).unwrap().seq)
            .collect();
        assert_eq!(seqs.first(), Some(&first.parse().unwrap()));
        assert_eq!(seqs.last(), Some(&last.parse().unwrap()));

        // A record changed in a middle segment: the chain check names it.
        std::fs::write(&archived[1], text.replacen("\"bytes\":", "\"bytes\":1", 1)).unwrap();
        let err = verify_chain(&path).unwrap_err().to_string();
        assert!(err.contains(&name), "{err}");
        std::fs::write(&archived[1], &text).unwrap();
        // A segment removed from the middle breaks the links.
        std::fs::rename(&archived[1], dir.path().join("elsewhere.log")).unwrap();
        assert!(verify_chain(&path).is_err());
        std::fs::rename(dir.path().join("elsewhere.log"), &archived[1]).unwrap();
        // The oldest archived away: the rest verifies, from where it starts.
        std::fs::remove_file(&archived[0]).unwrap();
        let chain = verify_chain(&path).unwrap();
        assert!(chain.first_seq > 1 && chain.records < 350, "{chain:?}");
    }

    #[tokio::test]
    async fn a_crash_between_the_rename_and_the_new_file_continues_from_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_segmented(&path, 0, 100, 16 * 1024).await;
        let last = segments(&path).unwrap().pop().unwrap();
        // As if the node stopped right after moving the file.
        std::fs::remove_file(&path).unwrap();
        let chain_end = verify_chain(&path).unwrap();
        write_segmented(&path, 100, 5, 16 * 1024).await;
        let chain = verify_chain(&path).unwrap();
        assert_eq!(chain.records, chain_end.records + 5);
        let (auditor, task) = Auditor::start_with_segments(path.clone(), 16 * 1024).unwrap();
        assert!(
            auditor.broken().is_none(),
            "{:?} after {}",
            auditor.broken(),
            last.display()
        );
        drop(auditor);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_tampered_segment_end_is_found_at_start_while_the_current_file_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_segmented(&path, 0, 100, 16 * 1024).await;
        let last = segments(&path).unwrap().pop().unwrap();
        let text = std::fs::read_to_string(&last).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let end = lines.len() - 1;
        lines[end] = lines[end].replacen("\"read\"", "\"list\"", 1);
        std::fs::write(&last, lines.join("\n") + "\n").unwrap();
        std::fs::write(&path, b"").unwrap();
        let (auditor, task) = Auditor::start_with_segments(path.clone(), 16 * 1024).unwrap();
        let report = auditor.broken().expect("reported");
        assert!(
            report.contains(last.file_name().unwrap().to_str().unwrap()),
            "{report}"
        );
        drop(auditor);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn archived_segments_may_be_read_only_or_moved_away_without_a_false_break() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_segmented(&path, 0, 200, 16 * 1024).await;
        for segment in segments(&path).unwrap() {
            std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        let (auditor, task) = Auditor::start_with_segments(path.clone(), 16 * 1024).unwrap();
        assert!(auditor.broken().is_none(), "{:?}", auditor.broken());
        auditor.record(decision(200)).await;
        drop(auditor);
        task.await.unwrap();
        // Every segment archived elsewhere: the current file verifies from
        // its own first record.
        std::fs::rename(segments_dir(&path), dir.path().join("archive")).unwrap();
        let (auditor, task) = Auditor::start_with_segments(path.clone(), 16 * 1024).unwrap();
        assert!(auditor.broken().is_none(), "{:?}", auditor.broken());
        drop(auditor);
        task.await.unwrap();
        assert!(verify_chain(&path).unwrap().first_seq > 1);
    }
}
