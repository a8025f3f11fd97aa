//! The consortium's rules, as deterministic functions every node runs
//! identically.
//!
//! This crate owns the data model of what members agree to (members, grants,
//! revocations, membership changes, key rotations, policy), the rules for who
//! may propose what and whose endorsements make an entry valid, the
//! consortium `State` those entries build, and `authorize`, the single
//! decision every gateway request goes through.
//!
//! It is pure: it depends only on `quorate-did` and `serde`. It must not
//! depend on an async runtime, the network, storage, or the clock: time comes
//! in as a [`Timestamp`] argument.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

mod primitives;

pub use primitives::{MemberId, Timestamp};
