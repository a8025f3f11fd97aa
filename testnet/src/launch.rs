//! A testnet directory and its node processes: create, start, stop, kill,
//! pause, resume, and ask each node how it is doing.
//!
//! The directory holds `testnet.json` (the manifest: chain id and each
//! organization's home, DID and addresses) and one node home per
//! organization. Which nodes run is never remembered separately: a running
//! node holds the lock on its home (`HOME/node.lock`, with its pid), so the
//! truth survives a crashed launcher and a node is never started twice.

use std::fs::File;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use crate::client::ApiClient;
use crate::{NodeSpec, generate};

/// The manifest's file name in the testnet directory.
pub const MANIFEST_FILE: &str = "testnet.json";
/// Each node's log, in its home.
pub const LOG_FILE: &str = "node.log";
/// How long a node gets to stop after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How nodes decide on proposals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// Each node's endorsement policy decides (the careful defaults `node
    /// init` writes: grants by their grantor endorsed, membership changes
    /// left to a person).
    Policy,
    /// Endorse what the rules accept.
    Auto,
    /// Wait for an operator.
    Manual,
}

impl Approval {
    /// The config line that sets it.
    fn config_line(self) -> &'static str {
        match self {
            Self::Policy => "approval = \"policy\"",
            Self::Auto => "approval = \"auto\"",
            Self::Manual => "approval = \"manual\"",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    chain_id: String,
    nodes: Vec<ManifestNode>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestNode {
    name: String,
    home: PathBuf,
    did: String,
    api: String,
    /// Absent in a testnet made before gateways had a listener of their
    /// own: read from the home's config then.
    #[serde(default)]
    gateway: Option<String>,
    p2p: String,
}

/// A testnet directory.
#[derive(Debug)]
pub struct Testnet {
    dir: PathBuf,
    chain_id: String,
    nodes: Vec<NodeSpec>,
}

/// What a node reports, or why it could not.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The pid holding the node's home, if a node runs on it.
    pub pid: Option<u32>,
    /// The node's `/v1/status`, if it answered.
    pub status: Option<serde_json::Value>,
}

impl NodeStatus {
    fn field(&self, name: &str) -> Option<u64> {
        self.status.as_ref()?.get(name)?.as_u64()
    }
    /// Committed height.
    pub fn height(&self) -> Option<u64> {
        self.field("height")
    }
    /// Connected peers.
    pub fn peers(&self) -> Option<u64> {
        self.field("peers")
    }
    /// Open proposals.
    pub fn pending(&self) -> Option<u64> {
        self.field("pending_proposals")
    }
    /// Milliseconds since the last commit.
    pub fn last_commit_age_ms(&self) -> Option<u64> {
        self.field("last_commit_age_ms")
    }
    /// `running`, `stopped`, `paused` or `starting`.
    pub fn state(&self) -> &'static str {
        match (self.pid, &self.status) {
            (None, _) => "stopped",
            (Some(pid), None) if is_stopped_by_signal(pid) => "paused",
            (Some(_), None) => "starting",
            (Some(_), Some(_)) => "running",
        }
    }
}

impl Testnet {
    /// Creates a testnet of `n` organizations in `dir` (which must not hold
    /// one already), using the `quorate` binary at `quorate` for `node init`.
    pub fn create(
        dir: &Path,
        n: usize,
        approval: Approval,
        quorate: &Path,
    ) -> anyhow::Result<Self> {
        ensure!(
            !dir.join(MANIFEST_FILE).exists(),
            "{} already holds a testnet",
            dir.display()
        );
        if dir.exists() {
            let mut entries =
                std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
            ensure!(
                entries.next().is_none(),
                "{} exists and is not empty; choose another --dir",
                dir.display()
            );
        }
        let chain_id = format!("quorate-testnet-{}", random_suffix()?);
        let nodes = generate(dir, n, &chain_id, quorate)?;
        if approval != Approval::Policy {
            let template_line = Approval::Policy.config_line();
            for node in &nodes {
                let path = node.home.join("config.toml");
                let config = std::fs::read_to_string(&path)?;
                ensure!(
                    config.contains(template_line),
                    "config template changed: no {template_line} line"
                );
                std::fs::write(&path, config.replace(template_line, approval.config_line()))?;
            }
        }
        let testnet = Self {
            dir: dir.to_owned(),
            chain_id,
            nodes,
        };
        testnet.write_manifest()?;
        Ok(testnet)
    }

