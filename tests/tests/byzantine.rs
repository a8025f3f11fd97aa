//! Goal: one Byzantine member in a live testnet cannot break safety or
//! forge grants. Org D runs with test-only faults (`fault-injection`
//! feature, `QUORATE_FAULT=equivocate,forge-grant`): it signs two
//! conflicting votes at every step and keeps gossiping grant proposals in
//! other members' names, for their data, with forged endorsements. The
//! honest three keep committing the honest grants, detect the
//! equivocation, accept no forged grant, and every ledger verifies with
//! one chain.
//! Method: a 4-node testnet; org-d restarted with the faults on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quorate_tests::{Testnet, admin, eventually, quorate_bin};

#[test]
fn an_equivocating_forging_member_cannot_break_agreement_or_grants() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let restarted = std::process::Command::new(quorate_bin())
        .args(["testnet", "restart", "org-d", "--dir", net.path_str()])
        .env("QUORATE_FAULT", "equivocate,forge-grant")
        .output()
        .unwrap();
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let names = ["org-a", "org-b", "org-c", "org-d"];
    let apis: Vec<_> = names.iter().map(|n| admin(&net, n)).collect();
    eventually(
        Duration::from_secs(10),
        "org-d misbehaving (the quorate binary needs the fault-injection feature: `cargo test --workspace` builds it so)",
        || {
            std::fs::read_to_string(net.home("org-d").join("node.log"))
                .is_ok_and(|log| log.contains("FAULT INJECTION ON"))
        },
    );

    // Honest grants keep committing meanwhile.
    let not_after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 86_400_000;
    let mut honest = Vec::new();
    for i in 0..9usize {
        let from = i % 3;
        let body = serde_json::json!({ "grant": {
            "grantee": names[(from + 1) % 3], "resources": [format!("honest/{i}")], "actions": ["read"], "not_after_ms": not_after,
        }});
        let r = apis[from].post_json("/v1/proposals", &body).unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
        honest.push(r.json().unwrap()["id"].as_str().unwrap().to_owned());
        std::thread::sleep(Duration::from_millis(300));
    }
    let grants_of = |i: usize| -> Vec<serde_json::Value> {
        apis[i]
            .get("/v1/grants?limit=1000")
            .ok()
            .and_then(|r| r.json().ok())
            .and_then(|g| g.as_array().cloned())
            .unwrap_or_default()
    };
    eventually(
        Duration::from_secs(40),
        "every honest grant committed on the honest nodes",
        || {
            (0..3).all(|i| {
                let ids: Vec<String> = grants_of(i)
                    .iter()
                    .filter_map(|g| g["id"].as_str().map(str::to_owned))
                    .collect();
                honest.iter().all(|id| ids.contains(id))
            })
        },
    );
    eventually(
        Duration::from_secs(20),
        "the equivocation detected by the honest nodes",
        || {
            (0..3).all(|i| {
                apis[i]
                    .get("/v1/status")
                    .ok()
                    .and_then(|r| r.json().ok())
                    .is_some_and(|s| s["evidence"].as_u64() > Some(0))
            })
        },
    );
    for (i, name) in names.iter().enumerate() {
        let forged: Vec<_> = grants_of(i)
            .into_iter()
            .filter(|g| g["purpose"] == "forged")
            .collect();
        assert!(forged.is_empty(), "{name} holds a forged grant: {forged:?}");
    }
    let status = apis[0].get("/v1/status").unwrap().json().unwrap();
    assert!(
        status["rejected"]
            .as_object()
            .is_some_and(|r| !r.is_empty()),
        "no forged message was counted: {status}"
    );

    // One chain: every ledger verifies, and all agree at the lowest tip.
    let common = net.down_and_verify(&names);
    assert!(common > 5, "too few blocks to mean anything ({common})");
}
