//! Goal: a running node shows its ledger through the local API: a summary,
//! any block as JSON or as its canonical CBOR, and the whole chain as an
//! export file that `quorate ledger verify` checks offline; status proofs
//! of a grant and of a member, checked offline; bad heights, formats and
//! names are refused with problem+json.
//! Method: a 4-node testnet; one grant committed; real HTTP.

use std::time::Duration;

use quorate_ledger::block::CommittedBlock;
use quorate_tests::{Testnet, admin, eventually, home_arg, problem_type, run, run_ok};

#[test]
fn the_ledger_is_summarized_shown_by_block_and_exported_while_running() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let id = net.grant("org-a", "org-b", "ledger/*", &["org-a", "org-b"]);
    let a = admin(&net, "org-a");

    let located = a
        .get(&format!("/v1/ledger/entries/{id}"))
        .unwrap()
        .json()
        .unwrap();
    let height = located["height"].as_u64().unwrap();

    let summary = a.get("/v1/ledger").unwrap().json().unwrap();
    assert!(summary["height"].as_u64().unwrap() >= height, "{summary}");
    assert_eq!(summary["members"], 4);
    assert_eq!(summary["active_grants"], 1);
    assert!(
        summary["chain_id"]
            .as_str()
            .unwrap()
            .starts_with("quorate-testnet-")
    );

    // The grant's block, as JSON and as canonical CBOR: the same block.
    let json = a
        .get(&format!("/v1/ledger/blocks/{height}"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(json["height"], height);
    let entries = json["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["id"] == id.as_str() && e["kind"] == "grant" && e["proposer"] == "org-a"),
        "{json}"
    );
    assert!(json["certificate"]["signers"].as_array().unwrap().len() >= 3);
    let cbor = a
        .get(&format!("/v1/ledger/blocks/{height}?format=cbor"))
        .unwrap();
    assert_eq!(cbor.content_type.as_deref(), Some("application/cbor"));
    let block: CommittedBlock = quorate_ledger::codec::decode(&cbor.body).unwrap();
    assert_eq!(
        block.block.hash().unwrap().to_string(),
        json["hash"].as_str().unwrap()
    );

    // Refusals.
    for (path, status, problem) in [
        ("/v1/ledger/blocks/999999", 404, "not-found"),
        ("/v1/ledger/blocks/-1", 400, "bad-request"),
        ("/v1/ledger/blocks/1?format=xml", 400, "bad-request"),
        ("/v1/ledger/blocks/1?page=2", 400, "bad-request"),
    ] {
        let response = a.get(path).unwrap();
        assert_eq!(
            (response.status, problem_type(&response).as_str()),
            (status, problem),
            "{path}"
        );
    }

    // The export, taken while the node runs, verifies offline.
    let export = a.get("/v1/ledger/export").unwrap();
    assert_eq!(export.status, 200);
    let file = net.dir.path().join("live.export");
    std::fs::write(&file, &export.body).unwrap();
    let out = run(&["ledger", "verify", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("grants:        1 active"), "{stdout}");
    // A cut-off copy is caught.
    std::fs::write(&file, &export.body[..export.body.len() - 1]).unwrap();
    assert!(
        !run(&["ledger", "verify", file.to_str().unwrap()])
            .status
            .success()
    );

    // `grant propose` and `grant revoke` (the same as `proposal grant|revoke`)
    // move the summary's counts.
    let home_a = home_arg(&net.home("org-a"));
    run_ok(&[
        "grant",
        "propose",
        "--home",
        &home_a,
        "--to",
        "org-c",
        "--resource",
        "ledger/c/*",
    ]);
    run_ok(&["grant", "revoke", "--home", &home_a, &id]);
    eventually(
        Duration::from_secs(20),
        "one grant more, one revoked",
        || {
            a.get("/v1/ledger")
                .ok()
                .and_then(|r| r.json().ok())
                .is_some_and(|s| s["grants"] == 2 && s["active_grants"] == 1)
        },
    );

    // Status proofs: active as of the grant's height, revoked as of the
    // tip, each verified offline; bad heights and ids are clear errors.
    let shown = a.get(&format!("/v1/grants/{id}")).unwrap().json().unwrap();
    assert_eq!(shown["standing"], "revoked", "{shown}");
    let revoked_at = shown["status"]["Revoked"]["height"].as_u64().unwrap();
    assert!(revoked_at > height);
    let status_file = |name: &str| net.dir.path().join(name);
    let (then, now) = (status_file("then.status"), status_file("now.status"));
    let at = height.to_string();
    let wrote = run_ok(&[
        "grant",
        "status",
        &id,
        "--at",
        &at,
        "--home",
        &home_a,
        "--out",
        &home_arg(&then),
    ]);
    assert!(wrote.contains("active"), "{wrote}");
    let wrote = run_ok(&[
        "grant",
        "status",
        &id,
        "--home",
        &home_a,
        "--out",
        &home_arg(&now),
    ]);
    assert!(wrote.contains("revoked"), "{wrote}");
    let genesis = summary["genesis_hash"].as_str().unwrap();
    let verified = run_ok(&["grant", "verify", &home_arg(&then), "--genesis", genesis]);
    assert!(verified.contains("status:     active"), "{verified}");
    assert!(
        verified.contains(&format!("height:     {height}")),
        "{verified}"
    );
    let verified = run_ok(&["grant", "verify", &home_arg(&now), "--genesis", genesis]);
    assert!(verified.contains("status:     revoked"), "{verified}");
    let bytes = std::fs::read(&then).unwrap();
    for position in [1, bytes.len() / 2, bytes.len() - 2] {
        let mut tampered = bytes.clone();
        tampered[position] ^= 0x04;
        std::fs::write(&then, &tampered).unwrap();
        let out = run(&["grant", "verify", &home_arg(&then)]);
        assert!(!out.status.success(), "a flip at {position} verified");
        assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED"));
    }
    let out = run(&[
        "grant",
        "status",
        &id,
        "--at",
        "999999999",
        "--home",
        &home_a,
        "--out",
        "/dev/null",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("beyond the tip"));
    let far = a
        .get(&format!("/v1/grants/{id}/status?at=999999999"))
        .unwrap();
    assert_eq!(
        (far.status, problem_type(&far).as_str()),
        (422, "height-beyond-tip")
    );
    let bad = a.get(&format!("/v1/grants/{id}/status?at=soon")).unwrap();
    assert_eq!(bad.status, 400);
    let unknown = a
        .get(&format!("/v1/grants/{}/status", "cd".repeat(32)))
        .unwrap();
    assert_eq!(
        (unknown.status, problem_type(&unknown).as_str()),
        (404, "not-found")
    );

    // Member status proofs: org-b by name and by its did:key, at the tip
    // and at genesis, each verified offline; unknown members are 404.
    let members = a.get("/v1/members").unwrap().json().unwrap();
    let did_b = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "org-b")
        .and_then(|m| m["did"].as_str())
        .unwrap()
        .to_owned();
    let member_file = status_file("org-b.member");
    let wrote = run_ok(&[
        "member",
        "status",
        "org-b",
        "--home",
        &home_a,
        "--out",
        &home_arg(&member_file),
    ]);
    assert!(wrote.contains("a member, as org-b"), "{wrote}");
    let verified = run_ok(&[
        "grant",
        "verify",
        &home_arg(&member_file),
        "--genesis",
        genesis,
    ]);
    assert!(verified.contains("status:     a member"), "{verified}");
    assert!(
        verified.contains(&format!("did:        {did_b}")),
        "{verified}"
    );
    let at_genesis = a.get(&format!("/v1/members/{did_b}/status?at=0")).unwrap();
    assert_eq!(at_genesis.status, 200);
    let proof: quorate_ledger::proof::MemberStatusProof =
        quorate_ledger::codec::decode(&at_genesis.body).unwrap();
    let at_zero = proof.verify(Some(&genesis.parse().unwrap())).unwrap();
    assert_eq!(
        (at_zero.height, at_zero.record.map(|m| m.name)),
        (0, Some("org-b".to_owned()))
    );
    for who in [
        "nobody",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
    ] {
        let response = a.get(&format!("/v1/members/{who}/status")).unwrap();
        assert_eq!(
            (response.status, problem_type(&response).as_str()),
            (404, "not-found"),
            "{who}"
        );
    }
    let long = a
        .get(&format!("/v1/members/{}/status", "x".repeat(200)))
        .unwrap();
    assert_eq!(long.status, 400);
}
