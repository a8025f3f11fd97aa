//! Goal: crashes lose nothing that was acknowledged. While three members
//! stream grant proposals, the fourth is killed with SIGKILL; the others
//! keep committing every proposal; the killed node restarts and catches
//! up; then an owner is killed right after acknowledging an upload and
//! keeps it. At the end all four ledgers verify from genesis and agree.
//! Method: a 4-node testnet of real processes; every wait bounded.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quorate_tests::{Testnet, admin, eventually};

fn grant_ids(api: &quorate_testnet::client::ApiClient) -> Vec<String> {
    api.get("/v1/grants?limit=1000")
        .ok()
        .and_then(|r| r.json().ok())
        .and_then(|g| g.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|g| g["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_kill_during_a_stream_of_proposals_loses_nothing() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let names = ["org-a", "org-b", "org-c", "org-d"];
    let apis: Vec<_> = names.iter().map(|n| admin(&net, n)).collect();
    let not_after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 86_400_000;

    // Three members propose a grant each every 60 ms for 4 s; org-d is
    // killed a second in and restarted two seconds later.
    let mut acknowledged = Vec::new();
    let start = Instant::now();
    let (mut killed, mut restarted) = (false, false);
    let mut i = 0u32;
    while start.elapsed() < Duration::from_secs(4) {
        let from = (i % 3) as usize;
        let to = names[(from + 1) % 3];
        let body = serde_json::json!({ "grant": {
            "grantee": to, "resources": [format!("stream/{i}")], "actions": ["read"], "not_after_ms": not_after,
        }});
        let r = apis[from].post_json("/v1/proposals", &body).unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
        acknowledged.push(r.json().unwrap()["id"].as_str().unwrap().to_owned());
        if !killed && start.elapsed() > Duration::from_secs(1) {
            net.cli(&["testnet", "kill", "org-d"]);
            killed = true;
        }
        if !restarted && start.elapsed() > Duration::from_secs(3) {
            net.cli(&["testnet", "restart", "org-d"]);
            restarted = true;
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(killed && restarted);
    eprintln!("{} proposals acknowledged", acknowledged.len());
    eventually(
        Duration::from_secs(40),
        "every acknowledged proposal committed on all four",
        || {
            apis.iter().all(|api| {
                let committed = grant_ids(api);
                acknowledged.iter().all(|id| committed.contains(id))
            })
        },
    );

    // An acknowledged upload survives SIGKILL of its owner.
    let put = apis[0]
        .request(
            "PUT",
            "/v1/objects/durable/receipt.txt",
            Some(("text/plain", b"kept")),
        )
        .unwrap();
    assert_eq!(put.status, 201);
    net.cli(&["testnet", "kill", "org-a"]);
    net.cli(&["testnet", "restart", "org-a"]);
    eventually(Duration::from_secs(20), "org-a back", || {
        apis[0].get("/v1/status").is_ok_and(|r| r.status == 200)
    });
    let got = apis[0].get("/v1/objects/durable/receipt.txt").unwrap();
    assert_eq!((got.status, got.body.as_slice()), (200, &b"kept"[..]));

    // Stopped, every ledger verifies from genesis, and they agree.
    let target = apis[0].get("/v1/status").unwrap().json().unwrap()["height"]
        .as_u64()
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "every node at the same height",
        || {
            apis.iter().all(|api| {
                api.get("/v1/status")
                    .ok()
                    .and_then(|r| r.json().ok())
                    .is_some_and(|s| s["height"].as_u64() >= Some(target))
            })
        },
    );
    let common = net.down_and_verify(&names);
    assert!(common >= target);
}
