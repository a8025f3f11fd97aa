//! The local API: what an organization's own operators and applications
//! call, with the admin token. (Peers come in through the gateway.)
//!
//! The API reaches the node through [`Node`], a narrow trait, so it is
//! testable without a swarm.

use std::future::Future;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use quorate_contracts::{Action, ResourcePath};
use quorate_did::Did;
use serde::{Deserialize, Serialize};

use crate::auth::{AdminToken, require_admin};
use crate::objects::{ByteRange, ListQuery, ObjectBody, ObjectInfo, object_headers, range_of};
use crate::problem::Problem;

/// Largest JSON body the local API reads.
pub const JSON_BODY_BYTES_MAX: usize = 64 * 1024;

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
        #[serde(default)]
        not_before_ms: Option<u64>,
        /// End (ms since the Unix epoch, exclusive).
        not_after_ms: u64,
        /// Why.
        #[serde(default)]
        purpose: Option<String>,
        /// At most this many requests per window under this grant.
        #[serde(default)]
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
    /// Grants on the ledger.
    fn grants(&self) -> impl Future<Output = serde_json::Value> + Send;
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
    /// The gateway pipeline for an authenticated caller's read: authorize
    /// against the committed grants, rate-limit, serve, audit.
    fn gateway_read(
        &self,
        caller: Did,
        transport: &'static str,
        path: ResourcePath,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<ObjectBody, Problem>> + Send;
    /// The gateway pipeline for an authenticated caller's listing.
    fn gateway_list(
        &self,
        caller: Did,
        transport: &'static str,
        query: ListQuery,
    ) -> impl Future<Output = Result<serde_json::Value, Problem>> + Send;
    /// Audits a request refused before authorization (unsigned, bad
    /// signature, replay, bad path).
    fn gateway_refused(
        &self,
        caller: Option<Did>,
        transport: &'static str,
        resource: String,
        problem: &Problem,
    ) -> impl Future<Output = ()> + Send;
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
    /// Only `allow` or `deny`.
    pub decision: Option<String>,
    /// At most this many, newest last (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The local API's routes, behind the admin token, and the gateway's
/// signed routes (see [`crate::gateway`]).
pub fn router<N: Node>(node: N, token: AdminToken, signature_skew_secs: u64) -> Router {
    let node_for_gateway = node.clone();
    let node_for_probes = node.clone();
    let admin = Router::new()
        .route("/v1/status", get(status::<N>))
        .route("/v1/proposals", get(proposals::<N>).post(propose::<N>))
        .route("/v1/proposals/{id}/approve", post(approve::<N>))
        .route("/v1/proposals/{id}/reject", post(reject::<N>))
        .route("/v1/grants", get(grants::<N>))
        .route("/v1/grants/{id}", get(grant::<N>))
        .route("/v1/grants/{id}/proof", get(grant_proof::<N>))
        .route("/v1/identity", get(identity::<N>))
        .route("/v1/members", get(members::<N>))
        .route("/v1/peers", get(members::<N>))
        .route("/v1/objects", get(list_objects::<N>))
        .route(
            "/v1/objects/{*path}",
            get(get_object::<N>)
                .put(put_object::<N>)
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
        .layer(middleware::from_fn_with_state(token, require_admin))
        .with_state(node);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<N>))
        .route(
            "/openapi.json",
            get(|| async { ([(CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .with_state(node_for_probes)
        .merge(admin)
        .merge(crate::gateway::router(
            node_for_gateway,
            signature_skew_secs,
        ))
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
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

async fn entry<N: Node>(State(node): State<N>, Path(id): Path<String>) -> Response {
    json_or_problem(node.entry(id).await)
}

async fn ledger<N: Node>(State(node): State<N>) -> Response {
    json_or_problem(node.ledger().await)
}

async fn block<N: Node>(
    State(node): State<N>,
    Path(height): Path<String>,
    query: Result<Query<BlockQuery>, QueryRejection>,
) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return Problem::bad_request(format!("{height:?} is not a block height")).into_response();
    };
    let cbor = match query.map(|Query(q)| q.format) {
        Ok(None) => false,
        Ok(Some(f)) if f == "json" => false,
        Ok(Some(f)) if f == "cbor" => true,
        Ok(Some(f)) => {
            return Problem::bad_request(format!("format {f:?}: use json or cbor")).into_response();
        }
        Err(e) => return Problem::bad_request(e.body_text()).into_response(),
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
        Err(e) => Problem::bad_request(e.body_text()).into_response(),
    }
}

async fn get_object<N: Node>(
    State(node): State<N>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let range = range_of(&headers)?;
        node.get_object(resource(&path)?, range).await
    };
    match result.await {
        Ok(object) => object.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn head_object<N: Node>(State(node): State<N>, Path(path): Path<String>) -> Response {
    let result = async { node.head_object(resource(&path)?).await };
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

async fn put_object<N: Node>(
    State(node): State<N>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let result = async { node.put_object(resource(&path)?, content_type, body).await };
    match result.await {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn delete_object<N: Node>(State(node): State<N>, Path(path): Path<String>) -> Response {
    let result = async { node.delete_object(resource(&path)?).await };
    match result.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn peer_get<N: Node>(
    State(node): State<N>,
    Path((peer, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
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
    Path(peer): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => json_or_problem(node.peer_list(peer, query).await),
        Err(e) => Problem::bad_request(e.body_text()).into_response(),
    }
}

async fn audit<N: Node>(
    State(node): State<N>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => json_or_problem(node.audit(query).await),
        Err(e) => Problem::bad_request(e.body_text()).into_response(),
    }
}

async fn status<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.status().await)
}

async fn proposals<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.proposals().await)
}

/// Filters of `GET /v1/grants` (member names or did:keys; status
/// `active`, `revoked`, `ended`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// Only grants to this member.
    pub grantee: Option<String>,
    /// Only grants by this member.
    pub grantor: Option<String>,
    /// Only grants in this state.
    pub status: Option<String>,
}

async fn grants<N: Node>(
    State(node): State<N>,
    query: Result<Query<GrantQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return Problem::bad_request("grant filters are grantee, grantor and status")
            .into_response();
    };
    let all = node.grants().await;
    let matches = |grant: &serde_json::Value, field: &str, wanted: &Option<String>| {
        wanted.as_ref().is_none_or(|w| {
            grant[field]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(w))
        })
    };
    let selected: Vec<serde_json::Value> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| {
            matches(g, "grantee", &query.grantee)
                && matches(g, "grantor", &query.grantor)
                && matches(g, "status", &query.status)
        })
        .cloned()
        .collect();
    Json(serde_json::Value::Array(selected)).into_response()
}

async fn grant<N: Node>(State(node): State<N>, Path(id): Path<String>) -> Response {
    let all = node.grants().await;
    match all
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["id"] == id.as_str())
    {
        Some(grant) => Json(grant.clone()).into_response(),
        None => Problem::not_found(format!("no committed grant {id}")).into_response(),
    }
}

async fn grant_proof<N: Node>(State(node): State<N>, Path(id): Path<String>) -> Response {
    match node.grant_proof(id).await {
        Ok(cbor) => ([(CONTENT_TYPE, "application/cbor")], cbor).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn propose<N: Node>(
    State(node): State<N>,
    body: Result<Json<ProposalRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return Problem::bad_request(e.body_text()).into_response(),
    };
    match node.propose(request).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn approve<N: Node>(State(node): State<N>, Path(id): Path<String>) -> Response {
    decide(node, id, true).await
}

async fn reject<N: Node>(State(node): State<N>, Path(id): Path<String>) -> Response {
    decide(node, id, false).await
}

async fn decide<N: Node>(node: N, id: String, approve: bool) -> Response {
    match node.decide(id, approve).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves. Small answers
/// go out at once (`TCP_NODELAY`): without it, Nagle's algorithm and the
/// client's delayed ACK hold keep-alive responses for ~40 ms.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
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
}
