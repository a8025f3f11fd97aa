//! Goal: the holes an adversarial probe found in the gateway stay closed:
//! a request replayed at another member's gateway, or addressed to another
//! host, serves nothing (finding 1); one unauthenticated request with a
//! huge path cannot stop a node from restarting (2); a captured request is
//! still a replay after a restart (3); listings page only through what the
//! caller may list, on both transports (4); an unauthenticated flood cannot
//! grow the audit log without bound (5); idle and slow connections cannot
//! exhaust the listener, and a member is served meanwhile (6).
//! Method: a 4-node testnet of real processes; real HTTP on loopback, the
//! flood from another loopback address (127.0.0.2) so that the per-address
//! limit is what holds it, and `kill -9` for the restarts.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quorate_api::signature::AUDIENCE_HEADER;
use quorate_testnet::client::ApiClient;
use quorate_tests::{
    Gateway, Testnet, admin, eventually, gateway, home_arg, key, problem_type, put_object, run,
    send, signature_headers, signed_get, signed_get_to,
};

fn did_of(api: &ApiClient) -> String {
    api.get("/v1/identity").unwrap().json().unwrap()["did"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The audit records of `api`'s node, newest last.
fn audit(api: &ApiClient, query: &str) -> Vec<serde_json::Value> {
    api.get(&format!("/v1/audit?{query}"))
        .unwrap()
        .json()
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Kills `name` with SIGKILL and starts it again; waits until its gateway
/// decides requests (fresh ledger).
fn kill_and_restart(net: &Testnet, name: &str) {
    net.cli(&["testnet", "kill", name]);
    net.cli(&["testnet", "restart", name]);
    let api = admin(net, name);
    eventually(Duration::from_secs(30), "the node is ready again", || {
        api.get("/readyz").is_ok_and(|r| r.status == 200)
    });
}

fn audit_log_len(net: &Testnet, name: &str) -> u64 {
    std::fs::metadata(net.home(name).join("data/audit.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[test]
fn the_probes_findings_stay_closed() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let (a, c) = (admin(&net, "org-a"), admin(&net, "org-c"));
    let (key_b, key_c) = (key(&net, "org-b"), key(&net, "org-c"));
    let (did_a, did_c) = (did_of(&a), did_of(&c));
    // Members' requests go to each gateway's own TLS listener.
    let (gw_a, gw_c) = (gateway(&net, "org-a"), gateway(&net, "org-c"));
    let secret = b"granted to org-b only";
    put_object(&a, "datasets/shipments/2026-11.csv", "text/csv", secret);
    put_object(&a, "datasets/shipments/2026-12.csv", "text/csv", b"more");
    put_object(&a, "datasets/other/secret.csv", "text/csv", b"never listed");
    put_object(&a, "datasets/revoked/r.csv", "text/csv", b"never listed");
    put_object(&a, "zz/last.csv", "text/csv", b"never listed");
    let id = net.grant("org-a", "org-b", "datasets/shipments/*", &["org-a"]);
    // org-b may also list the shipments.
    let listed = run(&[
        "proposal",
        "grant",
        "--home",
        &home_arg(&net.home("org-a")),
        "--to",
        "org-b",
        "--resource",
        "datasets/shipments/*",
        "--action",
        "list",
        "--days",
        "1",
    ]);
    assert!(listed.status.success(), "{listed:?}");
    let path = "/gateway/objects/datasets/shipments/2026-11.csv";
    eventually(Duration::from_secs(20), "the grants serve org-b", || {
        signed_get(&gw_a, path, &key_b, &format!("warm-{}", rand_suffix()))
            .0
            .status
            == 200
    });
    let _ = id;

    // Finding 1: org-b's request for org-c, replayed by org-c at org-a.
    let (at_c, captured) = signed_get_to(&gw_c, &did_c, path, &key_b, "for-c-1");
    assert_eq!(
        (at_c.status, problem_type(&at_c).as_str()),
        (403, "no-grant")
    );
    // The identical bytes (Host: org-c's address) sent to org-a…
    let identical = raw_request(&gw_a, gw_c.client.address(), path, &captured);
    assert!(identical.starts_with("HTTP/1.1 421"), "{identical}");
    assert!(identical.contains("wrong-authority"), "{identical}");
    assert!(!identical.contains("granted to org-b only"));
    // … or with the Host rewritten to org-a's.
    let replayed = send(&gw_a.client, path, &captured);
    assert_eq!(
        (replayed.status, problem_type(&replayed).as_str()),
        (421, "wrong-audience"),
    );
    assert!(!replayed.body.windows(secret.len()).any(|w| w == secret));
    // Addressed to org-a's host but signed for org-c: refused too.
    let (wrong_audience, _) = signed_get_to(&gw_a, &did_c, path, &key_b, "for-c-2");
    assert_eq!(
        (
            wrong_audience.status,
            problem_type(&wrong_audience).as_str()
        ),
        (421, "wrong-audience")
    );
    // Signed for a Host that is not org-a's.
    let covered = ["@method", "@target-uri", AUDIENCE_HEADER];
    let evil_target = format!("https://evil.example:443{path}");
    let borrowed = signature_headers(&evil_target, &did_a, &covered, &key_b, "evil-host");
    let evil = raw_request(&gw_a, "evil.example:443", path, &borrowed);
    assert!(evil.starts_with("HTTP/1.1 421"), "{evil}");
    assert!(!evil.contains("granted to org-b only"));

    // Finding 7: an over-long nonce with a valid signature is the
    // client's error, not the node's; a non-member's key stores nothing.
    let (long_nonce, _) = signed_get(&gw_a, path, &key_b, &"n".repeat(129));
    assert_eq!(
        (long_nonce.status, problem_type(&long_nonce).as_str()),
        (401, "bad-signature")
    );
    let stranger = quorate_did::Keypair::generate().unwrap();
    let (stranger_get, _) = signed_get(&gw_a, path, &stranger, "stranger-1");
    assert_eq!(
        (stranger_get.status, problem_type(&stranger_get).as_str()),
        (403, "not-a-member")
    );
    // Finding 8: a listing whose query is not covered is refused.
    // As the probe sent it: @method @authority @path, the query left out.
    let listing_target = format!(
        "{}/gateway/objects?prefix=datasets/&limit=1000",
        gw_a.origin()
    );
    let covered = ["@method", "@authority", "@path", AUDIENCE_HEADER];
    let uncovered = signature_headers(&listing_target, &did_a, &covered, &key_b, "no-query");
    let listing = send(
        &gw_a.client,
        "/gateway/objects?prefix=datasets/&limit=1000",
        &uncovered,
    );
    assert_eq!(
        (listing.status, problem_type(&listing).as_str()),
        (401, "bad-signature")
    );

    // Finding 3: a captured request, served, then replayed after kill -9.
    let (served, headers) = signed_get(&gw_a, path, &key_b, "before-restart");
    assert_eq!((served.status, served.body.as_slice()), (200, &secret[..]));
    kill_and_restart(&net, "org-a");
    let again = send(&gw_a.client, path, &headers);
    assert_eq!(
        (again.status, problem_type(&again).as_str()),
        (401, "replayed"),
        "a captured request after a restart"
    );

    // Finding 4: listings page only through what the caller may list.
    let page_c = a_listing(&c, "/v1/peers/org-a/objects?limit=1");
    assert_eq!(page_c, (vec![], None), "org-c lists nothing over libp2p");
    for after in ["datasets/other/secret.csv", "datasets/", "a"] {
        let (response, _) = signed_get(
            &gw_a,
            &format!("/gateway/objects?limit=1&after={after}"),
            &key_c,
            &format!("list-c-{after}"),
        );
        let json = response.json().unwrap();
        assert_eq!(json["objects"], serde_json::json!([]), "{after}: {json}");
        assert!(json["next"].is_null(), "{after}: {json}");
    }
    // org-b pages one name at a time and only ever sees the shipments.
    let b = admin(&net, "org-b");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..5 {
        let query = match &after {
            Some(a) => format!("/v1/peers/org-a/objects?limit=1&after={a}"),
            None => "/v1/peers/org-a/objects?limit=1".to_owned(),
        };
        let (names, next) = a_listing(&b, &query);
        seen.extend(names);
        if let Some(next) = &next {
            assert!(next.starts_with("datasets/shipments/"), "cursor {next}");
        }
        after = next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "datasets/shipments/2026-11.csv",
            "datasets/shipments/2026-12.csv"
        ]
    );
    let lists = audit(&a, "limit=1000");
    assert!(
        lists
            .iter()
            .any(|r| r["action"] == "list" && r["caller"] == did_of(&c).as_str()),
        "org-c's listing is audited as a listing"
    );

    // Finding 2: the largest path a request may carry, unauthenticated,
    // as the last record; the node restarts and the log verifies.
    let long = format!("/gateway/objects/x/{}", "a".repeat(7_000));
    let unsigned = gw_a.client.request_with("GET", &long, &[], None).unwrap();
    assert_eq!(unsigned.status, 401);
    let newest = audit(&a, "limit=1").pop().unwrap();
    let record_len = serde_json::to_string(&newest).unwrap().len();
    assert!(record_len < 4096, "a {record_len}-byte record");
    kill_and_restart(&net, "org-a");
    let log = net.home("org-a").join("data/audit.log");
    let verified = run(&["audit", "verify", &home_arg(&log)]);
    assert!(verified.status.success(), "{verified:?}");

    // Finding 5: 2,000 unsigned requests with long paths from 4
    // connections grow the log by a bounded amount, summarized.
    let before = audit_log_len(&net, "org-a");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let gw_a = &gw_a;
            scope.spawn(move || flood_unsigned(gw_a, t, 500));
        }
    });
    let flood_secs = started.elapsed().as_secs_f64();
    eventually(Duration::from_secs(15), "a summary of the refusals", || {
        audit(&a, "limit=50")
            .iter()
            .any(|r| r["reason"] == "refusals-suppressed")
    });
    let grown = audit_log_len(&net, "org-a") - before;
    eprintln!(
        "2,000 unauthenticated refusals in {flood_secs:.1} s grew the audit log by {grown} bytes"
    );
    assert!(
        grown < 100 * 1024,
        "2,000 refusals in {flood_secs:.1} s grew the log by {grown} bytes"
    );

    // Finding 6: 400 idle connections from another address to the exposed
    // listener, the gateway's: slowloris clients that never finish (nor
    // even start) their TLS handshake.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target: SocketAddr = gw_a.client.address().parse().unwrap();
    let (mut idle, refused_at_once) = runtime.block_on(open_idle(target, 400));
    assert!(
        refused_at_once >= 400 - 256,
        "only {refused_at_once} of 400 connections from one address were refused"
    );
    // A member is served meanwhile, and the health probe answers.
    let (during, _) = signed_get(&gw_a, path, &key_b, "during-flood");
    assert_eq!(during.status, 200);
    assert_eq!(a.get("/healthz").unwrap().status, 200);
    // The idle connections are closed once the head timeout passes.
    std::thread::sleep(Duration::from_secs(11));
    let closed = runtime.block_on(count_closed(&mut idle));
    assert_eq!(closed, idle.len(), "idle connections still open after 11 s");

    net.down_and_verify(&["org-a", "org-b", "org-c", "org-d"]);
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A listing's names and cursor from a local API peer listing.
fn a_listing(api: &ApiClient, query: &str) -> (Vec<String>, Option<String>) {
    let response = api.get(query).unwrap();
    assert_eq!(response.status, 200, "{query}: {}", response.text());
    let json = response.json().unwrap();
    let names = json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap().to_owned())
        .collect();
    (names, json["next"].as_str().map(str::to_owned))
}

/// One request to `gateway` with `Host: host` over a fresh connection;
/// the whole answer.
fn raw_request(gateway: &Gateway, host: &str, path: &str, headers: &[(String, String)]) -> String {
    let mut tcp = gateway.client.connect().unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer
}

/// `count` unsigned keep-alive requests with 7 KB paths on one connection.
fn flood_unsigned(gateway: &Gateway, thread: usize, count: usize) {
    let address = gateway.client.address();
    let mut reader = std::io::BufReader::new(gateway.client.connect().unwrap());
    for i in 0..count {
        let path = format!("/gateway/objects/{thread}/{i}/{}", "p".repeat(7_000));
        let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        reader.get_mut().write_all(head.as_bytes()).unwrap();
        // Read the answer's head and its body (content-length).
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
    }
}

/// Opens `count` connections from 127.0.0.2 that send nothing; returns
/// those still open and how many the node refused at once.
async fn open_idle(target: SocketAddr, count: usize) -> (Vec<tokio::net::TcpStream>, usize) {
    use tokio::io::AsyncReadExt as _;
    let mut streams = Vec::new();
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        streams.push(socket.connect(target).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A refused connection has been answered at once with a 503 problem.
    let mut open = Vec::new();
    let mut refused = 0;
    for mut stream in streams {
        let mut first = [0u8; 12];
        match tokio::time::timeout(Duration::from_millis(2), stream.read(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {
                assert!(first[..n].starts_with(b"HTTP/1.1 503"), "{first:?}");
                refused += 1;
            }
            _ => open.push(stream),
        }
    }
    (open, refused)
}

/// How many of `streams` the node has closed (a read returns 0 or fails).
async fn count_closed(streams: &mut [tokio::net::TcpStream]) -> usize {
    use tokio::io::AsyncReadExt as _;
    let mut closed = 0;
    for stream in streams {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => {}
        }
    }
    closed
}
