//! What one peer may cost this node: inbound requests per second and at
//! once, and gossip per second per author and topic. A peer over its
//! budget is not heard: its request's stream is closed unanswered (the
//! requester sees a failed request at once, not a timeout), its gossip is
//! neither passed to the driver nor forwarded. Members get budgets far
//! above what agreement and data traffic need; other peers (a node about to
//! join, or anyone with an Ed25519 key) get a trickle, enough to sync.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use libp2p::PeerId;

use super::Topic;

/// A member's inbound requests per second, after its burst.
pub const MEMBER_REQUESTS_PER_SEC: f64 = 1000.0;
/// A member's burst of requests.
pub const MEMBER_REQUESTS_BURST: f64 = 2000.0;
/// A member's requests being answered at once.
pub const MEMBER_REQUESTS_IN_FLIGHT_MAX: u32 = 512;
/// A member's data requests (objects, listings) being answered at once: a
/// bounded queue per member in front of the gateway, whose own rate limits
/// (per member, per grant) then apply.
pub const MEMBER_DATA_IN_FLIGHT_MAX: u32 = 64;
/// A non-member's requests per second (sync while it joins).
pub const OUTSIDER_REQUESTS_PER_SEC: f64 = 4.0;
/// A non-member's burst of requests.
pub const OUTSIDER_REQUESTS_BURST: f64 = 8.0;
/// A non-member's requests being answered at once.
pub const OUTSIDER_REQUESTS_IN_FLIGHT_MAX: u32 = 2;
/// Mempool messages (proposals, endorsements) per second one member may
/// publish, after its burst.
pub const MEMPOOL_GOSSIP_PER_SEC: f64 = 2000.0;
/// The burst of mempool messages.
pub const MEMPOOL_GOSSIP_BURST: f64 = 4000.0;
/// Consensus messages (block proposals, votes) per second one member may
/// publish, after its burst: a height takes a few each.
pub const CONSENSUS_GOSSIP_PER_SEC: f64 = 500.0;
/// The burst of consensus messages.
pub const CONSENSUS_GOSSIP_BURST: f64 = 1000.0;
/// Peers whose budgets are kept; the connection limits keep far fewer
/// connected, so this is a backstop (past it, budgets start afresh).
pub const PEERS_TRACKED_MAX: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One inbound request being answered; given back when dropped (answered
/// or not).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Budget {
    requests: Bucket,
    in_flight: Arc<AtomicU32>,
    data_in_flight: Arc<AtomicU32>,
    mempool: Bucket,
    consensus: Bucket,
}

impl Budget {
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
            || self.data_in_flight.load(Ordering::Relaxed) > 0
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over its rate.
    Rate,
    /// Too many of its requests are being answered.
    InFlight,
    /// Data requests are for members only.
    NotAMember,
}

/// The budgets of every peer heard from.
#[derive(Debug, Default)]
pub struct PeerBudgets {
    peers: HashMap<PeerId, Budget>,
    /// Requests refused so far.
    pub refused_requests: u64,
    /// Gossip messages ignored so far.
    pub ignored_gossip: u64,
}

impl PeerBudgets {
    fn budget(&mut self, peer: PeerId, now: Instant) -> &mut Budget {
        if self.peers.len() >= PEERS_TRACKED_MAX && !self.peers.contains_key(&peer) {
            // Keep the budgets of peers with requests in flight, whose
            // counters must stay shared with their guards.
            self.peers.retain(|_, b| b.busy());
        }
        self.peers.entry(peer).or_insert_with(|| Budget {
            requests: Bucket::full(MEMBER_REQUESTS_BURST, now),
            in_flight: Arc::new(AtomicU32::new(0)),
            data_in_flight: Arc::new(AtomicU32::new(0)),
            mempool: Bucket::full(MEMPOOL_GOSSIP_BURST, now),
            consensus: Bucket::full(CONSENSUS_GOSSIP_BURST, now),
        })
    }

