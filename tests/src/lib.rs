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
