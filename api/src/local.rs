//! The local API: what an organization's own operators and applications
//! call, with the admin token. (Peers come in through the gateway.)
//!
//! The API reaches the node through [`Node`], a narrow trait, so it is
//! testable without a swarm.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::handler::Handler as _;
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use quorate_contracts::{Action, ResourcePath};
use serde::{Deserialize, Serialize};

use crate::auth::{AdminToken, require_admin};
use crate::objects::{
    ByteRange, ListQuery, ObjectBody, ObjectInfo, is_media_type, object_headers, range_of,
};
use crate::problem::{PROBLEM_JSON, Problem};

/// Largest JSON body the local API reads.
pub const JSON_BODY_BYTES_MAX: usize = 64 * 1024;

/// Longest request target (scheme, authority, path and query) the API
/// reads; a longer one is refused with 414 `uri-too-long`.
pub const URI_BYTES_MAX: usize = 8 * 1024;
/// Largest header section (each field counted as name, value and 4 bytes
/// of `: ` and CRLF); a larger one is refused with 431 `headers-too-large`.
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Most header fields in one request; more are refused with 431.
pub const HEADERS_MAX: usize = 64;
// These sit below hyper's own limits so that a refusal reaches us and goes
// out as a problem. Beyond them hyper answers before the router runs, with
// an empty body we cannot shape: 431 for more than 100 header fields or a
// head larger than its read buffer (`max_buf_size`, 64 KiB in
// `crate::serve`), 414 for a request target over 65,534 bytes, and 400 for
// a head HTTP/1.1 forbids (a control byte in a header value, a malformed
// request line or header name).

/// Admin requests served at once unless the caller says otherwise; more
/// wait their turn.
pub const ADMIN_CONCURRENCY_DEFAULT: usize = 64;
/// Gateway requests served at once unless the caller says otherwise (the
/// default of the node's `[gateway] concurrency`).
pub const GATEWAY_CONCURRENCY_DEFAULT: usize = 256;
/// Largest object unless the caller says otherwise (the default of the
/// node's `[gateway] object_bytes_max`).
pub const OBJECT_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Of an upload refused for its declared length, at most this much is read
/// and dropped, so that a client that writes its body before it reads
/// still gets the 413 rather than a reset connection.
pub const REFUSED_BODY_DRAIN_BYTES_MAX: u64 = 8 << 20;
/// ... and for at most this long.
pub const REFUSED_BODY_DRAIN_TIME: Duration = Duration::from_secs(5);
/// Longest text of a framework's refusal kept as a problem's `detail`.
const REFUSAL_TEXT_BYTES_MAX: usize = 1024;

/// How many requests each group of routes serves at once. Each group has
/// its own budget, so that slow admin uploads cannot starve members'
/// gateway reads; the probes (`/healthz`, `/readyz`, `/openapi.json`)
/// answer from memory and have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// The admin-token routes (`/v1/…`, `/metrics`).
    pub admin: usize,
    /// The signed routes (`/gateway/…`).
    pub gateway: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            admin: ADMIN_CONCURRENCY_DEFAULT,
            gateway: GATEWAY_CONCURRENCY_DEFAULT,
        }
    }
}

/// The router's limits that come from the node's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests served at once, per group of routes.
    pub budgets: Budgets,
    /// Largest object a put accepts: a declared `Content-Length` above it
    /// is refused (413) before a byte of the body is read. (The node still
    /// cuts a body without a declared length when it passes its limit.)
    pub object_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            budgets: Budgets::default(),
            object_bytes_max: OBJECT_BYTES_MAX_DEFAULT,
        }
    }
}

/// What can be proposed through the API. The node resolves names and DIDs
/// against its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProposalRequest {
    /// Grant a member access to some of this organization's data.
    Grant {
        /// The grantee: a member name or its did:key.
        grantee: String,
        /// Patterns: `*`, `prefix/*` or an exact path.
        resources: Vec<String>,
        /// `read`, `list`, `write`.
        actions: Vec<Action>,
        /// Start (ms since the Unix epoch); now if absent.
        #[serde(default, deserialize_with = "whole_or_null")]
        not_before_ms: Option<u64>,
        /// End (ms since the Unix epoch, exclusive).
        #[serde(deserialize_with = "whole")]
        not_after_ms: u64,
        /// Why.
        #[serde(default)]
        purpose: Option<String>,
        /// At most this many requests per window under this grant.
        #[serde(default, deserialize_with = "rate_limit")]
        rate_limit: Option<quorate_contracts::RateLimit>,
    },
    /// Revoke a grant (alone if this organization granted it).
    Revoke {
        /// The grant id (hex).
        grant: String,
    },
    /// Admit a new organization (a quorum must endorse).
    AddMember {
        /// Its short name.
        name: String,
        /// Its did:key.
        did: String,
    },
    /// Remove a member (a quorum must endorse); its grants end.
    RemoveMember {
        /// The member's name or did:key.
        member: String,
    },
    /// Move this organization to a new key (`quorate did rotate` makes it
    /// and keeps it as `key.next.pem`). Signed with the current key; a
    /// quorum including this member must endorse. Grants name members, not
    /// keys, so they carry over.
    RotateKey {
        /// The new did:key.
        did: String,
    },
}

/// Largest integer a JSON number with a fraction part (`5.0`) may stand
/// for: beyond 2^53 a double no longer holds every integer.
const WHOLE_FLOAT_MAX: f64 = 9_007_199_254_740_992.0;

/// A JSON integer as JSON Schema's `integer` admits it: `5` or `5.0` (a
/// zero fraction), in range for `T`.
fn whole<'de, D: serde::Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    whole_number(serde_json::Number::deserialize(d)?)
}

fn whole_or_null<'de, D: serde::Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(whole_number)
        .transpose()
}

fn whole_number<E: serde::de::Error, T: TryFrom<u64>>(n: serde_json::Number) -> Result<T, E> {
    let value = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=WHOLE_FLOAT_MAX).contains(f))
            .map(|f| f as u64)
    });
    value
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| E::custom(format!("{n} is not a whole number in range")))
}

