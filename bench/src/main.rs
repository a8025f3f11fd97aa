//! `quorate-bench`: Quorate measured beside its peers on the same machine,
//! in the same run, written to `bench/RESULTS.md`.
//!
//! - G-series: the gateway beside nginx (static file and `proxy_pass`),
//!   requests per second, latency and server CPU per request, as ratios.
//! - L-series: agreement at n = 4, 7, 10 on loopback with fsync on, beside
//!   the raw `fdatasync` of the same disk; revocation time; memory; disk.
//! - R-series: a fresh node catching up on the ledger the flood built.
//!
//! It builds and runs the release `quorate` binary; nothing here is timed
//! inside a test.

mod agreement;
mod gateway;
mod load;
mod scale;
mod sys;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Quorate's benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "quorate-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Which,
}

#[derive(Debug, Subcommand)]
enum Which {
    /// Every series; writes bench/RESULTS.md.
    All {
        /// Shorter runs (n = 4 only, fewer samples): a smoke test.
        #[arg(long)]
        quick: bool,
    },
    /// The S-series: ledgers of many grants, built through the library;
    /// replaces that section of bench/RESULTS.md.
    Scale {
        /// Sizes, in grants.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000, 1_000_000])]
        grants: Vec<usize>,
    },
    /// (For profiling) appends empty blocks to a ledger of many grants.
    #[command(hide = true)]
    Heartbeats {
        /// The ledger file (built if missing).
        path: PathBuf,
        /// Grants to build it with.
        #[arg(long, default_value_t = 100_000)]
        grants: usize,
        /// Empty blocks to append.
        #[arg(long, default_value_t = 200)]
        blocks: usize,
    },
    /// Commit latency idle and under a data flood, at each size in
    /// `nodes`; replaces that section of bench/RESULTS.md.
    Latency {
        /// Members of each testnet.
        #[arg(long, value_delimiter = ',', default_values_t = [4usize, 7])]
        nodes: Vec<usize>,
        /// Proposals measured, each way.
        #[arg(long, default_value_t = 40)]
        samples: usize,
    },
    /// (Internal) opens a ledger and prints the time and memory it took.
    #[command(hide = true)]
    OpenLedger {
        /// The ledger file.
        path: PathBuf,
    },
}

/// Where the S-series section starts in RESULTS.md: `all` keeps it.
const SCALE_MARKER: &str = "## Ledger at scale (S-series)";

/// RESULTS.md's S-series section, if it has one.
fn scale_section(results: &str) -> Option<&str> {
    results.find(SCALE_MARKER).map(|at| {
        let rest = &results[at..];
        let end = rest[SCALE_MARKER.len()..]
            .find("\n## ")
            .map_or(rest.len(), |e| e + SCALE_MARKER.len() + 1);
        &rest[..end]
    })
}

fn run_scale(grants: &[usize]) -> anyhow::Result<()> {
    let machine = sys::machine();
    let scratch = tempfile::tempdir_in(workspace().join("target"))?;
    let mut scales = Vec::new();
    for &n in grants {
        eprintln!("scale: {n} grants");
        let s = scale::run(scratch.path(), n)?;
        eprintln!("  {s:?}");
        scales.push(s);
    }
    let sizes: Vec<String> = grants.iter().map(ToString::to_string).collect();
    let command = format!(
        "cargo run --release -p quorate-bench -- scale --grants {}",
        sizes.join(",")
    );
    let section = scale::render(&scales, &command, &utc_date(), &machine);
    let path = workspace().join("bench/RESULTS.md");
    let results = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = match scale_section(&results) {
        Some(old) => results.replacen(old, &section, 1),
        None => format!("{}\n\n{section}", results.trim_end()),
    };
    std::fs::write(&path, updated).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote the S-series to {}", path.display());
    Ok(())
}

/// Where the flood section starts in RESULTS.md: `all` keeps it.
const FLOOD_MARKER: &str = "## Commit latency under a data flood (F-series)";

/// The section of `results` that starts with `marker`, up to the next.
fn section<'a>(results: &'a str, marker: &str) -> Option<&'a str> {
    results.find(marker).map(|at| {
        let rest = &results[at..];
        let end = rest[marker.len()..]
            .find("\n## ")
            .map_or(rest.len(), |e| e + marker.len() + 1);
        &rest[..end]
    })
}

