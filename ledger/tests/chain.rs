//! Goal: a chain accepts exactly the blocks the rules allow, derives the same
//! state everywhere, and refuses each kind of forgery with a precise reason.
//! Method: a 4-member consortium built in memory, blocks certified by its
//! members, and one tampering per test.

use quorate_contracts::{
    AccessRequest, Action, Body, Decision, DenyReason, GrantId, GrantStatus, NewMember,
    ResourcePath, Timestamp, Violation, authorize,
};
use quorate_did::Keypair;
use quorate_ledger::chain::{BlockError, ChainState, EntryError, verify_chain};
use quorate_ledger::entry::{Endorsement, Entry};
use quorate_ledger::testing::{CHAIN, Consortium, T0};

fn entry_reason(err: BlockError) -> EntryError {
    match err {
        BlockError::Entry { reason, .. } => reason,
        other => panic!("expected an entry error, got {other}"),
    }
}

#[test]
fn a_quorum_endorsed_grant_commits_and_authorizes_reads_in_scope_only() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(0, 1);
    let entry = c.entry(0, Body::Grant(terms), &[1, 2]); // proposer + 2 = quorum of 3
    let grant = GrantId(entry.id().unwrap().0);
    c.commit(vec![entry]);
    assert_eq!(
        c.chain.state().grant(&grant).unwrap().unwrap().status,
        GrantStatus::Active
    );

    let path = ResourcePath::parse("datasets/shipments/2026-11.csv").unwrap();
    let caller = c.keys[1].did();
    let owner = c.id(0);
    let decide = |action, path: &ResourcePath| {
        authorize(
            c.chain.state(),
            &AccessRequest {
                owner,
                caller: &caller,
                action,
                path,
                now: Timestamp(T0 + 5_000),
                // The fixture's grants name this purpose.
                purpose: Some("customs"),
            },
        )
        .unwrap()
    };
    assert!(matches!(decide(Action::Read, &path), Decision::Allow { grant: g, .. } if g == grant));
    let other = ResourcePath::parse("datasets/invoices/a.csv").unwrap();
    assert_eq!(
        decide(Action::Read, &other),
        Decision::Deny(DenyReason::OutOfScope)
    );
    assert_eq!(
        decide(Action::Write, &path),
        Decision::Deny(DenyReason::ActionNotGranted { grant })
    );
}

#[test]
fn the_same_blocks_give_the_same_state_root_and_verify_from_genesis() {
    let mut c = Consortium::new(4);
    for i in 0..3 {
        let terms = c.grant_terms(i, (i + 1) % 4);
        let e = c.entry(i, Body::Grant(terms), &c.all());
        c.commit(vec![e]);
    }
    let summary = verify_chain(c.blocks.iter().cloned().map(Ok)).unwrap();
    assert_eq!(summary.chain, *c.chain.chain());
    assert_eq!(summary.chain.tip().height, 3);
    assert_eq!(summary.entries, 4);
}

#[test]
fn too_few_endorsements_are_refused() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(0, 1);
    let entry = c.entry(0, Body::Grant(terms), &[1]); // 2 of 3
    let (block, skipped) = c.chain.build_block(c.id(0), c.now(), vec![entry]).unwrap();
    assert!(block.entries.is_empty());
    assert!(matches!(
        entry_reason(skipped[0].1.clone()),
        EntryError::Rule(Violation::Endorsements {
            have: 2,
            need: 3,
            ..
        })
    ));
}

#[test]
fn a_forged_endorsement_is_refused() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(0, 1);
    let mut entry = c.entry(0, Body::Grant(terms), &[1]);
    // Member 2's endorsement, signed by an outsider's key.
    let outsider = Keypair::from_seed(&[99; 32]);
    let forged = Endorsement {
        member: c.id(2),
        signature: outsider.sign(&quorate_ledger::entry::endorsement_message(
            &entry.id().unwrap(),
        )),
    };
    entry.add_endorsement(forged);
    let (_, skipped) = c.chain.build_block(c.id(0), c.now(), vec![entry]).unwrap();
    assert_eq!(
        entry_reason(skipped[0].1.clone()),
        EntryError::BadSignature(c.id(2))
    );
}

