//! The gateway: the one pipeline every inbound request from a member goes
//! through, whether it came signed over HTTP or over libp2p. Its parts, in
//! the order a request meets them:
//!
//! - [`decide`]: freshness (fail closed on a stale ledger) → member lookup
//!   → `contracts::authorize` on the committed state → the grant's window
//!   at the chain's time too → rate limits ([`limits`]: per member, per
//!   grant);
//! - [`read`] and [`listing`]: what an allowed request is served, from the
//!   [`objects`] store or an [`upstream`] service;
//! - [`write`]: what a member writes or deletes, checked against its
//!   digest as it arrives (over libp2p in chunks: [`uploads`]);
//! - [`accounting`]: one [`audit`] record per request, allow or deny.
//!
//! Transports sit around it: [`http`] is what the signed HTTP door of
//! `quorate_api::gateway` calls, [`p2p`] serves `/quorate/data/2` (a long
//! read there is one request in chunks: [`downloads`]). The pipeline
//! answers in domain terms, an allowed result or a
//! [`Refusal`](quorate_api::refusal::Refusal); each transport maps that
//! once.
//!
//! The committed state comes from the driver through a watch channel, so a
//! check is a few hash lookups with no lock held across I/O, and a
//! revocation applies from the moment its block commits.

mod accounting;
pub mod audit;
mod decide;
mod downloads;
mod http;
mod limits;
mod listing;
pub mod nonces;
pub mod objects;
mod p2p;
mod read;
mod sharing;
mod uploads;
pub mod upstream;
mod write;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quorate_api::refusal::Refusal;
use quorate_contracts::{Action, State, Timestamp};
use quorate_did::Did;
use tokio::sync::{Semaphore, watch};

use crate::agreement::driver::{self, Status};
use crate::gateway::objects::{ObjectError, ObjectStore};
use crate::gateway::upstream::{UpstreamTable, Upstreams};
use crate::home::config::GatewaySection;
use audit::Auditor;
use downloads::Downloads;
use limits::Limits;
use uploads::Uploads;

pub use downloads::{DOWNLOAD_IDLE_MAX, DOWNLOADS_MAX, DOWNLOADS_PER_MEMBER_MAX};
pub use read::open_range;
pub(crate) use sharing::desk_refusal;
pub use uploads::{UPLOAD_IDLE_MAX, UPLOADS_MAX, UPLOADS_PER_MEMBER_MAX};
pub use write::{UPSTREAM_WRITE_BYTES_MAX, UPSTREAM_WRITES_MIB_MAX, WRITE_IDLE_MAX};

/// The gateway of one node; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// What a gateway is made of.
pub struct Parts {
    /// This node's DID.
    pub me: Did,
    /// This organization's name.
    pub name: String,
    /// The committed state, as the driver publishes it.
    pub state: watch::Receiver<Arc<State>>,
    /// The driver's status: when it last committed, and the tip's time.
    pub status: watch::Receiver<Status>,
    /// This organization's objects.
    pub objects: Arc<ObjectStore>,
    /// The services shared under grants (reloadable).
    pub upstreams: UpstreamTable,
    /// The audit log's writer.
    pub auditor: Auditor,
    /// `[gateway]`.
    pub config: GatewaySection,
    /// The catalog and the access desk.
    pub sharing: crate::sharing::Sharing,
}

/// The gateway's wall clock: the node's (`driver::now`), or a test's.
type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

struct Inner {
    parts: Parts,
    clock: Clock,
    limits: Mutex<Limits>,
    downloads: Mutex<Downloads>,
    uploads: Mutex<Uploads>,
    permits: Arc<Semaphore>,
    /// MiB of bodies bound for upstream services that may be held at once.
    upstream_writes: Arc<Semaphore>,
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("me", &self.inner.parts.me)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway made of `parts`, on the node's clock.
    pub fn new(parts: Parts) -> Self {
        Self::with_clock(parts, Arc::new(driver::now))
    }

    /// A gateway whose wall clock is `clock`.
    fn with_clock(parts: Parts, clock: Clock) -> Self {
        let permits = Arc::new(Semaphore::new(parts.config.concurrency.max(1)));
        Self {
            inner: Arc::new(Inner {
                parts,
                clock,
                limits: Mutex::new(Limits::default()),
                downloads: Mutex::new(Downloads::default()),
                uploads: Mutex::new(Uploads::default()),
                permits,
                upstream_writes: Arc::new(Semaphore::new(write::UPSTREAM_WRITES_MIB_MAX)),
                allowed: AtomicU64::new(0),
                denied: AtomicU64::new(0),
            }),
        }
    }

    /// This node's DID.
    pub fn me(&self) -> &Did {
        &self.inner.parts.me
    }

    /// This organization's name.
    pub fn name(&self) -> &str {
        &self.inner.parts.name
    }

    /// The committed state now.
    pub fn state(&self) -> Arc<State> {
        self.inner.parts.state.borrow().clone()
    }

    /// The object store.
    pub fn objects(&self) -> &Arc<ObjectStore> {
        &self.inner.parts.objects
    }

    /// The upstream routes in force now.
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.inner.parts.upstreams.current()
    }

    /// The table of upstream routes, which a reload replaces.
    pub fn upstream_table(&self) -> &UpstreamTable {
        &self.inner.parts.upstreams
    }

    /// The audit log's writer.
    pub fn auditor(&self) -> &Auditor {
        &self.inner.parts.auditor
    }

    /// (allowed, denied) decisions so far.
    pub fn decisions(&self) -> (u64, u64) {
        (
            self.inner.allowed.load(Ordering::Relaxed),
            self.inner.denied.load(Ordering::Relaxed),
        )
    }
}

/// Object storage failed: the cause is logged here, the caller told only
/// that the node failed.
fn storage_failed(e: ObjectError) -> Refusal {
    tracing::error!(target: "gateway", error = %e, "object storage failed");
    Refusal::Internal
}

/// `read`, `list`, `write`, `delete`.
pub fn action_name(action: Action) -> &'static str {
    action.as_str()
}
