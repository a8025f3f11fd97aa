//! Goal: with `[auth.oidc]`, people sign in with their identity provider's
//! JWTs: a token signed with EdDSA, ES256 or RS256 by a key of the
//! provider's JWKS (served over HTTP) names `oidc:<sub>` with the roles its
//! groups map to (and so with the JWKS over HTTPS, the provider's
//! certificate checked against `jwks_ca`, and refused from a provider
//! whose certificate another authority issued); `alg: none`, an algorithm outside the list, an expired,
//! not-yet-valid, wrong-audience, wrong-issuer, tampered or unknown-key
//! token is refused (401, saying why); roles are enforced and audited.
//! Method: a 1-node testnet of the real binary; a stand-in provider in
//! Python (PyJWT and cryptography, `tests/oidc/idp.py`) mints the tokens
//! and serves its JWKS and sign-in endpoints over HTTP; where a browser is
//! present, the console signs in through it (the code flow with PKCE). Skipped (with a reason)
//! when PyJWT is absent, unless QUORATE_REQUIRE_PYJWT is set (`.ci/run`
//! installs it and sets it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quorate_testnet::client::ApiClient;
use quorate_tests::{
    Testnet, admin, browser_present, eventually, home_arg, problem_type, run, run_browser, run_ok,
};

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "quorate-org-a";
const IDP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/oidc/idp.py");
/// The console's client id at the provider.
const CONSOLE_CLIENT: &str = "quorate-console";

fn have_pyjwt() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found || std::env::var_os("QUORATE_REQUIRE_PYJWT").is_none(),
        "PyJWT is required (pip install PyJWT cryptography)"
    );
    found
}

/// The stand-in provider (`idp.py serve`: the JWKS and the sign-in
/// endpoints), killed on drop.
struct JwksServer(Child);

impl Drop for JwksServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> (JwksServer, u16) {
    serve_with(dir, &[])
}