#[test]
fn a_duplicated_endorsement_is_refused() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(0, 1);
    let mut entry = c.entry(0, Body::Grant(terms), &[1]);
    // The same member twice, to pad the count.
    let copy = entry.endorsements[1].clone();
    entry.endorsements.push(copy);
    let (_, skipped) = c.chain.build_block(c.id(0), c.now(), vec![entry]).unwrap();
    assert_eq!(
        entry_reason(skipped[0].1.clone()),
        EntryError::EndorsementOrder
    );
}

#[test]
fn a_grant_by_a_non_owner_is_refused() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(0, 1); // grantor is member 0 ...
    let entry = c.entry(2, Body::Grant(terms), &c.all()); // ... proposed by member 2
    let (_, skipped) = c.chain.build_block(c.id(0), c.now(), vec![entry]).unwrap();
    assert_eq!(
        entry_reason(skipped[0].1.clone()),
        EntryError::Rule(Violation::NotGrantor)
    );
}

#[test]
fn only_the_grantor_revokes_alone_and_revocation_is_terminal() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(0, 1);
    let e = c.entry(0, Body::Grant(terms), &c.all());
    let grant = GrantId(e.id().unwrap().0);
    c.commit(vec![e]);

    // Member 2 alone cannot revoke someone else's grant.
    let e = c.entry(2, Body::Revoke { grant }, &[]);
    let (_, skipped) = c.chain.build_block(c.id(0), c.now(), vec![e]).unwrap();
    assert!(matches!(
        entry_reason(skipped[0].1.clone()),
        EntryError::Rule(Violation::Endorsements {
            have: 1,
            need: 3,
            ..
        })
    ));

    // The grantor can, alone.
    let e = c.entry(0, Body::Revoke { grant }, &[]);
    c.commit(vec![e]);
    let height = c.chain.tip().height;
    assert_eq!(
        c.chain.state().grant(&grant).unwrap().unwrap().status,
        GrantStatus::Revoked { height }
    );
    let path = ResourcePath::parse("datasets/shipments/x.csv").unwrap();
    let caller = c.keys[1].did();
    let decision = authorize(
        c.chain.state(),
        &AccessRequest {
            owner: c.id(0),
            caller: &caller,
            action: Action::Read,
            path: &path,
            now: Timestamp(T0 + 9_000),
            purpose: Some("customs"),
        },
    )
    .unwrap();
    assert_eq!(decision, Decision::Deny(DenyReason::Revoked { grant }));

    // And never again.
    let e = c.entry(0, Body::Revoke { grant }, &[]);
    let (_, skipped) = c.chain.build_block(c.id(0), c.now(), vec![e]).unwrap();
    assert_eq!(
        entry_reason(skipped[0].1.clone()),
        EntryError::Rule(Violation::GrantNotActive(grant))
    );
}

#[test]
fn a_removed_member_can_no_longer_sign_and_its_grants_end() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(3, 0);
    let e = c.entry(3, Body::Grant(terms), &c.all());
    let grant = GrantId(e.id().unwrap().0);
    c.commit(vec![e]);
    let removed = c.id(3);
    let e = c.entry(0, Body::RemoveMember { member: removed }, &[1, 2]);
    c.commit(vec![e]);
    assert_eq!(c.chain.state().members.len(), 3);
    assert!(matches!(
        c.chain.state().grant(&grant).unwrap().unwrap().status,
        GrantStatus::Ended { .. }
    ));

    // An endorsement by the removed member is now refused.
    let terms = c.grant_terms(0, 1);
    let mut e = c.entry(0, Body::Grant(terms), &[1, 2]);
    e.add_endorsement(Endorsement {
        member: removed,
        signature: c.keys[3].sign(&quorate_ledger::entry::endorsement_message(
            &e.id().unwrap(),
        )),
    });
    let (_, skipped) = c.chain.build_block(c.id(0), c.now(), vec![e]).unwrap();
    assert_eq!(
        entry_reason(skipped[0].1.clone()),
        EntryError::NotAMember(removed)
    );
}

