//! Goal: a member whose clock is off cannot move the chain's clock far
//! from the honest members' clocks: validators do not prevote a proposed
//! block whose time is more than `BLOCK_TIME_AHEAD_MAX_MS` after their own
//! clock (it is not timely), block times strictly increase, and no clock is
//! read when a committed block is applied or a chain verified.
//! Method: the pure rules on the test consortium, then a small rotation
//! of proposers with one member 5 minutes ahead or behind, where a round
//! whose block the honest validators refuse passes to the next proposer.

use quorate_contracts::Timestamp;
use quorate_ledger::block::Block;
use quorate_ledger::chain::{BLOCK_TIME_AHEAD_MAX_MS, BlockError, check_timely, verify_chain};
use quorate_ledger::testing::Consortium;

const SKEW_MS: i64 = 5 * 60_000;

fn block_at(c: &Consortium, proposer: usize, time: Timestamp) -> Block {
    let (block, skipped) = c.chain.build_block(c.id(proposer), time, vec![]).unwrap();
    assert!(skipped.is_empty());
    block
}

#[test]
fn a_block_too_far_ahead_of_the_validators_clock_is_refused_until_the_clock_catches_up() {
    let c = Consortium::new(4);
    let now = c.now();
    let at_bound = block_at(&c, 0, Timestamp(now.0 + BLOCK_TIME_AHEAD_MAX_MS));
    assert!(check_timely(&at_bound, now).is_ok());

    let ahead = block_at(&c, 0, Timestamp(now.0 + BLOCK_TIME_AHEAD_MAX_MS + 1));
    let err = check_timely(&ahead, now).unwrap_err();
    assert_eq!(
        err,
        BlockError::TimeAhead {
            now: now.0,
            found: now.0 + BLOCK_TIME_AHEAD_MAX_MS + 1
        }
    );
    assert!(
        err.to_string().contains("ahead of this validator's clock"),
        "{err}"
    );
    // Timely once the clock has moved on, and then for good.
    assert!(check_timely(&ahead, Timestamp(now.0 + 1)).is_ok());
    assert!(check_timely(&ahead, Timestamp(now.0 + 3_600_000)).is_ok());
    // The rule is for votes: the block itself is well formed, and once
    // certified it applies with no clock at all.
    assert!(c.chain.check_block(&ahead).is_ok());
    let mut chain = c.chain.clone();
    chain.apply(&c.certify(ahead)).unwrap();
}

#[test]
fn block_time_strictly_increases_whatever_the_proposers_clock() {
    let mut c = Consortium::new(4);
    let tip = c.chain.tip().time;
    // A proposer whose clock is behind the tip's time proposes just after it.
    let behind = Timestamp(tip.0 - SKEW_MS as u64);
    assert_eq!(c.chain.next_block_time(behind), Timestamp(tip.0 + 1));
    let later = Timestamp(tip.0 + 5_000);
    assert_eq!(c.chain.next_block_time(later), later);

    for time in [tip, Timestamp(tip.0 - 1), behind] {
        let block = block_at(&c, 0, time);
        let honest_clock = Timestamp(tip.0 + 1_000);
        assert!(check_timely(&block, honest_clock).is_ok());
        assert!(matches!(
            c.chain.check_block(&block),
            Err(BlockError::Time { .. })
        ));
    }
    let block = block_at(&c, 0, c.chain.next_block_time(behind));
    assert!(check_timely(&block, Timestamp(tip.0 + 1_000)).is_ok());
    assert!(c.chain.check_block(&block).is_ok());
    let committed = c.certify(block);
    c.chain.apply(&committed).unwrap();
    c.blocks.push(committed);
    assert_eq!(c.chain.tip().time, Timestamp(tip.0 + 1));
}

/// Heights agreed in rotation with member 3's clock `skew_ms` off the
/// honest clock; returns the chain's (block time − honest clock) at each
/// commit and how many blocks member 3 proposed.
fn rotation(skew_ms: i64, heights: u64) -> (Vec<i64>, usize) {
    let mut c = Consortium::new(4);
    let skewed = 3usize;
    let mut honest = c.chain.tip().time.0 + 1_000;
    let mut offsets = Vec::new();
    let mut by_skewed = 0;
    for height in 1..=heights {
        for round in 0..4u64 {
            let proposer = ((height + round) % 4) as usize;
            let clock = |member: usize| {
                if member == skewed {
                    Timestamp(honest.saturating_add_signed(skew_ms))
                } else {
                    Timestamp(honest)
                }
            };
            let block = block_at(&c, proposer, c.chain.next_block_time(clock(proposer)));
            // Three honest validators are a quorum of four: the block
            // commits if they all prevote it (valid and timely).
            assert!(c.chain.check_block(&block).is_ok());
            let votes = (0..4)
                .filter(|&v| v != skewed)
                .filter(|&v| check_timely(&block, clock(v)).is_ok())
                .count();
            if votes == 3 {
                let committed = c.certify(block);
                c.chain.apply(&committed).unwrap();
                c.blocks.push(committed);
                offsets.push(c.chain.tip().time.0 as i64 - honest as i64);
                by_skewed += usize::from(proposer == skewed);
                break;
            }
            assert_ne!(round, 3, "height {height}: no round committed");
            honest += 3_000; // the round's timeouts
        }
        honest += 1_000; // the heartbeat
    }
    let blocks = c.blocks.iter().cloned().map(Ok);
    assert_eq!(verify_chain(blocks).unwrap().chain.tip(), c.chain.tip());
    (offsets, by_skewed)
}

#[test]
fn n4f1_a_member_five_minutes_ahead_cannot_move_block_time() {
    let (offsets, by_skewed) = rotation(SKEW_MS, 40);
    assert_eq!(offsets.len(), 40);
    assert_eq!(by_skewed, 0, "a block from the future was voted for");
    assert!(offsets.iter().all(|&o| o == 0), "{offsets:?}");
}

#[test]
fn n4f1_a_member_five_minutes_behind_only_slows_block_time_by_a_block() {
    let (offsets, by_skewed) = rotation(-SKEW_MS, 40);
    assert_eq!(offsets.len(), 40);
    assert_eq!(
        by_skewed, 10,
        "its blocks (at the tip's time + 1 ms) commit"
    );
    // Behind the honest clock by at most the time since the last block.
    assert!(
        offsets.iter().all(|&o| (-1_000..=0).contains(&o)),
        "{offsets:?}"
    );
}

#[test]
fn a_proposal_from_a_clock_ahead_waits_and_one_from_a_clock_behind_has_less_time() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(0, 1);
    let mut proposal = c
        .entry(0, quorate_contracts::Body::Grant(terms), &[])
        .proposal;
    let block_time = c.now();
    let ttl = c.chain.state().policy.proposal_ttl_ms;
    let at = |offset: i64| Timestamp(block_time.0.saturating_add_signed(offset));

    proposal.created_at = at(SKEW_MS);
    assert!(!c.chain.is_fresh(&proposal, block_time));
    // It fits once the chain's clock is within the skew allowance of it.
    let skew = quorate_ledger::chain::PROPOSAL_CLOCK_SKEW_MS as i64;
    assert!(c.chain.is_fresh(&proposal, at(SKEW_MS - skew)));
    assert!(!c.chain.is_fresh(&proposal, at(SKEW_MS - skew - 1)));

    proposal.created_at = at(-SKEW_MS);
    assert!(c.chain.is_fresh(&proposal, block_time));
    assert!(!c.chain.is_fresh(&proposal, at(ttl as i64 - SKEW_MS + 1)));
}
