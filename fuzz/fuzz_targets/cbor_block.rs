//! Canonical CBOR decoding of blocks and of agreement's messages:
//! `BlockHeader`, `Block`, `CommittedBlock` (synced from peers, and a
//! genesis file), `QuorumCertificate`, `SignedVote`, `SignedProposal`,
//! `InclusionProof`, `PersistedState` and `ExportHeader`; and a sequence of
//! consensus `Message`s fed to a real agreement machine. The first byte
//! picks the type.
//!
//! Properties: accepted bytes are canonical (decode, encode, decode is the
//! identity and re-encodes to the input); a committed block that a chain
//! applies becomes its tip; a genesis that verifies gives a chain whose
//! genesis hash is the block's; a certificate or vote that verifies is
//! well formed; a Merkle path that verifies for the fixture's block is the
//! real one; the machine fed arbitrary messages never decides a value that
//! is invalid or without a certificate that verifies, and never decides
//! twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_contracts::Timestamp;
use quorate_fuzz::{MACHINE_KEY, fixture, frames, machine_config, round_trip};
use quorate_ledger::block::{Block, BlockHeader, CommittedBlock};
use quorate_ledger::chain::ChainState;
use quorate_ledger::codec;
use quorate_ledger::consensus::{
    ConsensusValue, Effect, Input, Machine, Message, PersistedState, QuorumCertificate,
    SignedProposal, SignedVote, TimeoutKind, verify_certificate,
};
use quorate_ledger::export::ExportHeader;
use quorate_ledger::merkle::{self, InclusionProof};
use quorate_ledger::testing::CHAIN;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match kind % 10 {
        0 => {
            if let Some(header) = round_trip::<BlockHeader>(bytes) {
                header.hash().expect("a decoded header hashes");
            }
        }
        1 => {
            if let Some(block) = round_trip::<Block>(bytes) {
                block.hash().expect("hashes");
                let leaves = block
                    .leaf_hashes()
                    .expect("a decoded block's entries have leaf hashes");
                if let Ok(next) = f.at_genesis.check_block(&block) {
                    assert_eq!(block.header.tx_root, merkle::root(&leaves));
                    assert_eq!(
                        block.header.state_root,
                        quorate_ledger::chain::state_root(next.state()).expect("root")
                    );
                }
            }
        }
        2 => {
            if let Some(committed) = round_trip::<CommittedBlock>(bytes) {
                committed_block(&committed);
            }
        }
        3 => {
            if let Some(cert) = round_trip::<QuorumCertificate>(bytes) {
                let validators = f.at_genesis.validators();
                if verify_certificate(CHAIN, &validators, &cert).is_ok() {
                    assert!(cert.signatures.len() >= validators.quorum());
                    assert!(cert.signatures.windows(2).all(|w| w[0].0 < w[1].0));
                }
            }
        }
        4 => {
            if let Some(vote) = round_trip::<SignedVote>(bytes)
                && vote.verify(CHAIN, &f.at_genesis.validators())
            {
                assert!(usize::from(vote.voter) < f.at_genesis.validators().len());
            }
        }
        5 => {
            round_trip::<SignedProposal<Block>>(bytes);
        }
        6 => {
            if let Some(proof) = round_trip::<InclusionProof>(bytes) {
                // Block 2 holds two entries.
                let block = &f.consortium.blocks[2].block;
                let leaves = block.leaf_hashes().expect("leaf hashes");
                for (i, leaf) in leaves.iter().enumerate() {
                    if proof.verify(leaf, &block.header.tx_root).is_ok() {
                        assert_eq!(Some(&proof), merkle::prove(&leaves, i).as_ref());
                    }
                }
            }
        }
        7 => {
            if let Some(persisted) = round_trip::<PersistedState<Block>>(bytes) {
                // A node restarts from what it persisted (its own disk).
                let key = f.consortium.keys[MACHINE_KEY].clone();
                let mut machine = Machine::restore(machine_config(), key, persisted);
                let effects = machine.apply(
                    Input::StartHeight {
                        height: 1,
                        validators: f.at_genesis.validators(),
                    },
                    Timestamp(1),
                );
                check_effects(&effects, &mut false);
            }
        }
        8 => {
            round_trip::<ExportHeader>(bytes);
        }
        _ => machine(bytes),
    }
});

