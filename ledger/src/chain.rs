//! The chain's state and the rules for extending it: applying a committed
//! block, checking a proposed one, and verifying a whole chain from genesis.
//!
//! Applying is deterministic and all-or-nothing: every node that applies the
//! same blocks holds the same state and the same `state_root`, and a block
//! that fails any check changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use quorate_contracts::{
    self as contracts, ApplyContext, Body, Changes, MemberId, State, Timestamp,
};
use quorate_did::Did;
use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockHeader, CommittedBlock, ENTRIES_PER_BLOCK_MAX, tx_root};
use crate::codec::{self, EncodeError};
use crate::consensus::{Validators, verify_certificate};
use crate::entry::{ENDORSEMENTS_MAX, Entry, EntryId, Proposal, verify_endorsement};
use crate::hash::{Hash, hash_tagged};
use crate::smt::{self, KeyHash, MemoryTree, TreeReader, TreeUpdate, Version};

/// The proposer field of the genesis entry: before genesis there are no
/// member ids, so the consortium as a whole proposes it.
pub const GENESIS_PROPOSER: MemberId = MemberId([0; 32]);

/// How far a proposal's `created_at` may lie after its block's time (clock
/// skew between members).
pub const PROPOSAL_CLOCK_SKEW_MS: u64 = 30_000;

/// How far a proposed block's time may lie ahead of a validator's own
/// clock for the validator to prevote it ([`check_timely`]).
/// With block times strictly increasing, this keeps the chain's clock
/// within this bound of the honest members' clocks: a member whose clock
/// runs ahead cannot get its blocks voted for, one whose clock runs behind
/// can only add a millisecond to the last block's time.
pub const BLOCK_TIME_AHEAD_MAX_MS: u64 = 30_000;

/// Whether a proposed block is *timely* for a validator whose clock reads
/// `now`: its time is at most [`BLOCK_TIME_AHEAD_MAX_MS`] after `now`.
/// A validator prevotes a freshly proposed block only if it is valid
/// ([`ChainState::check_block`]) and timely; locking, re-proposals and
/// decisions need validity alone (see `consensus::Input::Proposal`), and
/// replaying a committed chain ([`ChainState::apply`], [`verify_chain`])
/// reads no clock: a certificate shows that a quorum found the block
/// timely. A block refused for its time becomes timely as the clock
/// advances; no rule refuses a block for being *behind* the clock, which
/// could make a value honest validators locked on unvotable.
pub fn check_timely(block: &Block, now: Timestamp) -> Result<(), BlockError> {
    let time = block.header.time;
    if time.0 > now.0.saturating_add(BLOCK_TIME_AHEAD_MAX_MS) {
        return Err(BlockError::TimeAhead {
            now: now.0,
            found: time.0,
        });
    }
    Ok(())
}

/// Domain tag for deriving genesis members' ids from the genesis entry.
const GENESIS_MEMBER_TAG: &str = "quorate 2026 genesis member v1";

/// Where the chain stands: the latest committed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: Hash,
    /// Its time.
    pub time: Timestamp,
}

/// The state derived from a chain: the consortium state the contracts act
/// on, the tip, the state tree's latest version and root, and the ids of
/// recent entries (to refuse replays).
///
/// The state tree's nodes are not held here: every operation that needs
/// them takes a [`TreeReader`] (the store's, or a [`MemoryTree`]), and what
/// a block changes comes back as an [`Adopted`] for the caller to persist.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainState {
    genesis_hash: Hash,
    tip: Tip,
    state: State,
    /// The last version written to the state tree (the height of the last
    /// block that changed the state; a block that changes nothing writes
    /// no version).
    tree_version: Version,
    /// The state tree's root at `tree_version`: the tip's `state_root`.
    state_root: Hash,
    /// Entry ids committed within the proposal time-to-live, with the time
    /// of their block. Older entries cannot be replayed because a proposal
    /// older than the TTL is refused, so this stays bounded.
    recent_entries: imbl::OrdMap<EntryId, Timestamp>,
    /// The same entries ordered by time, so expiring them costs what
    /// expires. Both persistent: cloning a chain state is O(1) however
    /// many entries one TTL holds.
    recent_by_time: imbl::OrdSet<(Timestamp, EntryId)>,
}

/// What a chain state is made of, besides its consortium state: the rows a
/// store keeps to open the chain again without replaying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainMeta {
    /// The genesis block's hash.
    pub genesis_hash: Hash,
    /// The tip.
    pub tip: Tip,
    /// The state tree's last version.
    pub tree_version: Version,
    /// The tip's state root.
    pub state_root: Hash,
    /// The state's grants counted: every one, and the active ones (the
    /// rows are read on demand, so nobody counts them at start).
    pub grants: u64,
    /// See `grants`.
    pub active_grants: u64,
}

/// A block built by [`ChainState::build_block_checked`]: the block, its
/// check, and the candidates left out with why.
pub type BuiltBlock = (Block, CheckedBlock, Vec<(EntryId, BlockError)>);