/// The stand-in provider, with `tls` (its certificate and key files) over
/// TLS.
fn serve_with(dir: &Path, tls: &[&Path]) -> (JwksServer, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .arg(IDP)
        .arg("serve")
        .arg(dir)
        .args([&port.to_string(), ISSUER, CONSOLE_CLIENT, "approvers"])
        .args(tls)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = JwksServer(child);
    eventually(Duration::from_secs(10), "the JWKS server listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (server, port)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Tokens minted by the stand-in provider, one per `(alg, kid, claims)`;
/// the kid `elsewhere` is signed with the `ed` key, under a kid the JWKS
/// does not hold.
fn mint(dir: &Path, specs: &[(&str, &str, serde_json::Value)]) -> Vec<String> {
    let spec: Vec<serde_json::Value> = specs
        .iter()
        .map(|(alg, kid, claims)| {
            let key = if *kid == "elsewhere" { "ed" } else { kid };
            serde_json::json!({"alg": alg, "kid": kid, "key": key, "claims": claims})
        })
        .collect();
    let out = Command::new("python3")
        .arg(IDP)
        .arg("mint")
        .arg(dir)
        .arg(serde_json::Value::from(spec).to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn claims(sub: &str, groups: &[&str], extra: serde_json::Value) -> serde_json::Value {
    let mut claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "groups": groups,
        "iat": now(), "exp": now() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

#[test]
fn people_sign_in_with_the_providers_jwts_and_nothing_else_passes() {
    if !have_pyjwt() {
        eprintln!("skipped: PyJWT is not installed");
        return;
    }
    let idp = tempfile::tempdir().unwrap();
    let keys = Command::new("python3")
        .arg(IDP)
        .arg("keys")
        .arg(idp.path())
        .status()
        .unwrap();
    assert!(keys.success());
    let (_server, port) = serve(idp.path());

    let (net, _) = Testnet::up(&["--nodes", "1"]);
    let config = net.home("org-a").join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[auth.oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_url = \"http://127.0.0.1:{port}/jwks.json\"\n\
         client_id = \"{CONSOLE_CLIENT}\"\n\
         authorization_endpoint = \"http://127.0.0.1:{port}/authorize\"\n\
         token_endpoint = \"http://127.0.0.1:{port}/token\"\n\
         [auth.oidc.roles]\napprovers = [\"approver\"]\nreaders = [\"reader\"]\n"
    ));
    std::fs::write(&config, text).unwrap();
    net.cli(&["testnet", "restart", "org-a"]);
    let root = admin(&net, "org-a");
    let as_bearer = |token: &str| ApiClient::new(root.address().to_owned(), token.to_owned());

    let tokens = mint(
        idp.path(),
        &[
            (
                "EdDSA",
                "ed",
                claims("alice", &["approvers"], serde_json::json!({})),
            ),
            (
                "ES256",
                "ec",
                claims("alice", &["approvers"], serde_json::json!({})),
            ),
            (
                "RS256",
                "rsa",
                claims("alice", &["approvers"], serde_json::json!({})),
            ),
            (
                "ES256",
                "ec",
                claims("bob", &["readers", "unknown"], serde_json::json!({})),
            ),
        ],
    );
    eventually(
        Duration::from_secs(30),
        "org-a accepts the provider's tokens",
        || {
            as_bearer(&tokens[0])
                .get("/v1/principal")
                .is_ok_and(|r| r.status == 200)
        },
    );
    for token in &tokens[..3] {
        let me = as_bearer(token)
            .get("/v1/principal")
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(me["principal"], "oidc:alice");
        assert_eq!(me["roles"], serde_json::json!(["approver"]));
    }
    let bob = as_bearer(&tokens[3]);
    assert_eq!(bob.get("/v1/grants").unwrap().status, 200);
    let hex = "0".repeat(64);
    let refused = bob
        .request("POST", &format!("/v1/proposals/{hex}/approve"), None)
        .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(problem_type(&refused), "role-required");
    // Records are written just after the answer (the writer batches).
    eventually(
        Duration::from_secs(10),
        "bob's refusal in the audit log",
        || {
            root.get("/v1/audit?caller=oidc:bob")
                .unwrap()
                .json()
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["action"] == "approve" && r["reason"] == "role-required")
        },
    );

    // Everything else is refused, saying why.
    let base = |extra: serde_json::Value| claims("mallory", &["approvers"], extra);
    let bad = mint(
        idp.path(),
        &[
            ("none", "ed", base(serde_json::json!({}))),
            ("HS256", "ed", base(serde_json::json!({}))),
            (
                "EdDSA",
                "ed",
                base(serde_json::json!({"exp": now() - 3600})),
            ),
            (
                "EdDSA",
                "ed",
                base(serde_json::json!({"nbf": now() + 3600})),
            ),
            (
                "EdDSA",
                "ed",
                base(serde_json::json!({"aud": "quorate-org-b"})),
            ),
            (
                "EdDSA",
                "ed",
                base(serde_json::json!({"iss": "https://elsewhere.test"})),
            ),
            ("EdDSA", "elsewhere", base(serde_json::json!({}))),
        ],
    );
    let says = [
        "algorithm \"none\" is not accepted",
        "algorithm \"HS256\" is not accepted",
        "expired",
        "not valid yet",
        "audience",
        "issuer",
        "no EdDSA key \"elsewhere\"",
    ];
    assert_eq!(
        bad.len(),
        says.len(),
        "the provider minted {} tokens",
        bad.len()
    );
    let mut tampered: Vec<String> = tokens[3].split('.').map(str::to_owned).collect();
    tampered[1] = tokens[0].split('.').nth(1).unwrap().to_owned();
    let cases = bad
        .iter()
        .cloned()
        .zip(says)
        .chain([(tampered.join("."), "signature does not verify")]);
    for (token, says) in cases {
        let answer = as_bearer(&token).get("/v1/principal").unwrap();
        assert_eq!(answer.status, 401, "{says}: {}", answer.text());
        assert_eq!(problem_type(&answer), "unauthenticated");
        assert!(
            answer.problem_detail().contains(says),
            "{says}: {}",
            answer.problem_detail()
        );
    }
    // The home's own tokens still work beside single sign-on.
    assert_eq!(root.get("/v1/tokens").unwrap().status, 200);

    // In the console, "Sign in with" the provider: the code flow with PKCE
    // in a real browser, ending signed in as oidc:alice.
    if browser_present() {
        let downloads = tempfile::tempdir().unwrap();
        let plan = serde_json::json!({
            "sso": format!("http://{}", root.address()),
            "downloads": downloads.path(), "screenshots": downloads.path(),
        });
        let seen = run_browser(&plan);
        assert_eq!(seen["sso_who"], "oidc:alice (approver)", "{seen}");
    } else {
        eprintln!("the console's sign-in through the provider is not tried: no browser here");
    }

    // Revoked on this node before they expire: alice's tokens issued until
    // now (she signs in again), and one of bob's by its jti; after a
    // restart too.
    let home = home_arg(&net.home("org-a"));
    let said = run_ok(&[
        "token",
        "revoke-jwt",
        "--home",
        &home,
        "--subject",
        "alice",
        "--reason",
        "laptop stolen",
    ]);
    assert!(
        said.contains("refusing alice's single-sign-on tokens"),
        "{said}"
    );
    let bobs = mint(
        idp.path(),
        &[(
            "EdDSA",
            "ed",
            claims(
                "bob",
                &["readers"],
                serde_json::json!({"jti": "bob-session-7"}),
            ),
        )],
    );
    run_ok(&[
        "token",
        "revoke-jwt",
        "--home",
        &home,
        "--jti",
        "bob-session-7",
    ]);
    // Tokens issued in a later second than the revocation are new ones.
    std::thread::sleep(Duration::from_millis(1100));
    let again = mint(
        idp.path(),
        &[(
            "EdDSA",
            "ed",
            claims("alice", &["approvers"], serde_json::json!({})),
        )],
    );
    let check = || {
        for token in &tokens[..3] {
            let answer = as_bearer(token).get("/v1/principal").unwrap();
            assert_eq!(answer.status, 401, "{}", answer.text());
            assert!(
                answer.problem_detail().contains("laptop stolen"),
                "{}",
                answer.text()
            );
        }
        let answer = as_bearer(&bobs[0]).get("/v1/principal").unwrap();
        assert_eq!(answer.status, 401, "{}", answer.text());
        assert!(answer.problem_detail().contains("revoked on this node"));
        // Bob's other token, and alice's new one, hold.
        assert_eq!(
            as_bearer(&tokens[3]).get("/v1/principal").unwrap().status,
            200
        );
        assert_eq!(
            as_bearer(&again[0]).get("/v1/principal").unwrap().status,
            200
        );
    };
    check();
    let listed = run_ok(&["token", "jwt-revocations", "--home", &home]);
    assert!(
        listed.contains("alice") && listed.contains("bob-session-7"),
        "{listed}"
    );
    net.cli(&["testnet", "restart", "org-a"]);
    eventually(Duration::from_secs(30), "org-a back", || {
        as_bearer(&again[0])
            .get("/v1/principal")
            .is_ok_and(|r| r.status == 200)
    });
    check();
    // The revocation itself is in the audit log, with who made it.
    let records = root.get("/v1/audit?limit=1000").unwrap().json().unwrap();
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "revoke-jwt"
                && r["caller"] == "admin"
                && r["resource"] == "alice"),
        "{records:#?}"
    );
}

#[test]
fn the_jwks_comes_over_https_from_a_provider_the_node_can_verify() {
    if !have_pyjwt() {
        eprintln!("skipped: PyJWT is not installed");
        return;
    }
    let idp = tempfile::tempdir().unwrap();
    let made = Command::new("python3")
        .arg(IDP)
        .arg("keys")
        .arg(idp.path())
        .status()
        .unwrap();
    assert!(made.success());
    // The provider's certificate, from an authority of its own.
    let (ca, certs) = (idp.path().join("ca"), idp.path().join("certs"));
    run_ok(&["tls", "ca", "--dir", &home_arg(&ca)]);
    run_ok(&[
        "tls",
        "cert",
        "--ca",
        &home_arg(&ca),
        "--name",
        "idp",
        "--host",
        "127.0.0.1",
        "--out",
        &home_arg(&certs),
    ]);
    let (cert, key) = (certs.join("idp.crt"), certs.join("idp.key"));
    let (_server, port) = serve_with(idp.path(), &[&cert, &key]);

    let (net, _) = Testnet::up(&["--nodes", "1"]);
    let config = net.home("org-a").join("config.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    let with_ca = |ca: &Path| {
        format!(
            "{base}\n[auth.oidc]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_url = \"https://127.0.0.1:{port}/jwks.json\"\njwks_ca = \"{}\"\n\
             [auth.oidc.roles]\napprovers = [\"approver\"]\n",
            ca.display()
        )
    };
    // Trusting another authority: the keys are never fetched, and the
    // log says why.
    let elsewhere = idp.path().join("elsewhere");
    run_ok(&["tls", "ca", "--dir", &home_arg(&elsewhere)]);
    std::fs::write(&config, with_ca(&elsewhere.join("ca.crt"))).unwrap();
    net.cli(&["testnet", "restart", "org-a"]);
    let log = net.home("org-a").join("node.log");
    eventually(
        Duration::from_secs(20),
        "the refused certificate logged",
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("invalid peer certificate")),
    );
    let root = admin(&net, "org-a");
    let token = mint(
        idp.path(),
        &[(
            "EdDSA",
            "ed",
            claims("alice", &["approvers"], serde_json::json!({})),
        )],
    )
    .remove(0);
    let alice = ApiClient::new(root.address().to_owned(), token);
    assert_eq!(alice.get("/v1/principal").unwrap().status, 401);

    // Trusting the provider's authority: its tokens open the API.
    std::fs::write(&config, with_ca(&ca.join("ca.crt"))).unwrap();
    net.cli(&["testnet", "restart", "org-a"]);
    eventually(Duration::from_secs(30), "alice signed in", || {
        alice.get("/v1/principal").is_ok_and(|r| r.status == 200)
    });
    let me = alice.get("/v1/principal").unwrap().json().unwrap();
    assert_eq!(me["principal"], "oidc:alice");

    // A jwks_ca that is not there stops the node at start, naming it.
    run_ok(&["testnet", "kill", "org-a", "--dir", net.path_str()]);
    std::fs::write(&config, with_ca(&idp.path().join("missing.pem"))).unwrap();
    let out = run(&["node", "run", "--home", &home_arg(&net.home("org-a"))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("missing.pem"),
        "{stderr}"
    );
}
