//! The gateway: the one pipeline every inbound request from a member goes
//! through, whether it came signed over HTTP or over libp2p:
//!
//! freshness (fail closed on a stale ledger) → member lookup →
//! `contracts::authorize` on the committed state → rate limits (per member,
//! per grant) → serve or refuse → audit record.
//!
//! The committed state comes from the driver through a watch channel, so a
//! check is a few hash lookups with no lock held across I/O, and a
//! revocation applies from the moment its block commits.

pub mod audit;
mod http;
pub mod nonces;
pub mod objects;
pub mod upstream;

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use quorate_api::objects::{ByteRange, ListQuery, Listing, ObjectBody, ObjectInfo};
use quorate_api::refusal::{Refusal, UpstreamFailure};
use quorate_contracts::{
    AccessRequest, Action, Decision, DenyReason, GrantId, RateLimit, ResourcePath, State, authorize,
};
use quorate_did::Did;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::io::ReaderStream;

use crate::agreement::driver::{self, Status};
use crate::gateway::objects::{LIST_LIMIT_MAX, ObjectError, ObjectStore};
use crate::gateway::upstream::Upstreams;
use crate::home::config::GatewaySection;
use crate::net;
use crate::net::protocol::{self, Denial, OBJECT_CHUNK_BYTES, Request, Response, TICKET_BYTES};
use audit::Auditor;

/// Rate-limit buckets kept; past this the oldest are forgotten (members and
/// grants are bounded by the ledger, so this is a backstop).
const BUCKETS_MAX: usize = 65_536;
/// Bytes per read of a streamed object.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// The gateway of one node; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    me: Did,
    name: String,
    state: watch::Receiver<Arc<State>>,
    status: watch::Receiver<Status>,
    objects: Arc<ObjectStore>,
    upstreams: Arc<Upstreams>,
    auditor: Auditor,
    config: GatewaySection,
    limits: Mutex<Limits>,
    downloads: Mutex<Downloads>,
    permits: Arc<Semaphore>,
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("me", &self.inner.me)
            .finish_non_exhaustive()
    }
}

/// Token buckets per member key and per grant.
#[derive(Default)]
struct Limits {
    members: HashMap<[u8; 32], Bucket>,
    grants: HashMap<GrantId, Bucket>,
}

