//! The local API: what an organization's own operators and applications
//! call, with the admin token. (Peers come in through the gateway.)
//!
//! The API reaches the node through [`Node`], a narrow trait, so it is
//! testable without a swarm.

use std::future::Future;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use quorate_contracts::Action;
use serde::{Deserialize, Serialize};

use crate::auth::{AdminToken, require_admin};
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
    },
    /// Revoke a grant (alone if this organization granted it).
    Revoke {
        /// The grant id (hex).
        grant: String,
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
}

/// The local API's routes, behind the admin token.
pub fn router<N: Node>(node: N, token: AdminToken) -> Router {
    let admin = Router::new()
        .route("/v1/status", get(status::<N>))
        .route("/v1/proposals", get(proposals::<N>).post(propose::<N>))
        .route("/v1/proposals/{id}/approve", post(approve::<N>))
        .route("/v1/proposals/{id}/reject", post(reject::<N>))
        .route("/v1/grants", get(grants::<N>))
        .route("/v1/grants/{id}/proof", get(grant_proof::<N>))
        .layer(middleware::from_fn_with_state(token, require_admin))
        .with_state(node);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(admin)
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
}

async fn status<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.status().await)
}

async fn proposals<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.proposals().await)
}

async fn grants<N: Node>(State(node): State<N>) -> Json<serde_json::Value> {
    Json(node.grants().await)
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

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
