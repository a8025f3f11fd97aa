//! Goal: `quorate ledger verify` checks a node's ledger and an export file
//! offline, prints a summary, and names the height of the first failure;
//! `quorate ledger export` writes a file that verifies.
//! Method: a real node home whose ledger holds a consortium's chain (built
//! with the ledger's test fixture), and the real `quorate` binary.

use std::path::Path;
use std::process::{Command, Output};

use quorate_contracts::Body;
use quorate_ledger::ledger::Ledger;
use quorate_ledger::testing::Consortium;

fn quorate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(args)
        .output()
        .expect("run quorate")
}

fn home_with_chain(dir: &Path) -> Consortium {
    let home = dir.join("org-a");
    let out = quorate(&[
        "node",
        "init",
        "--home",
        home.to_str().unwrap(),
        "--name",
        "org-a",
    ]);
    assert!(out.status.success());
    let mut c = Consortium::new(4);
    let mut ledger = Ledger::open(&home.join("data/ledger.redb")).unwrap();
    ledger.init_genesis(&c.blocks[0]).unwrap();
    for i in 0..3 {
        let e = c.entry(i, Body::Grant(c.grant_terms(i, i + 1)), &c.all());
        ledger.append(&c.commit(vec![e])).unwrap();
    }
    c
}

#[test]
fn verify_and_export_a_node_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let c = home_with_chain(dir.path());
    let home = dir.path().join("org-a");
    let h = home.to_str().unwrap();

    let out = quorate(&["ledger", "verify", "--home", h]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("height:        3"), "{stdout}");
    assert!(stdout.contains("grants:        3 active"), "{stdout}");
    assert!(stdout.contains(&c.chain.tip().hash.to_string()));
    assert!(stdout.contains("OK"));

    let file = dir.path().join("ledger.export");
    let f = file.to_str().unwrap();
    let out = quorate(&["ledger", "export", "--home", h, "--out", f]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = quorate(&["ledger", "verify", f]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    // Flip one byte inside the last block's record: refused, with its height.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let out = quorate(&["ledger", "verify", f]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: FAILED"), "{stderr}");
    assert!(
        stderr.contains("record 4") || stderr.contains("height 3"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1);
}

#[test]
fn verify_pins_the_genesis_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let c = home_with_chain(dir.path());
    let home = dir.path().join("org-a");
    let h = home.to_str().unwrap();
    let file = dir.path().join("ledger.export");
    let f = file.to_str().unwrap();
    assert!(
        quorate(&["ledger", "export", "--home", h, "--out", f])
            .status
            .success()
    );
    let right = c.chain.genesis_hash().to_string();
    // Another consortium's genesis: a valid chain, not this one.
    let wrong = Consortium::new(3).chain.genesis_hash().to_string();
    for source in [&["--home", h][..], &[f][..]] {
        let args = |genesis: &str| {
            let mut args = vec!["ledger", "verify", "--genesis", genesis];
            args.extend_from_slice(source);
            quorate(&args)
        };
        let out = args(&right);
        assert!(
            out.status.success(),
            "{source:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

        let out = args(&wrong);
        assert_eq!(out.status.code(), Some(1), "{source:?}");
        assert!(
            out.stdout.is_empty(),
            "{source:?}: no summary for a wrong chain"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim_end(),
            format!("error: FAILED: genesis hash {right} is not the trusted {wrong}"),
            "{source:?}"
        );

        let out = args("not-a-hash");
        assert_eq!(out.status.code(), Some(1), "{source:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a hash"),
            "{source:?}"
        );
    }
}

#[test]
fn verify_explains_missing_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = quorate(&[
        "ledger",
        "verify",
        dir.path().join("nope").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
    let out = quorate(&["ledger", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    let home = dir.path().join("h");
    assert!(
        quorate(&[
            "node",
            "init",
            "--home",
            home.to_str().unwrap(),
            "--name",
            "h"
        ])
        .status
        .success()
    );
    let out = quorate(&["ledger", "verify", "--home", home.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no ledger yet"));
}

/// Goal: `quorate ledger compact` shrinks a ledger file whose pages were
/// freed and leaves a ledger that verifies, and refuses while the home is
/// locked (a running node holds the lock).
/// Method: a home whose ledger pruned all its state history while 60
/// blocks of grants and revocations were appended (freeing tree pages),
/// then the real binary.
#[test]
fn compact_shrinks_a_ledger_and_keeps_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = home_with_chain(dir.path());
    let home = dir.path().join("org-a");
    let h = home.to_str().unwrap();
    let path = home.join("data/ledger.redb");
    {
        let mut ledger = Ledger::open(&path).unwrap();
        ledger.keep_state_history(Some(0));
        for i in 0..60 {
            let entries = (0..40)
                .map(|k| {
                    let from = (i + k) % 4;
                    c.entry(
                        from,
                        Body::Grant(c.grant_terms(from, (from + 1) % 4)),
                        &c.all(),
                    )
                })
                .collect();
            ledger.append(&c.commit(entries)).unwrap();
        }
    }
    {
        let _held = quorate_node::home::lock::HomeLock::acquire(&home).unwrap();
        let out = quorate(&["ledger", "compact", "--home", h]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("must be stopped"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before = std::fs::metadata(&path).unwrap().len();
    let out = quorate(&["ledger", "compact", "--home", h]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < before, "{before} -> {after}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{before} bytes -> {after} bytes"))
    );
    let out = quorate(&["ledger", "verify", "--home", h]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("grants:        2403 active"));
}
