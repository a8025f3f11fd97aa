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

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::StatusCode;
use quorate_api::objects::{ByteRange, ListQuery, Listing, ObjectBody, ObjectInfo, unsatisfiable};
use quorate_api::problem::Problem;
use quorate_contracts::{
    AccessRequest, Action, Decision, GrantId, RateLimit, ResourcePath, State, authorize,
};
use quorate_did::Did;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::io::ReaderStream;

use crate::audit::{self, Auditor};
use crate::config::GatewaySection;
use crate::driver::{self, GatewayRequest, Status};
use crate::network;
use crate::objects::{LIST_LIMIT_MAX, ObjectError, ObjectStore};
use crate::protocol::{self, OBJECT_CHUNK_BYTES, Request, Response};
use crate::upstream::Upstreams;

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

fn problem(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(status, code, detail)
}

fn storage_problem(e: ObjectError) -> Problem {
    tracing::error!(target: "gateway", error = %e, "object storage failed");
    Problem::internal()
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
    pub fn ready(&self) -> Result<(), Problem> {
        let age = self
            .inner
            .status
            .borrow()
            .last_commit
            .map(|at| at.elapsed());
        if age.is_none_or(|age| age > self.inner.config.max_ledger_age.0) {
            let mut p = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "stale-ledger",
                "this node's ledger is not fresh enough to decide; it may have missed a revocation",
            );
            p.retry_after_secs = Some(1);
            return Err(p);
        }
        Ok(())
    }

    /// Freshness, membership, grants, rate limits.
    fn check(&self, caller: &Did, action: Action, path: &ResourcePath) -> Result<Allowed, Problem> {
        self.ready()?;
        let state = self.state();
        let Some(owner) = state.member_by_did(&self.inner.me) else {
            return Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-serving",
                "this node is not a member of the consortium",
            ));
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
            Decision::Deny(reason) => {
                let detail = match reason.grant() {
                    Some(grant) => format!("{} (grant {grant})", reason.code()),
                    None => reason.code().to_owned(),
                };
                return Err(problem(StatusCode::FORBIDDEN, reason.code(), detail));
            }
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
    ) -> Result<(), Problem> {
        let config = &self.inner.config;
        let now = Instant::now();
        let Ok(mut limits) = self.inner.limits.lock() else {
            return Err(Problem::internal());
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
        result.map_err(|wait| {
            let mut p = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "over the request rate allowed to this member or grant",
            );
            p.retry_after_secs = Some(wait);
            p
        })
    }

    async fn record(
        &self,
        transport: &str,
        caller: Option<&Did>,
        action: Action,
        resource: &str,
        outcome: Result<(Option<GrantId>, u64), &Problem>,
    ) {
        let (decision, reason, grant, bytes) = match outcome {
            Ok((grant, bytes)) => {
                self.inner.allowed.fetch_add(1, Ordering::Relaxed);
                ("allow", None, grant, bytes)
            }
            Err(problem) => {
                self.inner.denied.fetch_add(1, Ordering::Relaxed);
                ("deny", Some(problem.code.to_owned()), None, 0)
            }
        };
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
        problem: &Problem,
    ) {
        self.record(transport, caller, action, resource, Err(problem))
            .await;
    }

    /// The pipeline for a read; the body streams the object's range.
    pub async fn read(
        &self,
        caller: &Did,
        transport: &str,
        path: &ResourcePath,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, Problem> {
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
            Err(problem) => {
                self.record(
                    transport,
                    Some(caller),
                    Action::Read,
                    path.as_str(),
                    Err(&problem),
                )
                .await;
                Err(problem)
            }
        }
    }

    /// An upstream's answer as an object body (streamed, whole: `Range`
    /// is not forwarded, which RFC 9110 allows).
    async fn proxy(&self, path: &ResourcePath) -> Result<ObjectBody, Problem> {
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
    ) -> Result<(ObjectInfo, u64, u64, Vec<u8>), Problem> {
        let response = self.inner.upstreams.get(path).await?;
        let limit = OBJECT_CHUNK_BYTES as usize;
        let mut data = Vec::new();
        let mut stream = response.body.into_data_stream();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| {
                problem(
                    StatusCode::BAD_GATEWAY,
                    "upstream-failed",
                    format!("the upstream body broke off: {e}"),
                )
            })?;
            if data.len() + chunk.len() > limit {
                return Err(problem(
                    StatusCode::BAD_GATEWAY,
                    "upstream-too-large",
                    format!("upstream answers over {limit} bytes are served over signed HTTP only"),
                ));
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
                .ok_or_else(|| unsatisfiable(info.size))?,
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
    ) -> Result<Listing, Problem> {
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
            Err(problem) => {
                self.record(
                    transport,
                    Some(caller),
                    Action::List,
                    &resource,
                    Err(problem),
                )
                .await
            }
        }
        outcome
    }

    async fn list_allowed(&self, caller: &Did, query: &ListQuery) -> Result<Listing, Problem> {
        // Freshness, membership and the member's rate, once per listing.
        self.ready()?;
        let state = self.state();
        let Some(member) = state.member_by_did(caller).map(|m| m.id) else {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "not-a-member",
                "not-a-member",
            ));
        };
        let owner = state
            .member_by_did(&self.inner.me)
            .map(|m| m.id)
            .ok_or_else(|| {
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not-serving",
                    "this node is not a member of the consortium",
                )
            })?;
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
        .map_err(|_| Problem::internal())?
        .map_err(storage_problem)?;
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
    pub async fn serve_peers(
        self,
        mut inbox: mpsc::Receiver<GatewayRequest>,
        net: network::Client,
    ) {
        while let Some((from, request, reply)) = inbox.recv().await {
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
        const TRANSPORT: &str = "p2p";
        let denied = |p: Problem| Response::Denied {
            status: p.status.as_u16(),
            code: p.code.to_owned(),
            detail: p.detail,
        };
        match request {
            Request::Object {
                path,
                range,
                if_match,
            } => {
                let path = match ResourcePath::parse(&path) {
                    Ok(path) => path,
                    Err(e) => {
                        let p = problem(
                            StatusCode::BAD_REQUEST,
                            "bad-path",
                            format!("{path:?}: {e}"),
                        );
                        self.refused(TRANSPORT, Some(from), Action::Read, &path, &p)
                            .await;
                        return denied(p);
                    }
                };
                match self.read_chunk(from, &path, range, if_match).await {
                    Ok(response) => response,
                    Err(p) => denied(p),
                }
            }
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
                    Err(p) => denied(p),
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
    ) -> Result<Response, Problem> {
        let outcome = async {
            let allowed = self.check(from, Action::Read, path)?;
            if self.inner.upstreams.serves(path) {
                return Ok((allowed, self.proxy_chunk(path, range).await?));
            }
            let store = self.inner.objects.clone();
            let owned = path.clone();
            let read =
                tokio::task::spawn_blocking(move || read_span(&store, &owned, range, if_match))
                    .await
                    .map_err(|_| Problem::internal())??;
            Ok((allowed, read))
        }
        .await;
        match outcome {
            Ok((allowed, (info, start, end, data))) => {
                self.record(
                    "p2p",
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
                self.record("p2p", Some(from), Action::Read, path.as_str(), Err(&p))
                    .await;
                Err(p)
            }
        }
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
    use quorate_contracts::DenyReason;
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

fn not_found(path: &ResourcePath) -> Problem {
    Problem::not_found(format!("no object {path}"))
}

/// Opens `range` of `path` as a streamed body.
pub async fn open_range(
    store: &Arc<ObjectStore>,
    path: &ResourcePath,
    range: Option<ByteRange>,
) -> Result<ObjectBody, Problem> {
    let store = store.clone();
    let owned = path.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<_, Problem> {
        let Some(info) = store.meta(&owned).map_err(storage_problem)? else {
            return Err(not_found(&owned));
        };
        let span = match range {
            None => (0, info.size),
            Some(range) => range
                .resolve(info.size)
                .ok_or_else(|| unsatisfiable(info.size))?,
        };
        let Some((info, file)) = store.open_at(&owned, span.0).map_err(storage_problem)? else {
            return Err(not_found(&owned));
        };
        let length = span.1 - span.0;
        if length <= SMALL_OBJECT_BYTES {
            // Small: read it here, in this one blocking call, rather than
            // stream it through a file handle that blocks per read.
            let mut data = Vec::with_capacity(length as usize);
            file.take(length)
                .read_to_end(&mut data)
                .map_err(|e| storage_problem(e.into()))?;
            return Ok((info, span, Opened::Small(data)));
        }
        Ok((info, span, Opened::Large(file)))
    })
    .await
    .map_err(|_| Problem::internal())??;
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

/// Reads at most [`OBJECT_CHUNK_BYTES`] of `range` (blocking).
fn read_span(
    store: &ObjectStore,
    path: &ResourcePath,
    range: Option<ByteRange>,
    if_match: Option<String>,
) -> Result<(ObjectInfo, u64, u64, Vec<u8>), Problem> {
    let Some(info) = store.meta(path).map_err(storage_problem)? else {
        return Err(not_found(path));
    };
    if if_match.is_some_and(|etag| etag != info.etag) {
        return Err(problem(
            StatusCode::PRECONDITION_FAILED,
            "changed",
            "the object changed during the download",
        ));
    }
    let (start, end) = match range {
        None if info.size == 0 => (0, 0),
        None => (0, info.size),
        Some(range) => range
            .resolve(info.size)
            .ok_or_else(|| unsatisfiable(info.size))?,
    };
    let Some((info, file)) = store.open_at(path, start).map_err(storage_problem)? else {
        return Err(not_found(path));
    };
    let length = (end - start).min(OBJECT_CHUNK_BYTES);
    let mut data = Vec::with_capacity(length as usize);
    file.take(length)
        .read_to_end(&mut data)
        .map_err(|e| storage_problem(e.into()))?;
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
