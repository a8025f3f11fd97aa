//! Goal: freeze the ledger's bytes. Any change to the CBOR encoding, the
//! hash tags, the Merkle shape or the signed layouts changes these values
//! and fails this test; regenerating them is a deliberate, reviewed act
//! (it breaks every existing ledger).
//! Method: a deterministic consortium (fixed seeds, fixed time); expected
//! values were printed once; the tagged hashes, the Merkle root and the
//! sample encoding were recomputed independently in Python (`blake3`
//! package, `derive_key_context=tag`; CBOR bytes written out by hand).
//! Format v2 (tx_root leaves are whole entries, value_id a byte string,
//! state_root the state tree's root) changed the genesis and block hashes
//! and the state root, not the entry id;
//! `fixtures_check.py` recomputes every chain value below from the bytes
//! `print_fixture_bytes` prints (blake3 `derive_key`, cbor2, Ed25519 from
//! `cryptography`), endorsement and precommit signatures included:
//! `cargo test -p quorate-ledger --test fixtures -- --ignored --nocapture
//! print_fixture_bytes | python3 ledger/tests/fixtures_check.py`.
//! The script also writes the state rows out itself by the rules of the
//! docs, compares them with the rows printed here, rebuilds the state
//! roots of genesis, block 1 and two further blocks (a heartbeat, a
//! member's removal) from its own rows, and verifies status proofs.

use quorate_contracts::Body;
use quorate_ledger::codec;
use quorate_ledger::hash::{hash_tagged, tag};
use quorate_ledger::merkle;
use quorate_ledger::testing::Consortium;
use quorate_ledger::{block::CommittedBlock, entry::Entry};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn tagged_hashes_and_merkle_roots_are_frozen() {
    assert_eq!(
        hash_tagged(tag::ENTRY, b"quorate").to_string(),
        "d5c5014990971f7c83ae331fac9f1a42b9f39fb88dd1b80355d1013c4feb3d7d"
    );
    assert_eq!(tag::BLOCK_ENTRY, "quorate 2026 block entry v2");
    assert_eq!(
        hash_tagged(tag::BLOCK_ENTRY, b"quorate").to_string(),
        "c41f244dc5304631931629854b0584113c33f53a8798087472f1a966585312d4"
    );
    let leaves = [
        hash_tagged(tag::ENTRY, b"a"),
        hash_tagged(tag::ENTRY, b"b"),
        hash_tagged(tag::ENTRY, b"c"),
    ];
    assert_eq!(
        merkle::root(&leaves).to_string(),
        "bb046c7ad3b500e004535204a1c9531635f9540b41af31ffd12ef45c1eced3a7"
    );
    assert_eq!(
        merkle::root(&[]).to_string(),
        "3f502fcb8867b49e09c9c22aa42a94d6c84a04fbbabb126c51c8e3b8f863c64b"
    );
}

#[test]
fn the_format_version_is_frozen() {
    assert_eq!(quorate_ledger::export::MAGIC, b"QUORATE-LEDGER\n\x02");
    // v3: grant rows read on demand through a pair index (the store only;
    // the chain's bytes are those of v2).
    assert_eq!(quorate_ledger::store::FORMAT, b"quorate-ledger-store v3");
}

#[test]
fn small_values_encode_to_fixed_bytes() {
    #[derive(serde::Serialize)]
    struct Sample<'a> {
        height: u64,
        name: &'a str,
        maybe: Option<u8>,
        list: Vec<i64>,
    }
    let bytes = codec::encode(&Sample {
        height: 500,
        name: "ab",
        maybe: None,
        list: vec![-1, 24],
    })
    .unwrap();
    // {"height": 500, "name": "ab", "maybe": null, "list": [-1, 24]}
    assert_eq!(
        hex(&bytes),
        "a4666865696768741901f4646e616d65626162656d61796265f6646c69737482201818"
    );
}

/// The fixture chain: genesis, then one grant endorsed by all four.
fn fixture() -> (Consortium, Entry, CommittedBlock) {
    let mut c = Consortium::new(4);
    let e = c.entry(0, Body::Grant(c.grant_terms(0, 1)), &c.all());
    let block = c.commit(vec![e.clone()]);
    (c, e, block)
}

#[test]
fn a_deterministic_chain_has_frozen_hashes() {
    let (c, e, block) = fixture();
    assert_eq!(
        c.chain.genesis_hash().to_string(),
        "f6c6c1085a9c189f993dec6d3af5abe6e0327520bbc32c0f77da4923b1d6625c"
    );
    assert_eq!(
        c.blocks[0].block.header.tx_root.to_string(),
        "d6605620310f3ea81c4eb4626ad0559a5debc41c8936b222ee7dc5741708aae7"
    );
    // The entry id (the grant id) is the same in v1 and v2: it still
    // hashes the proposal alone.
    assert_eq!(
        e.id().unwrap().to_string(),
        "82e28d10291f6e2b3a1dce6c38addb3062a63e25b5636c0ac5be1ff769e73d27"
    );
    assert_eq!(
        e.leaf_hash().unwrap().to_string(),
        "7a4707d7bc16ee5b598937b3dbe9f400067dc02823345b0faf1cfebbd03ca720"
    );
    assert_eq!(
        block.block.header.tx_root,
        merkle::root(&[e.leaf_hash().unwrap()])
    );
    assert_eq!(
        block.block.header.tx_root.to_string(),
        "5c67decb791736004f8acb2f2bbdf9f51497d6a0da670c0ba17d2a6f454375a7"
    );
    assert_eq!(
        block.block.hash().unwrap().to_string(),
        "6961a0b4a7416742997c2b37fa2bb0b7cf5d362a084f321084174b7689cfc236"
    );
    assert_eq!(
        block.block.header.state_root.to_string(),
        "2c7ddb4a64e06c0588c91c77931465c8d16c9e26dd1730d34b531e21183d4b4c"
    );
}

