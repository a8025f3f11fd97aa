//! Goal: grant proofs verify offline from genesis alone and fail when
//! anything is altered or a membership change is left out; an exported
//! ledger verifies, and any byte changed in it is caught.
//! Method: an in-memory consortium; proofs and exports built from it.

use quorate_contracts::{Body, GrantId, NewMember};
use quorate_did::Keypair;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::chain::{BlockError, VerifyError};
use quorate_ledger::export::{self, ExportHeader};
use quorate_ledger::proof::{EntryProof, GrantProof};
use quorate_ledger::testing::Consortium;

fn entry_proof(block: &CommittedBlock, index: usize) -> EntryProof {
    EntryProof::of_block(block, index).unwrap().unwrap()
}

/// A chain with a membership change before a grant.
fn chain_with_grant() -> (Consortium, GrantProof, GrantId) {
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
    let filler = c.entry(1, Body::Grant(c.grant_terms(1, 2)), &c.all());
    let terms = c.grant_terms(0, 1);
    let grant = c.entry(0, Body::Grant(terms), &c.all());
    let id = GrantId(grant.id().unwrap().0);
    let grant_block = c.commit(vec![filler, grant]);
    let proof = GrantProof {
        genesis: c.blocks[0].clone(),
        membership_changes: vec![entry_proof(&add_block, 0)],
        grant: entry_proof(&grant_block, 1),
    };
    (c, proof, id)
}

#[test]
fn a_grant_proof_verifies_from_genesis_alone() {
    let (c, proof, id) = chain_with_grant();
    let verified = proof.verify(Some(&c.chain.genesis_hash())).unwrap();
    assert_eq!(verified.id, id);
    assert_eq!(verified.terms, c.grant_terms(0, 1));
    assert_eq!(verified.height, 2);
    // A proof survives a round trip through its canonical encoding.
    let bytes = quorate_ledger::codec::encode(&proof).unwrap();
    let back: GrantProof = quorate_ledger::codec::decode(&bytes).unwrap();
    back.verify(None).unwrap();
}

#[test]
fn a_proof_that_leaves_out_a_membership_change_fails() {
    let (_, mut proof, _) = chain_with_grant();
    proof.membership_changes.clear();
    let err = proof.verify(None).unwrap_err();
    assert!(err.to_string().contains("epoch"), "{err}");
}

#[test]
fn a_proof_with_anything_altered_fails() {
    let (c, proof, _) = chain_with_grant();
    let mut other_genesis = proof.clone();
    other_genesis.genesis = Consortium::new(3).blocks[0].clone();
    assert!(other_genesis.verify(Some(&c.chain.genesis_hash())).is_err());

    let mut terms = proof.clone();
    if let Body::Grant(t) = &mut terms.grant.entry.proposal.body {
        t.actions.push(quorate_contracts::Action::Write);
    }
    assert!(
        terms.verify(None).is_err(),
        "altered terms no longer match the Merkle root"
    );

    let mut cert = proof.clone();
    cert.grant.certificate.signatures.truncate(1);
    assert!(cert.verify(None).is_err());

    let mut path = proof.clone();
    path.grant.path.siblings[0].0[0] ^= 1;
    assert!(path.verify(None).is_err());

    let mut not_a_grant = proof.clone();
    not_a_grant.grant = not_a_grant.membership_changes[0].clone();
    assert!(not_a_grant.verify(None).is_err());
}

fn export_bytes(c: &Consortium) -> Vec<u8> {
    let header = ExportHeader {
        chain_id: quorate_ledger::testing::CHAIN.to_owned(),
        genesis_hash: c.chain.genesis_hash(),
        tip_height: c.chain.tip().height,
        tip_hash: c.chain.tip().hash,
    };
    let mut out = Vec::new();
    export::write(&mut out, &header, c.blocks.clone()).unwrap();
    out
}

fn verify_export(bytes: &[u8]) -> Result<u64, String> {
    export::verify(bytes)
        .map(|chain| chain.tip().height)
        .map_err(|e| e.to_string())
}

#[test]
fn an_export_verifies_and_any_changed_byte_is_caught() {
    let (c, _, _) = chain_with_grant();
    let bytes = export_bytes(&c);
    assert_eq!(verify_export(&bytes), Ok(2));
    // Every byte position, flipped: never accepted.
    for i in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        assert!(
            verify_export(&tampered).is_err(),
            "byte {i} flipped was accepted"
        );
    }
    assert!(
        verify_export(&bytes[..bytes.len() - 1]).is_err(),
        "truncated"
    );
    assert!(verify_export(b"not a ledger").is_err());
}

#[test]
fn an_export_of_format_v1_is_refused_by_its_version_byte() {
    let (c, _, _) = chain_with_grant();
    let mut bytes = export_bytes(&c);
    assert_eq!(&bytes[..16], b"QUORATE-LEDGER\n\x02");
    bytes[15] = 0x01;
    match export::verify(bytes.as_slice()) {
        Err(export::VerifyExportError::Read(export::ReadError::Version { found: 1 })) => {}
        other => panic!("expected a version error, got {other:?}"),
    }
}

#[test]
fn an_export_with_a_surplus_endorsement_dropped_fails_on_tx_root() {
    let (c, _, _) = chain_with_grant();
    let mut blocks = c.blocks.clone();
    // The grant at height 2 carries all five endorsements where a quorum
    // of four suffices, so without it the entry still meets every rule:
    // only tx_root, which covers whole entries, notices.
    let entry = &mut blocks[2].block.entries[1];
    assert_eq!(entry.endorsements.len(), 5);
    let proposer = entry.proposal.proposer;
    let at = entry
        .endorsements
        .iter()
        .position(|e| e.member != proposer)
        .unwrap();
    entry.endorsements.remove(at);
    let header = ExportHeader {
        chain_id: quorate_ledger::testing::CHAIN.to_owned(),
        genesis_hash: c.chain.genesis_hash(),
        tip_height: c.chain.tip().height,
        tip_hash: c.chain.tip().hash,
    };
    let mut bytes = Vec::new();
    export::write(&mut bytes, &header, blocks).unwrap();
    match export::verify(bytes.as_slice()) {
        Err(export::VerifyExportError::Chain(VerifyError {
            height: 2,
            reason: BlockError::TxRoot { expected, found },
        })) => assert_eq!(found, c.blocks[2].block.header.tx_root, "{expected}"),
        other => panic!("expected a tx_root mismatch at height 2, got {other:?}"),
    }
}

#[test]
fn an_export_written_piece_by_piece_is_the_same_file() {
    let (c, _, _) = chain_with_grant();
    let whole = export_bytes(&c);
    let tip = c.chain.tip();
    let header = ExportHeader {
        chain_id: c.chain.chain_id().to_owned(),
        genesis_hash: c.chain.genesis_hash(),
        tip_height: tip.height,
        tip_hash: tip.hash,
    };
    let mut pieces = export::preamble(&header).unwrap();
    for block in &c.blocks {
        pieces.extend(export::block_record(block).unwrap());
    }
    assert_eq!(pieces, whole);
}
