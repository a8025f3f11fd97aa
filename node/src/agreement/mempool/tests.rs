use quorate_contracts::{Body, NewMember};
use quorate_did::Keypair;
use quorate_ledger::testing::Consortium;

use super::*;

fn grant(c: &mut Consortium, by: &[usize]) -> Entry {
    let terms = c.grant_terms(0, 1);
    c.entry(0, Body::Grant(terms), by)
}

/// Member `j`'s endorsement of `entry`.
fn endorsement(c: &Consortium, entry: &Entry, j: usize) -> Endorsement {
    let mut endorsed = entry.clone();
    endorsed.endorse(c.id(j), &c.keys[j]).unwrap();
    endorsed
        .endorsements
        .into_iter()
        .find(|e| e.member == c.id(j))
        .unwrap()
}

fn reject(c: &Consortium, pool: &mut Mempool, id: &EntryId, j: usize) -> Result<(), AddError> {
    let r = Rejection::sign(id, c.id(j), &format!("no, says {j}"), &c.keys[j]);
    pool.add_rejection(id, r, &c.chain, c.now())
}

#[test]
fn endorsements_make_a_proposal_eligible_and_a_commit_closes_it() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    let entry = grant(&mut c, &[]);
    let id = pool.add_proposal(entry.clone(), &c.chain, c.now()).unwrap();
    assert_eq!(
        pool.get(&id).unwrap().state,
        ProposalState::Pending {
            endorsements: 1,
            required: 3
        }
    );
    assert!(pool.eligible(10).is_empty());
    for j in [1, 2] {
        pool.add_endorsement(&id, endorsement(&c, &entry, j), &c.chain)
            .unwrap();
    }
    assert_eq!(pool.get(&id).unwrap().state, ProposalState::Eligible);
    let ready = pool.eligible(10);
    assert_eq!(ready.len(), 1);

    let block = c.commit(ready);
    let height = block.block.header.height;
    pool.on_commit(&[(height, id)], &c.chain, c.now());
    // It stays listable, committed, and is never eligible again.
    assert_eq!(
        pool.get(&id).unwrap().state,
        ProposalState::Committed { height }
    );
    assert_eq!(pool.open_count(), 0);
    assert!(pool.eligible(10).is_empty());
    // A late copy of the committed entry changes nothing.
    pool.add_proposal(entry, &c.chain, c.now()).unwrap();
    assert_eq!(
        pool.get(&id).unwrap().state,
        ProposalState::Committed { height }
    );
}

#[test]
fn forged_wrong_chain_and_bad_decisions_are_refused() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();

    // Claims member 0 as proposer, signed by member 3.
    let mut forged = grant(&mut c, &[]);
    let id = forged.id().unwrap();
    forged.endorsements = vec![Endorsement {
        member: c.id(0),
        signature: c.keys[3].sign(&quorate_ledger::entry::endorsement_message(&id)),
    }];
    assert_eq!(
        pool.add_proposal(forged, &c.chain, c.now()),
        Err(AddError::Unsigned)
    );

    let mut other_chain = grant(&mut c, &[]);
    other_chain.proposal.chain_id = "elsewhere".into();
    let other_chain = Entry::propose(other_chain.proposal, &c.keys[0]).unwrap();
    assert!(matches!(
        pool.add_proposal(other_chain, &c.chain, c.now()),
        Err(AddError::WrongChain { .. })
    ));
    // An epoch that has not come.
    let mut future = grant(&mut c, &[]);
    future.proposal.epoch = 9;
    let future = Entry::propose(future.proposal, &c.keys[0]).unwrap();
    assert!(matches!(
        pool.add_proposal(future, &c.chain, c.now()),
        Err(AddError::WrongChain { epoch: 9, .. })
    ));

    let entry = grant(&mut c, &[]);
    let id = pool.add_proposal(entry, &c.chain, c.now()).unwrap();
    let bad = Endorsement {
        member: c.id(2),
        signature: c.keys[1].sign(&quorate_ledger::entry::endorsement_message(&id)),
    };
    assert_eq!(
        pool.add_endorsement(&id, bad, &c.chain),
        Err(AddError::BadEndorsement(c.id(2)))
    );
    // A rejection in another's name, and one whose reason was changed.
    let mut forged = Rejection::sign(&id, c.id(2), "no", &c.keys[1]);
    assert_eq!(
        pool.add_rejection(&id, forged.clone(), &c.chain, c.now()),
        Err(AddError::BadRejection(c.id(2)))
    );
    forged = Rejection::sign(&id, c.id(2), "no", &c.keys[2]);
    forged.reason = "yes".into();
    assert!(pool.add_rejection(&id, forged, &c.chain, c.now()).is_err());
    // A withdrawal by someone other than the proposer.
    assert_eq!(
        pool.withdraw(&id, &Withdrawal::sign(&id, &c.keys[1]), &c.chain, c.now()),
        Err(AddError::BadWithdrawal)
    );
    let p = pool.get(&id).unwrap();
    assert_eq!(p.entry.endorsements.len(), 1);
    assert!(p.rejections.is_empty() && p.state.is_open());
}

