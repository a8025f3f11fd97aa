//! Goal: a member whose clock is 5 minutes off, ahead or behind, cannot
//! move the chain's clock or stop the others agreeing: the consortium
//! keeps committing, an honest grant commits, every block time stays
//! within `BLOCK_TIME_AHEAD_MAX_MS` of the honest clocks, and a request the
//! skewed member signs by its own clock (RFC 9421 `created`) is refused by
//! another member's gateway as outside the allowed skew. What it proposes
//! itself carries its clock too: 5 minutes ahead, its grant waits (its
//! `created_at` lies after every honest block's time by more than the 30 s
//! the rules allow); 5 minutes behind, it commits (within the 10-minute
//! proposal TTL).
//! Method: a 4-node testnet; org-d restarted with the test-only fault
//! `QUORATE_FAULT=clock-offset-ms:±300000` (its driver's clock: block
//! times, proposals, grant windows and its gateway's authorization); this
//! machine's clock is the honest one. The two scenarios run in parallel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quorate_api::signature::{RequestParts, sign_request};
use quorate_ledger::chain::BLOCK_TIME_AHEAD_MAX_MS;
use quorate_ledger::ledger::Ledger;
use quorate_testnet::client::ApiClient;
use quorate_tests::{
    Gateway, Testnet, admin, eventually, gateway, holds_grant, key, problem_type, put_object,
    quorate_bin, send, signed_get,
};

const SKEW_MS: i64 = 5 * 60_000;
const NAMES: [&str; 4] = ["org-a", "org-b", "org-c", "org-d"];
/// Blocks to watch after the skew starts: the proposer rotation passes
/// the skewed member at least twice.
const BLOCKS_WATCHED: u64 = 9;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn status(api: &ApiClient) -> serde_json::Value {
    api.get("/v1/status").unwrap().json().unwrap()
}

/// A grant proposal on `api` for `grantee`, one day long; returns its id.
fn propose_grant(api: &ApiClient, grantee: &str, resource: &str) -> String {
    let body = serde_json::json!({ "grant": {
        "grantee": grantee, "resources": [resource], "actions": ["read"],
        "not_after_ms": now_ms() + 86_400_000,
    }});
    let r = api.post_json("/v1/proposals", &body).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    r.json().unwrap()["id"].as_str().unwrap().to_owned()
}

/// A GET to `gateway` signed by `signer` with `created` = `created_secs`,
/// addressed to the gateway's member.
fn signed_get_created(
    gateway: &Gateway,
    path: &str,
    signer: &quorate_did::Keypair,
    created_secs: i64,
) -> quorate_testnet::client::Response {
    let audience = gateway.did.clone();
    let target = format!("{}{path}", gateway.origin());
    let parts = RequestParts {
        method: "GET",
        target_uri: &target,
        headers: &[("quorate-audience", &audience)],
    };
    let covered = ["@method", "@target-uri", "quorate-audience"];
    let sig = sign_request(&parts, &covered, signer, created_secs, "skewed-1").unwrap();
    let headers = vec![
        ("Quorate-Audience".to_owned(), audience),
        ("Signature-Input".to_owned(), sig.signature_input),
        ("Signature".to_owned(), sig.signature),
    ];
    send(&gateway.client, path, &headers)
}

