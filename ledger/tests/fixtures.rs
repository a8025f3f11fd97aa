//! Goal: freeze the ledger's bytes. Any change to the CBOR encoding, the
//! hash tags, the Merkle shape or the signed layouts changes these values
//! and fails this test; regenerating them is a deliberate, reviewed act
//! (it breaks every existing ledger).
//! Method: a deterministic consortium (fixed seeds, fixed time); expected
//! values were printed once; the tagged hashes, the Merkle root and the
//! sample encoding were recomputed independently in Python (`blake3`
//! package, `derive_key_context=tag`; CBOR bytes written out by hand).

use quorate_contracts::Body;
use quorate_ledger::codec;
use quorate_ledger::hash::{hash_tagged, tag};
use quorate_ledger::merkle;
use quorate_ledger::testing::Consortium;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn tagged_hashes_and_merkle_roots_are_frozen() {
    assert_eq!(
        hash_tagged(tag::ENTRY, b"quorate").to_string(),
        "d5c5014990971f7c83ae331fac9f1a42b9f39fb88dd1b80355d1013c4feb3d7d"
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

#[test]
fn a_deterministic_chain_has_frozen_hashes() {
    let mut c = Consortium::new(4);
    assert_eq!(
        c.chain.genesis_hash().to_string(),
        "b0a419b874b6c61f3121244d09234b7b3d0e7f740a49b5516c83ca18b1de50f6"
    );
    let e = c.entry(0, Body::Grant(c.grant_terms(0, 1)), &c.all());
    assert_eq!(
        e.id().unwrap().to_string(),
        "82e28d10291f6e2b3a1dce6c38addb3062a63e25b5636c0ac5be1ff769e73d27"
    );
    let block = c.commit(vec![e]);
    assert_eq!(
        block.block.hash().unwrap().to_string(),
        "77612771b89b624e0543e2c8b64272e40edd36910d02f793dc1f7d215e94a9f2"
    );
    assert_eq!(
        block.block.header.state_root.to_string(),
        "5b505fda1d44cff484677fe6bcbe76c26fe1b9168d5d871dac42040645781d48"
    );
}