struct Bucket {
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

fn take<K: std::hash::Hash + Eq>(
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

/// A request that passed the pipeline.
struct Allowed {
    grant: GrantId,
}

/// Object storage failed: the cause is logged here, the caller told only
/// that the node failed.
fn storage_failed(e: ObjectError) -> Refusal {
    tracing::error!(target: "gateway", error = %e, "object storage failed");
    Refusal::Internal
}

impl Gateway {
    /// A gateway for the node `me` (named `name`).
    pub fn new(
        me: Did,
        name: String,
        handle: &driver::Handle,
        objects: Arc<ObjectStore>,
        upstreams: Arc<Upstreams>,
        auditor: Auditor,
        config: GatewaySection,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Self {
            inner: Arc::new(Inner {
                me,
                name,
                state: handle.state(),
                status: handle.status_receiver(),
                objects,
                upstreams,
                auditor,
                config,
                limits: Mutex::new(Limits::default()),
                downloads: Mutex::new(Downloads::default()),
                permits,
                allowed: AtomicU64::new(0),
                denied: AtomicU64::new(0),
            }),
        }
    }

    /// This node's DID.
    pub fn me(&self) -> &Did {
        &self.inner.me
    }

    /// This organization's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The committed state now.
    pub fn state(&self) -> Arc<State> {
        self.inner.state.borrow().clone()
    }

    /// The object store.
    pub fn objects(&self) -> &Arc<ObjectStore> {
        &self.inner.objects
    }

    /// The audit log's writer.
    pub fn auditor(&self) -> &Auditor {
        &self.inner.auditor
    }

    /// (allowed, denied) decisions so far.
    pub fn decisions(&self) -> (u64, u64) {
        (
            self.inner.allowed.load(Ordering::Relaxed),
            self.inner.denied.load(Ordering::Relaxed),
        )
    }

    /// Fresh enough to decide: refuses with `stale-ledger` otherwise.
    pub fn ready(&self) -> Result<(), Refusal> {
        let age = self
            .inner
            .status
            .borrow()
            .last_commit
            .map(|at| at.elapsed());
        if age.is_none_or(|age| age > self.inner.config.max_ledger_age.0) {
            return Err(Refusal::StaleLedger);
        }
        Ok(())
    }

    /// Freshness, membership, grants, rate limits.
    fn check(&self, caller: &Did, action: Action, path: &ResourcePath) -> Result<Allowed, Refusal> {
        self.ready()?;
        let state = self.state();
        let Some(owner) = state.member_by_did(&self.inner.me) else {
            return Err(Refusal::NotServing);
        };
        let (now, chain_time) = self.clocks();
        let decision = authorize(
            &state,
            &AccessRequest {
                owner: owner.id,
                caller,
                action,
                path,
                now,
            },
        );
        let decision = match decision {
            Decision::Allow { grant, .. } => within_window_at(&state, grant, chain_time, decision),
            deny => deny,
        };
        let (grant, rate_limit) = match decision {
            Decision::Allow { grant, rate_limit } => (grant, rate_limit),
            Decision::Deny(reason) => return Err(Refusal::Denied(reason)),
        };
        self.rate_limit(caller, rate_limit.map(|limit| (grant, limit)))?;
        Ok(Allowed { grant })
    }

    /// This node's clock, and the chain's (the tip's time). A grant's
    /// window must hold at both: a gateway whose clock is behind would
    /// otherwise serve a grant past its end, one ahead before its start.
    fn clocks(&self) -> (quorate_contracts::Timestamp, quorate_contracts::Timestamp) {
        let tip = self.inner.status.borrow().tip_time_ms;
        (driver::now(), quorate_contracts::Timestamp(tip))
    }

    /// The member's bucket, then the grant's if it has a rate limit.
    fn rate_limit(
        &self,
        caller: &Did,
        grant_limit: Option<(GrantId, RateLimit)>,
    ) -> Result<(), Refusal> {
        let config = &self.inner.config;
        let now = Instant::now();
        let Ok(mut limits) = self.inner.limits.lock() else {
            return Err(Refusal::Internal);
        };
        let mut result = take(
            &mut limits.members,
            caller.public_key_bytes(),
            f64::from(config.member_rate.max(1)),
            f64::from(config.member_burst.max(1)),
            now,
        );
        if result.is_ok()
            && let Some((grant, limit)) = grant_limit
        {
            let rate = f64::from(limit.requests.max(1)) / f64::from(limit.per_seconds.max(1));
            result = take(
                &mut limits.grants,
                grant,
                rate,
                f64::from(limit.requests.max(1)),
                now,
            );
        }
        result.map_err(|wait| Refusal::RateLimited {
            retry_after_secs: wait,
        })
    }

    async fn record(
        &self,
        transport: &str,
        caller: Option<&Did>,
        action: Action,
        resource: &str,
        outcome: Result<(Option<GrantId>, u64), &Refusal>,
    ) {
        let (decision, reason, grant, bytes) = match outcome {
            Ok((grant, bytes)) => {
                self.inner.allowed.fetch_add(1, Ordering::Relaxed);
                ("allow", None, grant, bytes)
            }
            Err(refusal) => {
                self.inner.denied.fetch_add(1, Ordering::Relaxed);
                ("deny", Some(refusal.code().as_str().to_owned()), None, 0)
            }
        };
        self.write_record(
            transport, caller, action, resource, decision, reason, grant, bytes,
        )
        .await;
    }

    /// The one audit record of a download over libp2p, when it ends:
    /// complete, or cut short (`reason` says why) after `bytes` were sent.
    async fn record_download(&self, download: &Download, reason: Option<&str>) {
        self.inner.allowed.fetch_add(1, Ordering::Relaxed);
        self.write_record(
            P2P,
            Some(&download.caller),
            Action::Read,
            download.path.as_str(),
            "allow",
            reason.map(str::to_owned),
            Some(download.grant),
            download.sent,
        )
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_record(
        &self,
        transport: &str,
        caller: Option<&Did>,
        action: Action,
        resource: &str,
        decision: &str,
        reason: Option<String>,
        grant: Option<GrantId>,
        bytes: u64,
    ) {
        self.inner
            .auditor
            .record(audit::Decision {
                transport: transport.to_owned(),
                caller: caller.map(|c| c.to_string()),
                action: action_name(action).to_owned(),
                resource: resource.to_owned(),
                decision: decision.to_owned(),
                reason,
                grant: grant.map(|g| g.to_string()),
                bytes,
            })
            .await;
    }

    /// Audits a request refused before authorization.
    pub async fn refused(
        &self,
        transport: &str,
        caller: Option<&Did>,
        action: Action,
        resource: &str,
        refusal: &Refusal,
    ) {
        self.record(transport, caller, action, resource, Err(refusal))
            .await;
    }

    /// The pipeline for a read; the body streams the object's range.
    pub async fn read(
        &self,
        caller: &Did,
        transport: &str,
        path: &ResourcePath,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, Refusal> {
        let outcome = async {
            let allowed = self.check(caller, Action::Read, path)?;
            let object = if self.inner.upstreams.serves(path) {
                self.proxy(path).await?
            } else {
                open_range(&self.inner.objects, path, range).await?
            };
            Ok((allowed, object))
        }
        .await;
        match outcome {
            Ok((allowed, object)) => {
                let bytes = object.span.1 - object.span.0;
                self.record(
                    transport,
                    Some(caller),
                    Action::Read,
                    path.as_str(),
                    Ok((Some(allowed.grant), bytes)),
                )
                .await;
                Ok(object)
            }
            Err(refusal) => {
                self.record(
                    transport,
                    Some(caller),
                    Action::Read,
                    path.as_str(),
                    Err(&refusal),
                )
                .await;
                Err(refusal)
            }
        }
    }

    /// An upstream's answer as an object body (streamed, whole: `Range`
    /// is not forwarded, which RFC 9110 allows).
    async fn proxy(&self, path: &ResourcePath) -> Result<ObjectBody, Refusal> {
        let response = self.inner.upstreams.get(path).await?;
        let size = response.length.unwrap_or(0);
        Ok(ObjectBody {
            info: ObjectInfo {
                path: path.to_string(),
                size,
                etag: String::new(),
                content_type: response.content_type,
                modified_ms: 0,
            },
            span: (0, size),
            partial: false,
            sized: response.length.is_some(),
            body: response.body,
        })
    }

    /// An upstream's answer for the libp2p path: buffered, so at most one
    /// chunk; `range` applied here.
    async fn proxy_chunk(
        &self,
        path: &ResourcePath,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, u64, u64, Vec<u8>), Refusal> {
        let response = self.inner.upstreams.get(path).await?;
        let limit = OBJECT_CHUNK_BYTES as usize;
        let mut data = Vec::new();
        let mut stream = response.body.into_data_stream();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| UpstreamFailure::BodyBroke(e.to_string()))?;
            if data.len() + chunk.len() > limit {
                return Err(UpstreamFailure::TooLarge(limit as u64).into());
            }
            data.extend_from_slice(&chunk);
        }
        let info = ObjectInfo {
            path: path.to_string(),
            size: data.len() as u64,
            etag: blake3::hash(&data).to_hex().to_string(),
            content_type: response.content_type,
            modified_ms: 0,
        };
        let (start, end) = match range {
            None => (0, info.size),
            Some(range) => range
                .resolve(info.size)
                .ok_or(Refusal::RangeNotSatisfiable { size: info.size })?,
        };
        let data = data[start as usize..end as usize].to_vec();
        Ok((info, start, end, data))
    }

    /// The pipeline for a listing: only objects the caller may `list`.
    pub async fn list(
        &self,
        caller: &Did,
        transport: &str,
        query: &ListQuery,
    ) -> Result<Listing, Refusal> {
        let resource = format!("{}*", query.prefix);
        let outcome = self.list_allowed(caller, query).await;
        match &outcome {
            Ok(listing) => {
                self.record(
                    transport,
                    Some(caller),
                    Action::List,
                    &resource,
                    Ok((None, listing.objects.len() as u64)),
                )
                .await
            }
            Err(refusal) => {
                self.record(
                    transport,
                    Some(caller),
                    Action::List,
                    &resource,
                    Err(refusal),
                )
                .await
            }
        }
        outcome
    }

    async fn list_allowed(&self, caller: &Did, query: &ListQuery) -> Result<Listing, Refusal> {
        // Freshness, membership and the member's rate, once per listing.
        self.ready()?;
        let state = self.state();
        let Some(member) = state.member_by_did(caller).map(|m| m.id) else {
            return Err(Refusal::Denied(DenyReason::NotAMember));
        };
        let owner = state
            .member_by_did(&self.inner.me)
            .map(|m| m.id)
            .ok_or(Refusal::NotServing)?;
        self.rate_limit(caller, None)?;
        // Only the parts of the namespace the caller may list are read, so
        // a page, and its `next` cursor, come from what it may see.
        let (now, chain_time) = self.clocks();
        let scopes = list_scopes(&state, member, owner, [now, chain_time], &query.prefix);
        let store = self.inner.objects.clone();
        let after = query.after.clone();
        let limit = query.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
        let mut listing = tokio::task::spawn_blocking(move || {
            list_in_scopes(&store, &scopes, after.as_deref(), limit)
        })
        .await
        .map_err(|_| Refusal::Internal)?
        .map_err(storage_failed)?;
        // Each object against the same snapshot, as a read would be.
        listing.objects.retain(|object| {
            ResourcePath::parse(&object.path).is_ok_and(|path| {
                let request = AccessRequest {
                    owner,
                    caller,
                    action: Action::List,
                    path: &path,
                    now,
                };
                matches!(authorize(&state, &request), Decision::Allow { .. })
            })
        });
        Ok(listing)
    }

    /// Serves peers' requests from `inbox` until it closes, each in its own
    /// task, at most `concurrency` at once.
    pub async fn serve_peers(self, mut inbox: mpsc::Receiver<net::DataRequest>, net: net::Client) {
        let mut sweep = tokio::time::interval(DOWNLOAD_IDLE_MAX / 2);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let net::DataRequest { from, data, reply } = tokio::select! {
                request = inbox.recv() => match request {
                    Some(request) => request,
                    None => return,
                },
                _ = sweep.tick() => {
                    self.end_idle_downloads().await;
                    continue;
                }
            };
            let request = match protocol::decode::<Request>(&data) {
                Ok(request) => request,
                Err(_) => {
                    let refused = Response::Refused("malformed request".to_owned());
                    if let Ok(bytes) = protocol::encode(&refused) {
                        net.respond(reply, bytes).await;
                    }
                    continue;
                }
            };
            let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                return;
            };
            let (gateway, net) = (self.clone(), net.clone());
            tokio::spawn(async move {
                let response = gateway.answer_peer(&from, request).await;
                match protocol::encode(&response) {
                    Ok(bytes) => net.respond(reply, bytes).await,
                    Err(e) => {
                        tracing::error!(target: "gateway", error = %e, "cannot encode a response")
                    }
                }
                drop(permit);
            });
        }
    }

