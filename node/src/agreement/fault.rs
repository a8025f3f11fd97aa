//! Test-only Byzantine behaviour, compiled only with the `fault-injection`
//! feature and switched on by `QUORATE_FAULT` (comma-separated):
//!
//! - `equivocate`: every vote this node signs is followed by a second,
//!   validly signed vote for a different value at the same height, round
//!   and step;
//! - `forge-grant`: every few seconds this node gossips grant proposals it
//!   has no right to make: one claiming another member as proposer (its
//!   signature is ours, so it does not verify), one granting another
//!   member's data, and one carrying endorsements forged in other members'
//!   names;
//! - `clock-offset-ms:N` (N may be negative): this node's wall clock, as
//!   [`crate::agreement::driver::now`] reads it, is N ms off;
//! - `audit-write-fails:PATH`: while the file PATH exists, every write of
//!   the audit log fails as on a full disk (so a test can fill and empty
//!   the "disk" from outside).
//!
//! Honest nodes must detect the equivocation, never commit two blocks at
//! one height, and never accept a forged grant (`tests/tests/byzantine.rs`);
//! a member with a skewed clock must not move the chain's clock or stop
//! the others agreeing (`tests/tests/clock_skew.rs`).

use quorate_contracts::{Action, Body, GrantTerms, MemberId, ResourcePattern, State, Timestamp};
use quorate_did::Keypair;
use quorate_ledger::consensus::SignedVote;
use quorate_ledger::entry::{Endorsement, Entry, Proposal, endorsement_message};

/// Which faults are on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Send a conflicting vote after each vote.
    pub equivocate: bool,
    /// Gossip forged grant proposals.
    pub forge_grant: bool,
    /// How far this node's clock is off (ms).
    pub clock_offset_ms: i64,
}

impl Faults {
    /// From `QUORATE_FAULT`.
    pub fn from_env() -> Self {
        let spec = std::env::var("QUORATE_FAULT").unwrap_or_default();
        let faults = Self {
            equivocate: spec.split(',').any(|f| f.trim() == "equivocate"),
            forge_grant: spec.split(',').any(|f| f.trim() == "forge-grant"),
            clock_offset_ms: parse_clock_offset(&spec),
        };
        if faults.equivocate || faults.forge_grant || faults.clock_offset_ms != 0 {
            tracing::warn!(
                ?faults,
                "FAULT INJECTION ON: this node misbehaves on purpose"
            );
        }
        faults
    }
}

/// The `clock-offset-ms:N` of a `QUORATE_FAULT` spec (0 if none).
fn parse_clock_offset(spec: &str) -> i64 {
    spec.split(',')
        .find_map(|f| f.trim().strip_prefix("clock-offset-ms:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The clock offset `QUORATE_FAULT` asks for, read once per process.
pub fn clock_offset_ms() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| parse_clock_offset(&std::env::var("QUORATE_FAULT").unwrap_or_default()))
}

/// The flag file of `audit-write-fails:PATH`, read once per process.
pub fn audit_write_fails() -> Option<&'static std::path::Path> {
    static FLAG: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let spec = std::env::var("QUORATE_FAULT").unwrap_or_default();
        let flag = spec
            .split(',')
            .find_map(|f| f.trim().strip_prefix("audit-write-fails:"))
            .map(std::path::PathBuf::from);
        if let Some(flag) = &flag {
            tracing::warn!(flag = %flag.display(), "FAULT INJECTION ON: audit writes fail while the flag file exists");
        }
        flag
    })
    .as_deref()
}

/// A vote for another value at the same height, round and step.
pub fn conflicting_vote(chain_id: &str, vote: &SignedVote, key: &Keypair) -> SignedVote {
    let other = match vote.value_id {
        Some(value) => Some(value.map(|b| b ^ 0xFF)),
        None => Some([0xEE; 32]),
    };
    SignedVote::sign(
        chain_id,
        vote.kind,
        vote.height,
        vote.round,
        other,
        vote.voter,
        key,
    )
}

/// Grant proposals this node has no right to make.
pub fn forged_entries(
    state: &State,
    chain_id: &str,
    me: MemberId,
    key: &Keypair,
    now: Timestamp,
) -> Vec<Entry> {
    let others: Vec<MemberId> = state.members.keys().copied().filter(|m| *m != me).collect();
    let [victim, second, third, ..] = others.as_slice() else {
        return Vec::new();
    };
    let grant = |grantor: MemberId| {
        Body::Grant(GrantTerms {
            grantor,
            grantee: me,
            resources: vec![ResourcePattern::parse("*").expect("a valid pattern")],
            actions: vec![Action::Read, Action::List],
            not_before: now,
            not_after: Timestamp(now.0 + 86_400_000),
            purpose: Some("forged".into()),
            rate_limit: None,
        })
    };
    let proposal = |proposer: MemberId, body: Body, nonce: u64| Proposal {
        chain_id: chain_id.to_owned(),
        epoch: state.epoch,
        proposer,
        nonce,
        created_at: now,
        body,
    };
    let mut entries = Vec::new();
    // 1. In the victim's name, signed with our key.
    if let Ok(entry) = Entry::propose(proposal(*victim, grant(*victim), now.0), key) {
        entries.push(entry);
    }
    // 2. Our own proposal granting the victim's data.
    if let Ok(entry) = Entry::propose(proposal(me, grant(*victim), now.0 + 1), key) {
        entries.push(entry);
    }
    // 3. Like 1, with endorsements forged for two other members: enough
    //    names for a quorum, none of them signed by its member.
    if let Ok(mut entry) = Entry::propose(proposal(*victim, grant(*victim), now.0 + 2), key)
        && let Ok(id) = entry.id()
    {
        for member in [*second, *third] {
            entry.add_endorsement(Endorsement {
                member,
                signature: key.sign(&endorsement_message(&id)),
            });
        }
        entries.push(entry);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::parse_clock_offset;

    #[test]
    fn the_clock_offset_is_read_from_the_fault_spec() {
        assert_eq!(parse_clock_offset(""), 0);
        assert_eq!(parse_clock_offset("equivocate"), 0);
        assert_eq!(parse_clock_offset("clock-offset-ms:300000"), 300_000);
        assert_eq!(
            parse_clock_offset("forge-grant, clock-offset-ms:-300000"),
            -300_000
        );
        assert_eq!(parse_clock_offset("clock-offset-ms:soon"), 0);
    }
}
