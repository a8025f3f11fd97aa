//! A memo of signatures already verified in this process.
//!
//! A node checks the same signature several times: an endorsement when it
//! arrives by gossip, again when a proposed block carries its entry, again
//! when the decided block is appended; a precommit when it arrives and
//! again inside the commit certificate. Ed25519 verification dominates a
//! node's CPU (about 50 µs each), so each distinct (key, message,
//! signature) triple is verified once and remembered.
//!
//! Only successes are remembered, under a 256-bit hash of the whole
//! triple, so a hit means exactly this key verified exactly this signature
//! of exactly this message before: skipping the arithmetic cannot change
//! an answer. The memo is bounded ([`VERIFIED_MAX`]) and starts over when
//! full. Pure: no I/O, no clock.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use quorate_did::{Did, Signature};

/// Remembered verifications, at most.
pub const VERIFIED_MAX: usize = 1 << 18;

const CONTEXT: &str = "quorate 2026 verified signature memo v1";

static VERIFIED: LazyLock<Mutex<HashSet<[u8; 32]>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

fn triple(key: &Did, message: &[u8], signature: &Signature) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(CONTEXT);
    hasher.update(&key.public_key_bytes());
    hasher.update(signature.as_bytes());
    hasher.update(&(message.len() as u64).to_be_bytes());
    hasher.update(message);
    *hasher.finalize().as_bytes()
}

/// `key.verify(message, signature)`, remembered once it succeeds.
pub fn verify(key: &Did, message: &[u8], signature: &Signature) -> bool {
    let tag = triple(key, message, signature);
    if VERIFIED.lock().is_ok_and(|memo| memo.contains(&tag)) {
        return true;
    }
    if key.verify(message, signature).is_err() {
        return false;
    }
    remember(tag);
    true
}

/// Signs `message` with this process's own `key`, remembering the
/// signature as verified: a node checks what it signed itself when the
/// endorsement or proposal comes back through its mempool and its blocks,
/// and Ed25519 signing is deterministic and correct by construction, so
/// that check would only repeat the arithmetic.
pub fn sign_own(key: &quorate_did::Keypair, message: &[u8]) -> Signature {
    let signature = key.sign(message);
    remember(triple(&key.did(), message, &signature));
    signature
}

fn remember(tag: [u8; 32]) {
    if let Ok(mut memo) = VERIFIED.lock() {
        if memo.len() >= VERIFIED_MAX {
            memo.clear();
        }
        memo.insert(tag);
    }
}

#[cfg(test)]
mod tests {
    use quorate_did::Keypair;

    use super::*;

    #[test]
    fn a_remembered_success_never_answers_for_another_triple() {
        let (a, b) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
        let message = b"QUORATE_TEST_V1 memo";
        let signature = a.sign(message);
        assert!(verify(&a.did(), message, &signature));
        assert!(verify(&a.did(), message, &signature), "remembered");
        assert!(!verify(&b.did(), message, &signature), "another key");
        assert!(
            !verify(&a.did(), b"QUORATE_TEST_V1 memp", &signature),
            "another message"
        );
        let other = a.sign(b"QUORATE_TEST_V1 other");
        assert!(!verify(&a.did(), message, &other), "another signature");
    }

    #[test]
    fn an_own_signature_is_remembered_for_its_triple_only() {
        let (a, b) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
        let message = b"QUORATE_TEST_V1 own";
        let signature = sign_own(&a, message);
        assert_eq!(signature, a.sign(message), "the same signature as sign");
        assert!(verify(&a.did(), message, &signature));
        assert!(!verify(&b.did(), message, &signature), "another key");
        assert!(!verify(&a.did(), b"QUORATE_TEST_V1 owm", &signature));
    }
}
