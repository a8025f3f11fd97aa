//! Goal: an organization's people and applications get named tokens with
//! roles: each token opens exactly its roles' routes on the real node (403
//! `role-required` for the rest), expires, is revoked at once, survives a
//! `kill -9` and restart, is stored hashed (0600); every state-changing call
//! is in the audit log with who made it.
//! Method: a 1-node testnet of the real binary; `quorate token create /
//! list / revoke`; the local API over HTTP with each token; `testnet kill`
//! and `testnet restart`.

use std::time::Duration;

use quorate_testnet::client::ApiClient;
use quorate_tests::{Events, Testnet, admin, eventually, home_arg, problem_type, run, run_ok};

fn create(home: &str, name: &str, roles: &[&str], expires: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--home", home, "--name", name];
    for role in roles {
        args.extend(["--role", role]);
    }
    if let Some(expires) = expires {
        args.extend(["--expires", expires]);
    }
    let token = run_ok(&args).trim().to_owned();
    assert!(token.starts_with("qrt_"), "{token}");
    token
}

#[test]
fn tokens_open_their_roles_routes_and_nothing_else() {
    let (net, _) = Testnet::up(&["--nodes", "1"]);
    let home = home_arg(&net.home("org-a"));
    let root = admin(&net, "org-a");
    let as_token = |token: &str| ApiClient::new(root.address().to_owned(), token.to_owned());

    let reader = as_token(&create(&home, "rita", &["reader"], None));
    let publisher = as_token(&create(&home, "upload-app", &["publisher"], Some("30d")));
    let auditor = as_token(&create(&home, "audit.office", &["auditor"], None));
    let metrics = as_token(&create(&home, "prometheus", &["metrics"], None));
    let brief = create(&home, "brief", &["reader"], Some("2s"));

    // Each opens its routes, and is refused the others with the roles
    // that would open them.
    let object = "/v1/objects/reports/q1.csv";
    let put = publisher
        .request("PUT", object, Some(("text/csv", b"a,b\n1,2\n")))
        .unwrap();
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(reader.get(object).unwrap().text(), "a,b\n1,2\n");
    let refused = reader
        .request("PUT", object, Some(("text/csv", b"x")))
        .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(problem_type(&refused), "role-required");
    assert!(
        refused
            .problem_detail()
            .contains("needs one of the roles publisher (or admin); token:rita has reader"),
        "{}",
        refused.problem_detail()
    );
    assert_eq!(reader.get("/v1/audit").unwrap().status, 403);
    assert_eq!(reader.get("/v1/tokens").unwrap().status, 403);
    assert_eq!(publisher.get("/v1/audit").unwrap().status, 403);
    assert_eq!(auditor.get(object).unwrap().status, 403);
    assert_eq!(auditor.get("/v1/ledger/export").unwrap().status, 200);
    assert_eq!(metrics.get("/metrics").unwrap().status, 200);
    assert_eq!(metrics.get("/v1/status").unwrap().status, 403);
    let me = reader.get("/v1/principal").unwrap().json().unwrap();
    assert_eq!(me["principal"], "token:rita");
    assert_eq!(me["roles"], serde_json::json!(["reader"]));

    // The audit log says who changed what, and who was refused (records
    // are written just after the answers: the writer batches).
    let local_records = || {
        let records = auditor.get("/v1/audit?limit=100").unwrap().json().unwrap();
        records
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["transport"] == "local")
            .count()
    };
    eventually(
        Duration::from_secs(10),
        "the local calls in the audit log",
        || local_records() >= 7,
    );
    let records = auditor.get("/v1/audit?limit=100").unwrap().json().unwrap();
    let local: Vec<(String, String, String, String)> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["transport"] == "local")
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            (
                text("caller"),
                text("action"),
                text("resource"),
                text("decision"),
            )
        })
        .collect();
    let expect = |caller: &str, action: &str, resource: &str, decision: &str| {
        let row = (
            caller.into(),
            action.into(),
            resource.into(),
            decision.into(),
        );
        assert!(local.contains(&row), "{row:?} not in {local:#?}");
    };
    expect("admin", "create-token", "rita", "allow");
    expect("token:upload-app", "put-object", "reports/q1.csv", "allow");
    expect("token:rita", "put-object", "reports/q1.csv", "deny");

    // An expired token is refused, saying so.
    eventually(Duration::from_secs(10), "the brief token expires", || {
        as_token(&brief).get("/v1/status").unwrap().status == 401
    });
    let expired = as_token(&brief).get("/v1/status").unwrap();
    assert_eq!(problem_type(&expired), "unauthenticated");
    assert!(expired.problem_detail().contains("expired"));
    let listed = run_ok(&["token", "list", "--home", &home]);
    assert!(
        listed.contains("brief") && listed.contains("(expired)"),
        "{listed}"
    );
    assert!(listed.contains("upload-app") && listed.contains("publisher"));

    // The file holds hashes only, and only its owner may read it.
    let file = net.home("org-a").join("tokens.json");
    let stored = std::fs::read_to_string(&file).unwrap();
    let secret = brief.rsplit('_').next().unwrap();
    assert!(!stored.contains(secret));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A revocation is immediate; tokens survive kill -9 and restart.
    run_ok(&["token", "revoke", "--home", &home, "rita"]);
    assert_eq!(reader.get("/v1/status").unwrap().status, 401);
    net.cli(&["testnet", "kill", "org-a"]);
    net.cli(&["testnet", "restart", "org-a"]);
    eventually(Duration::from_secs(30), "org-a answers again", || {
        publisher.get("/v1/status").is_ok_and(|r| r.status == 200)
    });
    assert_eq!(reader.get("/v1/status").unwrap().status, 401);
    assert_eq!(auditor.get("/v1/audit?limit=1").unwrap().status, 200);

    // Mistakes get one line naming what to fix.
    for (args, says) in [
        (vec!["--name", "upload-app", "--role", "reader"], "exists"),
        (
            vec!["--name", "Bad Name", "--role", "reader"],
            "not a token name",
        ),
        (vec!["--name", "x", "--role", "root"], "not a role"),
        (
            vec!["--name", "x", "--role", "reader", "--expires", "0s"],
            "at least 1s",
        ),
    ] {
        let mut all = vec!["token", "create", "--home", &home];
        all.extend(args);
        let out = run(&all);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{all:?}: {stderr}");
    }
    let out = run(&["token", "revoke", "--home", &home, "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token is named"));
}

