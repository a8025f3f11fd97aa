//! Goal: a fifth organization joins a running consortium: its node syncs
//! and verifies the ledger from genesis, a quorum of operators votes it in,
//! and from then on it counts: a grant needs its approval to reach the new,
//! larger quorum, and it can be granted data and fetch it.
//! Method: a 4-node testnet under manual approval; `testnet join`;
//! approvals through the CLI; every wait bounded.

use std::path::Path;
use std::time::Duration;

use quorate_tests::{Testnet, admin, eventually, grants, home_arg, put_object, run_ok};

fn approve(id: &str, home: &Path) {
    run_ok(&["proposal", "approve", id, "--home", &home_arg(home)]);
}

#[test]
fn a_fifth_organization_joins_is_voted_in_and_then_counts() {
    let (net, _) = Testnet::up(&["--nodes", "4", "--approval", "manual"]);
    let out = net.cli(&["testnet", "join", "--name", "org-e"]);
    assert!(out.contains("synced and verified"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.split_once("proposed adding org-e: "))
        .map(|(_, id)| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no proposal id in {out}"));
    let e = admin(&net, "org-e");
    let is_member = || {
        e.get("/v1/status")
            .ok()
            .and_then(|r| r.json().ok())
            .is_some_and(|s| s["is_member"] == true)
    };
    assert!(!is_member());

    // The sponsor (org-a) proposed; b and c approve: 3 of 4 is the quorum.
    for name in ["org-b", "org-c"] {
        eventually(
            Duration::from_secs(10),
            "the proposal reaches every node",
            || run_ok(&["proposal", "list", "--home", &home_arg(&net.home(name))]).contains(&id),
        );
        approve(&id, &net.home(name));
    }
    eventually(Duration::from_secs(20), "org-e is a member", is_member);
    assert_eq!(net.row("org-e")[1], "running");

    // Five members: a grant needs 4 signatures (grantor included).
    let a = admin(&net, "org-a");
    put_object(&a, "welcome/pack.txt", "text/plain", b"hello");
    let grant = run_ok(&[
        "proposal",
        "grant",
        "--home",
        &home_arg(&net.home("org-a")),
        "--to",
        "org-e",
        "--resource",
        "welcome/*",
        "--days",
        "1",
    ]);
    let grant = grant.trim().to_owned();
    for name in ["org-b", "org-c"] {
        eventually(
            Duration::from_secs(10),
            "the grant proposal everywhere",
            || run_ok(&["proposal", "list", "--home", &home_arg(&net.home(name))]).contains(&grant),
        );
        approve(&grant, &net.home(name));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        grants(&net.home("org-a"))
            .iter()
            .all(|g| g["id"] != grant.as_str()),
        "committed with 3 of 5"
    );
    eventually(
        Duration::from_secs(10),
        "the grant proposal on org-e",
        || run_ok(&["proposal", "list", "--home", &home_arg(&net.home("org-e"))]).contains(&grant),
    );
    approve(&grant, &net.home("org-e"));
    eventually(
        Duration::from_secs(20),
        "the grant committed with org-e's approval",
        || {
            grants(&net.home("org-a"))
                .iter()
                .any(|g| g["id"] == grant.as_str())
        },
    );
    let got = e.get("/v1/peers/org-a/objects/welcome/pack.txt").unwrap();
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"hello"[..]),
        "{}",
        got.text()
    );

    // The newcomer's ledger verifies from genesis.
    net.cli(&["testnet", "down"]);
    let verified = run_ok(&["ledger", "verify", "--home", &home_arg(&net.home("org-e"))]);
    assert!(
        verified.contains("members:       5") && verified.contains("OK"),
        "{verified}"
    );
}

/// Goal: the ledger is served to members only: a peer that no member and
/// no pending AddMember names is refused blocks (and limited to a few
/// requests a second), while the status handshake stays open.
/// Method: a 4-node testnet; an outsider's own libp2p swarm dials org-a
/// and asks for blocks over the agreement protocol.
#[test]
fn an_outsider_is_refused_blocks_and_its_requests_are_bounded() {
    use quorate_node::agreement::sync_server::SYNC_MEMBERS_ONLY;
    use quorate_node::net::protocol::{self, Request, Response};

    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let a = admin(&net, "org-a");
    let chain_id = a.get("/v1/ledger").unwrap().json().unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = std::fs::read_to_string(net.home("org-a").join("config.toml")).unwrap();
    let p2p = config
        .lines()
        .find_map(|l| l.strip_prefix("listen = [\""))
        .map(|rest| rest.trim_end_matches("\"]").to_owned())
        .expect("a p2p listen address");
    let a_did = quorate_tests::key(&net, "org-a").did();
    let bootstrap = format!("{p2p}/p2p/{}", quorate_node::net::identity::peer_id(&a_did));
    let outsider = quorate_did::Keypair::generate().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (client, _inbound, event_loop) = quorate_node::net::spawn(
            &outsider,
            &chain_id,
            &["/ip4/127.0.0.1/tcp/0".to_owned()],
            &[bootstrap],
        )
        .unwrap();
        tokio::spawn(event_loop.run());
        let ask = |request: Request| {
            let client = client.clone();
            async move {
                let bytes = protocol::encode(&request).unwrap();
                let answer = client.request(a_did, bytes).await.ok()?;
                protocol::decode::<Response>(&answer).ok()
            }
        };
        // The status handshake answers (once connected), blocks do not.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Response::Status { .. }) = ask(Request::Status).await {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "org-a never answered");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        match ask(Request::Blocks { from: 0, to: 10 }).await {
            Some(Response::Refused(reason)) => assert_eq!(reason, SYNC_MEMBERS_ONLY),
            other => panic!("blocks to an outsider: {other:?}"),
        }
        // Bounded: of 40 requests at once, most get no answer at all.
        let answers =
            futures::future::join_all((0..40).map(|_| ask(Request::Blocks { from: 0, to: 10 })))
                .await;
        let answered = answers.iter().filter(|a| a.is_some()).count();
        assert!(
            answers
                .iter()
                .flatten()
                .all(|a| matches!(a, Response::Refused(r) if r == SYNC_MEMBERS_ONLY)),
            "an outsider got blocks: {answers:?}"
        );
        assert!(
            answered <= 10,
            "{answered} of 40 outsider requests answered"
        );
        eprintln!("outsider: {answered} of 40 requests at once answered, each refused");
    });
}
