//! The Quorate node: configuration, the node home on disk, and (as later
//! parts land) the libp2p swarm and the driver that turns the agreement
//! machine's effects into sends, disk writes and timers.
//!
//! This is the effectful shell around the pure crates (`quorate-did`,
//! `quorate-contracts`, `quorate-ledger`): it is the only crate that owns
//! sockets, tasks and the clock. The `quorate` binary's command-line
//! interface lives in `main.rs` and `cli/`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod api;
pub mod audit;
pub mod config;
pub mod driver;
pub mod duration;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod gateway;
pub mod home;
pub mod lock;
pub mod mempool;
pub mod network;
pub mod nonces;
pub mod objects;
pub mod protocol;
pub mod run;
pub mod upstream;
