//! Goal: key files are interoperable: OpenSSL reads the keys we write, and we
//! read the keys OpenSSL writes, and both agree on the public key.
//! Method: run the `openssl` binary (skipped with a message where it is not
//! installed; .ci/run installs it).

use std::process::Command;

use quorate_did::{Keypair, keyfile};

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn openssl_and_quorate_read_each_others_key_files() {
    if !openssl_available() {
        // CI installs openssl and sets this, so the test cannot pass by skipping there.
        assert!(
            std::env::var_os("QUORATE_REQUIRE_OPENSSL").is_none(),
            "QUORATE_REQUIRE_OPENSSL is set but there is no openssl binary"
        );
        eprintln!("skipped: no openssl binary on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // Ours -> OpenSSL: the raw public key OpenSSL derives equals our DID's.
    let ours = dir.path().join("ours.pem");
    let key = Keypair::generate().unwrap();
    keyfile::write_new(&ours, &key).unwrap();
    let out = Command::new("openssl")
        .args([
            "pkey",
            "-in",
            ours.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl refused our key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout[out.stdout.len() - 32..],
        key.did().public_key_bytes()
    );

    // OpenSSL -> ours.
    let theirs = dir.path().join("theirs.pem");
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            theirs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pem = std::fs::read_to_string(&theirs).unwrap();
    let loaded = Keypair::from_pkcs8_pem(&pem).unwrap();
    let out = Command::new("openssl")
        .args([
            "pkey",
            "-in",
            theirs.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.stdout[out.stdout.len() - 32..],
        loaded.did().public_key_bytes()
    );
}