#[test]
fn a_replayed_entry_is_refused() {
    let mut c = Consortium::new(4);
    let key = Keypair::from_seed(&[50; 32]);
    let e = c.entry(
        0,
        Body::AddMember(NewMember {
            name: "org-e".into(),
            did: key.did(),
        }),
        &c.all(),
    );
    c.commit(vec![e.clone()]);
    assert_eq!(c.chain.state().members.len(), 5);
    // The same entry again: refused by the replay window.
    let (_, skipped) = c.chain.build_block(c.id(0), c.now(), vec![e]).unwrap();
    assert!(matches!(
        entry_reason(skipped[0].1.clone()),
        EntryError::Duplicate | EntryError::Epoch { .. }
    ));
}

#[test]
fn membership_changes_take_effect_from_the_next_block_one_per_block() {
    let mut c = Consortium::new(4);
    let k5 = Keypair::from_seed(&[60; 32]);
    let k6 = Keypair::from_seed(&[61; 32]);
    let a = c.entry(
        0,
        Body::AddMember(NewMember {
            name: "org-e".into(),
            did: k5.did(),
        }),
        &c.all(),
    );
    let b = c.entry(
        1,
        Body::AddMember(NewMember {
            name: "org-f".into(),
            did: k6.did(),
        }),
        &c.all(),
    );
    let (block, skipped) = c.chain.build_block(c.id(0), c.now(), vec![a, b]).unwrap();
    assert_eq!(block.entries.len(), 1);
    assert!(matches!(
        skipped[0].1,
        BlockError::SecondMembershipChange { .. }
    ));
    let committed = c.certify(block);
    c.chain.apply(&committed).unwrap();
    assert_eq!(c.chain.state().epoch, 1);
    assert_eq!(
        c.chain.validators().len(),
        5,
        "the new member votes from the next block"
    );
}

#[test]
fn certificates_must_come_from_a_quorum_of_the_blocks_epoch() {
    let mut c = Consortium::new(4);
    let committed = c.block(vec![]);
    let mut short = committed.clone();
    short.certificate.signatures.truncate(2);
    let err = c.chain.apply(&short).unwrap_err();
    assert!(matches!(err.reason, BlockError::Certificate(_)), "{err}");

    // Signed by four keys that are not the members.
    let outsiders: Vec<Keypair> = (0..4).map(|i| Keypair::from_seed(&[200 + i; 32])).collect();
    let refs: Vec<&Keypair> = outsiders.iter().collect();
    let validators = c.chain.validators();
    let mut forged = committed.clone();
    forged.certificate = quorate_ledger::consensus::certify(
        CHAIN,
        &validators,
        1,
        0,
        committed.block.hash().unwrap().0,
        &refs,
    );
    assert!(c.chain.apply(&forged).is_err());
    c.chain.apply(&committed).unwrap();
}

#[test]
fn tampering_with_any_header_field_is_detected_with_its_height() {
    let mut c = Consortium::new(4);
    for _ in 0..3 {
        c.commit(vec![]);
    }
    type Tamper = Box<dyn Fn(&mut quorate_ledger::block::CommittedBlock)>;
    let tampered_cases: Vec<Tamper> = vec![
        Box::new(|b| b.block.header.time = Timestamp(b.block.header.time.0 + 1)),
        Box::new(|b| b.block.header.state_root.0[0] ^= 1),
        Box::new(|b| b.block.header.tx_root.0[0] ^= 1),
        Box::new(|b| b.block.header.prev_hash.0[0] ^= 1),
        Box::new(|b| b.block.header.height += 1),
        Box::new(|b| b.block.header.chain_id.push('x')),
    ];
    for tamper in tampered_cases {
        let mut blocks = c.blocks.clone();
        tamper(&mut blocks[2]);
        let err = verify_chain(blocks.into_iter().map(Ok)).unwrap_err();
        assert_eq!(err.height, 2, "{err}");
    }
}

