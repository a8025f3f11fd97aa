//! Proofs and ledger reads for the local API, answered from a read handle
//! on the store ([`LedgerReader`]) on a blocking thread: the agreement
//! task never serves them, so a burst of proof requests cannot delay a
//! commit, and a slow proof cannot wait behind one.

use quorate_contracts::{GrantId, State};
use quorate_ledger::ledger::{LedgerError, LedgerReader};

/// Why a grant's proof could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantProofError {
    /// The ledger has no such grant.
    #[error("no committed grant {0}")]
    UnknownGrant(GrantId),
    /// The ledger could not be read.
    #[error("cannot read the ledger: {0}")]
    Read(#[from] LedgerError),
    /// The proof could not be encoded.
    #[error("the proof cannot be encoded: {0}")]
    Encode(#[from] quorate_ledger::codec::EncodeError),
}

/// Why a status proof could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusProofError {
    /// The ledger has no such grant.
    #[error("no committed grant {0}")]
    UnknownGrant(GrantId),
    /// No member by that name now, and no member ever held that key.
    #[error(
        "no member {0:?} (a name is looked up among current members, a did:key among every member that held it)"
    )]
    UnknownMember(String),
    /// The height is past the tip.
    #[error("height {height} is beyond the tip ({tip})")]
    BeyondTip {
        /// Asked for.
        height: u64,
        /// The tip.
        tip: u64,
    },
    /// The state at that height is not held.
    #[error("the state at height {0} is not held by this node")]
    NotHeld(u64),
    /// No ledger yet.
    #[error("the node has no ledger yet")]
    NoLedger,
    /// The ledger could not be read.
    #[error("cannot read the ledger: {0}")]
    Read(String),
}

impl From<LedgerError> for StatusProofError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::BeyondTip { height, tip } => Self::BeyondTip { height, tip },
            LedgerError::NotHeld { height } => Self::NotHeld(height),
            LedgerError::NoGenesis => Self::NoLedger,
            other => Self::Read(other.to_string()),
        }
    }
}

/// Grant `id`'s proof of commitment, encoded.
pub fn grant_proof(reader: &LedgerReader, id: &GrantId) -> Result<Vec<u8>, GrantProofError> {
    // Reads the chain up to the grant's block: membership changes are few,
    // so this stays small.
    match reader.grant_proof(id)? {
        Some(proof) => Ok(quorate_ledger::codec::encode(&proof)?),
        None => Err(GrantProofError::UnknownGrant(*id)),
    }
}

/// Grant `id`'s status proof at `at` (the tip if `None`), encoded. A grant
/// the ledger never committed has no status to prove; one committed after
/// `at` is proven absent at `at`.
pub fn grant_status(
    reader: &LedgerReader,
    id: &GrantId,
    at: Option<u64>,
) -> Result<Vec<u8>, StatusProofError> {
    if !reader.has_grant(id)? {
        return Err(StatusProofError::UnknownGrant(*id));
    }
    let proof = reader.status_proof(id, at)?;
    quorate_ledger::codec::encode(&proof).map_err(|e| StatusProofError::Read(e.to_string()))
}

/// The status proof of `member` (its did:key, current or former, or a
/// current member's name in `state`) at `at`, encoded.
pub fn member_status(
    reader: &LedgerReader,
    state: &State,
    member: &str,
    at: Option<u64>,
) -> Result<Vec<u8>, StatusProofError> {
    let id = match member.parse::<quorate_did::Did>() {
        Ok(did) => reader.member_holding(&did, at)?,
        Err(_) => state.member_named(member).map(|m| m.id),
    }
    .ok_or_else(|| StatusProofError::UnknownMember(member.to_owned()))?;
    let proof = reader.member_status_proof(&id, at)?;
    quorate_ledger::codec::encode(&proof).map_err(|e| StatusProofError::Read(e.to_string()))
}
