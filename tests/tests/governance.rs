//! Goal: governance as a new user meets it on a testnet of real processes
//! under the default endorsement policy. The README's walk-through runs
//! command after command: `--wait` returns at commit, so the fetch straight
//! after a grant is served and the one straight after its revocation is
//! refused. A third party's removal of a member is left to people: it stays
//! pending, each rejection (with its reason) reaches the proposer, and it
//! fails on every member once a quorum is out of reach; `--wait` says so
//! and exits non-zero. A policy replaced through the CLI takes effect, is
//! counted in /metrics, and a bad one is refused with the rule named. A
//! purpose-bound grant serves only a fetch that declares its purpose.
//! Method: `quorate testnet up` (4 nodes, approval = "policy", the
//! default), then only the `quorate` CLI and the local API; every wait
//! bounded.

use std::time::Duration;

use quorate_tests::{Events, Testnet, admin, eventually, home_arg, run, run_ok};

fn home(net: &Testnet, name: &str) -> String {
    home_arg(&net.home(name))
}

/// `quorate ARGS` that must fail; returns its stderr.
fn run_err(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "quorate {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn show(net: &Testnet, name: &str, id: &str) -> serde_json::Value {
    serde_json::from_str(&run_ok(&[
        "proposal",
        "show",
        id,
        "--home",
        &home(net, name),
    ]))
    .unwrap()
}

