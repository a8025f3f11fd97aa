//! Goal: the `quorate` CLI gives a clear one-line error and a non-zero exit
//! for every kind of bad input of issue 2, and never overwrites a key.
//! Method: run the real binary against temporary node homes.

use std::path::Path;
use std::process::{Command, Output};

fn quorate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(args)
        .env_remove("QUORATE_HOME")
        .output()
        .expect("run quorate")
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "not one line: {text:?}");
    text.trim_end().to_owned()
}

fn init(home: &Path, name: &str) -> Output {
    quorate(&[
        "node",
        "init",
        "--home",
        home.to_str().unwrap(),
        "--name",
        name,
    ])
}

#[test]
fn unknown_subcommand_and_bad_arguments_are_one_line_exit_2() {
    for args in [
        &["bogus"][..],
        &["node", "init"],
        &["did", "resolve"],
        &["node", "init", "--name", "x", "--api-port", "99999"],
    ] {
        let out = quorate(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let line = stderr_line(&out);
        assert!(line.starts_with("error:"), "{line}");
    }
}

#[test]
fn help_and_version_succeed() {
    let out = quorate(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("quorate "));
    let out = quorate(&["node", "init", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--force"));
}

#[test]
fn bad_did_is_refused_with_the_reason() {
    let cases = [
        ("did:web:example.com", "not a did:key"),
        (
            "did:key:f6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
            "base58btc",
        ),
        (
            "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",
            "not Ed25519",
        ),
        (
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0",
            "base58",
        ),
    ];
    for (did, reason) in cases {
        let out = quorate(&["did", "resolve", did]);
        assert_eq!(out.status.code(), Some(1), "{did}");
        let line = stderr_line(&out);
        assert!(line.contains(reason), "{did}: {line}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn existing_home_is_refused_and_force_keeps_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("a");
    assert!(init(&home, "org-a").status.success());
    let key_before = std::fs::read(home.join("key.pem")).unwrap();

    let out = init(&home, "org-a");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("already a Quorate node home"));

    let h = home.to_str().unwrap();
    let out = quorate(&["node", "init", "--home", h, "--name", "org-a", "--force"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept the existing key"));
    assert_eq!(std::fs::read(home.join("key.pem")).unwrap(), key_before);
}

#[test]
fn unsafe_truncated_and_foreign_key_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("a");
    assert!(init(&home, "org-a").status.success());
    let key = home.join("key.pem");
    let h = home.to_str().unwrap();

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = quorate(&["did", "show", "--home", h]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("chmod 600"));

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pem = std::fs::read(&key).unwrap();
    std::fs::write(&key, &pem[..pem.len() / 2]).unwrap();
    let out = quorate(&["did", "show", "--home", h]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("not a PKCS#8 PEM Ed25519 private key"));

    let out = quorate(&[
        "did",
        "show",
        "--home",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("quorate node init"));
}

#[test]
fn invalid_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = init(&dir.path().join("a"), "Org A");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("invalid name"));
    assert!(
        !dir.path().join("a").exists(),
        "nothing written for a bad name"
    );
}
