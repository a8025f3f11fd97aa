//! The L-series (agreement), R-series (sync) and resource figures, on a
//! local testnet of real processes with fsync on, beside the raw
//! `fdatasync` cost of the same disk measured in the same run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use quorate_testnet::NodeSpec;
use quorate_testnet::client::ApiClient;
use quorate_testnet::launch::{Approval, Testnet, running_pid};

use crate::sys;

/// Figures for one consortium size.
#[derive(Debug, Clone, Default)]
pub(crate) struct Agreement {
    /// Members.
    pub n: usize,
    /// Raw fdatasync of a 4 KiB write, median (ms), same disk, same run.
    pub fdatasync_ms: f64,
    /// Proposal → committed on every node (ms).
    pub latency_p50_ms: f64,
    /// p99 of the same.
    pub latency_p99_ms: f64,
    /// The same p50 while two members flood the first with data fetches
    /// over libp2p (ms).
    pub data_flood_latency_p50_ms: f64,
    /// Fetches served per second during that flood.
    pub data_flood_fetches_per_sec: f64,
    /// Revocation proposed → committed on every node (ms, median).
    pub revocation_ms: f64,
    /// Committed entries per second under a flood of proposals.
    pub entries_per_sec: f64,
    /// Entries committed in the flood.
    pub flood_entries: u64,
    /// Proposals the API refused during the flood (mempool full).
    pub flood_refused: u64,
    /// Idle resident memory per node (MiB, mean).
    pub idle_rss_mib: f64,
    /// Resident memory of the first node at 25/50/75/100% of the flood (MiB).
    pub load_rss_mib: Vec<f64>,
    /// On-disk ledger bytes per committed entry (first node).
    pub disk_bytes_per_entry: f64,
}

/// A fresh node catching up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sync {
    /// Entries on the ledger it caught up on.
    pub entries: u64,
    /// Blocks.
    pub blocks: u64,
    /// Seconds to reach the tip.
    pub secs: f64,
    /// Peak resident memory of the syncing node (MiB).
    pub peak_mib: f64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn client(node: &NodeSpec) -> ApiClient {
    Testnet::client(node)
}

fn propose_grant(api: &ApiClient, grantee: &str, resource: &str) -> anyhow::Result<Option<String>> {
    let body = serde_json::json!({ "grant": {
        "grantee": grantee, "resources": [resource], "actions": ["read"], "not_after_ms": now_ms() + 86_400_000,
    }});
    let r = api.post_json("/v1/proposals", &body)?;
    if r.status == 202 {
        Ok(r.json()?["id"].as_str().map(str::to_owned))
    } else if r.status == 422 || r.status == 429 || r.status == 503 {
        Ok(None)
    } else {
        bail!("proposal refused: {} {}", r.status, r.text())
    }
}

