//! Quorate's REST surface: the local API and the gateway that checks every
//! inbound request against the committed grants.
//!
//! Built so far: [`signature`], verification of RFC 9421 HTTP Message
//! Signatures (Ed25519, `keyid` = the caller's did:key) and RFC 9530
//! `Content-Digest`; [`problem`], errors as RFC 9457 problem details with
//! stable types; [`auth`], the admin bearer token. The routes, the request
//! pipeline and the audit log come with issue 5.
//!
//! This crate is the only one that knows HTTP. It must not depend on libp2p
//! or the store: it reaches the node through a narrow trait.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod auth;
pub mod local;
pub mod problem;
pub mod signature;