fn org_d_skewed_by(offset_ms: i64) {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let restarted = std::process::Command::new(quorate_bin())
        .args(["testnet", "restart", "org-d", "--dir", net.path_str()])
        .env("QUORATE_FAULT", format!("clock-offset-ms:{offset_ms}"))
        .output()
        .unwrap();
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let apis: Vec<ApiClient> = NAMES.iter().map(|n| admin(&net, n)).collect();
    eventually(
        Duration::from_secs(10),
        "org-d's clock skewed (the quorate binary needs the fault-injection feature)",
        || {
            std::fs::read_to_string(net.home("org-d").join("node.log"))
                .is_ok_and(|log| log.contains("FAULT INJECTION ON"))
        },
    );
    let start_ms = now_ms();
    let start_height = status(&apis[0])["height"].as_u64().unwrap();

    // An honest grant to the skewed member, and one the skewed member
    // proposes by its own clock.
    put_object(&apis[0], "skew/data.csv", "text/csv", b"when,what\n");
    let honest = propose_grant(&apis[0], "org-d", "skew/*");
    let by_skewed = propose_grant(&apis[3], "org-a", "from-d/*");
    eventually(
        Duration::from_secs(20),
        "the honest grant committed on every node",
        || NAMES.iter().all(|n| holds_grant(&net, n, &honest)),
    );
    eventually(
        Duration::from_secs(25),
        "the consortium kept committing",
        || {
            status(&apis[0])["height"]
                .as_u64()
                .is_some_and(|h| h >= start_height + BLOCKS_WATCHED)
        },
    );
    if offset_ms < 0 {
        eventually(
            Duration::from_secs(10),
            "the grant proposed 5 minutes in the past committed",
            || holds_grant(&net, "org-a", &by_skewed),
        );
    } else {
        assert!(
            !holds_grant(&net, "org-a", &by_skewed),
            "a proposal from 5 minutes in the future committed"
        );
    }

    // What org-d signs by its clock is refused by org-a's gateway; the same
    // request signed by the honest clock is served.
    let path = "/gateway/objects/skew/data.csv";
    let d_key = key(&net, "org-d");
    let skewed_secs = (now_ms() as i64 + offset_ms) / 1_000;
    let gateway_a = gateway(&net, "org-a");
    let refused = signed_get_created(&gateway_a, path, &d_key, skewed_secs);
    assert_eq!(
        (refused.status, problem_type(&refused).as_str()),
        (401, "bad-signature")
    );
    assert!(
        refused.text().contains("from now"),
        "not the skew: {}",
        refused.text()
    );
    let served = signed_get(&gateway_a, path, &d_key, "honest-1").0;
    assert_eq!(
        (served.status, served.body.as_slice()),
        (200, &b"when,what\n"[..])
    );

    // Who noticed: the honest validators refuse the proposals of a member
    // ahead of them; a member behind refuses everyone's.
    let noticed = |i: usize| {
        status(&apis[i])["rejected"]
            .as_object()
            .is_some_and(|r| r.keys().any(|k| k.contains("ahead of this node's clock")))
    };
    if offset_ms > 0 {
        assert!((0..3).all(noticed), "the honest nodes did not count it");
    } else {
        assert!(noticed(3), "org-d did not count the others' proposals");
    }
    let end_ms = now_ms();

    // One chain, and its clock stayed with the honest clocks.
    let common = net.down_and_verify(&NAMES);
    let ledger = Ledger::open(&net.home("org-a").join("data/ledger.redb")).unwrap();
    let state = ledger.chain().unwrap().state();
    let mut by_d = 0;
    let mut offsets = Vec::new();
    for h in start_height + 1..=common {
        let header = ledger.block(h).unwrap().unwrap().block.header;
        let time = header.time.0;
        assert!(
            time >= start_ms.saturating_sub(5_000) && time <= end_ms + BLOCK_TIME_AHEAD_MAX_MS,
            "block {h}: time {time} outside [{start_ms} - 5 s, {end_ms} + bound]"
        );
        offsets.push(time as i64 - end_ms as i64);
        if state
            .members
            .get(&header.proposer)
            .is_some_and(|m| m.name == "org-d")
        {
            by_d += 1;
        }
    }
    // Paced by the heartbeat (1 s): a proposal that cannot go in yet must
    // not make proposers agree empty blocks back to back.
    let in_window = offsets.iter().filter(|&&o| o <= 0).count() as u64;
    let elapsed_s = (end_ms - start_ms) / 1_000;
    assert!(
        in_window <= elapsed_s + 4,
        "{in_window} blocks in {elapsed_s} s: not paced by the heartbeat"
    );
    let last = ledger.block(common).unwrap().unwrap().block.header.time.0;
    assert!(
        last + 10_000 >= end_ms,
        "the chain's clock fell behind: last block at {last}, now {end_ms}"
    );
    eprintln!(
        "offset {offset_ms} ms: heights {start_height}..={common} over {elapsed_s} s, \
         {by_d} proposed by org-d, block time - end of test: {offsets:?}"
    );
    if offset_ms > 0 {
        assert_eq!(by_d, 0, "a block from org-d's future committed");
    }
}

#[test]
fn n4f1_a_member_five_minutes_ahead_cannot_move_block_time() {
    org_d_skewed_by(SKEW_MS);
}

#[test]
fn n4f1_a_member_five_minutes_behind_cannot_move_block_time() {
    org_d_skewed_by(-SKEW_MS);
}