#[test]
fn a_genesis_not_endorsed_by_every_founder_is_refused() {
    let c = Consortium::new(4);
    let mut genesis = c.blocks[0].clone();
    genesis.block.entries[0].endorsements.pop();
    assert!(ChainState::from_genesis(&genesis).is_err());
}

/// Goal: the incremental state root (each block's changes applied to the
/// state tree) always equals the root recomputed from scratch over every
/// row, and a ledger on disk that appended the same blocks, one at a time
/// or in batches, reopens to the same state and root.
/// Method: random sequences of grants, revocations, empty blocks and one
/// member removal on a 4-member consortium; after every block the two roots
/// are compared; the on-disk ledger is reopened at the end.
mod incremental_root {
    use proptest::prelude::*;
    use quorate_contracts::{Body, GrantStatus};
    use quorate_ledger::chain::state_root;
    use quorate_ledger::ledger::Ledger;
    use quorate_ledger::testing::Consortium;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn equals_the_from_scratch_root(ops in prop::collection::vec(0u8..8, 1..14), batch in 1usize..4) {
            let dir = tempfile::tempdir().unwrap();
            let mut c = Consortium::new(4);
            let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
            ledger.init_genesis(&c.blocks[0]).unwrap();
            let mut pending = Vec::new();
            let mut removed = false;
            for op in ops {
                let entries = match op {
                    0..=3 => {
                        // Members 0, 1 and 2 stay: they grant and endorse;
                        // member 3 receives grants until it leaves.
                        let from = usize::from(op) % 2;
                        let to = if op == 3 && !removed { 3 } else { from + 1 };
                        let terms = c.grant_terms(from, to);
                        vec![c.entry(from, Body::Grant(terms), &[0, 1, 2])]
                    }
                    4 | 5 => {
                        // Revoke the first active grant, by its grantor.
                        let mut active = None;
                        c.chain.state().visit_grants(None, &mut |id, g| {
                            if g.status == GrantStatus::Active {
                                active = Some((id, g.terms.grantor));
                                return std::ops::ControlFlow::Break(());
                            }
                            std::ops::ControlFlow::Continue(())
                        }).unwrap();
                        match active {
                            Some((grant, grantor)) => {
                                let by = (0..3).find(|i| c.id(*i) == grantor).unwrap();
                                vec![c.entry(by, Body::Revoke { grant }, &[by])]
                            }
                            None => Vec::new(),
                        }
                    }
                    6 if !removed => {
                        removed = true;
                        // Member 3 leaves: its grants end in the same block.
                        let member = c.id(3);
                        vec![c.entry(0, Body::RemoveMember { member }, &[0, 1, 2])]
                    }
                    _ => Vec::new(),
                };
                pending.push(c.commit(entries));
                prop_assert_eq!(c.chain.state_root(), state_root(c.chain.state()).unwrap());
                prop_assert_eq!(c.chain.state_root(), c.blocks.last().unwrap().block.header.state_root);
                if pending.len() == batch {
                    ledger.append_batch(&pending).unwrap();
                    pending.clear();
                }
            }
            if !pending.is_empty() {
                ledger.append_batch(&pending).unwrap();
            }
            drop(ledger);
            let reopened = Ledger::open(&dir.path().join("l.redb")).unwrap();
            let chain = reopened.chain().unwrap();
            prop_assert_eq!(chain.state(), c.chain.state());
            prop_assert_eq!(chain.state_root(), c.chain.state_root());
            prop_assert_eq!(chain.tip(), c.chain.tip());
        }
    }
}