/// A block checked against the chain, not yet adopted: the state it leads
/// to and exactly what it changed.
#[derive(Debug, Clone)]
pub struct CheckedBlock {
    /// The hash of the block checked, and of the tip it was checked on.
    block_hash: Hash,
    base: Hash,
    next: State,
    changes: Changes,
    tree: Option<TreeUpdate>,
    state_root: Hash,
    ids: Vec<EntryId>,
}

impl CheckedBlock {
    /// The state after the block.
    pub fn state(&self) -> &State {
        &self.next
    }
}

/// What adopting a block changed, for a store to write in the block's own
/// transaction: the rows (read their new values from the chain's state),
/// the state tree's new and stale nodes, and the replay window's entries.
#[derive(Debug, Clone, Default)]
pub struct Adopted {
    /// The state's changed rows.
    pub changes: Changes,
    /// The state tree's new version, if the block changed the state.
    pub tree: Option<TreeUpdate>,
    /// Entry ids that joined the replay window, with their block's time.
    pub recent_added: Vec<(EntryId, Timestamp)>,
    /// Entry ids that left it.
    pub recent_removed: Vec<EntryId>,
}

/// The namespaces and keys of the state tree's rows (`docs/ledger-format.md`
/// section 4): one leaf for the consortium row, one per member, one per
/// grant, each holding the row's canonical CBOR.
pub mod rows {
    use quorate_contracts::{GrantId, MemberId};

    use crate::smt::{KeyHash, key_hash};

    /// Namespace of the consortium row (chain id, epoch, policy).
    pub const CONSORTIUM: &[u8] = b"consortium";
    /// Namespace of member rows, keyed by member id.
    pub const MEMBER: &[u8] = b"member";
    /// Namespace of grant rows, keyed by grant id.
    pub const GRANT: &[u8] = b"grant";

    /// The consortium row's key (an empty key in its namespace).
    pub fn consortium_key() -> KeyHash {
        key_hash(CONSORTIUM, b"")
    }

    /// A member row's key.
    pub fn member_key(id: &MemberId) -> KeyHash {
        key_hash(MEMBER, &id.0)
    }

    /// A grant row's key.
    pub fn grant_key(id: &GrantId) -> KeyHash {
        key_hash(GRANT, &id.0)
    }
}

/// A change to the state tree: a row's key and its new canonical CBOR, or
/// `None` for a row that is gone.
pub type TreeChange = (KeyHash, Option<Vec<u8>>);

/// The state tree changes that `changes` make to `state` (the state after
/// them).
pub fn tree_changes(state: &State, changes: &Changes) -> Result<Vec<TreeChange>, BlockError> {
    let mut out = Vec::with_capacity(changes.members.len() + changes.grants.len() + 1);
    if changes.consortium {
        out.push((
            rows::consortium_key(),
            Some(codec::encode(&state.consortium()).map_err(encode_err)?),
        ));
    }
    for id in &changes.members {
        let value = state.members.get(id).map(codec::encode).transpose();
        out.push((rows::member_key(id), value.map_err(encode_err)?));
    }
    for id in &changes.grants {
        // Changed grants are in the state's memory: no store read.
        let record = state.grant(id).map_err(unreadable)?;
        let value = record.as_ref().map(codec::encode).transpose();
        out.push((rows::grant_key(id), value.map_err(encode_err)?));
    }
    Ok(out)
}

fn unreadable(e: contracts::RowsError) -> BlockError {
    BlockError::Unreadable(e)
}

/// Every row of `state` as a change (genesis, or a from-scratch root).
fn all_rows(state: &State) -> Result<Changes, BlockError> {
    Ok(Changes {
        members: state.members.keys().copied().collect(),
        grants: state.grant_ids().map_err(unreadable)?.into_iter().collect(),
        consortium: true,
    })
}

/// A reader of no nodes: the base of the first version.
struct NoTree;

impl TreeReader for NoTree {
    fn node(&self, _key: &smt::NodeKey) -> Result<Option<smt::Node>, smt::ReadError> {
        Ok(None)
    }
}