#[test]
fn decisions_that_overtake_their_proposal_are_kept_for_it() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    let mut entry = grant(&mut c, &[]);
    let id = entry.id().unwrap();
    for j in [1, 2] {
        pool.add_endorsement(&id, endorsement(&c, &entry, j), &c.chain)
            .unwrap();
    }
    reject(&c, &mut pool, &id, 3).unwrap();
    // A forged early endorsement is refused all the same.
    let forged = Endorsement {
        member: c.id(3),
        signature: c.keys[1].sign(&quorate_ledger::entry::endorsement_message(&id)),
    };
    assert!(pool.add_endorsement(&id, forged, &c.chain).is_err());
    entry.endorsements.truncate(1);
    pool.add_proposal(entry, &c.chain, c.now()).unwrap();
    let p = pool.get(&id).unwrap();
    assert_eq!(p.state, ProposalState::Eligible);
    assert!(p.rejections.contains_key(&c.id(3)));
}

#[test]
fn a_members_first_decision_is_final() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    let entry = grant(&mut c, &[]);
    let id = pool.add_proposal(entry.clone(), &c.chain, c.now()).unwrap();
    pool.add_endorsement(&id, endorsement(&c, &entry, 1), &c.chain)
        .unwrap();
    assert_eq!(
        reject(&c, &mut pool, &id, 1),
        Err(AddError::Decided {
            member: c.id(1),
            earlier: "endorsed"
        })
    );
    // The proposer endorsed by proposing: it withdraws, it does not reject.
    assert!(matches!(
        reject(&c, &mut pool, &id, 0),
        Err(AddError::Decided { .. })
    ));
    reject(&c, &mut pool, &id, 2).unwrap();
    // The same rejection again is no change; an endorsement after it is refused.
    reject(&c, &mut pool, &id, 2).unwrap();
    assert_eq!(
        pool.add_endorsement(&id, endorsement(&c, &entry, 2), &c.chain),
        Err(AddError::Decided {
            member: c.id(2),
            earlier: "rejected"
        })
    );
    // This node's own record follows the same rule.
    let me = c.id(3);
    pool.decide(&id, me, LocalDecision::Refused).unwrap();
    assert!(pool.decide(&id, me, LocalDecision::Endorsed).is_err());
    pool.decide(&id, me, LocalDecision::Refused).unwrap();
}