/// A grant's rate limit, its counts read as [`whole`] numbers.
fn rate_limit<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<quorate_contracts::RateLimit>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Lenient {
        #[serde(deserialize_with = "whole")]
        requests: u32,
        #[serde(deserialize_with = "whole")]
        per_seconds: u32,
    }
    Ok(
        Option::<Lenient>::deserialize(d)?.map(|l| quorate_contracts::RateLimit {
            requests: l.requests,
            per_seconds: l.per_seconds,
        }),
    )
}

/// The node as the API sees it.
pub trait Node: Clone + Send + Sync + 'static {
    /// Height, peers, freshness.
    fn status(&self) -> impl Future<Output = serde_json::Value> + Send;
    /// Proposes as this member; returns the proposal id.
    fn propose(
        &self,
        request: ProposalRequest,
    ) -> impl Future<Output = Result<String, Problem>> + Send;
    /// Proposals the node knows, with their state.
    fn proposals(&self) -> impl Future<Output = serde_json::Value> + Send;
    /// Endorses (`approve`) or refuses a proposal.
    fn decide(&self, id: String, approve: bool)
    -> impl Future<Output = Result<(), Problem>> + Send;
    /// One page of the committed grants that match `query`, in id order.
    fn grants(&self, query: GrantQuery) -> impl Future<Output = Result<GrantPage, Problem>> + Send;
    /// One committed grant (`id` is 64 hex digits).
    fn grant(&self, id: String) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// A proof of a grant's record at height `at` (the tip if `None`), as
    /// canonical CBOR (`docs/ledger-format.md` section 6), checkable
    /// offline from genesis.
    fn grant_status(
        &self,
        id: String,
        at: Option<u64>,
    ) -> impl Future<Output = Result<Vec<u8>, Problem>> + Send;
    /// A committed grant's proof, as canonical CBOR (see
    /// `docs/ledger-format.md`), checkable offline from genesis.
    fn grant_proof(&self, id: String) -> impl Future<Output = Result<Vec<u8>, Problem>> + Send;
    /// This node: name, DID, member id.
    fn identity(&self) -> impl Future<Output = serde_json::Value> + Send;
    /// The current members, with whether each is connected.
    fn members(&self) -> impl Future<Output = serde_json::Value> + Send;
    /// Stores an object, streaming `body` to disk (durable on return).
    fn put_object(
        &self,
        path: ResourcePath,
        content_type: String,
        body: Body,
    ) -> impl Future<Output = Result<ObjectInfo, Problem>> + Send;
    /// Reads one of this organization's objects.
    fn get_object(
        &self,
        path: ResourcePath,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<ObjectBody, Problem>> + Send;
    /// An object's metadata.
    fn head_object(
        &self,
        path: ResourcePath,
    ) -> impl Future<Output = Result<ObjectInfo, Problem>> + Send;
    /// Deletes an object.
    fn delete_object(&self, path: ResourcePath)
    -> impl Future<Output = Result<(), Problem>> + Send;
    /// Lists this organization's objects.
    fn list_objects(
        &self,
        query: ListQuery,
    ) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// Fetches a member's object over libp2p; the member's gateway decides.
    fn peer_get(
        &self,
        peer: String,
        path: ResourcePath,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<ObjectBody, Problem>> + Send;
    /// Lists what a member's gateway lets this organization list.
    fn peer_list(
        &self,
        peer: String,
        query: ListQuery,
    ) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// Audit records, newest last.
    fn audit(
        &self,
        query: AuditQuery,
    ) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// The gateway pipeline, behind the signed routes.
    type Gateway: crate::gateway::Pipeline;
    /// Its handle (cheap to clone).
    fn gateway(&self) -> Self::Gateway;
    /// Prometheus text.
    fn metrics(&self) -> impl Future<Output = String> + Send;
    /// Where a committed entry (grant, revocation, membership change) is
    /// on the ledger.
    fn entry(&self, id: String) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// Whether the node can decide requests now (its ledger is fresh).
    fn ready(&self) -> impl Future<Output = Result<(), Problem>> + Send;
    /// The committed chain at a glance (id, genesis, tip, epoch, counts).
    fn ledger(&self) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// A committed block: a JSON view of it, and its canonical CBOR (a
    /// `CommittedBlock` of `docs/ledger-format.md`).
    fn block(
        &self,
        height: u64,
    ) -> impl Future<Output = Result<(serde_json::Value, Vec<u8>), Problem>> + Send;
    /// The whole committed chain as an export file (`docs/ledger-format.md`),
    /// streamed; `quorate ledger verify` checks it offline.
    fn ledger_export(&self) -> impl Future<Output = Result<Body, Problem>> + Send;
}

/// Query of `GET /v1/ledger/blocks/{height}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockQuery {
    /// `json` (default) or `cbor` (the canonical bytes).
    pub format: Option<String>,
}

/// The OpenAPI 3.1 description of every route (checked against the
/// routers by a test).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Filters of `GET /v1/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this caller (a did:key).
    pub caller: Option<String>,
    /// Only `allow` or `deny` (anything else is refused).
    #[serde(default, deserialize_with = "decision")]
    pub decision: Option<String>,
    /// At most this many, newest last: 1 to
    /// [`LIST_LIMIT_MAX`](crate::objects::LIST_LIMIT_MAX), default 100.
    #[serde(default, deserialize_with = "crate::objects::list_limit")]
    pub limit: Option<usize>,
}

fn decision<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let decision = String::deserialize(d)?;
    match decision.as_str() {
        "allow" | "deny" => Ok(Some(decision)),
        _ => Err(serde::de::Error::custom(format!(
            "decision {decision:?}: use allow or deny"
        ))),
    }
}