    async fn answer_peer(&self, from: &Did, request: Request) -> Response {
        const TRANSPORT: &str = P2P;
        let denied = |refusal: Refusal| Response::Denied(Denial::from(&refusal));
        match request {
            Request::Object {
                path,
                range,
                if_match,
            } => {
                let path = match ResourcePath::parse(&path) {
                    Ok(path) => path,
                    Err(error) => {
                        let refusal = Refusal::BadPath {
                            path: path.clone(),
                            error,
                        };
                        self.refused(TRANSPORT, Some(from), Action::Read, &path, &refusal)
                            .await;
                        return denied(refusal);
                    }
                };
                match self.read_chunk(from, &path, range, if_match).await {
                    Ok(response) => response,
                    Err(refusal) => denied(refusal),
                }
            }
            Request::Chunk { ticket, at } => match self.next_chunk(from, &ticket, at).await {
                Ok(response) => response,
                Err(refusal) => denied(refusal),
            },
            Request::List {
                prefix,
                after,
                limit,
            } => {
                let query = ListQuery {
                    prefix,
                    after,
                    limit: Some(limit as usize),
                };
                match self.list(from, TRANSPORT, &query).await {
                    Ok(listing) => Response::Listing(listing),
                    Err(refusal) => denied(refusal),
                }
            }
            _ => Response::Refused("not a gateway request".to_owned()),
        }
    }

