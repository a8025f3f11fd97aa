//! The ledger as a node holds it: the chain on disk ([`Store`]) and the
//! verified state at its tip ([`ChainState`]), kept in step.
//!
//! Every block is verified before it is written, and written durably
//! (fsync) before the in-memory state moves: what the node acknowledges
//! survives a crash, and a block that fails verification leaves both
//! untouched.

use std::io::Write;
use std::path::Path;

use crate::block::CommittedBlock;
use crate::chain::{ChainState, ChainSummary, VerifyError, verify_chain};
use crate::codec::{self, DecodeError, EncodeError};
use crate::entry::EntryId;
use crate::export::{self, ExportHeader};
use crate::hash::Hash;
use crate::merkle;
use crate::proof::{EntryProof, GrantProof};
use crate::store::{self, Store, StoredBlock};
use quorate_contracts::GrantId;

/// Most bytes of blocks [`Ledger::blocks`] returns at once.
pub const BLOCKS_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The ledger of one node.
pub struct Ledger {
    store: Store,
    chain: Option<ChainState>,
}

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
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`, loading the state at the
    /// tip. A ledger without genesis opens empty.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::with_store(Store::open(path)?)
    }

    /// The ledger held in an open store, loading the state at its tip and
    /// checking it against the stored tip.
    pub fn with_store(store: Store) -> Result<Self, LedgerError> {
        let chain = match store.state()? {
            None => None,
            Some(bytes) => {
                let chain: ChainState =
                    codec::decode(&bytes).map_err(|source| LedgerError::Corrupt {
                        what: "chain state".to_owned(),
                        source,
                    })?;
                let tip = store.tip()?.map(|t| t.height).unwrap_or(0);
                if chain.tip().height != tip {
                    return Err(LedgerError::Inconsistent {
                        state: chain.tip().height,
                        tip,
                    });
                }
                Some(chain)
            }
        };
        Ok(Self { store, chain })
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
        let chain = ChainState::from_genesis(genesis)?;
        self.persist(std::slice::from_ref(genesis), &chain)?;
        self.chain = Some(chain);
        Ok(())
    }

    /// Verifies and appends one committed block.
    pub fn append(&mut self, committed: &CommittedBlock) -> Result<(), LedgerError> {
        self.append_batch(std::slice::from_ref(committed))
    }

    /// Verifies and appends blocks in order, in one durable transaction: all
    /// or nothing.
    pub fn append_batch(&mut self, blocks: &[CommittedBlock]) -> Result<(), LedgerError> {
        let mut chain = self.chain.clone().ok_or(LedgerError::NoGenesis)?;
        for block in blocks {
            chain.apply(block)?;
        }
        self.persist(blocks, &chain)?;
        self.chain = Some(chain);
        Ok(())
    }

    /// Writes `blocks` and the state after the last of them in one durable
    /// transaction.
    fn persist(&self, blocks: &[CommittedBlock], after: &ChainState) -> Result<(), LedgerError> {
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
                })
            })
            .collect::<Result<Vec<_>, EncodeError>>()?;
        self.store.append_batch(&stored, &codec::encode(after)?)?;
        Ok(())
    }

    /// The committed block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<CommittedBlock>, LedgerError> {
        let (Some(block), Some(certificate)) =
            (self.store.block(height)?, self.store.certificate(height)?)
        else {
            return Ok(None);
        };
        let corrupt = |what: &str| {
            let what = format!("{what} {height}");
            move |source| LedgerError::Corrupt { what, source }
        };
        Ok(Some(CommittedBlock {
            block: codec::decode(&block).map_err(corrupt("block"))?,
            certificate: codec::decode(&certificate).map_err(corrupt("certificate"))?,
        }))
    }

    /// Committed blocks `from..=to`, stopping early at [`BLOCKS_BYTES_MAX`].
    pub fn blocks(&self, from: u64, to: u64) -> Result<Vec<CommittedBlock>, LedgerError> {
        let mut out = Vec::new();
        for (height, block, certificate) in self.store.blocks(from, to, BLOCKS_BYTES_MAX)? {
            let corrupt = |what: &str| {
                let what = format!("{what} {height}");
                move |source| LedgerError::Corrupt { what, source }
            };
            out.push(CommittedBlock {
                block: codec::decode(&block).map_err(corrupt("block"))?,
                certificate: codec::decode(&certificate).map_err(corrupt("certificate"))?,
            });
        }
        Ok(out)
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

    /// A proof, checkable offline from genesis, that grant `id` was
    /// committed: its block header, certificate and Merkle path, plus every
    /// membership change before it (in earlier blocks, and earlier in its
    /// own block, whose member set the grant's endorsements were judged
    /// against). Reads the chain up to the grant's block.
    pub fn grant_proof(&self, id: &GrantId) -> Result<Option<GrantProof>, LedgerError> {
        let Some((height, index)) = self.store.entry_location(&id.0)? else {
            return Ok(None);
        };
        let genesis = self.block(0)?.ok_or(LedgerError::NoGenesis)?;
        let mut membership_changes = Vec::new();
        for h in 1..height {
            let block = self.block(h)?.ok_or(LedgerError::NoGenesis)?;
            for (i, entry) in block.block.entries.iter().enumerate() {
                if entry.proposal.body.changes_membership() {
                    membership_changes.push(entry_proof(&block, i)?);
                }
            }
        }
        let block = self.block(height)?.ok_or(LedgerError::NoGenesis)?;
        let index = index as usize;
        for (i, entry) in block.block.entries.iter().enumerate().take(index) {
            if entry.proposal.body.changes_membership() {
                membership_changes.push(entry_proof(&block, i)?);
            }
        }
        let grant = entry_proof(&block, index)?;
        if !matches!(grant.entry.proposal.body, quorate_contracts::Body::Grant(_)) {
            return Ok(None);
        }
        Ok(Some(GrantProof {
            genesis,
            membership_changes,
            grant,
        }))
    }

    /// Where entry `id` was committed: (height, index in the block).
    pub fn entry_location(&self, id: &EntryId) -> Result<Option<(u64, u32)>, LedgerError> {
        Ok(self.store.entry_location(&id.0)?)
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

fn entry_proof(block: &CommittedBlock, index: usize) -> Result<EntryProof, LedgerError> {
    let leaves = block.block.leaf_hashes()?;
    let path = merkle::prove(&leaves, index).ok_or(LedgerError::Inconsistent {
        state: block.block.header.height,
        tip: index as u64,
    })?;
    let entry = block.block.entries[index].clone();
    Ok(EntryProof {
        header: block.block.header.clone(),
        certificate: block.certificate.clone(),
        entry,
        path,
    })
}
