//! Goal: over libp2p one request is one authorization, one rate-limit token
//! and one audit record, however many chunks the object takes: a grant
//! limited to 3 requests per 120 s fetches a 60 MiB object (15 chunks) in
//! one request, the owner's audit log holds one record with the full byte
//! count, and the grant's rate counts whole downloads. (The window is long
//! so that three debug-build downloads on a loaded 2-core machine finish
//! inside it: with 10 s the fourth sometimes found a new window.)
//! Method: a 4-node testnet of real processes; the CLI's `data put` and
//! `peer get`; the owner's `/v1/audit`.

use std::time::Duration;

use quorate_tests::{Testnet, admin, eventually, holds_grant, home_arg, run, run_ok};

const MIB: usize = 1024 * 1024;

#[test]
fn a_rate_limited_grant_fetches_a_large_object_in_one_request() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let (home_a, home_b) = (home_arg(&net.home("org-a")), home_arg(&net.home("org-b")));
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    let body: Vec<u8> = (0..60 * MIB).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &body).unwrap();
    run_ok(&[
        "data",
        "put",
        "--home",
        &home_a,
        "big/file.bin",
        &home_arg(&source),
    ]);
    let id = run_ok(&[
        "proposal",
        "grant",
        "--home",
        &home_a,
        "--to",
        "org-b",
        "--resource",
        "big/*",
        "--rate",
        "3/120",
        "--days",
        "1",
    ]);
    let id = id.trim().to_owned();
    eventually(Duration::from_secs(20), "the grant reaches org-b", || {
        holds_grant(&net, "org-b", &id)
    });

    // Three whole downloads fit the grant's rate; a fourth does not.
    let peer_get = |out: &str| {
        run(&[
            "peer",
            "get",
            "--home",
            &home_b,
            "org-a",
            "big/file.bin",
            "--out",
            &home_arg(&dir.path().join(out)),
        ])
    };
    for i in 0..3 {
        let out = format!("got-{i}.bin");
        let got = peer_get(&out);
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert!(
            std::fs::read(dir.path().join(&out)).unwrap() == body,
            "download {i} differs"
        );
    }
    let fourth = peer_get("fourth.bin");
    assert!(!fourth.status.success());
    assert!(
        String::from_utf8_lossy(&fourth.stderr).contains("(429)"),
        "{}",
        String::from_utf8_lossy(&fourth.stderr)
    );

    // One record per download at the owner, each with the full byte count.
    let a = admin(&net, "org-a");
    let records = a.get("/v1/audit?limit=1000").unwrap().json().unwrap();
    let downloads: Vec<&serde_json::Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resource"] == "big/file.bin" && r["transport"] == "p2p")
        .collect();
    let allowed: Vec<u64> = downloads
        .iter()
        .filter(|r| r["decision"] == "allow")
        .map(|r| r["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(allowed, vec![(60 * MIB) as u64; 3], "{downloads:#?}");
    assert!(
        downloads
            .iter()
            .all(|r| r["decision"] == "allow" || r["reason"] == "rate-limited"),
        "{downloads:#?}"
    );
    assert!(
        downloads
            .iter()
            .all(|r| r["grant"].is_string() || r["decision"] == "deny")
    );
    net.down_and_verify(&["org-a", "org-b", "org-c", "org-d"]);
}
