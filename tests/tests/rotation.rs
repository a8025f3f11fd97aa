//! Goal: an organization rotates its key and keeps its place and its
//! grants. `did rotate` on org-b proposes the new key; once a quorum
//! commits it, org-b's node restarts itself under it (new did:key, new
//! PeerId), the old key is kept aside, every member names org-b by its new
//! DID, the others reconnect to it at the same address, org-b still reads
//! A's data under the grant it was given before (over libp2p and signed
//! HTTP with the new key), a request signed with the retired key is
//! refused, and org-b's new key endorses and votes (a later grant commits
//! with org-b in the quorum). All four ledgers verify and agree.
//! Method: a 4-node testnet of real processes; every wait bounded.

use std::time::Duration;

use quorate_tests::{
    Testnet, admin, eventually, gateway, home_arg, key, problem_type, put_object, run_ok,
    signed_get,
};

fn member_did(net: &Testnet, on: &str, name: &str) -> Option<String> {
    let members = admin(net, on).get("/v1/members").ok()?.json().ok()?;
    members["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["did"].as_str().map(str::to_owned))
}

#[test]
fn a_member_rotates_its_key_and_keeps_its_grants() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let all = ["org-a", "org-b", "org-c", "org-d"];
    let a = admin(&net, "org-a");
    put_object(
        &a,
        "rotation/report.csv",
        "text/csv",
        b"quarter,total\nQ4,17\n",
    );
    net.grant("org-a", "org-b", "rotation/*", &all);
    let old_key = key(&net, "org-b");
    let old_did = old_key.did().to_string();

    let home_b = home_arg(&net.home("org-b"));
    let out = run_ok(&["did", "rotate", "--home", &home_b, "--wait"]);
    assert!(out.contains("now runs under"), "{out}");
    let new_key = key(&net, "org-b");
    let new_did = new_key.did().to_string();
    assert_ne!(new_did, old_did);
    assert!(out.contains(&new_did), "{out}");
    assert!(!net.home("org-b").join("key.next.pem").exists());
    let retired: Vec<_> = std::fs::read_dir(net.home("org-b"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("key.retired-"))
        .collect();
    assert_eq!(retired.len(), 1, "the old key is kept once");
    let kept = quorate_did::keyfile::load(&retired[0].path()).unwrap();
    assert_eq!(kept.did().to_string(), old_did);

    // Everyone names org-b by its new key; it is connected to all again.
    eventually(Duration::from_secs(20), "the new DID everywhere", || {
        all.iter()
            .all(|on| member_did(&net, on, "org-b").as_deref() == Some(new_did.as_str()))
    });
    eventually(Duration::from_secs(20), "org-b reconnected", || {
        net.row("org-b").get(3).map(String::as_str) == Some("3")
    });

    // The grant names the member, so it carries over.
    let b = admin(&net, "org-b");
    eventually(Duration::from_secs(20), "org-b served over libp2p", || {
        b.get("/v1/peers/org-a/objects/rotation/report.csv")
            .is_ok_and(|r| r.status == 200 && r.body == b"quarter,total\nQ4,17\n")
    });
    let report = "/gateway/objects/rotation/report.csv";
    let (served, _) = signed_get(&gateway(&net, "org-a"), report, &new_key, "rot-1");
    assert_eq!(served.status, 200, "{}", served.text());
    let (refused, _) = signed_get(&gateway(&net, "org-a"), report, &old_key, "rot-2");
    assert_eq!(
        (refused.status, problem_type(&refused).as_str()),
        (403, "not-a-member"),
        "{}",
        refused.text()
    );

    // org-b's new key signs: its own grant commits, and with org-d
    // stopped the quorum of three needs org-b's votes.
    net.cli(&["testnet", "kill", "org-d"]);
    net.grant(
        "org-b",
        "org-c",
        "after-rotation/*",
        &["org-a", "org-b", "org-c"],
    );
    let common = net.down_and_verify(&all);
    assert!(common >= 3, "too few blocks ({common})");
}
