//! Token buckets: one per member key, one per grant that has a rate limit.

use std::collections::HashMap;
use std::time::Instant;

use quorate_contracts::GrantId;

/// Rate-limit buckets kept; past this the oldest are forgotten (members and
/// grants are bounded by the ledger, so this is a backstop).
const BUCKETS_MAX: usize = 65_536;

/// Token buckets per member key and per grant.
#[derive(Default)]
pub(super) struct Limits {
    pub(super) members: HashMap<[u8; 32], Bucket>,
    pub(super) grants: HashMap<GrantId, Bucket>,
}

pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token at `rate` per second with `burst`; on refusal, the
    /// seconds until one is available.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), u64> {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Takes a token from `key`'s bucket in `map` (a full one if new).
pub(super) fn take<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Bucket>,
    key: K,
    rate: f64,
    burst: f64,
    now: Instant,
) -> Result<(), u64> {
    if map.len() >= BUCKETS_MAX && !map.contains_key(&key) {
        map.clear();
    }
    map.entry(key)
        .or_insert(Bucket {
            tokens: burst,
            at: now,
        })
        .take(rate, burst, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: 3.0,
            at: start,
        };
        for _ in 0..3 {
            bucket.take(1.0, 3.0, start).unwrap();
        }
        assert_eq!(bucket.take(1.0, 3.0, start), Err(1));
        let later = start + std::time::Duration::from_millis(1100);
        bucket.take(1.0, 3.0, later).unwrap();
        assert!(bucket.take(1.0, 3.0, later).is_err());
    }
}
