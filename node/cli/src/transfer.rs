//! Moving objects of any size between the node and a file: streamed both
//! ways (never held in memory), with a progress line on a terminal, and
//! downloads to a file resumed where an interrupted one stopped.
//!
//! A download to `FILE` writes `FILE.part` and keeps the object's ETag in
//! `FILE.part.etag`; run again, it asks for the rest (`Range`) and goes on
//! only if the answer carries the same ETag (the object did not change),
//! else it starts again. `FILE` appears, whole and synced, only at the end.

use std::io::{IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use quorate_api::signature::{ExpectedDigest, StreamingDigest, sha256_field};
use quorate_testnet::client::{ApiClient, Streamed};

/// How often the progress line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);
/// Largest ETag file read back.
const ETAG_BYTES_MAX: u64 = 1024;

/// A progress line on standard error, drawn only when it is a terminal.
struct Progress {
    label: String,
    total: Option<u64>,
    started: Instant,
    drawn: Option<Instant>,
    enabled: bool,
    /// Bytes already there when this run started (a resumed download).
    base: u64,
}

impl Progress {
    fn new(label: String, total: Option<u64>, base: u64) -> Self {
        Self {
            label,
            total,
            started: Instant::now(),
            drawn: None,
            enabled: std::io::stderr().is_terminal(),
            base,
        }
    }

    fn update(&mut self, done: u64) {
        if !self.enabled || self.drawn.is_some_and(|at| at.elapsed() < REDRAW) {
            return;
        }
        self.drawn = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (done.saturating_sub(self.base)) as f64 / secs;
        let line = match self.total {
            Some(total) if total > 0 => {
                let left = total.saturating_sub(done) as f64 / rate.max(1.0);
                format!(
                    "{} {} / {} ({:.0}%) {}/s, {} left",
                    self.label,
                    human(done),
                    human(total),
                    done as f64 * 100.0 / total as f64,
                    human(rate as u64),
                    human_secs(left)
                )
            }
            _ => format!("{} {} {}/s", self.label, human(done), human(rate as u64)),
        };
        eprint!("\r{line:<78}");
    }

    fn finish(&mut self) {
        if self.drawn.is_some() {
            eprint!("\r{:<78}\r", "");
        }
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_secs(secs: f64) -> String {
    let secs = secs.round() as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Why talking to the node failed: it is not there, or the transfer broke.
fn io_context(e: std::io::Error, api: &ApiClient, done: u64, what: &str) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound if done == 0 => {
            anyhow::anyhow!(
                "cannot reach the node's API at {} (is `quorate node run` running?): {e}",
                api.address()
            )
        }
        _ if done == 0 => anyhow::anyhow!("the {what} failed: {e}"),
        _ => anyhow::anyhow!("the {what} broke off after {}: {e}", human(done)),
    }
}

/// The object's total size from a response: `Content-Range`'s, or its
/// length plus where it starts.
fn total_of(response: &Streamed, start: u64) -> Option<u64> {
    response
        .header("content-range")
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, total)| total.trim().parse().ok())
        .or_else(|| response.length.map(|l| l + start))
}

