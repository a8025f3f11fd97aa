//! Goal: a network partition is survived safely and heals. With org-d cut
//! off from the other three, the majority keeps committing grants, org-d
//! commits nothing and notices it is alone (a grant it proposes then is
//! heard once the network heals, and commits); with the consortium split
//! 2 | 2, neither side has a quorum and no block commits anywhere; once
//! healed, org-d catches up, takes part again, and all four hold one chain
//! that verifies.
//! Method: the test runs itself again inside a private network namespace
//! (`unshare --net`), so the packet-filter rules of `quorate testnet
//! partition` never touch the host's; there a 4-node testnet is cut and
//! healed through the CLI. Without root, `unshare` or `iptables` it skips
//! and says why (CI installs them and sets `QUORATE_REQUIRE_PARTITION`, so
//! there it cannot skip).

use std::process::Command;
use std::time::Duration;

use quorate_tests::{Testnet, eventually, holds_grant};

/// Set in the copy of this test that runs inside the namespace.
const INSIDE: &str = "QUORATE_TEST_IN_NETNS";
const NAME: &str = "a_minority_partition_heals_and_a_split_commits_nothing";
/// A dead connection is noticed when a ping cannot even open its stream
/// (libp2p's 10 s negotiation timeout, then the node's ping timeout: about
/// 20 s), and peers are dialed again every 2 s: well within this.
const NOTICE: Duration = Duration::from_secs(45);

#[test]
fn a_minority_partition_heals_and_a_split_commits_nothing() {
    if std::env::var_os(INSIDE).is_some() {
        inside_the_namespace();
        return;
    }
    if let Some(why) = cannot_partition() {
        assert!(
            std::env::var_os("QUORATE_REQUIRE_PARTITION").is_none(),
            "partitions are required here but {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["--net", "--"])
        .arg(exe)
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .status()
        .expect("run unshare");
    assert!(status.success(), "the test inside the namespace failed");
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_partition() -> Option<String> {
    let probe = Command::new("unshare")
        .args(["--net", "--", "iptables", "-w", "-S", "INPUT"])
        .output();
    match probe {
        Err(e) => Some(format!("`unshare` cannot run: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "no private network namespace with iptables here (needs root and iptables): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Height and peer count from `testnet status`.
fn height_and_peers(net: &Testnet, name: &str) -> (u64, u64) {
    let row = net.row(name);
    let number = |i: usize| row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    (number(2), number(3))
}

fn inside_the_namespace() {
    let lo = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(lo.success(), "cannot bring up loopback in the namespace");

    let (net, _) = Testnet::up(&["--nodes", "4"]);
    let all = ["org-a", "org-b", "org-c", "org-d"];
    let majority = ["org-a", "org-b", "org-c"];

    // A minority of one: the majority keeps its quorum.
    let out = net.cli(&["testnet", "partition", "org-d"]);
    assert!(out.contains("org-d | org-a org-b org-c"), "{out}");
    eventually(NOTICE, "org-d alone, the others together", || {
        height_and_peers(&net, "org-d").1 == 0
            && majority.iter().all(|n| height_and_peers(&net, n).1 == 2)
    });
    let d_alone_at = height_and_peers(&net, "org-d").0;
    let ids: Vec<String> = [("org-a", "org-b"), ("org-b", "org-c")]
        .iter()
        .enumerate()
        .map(|(i, (from, to))| net.grant(from, to, &format!("split/{i}/*"), &majority))
        .collect();
    assert_eq!(
        height_and_peers(&net, "org-d").0,
        d_alone_at,
        "org-d committed alone"
    );
    assert!(!holds_grant(&net, "org-d", &ids[0]));
    // org-d's own proposal, made while it is alone, cannot be heard yet.
    let alone = quorate_tests::run_ok(&[
        "proposal",
        "grant",
        "--home",
        &quorate_tests::home_arg(&net.home("org-d")),
        "--to",
        "org-a",
        "--resource",
        "made-alone/*",
    ])
    .trim()
    .to_owned();

    // Two against two: no side has a quorum, so nothing commits.
    net.cli(&["testnet", "partition", "org-c", "org-d"]);
    eventually(NOTICE, "org-a and org-b cut off from org-c", || {
        ["org-a", "org-b"]
            .iter()
            .all(|n| height_and_peers(&net, n).1 <= 1)
    });
    let before: Vec<u64> = all.iter().map(|n| height_and_peers(&net, n).0).collect();
    // Heartbeat blocks come every second; a side that could commit would
    // have committed several by now.
    std::thread::sleep(Duration::from_secs(4));
    let after: Vec<u64> = all.iter().map(|n| height_and_peers(&net, n).0).collect();
    assert_eq!(before, after, "a side without a quorum committed");

    let out = net.cli(&["testnet", "heal"]);
    assert!(out.contains("healed"), "{out}");
    eventually(NOTICE, "org-d caught up", || {
        ids.iter().all(|id| holds_grant(&net, "org-d", id))
    });
    // The proposal made alone is gossiped again and commits everywhere.
    eventually(
        NOTICE,
        "org-d's proposal from the partition committed",
        || all.iter().all(|n| holds_grant(&net, n, &alone)),
    );
    eventually(NOTICE, "everyone connected again", || {
        all.iter().all(|n| height_and_peers(&net, n).1 == 3)
    });
    // The healed consortium commits again, with org-d's own grant.
    let id = net.grant("org-d", "org-a", "healed/*", &all);
    assert!(all.iter().all(|n| holds_grant(&net, n, &id)));
    let common = net.down_and_verify(&all);
    assert!(common > after[0], "no block after the heal ({common})");
}
