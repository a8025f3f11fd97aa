//! Goal: a grant proof checks the endorsements of every entry it carries
//! as the chain did (signature under the member's key of the block's
//! epoch, strict order, membership, the contract's requirement), and a
//! tampered one fails with the exact reason; a membership change earlier
//! in the grant's own block counts for the grant's rules.
//! Method: an in-memory consortium; proofs from `Ledger::grant_proof` or
//! assembled by hand, altered, and matched against `ProofError` variants.

use quorate_contracts::{Body, GrantId, MemberId, NewMember, Violation};
use quorate_did::{Keypair, Signature};
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::chain::EntryError;
use quorate_ledger::ledger::Ledger;
use quorate_ledger::merkle::ProofError as PathError;
use quorate_ledger::proof::{EntryProof, GrantProof, ProofError, StepError};
use quorate_ledger::testing::Consortium;

fn entry_proof(block: &CommittedBlock, index: usize) -> EntryProof {
    EntryProof::of_block(block, index).unwrap().unwrap()
}

/// Four founders add a fifth, then 0 grants to 1 with the endorsements of
/// `by` (a quorum of five is four).
fn proof_with(by: &[usize]) -> GrantProof {
    let mut c = Consortium::new(4);
    let new = Keypair::from_seed(&[70; 32]);
    let add = c.entry(
        1,
        Body::AddMember(NewMember {
            name: "org-e".into(),
            did: new.did(),
        }),
        &c.all(),
    );
    let add_block = c.commit(vec![add]);
    c.keys.push(new);
    let grant = c.entry(0, Body::Grant(c.grant_terms(0, 1)), by);
    let grant_block = c.commit(vec![grant]);
    GrantProof {
        genesis: c.blocks[0].clone(),
        membership_changes: vec![entry_proof(&add_block, 0)],
        grant: entry_proof(&grant_block, 0),
    }
}

fn step_error(proof: &GrantProof) -> (usize, StepError) {
    match proof.verify(None) {
        Err(ProofError::Step { step, reason }) => (step, reason),
        other => panic!("expected a step to fail, got {other:?}"),
    }
}

fn member_at(proof: &GrantProof, index: usize) -> MemberId {
    proof.grant.entry.endorsements[index].member
}

#[test]
fn a_zeroed_endorsement_signature_fails_as_a_bad_signature() {
    let mut proof = proof_with(&[0, 1, 2, 3, 4]);
    proof.verify(None).unwrap();
    let member = member_at(&proof, 2);
    proof.grant.entry.endorsements[2].signature = Signature::from_bytes([0; 64]);
    assert_eq!(
        step_error(&proof),
        (1, StepError::Entry(EntryError::BadSignature(member)))
    );
}

#[test]
fn swapped_endorsements_fail_on_order_or_signature() {
    let good = proof_with(&[0, 1, 2, 3, 4]);
    // Two endorsements trade places: no longer strictly sorted.
    let mut moved = good.clone();
    moved.grant.entry.endorsements.swap(1, 3);
    assert_eq!(
        step_error(&moved),
        (1, StepError::Entry(EntryError::EndorsementOrder))
    );
    // Two endorsements trade signatures: each is now under another key.
    let mut traded = good.clone();
    let endorsements = &mut traded.grant.entry.endorsements;
    let first = endorsements[1].signature;
    endorsements[1].signature = endorsements[3].signature;
    endorsements[3].signature = first;
    let member = member_at(&traded, 1);
    assert_eq!(
        step_error(&traded),
        (1, StepError::Entry(EntryError::BadSignature(member)))
    );
    // An endorsement by someone who is no member of the epoch.
    let mut outsider = good.clone();
    outsider.grant.entry.endorsements[4].member = MemberId([0xff; 32]);
    assert_eq!(
        step_error(&outsider),
        (
            1,
            StepError::Entry(EntryError::NotAMember(MemberId([0xff; 32])))
        )
    );
}

