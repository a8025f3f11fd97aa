//! What nodes say to each other, on top of the network's bytes.
//!
//! Every message is one canonical CBOR item (the ledger's codec), so a
//! peer's bytes are decoded strictly, with size and depth limits, before
//! anything looks at them.

use quorate_ledger::block::{Block, CommittedBlock};
use quorate_ledger::codec::{self, DecodeError, EncodeError};
use quorate_ledger::consensus::{SignedProposal, SignedVote};
use quorate_ledger::entry::{Endorsement, Entry, EntryId};
use quorate_ledger::hash::Hash;
use serde::{Deserialize, Serialize};

/// Most blocks one sync response carries (it is also bounded in bytes).
pub const SYNC_BLOCKS_MAX: u64 = 256;

/// Gossip on the consensus topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConsensusMessage {
    /// A proposer's block for a height and round.
    Proposal(SignedProposal<Block>),
    /// A prevote or precommit.
    Vote(SignedVote),
}

/// Gossip on the mempool topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MempoolMessage {
    /// A new proposal (with the endorsements its sender has). Boxed: it is
    /// far larger than an endorsement; serde encodes the box transparently.
    Entry(Box<Entry>),
    /// One member's endorsement of a known proposal.
    Endorsement {
        /// The proposal.
        entry: EntryId,
        /// The endorsement.
        endorsement: Endorsement,
    },
}

/// A request to a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Where is your chain?
    Status,
    /// Committed blocks `from..=to` (the answer may stop early).
    Blocks {
        /// First height.
        from: u64,
        /// Last height wanted.
        to: u64,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// The peer's tip.
    Status {
        /// Genesis hash: peers on another chain are ignored.
        genesis: Hash,
        /// Tip height.
        height: u64,
        /// Tip hash.
        hash: Hash,
    },
    /// Blocks, in height order from the requested `from`.
    Blocks(Vec<CommittedBlock>),
    /// The peer will not answer (not a member, unknown request, overloaded).
    Refused(String),
}

/// Encodes any protocol message.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, EncodeError> {
    codec::encode(message)
}

/// Decodes any protocol message strictly.
pub fn decode<T: serde::de::DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    codec::decode(bytes)
}