#[test]
fn rejections_fail_a_proposal_once_its_quorum_is_out_of_reach() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    // org-b proposes removing org-d: a quorum of three including org-b.
    let member = c.id(3);
    let removal = c.entry(1, Body::RemoveMember { member }, &[]);
    let id = pool.add_proposal(removal, &c.chain, c.now()).unwrap();
    reject(&c, &mut pool, &id, 3).unwrap();
    assert!(
        pool.get(&id).unwrap().state.is_open(),
        "three members may still endorse"
    );
    reject(&c, &mut pool, &id, 2).unwrap();
    let ProposalState::Failed { reason } = &pool.get(&id).unwrap().state else {
        panic!("{:?}", pool.get(&id).unwrap().state);
    };
    assert!(
        reason.contains("org-c (no, says 2)")
            && reason.contains("org-d (no, says 3)")
            && reason.contains("2 members left who could endorse it, 3 needed"),
        "{reason}"
    );
    assert_eq!(pool.open_count(), 0);
    // Closed: a late endorsement changes nothing, and it is not withdrawn.
    let entry = pool.get(&id).unwrap().entry.clone();
    pool.add_endorsement(&id, endorsement(&c, &entry, 0), &c.chain)
        .unwrap();
    assert!(!pool.get(&id).unwrap().state.is_open());
    assert!(matches!(
        pool.withdraw(&id, &Withdrawal::sign(&id, &c.keys[1]), &c.chain, c.now()),
        Err(AddError::Closed { .. })
    ));

    // A third party's revocation needs a quorum: one rejection leaves
    // three who could endorse, two do not.
    let terms = c.grant_terms(0, 1);
    let g = c.entry(0, Body::Grant(terms), &[0, 1, 2]);
    let grant_id = quorate_contracts::GrantId(g.id().unwrap().0);
    c.commit(vec![g]);
    let revoke = c.entry(2, Body::Revoke { grant: grant_id }, &[]);
    let id = pool.add_proposal(revoke, &c.chain, c.now()).unwrap();
    reject(&c, &mut pool, &id, 0).unwrap();
    assert!(pool.get(&id).unwrap().state.is_open());
    reject(&c, &mut pool, &id, 1).unwrap();
    assert!(matches!(
        pool.get(&id).unwrap().state,
        ProposalState::Failed { .. }
    ));
}

#[test]
fn the_proposer_withdraws_an_open_proposal() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    let id = pool
        .add_proposal(grant(&mut c, &[]), &c.chain, c.now())
        .unwrap();
    pool.withdraw(&id, &Withdrawal::sign(&id, &c.keys[0]), &c.chain, c.now())
        .unwrap();
    assert_eq!(pool.get(&id).unwrap().state, ProposalState::Withdrawn);
    assert!(pool.eligible(10).is_empty());
    assert_eq!(
        pool.withdraw(
            &quorate_ledger::hash::Hash([7; 32]),
            &Withdrawal::sign(&id, &c.keys[0]),
            &c.chain,
            c.now()
        ),
        Err(AddError::Unknown(quorate_ledger::hash::Hash([7; 32])))
    );
}

#[test]
fn a_membership_change_keeps_proposals_with_the_endorsements_of_members_who_remain() {
    let mut c = Consortium::new(5);
    let mut pool = Mempool::new();
    let entry = grant(&mut c, &[]);
    let id = pool.add_proposal(entry.clone(), &c.chain, c.now()).unwrap();
    for j in [1, 4] {
        pool.add_endorsement(&id, endorsement(&c, &entry, j), &c.chain)
            .unwrap();
    }
    reject(&c, &mut pool, &id, 3).unwrap();
    // org-e (4) is removed; the proposal stays, with org-a's and org-b's
    // endorsements and org-d's rejection.
    let removed = c.id(4);
    let removal = c.entry(2, Body::RemoveMember { member: removed }, &[0, 1, 2, 3]);
    c.commit(vec![removal]);
    pool.on_commit(&[], &c.chain, c.now());
    let p = pool.get(&id).unwrap();
    assert_eq!(
        p.state,
        ProposalState::Pending {
            endorsements: 2,
            required: 3
        }
    );
    assert!(p.rejections.contains_key(&c.id(3)));
    // One more endorsement and it is eligible, and the chain takes it.
    pool.add_endorsement(&id, endorsement(&c, &entry, 2), &c.chain)
        .unwrap();
    assert_eq!(pool.get(&id).unwrap().state, ProposalState::Eligible);
    c.commit(pool.eligible(10));

    // A new member joining keeps a pending proposal too.
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    let entry = grant(&mut c, &[]);
    let id = pool.add_proposal(entry.clone(), &c.chain, c.now()).unwrap();
    pool.add_endorsement(&id, endorsement(&c, &entry, 1), &c.chain)
        .unwrap();
    let join = c.entry(
        3,
        Body::AddMember(NewMember {
            name: "org-e".into(),
            did: Keypair::from_seed(&[91; 32]).did(),
        }),
        &c.all(),
    );
    c.commit(vec![join]);
    pool.on_commit(&[], &c.chain, c.now());
    assert_eq!(
        pool.get(&id).unwrap().state,
        ProposalState::Pending {
            endorsements: 2,
            required: 4
        }
    );
}

