//! The signed messages of a proposal's life besides endorsements: a
//! member's rejection (with its reason) and the proposer's withdrawal.
//! Neither reaches the ledger; both are gossiped, so every member sees the
//! same outcome, and both are signed, so nobody can reject or withdraw in
//! another's name.

use quorate_contracts::MemberId;
use quorate_did::{Did, Keypair, Signature};
use quorate_ledger::entry::EntryId;
use serde::{Deserialize, Serialize};

/// Longest reason a rejection carries, in bytes (a longer one is cut at a
/// character boundary when made, and refused when received).
pub const REASON_BYTES_MAX: usize = quorate_api::local::requests::REASON_BYTES_MAX;

/// Domain tag of a rejection's signed bytes.
const REJECTION_TAG: &[u8] = b"QUORATE_REJECTION_V1";
/// Domain tag of a withdrawal's signed bytes.
const WITHDRAWAL_TAG: &[u8] = b"QUORATE_WITHDRAWAL_V1";

/// A member's refusal to endorse a proposal. Final: a member that rejected
/// cannot endorse the same proposal, nor one that endorsed reject it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Who rejects.
    pub member: MemberId,
    /// Why, for the proposer and the others to read.
    pub reason: String,
    /// The member's signature of [`rejection_message`].
    pub signature: Signature,
}

/// The proposer's withdrawal of its proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// The proposer's signature of [`withdrawal_message`].
    pub signature: Signature,
}

/// The bytes a member signs to reject `id` for `reason`:
/// `"QUORATE_REJECTION_V1" ‖ id ‖ reason` (the reason's UTF-8 bytes; the
/// fixed-length id keeps the split unambiguous).
pub fn rejection_message(id: &EntryId, reason: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(REJECTION_TAG.len() + 32 + reason.len());
    message.extend_from_slice(REJECTION_TAG);
    message.extend_from_slice(&id.0);
    message.extend_from_slice(reason.as_bytes());
    message
}

/// The bytes a proposer signs to withdraw `id`:
/// `"QUORATE_WITHDRAWAL_V1" ‖ id`.
pub fn withdrawal_message(id: &EntryId) -> Vec<u8> {
    let mut message = Vec::with_capacity(WITHDRAWAL_TAG.len() + 32);
    message.extend_from_slice(WITHDRAWAL_TAG);
    message.extend_from_slice(&id.0);
    message
}

/// `reason` cut to [`REASON_BYTES_MAX`] at a character boundary.
pub fn bounded_reason(reason: &str) -> String {
    quorate_contracts::truncate_at_char(reason, REASON_BYTES_MAX).to_owned()
}

impl Rejection {
    /// `member`'s signed rejection of `id`.
    pub fn sign(id: &EntryId, member: MemberId, reason: &str, key: &Keypair) -> Self {
        let reason = bounded_reason(reason);
        let signature = key.sign(&rejection_message(id, &reason));
        Self {
            member,
            reason,
            signature,
        }
    }

    /// Whether it is within bounds and signed by `key`.
    pub fn verify(&self, id: &EntryId, key: &Did) -> bool {
        self.reason.len() <= REASON_BYTES_MAX
            && quorate_ledger::verified::verify(
                key,
                &rejection_message(id, &self.reason),
                &self.signature,
            )
    }
}

impl Withdrawal {
    /// The proposer's signed withdrawal of `id`.
    pub fn sign(id: &EntryId, key: &Keypair) -> Self {
        Self {
            signature: key.sign(&withdrawal_message(id)),
        }
    }

    /// Whether it is signed by `key`.
    pub fn verify(&self, id: &EntryId, key: &Did) -> bool {
        quorate_ledger::verified::verify(key, &withdrawal_message(id), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use quorate_ledger::hash::Hash;

    use super::*;

    #[test]
    fn a_rejection_binds_its_member_proposal_and_reason() {
        let key = Keypair::from_seed(&[7; 32]);
        let other = Keypair::from_seed(&[8; 32]);
        let id = Hash([1; 32]);
        let member = quorate_contracts::MemberId([3; 32]);
        let r = Rejection::sign(&id, member, "not our data", &key);
        assert!(r.verify(&id, &key.did()));
        assert!(!r.verify(&id, &other.did()));
        assert!(!r.verify(&Hash([2; 32]), &key.did()));
        let mut changed = r.clone();
        changed.reason = "something else".into();
        assert!(!changed.verify(&id, &key.did()));

        let w = Withdrawal::sign(&id, &key);
        assert!(w.verify(&id, &key.did()) && !w.verify(&Hash([2; 32]), &key.did()));
        // A withdrawal's signature is no rejection's with an empty reason.
        let as_rejection = Rejection {
            member,
            reason: String::new(),
            signature: w.signature,
        };
        assert!(!as_rejection.verify(&id, &key.did()));
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary_and_refused_when_received() {
        let long = "é".repeat(REASON_BYTES_MAX);
        let cut = bounded_reason(&long);
        assert!(cut.len() <= REASON_BYTES_MAX && cut.len() >= REASON_BYTES_MAX - 1);
        let key = Keypair::from_seed(&[7; 32]);
        let id = Hash([1; 32]);
        let member = quorate_contracts::MemberId([3; 32]);
        let mut r = Rejection::sign(&id, member, &long, &key);
        assert!(r.verify(&id, &key.did()));
        r.reason = "x".repeat(REASON_BYTES_MAX + 1);
        r.signature = key.sign(&rejection_message(&id, &r.reason));
        assert!(!r.verify(&id, &key.did()));
    }
}