#[test]
fn the_default_policy_the_readme_sequence_and_a_failed_removal() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let (a, b, c, d) = (
        home(&net, "org-a"),
        home(&net, "org-b"),
        home(&net, "org-c"),
        home(&net, "org-d"),
    );
    // org-a's live events, from the start: they announce the removal below
    // opening and how it ends.
    let token_a = std::fs::read_to_string(net.home("org-a").join("admin.token")).unwrap();
    let mut events = Events::open(admin(&net, "org-a").address(), token_a.trim(), None);
    let policy = run_ok(&["policy", "show", "--home", &b]);
    assert!(
        policy.starts_with("# source: file") && policy.contains("grants-by-their-grantor"),
        "{policy}"
    );

    // The README's walk-through, one command after another.
    let csv = net.dir.path().join("2026-11.csv");
    std::fs::write(&csv, "id,port\n1,Rotterdam\n").unwrap();
    let path = "datasets/shipments/2026-11.csv";
    run_ok(&[
        "data",
        "put",
        "--home",
        &a,
        path,
        &home_arg(&csv),
        "--content-type",
        "text/csv",
    ]);
    let refused = run_err(&["peer", "get", "--home", &b, "org-a", path]);
    assert!(refused.contains("no-grant"), "{refused}");
    let granted = run(&[
        "proposal",
        "grant",
        "--home",
        &a,
        "--to",
        "org-b",
        "--resource",
        "datasets/shipments/*",
        "--action",
        "read",
        "--for",
        "30d",
        "--wait",
    ]);
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    let grant = String::from_utf8(granted.stdout).unwrap().trim().to_owned();
    assert_eq!(grant.len(), 64, "stdout is the id alone: {grant:?}");
    let said = String::from_utf8_lossy(&granted.stderr);
    assert!(said.contains("committed at height"), "{said}");
    // Straight after: served (the grant is committed on org-a, whose
    // gateway decides).
    assert_eq!(
        run_ok(&["peer", "get", "--home", &b, "org-a", path]),
        "id,port\n1,Rotterdam\n"
    );
    let view = show(&net, "org-c", &grant);
    assert_eq!(view["state"], "committed", "{view}");
    assert_eq!(
        view["policy"], "rule grants-by-their-grantor: endorse",
        "{view}"
    );
    // Revoked by its grantor, alone, and refused straight after.
    run_ok(&["proposal", "revoke", "--home", &a, &grant, "--wait", "60s"]);
    let refused = run_err(&["peer", "get", "--home", &b, "org-a", path]);
    assert!(refused.contains("revoked-grant"), "{refused}");

    // org-a proposes removing org-d: a third party's membership change,
    // which no member's default policy endorses.
    let removal = run_ok(&["proposal", "remove-member", "--home", &a, "org-d"]);
    let removal = removal.trim();
    eventually(Duration::from_secs(20), "org-b judged the removal", || {
        show(&net, "org-b", removal)["policy"] == "rule everything-else: ask a person"
    });
    let waited = run_err(&["proposal", "show", removal, "--home", &b, "--wait"]);
    assert!(
        waited.contains("unexpected argument"),
        "show takes no --wait: {waited}"
    );
    let timed_out = run_err(&["proposal", "approve", removal, "--home", &b, "--wait", "2s"]);
    assert!(
        timed_out.contains("still pending after 2s"),
        "two of the three needed: {timed_out}"
    );
    // A decision is final.
    let twice = run_err(&["proposal", "reject", removal, "--home", &b]);
    assert!(
        twice.contains("already-decided") || twice.contains("decision is final"),
        "{twice}"
    );

    run_ok(&[
        "proposal",
        "reject",
        removal,
        "--home",
        &d,
        "--reason",
        "we are staying",
    ]);
    eventually(
        Duration::from_secs(20),
        "org-a sees org-d's rejection",
        || {
            let view = show(&net, "org-a", removal);
            view["rejections"][0]["member"] == "org-d"
                && view["rejections"][0]["reason"] == "we are staying"
        },
    );
    assert_eq!(
        show(&net, "org-a", removal)["state"],
        "pending",
        "three could still endorse"
    );
    run_ok(&[
        "proposal",
        "reject",
        removal,
        "--home",
        &c,
        "--reason",
        "no cause given",
    ]);
    for name in ["org-a", "org-b", "org-c", "org-d"] {
        eventually(
            Duration::from_secs(20),
            "the removal failed everywhere",
            || show(&net, name, removal)["state"] == "failed",
        );
    }
    events.until("proposal-opened", |e| e["id"] == removal);
    let (_, closed) = events.until("proposal-closed", |e| e["id"] == removal);
    assert_eq!(closed["state"]["state"], "failed", "{closed}");
    assert!(
        closed["state"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("we are staying")),
        "{closed}"
    );
    let reason = show(&net, "org-a", removal)["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("org-c (no cause given)") && reason.contains("org-d (we are staying)"),
        "{reason}"
    );
    let closed = run_err(&["proposal", "approve", removal, "--home", &a]);
    assert!(
        closed.contains("proposal-closed") || closed.contains("no longer be decided"),
        "{closed}"
    );
    // It is still listed, with how it ended.
    let listed = run_ok(&["proposal", "list", "--home", &b]);
    assert!(
        listed.contains(removal) && listed.contains("\"failed\""),
        "{listed}"
    );
    let open = run_ok(&["proposal", "list", "--home", &b, "--open"]);
    assert!(!open.contains(removal), "{open}");

    // org-b replaces its policy: grants to org-c are rejected. org-a's
    // grant to org-c still commits (org-a, org-c and org-d make three),
    // and the proposer sees org-b's reason.
    let file = net.dir.path().join("policy.toml");
    std::fs::write(
        &file,
        "[[rules]]\nname = \"nothing-for-org-c\"\nkinds = [\"grant\"]\ngrantees = [\"org-c\"]\noutcome = \"reject\"\nreason = \"org-c is under review\"\n\n[[rules]]\nname = \"the-rest\"\noutcome = \"endorse\"\n",
    )
    .unwrap();
    let set = run_ok(&["policy", "set", "--home", &b, &home_arg(&file)]);
    assert!(set.contains("2 rules"), "{set}");
    let out = run(&[
        "proposal",
        "grant",
        "--home",
        &a,
        "--to",
        "org-c",
        "--resource",
        "reports/*",
        "--for",
        "12h",
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let to_c = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    eventually(
        Duration::from_secs(20),
        "org-b's rejection reached org-a",
        || show(&net, "org-a", &to_c)["rejections"][0]["reason"] == "org-c is under review",
    );
    let metrics = admin(&net, "org-b").get("/metrics").unwrap().text();
    assert!(
        metrics.contains(
            "quorate_endorsement_policy_decisions_total{outcome=\"reject\",rule=\"nothing-for-org-c\"} 1"
        ),
        "{metrics}"
    );
    // The file survives a restart of the node's view: shown from the file.
    assert!(run_ok(&["policy", "show", "--home", &b]).contains("nothing-for-org-c"));

    // A grant bound to a purpose serves only requests that declare it, and
    // the owner's audit record says what was declared.
    run_ok(&[
        "proposal",
        "grant",
        "--home",
        &a,
        "--to",
        "org-b",
        "--resource",
        "datasets/*",
        "--for",
        "1h",
        "--purpose",
        "customs clearance",
        "--wait",
    ]);
    let undeclared = run_err(&["peer", "get", "--home", &b, "org-a", path]);
    assert!(undeclared.contains("purpose-mismatch"), "{undeclared}");
    let other = run_err(&[
        "peer",
        "get",
        "--home",
        &b,
        "org-a",
        path,
        "--purpose",
        "marketing",
    ]);
    assert!(other.contains("purpose-mismatch"), "{other}");
    let served = run_ok(&[
        "peer",
        "get",
        "--home",
        &b,
        "org-a",
        path,
        "--purpose",
        "customs clearance",
    ]);
    assert_eq!(served, "id,port\n1,Rotterdam\n");
    eventually(
        Duration::from_secs(10),
        "the declared purpose in org-a's audit log",
        || {
            let records = admin(&net, "org-a")
                .get("/v1/audit?limit=10")
                .unwrap()
                .json()
                .unwrap();
            records
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["purpose"] == "customs clearance" && r["decision"] == "allow")
                && records
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["purpose"] == "marketing" && r["reason"] == "purpose-mismatch")
        },
    );

    // A bad policy is refused, naming its rule, and changes nothing.
    std::fs::write(
        &file,
        "[[rules]]\nname = \"no-reason\"\noutcome = \"reject\"\n",
    )
    .unwrap();
    let bad = run_err(&["policy", "set", "--home", &b, &home_arg(&file)]);
    assert!(
        bad.contains("rule \"no-reason\"") && bad.contains("422"),
        "{bad}"
    );
    assert!(run_ok(&["policy", "show", "--home", &b]).contains("nothing-for-org-c"));
}
