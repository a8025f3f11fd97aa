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

/// Goal: a ledger that keeps 5 s of state history prunes older state tree
/// versions as it appends: every height it still holds proves exactly what
/// a ledger keeping everything proves, a pruned height is refused as not
/// held, the tree's stored bytes stay below the full ledger's, and the
/// pruned ledger reopens on its root.
/// Method: two ledgers on disk fed the same 40 blocks (one a second, each
/// with a grant, every fourth with a revocation); the pruned one with
/// `keep_state_history(Some(5_000))`.
#[test]
fn pruned_history_keeps_recent_heights_provable_and_refuses_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Consortium::new(4);
    let mut full = Ledger::open(&dir.path().join("full.redb")).unwrap();
    let pruned_path = dir.path().join("pruned.redb");
    let mut pruned = Ledger::open(&pruned_path).unwrap();
    pruned.keep_state_history(Some(5_000));
    for ledger in [&mut full, &mut pruned] {
        ledger.init_genesis(&c.blocks[0]).unwrap();
    }
    let mut grants = Vec::new();
    for i in 0..40 {
        let mut entries = vec![c.entry(i % 2, Body::Grant(c.grant_terms(i % 2, 2)), &c.all())];
        grants.push(quorate_contracts::GrantId(entries[0].id().unwrap().0));
        if i % 4 == 3 {
            let grant = grants[i - 3];
            entries.push(c.entry((i - 3) % 2, Body::Revoke { grant }, &[(i - 3) % 2]));
        }
        let block = c.commit(entries);
        full.append(&block).unwrap();
        pruned.append(&block).unwrap();
    }
    let tip = c.chain.tip().height;
    let genesis = c.chain.genesis_hash();
    // Blocks are a second apart: the last 5 s of heights, and the version
    // in force 5 s back, are held.
    for at in tip - 5..=tip {
        for grant in [grants[0], grants[39], grants[36]] {
            let proof = pruned.status_proof(&grant, Some(at)).unwrap();
            assert_eq!(
                codec::encode(&proof).unwrap(),
                codec::encode(&full.status_proof(&grant, Some(at)).unwrap()).unwrap(),
                "height {at}"
            );
            round_trip(&proof).verify(Some(&genesis)).unwrap();
        }
    }
    for at in [1, 10, tip - 10] {
        assert!(
            matches!(
                pruned.status_proof(&grants[0], Some(at)),
                Err(LedgerError::NotHeld { height }) if height == at
            ),
            "height {at}"
        );
        full.status_proof(&grants[0], Some(at)).unwrap();
    }
    let tree_bytes = |l: &Ledger| {
        l.table_bytes()
            .unwrap()
            .into_iter()
            .find(|(name, _, _)| *name == "state_tree")
            .map(|(_, stored, _)| stored)
            .unwrap()
    };
    assert!(
        tree_bytes(&pruned) * 2 < tree_bytes(&full),
        "pruned {} bytes, full {}",
        tree_bytes(&pruned),
        tree_bytes(&full)
    );
    drop(pruned);
    let reopened = Ledger::open(&pruned_path).unwrap();
    assert_eq!(reopened.chain().unwrap().tip().height, tip);
    round_trip(&reopened.status_proof(&grants[39], None).unwrap())
        .verify(Some(&genesis))
        .unwrap();
}

