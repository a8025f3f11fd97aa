//! Goal: an organization shares an existing HTTP service under grants.
//! Org A maps `erp/*` to a service; B (granted) reads it over libp2p and
//! signed HTTP; C (no grant) is refused before the service is asked; a
//! slow service is a 504, a missing resource a 404, a dead service a 502
//! and, after repeated failures, an immediate 503 (circuit open) — never a
//! hang.
//! Method: a 4-node testnet; the service is a thread in this test.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use quorate_tests::{Testnet, admin, eventually, gateway, key, problem_type, signed_get};

/// A tiny HTTP service: `/api/orders/42` answers JSON, `/api/slow` never
/// answers in time, anything else is a 404. Counts the requests it gets.
struct Service {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Service {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                h.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    stream.set_nonblocking(false).unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let mut stream = stream;
                    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                    let (status, body) = match path.as_str() {
                        "/api/orders/42" => ("200 OK", r#"{"order":42,"status":"shipped"}"#),
                        "/api/slow" => {
                            std::thread::sleep(Duration::from_secs(4));
                            ("200 OK", "late")
                        }
                        _ => ("404 Not Found", "no"),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
            // Dropping the listener: connections are refused from now on.
        });
        Self { port, hits, stop }
    }
}

#[test]
fn an_upstream_service_is_shared_under_grants_and_fails_cleanly() {
    let service = Service::start();
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let config = net.home("org-a").join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[upstream]]\nprefix = \"erp\"\nurl = \"http://127.0.0.1:{}/api\"\ntimeout = \"1s\"\n",
        service.port
    ));
    std::fs::write(&config, text).unwrap();
    net.cli(&["testnet", "restart", "org-a"]);
    let (a, b, c) = (
        admin(&net, "org-a"),
        admin(&net, "org-b"),
        admin(&net, "org-c"),
    );
    eventually(Duration::from_secs(20), "org-a back and committing", || {
        a.get("/v1/status")
            .ok()
            .and_then(|r| r.json().ok())
            .is_some_and(|s| {
                s["peers"] == 3 && s["last_commit_age_ms"].as_u64().is_some_and(|ms| ms < 2000)
            })
    });

    net.grant("org-a", "org-b", "erp/*", &["org-a", "org-b"]);

    let order = br#"{"order":42,"status":"shipped"}"#.to_vec();
    let got = b.get("/v1/peers/org-a/objects/erp/orders/42").unwrap();
    assert_eq!((got.status, &got.body), (200, &order), "{}", got.text());
    let (got, _) = signed_get(
        &gateway(&net, "org-a"),
        "/gateway/objects/erp/orders/42",
        &key(&net, "org-b"),
        "u-1",
    );
    assert_eq!((got.status, &got.body), (200, &order), "{}", got.text());

    // C has no grant: refused, and the service never sees the request.
    let before = service.hits.load(Ordering::SeqCst);
    let refused = c.get("/v1/peers/org-a/objects/erp/orders/42").unwrap();
    assert_eq!(
        (refused.status, problem_type(&refused).as_str()),
        (403, "no-grant")
    );
    assert_eq!(service.hits.load(Ordering::SeqCst), before);

    let missing = b.get("/v1/peers/org-a/objects/erp/orders/43").unwrap();
    assert_eq!(
        (missing.status, problem_type(&missing).as_str()),
        (404, "not-found")
    );
    let (slow, _) = signed_get(
        &gateway(&net, "org-a"),
        "/gateway/objects/erp/slow",
        &key(&net, "org-b"),
        "u-2",
    );
    assert_eq!(
        (slow.status, problem_type(&slow).as_str()),
        (504, "upstream-timeout")
    );

    // The service goes away: failures, then the circuit opens.
    service.stop.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    let mut codes = Vec::new();
    for i in 0..6 {
        let (r, _) = signed_get(
            &gateway(&net, "org-a"),
            "/gateway/objects/erp/orders/42",
            &key(&net, "org-b"),
            &format!("u-dead-{i}"),
        );
        codes.push((r.status, problem_type(&r)));
    }
    assert!(
        codes[..4]
            .iter()
            .all(|(s, c)| *s == 502 && c == "upstream-failed"),
        "{codes:?}"
    );
    assert_eq!(
        codes[5],
        (503, "upstream-unavailable".to_owned()),
        "{codes:?}"
    );
}