/// Why a block cannot extend the chain. Each variant names the check that
/// failed; with [`VerifyError`] it also names the height.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// Not the block's fault: this node could not read its state's rows.
    #[error(transparent)]
    Unreadable(contracts::RowsError),
    /// The header's chain id is not this chain's.
    #[error("chain id {found:?} is not this chain's {expected:?}")]
    ChainId {
        /// This chain's id.
        expected: String,
        /// The block's.
        found: String,
    },
    /// The height is not the tip's plus one.
    #[error("height {found} does not follow the tip {tip}")]
    Height {
        /// The tip's height.
        tip: u64,
        /// The block's.
        found: u64,
    },
    /// `prev_hash` is not the tip's hash.
    #[error("prev_hash {found} is not the tip's hash {expected}")]
    PrevHash {
        /// The tip's hash.
        expected: Hash,
        /// The block's prev_hash.
        found: Hash,
    },
    /// The header's epoch is not the state's.
    #[error("epoch {found} is not the current epoch {expected}")]
    Epoch {
        /// The state's epoch.
        expected: u64,
        /// The block's.
        found: u64,
    },
    /// The time does not increase.
    #[error("time {found} is not after the previous block's {previous}")]
    Time {
        /// The tip's time (ms).
        previous: u64,
        /// The block's (ms).
        found: u64,
    },
    /// The time is more than [`BLOCK_TIME_AHEAD_MAX_MS`] after the
    /// validator's clock (only a proposal is judged by a clock).
    #[error(
        "time {found} is {} ms ahead of this validator's clock ({now}); at most {BLOCK_TIME_AHEAD_MAX_MS} ms",
        found.saturating_sub(*now)
    )]
    TimeAhead {
        /// The validator's clock (ms).
        now: u64,
        /// The block's (ms).
        found: u64,
    },
    /// The proposer is not a member.
    #[error("proposer {0} is not a member")]
    Proposer(MemberId),
    /// More entries than a block may hold.
    #[error("{0} entries; a block holds at most {ENTRIES_PER_BLOCK_MAX}")]
    TooManyEntries(usize),
    /// Two membership changes in one block.
    #[error("entry {index}: at most one membership change per block")]
    SecondMembershipChange {
        /// The entry's index in the block.
        index: usize,
    },
    /// An entry is invalid.
    #[error("entry {index} ({id}): {reason}")]
    Entry {
        /// The entry's index in the block.
        index: usize,
        /// Its id.
        id: Hash,
        /// What is wrong with it.
        reason: EntryError,
    },
    /// `tx_root` does not match the entries.
    #[error("tx_root {found} does not match the entries ({expected})")]
    TxRoot {
        /// Computed.
        expected: Hash,
        /// In the header.
        found: Hash,
    },
    /// `state_root` does not match the state after applying the entries.
    #[error("state_root {found} does not match the state after the block ({expected})")]
    StateRoot {
        /// Computed.
        expected: Hash,
        /// In the header.
        found: Hash,
    },
    /// The quorum certificate does not certify this block.
    #[error("certificate: {0}")]
    Certificate(String),
    /// There is no genesis block.
    #[error("the chain is empty: no genesis block")]
    EmptyChain,
    /// A value could not be encoded (a bug, or a value over the limits).
    #[error("encoding: {0}")]
    Encode(String),
    /// A check was made for another block, or on another tip.
    #[error("the block's check was made for another block or tip")]
    StaleCheck,
    /// The state tree could not be read or is corrupt (the store's fault,
    /// not the block's).
    #[error("state tree: {0}")]
    StateTree(String),
}

/// Why an entry is invalid in its block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// Proposed for another chain.
    #[error("proposal is for chain {0:?}")]
    ChainId(String),
    /// Proposed for an epoch after the block's (no member could have
    /// known that member set when it signed).
    #[error("proposal is for epoch {found}, after the block's epoch {expected}")]
    Epoch {
        /// The block's epoch.
        expected: u64,
        /// The proposal's.
        found: u64,
    },
    /// Already committed (a replay), or twice in this block.
    #[error("entry already committed")]
    Duplicate,
    /// Older than the proposal time-to-live, or from the future.
    #[error("created at {created_at}, outside the window allowed at block time {block_time}")]
    Stale {
        /// The proposal's `created_at` (ms).
        created_at: u64,
        /// The block's time (ms).
        block_time: u64,
    },
    /// A Genesis body after genesis.
    #[error("genesis after height 0")]
    Genesis,
    /// More endorsements than members can give.
    #[error("{0} endorsements; at most {ENDORSEMENTS_MAX}")]
    TooManyEndorsements(usize),
    /// Endorsements not sorted by member, or one member twice.
    #[error("endorsements are not sorted by member or repeat a member")]
    EndorsementOrder,
    /// An endorser is not a current member.
    #[error("endorser {0} is not a member")]
    NotAMember(MemberId),
    /// An endorsement signature does not verify under the member's key.
    #[error("endorsement by {0} does not verify")]
    BadSignature(MemberId),
    /// The proposer did not endorse its own proposal.
    #[error("the proposer's own endorsement is missing")]
    MissingProposerEndorsement,
    /// The contracts refuse it.
    #[error("{0}")]
    Rule(#[from] contracts::Violation),
}

/// A chain that failed verification: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("height {height}: {reason}")]
pub struct VerifyError {
    /// The height of the first block that failed.
    pub height: u64,
    /// The check that failed.
    pub reason: BlockError,
}

fn encode_err(e: EncodeError) -> BlockError {
    BlockError::Encode(e.to_string())
}

/// The state root of `state` computed from scratch: every row put into an
/// empty state tree. O(n); a node never needs it past genesis (a block's
/// root is computed from its changes), but tests and tools compare with it.
pub fn state_root(state: &State) -> Result<Hash, BlockError> {
    let changes = tree_changes(state, &all_rows(state)?)?;
    Ok(smt::apply(&NoTree, None, 0, &changes)
        .map_err(tree_err)?
        .root)
}

fn tree_err(e: smt::ApplyError) -> BlockError {
    BlockError::StateTree(e.to_string())
}