    /// Admits a request from `peer` (a member or not), or says why not.
    pub fn admit_request(
        &mut self,
        peer: PeerId,
        member: bool,
        now: Instant,
    ) -> Result<InFlight, Refused> {
        let (rate, burst, in_flight_max) = if member {
            (
                MEMBER_REQUESTS_PER_SEC,
                MEMBER_REQUESTS_BURST,
                MEMBER_REQUESTS_IN_FLIGHT_MAX,
            )
        } else {
            (
                OUTSIDER_REQUESTS_PER_SEC,
                OUTSIDER_REQUESTS_BURST,
                OUTSIDER_REQUESTS_IN_FLIGHT_MAX,
            )
        };
        let budget = self.budget(peer, now);
        if budget.requests.tokens > burst {
            // A peer that was a member, or was never seen, starts from
            // its class's burst.
            budget.requests.tokens = burst;
        }
        let refused = if budget.in_flight.load(Ordering::Relaxed) >= in_flight_max {
            Some(Refused::InFlight)
        } else if !budget.requests.take(rate, burst, now) {
            Some(Refused::Rate)
        } else {
            None
        };
        if let Some(refused) = refused {
            self.refused_requests += 1;
            return Err(refused);
        }
        budget.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(InFlight(budget.in_flight.clone()))
    }

    /// Admits a data request from `peer`: members only, at most
    /// [`MEMBER_DATA_IN_FLIGHT_MAX`] at once.
    pub fn admit_data(&mut self, peer: PeerId, member: bool) -> Result<InFlight, Refused> {
        if !member {
            self.refused_requests += 1;
            return Err(Refused::NotAMember);
        }
        let budget = self.budget(peer, Instant::now());
        if budget.data_in_flight.load(Ordering::Relaxed) >= MEMBER_DATA_IN_FLIGHT_MAX {
            self.refused_requests += 1;
            return Err(Refused::InFlight);
        }
        budget.data_in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(InFlight(budget.data_in_flight.clone()))
    }

    /// Whether a gossip message `author` published on `topic` is heard.
    pub fn admit_gossip(&mut self, author: PeerId, topic: Topic, now: Instant) -> bool {
        let budget = self.budget(author, now);
        let admitted = match topic {
            Topic::Mempool => {
                budget
                    .mempool
                    .take(MEMPOOL_GOSSIP_PER_SEC, MEMPOOL_GOSSIP_BURST, now)
            }
            Topic::Consensus => {
                budget
                    .consensus
                    .take(CONSENSUS_GOSSIP_PER_SEC, CONSENSUS_GOSSIP_BURST, now)
            }
        };
        if !admitted {
            self.ignored_gossip += 1;
        }
        admitted
    }

    /// Forgets `peer` once it has disconnected and nothing of it is in
    /// flight.
    pub fn forget(&mut self, peer: &PeerId) {
        if self.peers.get(peer).is_some_and(|b| !b.busy()) {
            self.peers.remove(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn outsiders_get_a_trickle_and_members_a_flood() {
        let mut budgets = PeerBudgets::default();
        let now = Instant::now();
        let (outsider, member) = (PeerId::random(), PeerId::random());
        let mut held = Vec::new();
        let admitted = (0..100)
            .filter_map(|_| budgets.admit_request(outsider, false, now).ok())
            .map(|g| held.push(g))
            .count();
        assert_eq!(admitted, OUTSIDER_REQUESTS_IN_FLIGHT_MAX as usize);
        held.clear();
        let admitted = (0..100)
            .filter(|_| budgets.admit_request(outsider, false, now).is_ok())
            .count();
        assert_eq!(
            admitted,
            OUTSIDER_REQUESTS_BURST as usize - OUTSIDER_REQUESTS_IN_FLIGHT_MAX as usize
        );
        let admitted = (0..3000)
            .filter(|_| budgets.admit_request(member, true, now).is_ok())
            .count();
        assert_eq!(admitted, MEMBER_REQUESTS_BURST as usize);
        let later = now + Duration::from_secs(1);
        assert!(budgets.admit_request(outsider, false, later).is_ok());
        assert_eq!(budgets.refused_requests, 98 + 94 + 1000);
    }

    #[test]
    fn a_members_gossip_is_held_per_topic() {
        let mut budgets = PeerBudgets::default();
        let now = Instant::now();
        let author = PeerId::random();
        let mempool = (0..10_000)
            .filter(|_| budgets.admit_gossip(author, Topic::Mempool, now))
            .count();
        assert_eq!(mempool, MEMPOOL_GOSSIP_BURST as usize);
        // Its votes are not starved by its own mempool flood.
        assert!(budgets.admit_gossip(author, Topic::Consensus, now));
        // Another author is untouched.
        assert!(budgets.admit_gossip(PeerId::random(), Topic::Mempool, now));
    }
}