/// Goal: raising the proposal TTL cannot make an entry fresh again that
/// already left the replay window under the shorter TTL (a policy change
/// replayed with its old endorsements would restore the old policy).
/// Method: a SetPolicy with a 10 s TTL commits; a block a minute later
/// trims it from the window; a second SetPolicy raises the TTL to a day;
/// the first entry, offered again, is refused as stale.
#[test]
fn a_raised_ttl_does_not_revive_an_entry_that_left_the_replay_window() {
    use quorate_contracts::Policy;
    let mut c = Consortium::new(4);
    let short = Policy {
        proposal_ttl_ms: Policy::PROPOSAL_TTL_MIN_MS,
        ..Policy::default()
    };
    let first = c.entry(0, Body::SetPolicy(short), &c.all());
    c.commit(vec![first.clone()]);
    // A minute later: past the 10 s TTL and the 30 s skew.
    let later = Timestamp(c.chain.tip().time.0 + 60_000);
    let (block, _) = c.chain.build_block(c.id(0), later, Vec::new()).unwrap();
    let committed = c.certify(block);
    c.chain.apply(&committed).unwrap();
    c.blocks.push(committed);
    assert!(!c.chain.is_recently_committed(&first.id().unwrap()));
    let long = Policy {
        proposal_ttl_ms: 24 * 3_600_000,
        ..Policy::default()
    };
    let raise = c.entry(1, Body::SetPolicy(long), &c.all());
    c.commit(vec![raise]);
    assert_eq!(c.chain.state().policy.proposal_ttl_ms, 24 * 3_600_000);
    let (block, skipped) = c.chain.build_block(c.id(0), c.now(), vec![first]).unwrap();
    assert!(
        block.entries.is_empty(),
        "the old policy change was replayed"
    );
    assert!(
        matches!(
            skipped.as_slice(),
            [(
                _,
                BlockError::Entry {
                    reason: EntryError::Stale { .. },
                    ..
                }
            )]
        ),
        "{skipped:?}"
    );
}

#[test]
fn a_proposal_outlives_a_membership_change_with_the_endorsements_of_members_who_remain() {
    let mut c = Consortium::new(4);
    let terms = c.grant_terms(0, 1);
    // Endorsed by a quorum of four (three) in epoch 0.
    let mut grant = c.entry(0, Body::Grant(terms), &[0, 1, 2]);
    let newcomer = Keypair::from_seed(&[70; 32]);
    let join = c.entry(
        3,
        Body::AddMember(NewMember {
            name: "org-e".into(),
            did: newcomer.did(),
        }),
        &c.all(),
    );
    c.commit(vec![join]);
    assert_eq!(c.chain.state().epoch, 1);

    // Five members now need four endorsements: the three of epoch 0 still
    // count, one more makes it.
    let (_, skipped) = c
        .chain
        .build_block(c.id(0), c.now(), vec![grant.clone()])
        .unwrap();
    assert!(
        matches!(entry_reason(skipped[0].1.clone()), EntryError::Rule(_)),
        "{:?}",
        skipped
    );
    let late = c.id(3);
    grant.endorse(late, &c.keys[3]).unwrap();
    c.commit(vec![grant]);
    assert_eq!(c.chain.state().grant_counts().total, 1);

    // A proposal for an epoch that has not come is refused.
    let terms = c.grant_terms(0, 1);
    let mut future = c.entry(0, Body::Grant(terms), &[]);
    future.proposal.epoch = 2;
    let mut future = Entry::propose(future.proposal, &c.keys[0]).unwrap();
    for j in 1..4 {
        let member = c.id(j);
        future.endorse(member, &c.keys[j]).unwrap();
    }
    let (_, skipped) = c.chain.build_block(c.id(0), c.now(), vec![future]).unwrap();
    assert!(matches!(
        entry_reason(skipped[0].1.clone()),
        EntryError::Epoch {
            expected: 1,
            found: 2
        }
    ));
}

#[test]
fn an_endorsement_by_a_member_removed_since_voids_the_entry_until_dropped() {
    let mut c = Consortium::new(5);
    let terms = c.grant_terms(0, 1);
    let grant = c.entry(0, Body::Grant(terms), &[0, 1, 2, 4]);
    let removed = c.id(4);
    let removal = c.entry(3, Body::RemoveMember { member: removed }, &[0, 1, 2, 3]);
    c.commit(vec![removal]);
    let (_, skipped) = c
        .chain
        .build_block(c.id(0), c.now(), vec![grant.clone()])
        .unwrap();
    assert!(matches!(
        entry_reason(skipped[0].1.clone()),
        EntryError::NotAMember(m) if m == removed
    ));
    let mut kept = grant;
    kept.endorsements.retain(|e| e.member != removed);
    c.commit(vec![kept]);
}
