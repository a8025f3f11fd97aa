//! Inclusion proofs: evidence, checkable offline, that an entry (a grant,
//! say) was committed by a quorum of the consortium.
//!
//! A [`GrantProof`] carries the genesis block, every membership change up
//! to the grant, and the grant's own block header, certificate and Merkle
//! path. Its verifier needs nothing else, except (optionally) the genesis
//! hash it already trusts. Every membership change moves the epoch by one
//! and every header names its epoch under a certificate, so a prover
//! cannot leave out a change of an earlier block: the epochs would not
//! line up.
//!
//! Each entry's endorsements are checked as the chain checked them
//! (docs/ledger-format.md section 5): strictly sorted, by members of the
//! block's epoch, each signature valid under that member's key then, the
//! proposer's among them, and enough for the contract's requirement. The
//! verifier knows only the member sets (it replays membership changes, not
//! grants), which is all those rules read for membership changes and
//! grants. The Merkle path covers the endorsements too, so these checks
//! cannot pass for an entry the block did not hold; they name what is
//! wrong with a tampered proof, and refuse one whose endorsements a quorum
//! certified without checking.
//!
//! A grant proof shows that the grant was committed. A [`StatusProof`]
//! shows what its record was in the state at one committed height (active
//! with its terms, revoked or ended at a height, or absent), through the
//! state tree's path to that block's certified `state_root`. A
//! [`MemberStatusProof`] does the same for a member's row: whether it was a
//! member at that height, under which name and key.

use std::collections::{BTreeMap, BTreeSet};

use quorate_contracts::{
    self as contracts, ApplyContext, Body, GrantId, GrantRecord, GrantStatus, GrantTerms, Member,
    MemberId, State, Timestamp,
};
use quorate_did::Did;
use serde::{Deserialize, Serialize};

use crate::block::{BlockHeader, CommittedBlock};
use crate::chain::{ChainState, EntryError, check_endorsement_signatures, validators_of};
use crate::consensus::{CertificateError, QuorumCertificate, verify_certificate};
use crate::entry::{Entry, EntryId};
use crate::hash::Hash;
use crate::merkle::{self, InclusionProof};
use crate::smt;

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
    /// Every membership change committed before the grant, in order: those
    /// of earlier blocks, and one earlier in the grant's own block.
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
    /// One entry of the proof (a membership change, or the grant) fails.
    #[error("step {step}: {reason}")]
    Step {
        /// 0-based index among membership changes; the grant is the last.
        step: usize,
        /// What is wrong.
        reason: StepError,
    },
    /// The final entry is not a grant.
    #[error("the proven entry is not a grant")]
    NotAGrant,
}

/// Why one entry of a proof fails: each variant is one check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The block is for another chain.
    #[error("block is for chain {0:?}")]
    ChainId(String),
    /// The block is not in the epoch the membership changes so far lead to.
    #[error("block is in epoch {found}, expected {expected}")]
    Epoch {
        /// The epoch reached.
        expected: u64,
        /// The header's.
        found: u64,
    },
    /// The block is not after the previous step's.
    #[error("height {found} is not after {after}")]
    Height {
        /// The previous step's height.
        after: u64,
        /// The header's.
        found: u64,
    },
    /// The certificate names another height or block hash.
    #[error("certificate is for another block")]
    CertifiesAnotherBlock,
    /// The certificate does not verify against the epoch's validators.
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// The entry is not valid in its block: wrong chain or epoch, or its
    /// endorsements are out of order, by a non-member, badly signed,
    /// without the proposer's, or short of the contract's requirement.
    #[error("entry: {0}")]
    Entry(#[from] EntryError),
    /// The entry's leaf hash does not lead to the header's `tx_root`.
    #[error("merkle path: {0}")]
    Path(#[from] merkle::ProofError),
    /// A membership change in the grant's own block is not in that block
    /// (another header) or does not come before the grant.
    #[error(
        "the last membership change is at the grant's height but is not an earlier entry of its block"
    )]
    NotEarlierInBlock,
    /// A step listed as a membership change is something else.
    #[error("not a membership change")]
    NotAMembershipChange,
    /// Applying a membership change breaks a rule.
    #[error("{0}")]
    Rule(#[from] contracts::Violation),
    /// A value could not be encoded (over the limits).
    #[error("encoding: {0}")]
    Encode(String),
}

