//! Quorate's replicated, append-only, signed ledger.
//!
//! This crate owns the ledger's bytes and their meaning: canonical CBOR
//! encoding, blake3 hashing and Merkle roots, entries, blocks and quorum
//! certificates, the chain state they derive (through the rules in
//! `quorate-contracts`), verification of a chain from genesis, inclusion
//! proofs, persistence in the embedded store (redb), and the agreement
//! algorithm (Tendermint) as a pure state machine.
//!
//! It must not depend on an async runtime or the network, and never reads
//! the clock: time comes in as an argument, effects go out as values that
//! the node turns into sends, disk writes and timers.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod block;
pub mod chain;
pub mod codec;
pub mod consensus;
pub mod entry;
pub mod export;
pub mod genesis;
pub mod hash;
#[allow(clippy::module_inception)]
pub mod ledger;
pub mod merkle;
pub mod proof;
pub mod reader;
pub mod smt;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod verified;