#[test]
fn a_removed_required_endorsement_fails_on_the_requirement() {
    // Exactly a quorum (four of five): any one removed leaves too few.
    let proof = proof_with(&[0, 1, 2, 3]);
    proof.verify(None).unwrap();
    let proposer = proof.grant.entry.proposal.proposer;
    let mut short = proof.clone();
    let at = short
        .grant
        .entry
        .endorsements
        .iter()
        .position(|e| e.member != proposer)
        .unwrap();
    short.grant.entry.endorsements.remove(at);
    assert_eq!(
        step_error(&short),
        (
            1,
            StepError::Entry(EntryError::Rule(Violation::Endorsements {
                have: 3,
                need: 4,
                missing: String::new(),
            }))
        )
    );
    // The proposer's own (the grantor's) is required whatever the count.
    let mut unsigned = proof_with(&[0, 1, 2, 3, 4]);
    unsigned
        .grant
        .entry
        .endorsements
        .retain(|e| e.member != proposer);
    assert_eq!(
        step_error(&unsigned),
        (1, StepError::Entry(EntryError::MissingProposerEndorsement))
    );
}

#[test]
fn a_dropped_surplus_endorsement_fails_on_the_merkle_path() {
    // Four of five still meet every rule, but the leaf hash covers the
    // whole entry: the path no longer leads to tx_root.
    let mut proof = proof_with(&[0, 1, 2, 3, 4]);
    let proposer = proof.grant.entry.proposal.proposer;
    let at = proof
        .grant
        .entry
        .endorsements
        .iter()
        .position(|e| e.member != proposer)
        .unwrap();
    proof.grant.entry.endorsements.remove(at);
    assert_eq!(
        step_error(&proof),
        (1, StepError::Path(PathError::Mismatch))
    );
}

#[test]
fn a_membership_changes_endorsements_are_checked_too() {
    let mut proof = proof_with(&[0, 1, 2, 3]);
    let member = proof.membership_changes[0].entry.endorsements[0].member;
    proof.membership_changes[0].entry.endorsements[0].signature = Signature::from_bytes([0; 64]);
    assert_eq!(
        step_error(&proof),
        (0, StepError::Entry(EntryError::BadSignature(member)))
    );
}

/// Five members; one block removes org-e and then commits a grant with
/// three endorsements: short of five's quorum (four), enough for the four
/// left (three), which is what the chain judged it against.
fn removal_then_grant_in_one_block(dir: &std::path::Path) -> (Ledger, GrantId) {
    let mut c = Consortium::new(4);
    let new = Keypair::from_seed(&[70; 32]);
    let add = c.entry(
        1,
        Body::AddMember(NewMember {
            name: "org-e".into(),
            did: new.did(),
        }),
        &c.all(),
    );
    c.commit(vec![add]);
    c.keys.push(new);
    let remove = c.entry(1, Body::RemoveMember { member: c.id(4) }, &[0, 1, 2, 3]);
    let grant = c.entry(0, Body::Grant(c.grant_terms(0, 1)), &[0, 1, 2]);
    let id = GrantId(grant.id().unwrap().0);
    c.commit(vec![remove, grant]);
    let mut ledger = Ledger::open(&dir.join("ledger.redb")).unwrap();
    ledger.init_genesis(&c.blocks[0]).unwrap();
    ledger.append_batch(&c.blocks[1..]).unwrap();
    (ledger, id)
}

#[test]
fn a_membership_change_earlier_in_the_grants_block_sets_its_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, id) = removal_then_grant_in_one_block(dir.path());
    let proof = ledger.grant_proof(&id).unwrap().unwrap();
    assert_eq!(proof.membership_changes.len(), 2, "the add and the removal");
    let verified = proof.verify(None).unwrap();
    assert_eq!((verified.id, verified.height), (id, 2));

    // Without the removal the grant is judged against five members.
    let mut left_out = proof.clone();
    left_out.membership_changes.pop();
    assert_eq!(
        step_error(&left_out),
        (
            1,
            StepError::Entry(EntryError::Rule(Violation::Endorsements {
                have: 3,
                need: 4,
                missing: String::new(),
            }))
        )
    );
    // A change at the grant's height must be an earlier entry of its block.
    let mut reordered = proof.clone();
    reordered.grant.path.index = 0;
    assert_eq!(step_error(&reordered), (2, StepError::NotEarlierInBlock));
}