/// Waits until `id` is committed on every node; returns when.
fn committed_everywhere(nodes: &[NodeSpec], id: &str, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    let path = format!("/v1/ledger/entries/{id}");
    let mut pending: Vec<&NodeSpec> = nodes.iter().collect();
    while !pending.is_empty() {
        pending.retain(|n| !client(n).get(&path).is_ok_and(|r| r.status == 200));
        if Instant::now() > deadline {
            bail!("{id} not committed on {} node(s)", pending.len());
        }
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(Instant::now())
}

fn status(node: &NodeSpec) -> Option<serde_json::Value> {
    client(node)
        .get("/v1/status")
        .ok()
        .and_then(|r| r.json().ok())
}

fn rss_mib(node: &NodeSpec) -> f64 {
    running_pid(&node.home).map_or(0.0, |p| sys::status_kib(p, "VmRSS") as f64 / 1024.0)
}

/// Starts an `n`-node testnet in `dir` and waits until it commits.
pub(crate) fn start(dir: &Path, n: usize, quorate: &Path) -> anyhow::Result<Testnet> {
    let testnet = Testnet::create(dir, n, Approval::Auto, quorate)?;
    let mut children = Vec::new();
    for node in testnet.nodes() {
        children.push((node.name.clone(), testnet.start(node, quorate)?));
    }
    testnet.wait_committing(Duration::from_secs(90), &mut children, |_, _| {})?;
    Ok(testnet)
}

/// L-series at `n` members: latency, revocation, flood throughput, memory,
/// disk. Leaves the testnet running (for the sync run) and returns it.
pub(crate) fn run(
    dir: &Path,
    n: usize,
    quorate: &Path,
    samples: usize,
    flood: Duration,
    flood_entries_max: u64,
) -> anyhow::Result<(Agreement, Testnet)> {
    let testnet = start(dir, n, quorate)?;
    let nodes = testnet.nodes().to_vec();
    let mut result = Agreement {
        n,
        fdatasync_ms: sys::fdatasync_secs(dir, 200)? * 1e3,
        ..Agreement::default()
    };
    std::thread::sleep(Duration::from_secs(2));
    result.idle_rss_mib = nodes.iter().map(rss_mib).sum::<f64>() / n as f64;

    // Latency: one proposal at a time, from org-a, until on every node.
    let a = client(&nodes[0]);
    let mut latencies = Vec::new();
    for i in 0..samples {
        let start = Instant::now();
        let id = propose_grant(&a, &nodes[1].name, &format!("latency/{i}"))?
            .context("proposal refused")?;
        let done = committed_everywhere(&nodes, &id, Duration::from_secs(30))?;
        latencies.push(done - start);
    }
    result.latency_p50_ms = sys::percentile(&mut latencies, 50.0).as_secs_f64() * 1e3;
    result.latency_p99_ms = sys::percentile(&mut latencies, 99.0).as_secs_f64() * 1e3;
    (
        result.data_flood_latency_p50_ms,
        result.data_flood_fetches_per_sec,
    ) = data_flood_latency(&nodes, samples)?;

    // Revocation: from the grantor's proposal to committed everywhere.
    let mut revocations = Vec::new();
    for i in 0..5 {
        let id = propose_grant(&a, &nodes[1].name, &format!("revoked/{i}"))?
            .context("proposal refused")?;
        committed_everywhere(&nodes, &id, Duration::from_secs(30))?;
        let start = Instant::now();
        let r = a.post_json(
            "/v1/proposals",
            &serde_json::json!({ "revoke": { "grant": id } }),
        )?;
        let revoke = r.json()?["id"]
            .as_str()
            .map(str::to_owned)
            .context("revocation refused")?;
        revocations.push(committed_everywhere(&nodes, &revoke, Duration::from_secs(30))? - start);
    }
    result.revocation_ms = sys::percentile(&mut revocations, 50.0).as_secs_f64() * 1e3;

    // Flood: one client per proposing node (at most 4), as fast as the
    // API accepts, for `flood` or until `flood_entries_max` proposals.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for (w, node) in nodes.iter().take(4).enumerate() {
        let (node, grantee) = (node.clone(), nodes[(w + 1) % n].name.clone());
        let (stop, sent, refused) = (stop.clone(), sent.clone(), refused.clone());
        workers.push(std::thread::spawn(move || {
            let api = client(&node);
            let mut last = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match propose_grant(&api, &grantee, &format!("flood/{w}/{i}")) {
                    Ok(Some(id)) => {
                        last = Some(id);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                i += 1;
            }
            last
        }));
    }
    let mut rss = Vec::new();
    for quarter in 1..=4 {
        let until = start + flood * quarter / 4;
        while Instant::now() < until && sent.load(Ordering::Relaxed) < flood_entries_max {
            std::thread::sleep(Duration::from_millis(50));
        }
        rss.push(rss_mib(&nodes[0]));
    }
    stop.store(true, Ordering::Relaxed);
    let lasts: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().ok().flatten())
        .collect();
    let mut end = Instant::now();
    for id in &lasts {
        end = end.max(committed_everywhere(&nodes, id, Duration::from_secs(120))?);
    }
    result.flood_entries = sent.load(Ordering::Relaxed);
    result.flood_refused = refused.load(Ordering::Relaxed);
    result.entries_per_sec = result.flood_entries as f64 / (end - start).as_secs_f64();
    result.load_rss_mib = rss;
    let ledger = nodes[0].home.join("data/ledger.redb");
    let entries = result.flood_entries + 2 * samples as u64 + 12;
    result.disk_bytes_per_entry =
        std::fs::metadata(&ledger).map(|m| m.len()).unwrap_or(0) as f64 / entries as f64;
    Ok((result, testnet))
}

/// Commit latency at `n` members, idle and under a data flood, printed
/// and returned as (idle p50 ms, flooded p50 ms, fetches/s).
pub(crate) fn latency(
    dir: &Path,
    n: usize,
    quorate: &Path,
    samples: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let testnet = start(dir, n, quorate)?;
    let nodes = testnet.nodes().to_vec();
    std::thread::sleep(Duration::from_secs(2));
    let proposer = client(&nodes[3]);
    let mut latencies = Vec::new();
    for i in 0..samples {
        let start = Instant::now();
        let id = propose_grant(&proposer, &nodes[0].name, &format!("latency/{i}"))?
            .context("proposal refused")?;
        latencies.push(committed_everywhere(&nodes, &id, Duration::from_secs(30))? - start);
    }
    let idle = sys::percentile(&mut latencies, 50.0).as_secs_f64() * 1e3;
    let (flooded, fetches) = data_flood_latency(&nodes, samples)?;
    println!(
        "n = {n}: commit p50 idle {idle:.1} ms; under a data flood {flooded:.1} ms ({:.2}x; {fetches:.0} fetches/s)",
        flooded / idle
    );
    for node in testnet.nodes() {
        let _ = testnet.stop(node);
    }
    Ok((idle, flooded, fetches))
}

