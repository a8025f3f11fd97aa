//! Reading the log: verifying records and the chain (at start, its end;
//! offline, all of it, across segments), listing the segments, and the
//! newest records for the API.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    AuditError, LINE_BYTES_MAX, QUERY_TAIL_BYTES_MAX, Record, ZERO_HASH, last_record, record_hash,
};

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
pub(super) fn archived_end(path: &Path) -> Result<(u64, String), AuditError> {
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