    /// One chunk of a range, through the pipeline.
    async fn read_chunk(
        &self,
        from: &Did,
        path: &ResourcePath,
        range: Option<ByteRange>,
        if_match: Option<String>,
    ) -> Result<Response, Refusal> {
        let outcome = async {
            let allowed = self.check(from, Action::Read, path)?;
            if self.inner.upstreams.serves(path) {
                return Ok((allowed, self.proxy_chunk(path, range).await?));
            }
            let store = self.inner.objects.clone();
            let owned = path.clone();
            let buffer = chunk_buffer();
            let read = tokio::task::spawn_blocking(move || {
                read_span(&store, &owned, range, if_match, buffer)
            })
            .await
            .map_err(|_| Refusal::Internal)??;
            Ok((allowed, read))
        }
        .await;
        match outcome {
            Ok((allowed, (info, start, end, data))) if start + (data.len() as u64) < end => {
                // More chunks follow: one authorization, one rate-limit
                // token and, when it ends, one audit record for them all.
                let download = Download {
                    caller: *from,
                    path: path.clone(),
                    etag: info.etag.clone(),
                    grant: allowed.grant,
                    next: start + data.len() as u64,
                    end,
                    sent: data.len() as u64,
                    touched: Instant::now(),
                };
                let opened = match self.inner.downloads.lock() {
                    Ok(mut downloads) => downloads.open(download),
                    Err(_) => Err(Refusal::Internal),
                };
                match opened {
                    Ok(ticket) => Ok(Response::Download {
                        info,
                        start,
                        end,
                        data: serde_bytes::ByteBuf::from(data),
                        ticket: serde_bytes::ByteBuf::from(ticket.to_vec()),
                    }),
                    Err(p) => {
                        self.record(P2P, Some(from), Action::Read, path.as_str(), Err(&p))
                            .await;
                        Err(p)
                    }
                }
            }
            Ok((allowed, (info, start, end, data))) => {
                self.record(
                    P2P,
                    Some(from),
                    Action::Read,
                    path.as_str(),
                    Ok((Some(allowed.grant), data.len() as u64)),
                )
                .await;
                Ok(Response::Object {
                    info,
                    start,
                    end,
                    data: serde_bytes::ByteBuf::from(data),
                })
            }
            Err(p) => {
                self.record(P2P, Some(from), Action::Read, path.as_str(), Err(&p))
                    .await;
                Err(p)
            }
        }
    }