fn refused(response: Streamed) -> anyhow::Error {
    match response.into_response() {
        Ok(response) => anyhow::anyhow!("{} ({})", response.problem_detail(), response.status),
        Err(e) => anyhow::anyhow!("the node refused, and its answer broke off: {e}"),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `GET target` (with `headers`) into `out`, resuming an interrupted
/// download there, or to standard output.
pub(crate) fn download(
    api: &ApiClient,
    target: &str,
    headers: &[(&str, &str)],
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let Some(out) = out else {
        let mut response = api
            .get_streamed(target, headers)
            .map_err(|e| io_context(e, api, 0, "download"))?;
        if !(200..300).contains(&response.status) {
            return Err(refused(response));
        }
        let total = total_of(&response, 0);
        let stdout = std::io::stdout();
        let mut sink = stdout.lock();
        copy(
            &mut response,
            &mut sink,
            Progress::new("↓".into(), total, 0),
        )
        .map_err(|(e, done)| io_context(e, api, done, "download"))?;
        return sink.flush().context("cannot write to standard output");
    };
    let (part, etag_file) = (sibling(out, ".part"), sibling(out, ".part.etag"));
    for attempt in 0..2 {
        let resume = match (std::fs::metadata(&part), read_etag(&etag_file)) {
            (Ok(meta), Some(etag)) if attempt == 0 && meta.len() > 0 => Some((meta.len(), etag)),
            _ => None,
        };
        let range = resume.as_ref().map(|(at, _)| format!("bytes={at}-"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(range) = &range {
            all.push(("Range", range));
        }
        let mut response = api
            .get_streamed(target, &all)
            .map_err(|e| io_context(e, api, 0, "download"))?;
        let etag = response.header("etag").map(str::to_owned);
        let range = response.header("content-range").and_then(content_range);
        let start = match (response.status, &resume) {
            // The rest of the same object, from where the part ends.
            (206, Some((at, kept)))
                if etag.as_ref() == Some(kept)
                    && range.is_some_and(|(from, _)| from == Some(*at)) =>
            {
                *at
            }
            // Nothing left: the part may be the whole object (the run
            // before stopped just before the rename). A refusal carries no
            // ETag, so the last byte is asked for to learn whether it is
            // the same object.
            (416, Some((at, kept))) if is_whole(api, target, headers, *at, kept) => {
                std::fs::rename(&part, out).with_context(|| {
                    format!("cannot move {} to {}", part.display(), out.display())
                })?;
                remove(&etag_file)?;
                return Ok(());
            }
            (206 | 416, Some(_)) => {
                // The object changed since (or the rest is gone): the
                // part is worthless.
                eprintln!(
                    "{} changed since the interrupted download: starting again",
                    target
                );
                remove(&part)?;
                remove(&etag_file)?;
                continue;
            }
            (200, _) => 0,
            _ => return Err(refused(response)),
        };
        if start == 0 {
            // A fresh download: the old part goes first, then the ETag is
            // kept, so an interruption from here on resumes on bytes of
            // this object only.
            remove(&part)?;
            match &etag {
                Some(etag) => std::fs::write(&etag_file, etag)
                    .with_context(|| format!("cannot write {}", etag_file.display()))?,
                None => remove(&etag_file)?,
            }
        } else {
            eprintln!("resuming {} at {}", out.display(), human(start));
        }
        let total = total_of(&response, start);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .append(start > 0)
            .open(&part)
            .with_context(|| format!("cannot write {}", part.display()))?;
        let progress = Progress::new("↓".into(), total, start);
        let copied = copy_from(&mut response, &mut file, progress, start)
            .map_err(|(e, done)| io_context(e, api, done, "download"))
            .map_err(|e| {
                e.context(format!(
                    "run the same command again to resume ({} kept)",
                    part.display()
                ))
            })?;
        if let Some(total) = total
            && copied != total
        {
            bail!(
                "the download ended at {} of {}; run the same command again to resume",
                human(copied),
                human(total)
            );
        }
        file.sync_all()
            .with_context(|| format!("cannot sync {}", part.display()))?;
        std::fs::rename(&part, out)
            .with_context(|| format!("cannot move {} to {}", part.display(), out.display()))?;
        remove(&etag_file)?;
        return Ok(());
    }
    bail!("{target} keeps changing; try again later")
}

/// Whether the object at `target` is `size` bytes long under the ETag
/// `kept`: its last byte answered 206 with that ETag and total.
fn is_whole(
    api: &ApiClient,
    target: &str,
    headers: &[(&str, &str)],
    size: u64,
    kept: &str,
) -> bool {
    let Some(last) = size.checked_sub(1) else {
        return false;
    };
    let range = format!("bytes={last}-");
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("Range", &range));
    let Ok(mut probe) = api.get_streamed(target, &all) else {
        return false;
    };
    let whole = probe.status == 206
        && probe.header("etag") == Some(kept)
        && probe
            .header("content-range")
            .and_then(content_range)
            .is_some_and(|(start, total)| start == Some(last) && total == Some(size));
    // The one byte is read and dropped.
    let _ = std::io::copy(&mut (&mut probe).take(16), &mut std::io::sink());
    whole
}

/// A `Content-Range`'s start (`None` for `*`) and total (`None` for `*`):
/// `bytes 10-19/20`, `bytes */20`.
fn content_range(value: &str) -> Option<(Option<u64>, Option<u64>)> {
    let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        total => Some(total.parse().ok()?),
    };
    let start = match span.trim() {
        "*" => None,
        span => Some(span.split_once('-')?.0.parse().ok()?),
    };
    Some((start, total))
}

fn read_etag(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(ETAG_BYTES_MAX).read_to_string(&mut text).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

fn copy(
    from: &mut dyn Read,
    to: &mut dyn Write,
    progress: Progress,
) -> Result<u64, (std::io::Error, u64)> {
    copy_from(from, to, progress, 0)
}

/// Copies `from` to `to`, counting from `start`; on failure, the error
/// and how far it got.
fn copy_from(
    from: &mut dyn Read,
    to: &mut dyn Write,
    mut progress: Progress,
    start: u64,
) -> Result<u64, (std::io::Error, u64)> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut done = start;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                progress.finish();
                return Err((e, done));
            }
        };
        if let Err(e) = to.write_all(&buffer[..n]) {
            progress.finish();
            return Err((e, done));
        }
        done += n as u64;
        progress.update(done);
    }
    progress.finish();
    Ok(done)
}

