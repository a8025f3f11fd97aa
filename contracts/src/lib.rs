//! The consortium's rules, as deterministic functions every node runs
//! identically.
//!
//! This crate owns the data model of what members agree to ([`model`]:
//! members, grants, revocations, membership changes, key rotations, policy),
//! the rules for who may propose what and whose endorsements make an entry
//! valid, the consortium [`State`] those entries build ([`state`]), and
//! [`authorize`], the single decision every gateway request goes through.
//! `docs/contracts.md` states the rules in prose.
//!
//! It is pure: it depends only on `quorate-did` and `serde`. It must not
//! depend on an async runtime, the network, storage, encoding, or the
//! clock: time comes in as a [`Timestamp`] argument.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

mod authorize;
pub mod grants;
pub mod model;
mod primitives;
pub mod state;

pub use authorize::{AccessRequest, Decision, DenyKind, DenyReason, authorize};
pub use grants::{GrantCounts, GrantRows, RowsError};
pub use model::{
    Action, Body, Genesis, GrantId, GrantRecord, GrantStatus, GrantTerms, Member, NewMember,
    PathError, Policy, RateLimit, ResourcePath, ResourcePattern,
};
pub use primitives::{
    MemberId, Timestamp, civil_from_days, human_duration_ms, parse_hex32, rfc3339_ms,
    truncate_at_char,
};

/// For [`bytes32!`]: the serde its expansion names, whatever the calling
/// crate calls its own.
#[doc(hidden)]
pub use serde as __serde;
pub use state::{
    ApplyContext, Changes, Consortium, Requirement, State, Violation, check_endorsements,
    check_proposal, max_faulty, quorum, required_endorsements,
};

#[cfg(test)]
mod tests;
