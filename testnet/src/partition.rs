//! Network partitions between a testnet's nodes, cut by the kernel.
//!
//! Every node of a testnet listens for peers on its own port of 127.0.0.1
//! (outside the ephemeral range), and libp2p dials from that same port
//! when it can (port reuse), so most connections between two organizations
//! run between their two p2p ports. A partition is a set of packet-filter
//! rules in one chain of the filter table (`QUORATE-<chain id>`, jumped to
//! from `INPUT` on `lo`) that drops every TCP segment between a p2p port on
//! one side and a p2p port on the other. A dial that could not reuse its
//! port comes from an ephemeral port, which names no node: such connections
//! already made across the cut are found through the process that owns
//! their socket (`/proc`) and dropped one by one, and none may start while
//! partitioned. Loss is silent, as when a link goes down: nodes notice by
//! their pings timing out, drop the connection, and redial. The local APIs
//! are not touched, so operators (and tests) still see each side's view.
//!
//! This needs root and `iptables`. The rules live in the network namespace
//! the command runs in; the end-to-end test makes a private namespace for
//! them (`unshare --net`), so it never touches the host's filter table.

use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::NodeSpec;
use crate::launch::Testnet;

/// The most characters of a chain id used in the rule chain's name
/// (iptables allows 28 in all).
const CHAIN_SUFFIX_MAX: usize = 16;

