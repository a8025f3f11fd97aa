//! Reads of a ledger's store that need no chain state in memory: blocks,
//! entry locations and every kind of proof. A [`LedgerReader`] shares the
//! store's database with its [`Ledger`](crate::ledger::Ledger) and reads
//! committed snapshots, so a node answers these from any thread while its
//! agreement task appends.

use quorate_contracts::{GrantId, MemberId};

use crate::block::CommittedBlock;
use crate::chain::ChainState;
use crate::codec;
use crate::entry::EntryId;
use crate::ledger::{BLOCKS_BYTES_MAX, LedgerError};
use crate::proof::{EntryProof, GrantProof, MemberStatusProof, StatusProof};
use crate::store::Store;

/// A read handle on a ledger's store (cheap to clone).
#[derive(Debug)]
pub struct LedgerReader {
    store: Store,
}

impl Clone for LedgerReader {
    fn clone(&self) -> Self {
        Self {
            store: self.store.share(),
        }
    }
}

/// A state row at a height, with what proves it.
struct RowProof {
    genesis: CommittedBlock,
    membership_changes: Vec<EntryProof>,
    block: CommittedBlock,
    record: Option<Vec<u8>>,
    path: crate::smt::Proof,
}

fn entry_proof(block: &CommittedBlock, index: usize) -> Result<EntryProof, LedgerError> {
    EntryProof::of_block(block, index)?.ok_or(LedgerError::Inconsistent {
        state: block.block.header.height,
        tip: index as u64,
    })
}

impl LedgerReader {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    /// The stored tip: the last durable block's height and hash.
    pub fn tip(&self) -> Result<crate::store::Tip, LedgerError> {
        self.store.tip()?.ok_or(LedgerError::NoGenesis)
    }

    /// The stored tip's height.
    pub fn tip_height(&self) -> Result<u64, LedgerError> {
        Ok(self.tip()?.height)
    }

    /// Whether grant `id` is committed (in the current rows).
    pub fn has_grant(&self, id: &GrantId) -> Result<bool, LedgerError> {
        use quorate_contracts::GrantRows as _;
        Ok(self.store.grants()?.get(id)?.is_some())
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
        // From the index of membership changes: the proof reads the blocks
        // it cites, not the chain.
        let mut membership_changes = self.membership_changes_before(height)?;
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

    /// Proofs of every membership change in blocks before `height`.
    fn membership_changes_before(&self, height: u64) -> Result<Vec<EntryProof>, LedgerError> {
        let at = self
            .store
            .membership_changes(height, crate::proof::MEMBERSHIP_CHANGES_MAX)?;
        let mut proofs = Vec::with_capacity(at.len());
        for (h, index) in at {
            let block = self.block(h)?.ok_or(LedgerError::Inconsistent {
                state: h,
                tip: self.tip_height().unwrap_or(0),
            })?;
            proofs.push(entry_proof(&block, index as usize)?);
        }
        Ok(proofs)
    }

    /// A proof of grant `id`'s record in the state at height `at` (the
    /// tip if `None`), or of its absence then: the record's path in the
    /// state tree of that height, its certified header, and every
    /// membership change before it. Reads O(log n) tree nodes and the
    /// blocks it cites.
    pub fn status_proof(&self, id: &GrantId, at: Option<u64>) -> Result<StatusProof, LedgerError> {
        let row = self.row_proof(crate::chain::rows::grant_key(id), at)?;
        Ok(StatusProof {
            genesis: row.genesis,
            membership_changes: row.membership_changes,
            header: row.block.block.header,
            certificate: row.block.certificate,
            grant_id: *id,
            record: row.record,
            path: row.path,
        })
    }

    /// A proof of member `id`'s row in the state at height `at` (the tip if
    /// `None`), or of its absence then, as [`Ledger::status_proof`] is for
    /// a grant.
    pub fn member_status_proof(
        &self,
        id: &MemberId,
        at: Option<u64>,
    ) -> Result<MemberStatusProof, LedgerError> {
        let row = self.row_proof(crate::chain::rows::member_key(id), at)?;
        Ok(MemberStatusProof {
            genesis: row.genesis,
            membership_changes: row.membership_changes,
            header: row.block.block.header,
            certificate: row.block.certificate,
            member_id: *id,
            record: row.record,
            path: row.path,
        })
    }

    /// The state row `key` at height `at` with its path, its block and the
    /// membership changes before it.
    fn row_proof(
        &self,
        key: crate::smt::KeyHash,
        at: Option<u64>,
    ) -> Result<RowProof, LedgerError> {
        let tip = self.tip_height()?;
        let height = at.unwrap_or(tip);
        if height > tip {
            return Err(LedgerError::BeyondTip { height, tip });
        }
        let block = self
            .block(height)?
            .ok_or(LedgerError::Inconsistent { state: height, tip })?;
        let version = self
            .store
            .tree_version_at(height)?
            .ok_or(LedgerError::NotHeld { height })?;
        let tree = self.store.tree()?;
        let tree_err = |e: crate::smt::LookupError| match e {
            crate::smt::LookupError::MissingNode(_) => LedgerError::NotHeld { height },
            other => LedgerError::Tree(other.to_string()),
        };
        let record = crate::smt::get(&tree, version, &key).map_err(tree_err)?;
        let path = crate::smt::prove(&tree, version, &key).map_err(tree_err)?;
        Ok(RowProof {
            genesis: self.block(0)?.ok_or(LedgerError::NoGenesis)?,
            membership_changes: self.membership_changes_before(height)?,
            block,
            record,
            path,
        })
    }

    /// The member that held `did` at height `at` (the tip if `None`), or
    /// else the last member that held it before: replays the membership
    /// changes up to `at` (at most [`crate::proof::MEMBERSHIP_CHANGES_MAX`]
    /// blocks read). `None` if no member ever held it by then.
    pub fn member_holding(
        &self,
        did: &quorate_did::Did,
        at: Option<u64>,
    ) -> Result<Option<MemberId>, LedgerError> {
        let tip = self.tip_height()?;
        let height = at.unwrap_or(tip);
        let genesis = self.block(0)?.ok_or(LedgerError::NoGenesis)?;
        let mut state = ChainState::from_genesis(&genesis)
            .map_err(LedgerError::Verify)?
            .state()
            .clone();
        let mut last_holder = state.member_by_did(did).map(|m| m.id);
        let changes = self.store.membership_changes(
            height.saturating_add(1),
            crate::proof::MEMBERSHIP_CHANGES_MAX,
        )?;
        for (h, index) in changes {
            let block = self
                .block(h)?
                .ok_or(LedgerError::Inconsistent { state: h, tip })?;
            let Some(entry) = block.block.entries.get(index as usize) else {
                continue;
            };
            let ctx = quorate_contracts::ApplyContext {
                entry_id: entry.id()?.0,
                height: h,
                time: block.block.header.time,
            };
            // Committed, so it applied; the state is members only.
            let _ = state.apply(ctx, entry.proposal.proposer, &entry.proposal.body);
            if let Some(member) = state.member_by_did(did) {
                last_holder = Some(member.id);
            }
        }
        Ok(state.member_by_did(did).map(|m| m.id).or(last_holder))
    }

    /// Where entry `id` was committed: (height, index in the block).
    pub fn entry_location(&self, id: &EntryId) -> Result<Option<(u64, u32)>, LedgerError> {
        Ok(self.store.entry_location(&id.0)?)
    }
}
