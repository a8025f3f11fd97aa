//! The G-series: Quorate's gateway beside nginx on the same machine, in the
//! same run. Servers are pinned to CPU 0, the load generator (and the
//! upstream, and the idle testnet members) to CPU 1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use axum::http::Request;
use http_body_util::Empty;
use quorate_api::signature::{AUDIENCE_HEADER, RequestParts, sign_request};
use quorate_testnet::launch::{Testnet, running_pid};

use crate::load::{self, LoadSpec, MakeRequest};
use crate::sys;

/// The served object: 1 KiB whose first bytes mark it.
pub(crate) const MARKER: &[u8] = b"QUORATE-BENCH-PAYLOAD";

/// One configuration's figures (medians of the measured runs).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// What was measured.
    pub name: String,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles (ms), over all measured answers.
    pub p50_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// Server CPU microseconds per request.
    pub cpu_us: f64,
    /// 2xx share.
    pub ok_share: f64,
    /// Refusals that carried the object's bytes.
    pub leaked: u64,
    /// Which peer row it is compared with.
    pub peer: Option<usize>,
}

struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure_nginx() -> anyhow::Result<PathBuf> {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return Ok(candidate.into());
        }
    }
    eprintln!("installing nginx (Debian package) for the side-by-side runs");
    let ok = Command::new("sh")
        .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null"])
        .status()
        .is_ok_and(|s| s.success());
    if ok && Path::new("/usr/sbin/nginx").exists() {
        return Ok("/usr/sbin/nginx".into());
    }
    bail!("nginx is not installed and could not be installed")
}

fn start_nginx(nginx: &Path, dir: &Path, name: &str, servers: &str) -> anyhow::Result<Nginx> {
    let prefix = dir.join(name);
    std::fs::create_dir_all(prefix.join("logs"))?;
    let config = format!(
        "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\ndaemon off;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n access_log off;\n sendfile on;\n keepalive_requests 1000000;\n \
         client_body_temp_path {p}/tmp; proxy_temp_path {p}/tmp; fastcgi_temp_path {p}/tmp; uwsgi_temp_path {p}/tmp; scgi_temp_path {p}/tmp;\n{servers}\n}}\n",
        p = prefix.display()
    );
    std::fs::create_dir_all(prefix.join("tmp"))?;
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, config)?;
    let child = Command::new(nginx)
        .args(["-p"])
        .arg(&prefix)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start nginx")?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(Nginx { child })
}

/// Every pid of nginx `master` (master and workers).
fn nginx_pids(master: u32) -> Vec<u32> {
    let mut pids = vec![master];
    if let Ok(out) = Command::new("pgrep")
        .args(["-P", &master.to_string()])
        .output()
    {
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok()),
        );
    }
    pids
}

fn get(url: String) -> MakeRequest {
    Arc::new(move |_| {
        Request::get(url.as_str())
            .body(Empty::new())
            .expect("a valid request")
    })
}

fn get_with_token(url: String, token: String) -> MakeRequest {
    let bearer = format!("Bearer {token}");
    Arc::new(move |_| {
        Request::get(url.as_str())
            .header("authorization", bearer.as_str())
            .body(Empty::new())
            .expect("a valid request")
    })
}

/// Each request signed anew (RFC 9421: created now, a fresh nonce); with
/// `others`, every second request is signed by the other (ungranted) key.
fn signed(
    url: String,
    audience: &quorate_did::Did,
    key: quorate_did::Keypair,
    other: Option<quorate_did::Keypair>,
) -> anyhow::Result<MakeRequest> {
    let audience = audience.to_string();
    let mut salt = [0u8; 8];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("{e}"))?;
    let salt = u64::from_be_bytes(salt);
    // Nonces must never repeat, across runs too: one counter for all.
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    Ok(Arc::new(move |n| {
        let unique = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let signer = match &other {
            Some(other) if n % 2 == 1 => other,
            _ => &key,
        };
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let parts = RequestParts {
            method: "GET",
            target_uri: &url,
            headers: &[(AUDIENCE_HEADER, audience.as_str())],
        };
        let nonce = format!("{salt:x}-{unique}");
        let builder = Request::get(url.as_str()).header(AUDIENCE_HEADER, audience.as_str());
        let covered = ["@method", "@target-uri", AUDIENCE_HEADER];
        match sign_request(&parts, &covered, signer, created, &nonce) {
            Ok(sig) => builder
                .header("signature-input", sig.signature_input)
                .header("signature", sig.signature)
                .body(Empty::new())
                .expect("a valid request"),
            Err(_) => builder.body(Empty::new()).expect("a valid request"),
        }
    }))
}

