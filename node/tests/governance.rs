//! Goal: endorsement policies decide what each member signs, and a
//! proposal's life is the same on every member: a rejection gossiped is
//! seen by the proposer, enough of them fail the proposal everywhere, a
//! decision is final, a withdrawal closes it, and a membership change keeps
//! a pending proposal with the endorsements it had.
//! Method: drivers in one process over the in-memory network
//! (support::sim_net), each with the policy a test gives it; decisions go
//! through the same driver commands the local API sends. Waits are on
//! proposal views and status watches, bounded by a generous timeout.

mod support;

use quorate_api::local::endorsement::{EndorsementPolicy, Outcome};
use quorate_api::local::responses::{LocalDecision, ProposalState, ProposalView};
use quorate_contracts::{Body, NewMember};
use quorate_node::agreement::driver::{Command, DecideError};
use quorate_node::agreement::policy::Policy;
use support::{Consortium, seed};

fn careful() -> Policy {
    Policy::compile(EndorsementPolicy::careful()).unwrap()
}

fn manual() -> Policy {
    Policy::compile(EndorsementPolicy::always("manual", Outcome::Ask)).unwrap()
}

fn with_policy(members: usize, outsiders: usize, seed: u64, policy: fn() -> Policy) -> Consortium {
    let mut c = Consortium::new(members, outsiders, seed);
    for i in c.all() {
        c.set_policy(i, policy());
        c.start_node(i);
    }
    c
}

async fn decide(
    c: &Consortium,
    i: usize,
    id: quorate_ledger::entry::EntryId,
    approve: bool,
) -> Result<(), DecideError> {
    c.ask(i, |reply| Command::Decide {
        id,
        approve,
        reason: (!approve).then(|| format!("org-{i} says no")),
        reply,
    })
    .await
}

fn committed(v: &ProposalView) -> bool {
    matches!(v.state, ProposalState::Committed { .. })
}

fn failed(v: &ProposalView) -> bool {
    matches!(v.state, ProposalState::Failed { .. })
}

/// Under the careful defaults a grant by its grantor commits on its own;
/// a third party's removal of a member waits for people, every member sees
/// who rejected it, and it fails everywhere once a quorum is out of reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_careful_policy_endorses_grants_and_leaves_removals_to_people() {
    let c = with_policy(4, 0, seed(21), careful);
    c.wait_height(&c.all(), 1).await;

    let grant = c.propose_grant(1, 2).await;
    let view = c.wait_proposal(0, grant, "committed", committed).await;
    assert_eq!(
        view.policy.as_deref(),
        Some("rule grants-by-their-grantor: endorse"),
        "{view:?}"
    );
    assert_eq!(view.decision, LocalDecision::Endorsed);

    // org-0 proposes removing org-3: nobody's policy endorses it.
    let removal = c
        .propose(
            0,
            Body::RemoveMember {
                member: c.member(3),
            },
        )
        .await;
    for i in 1..4 {
        let view = c
            .wait_proposal(i, removal, "judged by the policy", |v| v.policy.is_some())
            .await;
        assert_eq!(
            view.policy.as_deref(),
            Some("rule everything-else: ask a person")
        );
        assert_eq!(view.decision, LocalDecision::Undecided);
        assert!(
            matches!(view.state, ProposalState::Pending { .. }),
            "{view:?}"
        );
    }

    // org-3 rejects: three members could still endorse, so it stays open,
    // and the proposer sees the rejection and its reason.
    decide(&c, 3, removal, false).await.unwrap();
    let view = c
        .wait_proposal(0, removal, "shown with org-3's rejection", |v| {
            !v.rejections.is_empty()
        })
        .await;
    assert_eq!(view.rejections[0].member, "org-3");
    assert_eq!(view.rejections[0].reason, "org-3 says no");
    assert!(
        matches!(view.state, ProposalState::Pending { .. }),
        "{view:?}"
    );
    // A member's decision is final.
    assert!(matches!(
        decide(&c, 3, removal, true).await,
        Err(DecideError::AlreadyDecided {
            earlier: "rejected",
            ..
        })
    ));

    // org-2 rejects too: two members left, three needed. Every member,
    // the proposer first, sees it failed with both reasons.
    decide(&c, 2, removal, false).await.unwrap();
    for i in c.all() {
        let view = c.wait_proposal(i, removal, "failed", failed).await;
        let ProposalState::Failed { reason } = &view.state else {
            unreachable!()
        };
        assert!(
            reason.contains("org-2 (org-2 says no)") && reason.contains("org-3 (org-3 says no)"),
            "node {i}: {reason}"
        );
    }
    // Closed: an approval now is refused as such.
    assert!(matches!(
        decide(&c, 1, removal, true).await,
        Err(DecideError::Closed { .. })
    ));
    assert_eq!(c.state(0).members.len(), 4, "nobody was removed");
    c.finish().await;
}

/// Under manual approval a grant collects approvals while a new member is
/// admitted; the grant keeps them across the epoch change and commits
/// once the larger quorum approves. The proposer can withdraw another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_in_the_middle_of_an_approval_keeps_the_proposal_and_its_endorsements() {
    let c = with_policy(4, 1, seed(22), manual);
    // Node 4 is no member yet: nobody serves it blocks.
    c.wait_height(&[0, 1, 2, 3], 1).await;

    let grant = c.propose_grant(0, 1).await;
    c.wait_proposal(1, grant, "received", |_| true).await;
    decide(&c, 1, grant, true).await.unwrap();
    c.wait_proposal(0, grant, "endorsed by two", |v| v.endorsers.len() == 2)
        .await;

    // Admit node 4 (three approvals: a quorum of four).
    let join = c
        .propose(
            1,
            Body::AddMember(NewMember {
                name: "org-4".into(),
                did: c.did(4),
            }),
        )
        .await;
    for i in [0, 2, 3] {
        c.wait_proposal(i, join, "received", |_| true).await;
        decide(&c, i, join, true).await.unwrap();
    }
    for i in 0..4 {
        c.wait_proposal(i, join, "committed", committed).await;
    }
    assert_eq!(c.state(0).epoch, 1);

    // Still pending, with both endorsements, now needing four of five.
    let view = c
        .wait_proposal(0, grant, "re-evaluated in epoch 1", |v| {
            matches!(v.state, ProposalState::Pending { required: 4, .. })
        })
        .await;
    let mut endorsers = view.endorsers.clone();
    endorsers.sort();
    assert_eq!(endorsers, ["org-0", "org-1"], "{view:?}");
    for i in [2, 3] {
        decide(&c, i, grant, true).await.unwrap();
    }
    for i in 0..4 {
        c.wait_proposal(i, grant, "committed", committed).await;
    }

    // org-0 withdraws a proposal of its own; every member closes it, and
    // nobody else may withdraw one.
    let second = c.propose_grant(0, 2).await;
    c.wait_proposal(3, second, "received", |_| true).await;
    let not_mine = c
        .ask(3, |reply| Command::Withdraw { id: second, reply })
        .await;
    assert!(matches!(not_mine, Err(DecideError::NotProposer(_))));
    c.ask(0, |reply| Command::Withdraw { id: second, reply })
        .await
        .unwrap();
    for i in 0..4 {
        c.wait_proposal(i, second, "withdrawn", |v| {
            v.state == ProposalState::Withdrawn
        })
        .await;
    }
    assert!(matches!(
        decide(&c, 2, second, true).await,
        Err(DecideError::Closed { .. })
    ));
    c.finish().await;
}
