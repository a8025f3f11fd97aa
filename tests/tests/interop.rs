//! Goal: a member needs no Quorate code to call a gateway: a request
//! signed by an ordinary third-party RFC 9421 library (Python's
//! `http-message-signatures`, Ed25519, keyid = the member's did:key) is
//! served under a grant and refused without one.
//! Method: a 4-node testnet; `tests/interop/rfc9421_client.py`, over
//! HTTPS verified by Python's `ssl` against the testnet's authority. Skipped
//! when the library is absent, unless QUORATE_REQUIRE_INTEROP is set
//! (`.ci/run` installs it and sets it).

use quorate_tests::{Testnet, admin, home_arg, put_object, run_ok};

fn library_present() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import http_message_signatures, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_third_party_rfc9421_client_is_served_under_a_grant() {
    if !library_present() {
        assert!(
            std::env::var_os("QUORATE_REQUIRE_INTEROP").is_none(),
            "python3 with http-message-signatures is required"
        );
        eprintln!("skipped: python3 http-message-signatures is not installed");
        return;
    }
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let a = admin(&net, "org-a");
    put_object(&a, "pub/hello.txt", "text/plain", b"hello from A");
    net.grant("org-a", "org-b", "pub/*", &["org-a"]);

    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/rfc9421_client.py");
    // Over TLS, the certificate verified against the testnet's authority
    // by Python's own ssl module.
    let gateway = quorate_tests::gateway(&net, "org-a");
    let url = format!("{}/gateway/objects/pub/hello.txt", gateway.origin());
    let ca = home_arg(&net.dir.path().join("tls/ca.crt"));
    let did_of = |name: &str| {
        run_ok(&[
            "did",
            "show",
            "--home",
            &home_arg(&net.home(name)),
            "--did-only",
        ])
        .trim()
        .to_owned()
    };
    let audience = did_of("org-a");
    let call = |name: &str| {
        let did = did_of(name);
        let out = std::process::Command::new("python3")
            .args([
                client,
                &home_arg(&net.home(name).join("key.pem")),
                &did,
                &url,
                &audience,
                &ca,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(call("org-b"), "200\nhello from A");
    let refused = call("org-c");
    assert!(
        refused.starts_with("403\n") && refused.contains("urn:quorate:problem:no-grant"),
        "{refused}"
    );
}
