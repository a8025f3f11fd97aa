//! Helpers shared by the fuzz targets (`fuzz_targets/`) and the seed
//! generator (`examples/seeds.rs`): the canonical-CBOR round-trip
//! property, and a small real consortium (the ledger's `test-support`
//! fixture) with a chain, a grant proof and an export to check decoded
//! values against and to make seed inputs from.
//!
//! Not part of the product: nothing in the main workspace depends on it.

use std::fmt::Debug;
use std::sync::OnceLock;

use quorate_contracts::{Body, NewMember, RateLimit, ResourcePattern};
use quorate_did::Keypair;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::chain::MemoryChain;
use quorate_ledger::codec;
use quorate_ledger::entry::Entry;
use quorate_ledger::export::{self, ExportHeader};
use quorate_ledger::proof::{EntryProof, GrantProof};
use quorate_ledger::testing::Consortium;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `bytes` as a `T`; when the decoder accepts them, checks the
/// canonical-CBOR contract: the value re-encodes to exactly the accepted
/// bytes, and decoding that again gives the same value.
pub fn round_trip<T>(bytes: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let value: T = codec::decode(bytes).ok()?;
    let again = codec::encode(&value).expect("a decoded value always encodes");
    assert_eq!(
        again, bytes,
        "accepted bytes are not the canonical encoding"
    );
    let back: T = codec::decode(&again).expect("a canonical encoding decodes");
    assert_eq!(back, value, "decode(encode(v)) != v");
    Some(value)
}

/// [`round_trip`] for types without `PartialEq` (the node's protocol
/// messages): the second decode must re-encode to the same bytes again.
pub fn round_trip_bytes<T>(bytes: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize,
{
    let value: T = codec::decode(bytes).ok()?;
    let again = codec::encode(&value).expect("a decoded value always encodes");
    assert_eq!(
        again, bytes,
        "accepted bytes are not the canonical encoding"
    );
    let back: T = codec::decode(&again).expect("a canonical encoding decodes");
    assert_eq!(
        codec::encode(&back).expect("encodes"),
        bytes,
        "decode(encode(v)) != v"
    );
    Some(value)
}

/// A consortium of four with three committed blocks after genesis: a
/// membership change (a fifth member), a block with two grants, and a
/// revocation; plus a grant proof and an export of the whole chain.
pub struct Fixture {
    /// The consortium (keys, the chain at its tip, every block).
    pub consortium: Consortium,
    /// The chain right after genesis, to check decoded blocks against.
    pub at_genesis: MemoryChain,
    /// A grant proof that verifies (one membership change, then the grant).
    pub proof: GrantProof,
    /// An export of the whole chain that verifies.
    pub export: Vec<u8>,
}

/// The fixture, built once per process.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn entry_proof(block: &CommittedBlock, index: usize) -> EntryProof {
    EntryProof::of_block(block, index)
        .expect("encodes")
        .expect("index in range")
}

fn build_fixture() -> Fixture {
    let mut c = Consortium::new(4);
    let at_genesis = c.chain.clone();
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
    let mut other_terms = c.grant_terms(1, 2);
    other_terms.resources = vec![
        ResourcePattern::parse("*").expect("pattern"),
        ResourcePattern::parse("reports/2026/q1.csv").expect("pattern"),
    ];
    other_terms.purpose = None;
    other_terms.rate_limit = Some(RateLimit {
        requests: 1,
        per_seconds: 1,
    });
    let filler = c.entry(1, Body::Grant(other_terms), &c.all());
    let grant = c.entry(0, Body::Grant(c.grant_terms(0, 1)), &c.all());
    let filler_id = quorate_contracts::GrantId(filler.id().expect("id").0);
    let grant_block = c.commit(vec![filler, grant]);
    let revoke = c.entry(1, Body::Revoke { grant: filler_id }, &c.all());
    c.commit(vec![revoke]);
    let proof = GrantProof {
        genesis: c.blocks[0].clone(),
        membership_changes: vec![entry_proof(&add_block, 0)],
        grant: entry_proof(&grant_block, 1),
    };
    let header = ExportHeader {
        chain_id: c.chain.chain_id().to_owned(),
        genesis_hash: c.chain.genesis_hash(),
        tip_height: c.chain.tip().height,
        tip_hash: c.chain.tip().hash,
    };
    let mut out = Vec::new();
    export::write(&mut out, &header, c.blocks.iter().cloned()).expect("export");
    Fixture {
        consortium: c,
        at_genesis,
        proof,
        export: out,
    }
}

impl Fixture {
    /// Every entry of the chain, genesis included.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.consortium
            .blocks
            .iter()
            .flat_map(|b| b.block.entries.iter())
    }
}

/// The validator (by fixture key index) whose agreement machine the
/// consensus fuzzing drives.
pub const MACHINE_KEY: usize = 3;

/// The agreement machine's timeouts for the fixture chain.
pub fn machine_config() -> quorate_ledger::consensus::Config {
    quorate_ledger::consensus::Config {
        chain_id: quorate_ledger::testing::CHAIN.to_owned(),
        propose_ms: 1_000,
        prevote_ms: 1_000,
        precommit_ms: 1_000,
        delta_ms: 100,
    }
}

/// One complete round at height 1 on the chain right after genesis: the
/// round's proposal (the fixture's block 1) and every founder's prevote
/// and precommit of it, all correctly signed.
pub fn round_messages() -> Vec<quorate_ledger::consensus::Message<quorate_ledger::block::Block>> {
    use quorate_ledger::consensus::{
        ConsensusValue, Message, SignedProposal, SignedVote, VoteKind, proposal_sign_bytes,
    };
    use quorate_ledger::testing::CHAIN;
    let f = fixture();
    let validators = f.at_genesis.validators();
    let founders = &f.consortium.keys[..validators.len()];
    let index = |key: &Keypair| validators.index_of(&key.did()).expect("a validator");
    let value = f.consortium.blocks[1].block.clone();
    let id = value.id();
    let proposer_did = validators.proposer(1, 0).expect("a proposer");
    let proposer = founders
        .iter()
        .find(|k| k.did() == *proposer_did)
        .expect("the proposer is a founder");
    let mut messages = vec![Message::Proposal(SignedProposal {
        height: 1,
        round: 0,
        valid_round: None,
        signature: proposer.sign(&proposal_sign_bytes(CHAIN, 1, 0, None, &id)),
        value,
        proposer: index(proposer),
    })];
    for kind in [VoteKind::Prevote, VoteKind::Precommit] {
        for key in founders {
            messages.push(Message::Vote(SignedVote::sign(
                CHAIN,
                kind,
                1,
                0,
                Some(id),
                index(key),
                key,
            )));
        }
    }
    messages
}

/// Splits fuzz input into frames: a 2-byte big-endian length, then that
/// many bytes (the last frame takes what is left).
pub fn frames(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (frame, tail) = rest.split_at(len.min(rest.len()));
        data = tail;
        Some(frame)
    })
}

/// The inverse of [`frames`].
pub fn frame(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("a frame is under 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}