fn measure(
    name: &str,
    make: MakeRequest,
    pids: &[u32],
    spec: LoadSpec,
    runs: usize,
    peer: Option<usize>,
) -> Row {
    // A warm-up run, not counted.
    let _ = load::run(
        LoadSpec {
            duration: Duration::from_secs(1),
            ..spec
        },
        make.clone(),
        None,
    );
    let (mut rps, mut cpu, mut latencies) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ok, mut total, mut leaked) = (0u64, 0u64, 0u64);
    for _ in 0..runs {
        let before: f64 = pids.iter().map(|p| sys::cpu_secs(*p)).sum();
        let result = load::run(spec, make.clone(), Some(MARKER.to_vec()));
        let after: f64 = pids.iter().map(|p| sys::cpu_secs(*p)).sum();
        rps.push(result.rps());
        cpu.push((after - before) * 1e6 / result.requests.max(1) as f64);
        ok += result.ok;
        total += result.requests;
        leaked += result.leaked;
        latencies.extend(result.latencies);
    }
    let row = Row {
        name: name.to_owned(),
        rps: sys::median(&mut rps),
        p50_ms: sys::percentile(&mut latencies, 50.0).as_secs_f64() * 1e3,
        p99_ms: sys::percentile(&mut latencies, 99.0).as_secs_f64() * 1e3,
        cpu_us: sys::median(&mut cpu),
        ok_share: ok as f64 / total.max(1) as f64,
        leaked,
        peer,
    };
    eprintln!(
        "  {:<58} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {:>6.1} CPU-µs/req  ok {:>5.1}%",
        row.name,
        row.rps,
        row.p50_ms,
        row.p99_ms,
        row.cpu_us,
        row.ok_share * 100.0
    );
    row
}