fn committed_block(committed: &CommittedBlock) {
    let f = fixture();
    let mut chain = f.at_genesis.clone();
    if chain.apply(committed).is_ok() {
        assert_eq!(chain.tip().height, 1);
        assert_eq!(chain.tip().hash, committed.block.hash().expect("hash"));
        // Certified by the founders: it can only be the fixture's block 1
        // (its header, and entries with the same proposals; the tx root
        // covers entry ids, not which valid endorsements are attached).
        let real = &f.consortium.blocks[1].block;
        assert_eq!(committed.block.header, real.header);
        assert_eq!(committed.block.entry_ids(), real.entry_ids());
    } else {
        assert_eq!(
            chain.chain(),
            f.at_genesis.chain(),
            "a refused block changed the chain"
        );
    }
    if let Ok(genesis) = ChainState::from_genesis(committed) {
        let hash = committed.block.hash().expect("hash");
        assert_eq!(genesis.genesis_hash(), hash);
        assert_eq!(genesis.tip().height, 0);
        let bytes = codec::encode(&genesis.meta()).expect("a chain's meta row encodes");
        let back: quorate_ledger::chain::ChainMeta = codec::decode(&bytes).expect("and decodes");
        assert_eq!(back, genesis.meta());
    }
}

/// Feeds a sequence of framed inputs to the machine of fixture key
/// [`MACHINE_KEY`] at height 1: a frame starting 0xff is a timeout, one
/// starting 0xfe flips whether proposals are timely, any other is a
/// canonical `Message<Block>`.
fn machine(bytes: &[u8]) {
    let f = fixture();
    let validators = f.at_genesis.validators();
    let key = f.consortium.keys[MACHINE_KEY].clone();
    let mut machine = Machine::new(machine_config(), key);
    let mut now = Timestamp(quorate_ledger::testing::T0 + 10_000);
    let mut decided = false;
    let effects = machine.apply(
        Input::StartHeight {
            height: 1,
            validators: validators.clone(),
        },
        now,
    );
    check_effects(&effects, &mut decided);
    // Whether the driver finds a proposal's time close to its clock; a
    // frame 0xfe flips it.
    let mut timely = true;
    for frame in frames(bytes).take(64) {
        now = Timestamp(now.0 + 100);
        let input = match frame {
            [0xfe, ..] => {
                timely = !timely;
                continue;
            }
            [0xff, kind, round, ..] => Input::TimeoutElapsed {
                kind: match kind % 4 {
                    0 => TimeoutKind::Propose,
                    1 => TimeoutKind::Prevote,
                    2 => TimeoutKind::Precommit,
                    _ => TimeoutKind::Rebroadcast,
                },
                height: 1,
                round: u32::from(*round % 4),
            },
            _ => match codec::decode::<Message<Block>>(frame) {
                Ok(Message::Proposal(proposal)) => {
                    let valid = f.at_genesis.check_block(&proposal.value).is_ok();
                    Input::Proposal {
                        proposal,
                        valid,
                        timely,
                    }
                }
                Ok(Message::Vote(vote)) => Input::Vote(vote),
                Err(_) => continue,
            },
        };
        let effects = machine.apply(input, now);
        check_effects(&effects, &mut decided);
    }
}

fn check_effects(effects: &[Effect<Block>], decided: &mut bool) {
    let f = fixture();
    let validators = f.at_genesis.validators();
    for effect in effects {
        match effect {
            Effect::Decide {
                height,
                value,
                certificate,
            } => {
                assert_eq!(*height, 1);
                assert!(!*decided, "decided twice at one height");
                *decided = true;
                assert_eq!(certificate.value_id, value.id());
                assert_eq!(certificate.height, 1);
                verify_certificate(CHAIN, &validators, certificate)
                    .expect("a decision's certificate verifies");
                f.at_genesis
                    .check_block(value)
                    .expect("only a valid value is decided");
            }
            Effect::Broadcast(Message::Vote(vote)) => {
                assert!(vote.verify(CHAIN, &validators), "our own vote verifies");
            }
            _ => {}
        }
    }
}