fn encode_err(e: crate::codec::EncodeError) -> StepError {
    StepError::Encode(e.to_string())
}

/// The members' keys of an epoch, by member id.
fn keys_of(state: &State) -> BTreeMap<MemberId, Did> {
    state.members.iter().map(|(id, m)| (*id, m.did)).collect()
}

impl EntryProof {
    /// The proof of entry `index` of `block`: its header, certificate,
    /// the entry and its Merkle path. `None` if there is no such entry.
    pub fn of_block(
        block: &CommittedBlock,
        index: usize,
    ) -> Result<Option<Self>, crate::codec::EncodeError> {
        let Some(entry) = block.block.entries.get(index) else {
            return Ok(None);
        };
        let leaves = block.block.leaf_hashes()?;
        Ok(merkle::prove(&leaves, index).map(|path| EntryProof {
            header: block.block.header.clone(),
            certificate: block.certificate.clone(),
            entry: entry.clone(),
            path,
        }))
    }

    /// Checks the header's chain and epoch, the certificate against the
    /// validators of `epoch` (the members of the block's epoch, whose keys
    /// also sign endorsements), the entry's endorsements with the contract
    /// requirement judged against `rules` (the state the entries before it
    /// in the block left: `epoch`, unless one of them changed membership),
    /// and the Merkle path. Returns the entry id.
    fn verify(
        &self,
        epoch: &State,
        rules: &State,
        after_height: u64,
    ) -> Result<EntryId, StepError> {
        let header = &self.header;
        if header.chain_id != epoch.chain_id {
            return Err(StepError::ChainId(header.chain_id.clone()));
        }
        if header.epoch != epoch.epoch {
            return Err(StepError::Epoch {
                expected: epoch.epoch,
                found: header.epoch,
            });
        }
        if header.height <= after_height {
            return Err(StepError::Height {
                after: after_height,
                found: header.height,
            });
        }
        let hash = header.hash().map_err(encode_err)?;
        let cert = &self.certificate;
        if cert.height != header.height || cert.value_id != hash.0 {
            return Err(StepError::CertifiesAnotherBlock);
        }
        verify_certificate(&epoch.chain_id, &validators_of(epoch), cert)?;
        let id = self.entry.id().map_err(encode_err)?;
        // The entry before its path: a tampered endorsement is named for
        // what it is, not just as a path that leads elsewhere.
        self.check_endorsements(&id, epoch, rules)?;
        let leaf = self.entry.leaf_hash().map_err(encode_err)?;
        self.path.verify(&leaf, &header.tx_root)?;
        Ok(id)
    }

    /// The endorsement rules of docs/ledger-format.md section 5, rule 2.
    fn check_endorsements(
        &self,
        id: &EntryId,
        epoch: &State,
        rules: &State,
    ) -> Result<(), EntryError> {
        let proposal = &self.entry.proposal;
        if proposal.chain_id != epoch.chain_id {
            return Err(EntryError::ChainId(proposal.chain_id.clone()));
        }
        if proposal.epoch > epoch.epoch {
            return Err(EntryError::Epoch {
                expected: epoch.epoch,
                found: proposal.epoch,
            });
        }
        check_endorsement_signatures(&self.entry, id, &keys_of(epoch))?;
        let endorsers: BTreeSet<MemberId> =
            self.entry.endorsements.iter().map(|e| e.member).collect();
        if !endorsers.contains(&proposal.proposer) {
            return Err(EntryError::MissingProposerEndorsement);
        }
        contracts::check_endorsements(rules, proposal.proposer, &proposal.body, &endorsers)?;
        Ok(())
    }
}

