//! The ledger as a node holds it: the chain on disk ([`Store`]) and the
//! verified state at its tip ([`ChainState`]), kept in step.
//!
//! Every block is verified before it is written, and written durably
//! (fsync) before the in-memory state moves: what the node acknowledges
//! survives a crash, and a block that fails verification leaves both
//! untouched.

use std::io::Write;
use std::path::Path;

use std::collections::HashMap;

use quorate_contracts::{Consortium, GrantCounts, Member, MemberId, RowsError, State, Timestamp};

use crate::block::{Block, CommittedBlock};
use crate::chain::{
    Adopted, BlockError, ChainMeta, ChainState, ChainSummary, CheckedBlock, VerifyError,
    verify_chain,
};
use crate::codec::{self, DecodeError, EncodeError};
use crate::entry::Entry;
use crate::entry::EntryId;
use crate::export::{self, ExportHeader};
use crate::hash::Hash;
use crate::proof::{GrantProof, MemberStatusProof, StatusProof};
pub use crate::reader::LedgerReader;
use crate::smt::{Node, NodeKey, TreeReader};
use crate::store::{self, RowVisitor, StateWrite, Store, StoreTree, StoredBlock};
use quorate_contracts::GrantId;

/// Most bytes of blocks [`Ledger::blocks`] returns at once.
pub const BLOCKS_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The ledger of one node.
pub struct Ledger {
    store: Store,
    chain: Option<ChainState>,
    /// How long (block time, ms) past states stay provable; `None`: all.
    state_history_ms: Option<u64>,
}

