//! Goal: members reach a gateway on a listener of its own, over TLS with a
//! certificate they verify, and nothing else there: the certificate
//! chains to the testnet's authority (and to no other), plain HTTP gets no
//! answer, the admin API is absent from the gateway's listener and the
//! gateway from the admin API's, both answer the probes; with
//! `[gateway.tls] client_ca` set, a client without a certificate from that
//! authority cannot connect and one with it is served under its grant; a
//! node whose key file others can read does not start, and says why.
//! Method: a 2-node testnet of real processes, real TLS on loopback
//! (rustls on both ends), org-a's config edited and restarted.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use quorate_testnet::client::ApiClient;
use quorate_tests::{
    Testnet, admin, eventually, gateway, home_arg, key, problem_type, put_object, run, run_ok,
    signed_get,
};

#[test]
fn the_gateway_is_tls_on_its_own_listener_with_optional_client_certificates() {
    let (net, _) = Testnet::up(&["--nodes", "2"]);
    let a = admin(&net, "org-a");
    let gw = gateway(&net, "org-a");
    put_object(&a, "reports/q3.csv", "text/csv", b"quarter,total\nQ3,9\n");

    // The certificate verifies against the testnet's authority: an
    // unsigned request is answered, with the gateway's own refusal.
    let unsigned = gw
        .client
        .request_with("GET", "/gateway/objects/reports/q3.csv", &[], None)
        .unwrap();
    assert_eq!(
        (unsigned.status, problem_type(&unsigned).as_str()),
        (401, "unauthenticated")
    );
    // Another authority's client refuses the certificate.
    let elsewhere = tempfile::tempdir().unwrap();
    let other_ca = elsewhere.path().join("ca");
    run_ok(&["tls", "ca", "--dir", &home_arg(&other_ca)]);
    let stranger = ApiClient::new(gw.client.address(), "")
        .with_tls(&std::fs::read(other_ca.join("ca.crt")).unwrap())
        .unwrap();
    let error = stranger.get("/healthz").unwrap_err().to_string();
    assert!(
        error.contains("certificate") || error.contains("UnknownIssuer"),
        "{error}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(gw.client.address()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // Each listener serves its own routes only; both answer the probes.
    let token = std::fs::read_to_string(net.home("org-a").join("admin.token")).unwrap();
    let with_token = ApiClient::new(gw.client.address(), token.trim())
        .with_tls(&std::fs::read(net.dir.path().join("tls/ca.crt")).unwrap())
        .unwrap();
    for path in [
        "/v1/status",
        "/v1/objects/reports/q3.csv",
        "/metrics",
        "/console",
    ] {
        let answer = with_token.get(path).unwrap();
        assert_eq!(
            (answer.status, problem_type(&answer).as_str()),
            (404, "not-found"),
            "{path} on the gateway listener"
        );
    }
    for path in ["/gateway/objects/reports/q3.csv", "/gateway/catalog"] {
        let answer = a.get(path).unwrap();
        assert_eq!(
            (answer.status, problem_type(&answer).as_str()),
            (404, "not-found"),
            "{path} on the admin listener"
        );
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(gw.client.get(path).unwrap().status, 200, "{path}");
        assert_eq!(a.get(path).unwrap().status, 200, "{path}");
    }

    // A grant, then mutual TLS: org-a requires client certificates from
    // the testnet's authority.
    net.grant("org-a", "org-b", "reports/*", &["org-a", "org-b"]);
    let certs = tempfile::tempdir().unwrap();
    let authority = home_arg(&net.dir.path().join("tls"));
    let issued = run_ok(&[
        "tls",
        "cert",
        "--ca",
        &authority,
        "--name",
        "org-b-app",
        "--out",
        &home_arg(certs.path()),
    ]);
    assert!(issued.contains("org-b-app.crt"), "{issued}");
    let config = net.home("org-a").join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let ca_line = "# client_ca = \"tls/members-ca.crt\"";
    assert!(text.contains(ca_line), "template changed");
    let text = text.replace(
        ca_line,
        &format!(
            "client_ca = \"{}\"",
            net.dir.path().join("tls/ca.crt").display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    net.cli(&["testnet", "restart", "org-a"]);
    eventually(Duration::from_secs(20), "org-a ready again", || {
        a.get("/readyz").is_ok_and(|r| r.status == 200)
    });
    // Without a client certificate: no connection (TLS 1.3 reports it
    // at the first read, after the handshake).
    let refused = gw.client.get("/healthz");
    assert!(refused.is_err(), "served without a client certificate");
    // With one, a signed request is served under the grant.
    let ca = std::fs::read(net.dir.path().join("tls/ca.crt")).unwrap();
    let mutual = quorate_tests::Gateway {
        client: ApiClient::new(gw.client.address(), "")
            .with_tls_identity(
                &ca,
                &std::fs::read(certs.path().join("org-b-app.crt")).unwrap(),
                &std::fs::read(certs.path().join("org-b-app.key")).unwrap(),
            )
            .unwrap(),
        did: gw.did.clone(),
    };
    let key_b = key(&net, "org-b");
    let (served, _) = signed_get(&mutual, "/gateway/objects/reports/q3.csv", &key_b, "m-1");
    assert_eq!(
        (served.status, served.body.as_slice()),
        (200, &b"quarter,total\nQ3,9\n"[..]),
        "{}",
        served.text()
    );

    // A gateway key that others may read: the node does not start, and
    // says which file.
    net.cli(&["testnet", "kill", "org-a"]);
    let key_file = net.home("org-a").join("tls/gateway.key");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["node", "run", "--home", &home_arg(&net.home("org-a"))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("gateway.key") && stderr.contains("[gateway.tls]"),
        "{stderr}"
    );
}

#[test]
fn tls_commands_refuse_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = home_arg(&dir.path().join("ca"));
    run_ok(&["tls", "ca", "--dir", &ca]);
    let again = run(&["tls", "ca", "--dir", &ca]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("already holds an authority"));
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let no_ca = run(&[
        "tls",
        "cert",
        "--ca",
        &home_arg(&dir.path().join("nowhere")),
        "--name",
        "x",
        "--out",
        &home_arg(dir.path()),
    ]);
    let stderr = String::from_utf8_lossy(&no_ca.stderr);
    assert!(
        !no_ca.status.success() && stderr.contains("nowhere"),
        "{stderr}"
    );
    let bad_name = run(&[
        "tls", "cert", "--ca", &ca, "--name", "../up", "--out", "/tmp",
    ]);
    assert!(!bad_name.status.success());
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("--name"));
    let home = dir.path().join("home");
    let init = run(&[
        "node",
        "init",
        "--name",
        "org-x",
        "--gateway-host",
        "not a name",
        "--home",
        &home_arg(&home),
    ]);
    let stderr = String::from_utf8_lossy(&init.stderr);
    assert!(
        !init.status.success() && stderr.contains("\"not a name\""),
        "{stderr}"
    );
}
