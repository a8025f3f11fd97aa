//! The gateway's HTTP door: members' requests signed with RFC 9421 HTTP
//! Message Signatures (Ed25519, `keyid` = the caller's did:key).
//!
//! Here a request is only authenticated: signature, `created` within the
//! skew, a nonce never seen in the window. Authorization, rate limits,
//! serving and the audit record are the node's one pipeline
//! ([`Node::gateway_read`]), the same that serves peers over libp2p. A
//! request refused here is audited too, and no data leaves.
//!
//! Routes: `GET /gateway/objects/{path}` (with `Range`) and
//! `GET /gateway/objects?prefix=…` (a listing filtered to what the caller
//! may list).

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use quorate_did::Did;

use crate::local::Node;
use crate::objects::{ListQuery, range_of};
use crate::problem::Problem;
use crate::signature::{
    Policy, ReplayGuard, Replayed, RequestParts, SignatureError, verify_request,
};

/// The transport name in audit records.
pub const TRANSPORT: &str = "http";

#[derive(Clone)]
struct Gateway<N> {
    node: N,
    replay: Arc<Mutex<ReplayGuard>>,
    skew_secs: u64,
}

/// The signed routes.
pub fn router<N: Node>(node: N, skew_secs: u64) -> Router {
    Router::new()
        .route("/gateway/objects", get(list::<N>))
        .route("/gateway/objects/{*path}", get(read::<N>))
        .with_state(Gateway {
            node,
            replay: Arc::new(Mutex::new(ReplayGuard::new(skew_secs))),
            skew_secs,
        })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn signature_problem(e: &SignatureError) -> Problem {
    match e {
        SignatureError::Unsigned => Problem::unauthenticated(e.to_string()),
        _ => Problem::new(StatusCode::UNAUTHORIZED, "bad-signature", e.to_string()),
    }
}

/// Verifies the signature and the nonce; returns the caller.
fn authenticate<N>(
    gateway: &Gateway<N>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Did, Box<(Option<Did>, Problem)>> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target_uri = format!("http://{host}{path_and_query}");
    let fields: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let parts = RequestParts {
        method: method.as_str(),
        target_uri: &target_uri,
        headers: &fields,
    };
    let policy = Policy {
        skew_secs: gateway.skew_secs,
        has_body: false,
    };
    let now = now_secs();
    let verified = verify_request(&parts, &policy, now)
        .map_err(|e| Box::new((None, signature_problem(&e))))?;
    let nonce = verified.params.nonce.as_deref().unwrap_or_default();
    let created = verified.params.created.unwrap_or(now);
    let checked = match gateway.replay.lock() {
        Ok(mut guard) => guard.check(&verified.caller, nonce, created, now),
        Err(_) => Err(Replayed::Full),
    };
    if let Err(e) = checked {
        let problem = match e {
            Replayed::Seen => Problem::new(
                StatusCode::UNAUTHORIZED,
                "replayed",
                "this signature's nonce was already used",
            ),
            Replayed::CallerFull => {
                let mut p =
                    Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", e.to_string());
                p.retry_after_secs = Some(1);
                p
            }
            other => {
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    other.to_string(),
                );
                p.retry_after_secs = Some(1);
                p
            }
        };
        return Err(Box::new((Some(verified.caller), problem)));
    }
    Ok(verified.caller)
}

/// Audits a refusal before the pipeline and answers it.
async fn refuse<N: Node>(
    gateway: &Gateway<N>,
    caller: Option<Did>,
    resource: String,
    problem: Problem,
) -> Response {
    gateway
        .node
        .gateway_refused(caller, TRANSPORT, resource, &problem)
        .await;
    problem.into_response()
}

async fn read<N: Node>(
    State(gateway): State<Gateway<N>>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&gateway, &method, &uri, &headers) {
        Ok(caller) => caller,
        Err(refused) => {
            let (caller, problem) = *refused;
            return refuse(&gateway, caller, path, problem).await;
        }
    };
    let checked =
        range_of(&headers).and_then(|range| crate::local::resource(&path).map(|p| (p, range)));
    let (resource, range) = match checked {
        Ok(ok) => ok,
        Err(problem) => return refuse(&gateway, Some(caller), path, problem).await,
    };
    match gateway
        .node
        .gateway_read(caller, TRANSPORT, resource, range)
        .await
    {
        Ok(object) => object.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn list<N: Node>(
    State(gateway): State<Gateway<N>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    const LISTING: &str = "(listing)";
    let caller = match authenticate(&gateway, &method, &uri, &headers) {
        Ok(caller) => caller,
        Err(refused) => {
            let (caller, problem) = *refused;
            return refuse(&gateway, caller, LISTING.into(), problem).await;
        }
    };
    let Ok(Query(query)) = query else {
        let problem = Problem::bad_request("bad listing query");
        return refuse(&gateway, Some(caller), LISTING.into(), problem).await;
    };
    match gateway.node.gateway_list(caller, TRANSPORT, query).await {
        Ok(json) => Json(json).into_response(),
        Err(problem) => problem.into_response(),
    }
}