/// Most state tree nodes an append prunes besides twice what it made
/// stale itself: pruning keeps up with what blocks make stale, and a
/// heartbeat block after a burst deletes a few hundred nodes (each a
/// random B-tree delete, tens of µs on a large tree), not thousands.
pub const PRUNE_NODES_MIN: usize = 512;

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] store::OpenError),
    /// Reading the store failed.
    #[error(transparent)]
    Read(#[from] store::ReadError),
    /// Writing the store failed; nothing was changed.
    #[error(transparent)]
    Append(#[from] store::AppendError),
    /// The block does not verify; nothing was changed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Stored bytes do not decode: the store is corrupt.
    #[error("stored {what} does not decode: {source}")]
    Corrupt {
        /// What was read.
        what: String,
        /// The decoder's error.
        source: DecodeError,
    },
    /// The stored state does not match the stored tip.
    #[error("stored state is at {state}, the stored tip at {tip}: the store is inconsistent")]
    Inconsistent {
        /// The state's tip height.
        state: u64,
        /// The store's tip height.
        tip: u64,
    },
    /// Encoding failed (a value over the limits).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The ledger has no genesis yet.
    #[error("the ledger has no genesis block yet")]
    NoGenesis,
    /// Genesis was given to a ledger that has one.
    #[error("the ledger already has a genesis block ({0})")]
    HasGenesis(Hash),
    /// Writing an export failed.
    #[error(transparent)]
    Export(#[from] export::WriteError),
    /// A height past the tip.
    #[error("height {height} is beyond the tip ({tip})")]
    BeyondTip {
        /// Asked for.
        height: u64,
        /// The tip's.
        tip: u64,
    },
    /// The state at a height is not held (pruned, or never written).
    #[error("the state at height {height} is not held by this ledger")]
    NotHeld {
        /// Asked for.
        height: u64,
    },
    /// The stored state tree is missing a node or does not match the rows.
    #[error("the stored state tree is inconsistent: {0}")]
    Tree(String),
    /// The grant rows could not be read.
    #[error(transparent)]
    Rows(#[from] RowsError),
}

/// Collects the rows a store visits into what a state is built from.
#[derive(Default)]
struct LoadRows {
    meta: Option<ChainMeta>,
    consortium: Option<Consortium>,
    members: Vec<Member>,
    recent: Vec<(EntryId, Timestamp)>,
}

fn corrupt(what: &str) -> impl FnOnce(DecodeError) -> LedgerError + '_ {
    move |source| LedgerError::Corrupt {
        what: what.to_owned(),
        source,
    }
}

fn id32(what: &str, bytes: &[u8]) -> Result<[u8; 32], LedgerError> {
    bytes
        .try_into()
        .map_err(|_| LedgerError::Tree(format!("a {what} key is not 32 bytes")))
}

impl RowVisitor for LoadRows {
    type Error = LedgerError;

    fn chain(&mut self, meta: &[u8], consortium: &[u8]) -> Result<(), LedgerError> {
        self.meta = Some(codec::decode(meta).map_err(corrupt("chain meta row"))?);
        self.consortium = Some(codec::decode(consortium).map_err(corrupt("consortium row"))?);
        Ok(())
    }

    fn member(&mut self, value: &[u8]) -> Result<(), LedgerError> {
        self.members
            .push(codec::decode(value).map_err(corrupt("member row"))?);
        Ok(())
    }

    fn recent(&mut self, id: &[u8], time_ms: u64) -> Result<(), LedgerError> {
        self.recent
            .push((Hash(id32("recent entry", id)?), Timestamp(time_ms)));
        Ok(())
    }
}

/// The store's tree with the nodes of blocks adopted earlier in the same
/// batch, not yet written.
struct PendingTree<'a> {
    store: &'a StoreTree,
    nodes: HashMap<NodeKey, Node>,
}

impl TreeReader for PendingTree<'_> {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, crate::smt::ReadError> {
        match self.nodes.get(key) {
            Some(node) => Ok(Some(node.clone())),
            None => self.store.node(key),
        }
    }
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`, loading the state at the
    /// tip. A ledger without genesis opens empty.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::with_store(Store::open(path)?)
    }

    /// The ledger held in an open store, loading the state's rows at its
    /// tip and checking them against the stored tip and the state tree's
    /// root. Members and the replay window are loaded (each row decoded
    /// alone and small by construction, so no size of state can exceed a
    /// decode limit); grants stay on disk, read through a snapshot, so
    /// opening costs the same at a thousand grants or a million.
    pub fn with_store(store: Store) -> Result<Self, LedgerError> {
        let mut rows = LoadRows::default();
        if !store.visit_state(&mut rows)? {
            return Ok(Self {
                store,
                chain: None,
                state_history_ms: None,
            });
        }
        let (Some(meta), Some(consortium)) = (rows.meta, rows.consortium) else {
            return Ok(Self {
                store,
                chain: None,
                state_history_ms: None,
            });
        };
        let tip = store.tip()?.map(|t| t.height).unwrap_or(0);
        if meta.tip.height != tip {
            return Err(LedgerError::Inconsistent {
                state: meta.tip.height,
                tip,
            });
        }
        // The tree's root node at its latest version must hash to the
        // recorded root: a cheap check that rows and tree belong together.
        let root = store
            .tree()?
            .node(&NodeKey::root(meta.tree_version))
            .map_err(|e| LedgerError::Tree(e.to_string()))?
            .map(|node| node.hash());
        if root != Some(meta.state_root) {
            return Err(LedgerError::Tree(format!(
                "the state tree's root at version {} does not match the tip's state root",
                meta.tree_version
            )));
        }
        let counts = GrantCounts {
            total: meta.grants,
            active: meta.active_grants,
        };
        let grants = std::sync::Arc::new(store.grants()?);
        let state = State::on_rows(consortium, rows.members, grants, counts);
        let chain = ChainState::from_stored(meta, state, rows.recent);
        Ok(Self {
            store,
            chain: Some(chain),
            state_history_ms: None,
        })
    }

    /// Keeps the state of past heights (for status proofs) for `ms` of
    /// block time behind the tip, pruning older state tree versions as
    /// blocks are appended; `None` keeps every version. A status proof at
    /// a pruned height is refused as not held.
    pub fn keep_state_history(&mut self, ms: Option<u64>) {
        self.state_history_ms = ms;
    }

    /// The state at the tip, once there is a genesis.
    pub fn chain(&self) -> Option<&ChainState> {
        self.chain.as_ref()
    }

    /// Writes the genesis block after verifying it.
    pub fn init_genesis(&mut self, genesis: &CommittedBlock) -> Result<(), LedgerError> {
        if let Some(chain) = &self.chain {
            return Err(LedgerError::HasGenesis(chain.genesis_hash()));
        }
        let (mut chain, adopted) = ChainState::adopt_genesis(genesis)?;
        self.persist(std::slice::from_ref(genesis), &mut chain, vec![adopted])?;
        self.chain = Some(chain);
        Ok(())
    }

    /// Checks a proposed block against the tip ([`ChainState::check_block`])
    /// with the stored state tree.
    pub fn check_block(&self, block: &Block) -> Result<CheckedBlock, LedgerError> {
        let chain = self.chain.as_ref().ok_or(LedgerError::NoGenesis)?;
        let tree = self.store.tree()?;
        chain.check_block(block, &tree).map_err(|reason| {
            LedgerError::Verify(VerifyError {
                height: chain.tip().height + 1,
                reason,
            })
        })
    }

    /// Builds the next block with its check
    /// ([`ChainState::build_block_checked`]).
    pub fn build_block_checked(
        &self,
        proposer: MemberId,
        time: Timestamp,
        candidates: impl IntoIterator<Item = Entry>,
    ) -> Result<crate::chain::BuiltBlock, LedgerError> {
        let chain = self.chain.as_ref().ok_or(LedgerError::NoGenesis)?;
        let tree = self.store.tree()?;
        chain
            .build_block_checked(proposer, time, candidates, &tree)
            .map_err(|reason| next_block_error(chain, reason))
    }

    /// Appends a committed block checked earlier against the tip
    /// ([`ChainState::apply_checked`]): only its certificate is verified.
    pub fn append_checked(
        &mut self,
        committed: &CommittedBlock,
        checked: CheckedBlock,
    ) -> Result<(), LedgerError> {
        let mut chain = self.chain.clone().ok_or(LedgerError::NoGenesis)?;
        let adopted = chain.apply_checked(committed, checked)?;
        self.persist(std::slice::from_ref(committed), &mut chain, vec![adopted])?;
        self.chain = Some(chain);
        Ok(())
    }

    /// Builds the next block from `candidates` ([`ChainState::build_block`]).
    pub fn build_block(
        &self,
        proposer: MemberId,
        time: Timestamp,
        candidates: impl IntoIterator<Item = Entry>,
    ) -> Result<(Block, Vec<(EntryId, BlockError)>), LedgerError> {
        let chain = self.chain.as_ref().ok_or(LedgerError::NoGenesis)?;
        let tree = self.store.tree()?;
        chain
            .build_block(proposer, time, candidates, &tree)
            .map_err(|reason| next_block_error(chain, reason))
    }

    /// Verifies and appends one committed block.
    pub fn append(&mut self, committed: &CommittedBlock) -> Result<(), LedgerError> {
        self.append_batch(std::slice::from_ref(committed))
    }

    /// Verifies and appends blocks in order, in one durable transaction: all
    /// or nothing.
    pub fn append_batch(&mut self, blocks: &[CommittedBlock]) -> Result<(), LedgerError> {
        // O(1): the state's maps are persistent; the clone keeps the tip
        // as it was if any block of the batch fails.
        let mut chain = self.chain.clone().ok_or(LedgerError::NoGenesis)?;
        let store_tree = self.store.tree()?;
        let mut tree = PendingTree {
            store: &store_tree,
            nodes: HashMap::new(),
        };
        let mut adopted = Vec::with_capacity(blocks.len());
        for block in blocks {
            let step = chain.apply(block, &tree)?;
            if blocks.len() > 1
                && let Some(update) = &step.tree
            {
                tree.nodes.extend(update.new_nodes.iter().cloned());
            }
            adopted.push(step);
        }
        drop(tree);
        drop(store_tree);
        self.persist(blocks, &mut chain, adopted)?;
        self.chain = Some(chain);
        Ok(())
    }

    /// Writes `blocks` and what they changed (`adopted`, one per block) in
    /// one durable transaction; `after` is the chain state after the last,
    /// and reads its grants from the store once they are written there
    /// (its changed grants leave memory).
    fn persist(
        &self,
        blocks: &[CommittedBlock],
        after: &mut ChainState,
        adopted: Vec<Adopted>,
    ) -> Result<(), LedgerError> {
        let stored = blocks
            .iter()
            .map(|committed| {
                let header = &committed.block.header;
                Ok(StoredBlock {
                    height: header.height,
                    hash: committed.block.hash()?.0,
                    prev_hash: header.prev_hash.0,
                    block: codec::encode(&committed.block)?,
                    certificate: codec::encode(&committed.certificate)?,
                    entry_ids: committed
                        .block
                        .entry_ids()?
                        .into_iter()
                        .map(|id| id.0)
                        .collect(),
                    membership_entries: committed
                        .block
                        .entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.proposal.body.changes_membership())
                        .map(|(i, _)| i as u32)
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, EncodeError>>()?;
        let times: HashMap<u64, u64> = blocks
            .iter()
            .map(|b| (b.block.header.height, b.block.header.time.0))
            .collect();
        let mut write = state_write(after, adopted, &times)?;
        if let Some(keep_ms) = self.state_history_ms {
            write.prune = Some(store::Prune {
                before_ms: after.tip().time.0.saturating_sub(keep_ms),
                nodes_max: PRUNE_NODES_MIN.max(2 * write.tree_stale.len()),
            });
        }
        self.store.append_batch(&stored, &write)?;
        // The blocks are durable now, so this must not fail the append:
        // without a new snapshot the changes stay in memory (correct, just
        // larger) until the next append rebases.
        if let Ok(grants) = self.store.grants() {
            after.rebase_grants(std::sync::Arc::new(grants));
        }
        Ok(())
    }

    /// The committed block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<CommittedBlock>, LedgerError> {
        self.reader().block(height)
    }

    /// Committed blocks `from..=to`, stopping early at [`BLOCKS_BYTES_MAX`].
    pub fn blocks(&self, from: u64, to: u64) -> Result<Vec<CommittedBlock>, LedgerError> {
        self.reader().blocks(from, to)
    }

    /// A handle that reads this ledger's store from any thread while the
    /// ledger appends (redb readers see committed snapshots): what serves
    /// blocks, entries and proofs without the agreement task.
    pub fn reader(&self) -> LedgerReader {
        LedgerReader::new(self.store.share())
    }

    /// Re-verifies the whole stored chain from genesis.
    pub fn verify(&self) -> Result<ChainSummary, LedgerError> {
        let tip = self.chain.as_ref().ok_or(LedgerError::NoGenesis)?.tip();
        let blocks = (0..=tip.height).map(|h| match self.block(h) {
            Ok(Some(b)) => Ok(b),
            Ok(None) | Err(_) => Err(VerifyError {
                height: h,
                reason: crate::chain::BlockError::EmptyChain,
            }),
        });
        Ok(verify_chain(blocks)?)
    }

    /// Writes the whole chain as an export file.
    pub fn export<W: Write>(&self, out: &mut W) -> Result<(), LedgerError> {
        let chain = self.chain.as_ref().ok_or(LedgerError::NoGenesis)?;
        let header = ExportHeader {
            chain_id: chain.chain_id().to_owned(),
            genesis_hash: chain.genesis_hash(),
            tip_height: chain.tip().height,
            tip_hash: chain.tip().hash,
        };
        let mut failure = None;
        let blocks = (0..=chain.tip().height).map_while(|h| match self.block(h) {
            Ok(Some(b)) => Some(b),
            Ok(None) => None,
            Err(e) => {
                failure = Some(e);
                None
            }
        });
        export::write(out, &header, blocks)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// See [`LedgerReader::grant_proof`].
    pub fn grant_proof(&self, id: &GrantId) -> Result<Option<GrantProof>, LedgerError> {
        self.reader().grant_proof(id)
    }

    /// See [`LedgerReader::status_proof`].
    pub fn status_proof(&self, id: &GrantId, at: Option<u64>) -> Result<StatusProof, LedgerError> {
        self.reader().status_proof(id, at)
    }

    /// See [`LedgerReader::member_status_proof`].
    pub fn member_status_proof(
        &self,
        id: &MemberId,
        at: Option<u64>,
    ) -> Result<MemberStatusProof, LedgerError> {
        self.reader().member_status_proof(id, at)
    }

    /// See [`LedgerReader::member_holding`].
    pub fn member_holding(
        &self,
        did: &quorate_did::Did,
        at: Option<u64>,
    ) -> Result<Option<MemberId>, LedgerError> {
        self.reader().member_holding(did, at)
    }

    /// Where entry `id` was committed: (height, index in the block).
    pub fn entry_location(&self, id: &EntryId) -> Result<Option<(u64, u32)>, LedgerError> {
        self.reader().entry_location(id)
    }

    /// Bytes per table (see [`Store::table_bytes`]).
    pub fn table_bytes(&self) -> Result<Vec<(&'static str, u64, u64)>, LedgerError> {
        Ok(self.store.table_bytes()?)
    }

    /// The agreement machine's persisted state.
    pub fn consensus_state(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.store.consensus_state()?)
    }

    /// Durably replaces the agreement machine's persisted state.
    pub fn put_consensus_state(&self, bytes: &[u8]) -> Result<(), LedgerError> {
        Ok(self.store.put_consensus_state(bytes)?)
    }
}

/// What `adopted` (a batch's blocks, in order) changed, with the rows' new
/// values read from `after`, encoded for the store.
fn state_write(
    after: &ChainState,
    adopted: Vec<Adopted>,
    block_times: &HashMap<u64, u64>,
) -> Result<StateWrite, LedgerError> {
    let state = after.state();
    let mut changes = quorate_contracts::Changes::default();
    let mut write = StateWrite {
        meta: codec::encode(&after.meta())?,
        ..StateWrite::default()
    };
    let mut recent: std::collections::BTreeMap<[u8; 32], Option<u64>> = Default::default();
    for step in adopted {
        changes.members.extend(step.changes.members);
        changes.grants.extend(step.changes.grants);
        changes.consortium |= step.changes.consortium;
        for (id, time) in step.recent_added {
            recent.insert(id.0, Some(time.0));
        }
        for id in step.recent_removed {
            recent.insert(id.0, None);
        }
        if let Some(update) = step.tree {
            // A version is the height of a block of the batch; the tip's
            // time is the safe stand-in (pruning only ever goes later).
            let time = block_times
                .get(&update.version)
                .copied()
                .unwrap_or(after.tip().time.0);
            write.tree_versions.push((update.version, time));
            for (key, node) in &update.new_nodes {
                write
                    .tree_nodes
                    .push((key.to_bytes().to_vec(), codec::encode(node)?));
            }
            for stale in &update.stale_nodes {
                write
                    .tree_stale
                    .push((stale.stale_since, stale.node_key.to_bytes().to_vec()));
            }
        }
    }
    if changes.consortium {
        write.consortium = Some(codec::encode(&state.consortium())?);
    }
    for id in changes.members {
        let value = state.members.get(&id).map(codec::encode).transpose()?;
        write.members.push((id.0, value));
    }
    for id in changes.grants {
        // Changed grants are in the state's memory: no store read.
        let record = state.grant(&id)?;
        if let Some(record) = &record {
            // Rewritten for a status change too: the same key, harmless.
            let mut pair = [0u8; 96];
            pair[..32].copy_from_slice(&record.terms.grantee.0);
            pair[32..64].copy_from_slice(&record.terms.grantor.0);
            pair[64..].copy_from_slice(&id.0);
            write.grant_pairs.push(pair);
        }
        write
            .grants
            .push((id.0, record.as_ref().map(codec::encode).transpose()?));
    }
    for (id, time) in recent {
        match time {
            Some(time) => write.recent_added.push((id, time)),
            None => write.recent_removed.push(id),
        }
    }
    Ok(write)
}

/// A failure of the block after the tip, named by its height.
fn next_block_error(chain: &ChainState, reason: BlockError) -> LedgerError {
    LedgerError::Verify(VerifyError {
        height: chain.tip().height + 1,
        reason,
    })
}