/// Clients per flooding member in [`data_flood_latency`].
const DATA_FLOOD_CLIENTS: usize = 8;

/// Commit latency while members' data traffic floods the first node: the
/// second and third members each run [`DATA_FLOOD_CLIENTS`] clients
/// fetching a 1 KiB object of the first through their own node's API (each
/// fetch a libp2p data request to it), while the last member proposes
/// grants one at a time. Returns the commit p50 (ms) and the fetches
/// served per second.
fn data_flood_latency(nodes: &[NodeSpec], samples: usize) -> anyhow::Result<(f64, f64)> {
    anyhow::ensure!(nodes.len() >= 4, "the data flood needs 4 members");
    let (owner, proposer) = (client(&nodes[0]), client(&nodes[3]));
    let put = owner.request(
        "PUT",
        "/v1/objects/flood-data/small.bin",
        Some(("application/octet-stream", &[7u8; 1024])),
    )?;
    anyhow::ensure!(
        put.status == 201,
        "cannot store the flood's object: {}",
        put.text()
    );
    for fetcher in &nodes[1..3] {
        let id = propose_grant(&owner, &fetcher.name, "flood-data/*")?
            .context("the flood's grant was refused")?;
        committed_everywhere(nodes, &id, Duration::from_secs(30))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let fetched = Arc::new(AtomicU64::new(0));
    let path = format!("/v1/peers/{}/objects/flood-data/small.bin", nodes[0].name);
    let flooders: Vec<_> = nodes[1..3]
        .iter()
        .flat_map(|node| std::iter::repeat_n(node, DATA_FLOOD_CLIENTS))
        .map(|node| {
            let (api, path) = (client(node), path.clone());
            let (stop, fetched) = (stop.clone(), fetched.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if api.get(&path).is_ok_and(|r| r.status == 200) {
                        fetched.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let (start, before) = (Instant::now(), fetched.load(Ordering::Relaxed));
    let mut latencies = Vec::new();
    let mut outcome = Ok(());
    for i in 0..samples {
        let began = Instant::now();
        let committed = propose_grant(&proposer, &nodes[0].name, &format!("data-flood/{i}"))
            .and_then(|id| id.context("proposal refused"))
            .and_then(|id| committed_everywhere(nodes, &id, Duration::from_secs(30)));
        match committed {
            Ok(done) => latencies.push(done - began),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    let fetches_per_sec =
        (fetched.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        let _ = flooder.join();
    }
    outcome?;
    anyhow::ensure!(fetches_per_sec > 0.0, "the data flood served nothing");
    let p50 = sys::percentile(&mut latencies, 50.0).as_secs_f64() * 1e3;
    Ok((p50, fetches_per_sec))
}

/// R-series: a new, empty node joins `testnet` and catches up to its tip.
pub(crate) fn sync(testnet: &mut Testnet, quorate: &Path) -> anyhow::Result<Sync> {
    let first = testnet.nodes()[0].clone();
    let tip = status(&first)
        .and_then(|s| s["height"].as_u64())
        .context("no status")?;
    let entries = count_entries(&first)?;
    let spec = testnet.add_node("org-sync", quorate)?;
    // As `testnet join` does: members serve blocks only to members and to
    // a node a pending AddMember names, so the joiner is proposed first.
    let body = serde_json::json!({ "add_member": { "name": "org-sync", "did": spec.did } });
    let response = client(&first).post_json("/v1/proposals", &body)?;
    anyhow::ensure!(
        response.is_success(),
        "the AddMember proposal for the syncing node was refused: {}",
        response.problem_detail()
    );
    let start = Instant::now();
    let mut child = testnet.start(&spec, quorate)?;
    let deadline = start + Duration::from_secs(600);
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            bail!("the syncing node exited: {exit}");
        }
        if status(&spec)
            .and_then(|s| s["height"].as_u64())
            .is_some_and(|h| h >= tip)
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "sync did not finish in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = start.elapsed().as_secs_f64();
    let peak = sys::status_kib(child.id(), "VmHWM") as f64 / 1024.0;
    Ok(Sync {
        entries,
        blocks: tip,
        secs,
        peak_mib: peak,
    })
}

fn count_entries(node: &NodeSpec) -> anyhow::Result<u64> {
    let ledger = client(node).get("/v1/ledger")?.json()?;
    Ok(ledger["grants"].as_u64().unwrap_or(0))
}
