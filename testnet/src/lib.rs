//! Local Quorate consortia of real node processes.
//!
//! [`generate`] creates N organizations' node homes (through the `quorate`
//! binary's own `node init`, on free ports of 127.0.0.1), a genesis block
//! signed by all of them, and the bootstrap addresses that connect them.
//! [`launch::Testnet`] keeps such a directory and starts, stops and perturbs
//! its node processes (`quorate testnet up|down|kill|pause|…`);
//! [`client::ApiClient`] talks to their local APIs; [`partition`] cuts the
//! network between groups of them (root and iptables only).
//!
//! It drives nodes only through the binary and their files, never through
//! the node crate's internals, so what it tests is what users run.

pub mod client;
pub mod launch;
pub mod partition;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use quorate_contracts::{Policy, Timestamp};
use quorate_did::{Keypair, keyfile};
use quorate_ledger::{codec, genesis};

/// One generated organization.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Its name (`org-a`, …).
    pub name: String,
    /// Its node home.
    pub home: PathBuf,
    /// Its DID.
    pub did: String,
    /// Local API address.
    pub api: String,
    /// The gateway's TLS listener (`host:port`), for members' signed
    /// requests; its certificate is issued by the testnet's authority.
    pub gateway: String,
    /// libp2p listen address with its peer id.
    pub p2p: String,
    /// Its admin token.
    pub token: String,
}

/// Where [`free_port`] looks when the kernel's ephemeral range leaves no
/// room below it: ports under this are left to well-known services.
const PORT_FLOOR: u16 = 10_000;

