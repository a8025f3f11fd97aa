//! Goal: a frozen member (SIGSTOP: it keeps its connections but answers
//! nothing) does not stop the consortium: the other three keep committing
//! grants; when it thaws it catches up, and all four hold one chain.
//! (A network-namespace partition is not built: `ip netns` needs
//! privileges this CI does not promise; a frozen node is the partition of
//! one that every machine can make.)
//! Method: a 4-node testnet; `testnet pause|resume`; every wait bounded.

use std::time::Duration;

use quorate_tests::{Testnet, eventually, holds_grant};

#[test]
fn a_frozen_member_thaws_and_converges() {
    let (net, _) = Testnet::up(&["--nodes", "4"]);
    net.cli(&["testnet", "pause", "org-d"]);
    assert_eq!(net.row("org-d")[1], "paused");
    let mut ids = Vec::new();
    for (i, (from, to)) in [("org-a", "org-b"), ("org-b", "org-c"), ("org-c", "org-a")]
        .into_iter()
        .enumerate()
    {
        ids.push(net.grant(
            from,
            to,
            &format!("frozen/{i}/*"),
            &["org-a", "org-b", "org-c"],
        ));
    }
    net.cli(&["testnet", "resume", "org-d"]);
    eventually(Duration::from_secs(30), "org-d caught up", || {
        ids.iter().all(|id| holds_grant(&net, "org-d", id))
    });
    let common = net.down_and_verify(&["org-a", "org-b", "org-c", "org-d"]);
    assert!(common >= 3, "too few blocks ({common})");
}
