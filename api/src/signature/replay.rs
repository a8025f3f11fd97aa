//! Refusing replayed requests: a nonce may be used once within the window
//! in which its `created` time is accepted.

use std::collections::{BTreeSet, HashSet};

use quorate_did::Did;

/// Most nonces remembered at once. Past this (after dropping those outside
/// the window), new requests are refused until old nonces age out: failing
/// closed, never forgetting a nonce that could still be replayed.
pub const REPLAY_ENTRIES_MAX: usize = 200_000;
/// Longest nonce accepted.
pub const NONCE_BYTES_MAX: usize = 128;

type Key = ([u8; 32], String);

/// Remembers `(caller, nonce)` pairs while their signatures are acceptable.
#[derive(Debug)]
pub struct ReplayGuard {
    window_secs: u64,
    seen: HashSet<Key>,
    by_created: BTreeSet<(i64, Key)>,
}

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Replayed {
    /// Seen before within the window.
    #[error("nonce already used: the request is a replay")]
    Seen,
    /// Longer than [`NONCE_BYTES_MAX`].
    #[error("nonce is longer than {NONCE_BYTES_MAX} bytes")]
    TooLong,
    /// The guard is full of unexpired nonces.
    #[error("too many recent requests to track replays; retry shortly")]
    Full,
}

impl ReplayGuard {
    /// A guard for signatures accepted within `window_secs` of `created`
    /// (the skew, both ways).
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_secs,
            seen: HashSet::new(),
            by_created: BTreeSet::new(),
        }
    }

    /// Records the nonce, or refuses it if seen.
    pub fn check(
        &mut self,
        caller: &Did,
        nonce: &str,
        created: i64,
        now: i64,
    ) -> Result<(), Replayed> {
        if nonce.len() > NONCE_BYTES_MAX {
            return Err(Replayed::TooLong);
        }
        // A signature created before now - 2*window can no longer pass the
        // skew check, so its nonce need not be kept.
        let horizon = now.saturating_sub(2 * self.window_secs as i64);
        while let Some((created_at, _)) = self.by_created.first()
            && *created_at < horizon
        {
            if let Some((_, key)) = self.by_created.pop_first() {
                self.seen.remove(&key);
            }
        }
        let key = (caller.public_key_bytes(), nonce.to_owned());
        if self.seen.contains(&key) {
            return Err(Replayed::Seen);
        }
        if self.seen.len() >= REPLAY_ENTRIES_MAX {
            return Err(Replayed::Full);
        }
        self.seen.insert(key.clone());
        self.by_created.insert((created, key));
        Ok(())
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none are remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