/// A free TCP port on 127.0.0.1 for a node to listen on later.
///
/// It is taken from outside the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`): a port from inside it
/// (what binding port 0 returns) is released before the node binds it, and
/// in that gap any outgoing connection on the machine, such as another
/// node's libp2p dial, may be given it as its source port. Outside the range
/// only programs that bind a port by number compete; the port is checked
/// free here, one process never hands out the same port twice, and
/// processes side by side do not either for [`RESERVATION`]
/// ([`reserve_across_processes`]). Falls back to port 0 when the range
/// leaves no room.
pub fn free_port() -> anyhow::Result<u16> {
    use std::collections::HashSet;
    use std::sync::{Mutex, PoisonError};
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

    let (low, high) = ephemeral_port_range().unwrap_or((32_768, 60_999));
    let below = PORT_FLOOR..low.max(PORT_FLOOR);
    let above = high.saturating_add(1).max(PORT_FLOOR)..u16::MAX;
    let range = if below.len() >= above.len() {
        below
    } else {
        above
    };
    if range.len() < 1_000 {
        return Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
    }
    let mut seed = [0u8; 4];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a port: {e}"))?;
    let span = range.len() as u32;
    let start = u32::from_le_bytes(seed) % span;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for step in 0..span {
        let port = range.start + ((start + step) % span) as u16;
        if !handed_out.contains(&port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && reserve_across_processes(port)
        {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    bail!("no free TCP port on 127.0.0.1 in {range:?}")
}

/// How long a port handed out stays reserved for the process that took
/// it: long enough for its nodes to start and bind it.
const RESERVATION: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Reserves `port` for this process against other processes handing out
/// ports at the same time (two `testnet up` side by side, as parallel
/// tests run them): a file per port in the temporary directory, created
/// exclusively, and taken over once older than [`RESERVATION`]. Without
/// the directory, the bind check alone decides.
fn reserve_across_processes(port: u16) -> bool {
    let dir = std::env::temp_dir().join("quorate-testnet-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let path = dir.join(port.to_string());
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stale = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|at| at.elapsed().ok())
                    .is_some_and(|age| age > RESERVATION);
                if !stale || std::fs::remove_file(&path).is_err() {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
    false
}

/// The kernel's ephemeral port range, where Linux says it.
pub(crate) fn ephemeral_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((parts.next()??, parts.next()??))
}

/// The name of the `i`th organization: `org-a` … `org-z`, then `org-26` ….
pub fn org_name(i: usize) -> String {
    if i < 26 {
        format!("org-{}", (b'a' + i as u8) as char)
    } else {
        format!("org-{i}")
    }
}

fn peer_id(key: &Keypair) -> anyhow::Result<String> {
    let public =
        libp2p_identity::ed25519::PublicKey::try_from_bytes(&key.did().public_key_bytes())?;
    Ok(libp2p_identity::PublicKey::from(public)
        .to_peer_id()
        .to_string())
}

/// The testnet's certificate authority (`quorate tls ca`): it issues
/// every node's gateway certificate, so clients verify them against
/// `DIR/tls/ca.crt` rather than skip verification.
pub const AUTHORITY_DIR: &str = "tls";

/// Runs `command` (a `quorate` subcommand called `what`), requiring
/// success.
fn quorate_ok(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = command
        .env_remove("QUORATE_HOME")
        .output()
        .with_context(|| format!("cannot run quorate {what}"))?;
    if !out.status.success() {
        bail!(
            "quorate {what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates the testnet's authority in `dir` unless it is there.
pub fn ensure_authority(dir: &Path, quorate: &Path) -> anyhow::Result<PathBuf> {
    let authority = dir.join(AUTHORITY_DIR);
    if !authority.join("ca.crt").exists() {
        quorate_ok(
            Command::new(quorate)
                .args(["tls", "ca", "--name", "Quorate testnet authority", "--dir"])
                .arg(&authority),
            "tls ca",
        )?;
    }
    Ok(authority)
}

/// Creates `DIR/NAME` with `quorate node init` on free ports of 127.0.0.1,
/// its gateway certificate issued by the testnet's authority in `DIR`.
pub fn init_home(dir: &Path, name: &str, quorate: &Path) -> anyhow::Result<(NodeSpec, Keypair)> {
    let home = dir.join(name);
    let authority = ensure_authority(dir, quorate)?;
    let (api_port, p2p_port, gateway_port) = (free_port()?, free_port()?, free_port()?);
    quorate_ok(
        Command::new(quorate)
            .args(["node", "init", "--name", name])
            .args(["--api-port", &api_port.to_string()])
            .args(["--p2p-port", &p2p_port.to_string()])
            .args(["--gateway-port", &gateway_port.to_string()])
            .arg("--home")
            .arg(&home),
        "node init",
    )?;
    quorate_ok(
        Command::new(quorate)
            .args(["tls", "issue", "--ca"])
            .arg(&authority)
            .arg("--home")
            .arg(&home),
        "tls issue",
    )?;
    let key = keyfile::load(&home.join("key.pem"))?;
    let token =
        String::from_utf8(keyfile::read_secret_file(&home.join("admin.token"), 1024)?.to_vec())?;
    let spec = NodeSpec {
        did: key.did().to_string(),
        api: format!("127.0.0.1:{api_port}"),
        gateway: format!("127.0.0.1:{gateway_port}"),
        p2p: format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{}", peer_id(&key)?),
        token: token.trim().to_owned(),
        name: name.to_owned(),
        home,
    };
    Ok((spec, key))
}

/// Points `home`'s config at `peers` (bootstrap multiaddrs).
pub fn set_bootstrap(home: &Path, peers: &[&str]) -> anyhow::Result<()> {
    let config_path = home.join("config.toml");
    let config = std::fs::read_to_string(&config_path)?;
    ensure!(
        config.contains("bootstrap = []"),
        "config template changed: no empty bootstrap line"
    );
    let quoted: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let config = config.replace(
        "bootstrap = []",
        &format!("bootstrap = [{}]", quoted.join(", ")),
    );
    std::fs::write(&config_path, config)?;
    Ok(())
}

/// Creates `n` node homes under `dir`, a genesis signed by all of them, and
/// configs whose bootstrap lists name every other node.
pub fn generate(
    dir: &Path,
    n: usize,
    chain_id: &str,
    quorate: &Path,
) -> anyhow::Result<Vec<NodeSpec>> {
    ensure!((1..=64).contains(&n), "a local testnet has 1 to 64 nodes");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut specs = Vec::new();
    let mut keys = Vec::new();
    for i in 0..n {
        let (spec, key) = init_home(dir, &org_name(i), quorate)?;
        specs.push(spec);
        keys.push(key);
    }
    let members: Vec<(&str, &Keypair)> = specs
        .iter()
        .map(|s| s.name.as_str())
        .zip(keys.iter())
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let block = genesis::build(chain_id, &members, Policy::default(), Timestamp(now))?;
    let bytes = codec::encode(&block)?;
    for spec in &specs {
        std::fs::write(spec.home.join("genesis.cbor"), &bytes)?;
        let peers: Vec<&str> = specs
            .iter()
            .filter(|s| s.name != spec.name)
            .map(|s| s.p2p.as_str())
            .collect();
        set_bootstrap(&spec.home, &peers)?;
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let (low, high) = ephemeral_port_range().expect("a Linux port range");
        let ports: Vec<u16> = (0..64).map(|_| free_port().expect("a port")).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for port in ports {
            assert!(
                !(low..=high).contains(&port),
                "{port} is in the ephemeral range {low}-{high}"
            );
            assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
        }
    }
}
