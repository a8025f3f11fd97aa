//! Goal: members' data traffic cannot stall agreement. While two members
//! flood an owner with fetches over libp2p, a third member's grants keep
//! committing and the owner drops no agreement event (`/metrics`). The
//! commit latency, idle and under the flood, is printed, not asserted: on
//! this 2-core machine it measures CPU contention as much as queueing, and
//! timings belong to the benchmark.
//! Method: a 4-node testnet of real processes; org-b and org-c each run
//! 24 clients fetching org-a's object through their own node's API (each
//! fetch a libp2p data request to org-a) for the whole measurement; org-d
//! proposes grants one at a time and times each until org-a lists it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quorate_testnet::client::ApiClient;
use quorate_tests::{Testnet, admin, put_object};

const CLIENTS_PER_MEMBER: usize = 8;
const GRANTS: usize = 8;
/// Fetches served while the flooded commits are measured, at least.
const FLOOD_FETCHES_MIN: u64 = 200;
/// Most commits measured under the flood.
const FLOODED_COMMITS_MAX: usize = 64;

/// Proposes a grant from org-d and returns the time until org-a has it
/// (failing the test past 30 s: agreement stalled).
fn commit_latency(d: &ApiClient, a: &ApiClient, i: usize) -> Duration {
    let not_after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 86_400_000;
    let body = serde_json::json!({ "grant": {
        "grantee": "org-a", "resources": [format!("flood/{i}/{}", not_after)],
        "actions": ["read"], "not_after_ms": not_after,
    }});
    let start = Instant::now();
    let proposed = d.post_json("/v1/proposals", &body).unwrap();
    assert_eq!(proposed.status, 202, "{}", proposed.text());
    let id = proposed.json().unwrap()["id"].as_str().unwrap().to_owned();
    let deadline = start + Duration::from_secs(30);
    loop {
        if a.get(&format!("/v1/ledger/entries/{id}"))
            .is_ok_and(|r| r.status == 200)
        {
            return start.elapsed();
        }
        assert!(Instant::now() < deadline, "grant {i} never committed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn dropped_events(api: &ApiClient) -> u64 {
    let metrics = api.get("/metrics").unwrap().text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("quorate_network_dropped_events_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the dropped-events counter in /metrics")
}

#[test]
fn a_flood_of_data_requests_does_not_stall_agreement() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let (a, d) = (admin(&net, "org-a"), admin(&net, "org-d"));
    put_object(
        &a,
        "shared/small.bin",
        "application/octet-stream",
        &[7u8; 1024],
    );
    net.grant("org-a", "org-b", "shared/*", &["org-b"]);
    net.grant("org-a", "org-c", "shared/*", &["org-c"]);

    let idle: Vec<Duration> = (0..GRANTS).map(|i| commit_latency(&d, &a, i)).collect();
    let idle = median(idle);

    let stop = Arc::new(AtomicBool::new(false));
    let fetched = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = ["org-b", "org-c"]
        .iter()
        .flat_map(|name| (0..CLIENTS_PER_MEMBER).map(move |_| *name))
        .map(|name| {
            let api = admin(&net, name);
            let (stop, fetched, failed) = (stop.clone(), fetched.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match api.get("/v1/peers/org-a/objects/shared/small.bin") {
                        Ok(r) if r.status == 200 => fetched.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let flood_start = Instant::now();
    let before = fetched.load(Ordering::Relaxed);
    // At least GRANTS commits, and on until the flood has served enough
    // fetches to mean something (commits can be quicker than a loaded
    // machine's fetches), bounded.
    let mut flooded = Vec::new();
    let mut i = GRANTS;
    while flooded.len() < GRANTS
        || (fetched.load(Ordering::Relaxed) - before < FLOOD_FETCHES_MIN
            && flooded.len() < FLOODED_COMMITS_MAX)
    {
        flooded.push(commit_latency(&d, &a, i));
        i += 1;
    }
    let served = fetched.load(Ordering::Relaxed) - before;
    let flood_secs = flood_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().unwrap();
    }
    let flooded = median(flooded);
    eprintln!(
        "commit latency p50: idle {idle:?}, under the flood {flooded:?}; \
         {served} fetches over libp2p in {flood_secs:.1} s ({:.0}/s), {} failed",
        served as f64 / flood_secs,
        failed.load(Ordering::Relaxed)
    );
    assert!(
        served >= FLOOD_FETCHES_MIN,
        "the flood was too thin to mean anything"
    );
    assert_eq!(dropped_events(&a), 0, "org-a dropped agreement events");
    net.down_and_verify(&["org-a", "org-b", "org-c", "org-d"]);
}