fn wait_committed(testnet: &Testnet, id: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let all = testnet.nodes().iter().all(|n| {
            Testnet::client(n)
                .get(&format!("/v1/ledger/entries/{id}"))
                .is_ok_and(|r| r.status == 200)
        });
        if all {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("entry {id} did not commit")
}

/// Runs the G-series; returns its rows (nginx rows first).
pub(crate) fn run(quorate: &Path, spec: LoadSpec, runs: usize) -> anyhow::Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let nginx = ensure_nginx()?;
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    let mut payload = MARKER.to_vec();
    payload.resize(1024, b'.');
    std::fs::write(www.join("file.bin"), &payload)?;
    let port = || quorate_testnet::free_port();
    let (static_port, proxy_port, upstream_port) = (port()?, port()?, port()?);

    let upstream = start_nginx(
        &nginx,
        dir.path(),
        "upstream",
        &format!(
            " server {{ listen 127.0.0.1:{upstream_port}; root {}; }}",
            www.display()
        ),
    )?;
    let front = start_nginx(
        &nginx,
        dir.path(),
        "front",
        &format!(
            " upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n \
         server {{ listen 127.0.0.1:{static_port}; root {}; }}\n \
         server {{ listen 127.0.0.1:{proxy_port}; location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}",
            www.display()
        ),
    )?;

    eprintln!("starting a 4-node testnet");
    let net_dir = dir.path().join("testnet");
    let mut testnet = Testnet::create(
        &net_dir,
        4,
        quorate_testnet::launch::Approval::Auto,
        quorate,
    )?;
    let a = testnet.nodes()[0].clone();
    let config = a.home.join("config.toml");
    let text = std::fs::read_to_string(&config)?
        .replace("member_rate = 1000", "member_rate = 1000000")
        .replace("member_burst = 2000", "member_burst = 1000000");
    std::fs::write(
        &config,
        format!(
            "{text}\n[[upstream]]\nprefix = \"up\"\nurl = \"http://127.0.0.1:{upstream_port}\"\n"
        ),
    )?;
    let mut children = Vec::new();
    for node in testnet.nodes() {
        children.push((node.name.clone(), testnet.start(node, quorate)?));
    }
    testnet.wait_committing(Duration::from_secs(60), &mut children, |_, _| {})?;
    let _ = &mut testnet;
    let (b, c) = (testnet.nodes()[1].clone(), testnet.nodes()[2].clone());
    let put = Testnet::client(&a).request(
        "PUT",
        "/v1/objects/bench/file.bin",
        Some(("application/octet-stream", &payload)),
    )?;
    anyhow::ensure!(put.status == 201, "put failed: {}", put.text());
    let until = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64 + 86_400_000;
    let grant = Testnet::client(&a).post_json("/v1/proposals", &serde_json::json!({"grant": {
        "grantee": b.name, "resources": ["bench/*", "up/*"], "actions": ["read"], "not_after_ms": until}}))?;
    let id = grant.json()?["id"].as_str().unwrap_or_default().to_owned();
    wait_committed(&testnet, &id)?;

    // Pin: servers on CPU 0; load, upstream and idle members on CPU 1.
    let pinned = sys::cpus() >= 2;
    let pid = |name: &quorate_testnet::NodeSpec| running_pid(&name.home).unwrap_or(0);
    let (pa, pb) = (pid(&a), pid(&b));
    if pinned {
        sys::pin(std::process::id(), "1");
        sys::pin(upstream.child.id(), "1");
        for n in &testnet.nodes()[2..] {
            sys::pin(pid(n), "1");
        }
        for p in nginx_pids(front.child.id()) {
            sys::pin(p, "0");
        }
        sys::pin(pa, "0");
        sys::pin(pb, "0");
    }
    let nginx_server = nginx_pids(front.child.id());
    let key_b = quorate_did::keyfile::load(&b.home.join("key.pem"))?;
    let key_c = quorate_did::keyfile::load(&c.home.join("key.pem"))?;
    let did_a = quorate_did::keyfile::load(&a.home.join("key.pem"))?.did();
    let gateway = format!("https://{}/gateway/objects", a.gateway);
    load::trust(&std::fs::read(testnet.authority_cert())?)?;
    // nginx over TLS with the gateway's own certificate and key, for the
    // rows that cross the gateway's TLS listener.
    let tls_port = port()?;
    let tls_front = start_nginx(
        &nginx,
        dir.path(),
        "tls",
        &format!(
            " server {{ listen 127.0.0.1:{tls_port} ssl; ssl_certificate {}; ssl_certificate_key {};              ssl_protocols TLSv1.2 TLSv1.3; root {}; }}",
            a.home.join("tls/gateway.crt").display(),
            a.home.join("tls/gateway.key").display(),
            www.display()
        ),
    )?;
    let nginx_tls = nginx_pids(tls_front.child.id());
    if pinned {
        for p in &nginx_tls {
            sys::pin(*p, "0");
        }
    }

    eprintln!(
        "gateway runs ({} connections, {} runs of {:?}{})",
        spec.connections,
        runs,
        spec.duration,
        if pinned {
            ", servers pinned to CPU 0, load to CPU 1"
        } else {
            ", unpinned: one CPU"
        }
    );
    let rss_before = sys::status_kib(pa, "VmRSS");
    let mut rows = Vec::new();
    rows.push(measure(
        "G1 nginx: static 1 KiB file",
        get(format!("http://127.0.0.1:{static_port}/file.bin")),
        &nginx_server,
        spec,
        runs,
        None,
    ));
    rows.push(measure(
        "G2 quorate: granted member over libp2p (B's API -> A)",
        get_with_token(
            format!(
                "http://{}/v1/peers/{}/objects/bench/file.bin",
                b.api, a.name
            ),
            b.token.clone(),
        ),
        &[pa, pb],
        spec,
        runs,
        Some(0),
    ));
    rows.push(measure(
        "G3 quorate: RFC 9421 verified per request, over TLS",
        signed(
            format!("{gateway}/bench/file.bin"),
            &did_a,
            key_b.clone(),
            None,
        )?,
        &[pa],
        spec,
        runs,
        Some(8),
    ));
    rows.push(measure(
        "G4 quorate: owner's local API (token, no grant check)",
        get_with_token(
            format!("http://{}/v1/objects/bench/file.bin", a.api),
            a.token.clone(),
        ),
        &[pa],
        spec,
        runs,
        Some(0),
    ));
    rows.push(measure(
        "G5 nginx: proxy_pass to the upstream",
        get(format!("http://127.0.0.1:{proxy_port}/file.bin")),
        &nginx_server,
        spec,
        runs,
        None,
    ));
    rows.push(measure(
        "G6 quorate: upstream route, RFC 9421 per request, over TLS",
        signed(
            format!("{gateway}/up/file.bin"),
            &did_a,
            key_b.clone(),
            None,
        )?,
        &[pa],
        spec,
        runs,
        Some(4),
    ));
    rows.push(measure(
        "G7 quorate: upstream route over libp2p (B's API -> A)",
        get_with_token(
            format!("http://{}/v1/peers/{}/objects/up/file.bin", b.api, a.name),
            b.token.clone(),
        ),
        &[pa, pb],
        spec,
        runs,
        Some(4),
    ));
    rows.push(measure(
        "G8 quorate: 50% unauthorized (RFC 9421 over TLS, C has no grant)",
        signed(
            format!("{gateway}/bench/file.bin"),
            &did_a,
            key_b,
            Some(key_c),
        )?,
        &[pa],
        spec,
        runs,
        Some(8),
    ));
    rows.push(measure(
        "G9 nginx: static 1 KiB file over TLS (the gateway's certificate)",
        get(format!("https://127.0.0.1:{tls_port}/file.bin")),
        &nginx_tls,
        spec,
        runs,
        None,
    ));

    let rss_after = sys::status_kib(pa, "VmRSS");
    for node in testnet.nodes() {
        let _ = testnet.stop(node);
    }
    drop(tls_front);
    drop(front);
    drop(upstream);
    Ok(Gateway {
        rows,
        rss_mib: (rss_before as f64 / 1024.0, rss_after as f64 / 1024.0),
    })
}

/// The G-series.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// One row per configuration.
    pub rows: Vec<Row>,
    /// Resident memory of the serving node before and after all runs.
    pub rss_mib: (f64, f64),
}
