//! Goal: the audit log can be trusted. While its writes fail (a full
//! disk), the gateway serves nobody, on either transport, and `/readyz`
//! and `/metrics` say why; once writes succeed again it serves, and the
//! chain has no gap (the record that failed is written on the retry). A
//! log whose last records were tampered with is reported at start (log,
//! metric, `/readyz`), and the node goes on appending. The log moves into
//! segments at its configured size, and `quorate audit verify --home`
//! checks the chain across them, as does a verifier written in Python
//! from `docs/audit-log.md` alone.
//! Method: a 2-node testnet; org-a restarted with the test-only fault
//! `audit-write-fails:FLAG` (writes fail while FLAG exists; the quorate
//! binary needs the fault-injection feature), then stopped, its log
//! edited, and started again.

use std::time::Duration;

use quorate_tests::{
    Testnet, admin, eventually, gateway, home_arg, key, problem_type, put_object, quorate_bin, run,
    signed_get,
};

/// `tests/audit/verify_audit.py` (Python's `blake3`, installed by
/// `.ci/run`) on `data`: its output. `None` when the package is absent,
/// unless QUORATE_REQUIRE_BLAKE3 is set.
fn independent_verify(data: &std::path::Path) -> Option<String> {
    let present = std::process::Command::new("python3")
        .args(["-c", "import blake3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("QUORATE_REQUIRE_BLAKE3").is_none(),
            "python3 with blake3 is required (QUORATE_REQUIRE_BLAKE3 is set)"
        );
        eprintln!("skipped the independent verifier: python3 blake3 is not installed");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/audit/verify_audit.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn a_gateway_that_cannot_audit_serves_nobody_and_a_tampered_log_is_reported() {
    let (net, _) = Testnet::up(&["--nodes", "2"]);
    // Small segments, so that the log moves into several.
    let config = net.home("org-a").join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("audit_segment_bytes = 268435456"),
        "template changed"
    );
    std::fs::write(
        &config,
        text.replace(
            "audit_segment_bytes = 268435456",
            "audit_segment_bytes = 65536",
        ),
    )
    .unwrap();
    let flag = net.dir.path().join("disk-full");
    let restarted = std::process::Command::new(quorate_bin())
        .args(["testnet", "restart", "org-a", "--dir", net.path_str()])
        .env(
            "QUORATE_FAULT",
            format!("audit-write-fails:{}", flag.display()),
        )
        .output()
        .unwrap();
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let (a, b) = (admin(&net, "org-a"), admin(&net, "org-b"));
    eventually(Duration::from_secs(20), "org-a ready", || {
        a.get("/readyz").is_ok_and(|r| r.status == 200)
    });
    put_object(&a, "reports/q3.csv", "text/csv", b"quarter,total\nQ3,9\n");
    net.grant("org-a", "org-b", "reports/*", &["org-a", "org-b"]);
    // Every read org-b is served, counted: each must be in the log.
    let served = std::cell::Cell::new(0usize);
    let read = || {
        let response = b.get("/v1/peers/org-a/objects/reports/q3.csv").unwrap();
        if response.status == 200 {
            served.set(served.get() + 1);
        }
        response
    };
    eventually(Duration::from_secs(20), "org-b served", || {
        read().status == 200
    });
    // Enough reads for a few segments (a record is ~450 bytes).
    for _ in 0..400 {
        assert_eq!(read().status, 200);
    }

    // The disk fills: the next record cannot be written, and from then
    // on the gateway serves nobody.
    std::fs::write(&flag, b"").unwrap();
    eventually(Duration::from_secs(10), "org-a refuses to serve", || {
        let r = read();
        r.status == 503 && problem_type(&r) == "audit-unavailable"
    });
    let gw = gateway(&net, "org-a");
    let key_b = key(&net, "org-b");
    let (signed, _) = signed_get(&gw, "/gateway/objects/reports/q3.csv", &key_b, "full-1");
    assert_eq!(
        (signed.status, problem_type(&signed).as_str()),
        (503, "audit-unavailable")
    );
    assert!(!signed.text().contains("Q3,9"));
    let ready = a.get("/readyz").unwrap();
    assert_eq!(
        (ready.status, problem_type(&ready).as_str()),
        (503, "audit-unavailable")
    );
    let metrics = a.get("/metrics").unwrap().text();
    assert!(metrics.contains("quorate_audit_writable 0"), "{metrics}");

    // Space again: the retry writes what waited, and serving resumes.
    std::fs::remove_file(&flag).unwrap();
    eventually(Duration::from_secs(10), "org-a serves again", || {
        read().status == 200
    });
    assert_eq!(a.get("/readyz").unwrap().status, 200);
    let metrics = a.get("/metrics").unwrap().text();
    assert!(metrics.contains("quorate_audit_writable 1"), "{metrics}");
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("quorate_audit_write_failures_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap();
    assert!(failures >= 1, "{metrics}");

    // The chain has no gap: every record verifies, and every read served
    // is among them, the one decided as the disk filled too.
    net.cli(&["testnet", "kill", "org-a"]);
    let log = net.home("org-a").join("data/audit.log");
    let verified = run(&["audit", "verify", "--home", &home_arg(&net.home("org-a"))]);
    let stdout = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(verified.status.success(), "{verified:?}");
    let files: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("files:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(files >= 3, "{stdout}");
    // A verifier written from docs/audit-log.md alone agrees.
    if let Some(independent) = independent_verify(&net.home("org-a").join("data")) {
        let head = |text: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix("head:"))
                .map(|h| h.trim().to_owned())
        };
        assert_eq!(head(&independent), head(&stdout), "{independent}\n{stdout}");
        let records = |text: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix("records:"))
                .map(|h| h.trim().to_owned())
        };
        assert_eq!(records(&independent), records(&stdout));
    }
    // Every file of the chain, oldest first.
    let mut chain: Vec<std::path::PathBuf> =
        std::fs::read_dir(net.home("org-a").join("data/audit"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    chain.sort();
    chain.push(log.clone());
    let text: String = chain
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let allows = text
        .lines()
        .filter(|l| {
            l.contains("\"action\":\"read\",\"resource\":\"reports/q3.csv\",\"decision\":\"allow\"")
        })
        .count();
    assert_eq!(allows, served.get(), "allowed reads recorded:\n{text}");

    // Tampered with while stopped: the last record's bytes changed (in
    // the current file, or the last segment if that one is new).
    let target = chain
        .iter()
        .rev()
        .find(|f| std::fs::metadata(f).unwrap().len() > 0)
        .unwrap()
        .clone();
    let text = std::fs::read_to_string(&target).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last = lines.len() - 1;
    let bytes_field = lines[last]
        .split(",\"bytes\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .unwrap()
        .to_owned();
    lines[last] = lines[last].replacen(
        &format!("\"bytes\":{bytes_field}"),
        &format!("\"bytes\":{}", bytes_field.parse::<u64>().unwrap() + 1),
        1,
    );
    std::fs::write(&target, lines.join("\n") + "\n").unwrap();
    net.cli(&["testnet", "restart", "org-a"]);
    eventually(Duration::from_secs(20), "org-a reports the break", || {
        a.get("/readyz")
            .is_ok_and(|r| r.status == 503 && problem_type(&r) == "audit-broken")
    });
    let metrics = a.get("/metrics").unwrap().text();
    assert!(
        metrics.contains("quorate_audit_chain_broken 1"),
        "{metrics}"
    );
    let node_log = std::fs::read_to_string(net.home("org-a").join("node.log")).unwrap();
    assert!(node_log.contains("is broken"), "the node's log names it");
    // It still serves, and records.
    eventually(
        Duration::from_secs(20),
        "org-b served after the break",
        || read().status == 200,
    );
}
