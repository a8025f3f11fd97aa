//! End-to-end tests of Quorate across real processes.
//!
//! The tests live in `tests/`; this library holds what they share: finding
//! the `quorate` binary that `cargo test --workspace` built, and running it.
//! It depends on no Quorate crate's internals, only on the binary's
//! command-line contract.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quorate_api::signature::{AUDIENCE_HEADER, RequestParts, sign_request};
use quorate_did::Keypair;
use quorate_testnet::client::{ApiClient, Response};

/// The `quorate` binary: `$QUORATE_BIN` if set, else the one cargo built next
/// to this test executable (`target/<profile>/quorate`).
pub fn quorate_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("QUORATE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/quorate
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("quorate{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p quorate-cli` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// Runs `quorate ARGS` to completion and returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(quorate_bin())
        .args(args)
        .env_remove("QUORATE_HOME")
        .output()
        .expect("run quorate")
}

/// Runs `quorate ARGS`, requires success, and returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "quorate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// One request to a node's local API with its admin token; returns the
/// status and the body as text.
pub fn http(
    method: &str,
    address: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, String)> {
    let client = quorate_testnet::client::ApiClient::new(address, token);
    let payload = body.map(|b| b.to_string());
    let response = client.request(
        method,
        path,
        payload
            .as_deref()
            .map(|p| ("application/json", p.as_bytes())),
    )?;
    Ok((response.status, response.text()))
}

/// Running `quorate node run` processes, killed when dropped (so a failing
/// test never leaves nodes behind).
pub struct Processes {
    children: Vec<Option<std::process::Child>>,
    homes: Vec<PathBuf>,
}

impl Processes {
    /// Starts a node for each home; logs go to `HOME/node.log`.
    pub fn start(homes: &[PathBuf]) -> Self {
        let mut this = Self {
            children: Vec::new(),
            homes: homes.to_vec(),
        };
        for i in 0..homes.len() {
            let child = this.spawn(i);
            this.children.push(Some(child));
        }
        this
    }

    fn spawn(&self, i: usize) -> std::process::Child {
        let home = &self.homes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("node.log"))
            .expect("node log");
        Command::new(quorate_bin())
            .args(["node", "run", "--home"])
            .arg(home)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn quorate node run")
    }

    /// SIGKILL: the node gets no chance to clean up.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.children[i] = Some(self.spawn(i));
    }

    /// SIGTERM to every node, then waits for each to exit (up to 10 s),
    /// returning whether each exited successfully.
    pub fn stop_all(&mut self) -> Vec<bool> {
        let mut ok = Vec::new();
        for child in self.children.iter_mut().flatten() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for slot in &mut self.children {
            let Some(mut child) = slot.take() else {
                ok.push(false);
                continue;
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let status = loop {
                if let Ok(Some(status)) = child.try_wait() {
                    break Some(status);
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    break None;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            ok.push(status.is_some_and(|s| s.success()));
        }
        ok
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// Stops the testnet when the test ends, pass or fail.
pub struct Testnet {
    /// The testnet directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Testnet {
    /// `testnet up --detach` in a fresh directory, with `args`.
    pub fn up(args: &[&str]) -> (Self, String) {
        let dir = tempfile::tempdir().unwrap();
        let this = Self { dir };
        let mut all = vec!["testnet", "up", "--detach", "--dir", this.path_str()];
        all.extend_from_slice(args);
        let out = run_ok(&all);
        (this, out)
    }

    /// The directory as text.
    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// An organization's node home.
    pub fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `quorate ARGS --dir DIR`, requiring success.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--dir", self.path_str()]);
        run_ok(&all)
    }

    /// The status table's row for `name`.
    pub fn row(&self, name: &str) -> Vec<String> {
        let status = self.cli(&["testnet", "status"]);
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in {status}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = run(&["testnet", "down", "--dir", self.path_str()]);
    }
}

/// A path as a CLI argument.
pub fn home_arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The grants a node's CLI lists.
pub fn grants(home: &Path) -> Vec<serde_json::Value> {
    let out = run_ok(&["grant", "list", "--home", &home_arg(home)]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether org `name`'s node lists grant `id` (committed, any status).
pub fn holds_grant(net: &Testnet, name: &str, id: &str) -> bool {
    admin(net, name)
        .get(&format!("/v1/grants/{id}"))
        .is_ok_and(|r| r.status == 200)
}

/// Org `name`'s local API, with its admin token.
pub fn admin(net: &Testnet, name: &str) -> ApiClient {
    let home = net.home(name);
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    let listen = config
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .map(|rest| format!("127.0.0.1:{}", rest.trim_end_matches('"')))
        .unwrap();
    let token = std::fs::read_to_string(home.join("admin.token")).unwrap();
    ApiClient::new(listen, token.trim())
}

/// An organization's key.
pub fn key(net: &Testnet, name: &str) -> Keypair {
    quorate_did::keyfile::load(&net.home(name).join("key.pem")).unwrap()
}

/// A member's gateway as another member's application sees it: its TLS
/// listener (the certificate verified against the testnet's authority)
/// and the member's DID.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// A client of the listener (no admin token).
    pub client: ApiClient,
    /// The member that runs it.
    pub did: String,
}

impl Gateway {
    /// `https://host:port` of the listener.
    pub fn origin(&self) -> String {
        format!("https://{}", self.client.address())
    }
}

/// Org `name`'s gateway in the testnet `net`.
pub fn gateway(net: &Testnet, name: &str) -> Gateway {
    gateway_at(&net.home(name), &net.dir.path().join("tls/ca.crt"))
}

/// The gateway of the node in `home`, trusting the authority in `ca`.
pub fn gateway_at(home: &Path, ca: &Path) -> Gateway {
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    let mut section = "";
    let mut listen = None;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[gateway]"
            && let Some(value) = line.strip_prefix("listen = ")
        {
            listen = Some(value.trim_matches('"').to_owned());
        }
    }
    let listen = listen.expect("a [gateway] listen line");
    let ca = std::fs::read(ca).unwrap();
    Gateway {
        client: ApiClient::new(listen, "").with_tls(&ca).unwrap(),
        did: quorate_did::keyfile::load(&home.join("key.pem"))
            .unwrap()
            .did()
            .to_string(),
    }
}

/// A GET to `gateway` signed by `signer`, addressed to the member that
/// runs it.
pub fn signed_get(
    gateway: &Gateway,
    path: &str,
    signer: &Keypair,
    nonce: &str,
) -> (Response, Vec<(String, String)>) {
    signed_get_to(gateway, &gateway.did, path, signer, nonce)
}

/// A GET to `gateway` signed by `signer` for the member `audience` (a
/// did:key), covering `@method`, `@target-uri` and the audience header.
pub fn signed_get_to(
    gateway: &Gateway,
    audience: &str,
    path: &str,
    signer: &Keypair,
    nonce: &str,
) -> (Response, Vec<(String, String)>) {
    let target = format!("{}{path}", gateway.origin());
    let covered = ["@method", "@target-uri", AUDIENCE_HEADER];
    let headers = signature_headers(&target, audience, &covered, signer, nonce);
    (send(&gateway.client, path, &headers), headers)
}

/// The headers of a GET of `target` (an absolute URI) signed by `signer`
/// for the member `audience`, covering `covered`, created now.
pub fn signature_headers(
    target: &str,
    audience: &str,
    covered: &[&str],
    signer: &Keypair,
    nonce: &str,
) -> Vec<(String, String)> {
    let created = unix_now();
    let parts = RequestParts {
        method: "GET",
        target_uri: target,
        headers: &[(AUDIENCE_HEADER, audience)],
    };
    let sig = sign_request(&parts, covered, signer, created, nonce).unwrap();
    vec![
        ("Quorate-Audience".to_owned(), audience.to_owned()),
        ("Signature-Input".to_owned(), sig.signature_input),
        ("Signature".to_owned(), sig.signature),
    ]
}

/// A PUT of `body` to `gateway` at `path`, signed by `signer` for the
/// member that runs it, covering `content-digest` (given as
/// `content_digest`, which need not be the body's).
pub fn signed_put(
    gateway: &Gateway,
    path: &str,
    signer: &Keypair,
    nonce: &str,
    body: &[u8],
    content_digest: &str,
) -> Response {
    let target = format!("{}{path}", gateway.origin());
    let created = unix_now();
    let fields = [
        (AUDIENCE_HEADER, gateway.did.as_str()),
        ("content-digest", content_digest),
    ];
    let parts = RequestParts {
        method: "PUT",
        target_uri: &target,
        headers: &fields,
    };
    let covered = ["@method", "@target-uri", AUDIENCE_HEADER, "content-digest"];
    let sig = sign_request(&parts, &covered, signer, created, nonce).unwrap();
    let headers = [
        ("Quorate-Audience", gateway.did.as_str()),
        ("Content-Digest", content_digest),
        ("Signature-Input", sig.signature_input.as_str()),
        ("Signature", sig.signature.as_str()),
    ];
    gateway
        .client
        .request_with("PUT", path, &headers, Some(("text/csv", body)))
        .unwrap()
}

/// Seconds since the Unix epoch, a signature's `created`.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A `method` request to `gateway` at `path`, signed by `signer` for the
/// member that runs it, with `extra` header fields (not covered) and, with
/// a body, its `Content-Digest` (covered).
pub fn signed_request(
    gateway: &Gateway,
    method: &str,
    path: &str,
    signer: &Keypair,
    nonce: &str,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Response {
    let target = format!("{}{path}", gateway.origin());
    let created = unix_now();
    let digest = body.map(|(_, bytes)| quorate_api::signature::content_digest_sha256(bytes));
    let mut fields = vec![(AUDIENCE_HEADER, gateway.did.as_str())];
    let mut covered = vec!["@method", "@target-uri", AUDIENCE_HEADER];
    if let Some(digest) = &digest {
        fields.push(("content-digest", digest.as_str()));
        covered.push("content-digest");
    }
    let parts = RequestParts {
        method,
        target_uri: &target,
        headers: &fields,
    };
    let sig = sign_request(&parts, &covered, signer, created, nonce).unwrap();
    let mut headers = vec![
        ("Quorate-Audience", gateway.did.as_str()),
        ("Signature-Input", sig.signature_input.as_str()),
        ("Signature", sig.signature.as_str()),
    ];
    if let Some(digest) = &digest {
        headers.push(("Content-Digest", digest.as_str()));
    }
    headers.extend_from_slice(extra);
    gateway
        .client
        .request_with(method, path, &headers, body)
        .unwrap()
}

/// Stores `body` at `path` through `api` (an organization's local API)
/// and requires 201 Created.
pub fn put_object(api: &ApiClient, path: &str, content_type: &str, body: &[u8]) {
    let put = api
        .request(
            "PUT",
            &format!("/v1/objects/{path}"),
            Some((content_type, body)),
        )
        .unwrap();
    assert_eq!(put.status, 201, "{}", put.text());
}

/// A GET with exactly these header fields.
pub fn send(api: &ApiClient, path: &str, headers: &[(String, String)]) -> Response {
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    api.request_with("GET", path, &borrowed, None).unwrap()
}

/// The problem type's code of a problem+json response.
pub fn problem_type(response: &Response) -> String {
    assert_eq!(
        response.content_type.as_deref(),
        Some("application/problem+json"),
        "status {} body {}",
        response.status,
        response.text()
    );
    response.json().unwrap()["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:quorate:problem:")
        .to_owned()
}

impl Testnet {
    /// `quorate proposal grant` from `from` to `to` for `resource` (read,
    /// one day); waits until it is committed on every node of `on`.
    /// Returns the grant id.
    pub fn grant(&self, from: &str, to: &str, resource: &str, on: &[&str]) -> String {
        let id = run_ok(&[
            "proposal",
            "grant",
            "--home",
            &home_arg(&self.home(from)),
            "--to",
            to,
            "--resource",
            resource,
            "--days",
            "1",
        ]);
        let id = id.trim().to_owned();
        eventually(Duration::from_secs(20), "the grant committed", || {
            on.iter().all(|name| holds_grant(self, name, &id))
        });
        id
    }

    /// Stops every node, runs `quorate ledger verify` on each of `names`,
    /// and checks that all hold the same blocks up to the lowest tip, which
    /// it returns.
    pub fn down_and_verify(&self, names: &[&str]) -> u64 {
        self.cli(&["testnet", "down"]);
        let mut heights = Vec::new();
        for name in names {
            let out = run(&["ledger", "verify", "--home", &home_arg(&self.home(name))]);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success() && stdout.contains("OK"),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let height = stdout
                .lines()
                .find_map(|l| l.strip_prefix("height:"))
                .and_then(|h| h.trim().parse::<u64>().ok())
                .expect("a height line");
            heights.push(height);
        }
        let common = heights.iter().copied().min().unwrap_or(0);
        let chains: Vec<Vec<String>> = names
            .iter()
            .map(|name| {
                let path = self.home(name).join("data/ledger.redb");
                let ledger = quorate_ledger::ledger::Ledger::open(&path).expect("open the ledger");
                (1..=common)
                    .map(|h| {
                        let block = ledger.block(h).expect("read").expect("a block");
                        block.block.hash().expect("hash").to_string()
                    })
                    .collect()
            })
            .collect();
        for (name, chain) in names.iter().zip(&chains).skip(1) {
            let differs = chain.iter().zip(&chains[0]).position(|(x, y)| x != y);
            assert_eq!(
                differs, None,
                "{name} and {} hold different blocks",
                names[0]
            );
        }
        common
    }
}

/// An open `GET /v1/events` stream, read event by event.
pub struct Events(BufReader<TcpStream>);

impl Events {
    /// Opens the stream as `token`, resuming after `last_event_id`.
    pub fn open(address: &str, token: &str, last_event_id: Option<u64>) -> Self {
        let mut tcp = TcpStream::connect(address).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        write!(
            tcp,
            "GET /v1/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n{resume}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(tcp);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        Self(reader)
    }

    /// The next event: (id, kind, data).
    pub fn next_event(&mut self) -> (u64, String, serde_json::Value) {
        let (mut id, mut kind, mut data) = (None, None, None);
        // Keep-alive comments arrive every 15 s: without a deadline of its
        // own, a missing event would hang the test rather than fail it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "no event within 60 s");
            let mut line = String::new();
            assert!(self.0.read_line(&mut line).unwrap() > 0, "the stream ended");
            let line = line.trim_end();
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = serde_json::from_str(v).ok();
            } else if line.is_empty()
                && let (Some(id), Some(kind), Some(data)) = (id, kind.take(), data.take())
            {
                return (id, kind, data);
            }
        }
    }

    /// Events until one of `kind` for which `wanted` holds.
    pub fn until(
        &mut self,
        kind: &str,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> (u64, serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no {kind} event");
            let (id, k, data) = self.next_event();
            if k == kind && wanted(&data) {
                return (id, data);
            }
        }
    }
}

/// Whether Debian's Chromium, chromedriver and Selenium are here, for the
/// console's browser tests; where `QUORATE_REQUIRE_BROWSER` is set (as
/// `.ci/run` does), their absence fails the test instead.
pub fn browser_present() -> bool {
    let found = Path::new("/usr/bin/chromium").exists()
        && Path::new("/usr/bin/chromedriver").exists()
        && Command::new("python3")
            .args(["-c", "import selenium"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        found || std::env::var_os("QUORATE_REQUIRE_BROWSER").is_none(),
        "Chromium, chromedriver and Selenium are required"
    );
    found
}

/// Runs `tests/console/browser.py` with `plan`; what it saw (it fails the
/// test with the script's output if a step did not hold).
pub fn run_browser(plan: &serde_json::Value) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/console/browser.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(plan.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
