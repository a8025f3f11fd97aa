//! Goal: a member writes into another's namespace only under a grant with
//! `write` on the path, and deletes only under one with `delete`: through
//! its own node with `quorate peer put|rm` (libp2p, the body in chunks,
//! from a file or a pipe) and with a signed HTTPS PUT whose covered
//! `Content-Digest` must be the body's. The owner stores exactly what was
//! sent, refuses the rest with a stable problem type, and its audit log
//! names the writer, the bytes and the digest.
//! Method: a 2-node testnet; the real CLI as child processes; signed
//! requests to org-a's TLS gateway.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use quorate_api::signature::content_digest_sha256;
use quorate_tests::{
    Testnet, admin, eventually, gateway, holds_grant, home_arg, key, problem_type, quorate_bin,
    run, run_ok, signed_put,
};

/// A body of `len` bytes that differs everywhere (so a misplaced chunk
/// shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn grant(net: &Testnet, actions: &[&str], resource: &str) -> String {
    let mut args = vec![
        "proposal".to_owned(),
        "grant".to_owned(),
        "--home".to_owned(),
        home_arg(&net.home("org-a")),
        "--to".to_owned(),
        "org-b".to_owned(),
        "--resource".to_owned(),
        resource.to_owned(),
        "--for".to_owned(),
        "1d".to_owned(),
    ];
    for action in actions {
        args.extend(["--action".to_owned(), (*action).to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = run_ok(&args).trim().to_owned();
    eventually(Duration::from_secs(20), "the grant committed", || {
        ["org-a", "org-b"].iter().all(|n| holds_grant(net, n, &id))
    });
    id
}

#[test]
fn a_member_writes_and_deletes_only_under_its_grants_and_the_owner_keeps_exactly_what_was_sent() {
    let (net, _) = Testnet::up(&["--nodes", "2"]);
    let home_b = home_arg(&net.home("org-b"));
    let owner = admin(&net, "org-a");
    let files = tempfile::tempdir().unwrap();

    // No grant yet: refused, nothing stored.
    let small = files.path().join("readings.csv");
    std::fs::write(&small, b"station,reading\nnorth,12.5\n").unwrap();
    let refused = run(&[
        "peer",
        "put",
        "--home",
        &home_b,
        "org-a",
        "inbox/readings.csv",
        &home_arg(&small),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("no-grant"), "{stderr}");
    assert_eq!(
        owner.get("/v1/objects/inbox/readings.csv").unwrap().status,
        404
    );

    let write_grant = grant(&net, &["read", "write"], "inbox/*");

    // From a file.
    let stored = run_ok(&[
        "peer",
        "put",
        "--home",
        &home_b,
        "org-a",
        "inbox/readings.csv",
        &home_arg(&small),
        "--content-type",
        "text/csv",
    ]);
    assert!(
        stored.starts_with("stored inbox/readings.csv at org-a"),
        "{stored}"
    );
    let kept = owner.get("/v1/objects/inbox/readings.csv").unwrap();
    assert_eq!(kept.status, 200);
    assert_eq!(kept.body, std::fs::read(&small).unwrap());
    assert_eq!(kept.content_type.as_deref(), Some("text/csv"));

    // From a pipe, several chunks long, create-only: stored whole.
    let big = pattern(5 * 1024 * 1024 + 321);
    let mut child = Command::new(quorate_bin())
        .args([
            "peer",
            "put",
            "--home",
            &home_b,
            "org-a",
            "inbox/series.bin",
            "-",
            "--if-absent",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&big).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = content_digest_sha256(&big);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));
    assert_eq!(owner.get("/v1/objects/inbox/series.bin").unwrap().body, big);
    // Create-only again: refused, the object unchanged.
    let again = run(&[
        "peer",
        "put",
        "--home",
        &home_b,
        "org-a",
        "inbox/series.bin",
        &home_arg(&small),
        "--if-absent",
    ]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("an object exists at this path"),
        "{stderr}"
    );
    assert_eq!(owner.get("/v1/objects/inbox/series.bin").unwrap().body, big);

    // Outside the grant's resources.
    let outside = run(&[
        "peer",
        "put",
        "--home",
        &home_b,
        "org-a",
        "reports/q3.csv",
        &home_arg(&small),
    ]);
    let stderr = String::from_utf8_lossy(&outside.stderr);
    assert!(
        !outside.status.success() && stderr.contains("out-of-scope"),
        "{stderr}"
    );

    // Signed HTTPS: the covered digest must be the body's.
    let door = gateway(&net, "org-a");
    let signer = key(&net, "org-b");
    let body = b"station,reading\nsouth,3.25\n";
    let put = signed_put(
        &door,
        "/gateway/objects/inbox/south.csv",
        &signer,
        "mw-1",
        body,
        &content_digest_sha256(body),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.json().unwrap()["digest"], content_digest_sha256(body));
    let lying = signed_put(
        &door,
        "/gateway/objects/inbox/north.csv",
        &signer,
        "mw-2",
        b"something else",
        &content_digest_sha256(body),
    );
    assert_eq!(
        (lying.status, problem_type(&lying).as_str()),
        (400, "digest-mismatch")
    );
    assert_eq!(
        owner.get("/v1/objects/inbox/north.csv").unwrap().status,
        404
    );

    // A delete needs `delete`: refused under the write grant, done under
    // a delete grant.
    let rm = |path: &str| run(&["peer", "rm", "--home", &home_b, "org-a", path]);
    let refused = rm("inbox/south.csv");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("action-not-granted"),
        "{stderr}"
    );
    grant(&net, &["delete"], "inbox/*");
    let deleted = rm("inbox/south.csv");
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert_eq!(
        owner.get("/v1/objects/inbox/south.csv").unwrap().status,
        404
    );

    // The owner's audit log: each write once, with writer, bytes, digest.
    let org_b = key(&net, "org-b").did().to_string();
    let records = owner.get("/v1/audit?limit=100").unwrap().json().unwrap();
    let records = records.as_array().unwrap();
    let writes: Vec<_> = records
        .iter()
        .filter(|r| r["action"] == "write" && r["decision"] == "allow")
        .collect();
    assert_eq!(writes.len(), 3, "{records:#?}");
    let series = writes
        .iter()
        .find(|r| r["resource"] == "inbox/series.bin")
        .unwrap();
    assert_eq!(series["caller"], org_b.as_str());
    assert_eq!(series["transport"], "p2p");
    assert_eq!(series["bytes"], big.len() as u64);
    assert_eq!(series["digest"], digest.as_str());
    assert_eq!(series["grant"], write_grant.as_str());
    let reasons: Vec<_> = records
        .iter()
        .filter(|r| r["action"] == "write" && r["decision"] == "deny")
        .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    for reason in ["no-grant", "changed", "out-of-scope", "digest-mismatch"] {
        assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    }
    net.cli(&["testnet", "down"]);
}
