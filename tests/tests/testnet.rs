//! Goal: what a new user runs works: `quorate testnet up` brings up a
//! committing consortium of real processes, the CLI proposes and approves
//! grants through the local APIs, a grant proof verifies offline (and a
//! tampered one does not), and kill/restart/pause/resume/down do what they
//! say. Manual approval holds a proposal until a quorum of operators
//! approves it.
//! Method: the real `quorate` binary, each test its own testnet directory,
//! every wait bounded; the directory's nodes are stopped on drop.

use std::path::Path;
use std::time::Duration;

use quorate_tests::{Testnet, eventually, grants, home_arg, run, run_ok};

#[test]
fn testnet_up_grant_proof_and_process_control() {
    let (net, out) = Testnet::up(&["--nodes", "4"]);
    assert!(out.contains("connected and committing: 4/4"), "{out}");
    assert!(out.contains("quorate proposal grant"), "{out}");
    for name in ["org-a", "org-b", "org-c", "org-d"] {
        assert_eq!(net.row(name)[1], "running");
    }

    // Re-running up resumes: nothing is started twice.
    let again = net.cli(&["testnet", "up", "--detach"]);
    assert_eq!(again.matches("already running").count(), 4, "{again}");

    // org-a grants org-b; every node ends up holding the committed grant.
    let (b, c) = (net.home("org-b"), net.home("org-c"));
    let id = net.grant(
        "org-a",
        "org-b",
        "datasets/shipments/*",
        &["org-a", "org-b", "org-c", "org-d"],
    );
    let id = id.as_str();
    assert!(
        grants(&c)
            .iter()
            .any(|g| g["id"] == id && g["status"] == "Active")
    );

    // Shown alone, and found by the filters that match it only.
    let shown = run_ok(&["grant", "show", id, "--home", &home_arg(&c)]);
    assert!(shown.contains("\"grantee\": \"org-b\""), "{shown}");
    let api = quorate_tests::admin(&net, "org-c");
    let count = |query: &str| {
        let r = api.get(&format!("/v1/grants?{query}")).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().unwrap().as_array().unwrap().len()
    };
    assert_eq!(count("grantee=org-b&status=active"), 1);
    assert_eq!(count("grantor=org-a"), 1);
    assert_eq!(count("grantee=org-c"), 0);
    assert_eq!(count("status=revoked"), 0);
    assert_eq!(api.get("/v1/grants?colour=red").unwrap().status, 400);
    // Pages: a page of one ends at the grant, and the page after it is
    // empty; bad pages are refused.
    let first = api.get("/v1/grants?grantee=org-b&limit=1").unwrap();
    assert_eq!(first.json().unwrap()[0]["standing"], "active");
    let after = api
        .get(&format!("/v1/grants?grantee=org-b&after={id}"))
        .unwrap();
    assert_eq!(after.json().unwrap().as_array().unwrap().len(), 0);
    assert!(after.header("link").is_none(), "no next page past the last");
    for bad in ["limit=0", "limit=1001", "after=zz"] {
        assert_eq!(
            api.get(&format!("/v1/grants?{bad}")).unwrap().status,
            400,
            "{bad}"
        );
    }

    // Its proof verifies offline, against the trusted genesis too; one
    // flipped byte anywhere in it fails.
    let proof = net.dir.path().join("grant.proof");
    run_ok(&[
        "grant",
        "proof",
        id,
        "--home",
        &home_arg(&b),
        "--out",
        &home_arg(&proof),
    ]);
    let verified = run_ok(&["grant", "verify", &home_arg(&proof)]);
    assert!(
        verified.contains(id) && verified.contains("OK"),
        "{verified}"
    );
    let genesis = verified
        .lines()
        .find_map(|l| l.strip_prefix("genesis:"))
        .unwrap()
        .trim()
        .to_owned();
    run_ok(&["grant", "verify", &home_arg(&proof), "--genesis", &genesis]);
    let wrong_genesis = "00".repeat(32);
    assert!(
        !run(&[
            "grant",
            "verify",
            &home_arg(&proof),
            "--genesis",
            &wrong_genesis
        ])
        .status
        .success()
    );
    let bytes = std::fs::read(&proof).unwrap();
    for position in [0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let mut tampered = bytes.clone();
        tampered[position] ^= 0x01;
        std::fs::write(&proof, &tampered).unwrap();
        let out = run(&["grant", "verify", &home_arg(&proof)]);
        assert!(!out.status.success(), "a flip at {position} verified");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("FAILED") && err.lines().count() == 1, "{err}");
    }

    // Unknown grants and malformed ids are clear errors.
    let out = run(&[
        "grant",
        "proof",
        &"ab".repeat(32),
        "--home",
        &home_arg(&b),
        "--out",
        "/dev/null",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no committed grant"));
    let out = run(&[
        "proposal",
        "approve",
        "../../v1/grants",
        "--home",
        &home_arg(&b),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an id"));

    // Process control.
    net.cli(&["testnet", "kill", "org-d"]);
    assert_eq!(net.row("org-d")[1], "stopped");
    net.cli(&["testnet", "pause", "org-c"]);
    assert_eq!(net.row("org-c")[1], "paused");
    net.cli(&["testnet", "resume", "org-c"]);
    net.cli(&["testnet", "restart", "org-d"]);
    eventually(
        Duration::from_secs(20),
        "org-d caught up with the grant",
        || {
            net.row("org-d")[1] == "running"
                && grants(&net.home("org-d")).iter().any(|g| g["id"] == id)
        },
    );
    let logs = net.cli(&["testnet", "logs", "org-d", "--lines", "5"]);
    assert!(!logs.is_empty());
    let out = run(&["testnet", "kill", "org-x", "--dir", net.path_str()]);
    assert!(!out.status.success());

    let down = net.cli(&["testnet", "down"]);
    assert_eq!(down.matches("stopped").count(), 4, "{down}");
    for name in ["org-a", "org-b", "org-c", "org-d"] {
        assert_eq!(net.row(name)[1], "stopped");
    }
}

#[test]
fn manual_approval_waits_for_a_quorum_of_operators() {
    let (net, _) = Testnet::up(&["--nodes", "4", "--approval", "manual"]);
    let (a, b, c) = (net.home("org-a"), net.home("org-b"), net.home("org-c"));
    let id = run_ok(&[
        "proposal",
        "grant",
        "--home",
        &home_arg(&a),
        "--to",
        "org-d",
        "--resource",
        "reports/q3.csv",
        "--days",
        "1",
    ]);
    let id = id.trim().to_owned();
    let pending = |home: &Path| {
        let out = run_ok(&["proposal", "list", "--home", &home_arg(home)]);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id.as_str())
    };
    eventually(Duration::from_secs(10), "the proposal on org-b", || {
        pending(&b)
    });

    // With only the proposer's signature it waits, however long.
    std::thread::sleep(Duration::from_secs(3));
    assert!(grants(&a).is_empty(), "committed without approval");

    // One approval: still 2 of the quorum of 3.
    run_ok(&["proposal", "approve", &id, "--home", &home_arg(&b)]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(grants(&a).is_empty(), "committed with 2 of 4");

    run_ok(&["proposal", "approve", &id, "--home", &home_arg(&c)]);
    eventually(Duration::from_secs(20), "the grant committed", || {
        grants(&net.home("org-d"))
            .iter()
            .any(|g| g["id"] == id.as_str())
    });
}
