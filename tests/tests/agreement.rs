//! Goal: four real nodes agree: a grant proposed at one node and endorsed by
//! a quorum is committed on every node; with one node killed (-9) the other
//! three keep committing; the killed node restarts, catches up to the same
//! chain, and every node's ledger verifies from genesis with the same
//! blocks.
//! Method: `testnet::generate` makes four homes and a genesis; four
//! `quorate node run` processes on 127.0.0.1; the local API over HTTP;
//! `quorate ledger verify` on each home at the end. Bounded: every wait has
//! a deadline, and the processes are killed if the test fails.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use quorate_tests::{Processes, http, quorate_bin, run};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(40);

struct Net {
    specs: Vec<quorate_testnet::NodeSpec>,
}

impl Net {
    fn get(&self, i: usize, path: &str) -> Option<Value> {
        let s = &self.specs[i];
        let (status, body) = http("GET", &s.api, path, &s.token, None).ok()?;
        (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// A counter from node `i`'s `/metrics` (the line starting `name`).
    fn counter(&self, i: usize, name: &str) -> Option<u64> {
        let s = &self.specs[i];
        let (status, body) = http("GET", &s.api, "/metrics", &s.token, None).ok()?;
        (status == 200).then_some(())?;
        body.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    }

    fn height(&self, i: usize) -> Option<u64> {
        self.get(i, "/v1/status")?["height"].as_u64()
    }

    fn grant_ids(&self, i: usize) -> Vec<String> {
        self.get(i, "/v1/grants?limit=1000")
            .and_then(|g| g.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|g| g["id"].as_str().map(str::to_owned))
            .collect()
    }

    fn propose_grant(&self, from: usize, to: usize) -> String {
        let s = &self.specs[from];
        let not_after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 86_400_000;
        let body = json!({ "grant": {
            "grantee": self.specs[to].name,
            "resources": ["datasets/shipments/*"],
            "actions": ["read"],
            "not_after_ms": not_after,
            "purpose": "customs",
        }});
        let (status, answer) =
            http("POST", &s.api, "/v1/proposals", &s.token, Some(&body)).unwrap();
        assert_eq!(status, 202, "{answer}");
        serde_json::from_str::<Value>(&answer).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

#[test]
fn four_nodes_commit_a_grant_survive_a_kill_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let specs = quorate_testnet::generate(dir.path(), 4, "e2e-chain", &quorate_bin()).unwrap();
    // Shorter round timeouts, so rounds led by the killed node pass quickly.
    for s in &specs {
        let path = s.home.join("config.toml");
        let config = std::fs::read_to_string(&path)
            .unwrap()
            .replace("timeout_propose = \"3s\"", "timeout_propose = \"1s\"");
        std::fs::write(path, config).unwrap();
    }
    let homes: Vec<PathBuf> = specs.iter().map(|s| s.home.clone()).collect();
    let mut nodes = Processes::start(&homes);
    let net = Net { specs };

    let up = wait_until("every node has committed a block", || {
        (0..4).all(|i| net.height(i).is_some_and(|h| h >= 1))
    });
    eprintln!("all four nodes committing after {up:?}");

    // A grant from org-a to org-b, endorsed automatically by the others.
    let id = net.propose_grant(0, 1);
    let latency = wait_until("the grant is committed on every node", || {
        (0..4).all(|i| net.grant_ids(i).contains(&id))
    });
    eprintln!("grant committed on all four nodes {latency:?} after the proposal");
    // Blocks are checked once: a decided block is adopted on the check
    // made when it was proposed.
    let reused = |i| net.counter(i, "quorate_decided_blocks_total{check=\"reused\"} ");
    assert!(
        (0..4).all(|i| reused(i).is_some_and(|n| n >= 1)),
        "a node checked every decided block twice: {:?}",
        (0..4).map(reused).collect::<Vec<_>>()
    );

    // Kill org-d; the other three (a quorum) keep committing, and commit a new grant.
    nodes.kill(3);
    let before = net.height(0).unwrap();
    wait_until("three nodes keep committing", || {
        (0..3).all(|i| net.height(i).is_some_and(|h| h >= before + 3))
    });
    let second = net.propose_grant(1, 2);
    wait_until("a grant commits with one node down", || {
        (0..3).all(|i| net.grant_ids(i).contains(&second))
    });

    // org-d comes back, catches up from its peers, and rejoins.
    nodes.restart(3);
    let target = net.height(0).unwrap();
    let caught_up = wait_until("the restarted node catches up", || {
        net.height(3).is_some_and(|h| h >= target) && net.grant_ids(3).contains(&second)
    });
    eprintln!("restarted node caught up to height {target} in {caught_up:?}");

    // Everyone stops cleanly; every ledger verifies and holds the same chain.
    let clean = nodes.stop_all();
    assert!(
        clean.iter().all(|ok| *ok),
        "a node did not stop cleanly: {clean:?}"
    );
    let mut tips = Vec::new();
    for home in &homes {
        let out = run(&["ledger", "verify", "--home", home.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            home.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("OK"));
        let ledger = quorate_ledger::ledger::Ledger::open(&home.join("data/ledger.redb")).unwrap();
        tips.push(ledger.chain().unwrap().tip().height);
        drop(ledger);
    }
    let common = *tips.iter().min().unwrap();
    assert!(
        common >= target,
        "every node holds at least the height D caught up to"
    );
    let hashes: Vec<String> = homes
        .iter()
        .map(|h| {
            let ledger = quorate_ledger::ledger::Ledger::open(&h.join("data/ledger.redb")).unwrap();
            ledger
                .block(common)
                .unwrap()
                .unwrap()
                .block
                .hash()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree at height {common}: {hashes:?}"
    );
}
