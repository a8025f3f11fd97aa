//! End-to-end tests of Quorate across real processes.
//!
//! The tests live in `tests/`; this library holds what they share: finding
//! the `quorate` binary that `cargo test --workspace` built, and running it.
//! It depends on no Quorate crate's internals, only on the binary's
//! command-line contract.

use std::path::PathBuf;
use std::process::{Command, Output};

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
        "{} not built: run `cargo build -p quorate-node` (cargo test --workspace builds it)",
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
