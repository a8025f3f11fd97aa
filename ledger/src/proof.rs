//! Inclusion proofs: evidence, checkable offline, that an entry (a grant,
//! say) was committed by a quorum of the consortium.
//!
//! A [`GrantProof`] carries the genesis block, every membership change up
//! to the grant's epoch, and the grant's own block header, certificate and
//! Merkle path. Its verifier needs nothing else, except (optionally) the
//! genesis hash it already trusts. Every membership change moves the epoch
//! by one and every header names its epoch under a certificate, so a prover
//! cannot leave a change out: the epochs would not line up.
//!
//! A proof shows that the grant was committed. Whether it is still active
//! (not revoked, not expired) is a question for the current ledger.

use quorate_contracts::{ApplyContext, Body, GrantId, GrantTerms, State};
use serde::{Deserialize, Serialize};

use crate::block::{BlockHeader, CommittedBlock};
use crate::chain::{ChainState, validators_of};
use crate::consensus::{QuorumCertificate, verify_certificate};
use crate::entry::{Entry, EntryId};
use crate::hash::Hash;
use crate::merkle::InclusionProof;

/// Most membership changes a proof may carry.
pub const MEMBERSHIP_CHANGES_MAX: usize = 4096;

/// One entry, its block header and certificate, and its Merkle path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryProof {
    /// The header of the block holding the entry.
    pub header: BlockHeader,
    /// That block's quorum certificate.
    pub certificate: QuorumCertificate,
    /// The entry.
    pub entry: Entry,
    /// The path from its leaf hash ([`Entry::leaf_hash`]) to
    /// `header.tx_root`.
    pub path: InclusionProof,
}

/// Proof that a grant was committed, from genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantProof {
    /// The genesis block (verified in full).
    pub genesis: CommittedBlock,
    /// Every membership change before the grant's block, in order.
    pub membership_changes: Vec<EntryProof>,
    /// The grant.
    pub grant: EntryProof,
}

/// What a verified proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGrant {
    /// The grant id (its entry id).
    pub id: GrantId,
    /// Its terms.
    pub terms: GrantTerms,
    /// The height of the block that committed it.
    pub height: u64,
    /// The chain's genesis hash.
    pub genesis_hash: Hash,
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The genesis block is invalid.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The genesis block is not the one the verifier trusts.
    #[error("genesis hash {found} is not the trusted {expected}")]
    GenesisMismatch {
        /// Trusted.
        expected: Hash,
        /// In the proof.
        found: Hash,
    },
    /// Too many membership changes.
    #[error("{0} membership changes; at most {MEMBERSHIP_CHANGES_MAX}")]
    TooLong(usize),
    /// A step's block is in the wrong epoch or chain, or out of order.
    #[error("step {step}: {reason}")]
    Step {
        /// 0-based index among membership changes; the grant is the last.
        step: usize,
        /// What is wrong.
        reason: String,
    },
    /// The final entry is not a grant.
    #[error("the proven entry is not a grant")]
    NotAGrant,
}

impl EntryProof {
    /// Checks the certificate against `state`'s validators, the header's
    /// chain and epoch, and the entry's Merkle path. Returns the entry id.
    fn verify(&self, state: &State, after_height: u64) -> Result<EntryId, String> {
        let header = &self.header;
        if header.chain_id != state.chain_id {
            return Err(format!("chain id {:?}", header.chain_id));
        }
        if header.epoch != state.epoch {
            return Err(format!(
                "block is in epoch {}, expected {}",
                header.epoch, state.epoch
            ));
        }
        if header.height <= after_height {
            return Err(format!(
                "height {} is not after {after_height}",
                header.height
            ));
        }
        let hash = header.hash().map_err(|e| e.to_string())?;
        let cert = &self.certificate;
        if cert.height != header.height || cert.value_id != hash.0 {
            return Err("certificate is for another block".to_owned());
        }
        verify_certificate(&state.chain_id, &validators_of(state), cert)
            .map_err(|e| format!("certificate: {e}"))?;
        let id = self.entry.id().map_err(|e| e.to_string())?;
        let leaf = self.entry.leaf_hash().map_err(|e| e.to_string())?;
        self.path
            .verify(&leaf, &header.tx_root)
            .map_err(|e| format!("merkle path: {e}"))?;
        Ok(id)
    }
}

impl GrantProof {
    /// Verifies the proof. With `trusted_genesis`, the genesis block must be
    /// that one; without, the proof's own genesis is taken as the chain's.
    pub fn verify(&self, trusted_genesis: Option<&Hash>) -> Result<VerifiedGrant, ProofError> {
        let chain = ChainState::from_genesis(&self.genesis)
            .map_err(|e| ProofError::Genesis(e.to_string()))?;
        if let Some(expected) = trusted_genesis
            && *expected != chain.genesis_hash()
        {
            return Err(ProofError::GenesisMismatch {
                expected: *expected,
                found: chain.genesis_hash(),
            });
        }
        if self.membership_changes.len() > MEMBERSHIP_CHANGES_MAX {
            return Err(ProofError::TooLong(self.membership_changes.len()));
        }
        // Membership rules do not depend on grants, so replaying only the
        // membership changes on the genesis state yields each epoch's
        // member set exactly.
        let mut state = chain.state().clone();
        let mut height = 0;
        for (step, change) in self.membership_changes.iter().enumerate() {
            let fail = |reason: String| ProofError::Step { step, reason };
            let id = change.verify(&state, height).map_err(fail)?;
            let proposal = &change.entry.proposal;
            if !matches!(
                proposal.body,
                Body::AddMember(_) | Body::RemoveMember { .. } | Body::RotateKey { .. }
            ) {
                return Err(fail("not a membership change".to_owned()));
            }
            let ctx = ApplyContext {
                entry_id: id.0,
                height: change.header.height,
                time: change.header.time,
            };
            state
                .apply(ctx, proposal.proposer, &proposal.body)
                .map_err(|v| fail(v.to_string()))?;
            height = change.header.height;
        }
        let step = self.membership_changes.len();
        let id = self
            .grant
            .verify(&state, height)
            .map_err(|reason| ProofError::Step { step, reason })?;
        let Body::Grant(terms) = &self.grant.entry.proposal.body else {
            return Err(ProofError::NotAGrant);
        };
        Ok(VerifiedGrant {
            id: GrantId(id.0),
            terms: terms.clone(),
            height: self.grant.header.height,
            genesis_hash: chain.genesis_hash(),
        })
    }
}
