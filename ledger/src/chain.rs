//! The chain's state and the rules for extending it: applying a committed
//! block, checking a proposed one, and verifying a whole chain from genesis.
//!
//! Applying is deterministic and all-or-nothing: every node that applies the
//! same blocks holds the same state and the same `state_root`, and a block
//! that fails any check changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use quorate_contracts::{self as contracts, ApplyContext, Body, MemberId, State, Timestamp};
use quorate_did::Did;
use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockHeader, CommittedBlock, ENTRIES_PER_BLOCK_MAX, tx_root};
use crate::codec::{self, EncodeError};
use crate::consensus::{Validators, verify_certificate};
use crate::entry::{ENDORSEMENTS_MAX, Entry, EntryId, Proposal, verify_endorsement};
use crate::hash::{Hash, hash_tagged, tag};

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
/// on, the tip, and the ids of recent entries (to refuse replays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    genesis_hash: Hash,
    tip: Tip,
    state: State,
    /// Entry ids committed within the proposal time-to-live, with the time
    /// of their block. Older entries cannot be replayed because a proposal
    /// older than the TTL is refused, so this stays bounded.
    recent_entries: BTreeMap<EntryId, Timestamp>,
}

/// Why a block cannot extend the chain. Each variant names the check that
/// failed; with [`VerifyError`] it also names the height.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
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
}

/// Why an entry is invalid in its block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// Proposed for another chain.
    #[error("proposal is for chain {0:?}")]
    ChainId(String),
    /// Proposed in another epoch; its endorsements are void in this one.
    #[error("proposal is for epoch {found}, the block is in epoch {expected}")]
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

/// The hash of a consortium state: `blake3-derive-key("quorate 2026 state
/// v1", canonical CBOR of the state)`.
pub fn state_root(state: &State) -> Result<Hash, EncodeError> {
    Ok(hash_tagged(tag::STATE, &codec::encode(state)?))
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
        let root = state_root(&state).map_err(|e| at(encode_err(e)))?;
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
        let mut recent_entries = BTreeMap::new();
        recent_entries.insert(id, header.time);
        Ok(Self {
            genesis_hash: hash,
            tip: Tip {
                height: 0,
                hash,
                time: header.time,
            },
            state,
            recent_entries,
        })
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
    /// leads to (not yet adopted). Does not check a certificate: this is the
    /// check a validator runs on a proposal before voting for it.
    pub fn check_block(&self, block: &Block) -> Result<State, BlockError> {
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
        let (next, leaves) = (builder.next, builder.leaves);
        let expected_tx = tx_root(&leaves);
        if header.tx_root != expected_tx {
            return Err(BlockError::TxRoot {
                expected: expected_tx,
                found: header.tx_root,
            });
        }
        let root = state_root(&next).map_err(encode_err)?;
        if header.state_root != root {
            return Err(BlockError::StateRoot {
                expected: root,
                found: header.state_root,
            });
        }
        Ok(next)
    }

    /// Whether `proposal` may go into a block whose time is `time`: created
    /// at most [`PROPOSAL_CLOCK_SKEW_MS`] after it and no longer before it
    /// than the policy's proposal time-to-live.
    pub fn is_fresh(&self, proposal: &Proposal, time: Timestamp) -> bool {
        proposal.created_at.0 <= time.0.saturating_add(PROPOSAL_CLOCK_SKEW_MS)
            && time.saturating_ms_since(proposal.created_at) <= self.state.policy.proposal_ttl_ms
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
    ) -> Result<(Block, Vec<(EntryId, BlockError)>), EncodeError> {
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
                Err(BlockError::Encode(e)) => return Err(EncodeError::from_message(e)),
                Err(reason) => skipped.push((entry.id()?, reason)),
            }
        }
        let header = BlockHeader {
            chain_id: self.state.chain_id.clone(),
            height,
            prev_hash: self.tip.hash,
            epoch: self.state.epoch,
            time,
            proposer,
            tx_root: tx_root(&builder.leaves),
            state_root: state_root(&builder.next)?,
        };
        Ok((Block { header, entries }, skipped))
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
            next: self.state.clone(),
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
    pub fn apply(&mut self, committed: &CommittedBlock) -> Result<(), VerifyError> {
        let header = &committed.block.header;
        // Name the position in the chain, not the height the block claims.
        let position = self.tip.height + 1;
        let at = |reason| VerifyError {
            height: position,
            reason,
        };
        let next = self.check_block(&committed.block).map_err(at)?;
        let hash = committed.block.hash().map_err(|e| at(encode_err(e)))?;
        check_certificate(
            &self.state.chain_id,
            &self.validators(),
            header,
            &hash,
            committed,
        )
        .map_err(at)?;
        self.adopt(&committed.block, hash, next)
            .map_err(|e| at(encode_err(e)))
    }

    /// Moves to `next`, the state `check_block` returned for `block`.
    fn adopt(&mut self, block: &Block, hash: Hash, next: State) -> Result<(), EncodeError> {
        let time = block.header.time;
        for id in block.entry_ids()? {
            self.recent_entries.insert(id, time);
        }
        let ttl = next.policy.proposal_ttl_ms;
        // A proposal older than the TTL (plus skew) can never be committed
        // again, so its id need not be remembered.
        let horizon = ttl.saturating_add(PROPOSAL_CLOCK_SKEW_MS);
        self.recent_entries
            .retain(|_, at| time.saturating_ms_since(*at) <= horizon);
        self.state = next;
        self.tip = Tip {
            height: block.header.height,
            hash,
            time,
        };
        Ok(())
    }
}

/// Applies entries one at a time on top of a chain state, as a block would.
struct BlockBuilder<'a> {
    chain: &'a ChainState,
    keys: BTreeMap<MemberId, Did>,
    next: State,
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
        if proposal.epoch != current.epoch {
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
        self.next
            .apply(ctx, proposal.proposer, &proposal.body)
            .map_err(|v| entry_err(v.into()))?;
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    let mut chain = ChainState::from_genesis(&genesis)?;
    let mut entries = genesis.block.entries.len() as u64;
    for block in blocks {
        let block = block?;
        chain.apply(&block)?;
        entries += block.block.entries.len() as u64;
    }
    Ok(ChainSummary { chain, entries })
}