#[test]
fn a_proposal_whose_proposer_left_fails() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    let id = pool
        .add_proposal(grant(&mut c, &[]), &c.chain, c.now())
        .unwrap();
    let member = c.id(0);
    let removal = c.entry(1, Body::RemoveMember { member }, &[1, 2, 3]);
    c.commit(vec![removal]);
    pool.on_commit(&[], &c.chain, c.now());
    assert!(matches!(
        pool.get(&id).unwrap().state,
        ProposalState::Failed { .. }
    ));
}

#[test]
fn expiry_and_forgetting() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    let now = c.now();
    let stale = pool
        .add_proposal(grant(&mut c, &[]), &c.chain, now)
        .unwrap();
    pool.expire(Timestamp(now.0 + 1_001), 1_000);
    assert_eq!(pool.get(&stale).unwrap().state, ProposalState::Expired);
    // Closed proposals stay listable for a while, then are forgotten.
    pool.expire(Timestamp(now.0 + 1_002 + CLOSED_KEPT_MS / 2), 1_000);
    assert!(pool.get(&stale).is_some());
    pool.expire(Timestamp(now.0 + 1_002 + CLOSED_KEPT_MS), 1_000);
    assert!(pool.get(&stale).is_none());
}

#[test]
fn closed_proposals_are_kept_up_to_a_count() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    let mut first = None;
    for _ in 0..=CLOSED_KEPT_MAX {
        let id = pool
            .add_proposal(grant(&mut c, &[]), &c.chain, c.now())
            .unwrap();
        pool.withdraw(&id, &Withdrawal::sign(&id, &c.keys[0]), &c.chain, c.now())
            .unwrap();
        first.get_or_insert(id);
    }
    assert_eq!(pool.iter().count(), CLOSED_KEPT_MAX);
    assert!(
        pool.get(&first.unwrap()).is_none(),
        "the oldest is forgotten"
    );
}

#[test]
fn one_member_cannot_fill_the_pool() {
    let mut c = Consortium::new(4);
    let mut pool = Mempool::new();
    for _ in 0..PROPOSALS_PER_MEMBER_MAX {
        let entry = grant(&mut c, &[]);
        pool.add_proposal(entry, &c.chain, c.now()).unwrap();
    }
    let entry = grant(&mut c, &[]);
    assert_eq!(
        pool.add_proposal(entry, &c.chain, c.now()),
        Err(AddError::ProposerFull)
    );
    // Another member still can.
    let terms = c.grant_terms(1, 2);
    let entry = c.entry(1, Body::Grant(terms), &[]);
    pool.add_proposal(entry, &c.chain, c.now()).unwrap();
}

#[test]
fn one_member_cannot_fill_the_early_slots() {
    let c = Consortium::new(4);
    let mut pool = Mempool::new();
    let reject_unknown = |pool: &mut Mempool, j: usize, n: u32| {
        let id = quorate_ledger::hash::Hash(blake3::hash(&n.to_be_bytes()).into());
        let r = Rejection::sign(&id, c.id(j), "no", &c.keys[j]);
        pool.add_rejection(&id, r, &c.chain, c.now())
    };
    for n in 0..EARLY_PER_MEMBER_MAX as u32 {
        reject_unknown(&mut pool, 3, n).unwrap();
    }
    assert!(matches!(
        reject_unknown(&mut pool, 3, u32::MAX),
        Err(AddError::Unknown(_))
    ));
    // Another member's early decisions still find room.
    reject_unknown(&mut pool, 2, u32::MAX).unwrap();
}
