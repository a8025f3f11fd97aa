//! Canonical CBOR decoding of entries and what they carry: `Proposal`,
//! `Endorsement`, `Entry` (gossiped by peers) and the contracts types
//! inside them (`Body`, `GrantTerms`, `Genesis`, `Policy`, `NewMember`,
//! and the state's rows). The first byte picks the type.
//!
//! Properties: accepted bytes are canonical (decode, encode, decode is the
//! identity and re-encodes to the input); a decoded body applied to a real
//! state is all-or-nothing and leaves a state whose encoding round-trips
//! and whose key index still finds every member (likewise a genesis the
//! rules accept); a decoded entry offered
//! to the block builder yields a block that `check_block` accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_contracts::{
    ApplyContext, Body, Genesis, GrantTerms, NewMember, Policy, State, Timestamp,
};
use quorate_fuzz::{fixture, round_trip};
use quorate_ledger::codec;
use quorate_ledger::entry::{Endorsement, Entry, Proposal};
use quorate_ledger::hash::{hash_tagged, tag};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 9 {
        0 => {
            if let Some(p) = round_trip::<Proposal>(bytes) {
                p.id().expect("a decoded proposal has an id");
                apply_body(&p.body, Some(p.proposer), bytes);
            }
        }
        1 => {
            round_trip::<Endorsement>(bytes);
        }
        2 => {
            if let Some(entry) = round_trip::<Entry>(bytes) {
                build_with(entry);
            }
        }
        3 => {
            if let Some(body) = round_trip::<Body>(bytes) {
                apply_body(&body, None, bytes);
            }
        }
        4 => {
            if let Some(terms) = round_trip::<GrantTerms>(bytes) {
                apply_body(&Body::Grant(terms), None, bytes);
            }
        }
        5 => {
            if let Some(genesis) = round_trip::<Genesis>(bytes) {
                let ids: Vec<_> = (0..genesis.members.len())
                    .map(|i| quorate_contracts::MemberId([i as u8; 32]))
                    .collect();
                if let Ok(state) = State::genesis(&genesis, &ids) {
                    check_state(&state);
                }
            }
        }
        6 => {
            if let Some(policy) = round_trip::<Policy>(bytes) {
                apply_body(&Body::SetPolicy(policy), None, bytes);
            }
        }
        7 => {
            if let Some(member) = round_trip::<NewMember>(bytes) {
                apply_body(&Body::AddMember(member), None, bytes);
            }
        }
        _ => {
            // State rows are only ever decoded from the node's own store,
            // never from a peer: only the codec contract is checked, for
            // each kind of row (the first byte after the selector picks).
            let (kind, rest) = bytes.split_first().unwrap_or((&0, &[]));
            match kind % 4 {
                0 => drop(round_trip::<quorate_contracts::Consortium>(rest)),
                1 => drop(round_trip::<quorate_contracts::Member>(rest)),
                2 => drop(round_trip::<quorate_contracts::GrantRecord>(rest)),
                _ => drop(round_trip::<quorate_ledger::chain::ChainMeta>(rest)),
            }
        }
    }
});

/// Applies `body` to the fixture's tip state as each member (or as
/// `proposer`): all or nothing.
fn apply_body(body: &Body, proposer: Option<quorate_contracts::MemberId>, bytes: &[u8]) {
    let f = fixture();
    let tip = f.consortium.chain.state();
    let ctx = ApplyContext {
        entry_id: hash_tagged(tag::ENTRY, bytes).0,
        height: f.consortium.chain.tip().height + 1,
        time: Timestamp(f.consortium.chain.tip().time.0 + 1_000),
    };
    let proposers: Vec<_> = match proposer {
        Some(p) => vec![p],
        None => tip.members.keys().copied().collect(),
    };
    for proposer in proposers {
        let checked = quorate_contracts::check_proposal(tip, proposer, body, ctx.time);
        let mut state = tip.clone();
        match state.apply(ctx, proposer, body) {
            Ok(()) => {
                assert!(
                    checked.is_ok(),
                    "apply accepted what check_proposal refuses"
                );
                check_state(&state);
            }
            Err(_) => assert_eq!(&state, tip, "a refused entry changed the state"),
        }
    }
}

/// A state's rows round-trip through their canonical encoding into an equal
/// state, and its key index agrees with its members.
fn check_state(state: &State) {
    let members: Vec<quorate_contracts::Member> = state
        .members
        .values()
        .map(|m| codec::decode(&codec::encode(m).expect("a member encodes")).expect("decodes"))
        .collect();
    let mut grants = Vec::new();
    state
        .visit_grants(None, &mut |id, g| {
            let bytes = codec::encode(g).expect("a grant encodes");
            grants.push((
                id,
                codec::decode(&bytes).expect("a grant's encoding decodes"),
            ));
            std::ops::ControlFlow::Continue(())
        })
        .expect("grants in memory are readable");
    let back = State::from_rows(state.consortium(), members, grants);
    assert_eq!(&back, state);
    for member in state.members.values() {
        assert_eq!(
            state.member_by_did(&member.did).map(|m| m.id),
            Some(member.id),
            "the key index lost a member"
        );
    }
    quorate_ledger::chain::state_root(state).expect("state root");
}

/// Offers `entry` to the block builder at the chain's first block and at
/// its tip: the block built (with the entry or without it) passes
/// `check_block`.
fn build_with(entry: Entry) {
    let f = fixture();
    entry.id().expect("a decoded entry has an id");
    for chain in [&f.at_genesis, &f.consortium.chain] {
        let proposer = *chain.state().members.keys().next().expect("members");
        let time = Timestamp(chain.tip().time.0 + 1_000);
        let (block, skipped) = chain
            .build_block(proposer, time, [entry.clone()])
            .expect("builds");
        assert_eq!(block.entries.len() + skipped.len(), 1);
        if let Err(e) = chain.check_block(&block) {
            panic!("a built block fails check_block: {e}");
        }
    }
}
