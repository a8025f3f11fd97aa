//! Goal: the mission end to end. Org A stores objects; B is refused until
//! a quorum commits A's grant; then B reads through its own node (libp2p,
//! several chunks for a large object, ranges) and directly with RFC 9421
//! signed HTTP; replays, forgeries, unsigned requests, out-of-scope paths,
//! path tricks and C (no grant) are refused; after A revokes, B is refused;
//! A's audit log holds every decision and its hash chain verifies.
//! Method: a 4-node testnet of real processes; every wait bounded.

use std::time::Duration;

use quorate_tests::{
    Testnet, admin, eventually, gateway, grants, home_arg, key, problem_type, run, run_ok, send,
    signed_get,
};

#[test]
fn grant_fetch_refuse_revoke_and_audit() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let (a, b, c) = (
        admin(&net, "org-a"),
        admin(&net, "org-b"),
        admin(&net, "org-c"),
    );
    let (key_b, key_c) = (key(&net, "org-b"), key(&net, "org-c"));
    // A's gateway: its own TLS listener, for members' signed requests.
    let gateway_a = gateway(&net, "org-a");

    // A stores a small CSV, a 9 MiB file (three libp2p chunks) and a
    // private object.
    let csv = b"id,port\n1,Rotterdam\n2,Antwerp\n".to_vec();
    let big: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for (path, body) in [
        ("datasets/shipments/2026-11.csv", &csv),
        ("datasets/shipments/big.bin", &big),
        ("private/payroll.csv", &csv),
    ] {
        let put = a
            .request(
                "PUT",
                &format!("/v1/objects/{path}"),
                Some(("text/csv", body)),
            )
            .unwrap();
        assert_eq!(put.status, 201, "{}", put.text());
    }

    // Before any grant: B is refused, over libp2p and over signed HTTP.
    let via_b = "/v1/peers/org-a/objects/datasets/shipments/2026-11.csv";
    let refused = b.get(via_b).unwrap();
    assert_eq!(
        (refused.status, problem_type(&refused).as_str()),
        (403, "no-grant")
    );
    let gateway_csv = "/gateway/objects/datasets/shipments/2026-11.csv";
    let (refused, _) = signed_get(&gateway_a, gateway_csv, &key_b, "n-0");
    assert_eq!(
        (refused.status, problem_type(&refused).as_str()),
        (403, "no-grant")
    );

    // A grants B read+list on its shipments; a quorum endorses it.
    let id = run_ok(&[
        "proposal",
        "grant",
        "--home",
        &home_arg(&net.home("org-a")),
        "--to",
        "org-b",
        "--resource",
        "datasets/shipments/*",
        "--action",
        "read",
        "--action",
        "list",
        "--for",
        "30d",
    ]);
    let id = id.trim().to_owned();
    eventually(Duration::from_secs(20), "the grant on A and B", || {
        ["org-a", "org-b"]
            .iter()
            .all(|n| grants(&net.home(n)).iter().any(|g| g["id"] == id.as_str()))
    });

    // B reads through its own node (libp2p) …
    let got = b.get(via_b).unwrap();
    assert_eq!((got.status, &got.body), (200, &csv));
    let got = b
        .get("/v1/peers/org-a/objects/datasets/shipments/big.bin")
        .unwrap();
    assert_eq!(got.status, 200);
    assert!(
        got.body == big,
        "the 9 MiB object arrived altered ({} bytes)",
        got.body.len()
    );
    let ranged = b
        .request_with(
            "GET",
            "/v1/peers/org-a/objects/datasets/shipments/big.bin",
            &[
                (
                    "Authorization",
                    &format!(
                        "Bearer {}",
                        std::fs::read_to_string(net.home("org-b").join("admin.token"))
                            .unwrap()
                            .trim()
                    ),
                ),
                ("Range", "bytes=4194300-4194310"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, big[4_194_300..=4_194_310]);
    let listing = b
        .get("/v1/peers/org-a/objects?prefix=")
        .unwrap()
        .json()
        .unwrap();
    let listed: Vec<&str> = listing["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "datasets/shipments/2026-11.csv",
            "datasets/shipments/big.bin"
        ],
        "private objects are not listed"
    );

    // … and directly with a signed request to A's gateway.
    let (got, headers) = signed_get(&gateway_a, gateway_csv, &key_b, "n-1");
    assert_eq!((got.status, &got.body), (200, &csv));
    // The same request again is a replay.
    let replay = send(&gateway_a.client, gateway_csv, &headers);
    assert_eq!(
        (replay.status, problem_type(&replay).as_str()),
        (401, "replayed")
    );
    // Unsigned, forged (C's key under B's keyid) and out-of-scope requests.
    let unsigned = gateway_a
        .client
        .request_with("GET", gateway_csv, &[], None)
        .unwrap();
    assert_eq!(
        (unsigned.status, problem_type(&unsigned).as_str()),
        (401, "unauthenticated")
    );
    let (_, mut forged) = signed_get(&gateway_a, gateway_csv, &key_c, "n-2");
    for (name, value) in &mut forged {
        if name == "Signature-Input" {
            *value = value.replace(&key_c.did().to_string(), &key_b.did().to_string());
        }
    }
    let forged = send(&gateway_a.client, gateway_csv, &forged);
    assert_eq!(
        (forged.status, problem_type(&forged).as_str()),
        (401, "bad-signature")
    );
    assert!(forged.text().find("Rotterdam").is_none());
    let (scope, _) = signed_get(
        &gateway_a,
        "/gateway/objects/private/payroll.csv",
        &key_b,
        "n-3",
    );
    assert_eq!(
        (scope.status, problem_type(&scope).as_str()),
        (403, "out-of-scope")
    );
    for sneaky in [
        "/gateway/objects/datasets/shipments/..%2F..%2Fprivate%2Fpayroll.csv",
        "/gateway/objects/datasets/shipments/%2e%2e/x",
    ] {
        let (tricked, _) = signed_get(&gateway_a, sneaky, &key_b, &format!("n-{sneaky}"));
        assert_eq!(
            (tricked.status, problem_type(&tricked).as_str()),
            (400, "bad-path"),
            "{sneaky}"
        );
    }
    // C holds no grant: refused on both paths.
    let (no_grant, _) = signed_get(&gateway_a, gateway_csv, &key_c, "n-4");
    assert_eq!(
        (no_grant.status, problem_type(&no_grant).as_str()),
        (403, "no-grant")
    );
    let via_c = c
        .get("/v1/peers/org-a/objects/datasets/shipments/2026-11.csv")
        .unwrap();
    assert_eq!(
        (via_c.status, problem_type(&via_c).as_str()),
        (403, "no-grant")
    );

    // A revokes, alone; from the next commit B is refused.
    run_ok(&[
        "proposal",
        "revoke",
        "--home",
        &home_arg(&net.home("org-a")),
        &id,
    ]);
    eventually(
        Duration::from_secs(20),
        "B refused after the revocation",
        || b.get(via_b).map(|r| r.status == 403).unwrap_or(false),
    );
    let revoked = b.get(via_b).unwrap();
    assert_eq!(problem_type(&revoked), "revoked-grant");
    let (revoked, _) = signed_get(&gateway_a, gateway_csv, &key_b, "n-5");
    assert_eq!(
        (revoked.status, problem_type(&revoked).as_str()),
        (403, "revoked-grant")
    );

    // A's audit log holds the allows and the refusals of both transports.
    // A request does not wait for its record to be written (the writer
    // batches), so the last refusals may reach the log just after.
    let expected = [
        ("p2p", "allow", None),
        ("http", "allow", None),
        ("p2p", "deny", Some("no-grant")),
        ("http", "deny", Some("replayed")),
        ("http", "deny", Some("unauthenticated")),
        ("http", "deny", Some("bad-signature")),
        ("http", "deny", Some("out-of-scope")),
        ("http", "deny", Some("bad-path")),
        ("http", "deny", Some("revoked-grant")),
        ("p2p", "deny", Some("revoked-grant")),
    ];
    let mut audit = serde_json::Value::Null;
    eventually(
        Duration::from_secs(10),
        "every decision in the audit log",
        || {
            audit = a.get("/v1/audit?limit=1000").unwrap().json().unwrap();
            let records = audit.as_array().unwrap();
            expected.iter().all(|(transport, decision, reason)| {
                records.iter().any(|r| {
                    r["transport"] == *transport
                        && r["decision"] == *decision
                        && reason.is_none_or(|reason| r["reason"] == reason)
                })
            })
        },
    );
    let records = audit.as_array().unwrap();
    let has = |transport: &str, decision: &str, reason: Option<&str>| {
        records.iter().any(|r| {
            r["transport"] == transport
                && r["decision"] == decision
                && reason.is_none_or(|reason| r["reason"] == reason)
        })
    };
    for (transport, decision, reason) in expected {
        assert!(
            has(transport, decision, reason),
            "no {transport} {decision} {reason:?} in the audit log"
        );
    }
    let denied_bytes: u64 = records
        .iter()
        .filter(|r| r["decision"] == "deny")
        .map(|r| r["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(denied_bytes, 0);

    let verified = run_ok(&["audit", "verify", "--home", &home_arg(&net.home("org-a"))]);
    assert!(verified.contains("OK"), "{verified}");
    // One changed byte in the log is caught.
    net.cli(&["testnet", "down"]);
    let log = net.home("org-a").join("data/audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"allow\"", "\"deny\"", 1)).unwrap();
    let out = run(&["audit", "verify", &home_arg(&log)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED"));
}