/// The member ids genesis assigns, in the order of `Genesis::members`.
pub fn genesis_member_ids(genesis_entry: &EntryId, count: usize) -> Vec<MemberId> {
    (0..count as u32)
        .map(|index| {
            let mut bytes = [0u8; 36];
            bytes[..32].copy_from_slice(&genesis_entry.0);
            bytes[32..].copy_from_slice(&index.to_be_bytes());
            MemberId(hash_tagged(GENESIS_MEMBER_TAG, &bytes).0)
        })
        .collect()
}

/// The validator set of a state's epoch: its members' current keys, ordered
/// by member id. Certificates name validators by index in this order.
pub fn validators_of(state: &State) -> Validators {
    Validators::new(state.members.values().map(|m| m.did).collect())
}

impl ChainState {
    /// The state after the genesis block, after checking it: the Genesis
    /// body, endorsed by every initial member, and certified by a quorum.
    pub fn from_genesis(genesis: &CommittedBlock) -> Result<Self, VerifyError> {
        Ok(Self::adopt_genesis(genesis)?.0)
    }

    /// [`from_genesis`](Self::from_genesis), with what a store must write.
    pub fn adopt_genesis(genesis: &CommittedBlock) -> Result<(Self, Adopted), VerifyError> {
        let at = |reason| VerifyError { height: 0, reason };
        let block = &genesis.block;
        let header = &block.header;
        if header.height != 0 {
            return Err(at(BlockError::Height {
                tip: 0,
                found: header.height,
            }));
        }
        let [entry] = block.entries.as_slice() else {
            return Err(at(BlockError::TooManyEntries(block.entries.len())));
        };
        let Body::Genesis(body) = &entry.proposal.body else {
            return Err(at(BlockError::Entry {
                index: 0,
                id: entry.id().map_err(|e| at(encode_err(e)))?,
                reason: EntryError::Genesis,
            }));
        };
        let id = entry.id().map_err(|e| at(encode_err(e)))?;
        let entry_err = |reason| {
            at(BlockError::Entry {
                index: 0,
                id,
                reason,
            })
        };
        let ids = genesis_member_ids(&id, body.members.len());
        let state = State::genesis(body, &ids).map_err(|v| entry_err(EntryError::Rule(v)))?;
        if header.chain_id != body.chain_id || entry.proposal.chain_id != body.chain_id {
            return Err(at(BlockError::ChainId {
                expected: body.chain_id.clone(),
                found: header.chain_id.clone(),
            }));
        }
        if entry.proposal.proposer != GENESIS_PROPOSER || entry.proposal.epoch != 0 {
            return Err(entry_err(EntryError::MissingProposerEndorsement));
        }
        // Every initial member endorses genesis: joining is each one's choice.
        let keys: BTreeMap<MemberId, Did> = ids
            .iter()
            .zip(&body.members)
            .map(|(id, m)| (*id, m.did))
            .collect();
        check_endorsement_signatures(entry, &id, &keys).map_err(entry_err)?;
        if entry.endorsements.len() != keys.len() {
            return Err(entry_err(EntryError::MissingProposerEndorsement));
        }
        let expected_tx = tx_root(&[entry.leaf_hash().map_err(|e| at(encode_err(e)))?]);
        if header.tx_root != expected_tx {
            return Err(at(BlockError::TxRoot {
                expected: expected_tx,
                found: header.tx_root,
            }));
        }
        let all = all_rows(&state).map_err(at)?;
        let rows = tree_changes(&state, &all).map_err(at)?;
        let tree = smt::apply(&NoTree, None, 0, &rows).map_err(|e| at(tree_err(e)))?;
        let root = tree.root;
        if header.state_root != root {
            return Err(at(BlockError::StateRoot {
                expected: root,
                found: header.state_root,
            }));
        }
        if header.prev_hash != Hash([0; 32]) || header.epoch != 0 {
            return Err(at(BlockError::PrevHash {
                expected: Hash([0; 32]),
                found: header.prev_hash,
            }));
        }
        let hash = block.hash().map_err(|e| at(encode_err(e)))?;
        check_certificate(
            &body.chain_id,
            &validators_of(&state),
            header,
            &hash,
            genesis,
        )
        .map_err(at)?;
        let mut recent_entries = imbl::OrdMap::new();
        recent_entries.insert(id, header.time);
        let recent_by_time = imbl::OrdSet::unit((header.time, id));
        let adopted = Adopted {
            changes: all,
            tree: Some(tree),
            recent_added: vec![(id, header.time)],
            recent_removed: Vec::new(),
        };
        let chain = Self {
            genesis_hash: hash,
            tip: Tip {
                height: 0,
                hash,
                time: header.time,
            },
            state,
            tree_version: 0,
            state_root: root,
            recent_entries,
            recent_by_time,
        };
        Ok((chain, adopted))
    }