/// Goal: a member status proof says whether a did:key was a member at a
/// height, checkable offline like a grant's: absent before it joined,
/// present (name and key) after, absent again once removed, while the
/// proof at the earlier height still says present; the node finds the
/// member by its key even after its removal; a proof of one member's row
/// claimed for another, or with a changed row, is refused.
/// Method: the fixture's newcomer (added after the grant), then removed.
#[test]
fn a_member_status_is_proven_as_of_each_height() {
    let mut f = fixture();
    let genesis = f.consortium.chain.genesis_hash();
    let [before, _, after_change, _] = f.heights;
    let newcomer = Keypair::from_seed(&[77; 32]).did();
    let id = f.ledger.member_holding(&newcomer, None).unwrap().unwrap();
    let remove = f
        .consortium
        .entry(0, Body::RemoveMember { member: id }, &[0, 1, 2, 3]);
    let removed = f.consortium.commit(vec![remove]);
    f.ledger.append(&removed).unwrap();
    let removed_at = removed.block.header.height;
    assert_eq!(
        f.ledger.member_holding(&newcomer, None).unwrap(),
        Some(id),
        "a removed member is still found by the key it held"
    );
    assert_eq!(
        f.ledger
            .member_holding(&Keypair::from_seed(&[99; 32]).did(), None)
            .unwrap(),
        None
    );
    let verify = |at| {
        let proof = f.ledger.member_status_proof(&id, Some(at)).unwrap();
        let bytes = codec::encode(&proof).unwrap();
        let back: quorate_ledger::proof::MemberStatusProof = codec::decode(&bytes).unwrap();
        assert!(
            codec::decode::<StatusProof>(&bytes).is_err(),
            "a member status proof is not taken for a grant's"
        );
        back.verify(Some(&genesis)).unwrap()
    };
    assert_eq!(verify(before).record, None);
    let present = verify(after_change);
    let member = present.record.expect("a member after it joined");
    assert_eq!((member.name.as_str(), member.did), ("org-new", newcomer));
    assert_eq!(present.height, after_change);
    assert_eq!(verify(removed_at).record, None, "removed");
    assert!(verify(after_change).record.is_some(), "still, as of then");

    // Another member's row claimed as this one's, and a changed row.
    let mut other = f
        .ledger
        .member_status_proof(&id, Some(after_change))
        .unwrap();
    other.member_id = f.consortium.id(0);
    assert!(other.verify(Some(&genesis)).is_err());
    let mut changed = f
        .ledger
        .member_status_proof(&id, Some(after_change))
        .unwrap();
    let mut row: quorate_contracts::Member =
        codec::decode(changed.record.as_ref().unwrap()).unwrap();
    row.name = "org-evil".to_owned();
    changed.record = Some(codec::encode(&row).unwrap());
    assert!(matches!(
        changed.verify(Some(&genesis)),
        Err(StatusError::Path(smt::ProofError::ValueMismatch))
    ));
}

/// Goal: a `LedgerReader` taken from a ledger reads its store from another
/// thread while the ledger appends: it sees each committed block, and the
/// proofs it builds are the ledger's own.
/// Method: a reader thread builds status proofs at the tip while the main
/// thread appends 20 blocks; afterwards the reader's proofs equal the
/// ledger's, byte for byte.
#[test]
fn a_reader_serves_proofs_from_another_thread_while_the_ledger_appends() {
    let mut f = fixture();
    let reader = f.ledger.reader();
    let grant = f.grant;
    let start = reader.tip_height().unwrap();
    let serving = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..200 {
            let tip = reader.tip_height().unwrap();
            let proof = reader.status_proof(&grant, Some(tip)).unwrap();
            proof.verify(None).unwrap();
            seen.push(tip);
        }
        (reader, seen)
    });
    for _ in 0..20 {
        let block = f.consortium.commit(Vec::new());
        f.ledger.append(&block).unwrap();
    }
    let (reader, seen) = serving.join().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the tip never goes back"
    );
    assert!(seen[0] >= start);
    let tip = f.ledger.chain().unwrap().tip().height;
    assert_eq!(reader.tip_height().unwrap(), tip);
    for at in [start, tip] {
        assert_eq!(
            codec::encode(&reader.status_proof(&grant, Some(at)).unwrap()).unwrap(),
            codec::encode(&f.ledger.status_proof(&grant, Some(at)).unwrap()).unwrap()
        );
    }
    assert_eq!(
        reader.blocks(0, tip).unwrap().len() as u64,
        tip + 1,
        "every block, from the reader"
    );
}