/// PUTs `file` (or standard input, without one or with `-`) to `target`
/// as it is read: a file with its length, standard input chunked; with
/// `headers` besides the body's `Content-Type`. The answer, and the
/// sha-256 of what was sent (`Content-Digest` form).
pub(crate) fn upload(
    api: &ApiClient,
    target: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    file: Option<&Path>,
) -> anyhow::Result<(quorate_testnet::client::Response, String)> {
    let (body, length): (Box<dyn Read>, Option<u64>) = match file {
        Some(path) if path != Path::new("-") => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let meta = file
                .metadata()
                .with_context(|| format!("cannot read {}", path.display()))?;
            // A pipe or device has no length to declare: sent chunked.
            let length = meta.is_file().then_some(meta.len());
            (Box::new(file), length)
        }
        _ => (Box::new(std::io::stdin().lock()), None),
    };
    let mut body = Hashing {
        inner: body,
        digest: StreamingDigest::new(None),
    };
    let mut progress = Progress::new("↑".into(), length, 0);
    let mut sent = 0u64;
    let mut all_headers = vec![("Content-Type", content_type)];
    all_headers.extend_from_slice(headers);
    let response = api
        .send_streamed("PUT", target, &all_headers, &mut body, length, &mut |n| {
            sent = n;
            progress.update(n);
        })
        .map_err(|e| io_context(e, api, sent, "upload"));
    progress.finish();
    let response = response?;
    if !response.is_success() {
        bail!("{} ({})", response.problem_detail(), response.status);
    }
    let sha256 = body
        .digest
        .finish(&ExpectedDigest::none())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((response, sha256_field(&sha256)))
}

/// A reader that hashes what it reads.
struct Hashing {
    inner: Box<dyn Read>,
    digest: StreamingDigest,
}

impl Read for Hashing {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.digest.update(&buffer[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_read_or_refused() {
        assert_eq!(content_range("bytes 10-19/20"), Some((Some(10), Some(20))));
        assert_eq!(content_range("bytes */20"), Some((None, Some(20))));
        assert_eq!(content_range("bytes 0-9/*"), Some((Some(0), None)));
        for bad in [
            "",
            "bytes",
            "bytes 1-2",
            "items 1-2/3",
            "bytes x-2/3",
            "bytes 1-2/x",
        ] {
            assert_eq!(content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
        assert_eq!(human_secs(42.4), "42s");
        assert_eq!(human_secs(125.0), "2m05s");
        assert_eq!(human_secs(7_300.0), "2h01m");
    }
}