impl GrantProof {
    /// Verifies the proof. With `trusted_genesis`, the genesis block must be
    /// that one; without, the proof's own genesis is taken as the chain's.
    pub fn verify(&self, trusted_genesis: Option<&Hash>) -> Result<VerifiedGrant, ProofError> {
        let walked = walk_membership(&self.genesis, &self.membership_changes, trusted_genesis)?;
        let (chain, changes, state, height, before_last) = (
            walked.genesis,
            &self.membership_changes,
            walked.state,
            walked.height,
            walked.before_last,
        );
        let step = changes.len();
        let fail = |reason: StepError| ProofError::Step { step, reason };
        let grant = &self.grant;
        // Named first: any other check would fail on it less clearly.
        let Body::Grant(terms) = &grant.entry.proposal.body else {
            return Err(ProofError::NotAGrant);
        };
        let id = match (changes.last(), &before_last) {
            // A change earlier in the grant's own block: the grant was
            // endorsed and certified in the epoch before it, and the
            // contract rules judged it against the state after it.
            (Some(change), Some(epoch)) if change.header.height == grant.header.height => {
                if change.header != grant.header || change.path.index >= grant.path.index {
                    return Err(fail(StepError::NotEarlierInBlock));
                }
                grant.verify(epoch, &state, height - 1).map_err(fail)?
            }
            _ => grant.verify(&state, &state, height).map_err(fail)?,
        };
        Ok(VerifiedGrant {
            id: GrantId(id.0),
            terms: terms.clone(),
            height: grant.header.height,
            genesis_hash: chain.genesis_hash(),
        })
    }
}

/// The state a proof's membership changes lead to from its genesis.
struct Walked {
    /// The genesis chain state.
    genesis: ChainState,
    /// The members' state after every change.
    state: State,
    /// The height of the last change (0 if none).
    height: u64,
    /// The state before the last change.
    before_last: Option<State>,
}

/// Verifies `genesis` (against `trusted_genesis` if given) and replays
/// `changes` on its state: each one checked as an entry of its block.
fn walk_membership(
    genesis: &CommittedBlock,
    changes: &[EntryProof],
    trusted_genesis: Option<&Hash>,
) -> Result<Walked, ProofError> {
    let chain =
        ChainState::from_genesis(genesis).map_err(|e| ProofError::Genesis(e.to_string()))?;
    if let Some(expected) = trusted_genesis
        && *expected != chain.genesis_hash()
    {
        return Err(ProofError::GenesisMismatch {
            expected: *expected,
            found: chain.genesis_hash(),
        });
    }
    if changes.len() > MEMBERSHIP_CHANGES_MAX {
        return Err(ProofError::TooLong(changes.len()));
    }
    // Membership rules do not depend on grants, so replaying only the
    // membership changes on the genesis state yields each epoch's member
    // set exactly.
    let mut state = chain.state().clone();
    let mut height = 0;
    // The state before the last change: the grant's epoch if that change
    // is in the grant's own block. Kept for the last one only.
    let mut before_last = None;
    for (step, change) in changes.iter().enumerate() {
        let fail = |reason: StepError| ProofError::Step { step, reason };
        // At most one membership change per block, so none came before
        // this one in its block: its rules are its epoch's.
        let id = change.verify(&state, &state, height).map_err(fail)?;
        let proposal = &change.entry.proposal;
        if !proposal.body.changes_membership() {
            return Err(fail(StepError::NotAMembershipChange));
        }
        if step + 1 == changes.len() {
            before_last = Some(state.clone());
        }
        let ctx = ApplyContext {
            entry_id: id.0,
            height: change.header.height,
            time: change.header.time,
        };
        state
            .apply(ctx, proposal.proposer, &proposal.body)
            .map_err(|v| fail(v.into()))?;
        height = change.header.height;
    }
    Ok(Walked {
        genesis: chain,
        state,
        height,
        before_last,
    })
}