/// Why partitions cannot be made here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("partitions need root (they change the packet filter)".into());
    }
    match Command::new("iptables")
        .args(["-w", "-S", "OUTPUT"])
        .output()
    {
        Err(e) => Some(format!("partitions need iptables: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "iptables cannot read the filter table here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// The rule chain of `testnet`.
fn chain_name(testnet: &Testnet) -> String {
    chain_name_for(testnet.chain_id())
}

/// The rule chain of the chain `chain_id`: at most 24 characters iptables
/// accepts in a chain name.
fn chain_name_for(chain_id: &str) -> String {
    let id: String = chain_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let start = id.len().saturating_sub(CHAIN_SUFFIX_MAX);
    format!("QUORATE-{}", &id[start..])
}

fn iptables(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .context("cannot run iptables")?;
    ensure!(
        out.status.success(),
        "iptables {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn p2p_port(node: &NodeSpec) -> anyhow::Result<u16> {
    let parts: Vec<&str> = node.p2p.split('/').collect();
    match parts.as_slice() {
        ["", "ip4", _, "tcp", port, ..] => port
            .parse()
            .with_context(|| format!("{}: bad p2p port in {}", node.name, node.p2p)),
        _ => bail!("{}: not a TCP address: {}", node.name, node.p2p),
    }
}

/// Cuts the organizations named in `isolated` off from all the others
/// (replacing any partition already made). Both sides keep running.
pub fn partition(testnet: &Testnet, isolated: &[&str]) -> anyhow::Result<()> {
    if let Some(why) = unavailable() {
        bail!("{why}");
    }
    for name in isolated {
        testnet.node(name)?;
    }
    let (inside, outside): (Vec<&NodeSpec>, Vec<&NodeSpec>) = testnet
        .nodes()
        .iter()
        .partition(|n| isolated.contains(&n.name.as_str()));
    ensure!(
        !inside.is_empty() && !outside.is_empty(),
        "a partition needs nodes on both sides"
    );
    heal(testnet)?;
    let chain = chain_name(testnet);
    iptables(&["-N", &chain])?;
    let drop = |from: &str, to: &str| {
        iptables(&[
            "-A", &chain, "-p", "tcp", "--sport", from, "--dport", to, "-j", "DROP",
        ])
    };
    for a in &inside {
        for b in &outside {
            let (pa, pb) = (p2p_port(a)?.to_string(), p2p_port(b)?.to_string());
            drop(&pa, &pb)?;
            drop(&pb, &pa)?;
        }
    }
    // A dial that could not reuse its listen port comes from an ephemeral
    // port, which names no node by number: the connections already made
    // that way are found by the process owning their socket and cut one by
    // one, and no new one may start while partitioned (nodes on one side
    // still reach each other from their listen ports).
    let (low, high) = crate::ephemeral_port_range().unwrap_or((32_768, 60_999));
    for (from, to) in cross_side_ephemeral_connections(testnet, isolated, (low, high))? {
        drop(&from.to_string(), &to.to_string())?;
        drop(&to.to_string(), &from.to_string())?;
    }
    let ephemeral = format!("{low}:{high}");
    for node in testnet.nodes() {
        let port = p2p_port(node)?.to_string();
        iptables(&[
            "-A", &chain, "-p", "tcp", "--syn", "--sport", &ephemeral, "--dport", &port, "-j",
            "DROP",
        ])?;
    }
    // The jump goes in last, so the cut is made all at once.
    iptables(&["-I", "INPUT", "-i", "lo", "-j", &chain])?;
    Ok(())
}

/// The established connections between a node's ephemeral port and the
/// p2p port of a node on the other side, as (ephemeral, p2p) port pairs.
fn cross_side_ephemeral_connections(
    testnet: &Testnet,
    isolated: &[&str],
    (low, high): (u16, u16),
) -> anyhow::Result<Vec<(u16, u16)>> {
    let mut side_of_port = std::collections::HashMap::new();
    let mut side_of_inode = std::collections::HashMap::new();
    for node in testnet.nodes() {
        let inside = isolated.contains(&node.name.as_str());
        side_of_port.insert(p2p_port(node)?, inside);
        let Some(pid) = crate::launch::running_pid(&node.home) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                side_of_inode.insert(inode, inside);
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").context("cannot read /proc/net/tcp")?;
    let mut found = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(inode)) =
            (fields.get(1), fields.get(2), fields.get(9))
        else {
            continue;
        };
        let port = |address: &str| {
            address
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        };
        let (Some(local), Some(remote), Ok(inode)) = (port(local), port(remote), inode.parse())
        else {
            continue;
        };
        if !(low..=high).contains(&local) {
            continue;
        }
        if let (Some(owner), Some(peer)) = (side_of_inode.get(&inode), side_of_port.get(&remote))
            && owner != peer
        {
            found.push((local, remote));
        }
    }
    Ok(found)
}

/// Whether `testnet` is partitioned now.
pub fn is_partitioned(testnet: &Testnet) -> bool {
    Command::new("iptables")
        .args(["-w", "-S", &chain_name(testnet)])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Removes `testnet`'s partition; returns whether there was one.
pub fn heal(testnet: &Testnet) -> anyhow::Result<bool> {
    if !is_partitioned(testnet) {
        return Ok(false);
    }
    let chain = chain_name(testnet);
    // The jump may be gone already if an earlier heal stopped half-way.
    while iptables(&["-D", "INPUT", "-i", "lo", "-j", &chain]).is_ok() {}
    iptables(&["-F", &chain])?;
    iptables(&["-X", &chain])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(p2p: &str) -> NodeSpec {
        NodeSpec {
            name: "org-a".into(),
            home: "/nonexistent".into(),
            did: String::new(),
            api: String::new(),
            gateway: String::new(),
            p2p: p2p.into(),
            token: String::new(),
        }
    }

    #[test]
    fn the_p2p_port_is_read_from_the_multiaddr_or_refused() {
        assert_eq!(
            p2p_port(&spec("/ip4/127.0.0.1/tcp/24064/p2p/12D3KooW")).ok(),
            Some(24064)
        );
        for bad in [
            "/ip4/127.0.0.1/udp/1/quic",
            "/ip4/127.0.0.1/tcp/x",
            "/ip4/127.0.0.1/tcp/70000",
            "",
        ] {
            assert!(p2p_port(&spec(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn chain_names_fit_iptables_and_keep_the_random_suffix() {
        assert_eq!(
            chain_name_for("quorate-testnet-6dd93bda"),
            "QUORATE-testnet-6dd93bda"
        );
        let long = chain_name_for("a chain id with spaces, ünïcode and $hell;chars-0123456789");
        assert!(long.len() <= 28, "{long}");
        assert!(long.ends_with("0123456789"), "{long}");
        assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