/// The local API's routes, behind the admin token, and the gateway's
/// signed routes (see [`crate::gateway`]), under the node's [`Limits`].
///
/// Every refusal is `application/problem+json` with a stable type: the
/// handlers' own, extractor rejections, the fallbacks (404 `not-found`,
/// 405 `method-not-allowed` with `Allow`), and the limits on the request
/// target and header section, checked before anything else runs.
pub fn router<N: Node>(
    node: N,
    token: AdminToken,
    gateway: crate::gateway::Settings,
    limits: Limits,
) -> Router {
    let pipeline = node.gateway();
    let node_for_probes = node.clone();
    let admin_budget = Budget::new(limits.budgets.admin);
    let gateway_budget = Budget::new(limits.budgets.gateway);
    let put = put_object::<N>.layer(middleware::from_fn_with_state(
        limits.object_bytes_max,
        refuse_declared_too_large,
    ));
    let admin = Router::new()
        .route("/v1/status", get(status::<N>))
        .route("/v1/proposals", get(proposals::<N>).post(propose::<N>))
        .route("/v1/proposals/{id}/approve", post(approve::<N>))
        .route("/v1/proposals/{id}/reject", post(reject::<N>))
        .route("/v1/grants", get(grants::<N>))
        .route("/v1/grants/{id}", get(grant::<N>))
        .route("/v1/grants/{id}/proof", get(grant_proof::<N>))
        .route("/v1/grants/{id}/status", get(grant_status::<N>))
        .route("/v1/identity", get(identity::<N>))
        .route("/v1/members", get(members::<N>))
        .route("/v1/peers", get(members::<N>))
        .route("/v1/objects", get(list_objects::<N>))
        .route(
            "/v1/objects/{*path}",
            get(get_object::<N>)
                .put(put)
                .delete(delete_object::<N>)
                .head(head_object::<N>),
        )
        .route("/v1/peers/{peer}/objects", get(peer_list::<N>))
        .route("/v1/peers/{peer}/objects/{*path}", get(peer_get::<N>))
        .route("/v1/audit", get(audit::<N>))
        .route("/v1/ledger", get(ledger::<N>))
        .route("/v1/ledger/blocks/{height}", get(block::<N>))
        .route("/v1/ledger/export", get(ledger_export::<N>))
        .route("/v1/ledger/entries/{id}", get(entry::<N>))
        .route("/metrics", get(metrics::<N>))
        // The token is checked before a slot is taken, so that requests
        // without it cannot queue ahead of the operator's.
        .route_layer(middleware::from_fn_with_state(admin_budget, budget))
        .route_layer(middleware::from_fn_with_state(token, require_admin))
        .with_state(node);
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<N>))
        .route(
            "/openapi.json",
            get(|| async { ([(CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .with_state(node_for_probes);
    let gateway = crate::gateway::router(pipeline, gateway)
        .route_layer(middleware::from_fn_with_state(gateway_budget, budget));
    Router::new()
        .merge(probes)
        .merge(admin)
        .merge(gateway)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
        .layer(middleware::from_fn(problems_only))
        .layer(middleware::from_fn(head_limits))
}

/// A group's budget of requests served at once (more wait for a slot).
#[derive(Clone)]
struct Budget(Arc<tokio::sync::Semaphore>);

impl Budget {
    fn new(slots: usize) -> Self {
        let slots = slots.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Self(Arc::new(tokio::sync::Semaphore::new(slots)))
    }
}

async fn budget(State(budget): State<Budget>, request: Request, next: Next) -> Response {
    // The semaphore is never closed; a slot is held until the response's
    // head is ready (its body streams outside the budget).
    let Ok(_slot) = budget.0.acquire_owned().await else {
        return Problem::internal().into_response();
    };
    next.run(request).await
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    Problem::not_found(format!("no route for {method} {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    Problem::method_not_allowed(format!(
        "{} does not take {method}; Allow lists what it takes",
        uri.path()
    ))
    .into_response()
}

/// Refuses a request whose target or header section is over our limits
/// (414, 431), before any route, budget or token check runs.
async fn head_limits(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let uri_bytes = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_bytes > URI_BYTES_MAX {
        return Problem::uri_too_long(format!(
            "the request target has {uri_bytes} bytes; at most {URI_BYTES_MAX}"
        ))
        .into_response();
    }
    let headers = request.headers();
    if headers.len() > HEADERS_MAX {
        return Problem::headers_too_large(format!(
            "the request has {} header fields; at most {HEADERS_MAX}",
            headers.len()
        ))
        .into_response();
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > HEADER_BYTES_MAX {
        return Problem::headers_too_large(format!(
            "the header section has {header_bytes} bytes; at most {HEADER_BYTES_MAX}"
        ))
        .into_response();
    }
    next.run(request).await
}

/// Turns a refusal that is not a problem (a framework's own answer: an
/// extractor's rejection in a route this module does not own, a body
/// limit) into one, keeping its status, its short text as the detail, and
/// the headers that tell the client what to do (`Allow`, `Retry-After`,
/// `WWW-Authenticate`).
async fn problems_only(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REFUSAL_TEXT_BYTES_MAX)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let detail = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_owned()
    });
    let mut fixed = Problem::for_status(status, detail).into_response();
    for name in [ALLOW, RETRY_AFTER, WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            fixed.headers_mut().insert(name, value.clone());
        }
    }
    fixed
}

/// Refuses an upload whose declared `Content-Length` is over `max` at once
/// (413), before the body is read.
async fn refuse_declared_too_large(
    State(max): State<u64>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > max => {
            drain(request.into_body());
            Problem::too_large(format!(
                "the body declares {length} bytes; objects are limited to {max} bytes"
            ))
            .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Reads and drops some of a refused body in the background, bounded by
/// [`REFUSED_BODY_DRAIN_BYTES_MAX`] and [`REFUSED_BODY_DRAIN_TIME`]: hyper
/// closes a connection whose body was left unread, and a close with unread
/// bytes resets it, which can destroy the 413 before a client that writes
/// first reads it. The task ends with the connection or the bounds.
fn drain(mut body: Body) {
    use axum::body::HttpBody as _;
    tokio::spawn(async move {
        let read = async {
            let mut bytes = 0u64;
            while bytes <= REFUSED_BODY_DRAIN_BYTES_MAX {
                let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
                match frame.await {
                    Some(Ok(frame)) => {
                        bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                    }
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(REFUSED_BODY_DRAIN_TIME, read).await;
    });
}

/// `path` as a resource path, or a 400 `bad-path`.
pub(crate) fn resource(path: &str) -> Result<ResourcePath, Problem> {
    ResourcePath::parse(path).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-path",
            format!("{path:?} is not a resource path: {e}"),
        )
    })
}

/// A path parameter the router could not read (bytes that are not UTF-8
/// once percent-decoded): 400 `bad-path`.
fn path_problem(rejection: PathRejection) -> Problem {
    if rejection.status().is_server_error() {
        return Problem::internal();
    }
    Problem::new(StatusCode::BAD_REQUEST, "bad-path", rejection.body_text())
}

/// A query string that does not fit the route's filters: 400.
fn query_problem(rejection: QueryRejection) -> Problem {
    Problem::bad_request(rejection.body_text())
}

/// A JSON body that could not be read: 413 over the limit, 415 without a
/// JSON `Content-Type`, else 400.
fn json_problem(rejection: JsonRejection) -> Problem {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(format!(
            "JSON bodies are limited to {JSON_BODY_BYTES_MAX} bytes"
        )),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            rejection.body_text(),
        ),
        status if status.is_server_error() => Problem::internal(),
        _ => Problem::bad_request(rejection.body_text()),
    }
}

/// An id path parameter: 64 hex digits (a grant, proposal or entry id), or
/// a 400 `bad-request`.
fn hex_id(id: Result<Path<String>, PathRejection>, what: &str) -> Result<String, Problem> {
    let Path(id) = id.map_err(path_problem)?;
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(Problem::bad_request(format!(
            "{id:?} is not a {what} id (64 hex digits)"
        )))
    }
}

fn json_or_problem(result: Result<serde_json::Value, Problem>) -> Response {
    match result {
        Ok(json) => Json(json).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn readyz<N: Node>(State(node): State<N>) -> Response {
    match node.ready().await {
        Ok(()) => "ready".into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn entry<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    match hex_id(id, "entry") {
        Ok(id) => json_or_problem(node.entry(id).await),
        Err(problem) => problem.into_response(),
    }
}

async fn ledger<N: Node>(State(node): State<N>) -> Response {
    json_or_problem(node.ledger().await)
}

async fn block<N: Node>(
    State(node): State<N>,
    height: Result<Path<String>, PathRejection>,
    query: Result<Query<BlockQuery>, QueryRejection>,
) -> Response {
    let Path(height) = match height {
        Ok(height) => height,
        Err(e) => return path_problem(e).into_response(),
    };
    // Decimal digits only (no sign), at most u64::MAX.
    let parsed = height
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| height.parse::<u64>().ok())
        .flatten();
    let Some(height) = parsed else {
        return Problem::bad_request(format!(
            "{height:?} is not a block height (0 to {})",
            u64::MAX
        ))
        .into_response();
    };
    let cbor = match query.map(|Query(q)| q.format) {
        Ok(None) => false,
        Ok(Some(f)) if f == "json" => false,
        Ok(Some(f)) if f == "cbor" => true,
        Ok(Some(f)) => {
            return Problem::bad_request(format!("format {f:?}: use json or cbor")).into_response();
        }
        Err(e) => return query_problem(e).into_response(),
    };
    match node.block(height).await {
        Ok((_, bytes)) if cbor => ([(CONTENT_TYPE, "application/cbor")], bytes).into_response(),
        Ok((json, _)) => Json(json).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn ledger_export<N: Node>(State(node): State<N>) -> Response {
    match node.ledger_export().await {
        Ok(body) => ([(CONTENT_TYPE, "application/octet-stream")], body).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn identity<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.identity().await)
}

async fn members<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.members().await)
}

async fn metrics<N: Node>(State(node): State<N>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        node.metrics().await,
    )
        .into_response()
}

async fn list_objects<N: Node>(
    State(node): State<N>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => json_or_problem(node.list_objects(query).await),
        Err(e) => query_problem(e).into_response(),
    }
}

async fn get_object<N: Node>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Path(path) = path.map_err(path_problem)?;
        let range = range_of(&headers)?;
        node.get_object(resource(&path)?, range).await
    };
    match result.await {
        Ok(object) => object.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn head_object<N: Node>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let Path(path) = path.map_err(path_problem)?;
        node.head_object(resource(&path)?).await
    };
    match result.await {
        Ok(info) => {
            let mut response = StatusCode::OK.into_response();
            object_headers(&info, response.headers_mut());
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(info.size));
            response
        }
        Err(problem) => problem.into_response(),
    }
}