/// A proof of a grant's record in the consortium state at one committed
/// height, or of its absence: the record's leaf in the state tree, against
/// the `state_root` of that height's certified header, which is linked to
/// genesis through every membership change before it (docs/ledger-format.md
/// section 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusProof {
    /// The genesis block (verified in full).
    pub genesis: CommittedBlock,
    /// Every membership change in blocks before `header`, in order.
    pub membership_changes: Vec<EntryProof>,
    /// The header of the block at the height the status is proven at.
    pub header: BlockHeader,
    /// That block's quorum certificate.
    pub certificate: QuorumCertificate,
    /// The grant.
    pub grant_id: GrantId,
    /// The grant's record at that height (canonical CBOR of a
    /// `GrantRecord`), or `None` if it did not exist then.
    #[serde(with = "serde_bytes")]
    pub record: Option<Vec<u8>>,
    /// The state tree path of the grant's row to `header.state_root`.
    pub path: smt::Proof,
}

/// What a verified status proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedStatus {
    /// The grant.
    pub id: GrantId,
    /// The height proven at, and that block's time.
    pub height: u64,
    /// The block's time.
    pub time: Timestamp,
    /// The record at that height, or `None`: the grant did not exist.
    pub record: Option<GrantRecord>,
    /// The chain's genesis hash.
    pub genesis_hash: Hash,
}

impl VerifiedStatus {
    /// What the record meant at the block's time: `active`, `expired`,
    /// `not-yet-valid`, `revoked`, `ended`, or `absent`.
    pub fn standing(&self) -> &'static str {
        match &self.record {
            None => "absent",
            Some(record) => match record.status {
                GrantStatus::Revoked { .. } => "revoked",
                GrantStatus::Ended { .. } => "ended",
                GrantStatus::Active if self.time >= record.terms.not_after => "expired",
                GrantStatus::Active if self.time < record.terms.not_before => "not-yet-valid",
                GrantStatus::Active => "active",
            },
        }
    }
}