    /// A chain state from what a store holds: its meta row, its state
    /// rows and its replay window. The caller vouches that they belong
    /// together (they were written in one transaction).
    pub fn from_stored(
        meta: ChainMeta,
        state: State,
        recent_entries: impl IntoIterator<Item = (EntryId, Timestamp)>,
    ) -> Self {
        let recent_entries: imbl::OrdMap<EntryId, Timestamp> = recent_entries.into_iter().collect();
        Self {
            genesis_hash: meta.genesis_hash,
            tip: meta.tip,
            state,
            tree_version: meta.tree_version,
            state_root: meta.state_root,
            recent_by_time: recent_entries.iter().map(|(id, at)| (*at, *id)).collect(),
            recent_entries,
        }
    }

    /// The meta row a store keeps for this chain state.
    pub fn meta(&self) -> ChainMeta {
        ChainMeta {
            genesis_hash: self.genesis_hash,
            tip: self.tip,
            tree_version: self.tree_version,
            state_root: self.state_root,
            grants: self.state.grant_counts().total,
            active_grants: self.state.grant_counts().active,
        }
    }

    /// Takes `base` as holding every grant of the state (a store wrote
    /// them): see [`State::rebase_grants`].
    pub fn rebase_grants(&mut self, base: std::sync::Arc<dyn contracts::GrantRows>) {
        self.state.rebase_grants(base);
    }

    /// The tip's state root.
    pub fn state_root(&self) -> Hash {
        self.state_root
    }

    /// The state tree's latest version (see [`ChainMeta::tree_version`]).
    pub fn tree_version(&self) -> Version {
        self.tree_version
    }

    /// Whether entry `id` was committed within the replay window (the
    /// proposal TTL plus clock skew): a proposal older than that is refused
    /// by its age, so together they refuse every replay.
    pub fn is_recently_committed(&self, id: &EntryId) -> bool {
        self.recent_entries.contains_key(id)
    }

    /// The consortium state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The latest committed block.
    pub fn tip(&self) -> Tip {
        self.tip
    }