/// The media type a put stores: its `Content-Type` if that is one (see
/// [`is_media_type`]), `application/octet-stream` if absent, else a 400
/// `bad-content-type` (it is echoed on every read of the object).
fn stored_content_type(headers: &HeaderMap) -> Result<String, Problem> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok("application/octet-stream".to_owned());
    };
    match value.to_str() {
        Ok(text) if is_media_type(text) => Ok(text.to_owned()),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-content-type",
            format!(
                "Content-Type must be a media type (type/subtype; parameters), at most {} bytes",
                crate::objects::CONTENT_TYPE_BYTES_MAX
            ),
        )),
    }
}

/// A put: an empty body stores an empty object (a legitimate object, such
/// as a marker file).
async fn put_object<N: Node>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let Path(path) = path.map_err(path_problem)?;
        let path = resource(&path)?;
        let content_type = stored_content_type(&headers)?;
        node.put_object(path, content_type, body).await
    };
    match result.await {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn delete_object<N: Node>(
    State(node): State<N>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let Path(path) = path.map_err(path_problem)?;
        node.delete_object(resource(&path)?).await
    };
    match result.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn peer_get<N: Node>(
    State(node): State<N>,
    params: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Path((peer, path)) = params.map_err(path_problem)?;
        let range = range_of(&headers)?;
        node.peer_get(peer, resource(&path)?, range).await
    };
    match result.await {
        Ok(object) => object.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn peer_list<N: Node>(
    State(node): State<N>,
    peer: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    match (peer, query) {
        (Err(e), _) => path_problem(e).into_response(),
        (_, Err(e)) => query_problem(e).into_response(),
        (Ok(Path(peer)), Ok(Query(query))) => json_or_problem(node.peer_list(peer, query).await),
    }
}

async fn audit<N: Node>(
    State(node): State<N>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => json_or_problem(node.audit(query).await),
        Err(e) => query_problem(e).into_response(),
    }
}

async fn status<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.status().await)
}