/// Why a status proof does not verify (beyond its membership chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The genesis or a membership change fails.
    #[error(transparent)]
    Chain(#[from] ProofError),
    /// The proven block's header or certificate fails.
    #[error("the block at height {height}: {reason}")]
    Header {
        /// The header's height.
        height: u64,
        /// What is wrong.
        reason: StepError,
    },
    /// A membership change is not before the proven height.
    #[error("a membership change at height {change} is not before the proven height {height}")]
    ChangeNotBefore {
        /// The change's height.
        change: u64,
        /// The proven height.
        height: u64,
    },
    /// The state tree path does not lead to the header's state root.
    #[error("state path: {0}")]
    Path(#[from] smt::ProofError),
    /// The record's bytes are not a canonical grant record.
    #[error("the record does not decode: {0}")]
    Record(String),
}

impl StatusProof {
    /// Verifies the proof. With `trusted_genesis`, the genesis block must be
    /// that one.
    pub fn verify(&self, trusted_genesis: Option<&Hash>) -> Result<VerifiedStatus, StatusError> {
        let walked = verify_certified_header(
            &self.genesis,
            &self.membership_changes,
            &self.header,
            &self.certificate,
            trusted_genesis,
        )?;
        let key = crate::chain::rows::grant_key(&self.grant_id);
        let record: Option<GrantRecord> =
            verify_row(&self.header, &key, self.record.as_deref(), &self.path)?;
        Ok(VerifiedStatus {
            id: self.grant_id,
            height: self.header.height,
            time: self.header.time,
            record,
            genesis_hash: walked.genesis.genesis_hash(),
        })
    }
}

/// Checks `header` and its certificate against genesis and the membership
/// changes before it (docs/ledger-format.md section 6.3, steps 1 to 4):
/// what every proof of a state row at a height starts with.
fn verify_certified_header(
    genesis: &CommittedBlock,
    changes: &[EntryProof],
    header: &BlockHeader,
    cert: &QuorumCertificate,
    trusted_genesis: Option<&Hash>,
) -> Result<Walked, StatusError> {
    let walked = walk_membership(genesis, changes, trusted_genesis)?;
    if walked.height >= header.height && !changes.is_empty() {
        return Err(StatusError::ChangeNotBefore {
            change: walked.height,
            height: header.height,
        });
    }
    let fail = |reason| StatusError::Header {
        height: header.height,
        reason,
    };
    let epoch = &walked.state;
    if header.chain_id != epoch.chain_id {
        return Err(fail(StepError::ChainId(header.chain_id.clone())));
    }
    // Every membership change moves the epoch, and the header names
    // its epoch under the certificate: one left out fails here.
    if header.epoch != epoch.epoch {
        return Err(fail(StepError::Epoch {
            expected: epoch.epoch,
            found: header.epoch,
        }));
    }
    let hash = header.hash().map_err(|e| fail(encode_err(e)))?;
    if cert.height != header.height || cert.value_id != hash.0 {
        return Err(fail(StepError::CertifiesAnotherBlock));
    }
    // The genesis block is verified in full above; later blocks are
    // certified by the validators of their epoch.
    if header.height > 0 {
        verify_certificate(&epoch.chain_id, &validators_of(epoch), cert)
            .map_err(|e| fail(e.into()))?;
    } else if hash != walked.genesis.genesis_hash() {
        return Err(fail(StepError::CertifiesAnotherBlock));
    }
    Ok(walked)
}

/// Checks that `key`'s value under `header.state_root` is `record` (or
/// that it has none) and decodes it (section 6.3, steps 5 and 6).
fn verify_row<T: serde::de::DeserializeOwned + Serialize>(
    header: &BlockHeader,
    key: &smt::KeyHash,
    record: Option<&[u8]>,
    path: &smt::Proof,
) -> Result<Option<T>, StatusError> {
    path.verify(&header.state_root, key, record)?;
    record
        .map(|bytes| crate::codec::decode(bytes).map_err(|e| StatusError::Record(e.to_string())))
        .transpose()
}

/// A proof of a member's row in the consortium state at one committed
/// height, or of its absence (never admitted by then, or removed): the
/// row's leaf in the state tree against that height's certified header,
/// linked to genesis as a [`StatusProof`] is (docs/ledger-format.md
/// section 6.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatusProof {
    /// The genesis block (verified in full).
    pub genesis: CommittedBlock,
    /// Every membership change in blocks before `header`, in order.
    pub membership_changes: Vec<EntryProof>,
    /// The header of the block at the height the status is proven at.
    pub header: BlockHeader,
    /// That block's quorum certificate.
    pub certificate: QuorumCertificate,
    /// The member.
    pub member_id: MemberId,
    /// The member's row at that height (canonical CBOR of a `Member`), or
    /// `None` if it was not a member then.
    #[serde(with = "serde_bytes")]
    pub record: Option<Vec<u8>>,
    /// The state tree path of the member's row to `header.state_root`.
    pub path: smt::Proof,
}

/// What a verified member status proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMember {
    /// The member.
    pub id: MemberId,
    /// The height proven at.
    pub height: u64,
    /// That block's time.
    pub time: Timestamp,
    /// Its row then (name and key), or `None`: not a member at that height.
    pub record: Option<Member>,
    /// The chain's genesis hash.
    pub genesis_hash: Hash,
}

impl MemberStatusProof {
    /// Verifies the proof. With `trusted_genesis`, the genesis block must be
    /// that one.
    pub fn verify(&self, trusted_genesis: Option<&Hash>) -> Result<VerifiedMember, StatusError> {
        let walked = verify_certified_header(
            &self.genesis,
            &self.membership_changes,
            &self.header,
            &self.certificate,
            trusted_genesis,
        )?;
        let key = crate::chain::rows::member_key(&self.member_id);
        let record: Option<Member> =
            verify_row(&self.header, &key, self.record.as_deref(), &self.path)?;
        if let Some(member) = &record
            && member.id != self.member_id
        {
            return Err(StatusError::Record(format!(
                "the row is member {}'s, not {}'s",
                member.id, self.member_id
            )));
        }
        Ok(VerifiedMember {
            id: self.member_id,
            height: self.header.height,
            time: self.header.time,
            record,
            genesis_hash: walked.genesis.genesis_hash(),
        })
    }
}