fn run_latency(sizes: &[usize], samples: usize) -> anyhow::Result<()> {
    let machine = sys::machine();
    let quorate = build_quorate()?;
    let scratch = tempfile::tempdir()?;
    let mut rows = String::new();
    for &n in sizes {
        eprintln!("latency at n = {n}");
        let (idle, flooded, fetches) =
            agreement::latency(&scratch.path().join(format!("n{n}")), n, &quorate, samples)?;
        let _ = writeln!(
            rows,
            "| {n} | {idle:.1} | {flooded:.1} | {:.2}× | {fetches:.0} |",
            flooded / idle
        );
    }
    let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    let written = format!(
        "{FLOOD_MARKER}\n\nGenerated by `cargo run --release -p quorate-bench -- latency --nodes {} --samples {samples}` on {}. Machine: {machine}. Release build, real processes on 127.0.0.1. Proposal → committed on every node (polling each node's `/v1/ledger/entries/{{id}}` every 1 ms), the last member proposing one grant at a time: first idle, then while members 2 and 3 each run 8 clients fetching a 1 KiB object of member 1 through their own node's API (each fetch a libp2p data request to member 1). Both in the same run, on the same testnet.\n\n| n | commit p50 idle (ms) | commit p50 under the flood (ms) | ratio | fetches/s |\n|---|---|---|---|---|\n{rows}",
        sizes.join(","),
        utc_date()
    );
    let path = workspace().join("bench/RESULTS.md");
    let results = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = match section(&results, FLOOD_MARKER) {
        Some(old) => results.replacen(old, &written, 1),
        None => format!("{}\n\n{written}", results.trim_end()),
    };
    std::fs::write(&path, updated).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote the F-series to {}", path.display());
    Ok(())
}

fn utc_date() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the release `quorate` and returns its path.
fn build_quorate() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "quorate-cli",
            "--bin",
            "quorate",
        ])
        .current_dir(workspace())
        .status()
        .context("cannot run cargo")?;
    anyhow::ensure!(status.success(), "building quorate failed");
    Ok(workspace().join("target/release/quorate"))
}

fn main() -> anyhow::Result<()> {
    let quick = match Cli::parse().command {
        Which::All { quick } => quick,
        Which::Scale { grants } => return run_scale(&grants),
        Which::OpenLedger { path } => return scale::open_ledger(&path),
        Which::Heartbeats {
            path,
            grants,
            blocks,
        } => return scale::heartbeats(&path, grants, blocks),
        Which::Latency { nodes, samples } => return run_latency(&nodes, samples),
    };
    let started = Instant::now();
    let quorate = build_quorate()?;
    let date = utc_date();
    let machine = sys::machine();
    eprintln!("{machine}");

    let scratch = tempfile::tempdir()?;
    let sizes: &[usize] = if quick { &[4] } else { &[4, 7, 10] };
    let mut agreements = Vec::new();
    let mut sync = None;
    for &n in sizes {
        eprintln!("agreement at n = {n}");
        let (flood, max) = match (quick, n) {
            (true, _) => (Duration::from_secs(5), 20_000),
            (false, 4) => (Duration::from_secs(240), 100_000),
            (false, _) => (Duration::from_secs(10), 100_000),
        };
        let samples = if quick { 20 } else { 100 };
        let (result, mut testnet) = agreement::run(
            &scratch.path().join(format!("n{n}")),
            n,
            &quorate,
            samples,
            flood,
            max,
        )?;
        eprintln!("  {result:?}");
        if n == 4 {
            eprintln!("sync: a fresh node catches up");
            let caught = agreement::sync(&mut testnet, &quorate)?;
            eprintln!("  {caught:?}");
            sync = Some(caught);
        }
        for node in testnet.nodes() {
            let _ = testnet.stop(node);
        }
        agreements.push(result);
    }

    eprintln!("gateway");
    let spec = load::LoadSpec {
        connections: 16,
        warmup: Duration::ZERO,
        duration: if quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        },
    };
    let gateway = gateway::run(&quorate, spec, if quick { 1 } else { 3 });
    let report = render(
        &date,
        &machine,
        quick,
        &agreements,
        sync.as_ref(),
        &gateway,
        started.elapsed(),
    );
    let path = workspace().join("bench/RESULTS.md");
    // The S-series is run on its own (`scale`): keep its last section.
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let mut report = match scale_section(&previous) {
        Some(section) => format!("{}\n\n{section}", report.trim_end()),
        None => report,
    };
    if let Some(flood) = section(&previous, FLOOD_MARKER) {
        report = format!("{}\n\n{flood}", report.trim_end());
    }
    std::fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {} in {:.0?}", path.display(), started.elapsed());
    gateway.map(|_| ())
}

