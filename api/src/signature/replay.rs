//! Refusing replayed requests: a nonce may be used once within the window
//! in which its `created` time is accepted.

use std::collections::{BTreeSet, HashMap, HashSet};

use quorate_did::Did;
use sha2::{Digest, Sha256};

/// Most nonces remembered at once, all callers together. Past this (after
/// dropping those outside the window), new requests are refused until old
/// nonces age out: failing closed, never forgetting a nonce that could
/// still be replayed. About 70 bytes each (~150 MB at the bound, reached
/// only under sustained signed load).
pub const REPLAY_ENTRIES_MAX: usize = 1 << 21;
/// Most nonces remembered for one caller, so that one member's traffic
/// cannot fill the guard for the others: at the default 60 s skew, about
/// 8,700 signed requests per second each, sustained (then 429).
pub const REPLAY_ENTRIES_PER_CALLER_MAX: usize = 1 << 19;
/// Longest nonce accepted.
pub const NONCE_BYTES_MAX: usize = 128;

/// A (caller, nonce) pair, hashed to 128 bits: a collision could only
/// refuse a fresh request as a replay, never accept a replay.
type Key = u128;

fn key_of(caller: &[u8; 32], nonce: &str) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(caller);
    hasher.update(nonce.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// One remembered nonce, as a journal keeps it across restarts: the
/// signature's `created`, the hashed `(caller, nonce)` key, and the caller
/// (for its quota). Fixed size: [`Remembered::BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remembered {
    /// The signature's `created` (Unix seconds).
    pub created: i64,
    /// The hashed `(caller, nonce)`.
    pub key: u128,
    /// The caller's public key.
    pub caller: [u8; 32],
}

impl Remembered {
    /// Size of [`Remembered::to_bytes`].
    pub const BYTES: usize = 8 + 16 + 32;

    /// Fixed-width big-endian bytes: `created`, `key`, `caller`.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        out[..8].copy_from_slice(&self.created.to_be_bytes());
        out[8..24].copy_from_slice(&self.key.to_be_bytes());
        out[24..].copy_from_slice(&self.caller);
        out
    }

    /// The inverse of [`Remembered::to_bytes`].
    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> Self {
        let mut created = [0u8; 8];
        created.copy_from_slice(&bytes[..8]);
        let mut key = [0u8; 16];
        key.copy_from_slice(&bytes[8..24]);
        let mut caller = [0u8; 32];
        caller.copy_from_slice(&bytes[24..]);
        Self {
            created: i64::from_be_bytes(created),
            key: u128::from_be_bytes(key),
            caller,
        }
    }
}

/// Remembers `(caller, nonce)` pairs while their signatures are acceptable.
#[derive(Debug)]
pub struct ReplayGuard {
    window_secs: u64,
    seen: HashSet<Key>,
    by_created: BTreeSet<(i64, Key, [u8; 32])>,
    per_caller: HashMap<[u8; 32], usize>,
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
    /// This caller has [`REPLAY_ENTRIES_PER_CALLER_MAX`] unexpired nonces.
    #[error("too many signed requests from this caller within the replay window; retry shortly")]
    CallerFull,
}

impl ReplayGuard {
    /// A guard for signatures accepted within `window_secs` of `created`
    /// (the skew, both ways).
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_secs,
            seen: HashSet::new(),
            by_created: BTreeSet::new(),
            per_caller: HashMap::new(),
        }
    }

    /// Records the nonce, or refuses it if seen. What it returns is what a
    /// journal must keep for the guard to refuse the replay after a restart
    /// ([`ReplayGuard::restore`]).
    pub fn check(
        &mut self,
        caller: &Did,
        nonce: &str,
        created: i64,
        now: i64,
    ) -> Result<Remembered, Replayed> {
        if nonce.len() > NONCE_BYTES_MAX {
            return Err(Replayed::TooLong);
        }
        self.forget_before(now);
        let who = caller.public_key_bytes();
        let key = key_of(&who, nonce);
        if self.seen.contains(&key) {
            return Err(Replayed::Seen);
        }
        let remembered = Remembered {
            created,
            key,
            caller: who,
        };
        self.insert(remembered)?;
        Ok(remembered)
    }

    /// Takes back a nonce remembered before a restart (from a journal).
    /// One whose signature can no longer pass the skew check is dropped; a
    /// full guard refuses more (the caller then refuses requests until old
    /// nonces age out, failing closed).
    pub fn restore(&mut self, remembered: Remembered, now: i64) -> Result<(), Replayed> {
        self.forget_before(now);
        if remembered.created < now.saturating_sub(self.window_secs as i64)
            || self.seen.contains(&remembered.key)
        {
            return Ok(());
        }
        self.insert(remembered)
    }

    fn insert(&mut self, remembered: Remembered) -> Result<(), Replayed> {
        if self.seen.len() >= REPLAY_ENTRIES_MAX {
            return Err(Replayed::Full);
        }
        let count = self.per_caller.entry(remembered.caller).or_insert(0);
        if *count >= REPLAY_ENTRIES_PER_CALLER_MAX {
            return Err(Replayed::CallerFull);
        }
        *count += 1;
        self.seen.insert(remembered.key);
        self.by_created
            .insert((remembered.created, remembered.key, remembered.caller));
        Ok(())
    }

    /// Drops the nonces of signatures created before `now - window`: they
    /// can no longer pass the skew check, so they need not be kept.
    fn forget_before(&mut self, now: i64) {
        let horizon = now.saturating_sub(self.window_secs as i64);
        while let Some((created_at, _, _)) = self.by_created.first()
            && *created_at < horizon
        {
            if let Some((_, key, who)) = self.by_created.pop_first() {
                self.seen.remove(&key);
                if let Some(count) = self.per_caller.get_mut(&who) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_caller.remove(&who);
                    }
                }
            }
        }
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