    /// Writes the manifest atomically: a directory with one is whole.
    fn write_manifest(&self) -> anyhow::Result<()> {
        let manifest = Manifest {
            chain_id: self.chain_id.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| ManifestNode {
                    name: n.name.clone(),
                    home: n.home.clone(),
                    did: n.did.clone(),
                    api: n.api.clone(),
                    gateway: Some(n.gateway.clone()),
                    p2p: n.p2p.clone(),
                })
                .collect(),
        };
        let tmp = self.dir.join(format!("{MANIFEST_FILE}.partial"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&manifest)?)?;
        std::fs::rename(&tmp, self.dir.join(MANIFEST_FILE))?;
        Ok(())
    }

    /// A new organization's home for this testnet: its own key, the
    /// testnet's genesis, the others as bootstrap peers, the same approval
    /// mode. It is not a member until a quorum admits it.
    pub fn add_node(&mut self, name: &str, quorate: &Path) -> anyhow::Result<NodeSpec> {
        ensure!(
            self.nodes.iter().all(|n| n.name != name),
            "{name} is already in this testnet"
        );
        let first = self.nodes.first().context("the testnet has no nodes")?;
        let genesis = std::fs::read(first.home.join("genesis.cbor"))?;
        let approval_line = std::fs::read_to_string(first.home.join("config.toml"))?
            .lines()
            .find(|l| l.starts_with("approval = "))
            .map(str::to_owned)
            .context("no approval line in the first node's config")?;
        let (spec, _key) = crate::init_home(&self.dir, name, quorate)?;
        std::fs::write(spec.home.join("genesis.cbor"), genesis)?;
        let peers: Vec<&str> = self.nodes.iter().map(|n| n.p2p.as_str()).collect();
        crate::set_bootstrap(&spec.home, &peers)?;
        let config_path = spec.home.join("config.toml");
        let config = std::fs::read_to_string(&config_path)?
            .replace(Approval::Policy.config_line(), &approval_line);
        std::fs::write(&config_path, config)?;
        self.nodes.push(spec.clone());
        self.write_manifest()?;
        Ok(spec)
    }

    /// Opens the testnet in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "no testnet in {} (start one with `quorate testnet up --dir {}`)",
                dir.display(),
                dir.display()
            )
        })?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a testnet manifest", path.display()))?;
        let mut nodes = Vec::new();
        for node in manifest.nodes {
            let token =
                quorate_did::keyfile::read_secret_file(&node.home.join("admin.token"), 1024)
                    .with_context(|| format!("cannot read {}'s admin token", node.name))?;
            // The key in the home is the truth: it changes when the member
            // rotates it (`quorate did rotate`), the manifest does not.
            let (did, p2p) = match quorate_did::keyfile::load(&node.home.join("key.pem")) {
                Ok(key) => {
                    let address = node.p2p.split("/p2p/").next().unwrap_or_default();
                    let p2p = format!("{address}/p2p/{}", crate::peer_id(&key)?);
                    (key.did().to_string(), p2p)
                }
                Err(_) => (node.did, node.p2p),
            };
            let gateway = match node.gateway {
                Some(gateway) => gateway,
                None => gateway_address(&node.home)?,
            };
            nodes.push(NodeSpec {
                token: String::from_utf8_lossy(&token).trim().to_owned(),
                name: node.name,
                home: node.home,
                did,
                api: node.api,
                gateway,
                p2p,
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            chain_id: manifest.chain_id,
            nodes,
        })
    }

    /// Whether `dir` holds a testnet.
    pub fn exists(dir: &Path) -> bool {
        dir.join(MANIFEST_FILE).exists()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The organizations, in order.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The organization called `name`.
    pub fn node(&self, name: &str) -> anyhow::Result<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name).with_context(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            format!(
                "no node {name:?} in this testnet (it has {})",
                names.join(", ")
            )
        })
    }

    /// A local API client for `node`.
    pub fn client(node: &NodeSpec) -> ApiClient {
        ApiClient::new(node.api.clone(), node.token.clone())
    }

    /// The testnet's certificate authority, which every gateway's
    /// certificate chains to.
    pub fn authority_cert(&self) -> PathBuf {
        self.dir.join(crate::AUTHORITY_DIR).join("ca.crt")
    }

    /// A client of `node`'s gateway listener, over TLS verified against
    /// the testnet's authority (no admin token: members sign instead).
    pub fn gateway_client(&self, node: &NodeSpec) -> anyhow::Result<ApiClient> {
        let ca = std::fs::read(self.authority_cert())
            .with_context(|| format!("cannot read {}", self.authority_cert().display()))?;
        Ok(ApiClient::new(node.gateway.clone(), "").with_tls(&ca)?)
    }

    /// Starts `node run` for `node` in the background (its own process
    /// group, so a terminal's Ctrl-C reaches only the launcher), logging to
    /// `HOME/node.log`. Refuses if a node already runs on the home or one
    /// of its ports is taken by another program.
    pub fn start(&self, node: &NodeSpec, quorate: &Path) -> anyhow::Result<std::process::Child> {
        use std::os::unix::process::CommandExt as _;
        if let Some(pid) = running_pid(&node.home) {
            bail!("{} is already running (pid {pid})", node.name);
        }
        for address in [
            node.api.clone(),
            node.gateway.clone(),
            tcp_address(&node.p2p)?,
        ] {
            if TcpListener::bind(&address).is_err() {
                bail!(
                    "{}: port {address} is in use by another program; stop it or remove {}",
                    node.name,
                    self.dir.display()
                );
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.home.join(LOG_FILE))
            .with_context(|| format!("cannot open {}'s log", node.name))?;
        let child = Command::new(quorate)
            .args(["node", "run", "--home"])
            .arg(&node.home)
            .env_remove("QUORATE_HOME")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run {}", quorate.display()))?;
        Ok(child)
    }

    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]. Returns whether it
    /// stopped cleanly (false also when it was not running).
    pub fn stop(&self, node: &NodeSpec) -> anyhow::Result<bool> {
        let Some(pid) = running_pid(&node.home) else {
            return Ok(false);
        };
        // A paused node cannot handle SIGTERM until it runs again.
        let _ = signal(pid, Signal::CONT);
        signal(pid, Signal::TERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if running_pid(&node.home).is_none() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal(pid, Signal::KILL)?;
        Ok(false)
    }

    /// Sends `signal` to `node`'s process; fails if it is not running.
    pub fn signal(&self, node: &NodeSpec, signal_: Signal) -> anyhow::Result<u32> {
        let pid =
            running_pid(&node.home).with_context(|| format!("{} is not running", node.name))?;
        signal(pid, signal_)?;
        if signal_ == Signal::KILL {
            // The kernel releases the lock as the process dies.
            let deadline = Instant::now() + STOP_TIMEOUT;
            while running_pid(&node.home).is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(pid)
    }

    /// What `node` reports now.
    pub fn status(&self, node: &NodeSpec) -> NodeStatus {
        let pid = running_pid(&node.home);
        let status = pid
            .filter(|pid| !is_stopped_by_signal(*pid))
            .and_then(|_| Self::client(node).get("/v1/status").ok())
            .filter(|r| r.is_success())
            .and_then(|r| r.json().ok());
        NodeStatus { pid, status }
    }

    /// Waits until every node is connected to all the others and has
    /// committed a block after genesis; calls `progress(ready, total)`
    /// whenever the count changes. Fails early if one of `children` (the
    /// nodes just started) exits.
    pub fn wait_committing(
        &self,
        timeout: Duration,
        children: &mut [(String, std::process::Child)],
        mut progress: impl FnMut(usize, usize),
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let want_peers = self.nodes.len().saturating_sub(1) as u64;
        let mut last = usize::MAX;
        loop {
            let statuses: Vec<NodeStatus> = self.nodes.iter().map(|n| self.status(n)).collect();
            let ready = statuses
                .iter()
                .filter(|s| s.height().unwrap_or(0) >= 1 && s.peers().unwrap_or(0) >= want_peers)
                .count();
            if ready != last {
                progress(ready, self.nodes.len());
                last = ready;
            }
            if ready == self.nodes.len() {
                return Ok(());
            }
            for (name, child) in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let node = self.node(name)?;
                    bail!(
                        "{name} exited ({status}): {}",
                        self.log_tail(node, 1).unwrap_or_default().trim()
                    );
                }
            }
            ensure!(
                Instant::now() < deadline,
                "the testnet did not start committing within {timeout:?}; see the node.log files under {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `lines` lines of `node`'s log.
    pub fn log_tail(&self, node: &NodeSpec, lines: usize) -> anyhow::Result<String> {
        const TAIL_BYTES_MAX: u64 = 4 * 1024 * 1024;
        let path = node.home.join(LOG_FILE);
        let mut file =
            File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata()?.len();
        use std::io::Seek as _;
        file.seek(std::io::SeekFrom::Start(len.saturating_sub(TAIL_BYTES_MAX)))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        Ok(all[all.len().saturating_sub(lines)..].join("\n"))
    }
}

/// `host:port` of a `/ip4/H/tcp/P/…` multiaddr.
/// The `[gateway] listen` address of the config in `home`.
fn gateway_address(home: &Path) -> anyhow::Result<String> {
    let config = std::fs::read_to_string(home.join("config.toml"))?;
    let mut section = "";
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[gateway]"
            && let Some(value) = line.strip_prefix("listen = ")
        {
            return Ok(value.trim_matches('"').to_owned());
        }
    }
    bail!(
        "{} has no [gateway] listen: recreate the testnet",
        home.display()
    )
}

fn tcp_address(multiaddr: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    match parts.as_slice() {
        ["", "ip4", host, "tcp", port, ..] => Ok(format!("{host}:{port}")),
        _ => bail!("{multiaddr} is not a /ip4/…/tcp/… address"),
    }
}

fn signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .with_context(|| format!("bad pid {pid}"))?;
    rustix::process::kill_process(target, signal)
        .with_context(|| format!("cannot signal pid {pid}"))
}