fn render(
    date: &str,
    machine: &str,
    quick: bool,
    agreements: &[agreement::Agreement],
    sync: Option<&agreement::Sync>,
    gateway: &anyhow::Result<gateway::Gateway>,
    took: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(
        out,
        "Generated by `cargo run --release -p quorate-bench -- all{}` on {date}, in {:.0} s.\n",
        if quick { " --quick" } else { "" },
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "Machine: {machine}. Release build; every node is a real `quorate node run` process on 127.0.0.1 with its ledger fsynced on commit.\n"
    );
    let _ = writeln!(out, "## Agreement (L-series)\n");
    let _ = writeln!(
        out,
        "Proposal → committed on every node, measured by polling each node's `/v1/ledger/entries/{{id}}` every 1 ms; the same again while members 2 and 3 each run 8 clients fetching a 1 KiB object of member 1 through their own node's API (each fetch a libp2p data request to member 1) and member 4 proposes; throughput under a flood of grant proposals from up to 4 members' APIs at once. The raw fdatasync of a 4 KiB write on the same disk, in the same run, is the reference.\n"
    );
    let _ = writeln!(
        out,
        "| n | fdatasync (ms) | commit p50 (ms) | p50 / fdatasync | commit p99 (ms) | commit p50 under a data flood (ms; ratio to idle; fetches/s) | revocation enforced everywhere (ms, p50) | committed entries/s | flood entries (API refusals) | idle RSS / node (MiB) | RSS under load, node 1, at 25/50/75/100% (MiB) | ledger bytes / entry |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for a in agreements {
        let rss: Vec<String> = a.load_rss_mib.iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.1} | {:.0}× | {:.1} | {:.1}; {:.2}×; {:.0} | {:.1} | {:.0} | {} ({}) | {:.1} | {} | {:.0} |",
            a.n,
            a.fdatasync_ms,
            a.latency_p50_ms,
            a.latency_p50_ms / a.fdatasync_ms.max(1e-6),
            a.latency_p99_ms,
            a.data_flood_latency_p50_ms,
            a.data_flood_latency_p50_ms / a.latency_p50_ms.max(1e-6),
            a.data_flood_fetches_per_sec,
            a.revocation_ms,
            a.entries_per_sec,
            a.flood_entries,
            a.flood_refused,
            a.idle_rss_mib,
            rss.join(" / "),
            a.disk_bytes_per_entry
        );
    }
    if let (Some(first), Some(last)) = (agreements.first(), agreements.last())
        && first.n != last.n
    {
        let _ = writeln!(
            out,
            "\nThroughput from n = {} to n = {}: {:+.0}%.",
            first.n,
            last.n,
            (last.entries_per_sec / first.entries_per_sec.max(1e-9) - 1.0) * 100.0
        );
    }
    let _ = writeln!(out, "\n## Sync (R-series)\n");
    match sync {
        Some(s) => {
            let _ = writeln!(
                out,
                "A new node (empty home, genesis only) joins the n = 4 testnet after the flood and catches up over request-response, verifying every block and certificate before applying it.\n"
            );
            let _ = writeln!(
                out,
                "| grants on the ledger | blocks | seconds to the tip | entries/s verified and persisted | peak RSS of the syncing node (MiB) |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|");
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.0} | {:.0} |",
                s.entries,
                s.blocks,
                s.secs,
                s.entries as f64 / s.secs.max(1e-9),
                s.peak_mib
            );
        }
        None => {
            let _ = writeln!(out, "Not run.");
        }
    }
    let _ = writeln!(out, "\n## Gateway (G-series)\n");
    match gateway {
        Ok(gateway::Gateway { rows, rss_mib }) => {
            let _ = writeln!(
                out,
                "A closed-loop Rust client (16 keep-alive connections) on CPU 1; the server under test (nginx's one worker, or the serving Quorate nodes) on CPU 0, idle members and the upstream on CPU 1. Each figure is the median of the measured runs after a warm-up; server CPU is read from `/proc/PID/stat` (user + system, all threads). The object is the same 1 KiB file. Ratios compare with the row named: nginx static for the local API and libp2p, nginx static over TLS with the gateway's own certificate (G9) for the gateway's TLS listener, nginx `proxy_pass` (plain) for upstreams. Over TLS the handshake is paid once per keep-alive connection.\n"
            );
            let _ = writeln!(
                out,
                "| configuration | req/s | ratio to peer | p50 (ms) | p99 (ms) | server CPU-µs / req | CPU ratio to peer | 2xx share | refusals carrying data |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
            for row in rows {
                let (ratio, cpu_ratio) = match row.peer.and_then(|p| rows.get(p)) {
                    Some(peer) => (
                        format!("{:.2}× {}", row.rps / peer.rps.max(1e-9), &peer.name[..2]),
                        format!("{:.1}×", row.cpu_us / peer.cpu_us.max(1e-9)),
                    ),
                    None => ("peer".into(), "peer".into()),
                };
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {} | {:.1}% | {} |",
                    row.name,
                    row.rps,
                    ratio,
                    row.p50_ms,
                    row.p99_ms,
                    row.cpu_us,
                    cpu_ratio,
                    row.ok_share * 100.0,
                    row.leaked
                );
            }
            let _ = writeln!(
                out,
                "\nResident memory of the serving node (A) before and after all gateway runs: {:.0} / {:.0} MiB.",
                rss_mib.0, rss_mib.1
            );
        }
        Err(e) => {
            let _ = writeln!(out, "Not run: {e:#}");
        }
    }
    let _ = writeln!(out, "\n## Grant check (criterion)\n");
    let _ = writeln!(
        out,
        "Run separately: `cargo bench -p quorate-contracts --bench authorize` (authorize at 100 / 10,000 / 1,000,000 grants) and `cargo bench -p quorate-ledger --features test-support --bench append` (durable appends beside a raw fdatasync); criterion writes its reports under `target/criterion/`."
    );
    out
}