    /// The next chunk of a download authorized at its first. The grant
    /// must still hold (a revocation stops a download between chunks) and
    /// the object must not have changed.
    async fn next_chunk(&self, from: &Did, ticket: &[u8], at: u64) -> Result<Response, Refusal> {
        let Ok(ticket) = <[u8; TICKET_BYTES]>::try_from(ticket) else {
            return Err(Refusal::UnknownDownload);
        };
        let download = match self.inner.downloads.lock() {
            Ok(downloads) => downloads.get(&ticket, from).cloned(),
            Err(_) => return Err(Refusal::Internal),
        }
        .ok_or(Refusal::UnknownDownload)?;
        if at != download.next {
            return Err(Refusal::BadChunk {
                expected: download.next,
                asked: at,
            });
        }
        let read = async {
            self.ready()?;
            self.grant_still_holds(download.grant)?;
            let store = self.inner.objects.clone();
            let (path, etag, end) = (download.path.clone(), download.etag.clone(), download.end);
            let buffer = chunk_buffer();
            tokio::task::spawn_blocking(move || {
                read_span(
                    &store,
                    &path,
                    Some(ByteRange::Bounded(at, end - 1)),
                    Some(etag),
                    buffer,
                )
            })
            .await
            .map_err(|_| Refusal::Internal)?
        }
        .await;
        let (start, data) = match read {
            Ok((_, start, _, data)) if !data.is_empty() => (start, data),
            Ok(_) => return Err(Refusal::Internal),
            Err(refusal) => {
                // The download ends here: its record says how far it got.
                let ended = match self.inner.downloads.lock() {
                    Ok(mut downloads) => downloads.close(&ticket),
                    Err(_) => None,
                };
                if let Some(ended) = ended {
                    self.record_download(&ended, Some(refusal.code().as_str()))
                        .await;
                }
                return Err(refusal);
            }
        };
        let finished = match self.inner.downloads.lock() {
            Ok(mut downloads) => downloads.advance(&ticket, data.len() as u64),
            Err(_) => return Err(Refusal::Internal),
        };
        if let Some(finished) = finished {
            self.record_download(&finished, None).await;
        }
        Ok(Response::Chunk {
            start,
            data: serde_bytes::ByteBuf::from(data),
        })
    }