    /// The genesis block's hash: the chain's identity.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.state.chain_id
    }

    /// The validators that agree the next block.
    pub fn validators(&self) -> Validators {
        validators_of(&self.state)
    }

    /// Checks that `block` may follow the tip, and returns the state it
    /// leads to with what it changed (not yet adopted). Does not check a
    /// certificate: this is the check a validator runs on a proposal before
    /// voting for it. Costs the block's entries and O(changes · log n) tree
    /// nodes read from `tree`, whatever the size of the state.
    pub fn check_block(
        &self,
        block: &Block,
        tree: &impl TreeReader,
    ) -> Result<CheckedBlock, BlockError> {
        let header = &block.header;
        if header.chain_id != self.state.chain_id {
            return Err(BlockError::ChainId {
                expected: self.state.chain_id.clone(),
                found: header.chain_id.clone(),
            });
        }
        if header.height != self.tip.height + 1 {
            return Err(BlockError::Height {
                tip: self.tip.height,
                found: header.height,
            });
        }
        if header.prev_hash != self.tip.hash {
            return Err(BlockError::PrevHash {
                expected: self.tip.hash,
                found: header.prev_hash,
            });
        }
        if header.epoch != self.state.epoch {
            return Err(BlockError::Epoch {
                expected: self.state.epoch,
                found: header.epoch,
            });
        }
        if header.time <= self.tip.time {
            return Err(BlockError::Time {
                previous: self.tip.time.0,
                found: header.time.0,
            });
        }
        if !self.state.members.contains_key(&header.proposer) {
            return Err(BlockError::Proposer(header.proposer));
        }
        if block.entries.len() > ENTRIES_PER_BLOCK_MAX {
            return Err(BlockError::TooManyEntries(block.entries.len()));
        }

        let mut builder = self.block_builder(header.height, header.time);
        for (index, entry) in block.entries.iter().enumerate() {
            builder.push(index, entry)?;
        }
        let (next, ids, changes) = (builder.next, builder.ids, builder.changes);
        let expected_tx = tx_root(&builder.leaves);
        if header.tx_root != expected_tx {
            return Err(BlockError::TxRoot {
                expected: expected_tx,
                found: header.tx_root,
            });
        }
        let (tree, root) = self.tree_update(tree, header.height, &next, &changes)?;
        if header.state_root != root {
            return Err(BlockError::StateRoot {
                expected: root,
                found: header.state_root,
            });
        }
        Ok(CheckedBlock {
            block_hash: block.hash().map_err(encode_err)?,
            base: self.tip.hash,
            next,
            changes,
            tree,
            state_root: root,
            ids,
        })
    }

    /// The state tree's next version for `changes` (none if nothing
    /// changed: the root stays), and the root after them.
    fn tree_update(
        &self,
        tree: &impl TreeReader,
        height: u64,
        next: &State,
        changes: &Changes,
    ) -> Result<(Option<TreeUpdate>, Hash), BlockError> {
        if changes.is_empty() {
            return Ok((None, self.state_root));
        }
        let rows = tree_changes(next, changes)?;
        let update = smt::apply(tree, Some(self.tree_version), height, &rows).map_err(tree_err)?;
        let root = update.root;
        Ok((Some(update), root))
    }

    /// Whether `proposal` may go into a block whose time is `time`: created
    /// at most [`PROPOSAL_CLOCK_SKEW_MS`] after it, no longer before it
    /// than the policy's proposal time-to-live, and not before the last
    /// raise of that TTL (`State::proposals_since`).
    pub fn is_fresh(&self, proposal: &Proposal, time: Timestamp) -> bool {
        proposal.created_at.0 <= time.0.saturating_add(PROPOSAL_CLOCK_SKEW_MS)
            && time.saturating_ms_since(proposal.created_at) <= self.state.policy.proposal_ttl_ms
            && proposal.created_at >= self.state.proposals_since
    }

    /// The time a proposer puts in the next block: its clock, or one
    /// millisecond after the tip's time if its clock is not past that
    /// (block times strictly increase).
    pub fn next_block_time(&self, now: Timestamp) -> Timestamp {
        Timestamp(now.0.max(self.tip.time.0.saturating_add(1)))
    }

    /// Builds the next block from `candidates` (in order), skipping each
    /// entry that is invalid at that point, and reports what was skipped
    /// and why. This is how a proposer fills a block: the result passes
    /// [`check_block`](Self::check_block).
    pub fn build_block(
        &self,
        proposer: MemberId,
        time: Timestamp,
        candidates: impl IntoIterator<Item = Entry>,
        tree: &impl TreeReader,
    ) -> Result<(Block, Vec<(EntryId, BlockError)>), BlockError> {
        let (block, _, skipped) = self.build_block_checked(proposer, time, candidates, tree)?;
        Ok((block, skipped))
    }

    /// [`build_block`](Self::build_block), with the block's check: what
    /// [`apply_checked`](Self::apply_checked) adopts once it is certified,
    /// so the proposer's own block is never checked twice.
    pub fn build_block_checked(
        &self,
        proposer: MemberId,
        time: Timestamp,
        candidates: impl IntoIterator<Item = Entry>,
        tree: &impl TreeReader,
    ) -> Result<BuiltBlock, BlockError> {
        let height = self.tip.height + 1;
        let mut builder = self.block_builder(height, time);
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        for entry in candidates {
            if entries.len() == ENTRIES_PER_BLOCK_MAX {
                break;
            }
            match builder.push(entries.len(), &entry) {
                Ok(()) => entries.push(entry),
                Err(e @ BlockError::Encode(_)) => return Err(e),
                Err(reason) => skipped.push((entry.id().map_err(encode_err)?, reason)),
            }
        }
        let (tree, state_root) = self.tree_update(tree, height, &builder.next, &builder.changes)?;
        let header = BlockHeader {
            chain_id: self.state.chain_id.clone(),
            height,
            prev_hash: self.tip.hash,
            epoch: self.state.epoch,
            time,
            proposer,
            tx_root: tx_root(&builder.leaves),
            state_root,
        };
        let block = Block { header, entries };
        let checked = CheckedBlock {
            block_hash: block.hash().map_err(encode_err)?,
            base: self.tip.hash,
            next: builder.next,
            changes: builder.changes,
            tree,
            state_root,
            ids: builder.ids,
        };
        Ok((block, checked, skipped))
    }

    fn block_builder(&self, height: u64, time: Timestamp) -> BlockBuilder<'_> {
        BlockBuilder {
            chain: self,
            // Endorsements are checked against the keys of the block's
            // epoch: membership changes take effect from the next block.
            keys: self
                .state
                .members
                .iter()
                .map(|(id, m)| (*id, m.did))
                .collect(),
            // O(1): the state's maps are persistent.
            next: self.state.clone(),
            changes: Changes::default(),
            ids: Vec::new(),
            leaves: Vec::new(),
            membership_changed: false,
            height,
            time,
        }
    }

    /// Applies a committed block: [`check_block`](Self::check_block) plus
    /// its certificate against the current epoch's validators. On error the
    /// chain state is unchanged.
    pub fn apply(
        &mut self,
        committed: &CommittedBlock,
        tree: &impl TreeReader,
    ) -> Result<Adopted, VerifyError> {
        // Name the position in the chain, not the height the block claims.
        let position = self.tip.height + 1;
        let checked = self
            .check_block(&committed.block, tree)
            .map_err(|reason| VerifyError {
                height: position,
                reason,
            })?;
        self.apply_checked(committed, checked)
    }

    /// Applies a committed block that was already checked against this tip
    /// ([`check_block`](Self::check_block) or
    /// [`build_block_checked`](Self::build_block_checked)): verifies its
    /// certificate only. A check made for another block or another tip is
    /// refused, so nothing unchecked is ever adopted.
    pub fn apply_checked(
        &mut self,
        committed: &CommittedBlock,
        checked: CheckedBlock,
    ) -> Result<Adopted, VerifyError> {
        let header = &committed.block.header;
        let position = self.tip.height + 1;
        let at = |reason| VerifyError {
            height: position,
            reason,
        };
        let hash = committed.block.hash().map_err(|e| at(encode_err(e)))?;
        if checked.block_hash != hash || checked.base != self.tip.hash {
            return Err(at(BlockError::StaleCheck));
        }
        check_certificate(
            &self.state.chain_id,
            &self.validators(),
            header,
            &hash,
            committed,
        )
        .map_err(at)?;
        Ok(self.adopt(header, hash, checked))
    }

    /// Moves to the state `check_block` returned for the block of `header`.
    fn adopt(&mut self, header: &BlockHeader, hash: Hash, checked: CheckedBlock) -> Adopted {
        let time = header.time;
        let recent_added: Vec<(EntryId, Timestamp)> =
            checked.ids.iter().map(|id| (*id, time)).collect();
        for (id, at) in &recent_added {
            self.recent_entries.insert(*id, *at);
            self.recent_by_time.insert((*at, *id));
        }
        let ttl = checked.next.policy.proposal_ttl_ms;
        // A proposal older than the TTL (plus skew) can never be committed
        // again, so its id need not be remembered. Oldest first: the cost
        // is what expires, not the window.
        let horizon = ttl.saturating_add(PROPOSAL_CLOCK_SKEW_MS);
        let mut recent_removed = Vec::new();
        while let Some(&(at, id)) = self.recent_by_time.get_min() {
            if time.saturating_ms_since(at) <= horizon {
                break;
            }
            self.recent_by_time.remove(&(at, id));
            self.recent_entries.remove(&id);
            recent_removed.push(id);
        }
        self.state = checked.next;
        if let Some(tree) = &checked.tree {
            self.tree_version = tree.version;
        }
        self.state_root = checked.state_root;
        self.tip = Tip {
            height: header.height,
            hash,
            time,
        };
        Adopted {
            changes: checked.changes,
            tree: checked.tree,
            recent_added,
            recent_removed,
        }
    }
}

