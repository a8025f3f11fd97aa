//! Quorate's REST surface: the local API and the gateway that checks every
//! inbound request against the committed grants.
//!
//! [`local`]: the local API's routes (tokens with roles, [`auth`]);
//! [`console`]: the web console's embedded page; [`gateway`]:
//! the routes members call with RFC 9421 signatures ([`signature`], with
//! RFC 9530 `Content-Digest` and a replay guard); [`objects`]: objects over
//! HTTP (ranges, streamed bodies); [`problem`]: every error as an RFC 9457
//! problem with a stable type; [`refusal`]: why the gateway refused, in
//! words of no transport (the gateway maps it to HTTP, the node to
//! libp2p). Authorization, storage and the audit log are the node's,
//! behind [`local::Node`] and [`gateway::Pipeline`].
//!
//! This crate is the only one that knows HTTP. It must not depend on libp2p
//! or the store: it reaches the node through a narrow trait.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod auth;
pub mod console;
pub mod gateway;
pub mod local;
pub mod objects;
pub mod problem;
pub mod purpose;
pub mod refusal;
pub mod serve;
pub mod signature;
