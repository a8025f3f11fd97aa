//! What peers send a node over libp2p (`quorate_node::net::protocol`): gossip
//! on the consensus and mempool topics, requests and responses. The first
//! byte picks the type.
//!
//! Properties: accepted bytes are canonical (decode, encode, decode gives
//! the same encoding: these types have no `PartialEq`); what a decoded
//! message carries can be hashed and checked without panicking, and a
//! vote or proposal that verifies is within the validator set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_fuzz::{fixture, round_trip_bytes};
use quorate_ledger::consensus::{ConsensusValue, proposal_sign_bytes};
use quorate_ledger::testing::CHAIN;
use quorate_node::net::protocol::{
    ConsensusMessage, MempoolMessage, OBJECT_CHUNK_BYTES, Request, Response, decode, encode,
};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    // The module's own entry points are the codec's; check they agree.
    if let Ok(value) = decode::<Request>(bytes) {
        assert_eq!(encode(&value).expect("encodes"), bytes);
    }
    let f = fixture();
    let validators = f.at_genesis.validators();
    match kind % 4 {
        0 => match round_trip_bytes::<ConsensusMessage>(bytes) {
            Some(ConsensusMessage::Proposal(p)) => {
                let id = p.value.id();
                let signed = proposal_sign_bytes(CHAIN, p.height, p.round, p.valid_round, &id);
                if let Some(key) = validators.get(p.proposer)
                    && key.verify(&signed, &p.signature).is_ok()
                {
                    assert!(usize::from(p.proposer) < validators.len());
                }
                let _ = f.at_genesis.check_block(&p.value);
            }
            Some(ConsensusMessage::Vote(v)) if v.verify(CHAIN, &validators) => {
                assert!(usize::from(v.voter) < validators.len());
            }
            _ => {}
        },
        1 => match round_trip_bytes::<MempoolMessage>(bytes) {
            Some(MempoolMessage::Entry(entry)) => {
                let id = entry.id().expect("a decoded entry has an id");
                for e in &entry.endorsements {
                    if let Some(m) = f.consortium.chain.state().members.get(&e.member) {
                        let _ = quorate_ledger::entry::verify_endorsement(&id, e, &m.did);
                    }
                }
            }
            Some(MempoolMessage::Endorsement { entry, endorsement }) => {
                if let Some(m) = f.consortium.chain.state().members.get(&endorsement.member) {
                    let _ = quorate_ledger::entry::verify_endorsement(&entry, &endorsement, &m.did);
                }
            }
            Some(MempoolMessage::Rejection { entry, rejection }) => {
                if let Some(m) = f.consortium.chain.state().members.get(&rejection.member)
                    && rejection.verify(&entry, &m.did)
                {
                    // A rejection that verifies is within its bound.
                    assert!(
                        rejection.reason.len()
                            <= quorate_node::agreement::mempool::decisions::REASON_BYTES_MAX
                    );
                }
            }
            Some(MempoolMessage::Withdrawal { entry, withdrawal }) => {
                for m in f.consortium.chain.state().members.values() {
                    let _ = withdrawal.verify(&entry, &m.did);
                }
            }
            None => {}
        },
        2 => {
            let request = round_trip_bytes::<Request>(bytes);
            if let Some(Request::AccessRequest(signed)) = &request {
                // What an owner does first: the signature, then the bounds.
                if signed.verify().is_ok() {
                    let _ = signed.body.check(u64::MAX);
                    let _ = signed.id().expect("a verified request hashes");
                }
            }
            if let Some(Request::Object { path, range, .. }) = request {
                let _ = quorate_contracts::ResourcePath::parse(&path);
                if let Some(range) = range {
                    for size in [0, 1, OBJECT_CHUNK_BYTES, u64::MAX] {
                        if let Some((start, end)) = range.resolve(size) {
                            assert!(start < end && end <= size);
                        }
                    }
                }
            }
        }
        _ => {
            if let Some(Response::Blocks(blocks)) = round_trip_bytes::<Response>(bytes) {
                // What sync does with them: verify in order from the chain.
                let mut chain = f.at_genesis.clone();
                for block in &blocks {
                    block.block.hash().expect("hashes");
                    if chain.apply(block).is_err() {
                        break;
                    }
                }
            }
        }
    }
});
