//! Goal: every refusal the gateway can give, through real HTTP against a
//! real node, with the right status and problem type, audited, and no data
//! served: a non-member's key, an action the grant does not allow, a grant
//! not yet valid, a grant that expired, a grant's rate limit (429 with
//! Retry-After), an oversized upload (413), and a node whose ledger went
//! stale because the consortium lost its quorum (503, fail closed) until
//! the quorum is back.
//! Method: a 4-node testnet; org-a's config tightened and restarted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quorate_tests::{Testnet, admin, eventually, gateway, grants, key, problem_type, signed_get};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn each_refusal_has_its_status_and_type_and_serves_nothing() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let config = net.home("org-a").join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("max_ledger_age = \"30s\"", "max_ledger_age = \"2s\"")
        .replace(
            "object_bytes_max = 1073741824",
            "object_bytes_max = 1048576",
        );
    assert!(
        text.contains("\"2s\"") && text.contains("1048576"),
        "template changed"
    );
    std::fs::write(&config, text).unwrap();
    net.cli(&["testnet", "restart", "org-a"]);
    let a = admin(&net, "org-a");
    eventually(Duration::from_secs(20), "org-a back", || {
        a.get("/v1/status")
            .ok()
            .and_then(|r| r.json().ok())
            .is_some_and(|s| s["peers"] == 3)
    });

    // Uploads over the limit are cut off with 413 and leave nothing.
    let big = vec![7u8; 1024 * 1024 + 1];
    let put = a
        .request(
            "PUT",
            "/v1/objects/reports/big.bin",
            Some(("application/octet-stream", &big)),
        )
        .unwrap();
    assert_eq!(
        (put.status, problem_type(&put).as_str()),
        (413, "too-large")
    );
    assert_eq!(a.get("/v1/objects/reports/big.bin").unwrap().status, 404);
    let secret = b"quarterly figures".to_vec();
    for path in ["reports/q3.csv", "reports/q4.csv", "metrics/load.csv"] {
        let put = a
            .request(
                "PUT",
                &format!("/v1/objects/{path}"),
                Some(("text/csv", &secret)),
            )
            .unwrap();
        assert_eq!(put.status, 201);
    }

    // Grants from A: B may only `list` reports; C may read q4 from in an
    // hour; D may read q3 for a few seconds; B may read metrics 2 per 60 s.
    let now = now_ms();
    let propose = |body: serde_json::Value| {
        let r = a
            .post_json("/v1/proposals", &serde_json::json!({ "grant": body }))
            .unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
        r.json().unwrap()["id"].as_str().unwrap().to_owned()
    };
    let ids = [
        propose(
            serde_json::json!({"grantee": "org-b", "resources": ["reports/*"], "actions": ["list"], "not_after_ms": now + 3_600_000}),
        ),
        propose(
            serde_json::json!({"grantee": "org-c", "resources": ["reports/q4.csv"], "actions": ["read"], "not_before_ms": now + 3_600_000, "not_after_ms": now + 7_200_000}),
        ),
        propose(
            serde_json::json!({"grantee": "org-d", "resources": ["reports/q3.csv"], "actions": ["read"], "not_after_ms": now + 4_000}),
        ),
        propose(
            serde_json::json!({"grantee": "org-b", "resources": ["metrics/*"], "actions": ["read"], "not_after_ms": now + 3_600_000, "rate_limit": {"requests": 2, "per_seconds": 60}}),
        ),
    ];
    eventually(
        Duration::from_secs(20),
        "four grants committed on A",
        || {
            let committed = grants(&net.home("org-a"));
            ids.iter()
                .all(|id| committed.iter().any(|g| g["id"] == id.as_str()))
        },
    );

    let get = |who: &str, path: &str, nonce: &str| {
        signed_get(
            &gateway(&net, "org-a"),
            &format!("/gateway/objects/{path}"),
            &key(&net, who),
            nonce,
        )
        .0
    };
    let refused = |response: quorate_testnet::client::Response, status: u16, code: &str| {
        assert_eq!(
            (response.status, problem_type(&response).as_str()),
            (status, code)
        );
        assert!(
            !response.text().contains("quarterly"),
            "data leaked in a refusal"
        );
    };

    // D's grant works while it lasts, then it expires.
    let ok = get("org-d", "reports/q3.csv", "d-1");
    assert_eq!((ok.status, &ok.body), (200, &secret));
    refused(
        get("org-b", "reports/q3.csv", "b-1"),
        403,
        "action-not-granted",
    );
    refused(get("org-c", "reports/q4.csv", "c-1"), 403, "not-yet-valid");
    let stranger = quorate_did::Keypair::generate().unwrap();
    let response = signed_get(
        &gateway(&net, "org-a"),
        "/gateway/objects/reports/q3.csv",
        &stranger,
        "s-1",
    )
    .0;
    refused(response, 403, "not-a-member");

    // The grant's rate: 2 per 60 s, then 429 with Retry-After.
    for i in 0..2 {
        assert_eq!(
            get("org-b", "metrics/load.csv", &format!("m-{i}")).status,
            200
        );
    }
    let limited = get("org-b", "metrics/load.csv", "m-2");
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().unwrap() >= 1)
    );
    refused(limited, 429, "rate-limited");

    eventually(Duration::from_secs(10), "D's grant expired", || {
        get("org-d", "reports/q3.csv", &format!("d-{}", now_ms())).status == 403
    });
    refused(
        get("org-d", "reports/q3.csv", "d-last"),
        403,
        "expired-grant",
    );

    // Two of four members pause: no quorum, no commits; A fails closed.
    net.cli(&["testnet", "pause", "org-c"]);
    net.cli(&["testnet", "pause", "org-d"]);
    eventually(Duration::from_secs(10), "A's ledger stale", || {
        get("org-b", "metrics/load.csv", &format!("st-{}", now_ms())).status == 503
    });
    refused(get("org-b", "reports/q3.csv", "stale"), 503, "stale-ledger");
    net.cli(&["testnet", "resume", "org-c"]);
    net.cli(&["testnet", "resume", "org-d"]);
    eventually(Duration::from_secs(30), "A serving again", || {
        get("org-b", "reports/q3.csv", &format!("r-{}", now_ms())).status == 403
    });

    // Every one of these decisions is in A's audit log, refusals with 0 bytes.
    let audit = a
        .get("/v1/audit?decision=deny&limit=1000")
        .unwrap()
        .json()
        .unwrap();
    let reasons: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    for reason in [
        "action-not-granted",
        "not-yet-valid",
        "not-a-member",
        "rate-limited",
        "expired-grant",
        "stale-ledger",
    ] {
        assert!(reasons.contains(&reason), "no {reason} in {reasons:?}");
    }
}
