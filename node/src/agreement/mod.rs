//! Agreement and the ledger's write side: the driver that runs the
//! Tendermint machine (`quorate_ledger::consensus`) over the network, keeps
//! the mempool of pending proposals, and syncs blocks from peers; beside
//! it, the [`sync_server`] answers peers' status and block requests from a
//! read handle on the store.

pub mod driver;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod mempool;
pub mod policy;
pub mod sync_server;
