//! Blocks, their headers and hashes, and committed (certified) blocks.

use quorate_contracts::{MemberId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::codec::{self, EncodeError};
use crate::consensus::QuorumCertificate;
use crate::entry::{Entry, EntryId};
use crate::hash::{Hash, hash_tagged, tag};
use crate::merkle;

/// Most entries in one block: bounds the work of checking a block and the
/// memory a peer's block can claim.
pub const ENTRIES_PER_BLOCK_MAX: usize = 4096;

/// What a block's hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The consortium's chain id (from genesis).
    pub chain_id: String,
    /// 0 for genesis, then +1 per block.
    pub height: u64,
    /// Hash of the previous block's header; all zero for genesis.
    pub prev_hash: Hash,
    /// The epoch (member set) that agreed this block: the state's epoch
    /// before the block is applied.
    pub epoch: u64,
    /// The proposer's clock when proposing; strictly increasing.
    pub time: Timestamp,
    /// The member that proposed the block.
    pub proposer: MemberId,
    /// Merkle root of the entries' leaf hashes ([`Entry::leaf_hash`]:
    /// proposal and endorsements), in block order.
    pub tx_root: Hash,
    /// Hash of the state after applying this block.
    pub state_root: Hash,
}

/// A header and its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The entries, applied in order.
    pub entries: Vec<Entry>,
}

/// A block with the quorum certificate that makes it final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedBlock {
    /// The block.
    pub block: Block,
    /// Precommit signatures of the block hash by a quorum of its epoch.
    pub certificate: QuorumCertificate,
}

impl BlockHeader {
    /// `blake3-derive-key("quorate 2026 block header v1", canonical header)`.
    pub fn hash(&self) -> Result<Hash, EncodeError> {
        Ok(hash_tagged(tag::BLOCK_HEADER, &codec::encode(self)?))
    }
}

impl Block {
    /// The block hash (its header's).
    pub fn hash(&self) -> Result<Hash, EncodeError> {
        self.header.hash()
    }

    /// The ids of the entries, in order.
    pub fn entry_ids(&self) -> Result<Vec<EntryId>, EncodeError> {
        self.entries.iter().map(Entry::id).collect()
    }

    /// The leaf hashes of the entries ([`Entry::leaf_hash`]), in order:
    /// the leaves of `tx_root` and of entry inclusion proofs.
    pub fn leaf_hashes(&self) -> Result<Vec<Hash>, EncodeError> {
        self.entries.iter().map(Entry::leaf_hash).collect()
    }
}

/// The Merkle root over entry leaf hashes ([`Block::leaf_hashes`]) that a
/// header's `tx_root` must equal.
pub fn tx_root(leaves: &[Hash]) -> Hash {
    merkle::root(leaves)
}

impl crate::consensus::ConsensusValue for Block {
    /// The block hash. A block that cannot be encoded (over the limits) has
    /// the all-zero id, which no valid block has, so nothing can decide it.
    fn id(&self) -> [u8; 32] {
        self.hash().map(|h| h.0).unwrap_or([0; 32])
    }
}
