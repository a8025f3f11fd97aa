//! The Quorate node: the effectful shell around the pure crates
//! (`quorate-did`, `quorate-contracts`, `quorate-ledger`). It is the only
//! crate that owns sockets, tasks, the clock and the files of a node home.
//!
//! - [`home`]: the node home on disk (keys, config, the lock);
//! - [`net`]: the libp2p swarm, its protocols and per-peer budgets;
//! - [`agreement`]: the driver (consensus, mempool, sync, commits);
//! - [`gateway`]: members' data requests, authorized against the ledger's
//!   grants, with the objects, upstreams, nonces and audit log they use;
//! - [`local_api`]: the adapter the HTTP API (`quorate-api`) calls;
//! - [`run`]: wiring one node together.
//!
//! The `quorate` command-line interface is a package of its own
//! (`node/cli`), so this library depends on neither clap nor anyhow.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod agreement;
pub mod events;
pub mod gateway;
pub mod home;
pub mod local_api;
pub mod net;
pub mod oidc;
pub mod proofs;
pub mod run;
pub mod sharing;
mod views;