/// Applies entries one at a time on top of a chain state, as a block would.
struct BlockBuilder<'a> {
    chain: &'a ChainState,
    keys: BTreeMap<MemberId, Did>,
    next: State,
    changes: Changes,
    ids: Vec<EntryId>,
    /// `tx_root`'s leaves, one per entry in `ids`.
    leaves: Vec<Hash>,
    membership_changed: bool,
    height: u64,
    time: Timestamp,
}

impl BlockBuilder<'_> {
    /// Checks `entry` as entry `index` of the block and applies it. On
    /// error nothing changes, so the caller may skip the entry and go on.
    fn push(&mut self, index: usize, entry: &Entry) -> Result<(), BlockError> {
        let current = &self.chain.state;
        let id = entry.id().map_err(encode_err)?;
        let leaf = entry.leaf_hash().map_err(encode_err)?;
        let entry_err = |reason| BlockError::Entry { index, id, reason };
        let proposal = &entry.proposal;
        if proposal.chain_id != current.chain_id {
            return Err(entry_err(EntryError::ChainId(proposal.chain_id.clone())));
        }
        // A proposal of an earlier epoch stays valid: its endorsements are
        // checked against this epoch's keys below, so a member set change
        // keeps the endorsements of members who remain (and freshness and
        // the replay window, not the epoch, refuse replays).
        if proposal.epoch > current.epoch {
            return Err(entry_err(EntryError::Epoch {
                expected: current.epoch,
                found: proposal.epoch,
            }));
        }
        if !self.chain.is_fresh(proposal, self.time) {
            return Err(entry_err(EntryError::Stale {
                created_at: proposal.created_at.0,
                block_time: self.time.0,
            }));
        }
        if self.chain.recent_entries.contains_key(&id) || self.ids.contains(&id) {
            return Err(entry_err(EntryError::Duplicate));
        }
        if matches!(proposal.body, Body::Genesis(_)) {
            return Err(entry_err(EntryError::Genesis));
        }
        let is_membership_change = matches!(
            proposal.body,
            Body::AddMember(_) | Body::RemoveMember { .. } | Body::RotateKey { .. }
        );
        if is_membership_change && self.membership_changed {
            return Err(BlockError::SecondMembershipChange { index });
        }
        check_endorsement_signatures(entry, &id, &self.keys).map_err(entry_err)?;
        if !entry
            .endorsements
            .iter()
            .any(|e| e.member == proposal.proposer)
        {
            return Err(entry_err(EntryError::MissingProposerEndorsement));
        }
        let endorsers: BTreeSet<MemberId> = entry.endorsements.iter().map(|e| e.member).collect();
        // Rules are judged against the state the entries before this one
        // left, so a block means the same as its entries in sequence.
        contracts::check_proposal(&self.next, proposal.proposer, &proposal.body, self.time)
            .map_err(|v| entry_err(v.into()))?;
        contracts::check_endorsements(&self.next, proposal.proposer, &proposal.body, &endorsers)
            .map_err(|v| entry_err(v.into()))?;
        let ctx = ApplyContext {
            entry_id: id.0,
            height: self.height,
            time: self.time,
        };
        // Changes are recorded only for an entry that applies: a refused
        // one changes nothing.
        let mut changes = Changes::default();
        self.next
            .apply_recording(ctx, proposal.proposer, &proposal.body, &mut changes)
            .map_err(|v| entry_err(v.into()))?;
        self.changes.members.append(&mut changes.members);
        self.changes.grants.append(&mut changes.grants);
        self.changes.consortium |= changes.consortium;
        self.membership_changed |= is_membership_change;
        self.ids.push(id);
        self.leaves.push(leaf);
        Ok(())
    }
}

