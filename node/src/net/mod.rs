//! The peer-to-peer network: a libp2p swarm (TCP + Noise + Yamux, identify,
//! ping, gossipsub, request-response) owned by one event loop.
//!
//! The network knows nothing of ledgers or votes: it moves bytes between
//! members and tells the driver who sent them. Every peer is named by its
//! `did:key` — the libp2p identity is the member's Ed25519 key, so the Noise
//! handshake proves the peer holds the key its DID names ([`identity`]).
//!
//! Shape (rust-libp2p's file-sharing example): a cloneable [`Client`] sends
//! [`Command`]s over a bounded channel to [`EventLoop`], which owns the
//! `Swarm` and `select!`s over swarm events and commands; what peers send
//! comes out as [`Event`]s on another bounded channel.

mod codec;
mod event_loop;
pub mod identity;
pub mod limits;
pub mod protocol;

pub use codec::FramedBytes;
/// What a [`Client`] sends; public for in-process tests only.
#[cfg(feature = "test-harness")]
pub use event_loop::Command;
pub use event_loop::{
    Client, Event, EventLoop, Inbound, NetworkError, PeerRequest, Protocol, RequestError,
    ResponseHandle, Topic, spawn,
};

use std::time::Duration;

/// Capacity of the command channel (client → event loop).
pub const COMMANDS_MAX: usize = 1024;
/// Capacity of the event channel (event loop → driver). When the driver
/// falls behind, gossip beyond this is dropped and counted (agreement
/// tolerates loss).
pub const EVENTS_MAX: usize = 4096;
/// Capacity of the agreement-request channel (event loop → sync server):
/// status and block requests, each already within its peer's budget of
/// requests in flight ([`limits`]). When it is full, a new one is refused.
pub const SYNC_EVENTS_MAX: usize = 64;
/// Capacity of the data-request channel (event loop → gateway). When it is
/// full, a new data request is refused at once; agreement's events travel
/// on their own channel and never wait behind these.
pub const DATA_EVENTS_MAX: usize = 1024;
/// Largest gossip message: a proposal carries a whole block.
pub const GOSSIP_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest request a peer may send (on the data protocol: see
/// [`DATA_REQUEST_BYTES_MAX`]).
pub const REQUEST_BYTES_MAX: u32 = 64 * 1024;
/// Largest request on the data protocol: one upload chunk and its fields.
pub const DATA_REQUEST_BYTES_MAX: u32 =
    (protocol::UPLOAD_CHUNK_BYTES + protocol::REQUEST_OVERHEAD_BYTES) as u32;
/// Data-protocol streams one connection may have open at once (so a
/// connection holds at most this many requests being read).
pub const DATA_STREAMS_PER_CONNECTION_MAX: usize = 16;
/// Largest response we accept (a batch of blocks during sync).
pub const RESPONSE_BYTES_MAX: u32 = 32 * 1024 * 1024;
/// Connections per peer and in total.
pub const CONNECTIONS_PER_PEER_MAX: u32 = 2;
/// Total established connections.
pub const CONNECTIONS_MAX: u32 = 256;
/// How long a request may take before it fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How often each connection is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// A connection whose ping is not answered within this is closed: TCP
/// alone would hold a connection to a vanished peer open for many minutes,
/// and every message sent on it would be lost while the peer counted as
/// connected.
pub const PING_TIMEOUT: Duration = Duration::from_secs(8);
/// How often unconnected bootstrap peers are dialed again.
pub const REDIAL_INTERVAL: Duration = Duration::from_secs(2);