async fn proposals<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.proposals().await)
}

/// Filters and page of `GET /v1/grants` (member names or did:keys; status
/// `active`, `expired`, `revoked`, `ended`; a page after a grant id).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// Only grants to this member.
    pub grantee: Option<String>,
    /// Only grants by this member.
    pub grantor: Option<String>,
    /// Only grants in this state.
    pub status: Option<String>,
    /// Only grants whose id sorts after this one (the previous page's last).
    pub after: Option<String>,
    /// At most this many grants (1 to [`GRANTS_PAGE_MAX`], default
    /// [`GRANTS_PAGE_DEFAULT`]).
    pub limit: Option<u32>,
}

/// Grants in a page when the query names no limit.
pub const GRANTS_PAGE_DEFAULT: u32 = 100;
/// Most grants in a page.
pub const GRANTS_PAGE_MAX: u32 = 1000;

/// One page of grants, and where the next begins if there may be more.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantPage {
    /// The grants, in id order.
    pub grants: Vec<serde_json::Value>,
    /// The `after` of the next page, if the listing may go on.
    pub next_after: Option<String>,
}

impl GrantQuery {
    /// The page size asked for, checked.
    pub fn page_size(&self) -> Result<u32, Problem> {
        match self.limit {
            None => Ok(GRANTS_PAGE_DEFAULT),
            Some(n @ 1..=GRANTS_PAGE_MAX) => Ok(n),
            Some(_) => Err(Problem::bad_request(format!(
                "limit must be 1 to {GRANTS_PAGE_MAX}"
            ))),
        }
    }

    /// This query's filters with `after`, as a query string (for `Link`).
    fn next_page(&self, after: &str, limit: u32) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("grantee", &self.grantee),
            ("grantor", &self.grantor),
            ("status", &self.status),
        ] {
            if let Some(value) = value {
                let encoded: String = value
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                            char::from(b).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                parts.push(format!("{name}={encoded}"));
            }
        }
        parts.push(format!("after={after}"));
        parts.push(format!("limit={limit}"));
        parts.join("&")
    }
}

async fn grants<N: Node>(
    State(node): State<N>,
    query: Result<Query<GrantQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return Problem::bad_request(
            "grant queries take grantee, grantor, status, after and limit",
        )
        .into_response();
    };
    let limit = match query.page_size() {
        Ok(limit) => limit,
        Err(problem) => return problem.into_response(),
    };
    if let Some(after) = &query.after
        && !(after.len() == 64 && after.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Problem::bad_request("after must be a grant id (64 hex digits)").into_response();
    }
    match node.grants(query.clone()).await {
        Ok(page) => {
            let mut response = Json(serde_json::Value::Array(page.grants)).into_response();
            if let Some(after) = page.next_after {
                let link = format!(
                    "</v1/grants?{}>; rel=\"next\"",
                    query.next_page(&after, limit)
                );
                if let Ok(value) = axum::http::HeaderValue::from_str(&link) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::LINK, value);
                }
            }
            response
        }
        Err(problem) => problem.into_response(),
    }
}

