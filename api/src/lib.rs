//! Quorate's REST surface: the local API and the gateway that checks every
//! inbound request against the committed grants.
//!
//! [`local`]: the local API's routes (admin token, [`auth`]); [`gateway`]:
//! the routes members call with RFC 9421 signatures ([`signature`], with
//! RFC 9530 `Content-Digest` and a replay guard); [`objects`]: objects over
//! HTTP (ranges, streamed bodies); [`problem`]: every error as an RFC 9457
//! problem with a stable type. Authorization, storage and the audit log
//! are the node's, behind [`local::Node`].
//!
//! This crate is the only one that knows HTTP. It must not depend on libp2p
//! or the store: it reaches the node through a narrow trait.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod auth;
pub mod gateway;
pub mod local;
pub mod objects;
pub mod problem;
pub mod serve;
pub mod signature;