#[test]
fn live_events_follow_the_ledger_and_resume_after_the_last_id() {
    let (net, _) = Testnet::up(&["--nodes", "1"]);
    let home = home_arg(&net.home("org-a"));
    let root = admin(&net, "org-a");
    let reader = create(&home, "watcher", &["reader"], None);
    let mut events = Events::open(root.address(), &reader, None);
    let (block_id, block) = events.until("block", |_| true);
    assert!(block["height"].as_u64().unwrap() >= 1, "{block}");

    // A membership change (one member is its own quorum) commits, and its
    // entry is announced.
    let newcomer = quorate_did::Keypair::from_seed(&[42; 32]).did().to_string();
    let proposed = root
        .post_json(
            "/v1/proposals",
            &serde_json::json!({"add_member": {"name": "org-z", "did": newcomer}}),
        )
        .unwrap();
    assert_eq!(proposed.status, 202, "{}", proposed.text());
    let id = proposed.json().unwrap()["id"].as_str().unwrap().to_owned();
    let (_, entry) = events.until("entry-committed", |d| d["id"] == id.as_str());
    assert_eq!(entry["kind"], "add-member");

    // Resuming after the first block's id replays from the next one.
    let mut resumed = Events::open(root.address(), &reader, Some(block_id));
    let (next_id, _, _) = resumed.next_event();
    assert_eq!(next_id, block_id + 1);
    // Metrics tokens do not get the stream.
    let metrics = create(&home, "scraper", &["metrics"], None);
    let refused = ApiClient::new(root.address().to_owned(), metrics)
        .get("/v1/events")
        .unwrap();
    assert_eq!(refused.status, 403);
}