async fn grant<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match hex_id(id, "grant") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match node.grant(id).await {
        Ok(grant) => Json(grant).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn grant_proof<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let id = match hex_id(id, "grant") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match node.grant_proof(id).await {
        Ok(cbor) => ([(CONTENT_TYPE, "application/cbor")], cbor).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// The height of `GET /v1/grants/{id}/status`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// The committed height to prove the status at (the tip if absent).
    pub at: Option<u64>,
}

async fn grant_status<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Response {
    let id = match hex_id(id, "grant") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let Ok(Query(query)) = query else {
        return Problem::bad_request("a status query takes at=HEIGHT (a whole number)")
            .into_response();
    };
    match node.grant_status(id, query.at).await {
        Ok(cbor) => ([(CONTENT_TYPE, "application/cbor")], cbor).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn propose<N: Node>(
    State(node): State<N>,
    body: Result<Json<ProposalRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return json_problem(e).into_response(),
    };
    match node.propose(request).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn approve<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    decide(node, id, true).await
}

async fn reject<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    decide(node, id, false).await
}

async fn decide<N: Node>(
    node: N,
    id: Result<Path<String>, PathRejection>,
    approve: bool,
) -> Response {
    let id = match hex_id(id, "proposal") {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match node.decide(id, approve).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::OPENAPI_JSON;

    /// Every `.route("…")` in the routers' source, as OpenAPI paths.
    fn routes_in_source() -> Vec<String> {
        let mut routes = Vec::new();
        for source in [include_str!("local.rs"), include_str!("gateway.rs")] {
            for piece in source.split(".route(").skip(1) {
                let Some(path) = piece.trim_start().strip_prefix('"') else {
                    continue;
                };
                let path = &path[..path.find('"').unwrap()];
                if path.starts_with('/') {
                    routes.push(path.replace("{*", "{"));
                }
            }
        }
        routes
    }

    #[test]
    fn the_openapi_document_lists_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: std::collections::BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let routed: std::collections::BTreeSet<String> = routes_in_source().into_iter().collect();
        assert!(routed.len() >= 20, "found only {routed:?}");
        assert_eq!(documented, routed);
    }

    /// Validated with the reference validator (`openapi-spec-validator`,
    /// installed by `.ci/run`); skipped when it is absent unless
    /// `QUORATE_REQUIRE_OPENAPI_VALIDATOR` is set.
    #[test]
    fn the_openapi_document_validates() {
        let check = std::process::Command::new("python3")
            .args([
                "-c",
                "import json,sys; from openapi_spec_validator import validate; validate(json.load(sys.stdin))",
            ])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let required = std::env::var_os("QUORATE_REQUIRE_OPENAPI_VALIDATOR").is_some();
        let Ok(mut child) = check else {
            assert!(!required, "python3 is required");
            return;
        };
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(OPENAPI_JSON.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("ModuleNotFoundError") && !required {
            eprintln!("skipped: openapi-spec-validator is not installed");
            return;
        }
        assert!(
            out.status.success(),
            "the OpenAPI document does not validate: {stderr}"
        );
    }

    #[test]
    fn proposal_integers_may_have_a_zero_fraction_and_optional_fields_may_be_null() {
        use super::ProposalRequest;
        let grant = |fields: &str| {
            serde_json::from_str::<ProposalRequest>(&format!(
                r#"{{"grant":{{"grantee":"org-b","resources":["*"],"actions":["read"],{fields}}}}}"#
            ))
        };
        let Ok(ProposalRequest::Grant {
            not_before_ms,
            not_after_ms,
            rate_limit,
            ..
        }) = grant(
            r#""not_after_ms":5.0,"not_before_ms":null,"rate_limit":{"requests":2.0,"per_seconds":1}"#,
        )
        else {
            panic!("refused");
        };
        assert_eq!((not_before_ms, not_after_ms), (None, 5));
        assert_eq!(
            rate_limit.map(|r| (r.requests, r.per_seconds)),
            Some((2, 1))
        );
        for bad in [
            r#""not_after_ms":5.5"#,
            r#""not_after_ms":-1"#,
            r#""not_after_ms":1e300"#,
            r#""not_after_ms":1,"rate_limit":{"requests":4294967296,"per_seconds":1}"#,
            r#""not_after_ms":1,"rate_limit":{"requests":1,"per_seconds":1,"burst":2}"#,
        ] {
            assert!(grant(bad).is_err(), "{bad}");
        }
    }

    /// The router's own refusals, through `oneshot` against a node that
    /// stores nothing.
    mod refusals {
        use std::sync::Arc;
        use std::time::Duration;

        use axum::body::Body;
        use axum::http::{Request, StatusCode, header};
        use axum::response::Response;
        use quorate_contracts::ResourcePath;
        use quorate_did::Did;
        use tower::ServiceExt as _;

        use crate::auth::AdminToken;
        use crate::local::{AuditQuery, Budgets, Limits, Node, ProposalRequest, router};
        use crate::objects::{ByteRange, ListQuery, ObjectBody, ObjectInfo};
        use crate::problem::Problem;

        const TOKEN: &str = "test-token";

        /// A node with no objects; `status` waits at `gate` when it is set,
        /// like a slow admin request.
        #[derive(Clone, Default)]
        struct Empty {
            gate: Option<Arc<tokio::sync::Semaphore>>,
        }

        fn none<T>() -> Result<T, Problem> {
            Err(Problem::not_found("nothing here"))
        }

        impl Node for Empty {
            async fn status(&self) -> serde_json::Value {
                if let Some(gate) = &self.gate {
                    let _pass = gate.acquire().await;
                }
                serde_json::json!({})
            }
            async fn propose(&self, _: ProposalRequest) -> Result<String, Problem> {
                none()
            }
            async fn proposals(&self) -> serde_json::Value {
                serde_json::json!([])
            }
            async fn decide(&self, _: String, _: bool) -> Result<(), Problem> {
                none()
            }
            async fn grants(
                &self,
                _: crate::local::GrantQuery,
            ) -> Result<crate::local::GrantPage, Problem> {
                Ok(crate::local::GrantPage::default())
            }
            async fn grant(&self, _: String) -> Result<serde_json::Value, Problem> {
                none()
            }
            async fn grant_proof(&self, _: String) -> Result<Vec<u8>, Problem> {
                none()
            }
            async fn grant_status(&self, _: String, _: Option<u64>) -> Result<Vec<u8>, Problem> {
                none()
            }
            async fn identity(&self) -> serde_json::Value {
                serde_json::json!({})
            }
            async fn members(&self) -> serde_json::Value {
                serde_json::json!({})
            }
            async fn put_object(
                &self,
                path: ResourcePath,
                content_type: String,
                body: Body,
            ) -> Result<ObjectInfo, Problem> {
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .map_err(|_| Problem::too_large("over 1 MiB"))?;
                Ok(ObjectInfo {
                    path: path.to_string(),
                    size: bytes.len() as u64,
                    etag: "e".into(),
                    content_type,
                    modified_ms: 0,
                })
            }
            async fn get_object(
                &self,
                _: ResourcePath,
                _: Option<ByteRange>,
            ) -> Result<ObjectBody, Problem> {
                none()
            }
            async fn head_object(&self, _: ResourcePath) -> Result<ObjectInfo, Problem> {
                none()
            }
            async fn delete_object(&self, _: ResourcePath) -> Result<(), Problem> {
                none()
            }
            async fn list_objects(&self, query: ListQuery) -> Result<serde_json::Value, Problem> {
                Ok(serde_json::json!({ "objects": [], "limit": query.limit }))
            }
            async fn peer_get(
                &self,
                _: String,
                _: ResourcePath,
                _: Option<ByteRange>,
            ) -> Result<ObjectBody, Problem> {
                none()
            }
            async fn peer_list(
                &self,
                _: String,
                _: ListQuery,
            ) -> Result<serde_json::Value, Problem> {
                none()
            }
            async fn audit(&self, query: AuditQuery) -> Result<serde_json::Value, Problem> {
                Ok(serde_json::json!({ "limit": query.limit, "decision": query.decision }))
            }
            type Gateway = Self;
            fn gateway(&self) -> Self {
                self.clone()
            }
            async fn metrics(&self) -> String {
                String::new()
            }
            async fn entry(&self, _: String) -> Result<serde_json::Value, Problem> {
                none()
            }
            async fn ready(&self) -> Result<(), Problem> {
                Ok(())
            }
            async fn ledger(&self) -> Result<serde_json::Value, Problem> {
                Ok(serde_json::json!({}))
            }
            async fn block(&self, _: u64) -> Result<(serde_json::Value, Vec<u8>), Problem> {
                none()
            }
            async fn ledger_export(&self) -> Result<Body, Problem> {
                none()
            }
        }

        impl crate::gateway::Pipeline for Empty {
            async fn read(
                &self,
                _: Did,
                _: ResourcePath,
                _: Option<ByteRange>,
            ) -> Result<ObjectBody, crate::refusal::Refusal> {
                Err(crate::refusal::Refusal::Internal)
            }
            async fn list(
                &self,
                _: Did,
                _: ListQuery,
            ) -> Result<crate::objects::Listing, crate::refusal::Refusal> {
                Err(crate::refusal::Refusal::Internal)
            }
            fn is_member(&self, _: &Did) -> bool {
                false
            }
            async fn refused(
                &self,
                _: Option<Did>,
                _: quorate_contracts::Action,
                _: String,
                _: &crate::refusal::Refusal,
            ) {
            }
        }

        fn app(node: Empty, budgets: Budgets) -> axum::Router {
            let limits = Limits {
                budgets,
                object_bytes_max: 1024,
            };
            router(
                node,
                AdminToken::new(TOKEN),
                crate::gateway::Settings::new(
                    60,
                    "127.0.0.1:1",
                    quorate_did::Keypair::from_seed(&[7; 32]).did(),
                ),
                limits,
            )
        }

        fn request(method: &str, uri: &str) -> axum::http::request::Builder {
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        }

        async fn send(request: Request<Body>) -> Response {
            app(Empty::default(), Budgets::default())
                .oneshot(request)
                .await
                .unwrap()
        }

        /// The status and problem code of a problem+json answer.
        async fn problem(response: Response) -> (u16, String) {
            let status = response.status().as_u16();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            assert_eq!(
                content_type.as_ref().map(|t| t.to_str().unwrap()),
                Some("application/problem+json"),
                "{status}: {}",
                String::from_utf8_lossy(&body)
            );
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["status"], status);
            let code = json["type"]
                .as_str()
                .unwrap()
                .strip_prefix("urn:quorate:problem:")
                .unwrap()
                .to_owned();
            (status, code)
        }

        async fn refusal(request: Request<Body>) -> (u16, String) {
            problem(send(request).await).await
        }

        fn get(uri: &str) -> Request<Body> {
            request("GET", uri).body(Body::empty()).unwrap()
        }

        #[tokio::test]
        async fn unknown_routes_and_methods_are_problems() {
            assert_eq!(refusal(get("/nowhere")).await, (404, "not-found".into()));
            assert_eq!(refusal(get("/v1")).await, (404, "not-found".into()));
            let response = send(request("POST", "/v1/status").body(Body::empty()).unwrap()).await;
            let allow = response.headers().get(header::ALLOW).cloned();
            assert_eq!(problem(response).await, (405, "method-not-allowed".into()));
            assert_eq!(allow.unwrap().to_str().unwrap(), "GET,HEAD");
            let response = send(
                request("PATCH", "/v1/objects/a")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            let allow = response.headers().get(header::ALLOW).cloned().unwrap();
            assert_eq!(problem(response).await.0, 405);
            for method in ["GET", "PUT", "DELETE", "HEAD"] {
                assert!(allow.to_str().unwrap().contains(method), "{allow:?}");
            }
            let response = send(
                request("DELETE", "/gateway/objects/a")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(problem(response).await, (405, "method-not-allowed".into()));
        }

        #[tokio::test]
        async fn a_declared_length_over_the_object_limit_is_refused_before_the_body() {
            // The body is shorter than declared: a node that read it would
            // store it (201); only the declared length is judged.
            let put = request("PUT", "/v1/objects/big.bin")
                .header(header::CONTENT_LENGTH, "1000000000000")
                .body(Body::from("short"))
                .unwrap();
            assert_eq!(refusal(put).await, (413, "too-large".into()));
            // At the limit it is read.
            let put = request("PUT", "/v1/objects/fits.bin")
                .header(header::CONTENT_LENGTH, "1024")
                .body(Body::from(vec![0u8; 1024]))
                .unwrap();
            assert_eq!(send(put).await.status(), StatusCode::CREATED);
        }

        #[tokio::test]
        async fn oversized_targets_and_header_sections_are_problems() {
            let long = format!("/v1/objects/{}", "a".repeat(super::super::URI_BYTES_MAX));
            assert_eq!(refusal(get(&long)).await, (414, "uri-too-long".into()));
            let mut many = request("GET", "/v1/status");
            for i in 0..super::super::HEADERS_MAX {
                many = many.header(format!("x-field-{i}"), "1");
            }
            assert_eq!(
                refusal(many.body(Body::empty()).unwrap()).await,
                (431, "headers-too-large".into())
            );
            let big = request("GET", "/healthz")
                .header("x-big", "b".repeat(super::super::HEADER_BYTES_MAX))
                .body(Body::empty())
                .unwrap();
            assert_eq!(refusal(big).await, (431, "headers-too-large".into()));
            // The gateway's routes are held to the same limits.
            let long = format!(
                "/gateway/objects/{}",
                "a".repeat(super::super::URI_BYTES_MAX)
            );
            assert_eq!(refusal(get(&long)).await, (414, "uri-too-long".into()));
        }

        #[tokio::test]
        async fn bad_parameters_are_problems() {
            for (uri, status, code) in [
                ("/v1/objects/%FF", 400, "bad-path"),
                ("/v1/objects/a%2F..%2Fb", 400, "bad-path"),
                ("/v1/peers/%FF/objects", 400, "bad-path"),
                ("/v1/peers/org-b/objects/%C0", 400, "bad-path"),
                ("/v1/objects?limit=1001", 400, "bad-request"),
                ("/v1/objects?limit=0", 400, "bad-request"),
                ("/v1/objects?limit=x", 400, "bad-request"),
                ("/v1/audit?limit=1001", 400, "bad-request"),
                ("/v1/audit?decision=maybe", 400, "bad-request"),
                ("/v1/ledger/blocks/18446744073709551616", 400, "bad-request"),
                ("/v1/ledger/blocks/+1", 400, "bad-request"),
                ("/v1/ledger/blocks/-1", 400, "bad-request"),
                ("/v1/ledger/entries/abc", 400, "bad-request"),
                ("/v1/grants/zz", 400, "bad-request"),
                ("/v1/grants/%FF/proof", 400, "bad-path"),
            ] {
                assert_eq!(refusal(get(uri)).await, (status, code.into()), "{uri}");
            }
            // The gateway's own rejections come as problems too.
            let (status, _) = refusal(get("/gateway/objects/%FF")).await;
            assert!((400..500).contains(&status), "{status}");
            let approve = request("POST", &format!("/v1/proposals/{}/approve", "g".repeat(64)))
                .body(Body::empty())
                .unwrap();
            assert_eq!(refusal(approve).await, (400, "bad-request".into()));
            // In range, they reach the node.
            for uri in ["/v1/objects?limit=1000", "/v1/audit?limit=1&decision=deny"] {
                assert_eq!(send(get(uri)).await.status(), StatusCode::OK, "{uri}");
            }
            let block = get("/v1/ledger/blocks/18446744073709551615");
            assert_eq!(refusal(block).await, (404, "not-found".into()));
        }

        #[tokio::test]
        async fn malformed_ranges_are_problems() {
            for range in [&b"bytes=9-0"[..], b"bytes=0-\xff", b"bytes=x-"] {
                let get = request("GET", "/v1/objects/a.csv")
                    .header(
                        header::RANGE,
                        axum::http::HeaderValue::from_bytes(range).unwrap(),
                    )
                    .body(Body::empty())
                    .unwrap();
                assert_eq!(refusal(get).await, (416, "bad-range".into()), "{range:?}");
            }
        }

        #[tokio::test]
        async fn puts_store_only_media_types_and_may_be_empty() {
            for bad in [
                "text",
                "text/plain; q",
                "<b>/x",
                &format!("a/{}", "b".repeat(300)),
            ] {
                let put = request("PUT", "/v1/objects/a.txt")
                    .header(header::CONTENT_TYPE, bad)
                    .body(Body::from("x"))
                    .unwrap();
                assert_eq!(
                    refusal(put).await,
                    (400, "bad-content-type".into()),
                    "{bad}"
                );
            }
            let put = request("PUT", "/v1/objects/a.txt")
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::from("x"))
                .unwrap();
            let stored = send(put).await;
            assert_eq!(stored.status(), StatusCode::CREATED);
            let empty = request("PUT", "/v1/objects/marker")
                .body(Body::empty())
                .unwrap();
            let stored = send(empty).await;
            assert_eq!(stored.status(), StatusCode::CREATED);
            let body = axum::body::to_bytes(stored.into_body(), 1 << 16)
                .await
                .unwrap();
            let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (info["size"].as_u64(), info["content_type"].as_str()),
                (Some(0), Some("application/octet-stream"))
            );
        }

        #[tokio::test]
        async fn json_bodies_are_refused_as_problems() {
            let post = |content_type: Option<&str>, body: Vec<u8>| {
                let mut builder = request("POST", "/v1/proposals");
                if let Some(t) = content_type {
                    builder = builder.header(header::CONTENT_TYPE, t);
                }
                builder.body(Body::from(body)).unwrap()
            };
            let big = vec![b' '; super::super::JSON_BODY_BYTES_MAX + 1];
            assert_eq!(
                refusal(post(Some("application/json"), big)).await,
                (413, "too-large".into())
            );
            assert_eq!(
                refusal(post(None, b"{}".to_vec())).await,
                (415, "unsupported-media-type".into())
            );
            assert_eq!(
                refusal(post(Some("application/json"), b"{".to_vec())).await,
                (400, "bad-request".into())
            );
            assert_eq!(
                refusal(post(Some("application/json"), b"{\"grant\":1}".to_vec())).await,
                (400, "bad-request".into())
            );
        }

        #[tokio::test]
        async fn without_the_token_admin_routes_are_refused_and_probes_answer() {
            let anonymous = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
            assert_eq!(
                refusal(anonymous("/v1/status")).await,
                (401, "unauthenticated".into())
            );
            for uri in ["/healthz", "/readyz", "/openapi.json"] {
                assert_eq!(send(anonymous(uri)).await.status(), StatusCode::OK, "{uri}");
            }
            // The gateway refuses unsigned requests (with its own types).
            let (status, _) = refusal(anonymous("/gateway/objects/a")).await;
            assert!((400..500).contains(&status), "{status}");
        }

        /// A full admin budget holds admin requests back, and nothing else.
        #[tokio::test]
        async fn each_group_of_routes_has_its_own_budget() {
            let gate = Arc::new(tokio::sync::Semaphore::new(0));
            let node = Empty {
                gate: Some(gate.clone()),
            };
            let app = app(
                node,
                Budgets {
                    admin: 2,
                    gateway: 2,
                },
            );
            let slow: Vec<_> = (0..2)
                .map(|_| tokio::spawn(app.clone().oneshot(get("/v1/status"))))
                .collect();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let quick = Duration::from_secs(2);
            let queued = tokio::spawn(app.clone().oneshot(get("/v1/identity")));
            for uri in ["/healthz", "/readyz", "/openapi.json", "/gateway/objects/a"] {
                let answer = tokio::time::timeout(quick, app.clone().oneshot(get(uri)))
                    .await
                    .unwrap_or_else(|_| panic!("{uri} waited on the admin budget"))
                    .unwrap();
                assert!(answer.status() != StatusCode::REQUEST_TIMEOUT, "{uri}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !queued.is_finished(),
                "an admin request passed a full budget"
            );
            gate.add_permits(3);
            for task in slow {
                assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
            }
            let answer = tokio::time::timeout(quick, queued)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
        }
    }
}