    /// Whether `grant` is still active and within its window at both
    /// clocks (checked between the chunks of a download).
    fn grant_still_holds(&self, grant: GrantId) -> Result<(), Refusal> {
        use quorate_contracts::GrantStatus;
        let state = self.state();
        let (now, chain_time) = self.clocks();
        let reason = match state.grants.get(&grant) {
            None => Some(DenyReason::NoGrant),
            Some(record) => match record.status {
                GrantStatus::Revoked { .. } => Some(DenyReason::Revoked { grant }),
                GrantStatus::Ended { .. } => Some(DenyReason::Ended { grant }),
                GrantStatus::Active
                    if [now, chain_time]
                        .iter()
                        .any(|t| *t >= record.terms.not_after) =>
                {
                    Some(DenyReason::Expired { grant })
                }
                GrantStatus::Active => None,
            },
        };
        match reason {
            Some(reason) => Err(Refusal::Denied(reason)),
            None => Ok(()),
        }
    }

    /// Ends the downloads idle for [`DOWNLOAD_IDLE_MAX`], each with its
    /// record (the bytes sent, `incomplete`).
    async fn end_idle_downloads(&self) {
        let idle = match self.inner.downloads.lock() {
            Ok(mut downloads) => downloads.take_idle(Instant::now()),
            Err(_) => return,
        };
        for download in idle {
            self.record_download(&download, Some("incomplete")).await;
        }
    }
}

/// The transport name of libp2p requests in audit records.
const P2P: &str = "p2p";
/// Downloads over libp2p open at once, all members together; past this a
/// new one is refused (503) until others end.
pub const DOWNLOADS_MAX: usize = 1024;
/// Downloads one member may have open at once.
pub const DOWNLOADS_PER_MEMBER_MAX: usize = 64;
/// A download whose next chunk is not asked for within this ends (its
/// record written with what was sent).
pub const DOWNLOAD_IDLE_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// One download over libp2p: authorized at its first chunk, for a range of
/// one object at one ETag.
#[derive(Debug, Clone)]
struct Download {
    caller: Did,
    path: ResourcePath,
    etag: String,
    grant: GrantId,
    /// Where the next chunk starts.
    next: u64,
    /// Where the range ends (exclusive).
    end: u64,
    /// Bytes sent so far.
    sent: u64,
    touched: Instant,
}

/// The open downloads, by ticket.
#[derive(Debug, Default)]
struct Downloads {
    open: HashMap<[u8; TICKET_BYTES], Download>,
}

impl Downloads {
    fn open(&mut self, download: Download) -> Result<[u8; TICKET_BYTES], Refusal> {
        let mine = self
            .open
            .values()
            .filter(|d| d.caller == download.caller)
            .count();
        if self.open.len() >= DOWNLOADS_MAX || mine >= DOWNLOADS_PER_MEMBER_MAX {
            return Err(Refusal::TooManyDownloads);
        }
        let mut ticket = [0u8; TICKET_BYTES];
        getrandom::fill(&mut ticket).map_err(|_| Refusal::Internal)?;
        self.open.insert(ticket, download);
        Ok(ticket)
    }

    /// The download `ticket` names, if it is `caller`'s.
    fn get(&self, ticket: &[u8; TICKET_BYTES], caller: &Did) -> Option<&Download> {
        self.open.get(ticket).filter(|d| d.caller == *caller)
    }

    /// Counts a chunk sent; the download if that was its last.
    fn advance(&mut self, ticket: &[u8; TICKET_BYTES], bytes: u64) -> Option<Download> {
        let download = self.open.get_mut(ticket)?;
        download.next += bytes;
        download.sent += bytes;
        download.touched = Instant::now();
        if download.next >= download.end {
            return self.open.remove(ticket);
        }
        None
    }

    fn close(&mut self, ticket: &[u8; TICKET_BYTES]) -> Option<Download> {
        self.open.remove(ticket)
    }

    fn take_idle(&mut self, now: Instant) -> Vec<Download> {
        let idle: Vec<[u8; TICKET_BYTES]> = self
            .open
            .iter()
            .filter(|(_, d)| now.saturating_duration_since(d.touched) >= DOWNLOAD_IDLE_MAX)
            .map(|(t, _)| *t)
            .collect();
        idle.iter().filter_map(|t| self.open.remove(t)).collect()
    }
}

