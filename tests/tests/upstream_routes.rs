//! Goal: an upstream route behaves as a gateway user expects. The query
//! string travels on (signed HTTPS and libp2p); HEAD is asked as HEAD; a
//! `write` grant lets a member POST and PUT to the service (the body
//! checked against its covered digest first), a `read` grant does not; only
//! the allow-listed headers cross, both ways, and the service learns who
//! asks under which grant. A route spreads its calls over several URLs, a
//! dead URL costs no request and its circuit opens, and the routes are
//! reloaded without a restart (`quorate node reload` and SIGHUP), an
//! invalid config refused with the routes in force kept.
//! Method: a 2-node testnet; two echo services and a dead port in this
//! test; signed requests to org-a's TLS gateway and org-b's own API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorate_tests::{
    Testnet, admin, eventually, gateway, holds_grant, home_arg, key, problem_type, run, run_ok,
    signed_request,
};

/// What an echo service was asked: method and target.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP service that answers every request with what it received, as
/// JSON (`served_by`, `method`, `target`, some headers, the body), with an
/// `X-Served-By`, an `ETag` and an `X-Secret` header; 201 for POST.
struct Echo {
    port: u16,
    seen: Seen,
}

impl Echo {
    fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let target = parts.next().unwrap_or_default().to_owned();
                    let mut headers = serde_json::Map::new();
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        let name = name.trim().to_ascii_lowercase();
                        if name == "content-length" {
                            length = value.trim().parse().unwrap();
                        }
                        headers.insert(name, value.trim().into());
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    log.lock().unwrap().push((method.clone(), target.clone()));
                    let answer = serde_json::json!({
                        "served_by": name,
                        "method": method,
                        "target": target,
                        "headers": headers,
                        "body": String::from_utf8_lossy(&body),
                    })
                    .to_string();
                    let status = if method == "POST" {
                        "201 Created"
                    } else {
                        "200 OK"
                    };
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Served-By: {name}\r\nETag: \"v1\"\r\nX-Secret: not-for-members\r\nConnection: close\r\n\r\n",
                        answer.len()
                    );
                    if method != "HEAD" {
                        let _ = stream.write_all(answer.as_bytes());
                    }
                });
            }
        });
        Self { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

/// A grant from org-a to org-b of `actions` on `resource`, committed on both.
fn grant(net: &Testnet, actions: &[&str], resource: &str) -> String {
    let home = home_arg(&net.home("org-a"));
    let mut args = vec![
        "proposal",
        "grant",
        "--home",
        &home,
        "--to",
        "org-b",
        "--resource",
        resource,
        "--for",
        "1d",
    ];
    for action in actions {
        args.extend(["--action", action]);
    }
    let id = run_ok(&args).trim().to_owned();
    eventually(Duration::from_secs(20), "the grant committed", || {
        ["org-a", "org-b"].iter().all(|n| holds_grant(net, n, &id))
    });
    id
}

/// org-a's config with `route` as its only `[[upstream]]`.
fn set_route(net: &Testnet, base: &str, route: &str) {
    std::fs::write(
        net.home("org-a").join("config.toml"),
        format!("{base}\n[[upstream]]\n{route}"),
    )
    .unwrap();
}

fn json(response: &quorate_testnet::client::Response) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|_| panic!("{}", response.text()))
}

