//! Goal: a status proof says what a grant's record was at a committed
//! height, checkable offline from genesis: active at the height it was
//! granted, revoked at the height it was revoked (while the earlier proof
//! still says active as of its height), absent before it existed, with a
//! membership change in between; and tampering with the record, the
//! height, the header, the path, the certificate or the membership chain
//! is refused with the exact reason.
//! Method: a 4-member consortium on a ledger on disk; proofs taken with
//! `Ledger::status_proof` and verified with nothing but their bytes.

use quorate_contracts::{Body, GrantStatus, NewMember};
use quorate_did::Keypair;
use quorate_ledger::ledger::{Ledger, LedgerError};
use quorate_ledger::proof::{ProofError, StatusError, StatusProof, StepError};
use quorate_ledger::testing::Consortium;
use quorate_ledger::{codec, smt};

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    consortium: Consortium,
    grant: quorate_contracts::GrantId,
    /// Before the grant, at the grant, after a membership change, at the
    /// revocation.
    heights: [u64; 4],
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Consortium::new(4);
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    ledger.init_genesis(&c.blocks[0]).unwrap();
    let before = c.commit(Vec::new());
    ledger.append(&before).unwrap();
    let e = c.entry(0, Body::Grant(c.grant_terms(0, 1)), &c.all());
    let grant = quorate_contracts::GrantId(e.id().unwrap().0);
    let granted = c.commit(vec![e]);
    ledger.append(&granted).unwrap();
    let newcomer = Keypair::from_seed(&[77; 32]);
    let add = c.entry(
        1,
        Body::AddMember(NewMember {
            name: "org-new".to_owned(),
            did: newcomer.did(),
        }),
        &c.all(),
    );
    let added = c.commit(vec![add]);
    ledger.append(&added).unwrap();
    let after_change = c.commit(Vec::new());
    ledger.append(&after_change).unwrap();
    let revoke = c.entry(0, Body::Revoke { grant }, &[0]);
    let revoked = c.commit(vec![revoke]);
    ledger.append(&revoked).unwrap();
    let heights = [
        before.block.header.height,
        granted.block.header.height,
        after_change.block.header.height,
        revoked.block.header.height,
    ];
    Fixture {
        _dir: dir,
        ledger,
        consortium: c,
        grant,
        heights,
    }
}

fn round_trip(proof: &StatusProof) -> StatusProof {
    codec::decode(&codec::encode(proof).unwrap()).unwrap()
}

#[test]
fn the_status_is_proven_as_of_each_height() {
    let f = fixture();
    let genesis = f.consortium.chain.genesis_hash();
    let [before, granted, after_change, revoked] = f.heights;
    let status = |at| {
        let proof = round_trip(&f.ledger.status_proof(&f.grant, Some(at)).unwrap());
        proof.verify(Some(&genesis)).unwrap()
    };
    assert_eq!(status(before).standing(), "absent");
    let at_grant = status(granted);
    assert_eq!(at_grant.standing(), "active");
    assert_eq!(at_grant.height, granted);
    // One membership change before: the proof carries it, and still says
    // active as of then.
    let later = f.ledger.status_proof(&f.grant, Some(after_change)).unwrap();
    assert_eq!(later.membership_changes.len(), 1);
    assert_eq!(later.verify(Some(&genesis)).unwrap().standing(), "active");
    let at_revoke = status(revoked);
    assert_eq!(at_revoke.standing(), "revoked");
    assert_eq!(
        at_revoke.record.unwrap().status,
        GrantStatus::Revoked { height: revoked }
    );
    // The tip by default; past it is refused.
    let tip = f.ledger.status_proof(&f.grant, None).unwrap();
    assert_eq!(tip.header.height, revoked);
    assert!(matches!(
        f.ledger.status_proof(&f.grant, Some(revoked + 1)),
        Err(LedgerError::BeyondTip { .. })
    ));
}

#[test]
fn a_tampered_status_proof_is_refused_with_its_reason() {
    let f = fixture();
    let genesis = f.consortium.chain.genesis_hash();
    let [_, granted, after_change, revoked] = f.heights;
    let good = f.ledger.status_proof(&f.grant, Some(revoked)).unwrap();
    good.verify(Some(&genesis)).unwrap();

    // The record of another height (the grant still active) against the
    // revocation's root.
    let mut p = good.clone();
    p.record = f
        .ledger
        .status_proof(&f.grant, Some(granted))
        .unwrap()
        .record;
    assert!(matches!(
        p.verify(None),
        Err(StatusError::Path(smt::ProofError::ValueMismatch))
    ));
    // Claimed absent.
    let mut p = good.clone();
    p.record = None;
    assert!(matches!(
        p.verify(None),
        Err(StatusError::Path(smt::ProofError::Present))
    ));
    // Another height in the header: no longer what the certificate signed.
    let mut p = good.clone();
    p.header.height += 1;
    assert!(matches!(
        p.verify(None),
        Err(StatusError::Header {
            reason: StepError::CertifiesAnotherBlock,
            ..
        })
    ));
    // Another state root: the path no longer leads to it.
    let mut p = good.clone();
    p.header.state_root.0[0] ^= 1;
    assert!(p.verify(None).is_err());
    // A sibling changed on the path.
    let mut p = good.clone();
    if let Some(sibling) = p.path.siblings.first_mut() {
        sibling.0[5] ^= 0x40;
    }
    assert!(matches!(
        p.verify(None),
        Err(StatusError::Path(smt::ProofError::RootMismatch))
    ));
    // A certificate signature zeroed.
    let mut p = good.clone();
    p.certificate.signatures[0].1 = quorate_did::Signature::from_bytes([0; 64]);
    assert!(matches!(
        p.verify(None),
        Err(StatusError::Header {
            reason: StepError::Certificate(_),
            ..
        })
    ));
    // The membership change left out: the header's epoch gives it away.
    let mut p = f.ledger.status_proof(&f.grant, Some(after_change)).unwrap();
    p.membership_changes.clear();
    assert!(matches!(
        p.verify(None),
        Err(StatusError::Header {
            reason: StepError::Epoch { .. },
            ..
        })
    ));
    // Another chain's genesis trusted.
    let other = Consortium::new(3).chain.genesis_hash();
    assert!(matches!(
        good.verify(Some(&other)),
        Err(StatusError::Chain(ProofError::GenesisMismatch { .. }))
    ));
}
