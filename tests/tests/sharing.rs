//! Goal: members find and ask for each other's data as a new user would,
//! over real processes. An owner's catalog is DCAT in JSON-LD (a JSON-LD
//! processor expands it), and shows each member exactly the offers meant
//! for it, over libp2p and over signed HTTP alike. A member's access
//! request reaches the owner's queue; accepted, it becomes the owner's
//! grant, which the requester then uses (with the purpose it declared);
//! declined, the requester reads the owner's reason; a request outside the
//! offer it cites is refused with what is outside. A policy rule accepts
//! requests for public data on its own; a withdrawn request is closed on
//! both sides; the queue survives the owner's kill -9.
//! Method: `quorate testnet up` (3 nodes, default policy), then the
//! `quorate` CLI, the local API and a signed gateway request; every wait
//! bounded.

use std::time::Duration;

use quorate_tests::{Testnet, admin, eventually, gateway, home_arg, key, run, run_ok, signed_get};

fn home(net: &Testnet, name: &str) -> String {
    home_arg(&net.home(name))
}

/// `quorate ARGS` that must fail; returns its stderr.
fn run_err(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "quorate {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn ids(catalog: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = catalog["dcat:dataset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dct:identifier"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The request `id` as `name`'s node shows it.
fn request(net: &Testnet, name: &str, id: &str) -> serde_json::Value {
    json(&run_ok(&["access", "show", "--home", &home(net, name), id]))
}

/// Expands `document` with a JSON-LD processor (PyLD, installed by
/// `.ci/run`): the IRIs it stands for, as a processor reads them. `None`
/// when PyLD is absent, unless QUORATE_REQUIRE_PYLD is set.
fn expanded(document: &serde_json::Value) -> Option<serde_json::Value> {
    let present = std::process::Command::new("python3")
        .args(["-c", "import pyld"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("QUORATE_REQUIRE_PYLD").is_none(),
            "PyLD is required (QUORATE_REQUIRE_PYLD is set)"
        );
        eprintln!("skipped the JSON-LD expansion: PyLD is not installed");
        return None;
    }
    let script = "import json,sys\nfrom pyld import jsonld\nprint(json.dumps(jsonld.expand(json.load(sys.stdin))))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(document.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pyld could not expand the catalog (is pyld installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(json(&String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn catalogs_access_requests_and_their_outcomes() {
    let (net, _) = Testnet::up(&["--nodes", "3"]);
    let (a, b, c) = (
        home(&net, "org-a"),
        home(&net, "org-b"),
        home(&net, "org-c"),
    );

    // org-a offers shipments to every member, customs records to org-b.
    run_ok(&[
        "catalog",
        "offer",
        "--home",
        &a,
        "shipments",
        "--title",
        "Shipments",
        "--description",
        "Every shipment through our ports, one CSV a month",
        "--resource",
        "datasets/shipments/*",
        "--media-type",
        "text/csv",
        "--keyword",
        "logistics",
        "--schema-url",
        "https://example.org/schemas/shipments.json",
        "--action",
        "read",
        "--action",
        "list",
        "--longest",
        "30d",
        "--purpose",
        "customs clearance",
    ]);
    run_ok(&[
        "catalog",
        "offer",
        "--home",
        &a,
        "customs",
        "--title",
        "Customs declarations",
        "--resource",
        "datasets/customs/*",
        "--audience",
        "org-b",
    ]);
    let bad = run_err(&[
        "catalog",
        "offer",
        "--home",
        &a,
        "broken",
        "--title",
        "x",
        "--resource",
        "../etc",
    ]);
    assert!(bad.contains("resource") && bad.contains("422"), "{bad}");

    // What each member sees: org-b both, org-c the public one only.
    let seen_by_b = json(&run_ok(&[
        "peer", "catalog", "org-a", "--home", &b, "--json",
    ]));
    assert_eq!(ids(&seen_by_b), ["customs", "shipments"]);
    let seen_by_c = json(&run_ok(&[
        "peer", "catalog", "org-a", "--home", &c, "--json",
    ]));
    assert_eq!(ids(&seen_by_c), ["shipments"]);
    let shown = run_ok(&["peer", "catalog", "org-a", "--home", &c]);
    assert!(
        shown.contains("shipments  Shipments") && shown.contains("longest:  30 days"),
        "{shown}"
    );
    // The same over signed HTTP, straight to org-a's gateway.
    let (answer, _) = signed_get(
        &gateway(&net, "org-a"),
        "/gateway/catalog",
        &key(&net, "org-c"),
        "catalog-1",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(ids(&answer.json().unwrap()), ["shipments"]);
    // A JSON-LD processor reads it as DCAT and ODRL.
    if let Some(graph) = expanded(&seen_by_c) {
        let catalog = &graph[0];
        assert_eq!(catalog["@type"][0], "http://www.w3.org/ns/dcat#Catalog");
        let dataset = &catalog["http://www.w3.org/ns/dcat#dataset"][0];
        assert_eq!(dataset["@type"][0], "http://www.w3.org/ns/dcat#Dataset");
        let policy = &dataset["http://www.w3.org/ns/odrl/2/hasPolicy"][0];
        assert_eq!(policy["@type"][0], "http://www.w3.org/ns/odrl/2/Offer");
        let action = &policy["http://www.w3.org/ns/odrl/2/permission"][0]["http://www.w3.org/ns/odrl/2/action"]
            [0];
        assert_eq!(action["@id"], "http://www.w3.org/ns/odrl/2/read");
    }

    // org-b asks for the shipments, citing the offer: its resource and
    // actions come from it.
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
    let asked = run_ok(&[
        "access",
        "request",
        "--home",
        &b,
        "--to",
        "org-a",
        "--offer",
        "shipments",
        "--for",
        "7d",
        "--purpose",
        "customs clearance",
        "--message",
        "for the Q1 audit",
    ]);
    let id = asked.trim().to_owned();
    assert_eq!(id.len(), 64, "stdout is the id alone: {asked:?}");
    // The owner's default policy leaves it to a person: open on both sides.
    let incoming = json(&run_ok(&[
        "access",
        "list",
        "--home",
        &a,
        "--incoming",
        "--open",
    ]));
    let mine = incoming
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .expect("the request is in org-a's queue");
    assert_eq!(mine["requester"], "org-b");
    assert_eq!(mine["resources"][0], "datasets/shipments/*");
    assert_eq!(mine["message"], "for the Q1 audit");
    assert!(
        mine["policy"].as_str().unwrap().contains("ask a person"),
        "{mine}"
    );
    assert_eq!(request(&net, "org-b", &id)["state"], "open");

    // Outside the offer: another resource, or without the purpose it asks.
    let outside = run_err(&[
        "access",
        "request",
        "--home",
        &b,
        "--to",
        "org-a",
        "--offer",
        "shipments",
        "--resource",
        "datasets/customs/*",
        "--for",
        "7d",
        "--purpose",
        "customs clearance",
    ]);
    assert!(
        outside.contains("outside the offer") && outside.contains("422"),
        "{outside}"
    );
    let no_purpose = run_err(&[
        "access",
        "request",
        "--home",
        &b,
        "--to",
        "org-a",
        "--offer",
        "shipments",
        "--for",
        "7d",
    ]);
    assert!(
        no_purpose.contains("purposes customs clearance"),
        "{no_purpose}"
    );
    // org-c cannot cite the offer it does not see.
    let unseen = run_err(&[
        "access", "request", "--home", &c, "--to", "org-a", "--offer", "customs",
    ]);
    assert!(
        unseen.contains("no offer") && unseen.contains("customs"),
        "{unseen}"
    );

    // The queue survives the owner's kill -9.
    net.cli(&["testnet", "kill", "org-a"]);
    net.cli(&["testnet", "restart", "org-a"]);
    eventually(Duration::from_secs(60), "org-a back and ready", || {
        admin(&net, "org-a")
            .get("/readyz")
            .is_ok_and(|r| r.status == 200)
    });
    assert_eq!(request(&net, "org-a", &id)["state"], "open");

    // Accepted: org-a proposes the grant; org-b uses it, with its purpose.
    let accepted = run(&["access", "accept", "--home", &a, &id, "--wait", "60s"]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let grant = String::from_utf8(accepted.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let seen = request(&net, "org-b", &id);
    assert_eq!(seen["state"], "accepted", "{seen}");
    assert_eq!(seen["proposal"], grant.as_str());
    assert_eq!(seen["by"], "admin");
    eventually(Duration::from_secs(30), "the grant on org-b", || {
        admin(&net, "org-b")
            .get(&format!("/v1/grants/{grant}"))
            .is_ok_and(|r| r.status == 200)
    });
    assert_eq!(
        run_ok(&[
            "peer",
            "get",
            "--home",
            &b,
            "org-a",
            path,
            "--purpose",
            "customs clearance"
        ]),
        "id,port\n1,Rotterdam\n"
    );
    let refused = run_err(&["peer", "get", "--home", &b, "org-a", path]);
    assert!(refused.contains("purpose-mismatch"), "{refused}");
    let twice = run_err(&["access", "accept", "--home", &a, &id]);
    assert!(
        twice.contains("accepted already") && twice.contains("409"),
        "{twice}"
    );

    // Declined: org-c reads why, and `--wait` exits non-zero with it.
    let asked = run_ok(&[
        "access",
        "request",
        "--home",
        &c,
        "--to",
        "org-a",
        "--resource",
        "datasets/shipments/*",
        "--for",
        "1d",
    ]);
    let declined = asked.trim().to_owned();
    run_ok(&[
        "access",
        "decline",
        "--home",
        &a,
        &declined,
        "--reason",
        "org-c has no customs role",
    ]);
    let seen = request(&net, "org-c", &declined);
    assert_eq!(seen["state"], "declined", "{seen}");
    assert_eq!(seen["reason"], "org-c has no customs role");

    // A rule of org-a's policy accepts requests for public data on its
    // own: the request is accepted when it arrives, and `--wait` returns
    // once the grant is committed.
    let policy = run_ok(&["policy", "show", "--home", &a]);
    let rules = policy
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let file = net.dir.path().join("policy.toml");
    std::fs::write(
        &file,
        format!("[[rules]]\nname = \"public-requests\"\nkinds = [\"access-request\"]\nresources = [\"public/*\"]\nactions = [\"read\"]\noutcome = \"endorse\"\n\n{rules}\n"),
    )
    .unwrap();
    run_ok(&["policy", "set", "--home", &a, &home_arg(&file)]);
    let public = run(&[
        "access",
        "request",
        "--home",
        &c,
        "--to",
        "org-a",
        "--resource",
        "public/*",
        "--for",
        "1d",
        "--wait",
        "60s",
    ]);
    let said = String::from_utf8_lossy(&public.stderr).into_owned();
    assert!(public.status.success(), "{said}");
    assert!(
        said.contains("policy:public-requests") && said.contains("committed at height"),
        "{said}"
    );
    let metrics = admin(&net, "org-a").get("/metrics").unwrap().text();
    assert!(
        metrics.contains("quorate_endorsement_policy_decisions_total{outcome=\"endorse\",rule=\"public-requests\"} 1"),
        "{metrics}"
    );

    // Withdrawn by its requester: closed on both sides.
    let asked = run_ok(&[
        "access",
        "request",
        "--home",
        &c,
        "--to",
        "org-a",
        "--resource",
        "datasets/other/*",
        "--for",
        "1d",
    ]);
    let withdrawn = asked.trim().to_owned();
    run_ok(&["access", "withdraw", "--home", &c, &withdrawn]);
    assert_eq!(request(&net, "org-a", &withdrawn)["state"], "withdrawn");
    assert_eq!(request(&net, "org-c", &withdrawn)["state"], "withdrawn");

    // Everything that came in is in org-a's audit log, by its requester.
    let audit = admin(&net, "org-a")
        .get("/v1/audit?limit=1000")
        .unwrap()
        .json()
        .unwrap();
    let filed: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "access-request" && r["decision"] == "allow")
        .collect();
    assert!(filed.len() >= 4, "{audit}");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "catalog")
    );
}