/// Whether `pid` is stopped (SIGSTOP), from `/proc/PID/stat`.
fn is_stopped_by_signal(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the parenthesized command name.
            let (_, rest) = stat.rsplit_once(')')?;
            rest.trim_start().chars().next()
        })
        .is_some_and(|state| state == 'T')
}

/// The pid of the node holding `home`'s lock, if one runs: the lock, not
/// the pid file, is the truth (the kernel drops it when a node dies).
pub fn running_pid(home: &Path) -> Option<u32> {
    let mut file = File::open(home.join("node.lock")).ok()?;
    if file.try_lock_shared().is_ok() {
        return None;
    }
    let mut pid = String::new();
    file.read_to_string(&mut pid).ok()?;
    pid.trim().parse().ok()
}

fn random_suffix() -> anyhow::Result<String> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_address_reads_ip4_tcp_multiaddrs_only() {
        assert_eq!(
            tcp_address("/ip4/127.0.0.1/tcp/7801/p2p/12D3").unwrap(),
            "127.0.0.1:7801"
        );
        assert!(tcp_address("/dns4/x/tcp/1").is_err());
    }

    #[test]
    fn a_home_without_a_held_lock_has_no_running_node() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running_pid(dir.path()), None);
        std::fs::write(dir.path().join("node.lock"), "12345\n").unwrap();
        // A pid file alone (a crashed node) is not a running node.
        assert_eq!(running_pid(dir.path()), None);
        let lock = File::open(dir.path().join("node.lock")).unwrap();
        lock.lock().unwrap();
        assert_eq!(running_pid(dir.path()), Some(12345));
    }

    #[test]
    fn opening_a_directory_without_a_manifest_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = Testnet::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("testnet up"), "{err}");
    }
}
