//! Goal: the on-disk ledger keeps exactly what it acknowledged: appends are
//! durable and all-or-nothing, reopening yields the tip and a chain that
//! verifies, bad appends change nothing, and a foreign file is refused.
//! Method: a real redb file in a temporary directory; a 4-member consortium.

use quorate_contracts::Body;
use quorate_ledger::ledger::{Ledger, LedgerError};
use quorate_ledger::store::{AppendError, OpenError, StateWrite, Store, StoredBlock};
use quorate_ledger::testing::Consortium;

#[test]
fn appended_blocks_survive_reopen_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut c = Consortium::new(4);
    {
        let mut ledger = Ledger::open(&path).unwrap();
        assert!(ledger.chain().is_none());
        ledger.init_genesis(&c.blocks[0]).unwrap();
        for i in 0..5 {
            let e = c.entry(
                i % 4,
                Body::Grant(c.grant_terms(i % 4, (i + 1) % 4)),
                &c.all(),
            );
            let block = c.commit(vec![e]);
            ledger.append(&block).unwrap();
        }
    }
    let ledger = Ledger::open(&path).unwrap();
    let chain = ledger.chain().unwrap();
    assert_eq!(chain.tip(), c.chain.tip());
    assert_eq!(chain.state(), c.chain.state());
    let summary = ledger.verify().unwrap();
    assert_eq!(summary.chain.tip().height, 5);
    assert_eq!(ledger.block(3).unwrap().unwrap(), c.blocks[3]);
    assert_eq!(ledger.blocks(2, 4).unwrap(), c.blocks[2..=4].to_vec());

    let mut out = Vec::new();
    ledger.export(&mut out).unwrap();
    let verified = quorate_ledger::export::verify(out.as_slice()).unwrap();
    assert_eq!(verified.tip(), c.chain.tip());
}

#[test]
fn a_bad_block_changes_nothing_and_a_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut c = Consortium::new(4);
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.init_genesis(&c.blocks[0]).unwrap();
    let good = c.commit(vec![]);
    let mut next = c.block(vec![]);
    next.block.header.state_root.0[0] ^= 1;
    // A batch whose second block is bad: neither is written.
    let err = ledger.append_batch(&[good.clone(), next]).unwrap_err();
    assert!(matches!(err, LedgerError::Verify(_)), "{err}");
    assert_eq!(ledger.chain().unwrap().tip().height, 0);
    drop(ledger);
    let mut ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.chain().unwrap().tip().height, 0);
    ledger.append(&good).unwrap();
    assert!(matches!(
        ledger.init_genesis(&c.blocks[0]),
        Err(LedgerError::HasGenesis(_))
    ));
}

fn stored(height: u64, prev: [u8; 32], ids: Vec<[u8; 32]>) -> StoredBlock {
    StoredBlock {
        height,
        hash: [height as u8 + 1; 32],
        prev_hash: prev,
        block: vec![1, 2, 3],
        certificate: vec![4],
        entry_ids: ids,
        membership_entries: Vec::new(),
    }
}

/// A state write of a meta row only (and the consortium row it needs).
fn meta(bytes: &[u8]) -> StateWrite {
    StateWrite {
        meta: bytes.to_vec(),
        consortium: Some(b"c".to_vec()),
        ..StateWrite::default()
    }
}

#[test]
fn the_store_refuses_gaps_forks_and_reused_entry_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    assert_eq!(store.tip().unwrap(), None);
    store
        .append(&stored(0, [0; 32], vec![[9; 32]]), &meta(b"s0"))
        .unwrap();
    assert!(matches!(
        store.append(&stored(2, [1; 32], vec![]), &meta(b"x")),
        Err(AppendError::Height {
            expected: 1,
            found: 2
        })
    ));
    assert!(matches!(
        store.append(&stored(1, [7; 32], vec![]), &meta(b"x")),
        Err(AppendError::PrevHash { height: 1 })
    ));
    assert!(matches!(
        store.append(&stored(1, [1; 32], vec![[9; 32]]), &meta(b"x")),
        Err(AppendError::DuplicateEntry { .. })
    ));
    assert_eq!(store.tip().unwrap().unwrap().height, 0);
    // A refused append wrote none of its rows either.
    assert_eq!(store.meta_row().unwrap().unwrap(), b"s0");
    assert_eq!(store.entry_location(&[9; 32]).unwrap(), Some((0, 0)));

    store.put_consensus_state(b"votes").unwrap();
    assert_eq!(store.consensus_state().unwrap().unwrap(), b"votes");
}

#[test]
fn a_file_that_is_not_a_ledger_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.redb");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, OpenError::Foreign { .. } | OpenError::Storage { .. }),
        "{err}"
    );
}

/// A redb file whose `meta` table holds `format`, as a store would.
fn redb_with_format(path: &std::path::Path, format: &[u8]) {
    const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert("format", format)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_store_of_format_v1_is_refused_naming_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.redb");
    redb_with_format(&path, b"quorate-ledger-store v1");
    let err = Store::open(&path).unwrap_err();
    match &err {
        OpenError::Format { found, .. } => assert_eq!(found, "quorate-ledger-store v1"),
        other => panic!("expected a format error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("\"quorate-ledger-store v1\"")
            && message.contains("\"quorate-ledger-store v3\""),
        "{message}"
    );
    // The store was left as it was: still v1, so refused again.
    assert!(matches!(Store::open(&path), Err(OpenError::Format { .. })));

    let other = dir.path().join("other.redb");
    redb_with_format(&other, b"someone else's database");
    assert!(matches!(
        Store::open(&other),
        Err(OpenError::Foreign { .. })
    ));
}

#[test]
fn range_reads_are_bounded_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let mut prev = [0u8; 32];
    for h in 0..10u64 {
        let mut b = stored(h, prev, vec![]);
        b.block = vec![0; 1000];
        prev = b.hash;
        store.append(&b, &meta(b"s")).unwrap();
    }
    let some = store.blocks(0, 9, 3500).unwrap();
    assert_eq!(some.len(), 3, "stops before exceeding the byte budget");
    assert_eq!(
        store.blocks(0, 9, 1).unwrap().len(),
        1,
        "always at least one block"
    );
    assert_eq!(store.blocks(5, 2, 100_000).unwrap().len(), 0);
}

#[test]
fn a_stored_grant_proves_itself_from_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Consortium::new(4);
    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
    ledger.init_genesis(&c.blocks[0]).unwrap();
    let key = quorate_did::Keypair::from_seed(&[80; 32]);
    let add = c.entry(
        0,
        Body::AddMember(quorate_contracts::NewMember {
            name: "org-e".into(),
            did: key.did(),
        }),
        &c.all(),
    );
    ledger.append(&c.commit(vec![add])).unwrap();
    c.keys.push(key);
    let filler = c.entry(2, Body::Grant(c.grant_terms(2, 3)), &c.all());
    let grant = c.entry(0, Body::Grant(c.grant_terms(0, 1)), &c.all());
    let id = quorate_contracts::GrantId(grant.id().unwrap().0);
    ledger.append(&c.commit(vec![filler, grant])).unwrap();

    let proof = ledger
        .grant_proof(&id)
        .unwrap()
        .expect("a proof for a committed grant");
    assert_eq!(proof.membership_changes.len(), 1);
    let verified = proof.verify(Some(&c.chain.genesis_hash())).unwrap();
    assert_eq!((verified.id, verified.height), (id, 2));
    assert!(
        ledger
            .grant_proof(&quorate_contracts::GrantId([9; 32]))
            .unwrap()
            .is_none()
    );
}