/// `allowed` (a decision allowing under `grant`), unless the grant's window
/// does not hold at the chain's time `chain_time` too.
fn within_window_at(
    state: &State,
    grant: GrantId,
    chain_time: quorate_contracts::Timestamp,
    allowed: Decision,
) -> Decision {
    match state.grants.get(&grant) {
        Some(record) if chain_time >= record.terms.not_after => {
            Decision::Deny(DenyReason::Expired { grant })
        }
        Some(record) if chain_time < record.terms.not_before => {
            Decision::Deny(DenyReason::NotYetValid { grant })
        }
        Some(_) => allowed,
        None => Decision::Deny(DenyReason::NoGrant),
    }
}

/// A part of the owner's namespace a caller may list: every path under a
/// key prefix, or one path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Prefix(String),
    Exact(ResourcePath),
}

impl Scope {
    fn start(&self) -> &str {
        match self {
            Scope::Prefix(prefix) => prefix,
            Scope::Exact(path) => path.as_str(),
        }
    }
}

/// The parts of `owner`'s namespace under `prefix` that `grantee` may
/// list now, disjoint and in key order. Cost: the grants between the two.
fn list_scopes(
    state: &State,
    grantee: quorate_contracts::MemberId,
    owner: quorate_contracts::MemberId,
    clocks: [quorate_contracts::Timestamp; 2],
    prefix: &str,
) -> Vec<Scope> {
    use quorate_contracts::{GrantStatus, ResourcePattern};
    let mut prefixes = Vec::new();
    let mut exact = Vec::new();
    for (_, record) in state.grants_between(&grantee, &owner) {
        let terms = &record.terms;
        let listable = record.status == GrantStatus::Active
            && clocks
                .iter()
                .all(|now| terms.not_before <= *now && *now < terms.not_after)
            && terms.actions.contains(&Action::List);
        if !listable {
            continue;
        }
        for pattern in &terms.resources {
            match pattern {
                ResourcePattern::All => prefixes.push(String::new()),
                ResourcePattern::Prefix(p) => prefixes.push(format!("{p}/")),
                ResourcePattern::Exact(p) => exact.push(p.clone()),
            }
        }
    }
    // Intersected with the query's prefix: a granted prefix inside it, or
    // the query's inside a granted one.
    let mut prefixes: Vec<String> = prefixes
        .into_iter()
        .filter_map(|granted| {
            if granted.starts_with(prefix) {
                Some(granted)
            } else if prefix.starts_with(&granted) {
                Some(prefix.to_owned())
            } else {
                None
            }
        })
        .collect();
    prefixes.sort();
    // In key order a prefix comes before everything it covers.
    let mut kept: Vec<String> = Vec::new();
    for p in prefixes {
        if !kept.last().is_some_and(|k| p.starts_with(k.as_str())) {
            kept.push(p);
        }
    }
    let mut scopes: Vec<Scope> = exact
        .into_iter()
        .filter(|path| {
            path.as_str().starts_with(prefix)
                && !kept.iter().any(|k| path.as_str().starts_with(k.as_str()))
        })
        .map(Scope::Exact)
        .collect();
    scopes.extend(kept.into_iter().map(Scope::Prefix));
    scopes.sort_by(|a, b| a.start().cmp(b.start()));
    scopes.dedup();
    scopes
}

/// A page of the objects in `scopes` after `after` (blocking). `next` is
/// set when the page is full; it is the last object returned, one the
/// caller may see.
fn list_in_scopes(
    store: &ObjectStore,
    scopes: &[Scope],
    after: Option<&str>,
    limit: usize,
) -> Result<Listing, ObjectError> {
    let mut objects = Vec::new();
    for scope in scopes {
        let remaining = limit - objects.len();
        if remaining == 0 {
            break;
        }
        match scope {
            Scope::Prefix(prefix) => {
                let page = store.list(prefix, after, remaining)?;
                let full = page.next.is_some();
                objects.extend(page.objects);
                if full {
                    break;
                }
            }
            Scope::Exact(path) => {
                if after.is_some_and(|after| path.as_str() <= after) {
                    continue;
                }
                if let Some(info) = store.meta(path)? {
                    objects.push(info);
                }
            }
        }
    }
    let next = (objects.len() == limit)
        .then(|| objects.last().map(|o: &ObjectInfo| o.path.clone()))
        .flatten();
    Ok(Listing { objects, next })
}

