//! Entries: a member's proposal plus the signatures that make it valid.
//!
//! An entry is self-verifying: with the member set of its epoch anyone can
//! check its endorsements, without trusting the node that shows it.

use quorate_contracts::{Body, MemberId, Timestamp};
use quorate_did::{Did, Keypair, Signature};
use serde::{Deserialize, Serialize};

use crate::codec::{self, EncodeError};
use crate::hash::{Hash, hash_tagged, tag};

/// Most endorsements an entry may carry: one per member, and membership is
/// bounded by the genesis and `AddMember` rules.
pub const ENDORSEMENTS_MAX: usize = 256;

/// Domain tag of an endorsement signature (STYLE.md: every signed payload
/// starts with one, so a signature made for one purpose is never valid for
/// another).
pub const ENDORSEMENT_SIGNING_TAG: &[u8] = b"QUORATE_ENDORSEMENT_V1";

/// What a member proposes: the part of an entry that is hashed and signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The chain it is for, so it cannot be replayed on another consortium.
    pub chain_id: String,
    /// The epoch it was proposed in; valid in that epoch and later ones
    /// (its endorsements are checked against the block's members), never
    /// in an earlier one.
    pub epoch: u64,
    /// The proposing member.
    pub proposer: MemberId,
    /// Distinguishes otherwise identical proposals.
    pub nonce: u64,
    /// When the proposer created it.
    pub created_at: Timestamp,
    /// What is proposed.
    pub body: Body,
}

/// The identity of an entry: the hash of its proposal's canonical bytes.
/// Grant ids and member ids are entry ids.
pub type EntryId = Hash;

/// One member's signature of an entry id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endorsement {
    /// The endorsing member.
    pub member: MemberId,
    /// Its signature of [`endorsement_message`].
    pub signature: Signature,
}

/// A proposal with its endorsements. The proposer's own endorsement is one
/// of them and is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What is proposed.
    pub proposal: Proposal,
    /// Endorsements, sorted by member id, at most one per member.
    pub endorsements: Vec<Endorsement>,
}

/// The bytes a member signs to endorse entry `id`.
pub fn endorsement_message(id: &EntryId) -> Vec<u8> {
    let mut message = Vec::with_capacity(ENDORSEMENT_SIGNING_TAG.len() + 32);
    message.extend_from_slice(ENDORSEMENT_SIGNING_TAG);
    message.extend_from_slice(&id.0);
    message
}

impl Proposal {
    /// The entry id: `blake3-derive-key("quorate 2026 ledger entry v1",
    /// canonical CBOR of the proposal)`.
    pub fn id(&self) -> Result<EntryId, EncodeError> {
        Ok(hash_tagged(tag::ENTRY, &codec::encode(self)?))
    }
}

impl Entry {
    /// A new entry endorsed by its proposer.
    pub fn propose(proposal: Proposal, key: &Keypair) -> Result<Self, EncodeError> {
        let id = proposal.id()?;
        let endorsement = Endorsement {
            member: proposal.proposer,
            signature: crate::verified::sign_own(key, &endorsement_message(&id)),
        };
        Ok(Self {
            proposal,
            endorsements: vec![endorsement],
        })
    }

    /// The entry id.
    pub fn id(&self) -> Result<EntryId, EncodeError> {
        self.proposal.id()
    }

    /// The entry's leaf in its block's `tx_root`:
    /// `blake3-derive-key("quorate 2026 block entry v2", canonical CBOR of
    /// the whole entry)`. Unlike the id it covers the endorsements, so the
    /// endorsements a block was agreed with cannot be changed afterwards
    /// (a surplus one dropped, say) without changing the block hash.
    pub fn leaf_hash(&self) -> Result<Hash, EncodeError> {
        Ok(hash_tagged(tag::BLOCK_ENTRY, &codec::encode(self)?))
    }

    /// Adds `member`'s endorsement (replacing an earlier one of the same
    /// member), keeping the list sorted by member id.
    pub fn endorse(&mut self, member: MemberId, key: &Keypair) -> Result<(), EncodeError> {
        let signature = crate::verified::sign_own(key, &endorsement_message(&self.id()?));
        self.add_endorsement(Endorsement { member, signature });
        Ok(())
    }

    /// Adds an endorsement received from elsewhere (not verified here),
    /// keeping the list sorted and free of duplicates.
    pub fn add_endorsement(&mut self, endorsement: Endorsement) {
        match self
            .endorsements
            .binary_search_by(|e| e.member.cmp(&endorsement.member))
        {
            Ok(at) => self.endorsements[at] = endorsement,
            Err(at) => self.endorsements.insert(at, endorsement),
        }
    }
}

/// Checks one endorsement signature against the endorser's current key.
pub fn verify_endorsement(id: &EntryId, endorsement: &Endorsement, key: &Did) -> bool {
    crate::verified::verify(key, &endorsement_message(id), &endorsement.signature)
}