/// The count, order, membership and signature checks of an entry's
/// endorsements, against the keys of the block's epoch (shared with grant
/// proofs, which check them the same way).
pub(crate) fn check_endorsement_signatures(
    entry: &Entry,
    id: &EntryId,
    keys: &BTreeMap<MemberId, Did>,
) -> Result<(), EntryError> {
    if entry.endorsements.len() > ENDORSEMENTS_MAX {
        return Err(EntryError::TooManyEndorsements(entry.endorsements.len()));
    }
    if !entry
        .endorsements
        .windows(2)
        .all(|pair| pair[0].member < pair[1].member)
    {
        return Err(EntryError::EndorsementOrder);
    }
    for endorsement in &entry.endorsements {
        let key = keys
            .get(&endorsement.member)
            .ok_or(EntryError::NotAMember(endorsement.member))?;
        if !verify_endorsement(id, endorsement, key) {
            return Err(EntryError::BadSignature(endorsement.member));
        }
    }
    Ok(())
}

fn check_certificate(
    chain_id: &str,
    validators: &Validators,
    header: &BlockHeader,
    hash: &Hash,
    committed: &CommittedBlock,
) -> Result<(), BlockError> {
    let cert = &committed.certificate;
    if cert.height != header.height || cert.value_id != hash.0 {
        return Err(BlockError::Certificate(format!(
            "certifies height {} value {}, not this block",
            cert.height,
            Hash(cert.value_id)
        )));
    }
    verify_certificate(chain_id, validators, cert)
        .map_err(|e| BlockError::Certificate(e.to_string()))
}

/// What a verified chain holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSummary {
    /// The state at the tip.
    pub chain: ChainState,
    /// Entries in all blocks, genesis included.
    pub entries: u64,
}

/// Verifies a whole chain from genesis: links, heights, certificates against
/// each epoch's members, endorsement signatures and policies, contract
/// rules, and state roots. Stops at the first failure and says where.
pub fn verify_chain<I>(blocks: I) -> Result<ChainSummary, VerifyError>
where
    I: IntoIterator<Item = Result<CommittedBlock, VerifyError>>,
{
    let mut blocks = blocks.into_iter();
    let genesis = blocks.next().ok_or(VerifyError {
        height: 0,
        reason: BlockError::EmptyChain,
    })??;
    let mut chain = MemoryChain::from_genesis(&genesis)?;
    let mut entries = genesis.block.entries.len() as u64;
    for block in blocks {
        let block = block?;
        chain.apply(&block)?;
        entries += block.block.entries.len() as u64;
    }
    Ok(ChainSummary {
        chain: chain.into_chain(),
        entries,
    })
}

/// A chain replayed in memory with its state tree: for verifying a chain
/// offline, and for tests. Keeps only the tree's latest version (older
/// nodes are pruned as each block lands), so memory follows the state, not
/// the history.
#[derive(Debug, Clone)]
pub struct MemoryChain {
    chain: ChainState,
    tree: MemoryTree,
}

impl MemoryChain {
    /// The chain after its genesis block (checked).
    pub fn from_genesis(genesis: &CommittedBlock) -> Result<Self, VerifyError> {
        let (chain, adopted) = ChainState::adopt_genesis(genesis)?;
        let mut tree = MemoryTree::new();
        if let Some(update) = adopted.tree {
            tree.write(update);
        }
        Ok(Self { chain, tree })
    }

    /// Applies a committed block ([`ChainState::apply`]).
    pub fn apply(&mut self, committed: &CommittedBlock) -> Result<(), VerifyError> {
        let adopted = self.chain.apply(committed, &self.tree)?;
        if let Some(update) = adopted.tree {
            let version = update.version;
            self.tree.write(update);
            self.tree.prune(version);
        }
        Ok(())
    }

    /// Checks a proposed block ([`ChainState::check_block`]).
    pub fn check_block(&self, block: &Block) -> Result<CheckedBlock, BlockError> {
        self.chain.check_block(block, &self.tree)
    }

    /// Builds the next block ([`ChainState::build_block`]).
    pub fn build_block(
        &self,
        proposer: MemberId,
        time: Timestamp,
        candidates: impl IntoIterator<Item = Entry>,
    ) -> Result<(Block, Vec<(EntryId, BlockError)>), BlockError> {
        self.chain
            .build_block(proposer, time, candidates, &self.tree)
    }

    /// The chain state.
    pub fn chain(&self) -> &ChainState {
        &self.chain
    }

    /// The state tree (latest version).
    pub fn tree(&self) -> &MemoryTree {
        &self.tree
    }

    /// The chain state, without its tree.
    pub fn into_chain(self) -> ChainState {
        self.chain
    }
}

impl std::ops::Deref for MemoryChain {
    type Target = ChainState;

    fn deref(&self) -> &ChainState {
        &self.chain
    }
}