#[test]
fn upstream_routes_forward_queries_methods_and_headers_and_spread_over_urls() {
    let (s1, s2) = (Echo::start("s1"), Echo::start("s2"));
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (net, _) = Testnet::up(&["--nodes", "2"]);
    let config = net.home("org-a").join("config.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    let headers =
        "request_headers = [\"accept\"]\nresponse_headers = [\"x-served-by\", \"etag\"]\n";
    set_route(
        &net,
        &base,
        &format!(
            "prefix = \"svc\"\nurl = \"{}\"\ntimeout = \"2s\"\n{headers}",
            s1.url()
        ),
    );
    net.cli(&["testnet", "restart", "org-a"]);
    let (a, b) = (admin(&net, "org-a"), admin(&net, "org-b"));
    eventually(Duration::from_secs(20), "org-a back and committing", || {
        a.get("/v1/status")
            .ok()
            .and_then(|r| r.json().ok())
            .is_some_and(|s| {
                s["peers"] == 1 && s["last_commit_age_ms"].as_u64().is_some_and(|ms| ms < 2000)
            })
    });
    let read_grant = grant(&net, &["read"], "svc/*");
    let write_grant = grant(&net, &["write"], "svc/inbox/*");
    let (gw, signer) = (gateway(&net, "org-a"), key(&net, "org-b"));
    let member = signer.did().to_string();

    // A GET: the query, Accept (allowed) but not Cookie, and who asks
    // travel on; ETag and X-Served-By come back, X-Secret does not.
    let got = signed_request(
        &gw,
        "GET",
        "/gateway/objects/svc/orders?status=open&page=2",
        &signer,
        "q-1",
        &[("Accept", "text/csv"), ("Cookie", "session=secret")],
        None,
    );
    assert_eq!(got.status, 200, "{}", got.text());
    let echo = json(&got);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["target"], "/api/orders?status=open&page=2");
    assert_eq!(echo["headers"]["accept"], "text/csv");
    assert!(echo["headers"].get("cookie").is_none(), "{echo}");
    assert!(echo["headers"].get("signature").is_none(), "{echo}");
    assert_eq!(echo["headers"]["quorate-member"], member.as_str());
    assert_eq!(echo["headers"]["quorate-grant"], read_grant.as_str());
    assert_eq!(got.header("x-served-by"), Some("s1"));
    assert_eq!(got.header("etag"), Some("\"v1\""));
    assert_eq!(got.header("x-secret"), None);

    // HEAD is asked as HEAD.
    let head = signed_request(
        &gw,
        "HEAD",
        "/gateway/objects/svc/orders",
        &signer,
        "q-2",
        &[],
        None,
    );
    assert_eq!(head.status, 200);
    assert_eq!(s1.seen().last().unwrap().0, "HEAD");

    // Over libp2p, through org-b's own node: the query travels on too.
    let got = b
        .get("/v1/peers/org-a/objects/svc/orders?status=shipped")
        .unwrap();
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(json(&got)["target"], "/api/orders?status=shipped");

    // Writing needs `write` on the path: POST under the write grant reaches
    // the service with its body and gets its 201; a PUT where the grant
    // gives read alone is refused before the service is asked.
    let order = br#"{"item":"bolts","count":40}"#;
    let posted = signed_request(
        &gw,
        "POST",
        "/gateway/objects/svc/inbox/orders",
        &signer,
        "q-3",
        &[],
        Some(("application/json", order)),
    );
    assert_eq!(posted.status, 201, "{}", posted.text());
    let echo = json(&posted);
    assert_eq!(
        (echo["method"].as_str(), echo["body"].as_str()),
        (Some("POST"), std::str::from_utf8(order).ok())
    );
    assert_eq!(echo["headers"]["quorate-grant"], write_grant.as_str());
    assert_eq!(echo["headers"]["content-type"], "application/json");
    let asked = s1.seen().len();
    let refused = signed_request(
        &gw,
        "PUT",
        "/gateway/objects/svc/orders/7",
        &signer,
        "q-4",
        &[],
        Some(("application/json", order)),
    );
    assert_eq!(
        (refused.status, problem_type(&refused).as_str()),
        (403, "action-not-granted")
    );
    assert_eq!(s1.seen().len(), asked);
    // Over libp2p an upstream route takes no writes, and says so.
    let file = net.dir.path().join("order.json");
    std::fs::write(&file, order).unwrap();
    let over_p2p = run(&[
        "peer",
        "put",
        "--home",
        &home_arg(&net.home("org-b")),
        "org-a",
        "svc/inbox/orders",
        &home_arg(&file),
    ]);
    let stderr = String::from_utf8_lossy(&over_p2p.stderr);
    assert!(
        !over_p2p.status.success() && stderr.contains("signed HTTPS only"),
        "{stderr}"
    );

    // Reloaded without a restart: three URLs, one of them dead.
    set_route(
        &net,
        &base,
        &format!(
            "prefix = \"svc\"\nurls = [\"http://127.0.0.1:{dead}\", \"{}\", \"{}\"]\ntimeout = \"2s\"\n{headers}",
            s1.url(),
            s2.url()
        ),
    );
    let home_a = home_arg(&net.home("org-a"));
    let reloaded = run_ok(&["node", "reload", "--home", &home_a]);
    assert!(
        reloaded.contains("1 upstream route(s)") && reloaded.contains(&s2.url()),
        "{reloaded}"
    );
    let mut served_by = std::collections::BTreeSet::new();
    let mut opened = false;
    for i in 0..40 {
        let got = signed_request(
            &gw,
            "GET",
            "/gateway/objects/svc/orders",
            &signer,
            &format!("rr-{i}"),
            &[],
            None,
        );
        // The dead URL costs no request: it is tried, then another is.
        assert_eq!(got.status, 200, "{}", got.text());
        served_by.insert(json(&got)["served_by"].as_str().unwrap().to_owned());
        let view = a.get("/v1/upstreams").unwrap().json().unwrap();
        let dead_url = &view["routes"][0]["urls"][0];
        if dead_url["open"] == true {
            opened = true;
            if served_by.len() == 2 {
                break;
            }
        }
    }
    assert!(opened, "the dead URL's circuit never opened");
    assert_eq!(served_by.len(), 2, "{served_by:?}");
    let table = run_ok(&["node", "upstreams", "--home", &home_a]);
    assert!(table.contains("open (skipped)"), "{table}");

    // An invalid config is refused, and the routes in force are kept.
    set_route(
        &net,
        &base,
        "prefix = \"svc\"\nurl = \"ftp://127.0.0.1:21\"\n",
    );
    let refused = run(&["node", "reload", "--home", &home_a]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("is not an http:// URL")
            && stderr.contains("kept"),
        "{stderr}"
    );
    let view = a.get("/v1/upstreams").unwrap().json().unwrap();
    assert_eq!(view["routes"][0]["urls"].as_array().unwrap().len(), 3);

    // SIGHUP reloads as well: s2 alone.
    set_route(
        &net,
        &base,
        &format!("prefix = \"svc\"\nurl = \"{}\"\n", s2.url()),
    );
    let lock = std::fs::read_to_string(net.home("org-a").join("node.lock")).unwrap();
    let pid = lock.split_whitespace().next().unwrap().to_owned();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually(
        Duration::from_secs(10),
        "SIGHUP reloaded the routes",
        || {
            a.get("/v1/upstreams")
                .ok()
                .and_then(|r| r.json().ok())
                .is_some_and(|v| v["routes"][0]["urls"].as_array().map(Vec::len) == Some(1))
        },
    );
    let got = signed_request(
        &gw,
        "GET",
        "/gateway/objects/svc/orders",
        &signer,
        "hup-1",
        &[],
        None,
    );
    assert_eq!(json(&got)["served_by"], "s2");
    assert!(
        a.get("/v1/status").unwrap().status == 200,
        "the node still runs after SIGHUP"
    );
}
