//! Goal: the agreement driver commits the same blocks on every member,
//! gets past lost messages and a restart, and gives no blocks to a node
//! that is not a member.
//! Method: four drivers (and an outsider) in one process over an in-memory
//! network (support::sim_net) with a seeded RNG ordering deliveries; no
//! sockets, no processes. Waits are on the drivers' status watches, bounded
//! by a generous timeout; nothing is asserted about durations.

mod support;

use std::sync::Arc;

use support::sim_net::Traffic;
use support::{Consortium, assert_same_chain, seed};

/// Member 1 proposes a grant to member 2; the others endorse it over the
/// network, and all four commit it in the same block of the same chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_propose_endorse_commit() {
    let c = Consortium::start(4, 0, seed(1));
    let members = c.all();
    c.wait_height(&members, 1).await;
    let before: Vec<_> = members.iter().map(|&i| c.state(i)).collect();

    let id = c.propose_grant(1, 2).await;

    // The state watch moves only when a block with entries commits, and
    // this is the only entry.
    for &i in &members {
        let mut state = c.handle(i).state();
        let moved = tokio::time::timeout(
            support::WAIT,
            state.wait_for(|s| !Arc::ptr_eq(s, &before[i])),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        assert!(moved, "node {i} never committed the grant");
    }
    let tip = c.max_height(&members);
    c.wait_height(&members, tip).await;

    let ledgers = c.finish().await;
    let common = assert_same_chain(&ledgers);
    assert!(common >= tip, "common height {common} below {tip}");
    let locations: Vec<_> = ledgers
        .iter()
        .map(|l| l.entry_location(&id).expect("readable"))
        .collect();
    let (height, index) = locations[0].expect("the grant is committed");
    assert!(
        locations.iter().all(|l| *l == Some((height, index))),
        "the grant sits at different places: {locations:?}"
    );
    let block = ledgers[0]
        .block(height)
        .expect("readable")
        .expect("the grant's block");
    let entry = &block.block.entries[index as usize];
    let mut endorsers: Vec<_> = entry.endorsements.iter().map(|e| e.member).collect();
    endorsers.sort();
    endorsers.dedup();
    // A quorum of 4 is 3: at least two endorsements came over the network.
    assert!(
        endorsers.len() >= 3,
        "the grant went in with {} endorsers",
        endorsers.len()
    );
}

/// Every copy of height 2's round-0 proposal is lost (its rebroadcasts
/// too): the members time out, move to round 1, and commit height 2 there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_lost_proposal_commits_in_a_later_round() {
    let mut c = Consortium::new(4, 0, seed(2));
    c.net.drop_when(|d, _| {
        matches!(
            d.traffic,
            Traffic::Proposal {
                height: 2,
                round: 0
            }
        )
    });
    for i in c.all() {
        c.start_node(i);
    }
    let members = c.all();
    c.wait_height(&members, 3).await;
    assert!(c.net.stats_now().dropped > 0, "the proposal was never lost");

    let ledgers = c.finish().await;
    assert!(assert_same_chain(&ledgers) >= 3);
    for (i, ledger) in ledgers.iter().enumerate() {
        let block = ledger.block(2).expect("readable").expect("height 2");
        assert!(
            block.certificate.round >= 1,
            "ledger {i}: height 2 decided in round {}",
            block.certificate.round
        );
    }
}

/// Everything sent to member 3 is lost for a while: the other three go on
/// committing without it; once the link heals it catches up, and all four
/// hold the same chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_cut_off_driver_catches_up() {
    let c = Consortium::start(4, 0, seed(3));
    let members = c.all();
    let others = [0, 1, 2];
    c.wait_height(&members, 2).await;

    c.net.drop_when(|d, _| d.to == 3);
    let cut_at = c.max_height(&members);
    c.wait_height(&others, cut_at + 3).await;
    let behind = c.height(3);
    let ahead = c.max_height(&others);
    assert!(
        behind < ahead,
        "node 3 kept up while cut off ({behind} vs {ahead})"
    );

    c.net.heal();
    let target = c.max_height(&others) + 1;
    c.wait_height(&members, target).await;

    let ledgers = c.finish().await;
    assert!(assert_same_chain(&ledgers) >= target);
}

/// Member 3 stops; the others commit without it. Started again on its
/// ledger, it resumes where it stopped and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_restarted_driver_resumes_and_catches_up() {
    let mut c = Consortium::start(4, 0, seed(4));
    let members = c.all();
    let others = [0, 1, 2];
    c.wait_height(&members, 2).await;

    let stopped_at = c.stop_node(3).await;
    c.wait_height(&others, stopped_at + 3).await;

    c.start_node(3);
    assert_eq!(
        c.height(3),
        stopped_at,
        "the restarted driver did not resume from its ledger"
    );
    let target = c.max_height(&others) + 1;
    c.wait_height(&members, target).await;

    let ledgers = c.finish().await;
    assert!(assert_same_chain(&ledgers) >= target);
}

/// A fifth node shares the genesis but is not a member: it hears the
/// members' gossip, asks them for blocks and is refused, and stays at
/// genesis while they commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_outsider_gets_no_blocks() {
    let c = Consortium::start(4, 1, seed(5));
    let members = [0, 1, 2, 3];
    let outsider = 4;
    c.wait_height(&members, 3).await;
    let mut stats = c.net.stats();
    let answered = tokio::time::timeout(
        support::WAIT,
        stats.wait_for(|s| {
            s.blocks_refused.contains_key(&outsider) || s.blocks_served.contains_key(&outsider)
        }),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(answered, "the outsider never asked for blocks");
    assert_eq!(
        c.net.stats_now().blocks_served.get(&outsider),
        None,
        "a member served blocks to the outsider"
    );

    let status = c.status(outsider);
    assert!(!status.is_member);
    assert_eq!(status.height, 0, "the outsider got blocks");

    let ledgers = c.finish().await;
    let outsider_tip = ledgers[outsider].chain().expect("genesis").tip().height;
    assert_eq!(outsider_tip, 0, "the outsider's ledger grew");
    assert!(assert_same_chain(&ledgers[..4]) >= 3);
}

/// A quarter of all consensus gossip is lost, drawn from the seeded RNG:
/// rebroadcasts, later rounds and sync still carry the four members to the
/// same chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_lossy_gossip_still_commits() {
    let c = Consortium::start(4, 0, seed(6));
    c.net.drop_when(|d, rng| {
        matches!(d.traffic, Traffic::Proposal { .. } | Traffic::Vote { .. }) && rng.chance(0.25)
    });
    let members = c.all();
    c.wait_height(&members, 5).await;
    assert!(c.net.stats_now().dropped > 0, "nothing was lost");

    let ledgers = c.finish().await;
    assert!(assert_same_chain(&ledgers) >= 5);
}
