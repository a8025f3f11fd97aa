//! `did:key` identities for Quorate.
//!
//! This crate owns an organization's identity material: the `did:key`
//! method for Ed25519 keys (multicodec `0xed01`, base58btc multibase),
//! DID documents, key generation, PKCS#8 PEM key files (mode 0600),
//! signing, and strict verification (`verify_strict`: no malleable or
//! small-order signatures).
//!
//! It is a pure library: it must not depend on an async runtime, open a
//! socket, or read the clock. Its only I/O is reading and writing key files
//! through `std::fs`, on paths the caller names.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

mod document;
mod key;
pub mod keyfile;
mod method;

pub use document::{DidDocument, VerificationMethod};
pub use key::{Keypair, Pkcs8Error, Signature, SignatureError, SignatureLengthError};
pub use method::{Did, ParseError};