/// `read`, `list`, `write`.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Read => "read",
        Action::List => "list",
        Action::Write => "write",
    }
}

/// Opens `range` of `path` as a streamed body.
pub async fn open_range(
    store: &Arc<ObjectStore>,
    path: &ResourcePath,
    range: Option<ByteRange>,
) -> Result<ObjectBody, Refusal> {
    let store = store.clone();
    let owned = path.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<_, Refusal> {
        let Some(info) = store.meta(&owned).map_err(storage_failed)? else {
            return Err(Refusal::NotFound(owned));
        };
        let span = match range {
            None => (0, info.size),
            Some(range) => range
                .resolve(info.size)
                .ok_or(Refusal::RangeNotSatisfiable { size: info.size })?,
        };
        let Some((info, file)) = store.open_at(&owned, span.0).map_err(storage_failed)? else {
            return Err(Refusal::NotFound(owned));
        };
        let length = span.1 - span.0;
        if length <= SMALL_OBJECT_BYTES {
            // Small: read it here, in this one blocking call, rather than
            // stream it through a file handle that blocks per read.
            let mut data = Vec::with_capacity(length as usize);
            file.take(length)
                .read_to_end(&mut data)
                .map_err(|e| storage_failed(e.into()))?;
            return Ok((info, span, Opened::Small(data)));
        }
        Ok((info, span, Opened::Large(file)))
    })
    .await
    .map_err(|_| Refusal::Internal)??;
    let (info, span, opened) = opened;
    let body = match opened {
        Opened::Small(data) => Body::from(data),
        Opened::Large(file) => {
            let reader =
                tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), span.1 - span.0);
            Body::from_stream(ReaderStream::with_capacity(reader, STREAM_CHUNK_BYTES))
        }
    };
    Ok(ObjectBody {
        info,
        span,
        partial: range.is_some(),
        sized: true,
        body,
    })
}

/// Objects up to this size are read in one piece, larger ones streamed.
const SMALL_OBJECT_BYTES: u64 = 64 * 1024;

enum Opened {
    Small(Vec<u8>),
    Large(std::fs::File),
}

/// A buffer for one chunk, allocated by the caller's (async) thread.
/// Chunks are read on the blocking pool, whose many threads each get a
/// malloc arena of their own: a 4 MiB buffer allocated there stays cached
/// in that thread's arena, so a long download touching many pool threads
/// grew the node by several chunks per thread (the large-object test saw
/// 25 to 60 MiB for one 96 MiB fetch). Allocated on the few worker threads
/// instead, the memory is reused.
fn chunk_buffer() -> Vec<u8> {
    Vec::with_capacity(OBJECT_CHUNK_BYTES as usize)
}

/// Reads at most [`OBJECT_CHUNK_BYTES`] of `range` into `data` (blocking).
fn read_span(
    store: &ObjectStore,
    path: &ResourcePath,
    range: Option<ByteRange>,
    if_match: Option<String>,
    mut data: Vec<u8>,
) -> Result<(ObjectInfo, u64, u64, Vec<u8>), Refusal> {
    let Some(info) = store.meta(path).map_err(storage_failed)? else {
        return Err(Refusal::NotFound(path.clone()));
    };
    if if_match.is_some_and(|etag| etag != info.etag) {
        return Err(Refusal::Changed);
    }
    let (start, end) = match range {
        None if info.size == 0 => (0, 0),
        None => (0, info.size),
        Some(range) => range
            .resolve(info.size)
            .ok_or(Refusal::RangeNotSatisfiable { size: info.size })?,
    };
    let Some((info, file)) = store.open_at(path, start).map_err(storage_failed)? else {
        return Err(Refusal::NotFound(path.clone()));
    };
    let length = (end - start).min(OBJECT_CHUNK_BYTES);
    data.clear();
    data.reserve_exact(length as usize);
    file.take(length)
        .read_to_end(&mut data)
        .map_err(|e| storage_failed(e.into()))?;
    Ok((info, start, end, data))
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