/// Prints the fixture's bytes for `fixtures_check.py` (see the header).
#[test]
#[ignore = "prints the input of fixtures_check.py"]
fn print_fixture_bytes() {
    let (c, e, block) = fixture();
    let genesis = &c.blocks[0].block;
    let lines = [
        ("TAG", hash_tagged(tag::BLOCK_ENTRY, b"quorate").to_string()),
        ("GENESIS", c.chain.genesis_hash().to_string()),
        (
            "GENESIS_ENTRY_CBOR",
            hex(&codec::encode(&genesis.entries[0]).unwrap()),
        ),
        (
            "GENESIS_HEADER_CBOR",
            hex(&codec::encode(&genesis.header).unwrap()),
        ),
        ("GENESIS_TX", genesis.header.tx_root.to_string()),
        ("ID", e.id().unwrap().to_string()),
        ("PROPOSAL_CBOR", hex(&codec::encode(&e.proposal).unwrap())),
        ("ENTRY_CBOR", hex(&codec::encode(&e).unwrap())),
        ("LEAF", e.leaf_hash().unwrap().to_string()),
        ("TX", block.block.header.tx_root.to_string()),
        (
            "HEADER_CBOR",
            hex(&codec::encode(&block.block.header).unwrap()),
        ),
        ("BLOCK", block.block.hash().unwrap().to_string()),
        (
            "CERT_CBOR",
            hex(&codec::encode(&block.certificate).unwrap()),
        ),
    ];
    for (name, value) in lines {
        println!("{name} {value}");
    }

    // The state rows of block 1 (docs/ledger-format.md section 4):
    // fixtures_check.py writes each row out itself from the genesis and
    // grant entries by the rules of docs/contracts.md, compares it with
    // these bytes, and rebuilds the genesis and block-1 state roots from
    // its own rows (docs/state-tree.md). Members print in member-id order.
    use quorate_contracts::GrantId;
    use quorate_ledger::chain::rows;
    use quorate_ledger::proof::StatusProof;
    use quorate_ledger::smt;
    let mut c = c;
    let state = c.chain.state().clone();
    let grant = GrantId(e.id().unwrap().0);
    println!(
        "CONSORTIUM_ROW_CBOR {}",
        hex(&codec::encode(&state.consortium()).unwrap())
    );
    for (i, member) in state.members.values().enumerate() {
        println!(
            "MEMBER_ROW_CBOR_{i} {}",
            hex(&codec::encode(member).unwrap())
        );
    }
    println!(
        "GRANT_ROW_CBOR {}",
        hex(&codec::encode(&state.grant(&grant).unwrap().unwrap()).unwrap())
    );

    // Status proofs at height 1 (docs/ledger-format.md section 6), which
    // the script verifies against block 1's header: the grant's record,
    // and the absence of two other ids, one whose path ends at another
    // row's leaf and one whose path ends in an empty subtree (the first
    // of each kind among the ids H(entry tag, [n])).
    let tree = c.chain.tree();
    let version = c.chain.tree_version();
    let status = |id: GrantId| {
        let key = rows::grant_key(&id);
        StatusProof {
            genesis: c.blocks[0].clone(),
            membership_changes: Vec::new(),
            header: block.block.header.clone(),
            certificate: block.certificate.clone(),
            grant_id: id,
            record: smt::get(tree, version, &key).unwrap(),
            path: smt::prove(tree, version, &key).unwrap(),
        }
    };
    println!(
        "STATUS_PROOF_CBOR {}",
        hex(&codec::encode(&status(grant)).unwrap())
    );
    let absent: Vec<StatusProof> = (0..=u8::MAX)
        .map(|n| status(GrantId(hash_tagged(tag::ENTRY, &[n]).0)))
        .collect();
    let beside = absent.iter().find(|p| p.path.leaf.is_some()).unwrap();
    let empty = absent.iter().find(|p| p.path.leaf.is_none()).unwrap();
    println!(
        "STATUS_ABSENT_BESIDE_CBOR {}",
        hex(&codec::encode(beside).unwrap())
    );
    println!(
        "STATUS_ABSENT_EMPTY_CBOR {}",
        hex(&codec::encode(empty).unwrap())
    );

    // Two more blocks: a heartbeat (no entries: the state root stays),
    // then org-a removes org-b, the grant's grantee (its member row goes,
    // the grant becomes Ended at height 3, the epoch becomes 1). The
    // script checks the links and rebuilds block 3's state root.
    let heartbeat = c.commit(Vec::new());
    let by = c.all();
    let remove = c.entry(0, Body::RemoveMember { member: c.id(1) }, &by);
    let removed = c.commit(vec![remove.clone()]);
    let after = c.chain.state().clone();
    println!(
        "HEARTBEAT_HEADER_CBOR {}",
        hex(&codec::encode(&heartbeat.block.header).unwrap())
    );
    println!(
        "REMOVE_ENTRY_CBOR {}",
        hex(&codec::encode(&remove).unwrap())
    );
    println!(
        "REMOVE_HEADER_CBOR {}",
        hex(&codec::encode(&removed.block.header).unwrap())
    );
    println!(
        "REMOVED_CONSORTIUM_ROW_CBOR {}",
        hex(&codec::encode(&after.consortium()).unwrap())
    );
    println!(
        "REMOVED_GRANT_ROW_CBOR {}",
        hex(&codec::encode(&after.grant(&grant).unwrap().unwrap()).unwrap())
    );
}
