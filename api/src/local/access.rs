//! Who may call which route of the local API, and the record of every
//! state-changing call.
//!
//! [`ROUTES`] is the one table: each route (method and path as the router
//! names it) with the roles that open it and, for a route that changes
//! state, the action its audit record names. The middleware [`authorize`]
//! resolves the bearer token to a [`Principal`], looks the matched route up
//! and refuses what the principal's roles do not open (403 `role-required`,
//! naming the roles that would); a route missing from the table is open to
//! `admin` alone. `/openapi.json` shows each operation's roles from the
//! same table, and a test checks the table against the router.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Node;
use crate::auth::{Principal, Role, Roles, Unauthenticated, bearer};
use crate::problem::{Problem, ProblemCode};

use Role::{Approver, Auditor, Metrics, Publisher, Reader};

/// One route's access rule.
#[derive(Debug, Clone)]
pub struct RouteAccess {
    /// Its method (`HEAD` follows `GET`).
    pub method: Method,
    /// Its path as the router writes it (`/v1/objects/{*path}`).
    pub path: &'static str,
    /// The roles that open it, besides `admin`; empty for admin only.
    pub roles: Roles,
    /// For a call that changes state, the action its audit record names.
    pub audited: Option<&'static str>,
}

const fn read(path: &'static str, roles: &[Role]) -> RouteAccess {
    RouteAccess {
        method: Method::GET,
        path,
        roles: Roles::of(roles),
        audited: None,
    }
}

const fn change(
    method: Method,
    path: &'static str,
    roles: &[Role],
    action: &'static str,
) -> RouteAccess {
    RouteAccess {
        method,
        path,
        roles: Roles::of(roles),
        audited: Some(action),
    }
}

/// Every role but `metrics`: who may see the consortium at a glance.
const PEOPLE: &[Role] = &[Approver, Publisher, Reader, Auditor];
/// Who may read the ledger and its grants and proposals.
const LEDGER_READERS: &[Role] = &[Approver, Publisher, Reader, Auditor];
/// Who may read objects, ours and what peers grant us.
const OBJECT_READERS: &[Role] = &[Publisher, Reader];

/// Every route of the local API and who may call it.
pub const ROUTES: &[RouteAccess] = &[
    read(
        "/v1/principal",
        &[Approver, Publisher, Reader, Auditor, Metrics],
    ),
    read("/v1/status", PEOPLE),
    read("/v1/events", PEOPLE),
    read("/v1/identity", PEOPLE),
    read("/v1/members", PEOPLE),
    read("/v1/peers", PEOPLE),
    read("/v1/proposals", LEDGER_READERS),
    change(Method::POST, "/v1/proposals", &[Approver], "propose"),
    change(
        Method::POST,
        "/v1/proposals/{id}/approve",
        &[Approver],
        "approve",
    ),
    change(
        Method::POST,
        "/v1/proposals/{id}/reject",
        &[Approver],
        "reject",
    ),
    read("/v1/proposals/{id}", LEDGER_READERS),
    change(
        Method::POST,
        "/v1/proposals/{id}/withdraw",
        &[Approver],
        "withdraw",
    ),
    read("/v1/endorsement-policy", &[Approver, Auditor]),
    change(
        Method::PUT,
        "/v1/endorsement-policy",
        &[],
        "set-endorsement-policy",
    ),
    read("/v1/grants", LEDGER_READERS),
    read("/v1/grants/{id}", LEDGER_READERS),
    read("/v1/grants/{id}/proof", LEDGER_READERS),
    read("/v1/grants/{id}/status", LEDGER_READERS),
    read("/v1/members/{member}/status", LEDGER_READERS),
    read("/v1/ledger", LEDGER_READERS),
    read("/v1/ledger/blocks/{height}", LEDGER_READERS),
    read("/v1/ledger/entries/{id}", LEDGER_READERS),
    read("/v1/ledger/export", &[Auditor]),
    read("/v1/audit", &[Auditor]),
    read("/v1/objects", OBJECT_READERS),
    read("/v1/objects/{*path}", OBJECT_READERS),
    change(
        Method::PUT,
        "/v1/objects/{*path}",
        &[Publisher],
        "put-object",
    ),
    change(
        Method::DELETE,
        "/v1/objects/{*path}",
        &[Publisher],
        "delete-object",
    ),
    read("/v1/peers/{peer}/objects", OBJECT_READERS),
    read("/v1/peers/{peer}/objects/{*path}", OBJECT_READERS),
    change(
        Method::PUT,
        "/v1/peers/{peer}/objects/{*path}",
        &[Publisher],
        "peer-put-object",
    ),
    change(
        Method::DELETE,
        "/v1/peers/{peer}/objects/{*path}",
        &[Publisher],
        "peer-delete-object",
    ),
    read("/v1/catalog", PEOPLE),
    read("/v1/catalog/offers", PEOPLE),
    read("/v1/catalog/offers/{id}", PEOPLE),
    change(
        Method::PUT,
        "/v1/catalog/offers/{id}",
        &[Publisher],
        "put-offer",
    ),
    change(
        Method::DELETE,
        "/v1/catalog/offers/{id}",
        &[Publisher],
        "delete-offer",
    ),
    read("/v1/peers/{peer}/catalog", PEOPLE),
    read("/v1/access-requests", LEDGER_READERS),
    change(
        Method::POST,
        "/v1/access-requests",
        &[Approver],
        "request-access",
    ),
    read("/v1/access-requests/{id}", LEDGER_READERS),
    change(
        Method::POST,
        "/v1/access-requests/{id}/accept",
        &[Approver],
        "accept-access-request",
    ),
    change(
        Method::POST,
        "/v1/access-requests/{id}/decline",
        &[Approver],
        "decline-access-request",
    ),
    change(
        Method::POST,
        "/v1/access-requests/{id}/withdraw",
        &[Approver],
        "withdraw-access-request",
    ),
    read("/v1/tokens", &[]),
    change(Method::POST, "/v1/tokens", &[], "create-token"),
    read("/v1/jwt-revocations", &[]),
    read("/v1/upstreams", &[]),
    change(
        Method::POST,
        "/v1/upstreams/reload",
        &[],
        "reload-upstreams",
    ),
    change(Method::POST, "/v1/jwt-revocations", &[], "revoke-jwt"),
    change(Method::DELETE, "/v1/tokens/{name}", &[], "revoke-token"),
    read("/metrics", &[Metrics]),
];

/// The rule for `method` on the route `path` (`HEAD` as `GET`).
pub fn route_access(method: &Method, path: &str) -> Option<&'static RouteAccess> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.method == *method && r.path == path)
}

/// Whether `principal` may see a live event of `kind`: if its roles open
/// the read route the event's facts come from.
pub fn may_see(principal: &Principal, kind: &str) -> bool {
    let source = match kind {
        "block" | "entry-committed" => "/v1/ledger",
        "proposal-opened" | "proposal-changed" | "proposal-closed" => "/v1/proposals",
        "grant-committed" | "grant-revoked" | "grant-expiring" => "/v1/grants",
        "readiness" | "reset" => "/v1/status",
        // A kind this table does not know is shown to nobody.
        _ => return false,
    };
    route_access(&Method::GET, source).is_some_and(|r| principal.may(r.roles))
}

/// What a handler adds to its response for the audit record of a
/// state-changing call: what the call acted on, when that is not the
/// request's path (a new proposal's id), and the bytes it stored.
#[derive(Debug, Clone, Default)]
pub struct ActionNote {
    /// What the call acted on.
    pub subject: Option<String>,
    /// Bytes written.
    pub bytes: u64,
}

/// A state-changing call, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAction {
    /// Who made it (`admin`, `token:<name>`).
    pub principal: String,
    /// What it was (`propose`, `approve`, `put-object`, …).
    pub action: &'static str,
    /// What it acted on (a proposal id, an object path, a token name).
    pub subject: String,
    /// `None` when it took effect, else the problem type it was refused with.
    pub refused: Option<&'static str>,
    /// Bytes written.
    pub bytes: u64,
}

fn unauthenticated(why: &Unauthenticated) -> Response {
    Problem::unauthenticated(why.to_string()).into_response()
}

/// Middleware on the local API's routes: authenticates, authorizes by
/// [`ROUTES`], hands the [`Principal`] to the handler (as an extension),
/// and records every state-changing call, done or refused, with who made
/// it. Requests that fail authentication are refused without a record, so
/// that nobody without a token can grow the log.
pub async fn authorize<N: Node>(
    State(node): State<N>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match bearer(request.headers()).map(|t| node.authenticate(t)) {
        None => return unauthenticated(&Unauthenticated::Missing),
        Some(Err(why)) => return unauthenticated(&why),
        Some(Ok(principal)) => principal,
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| route_access(request.method(), p.as_str()));
    let allowed = route.map_or(Roles::NONE, |r| r.roles);
    // A state-changing call's action and what it acts on; reads need
    // neither (nor a copy of their path).
    let audited = route.and_then(|r| {
        r.audited
            .map(|action| (action, subject_of(r.path, request.uri().path())))
    });
    if !principal.may(allowed) {
        let refusal = role_required(&principal, request.method(), request.uri().path(), allowed)
            .into_response();
        if let Some((action, subject)) = audited {
            record(&node, &principal, action, subject, outcome(&refusal)).await;
        }
        return refusal;
    }
    let Some((action, subject)) = audited else {
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    };
    request.extensions_mut().insert(principal.clone());
    // The call and its record run in a task of their own, so that a client
    // hanging up mid-call (which drops this future) cannot leave a change
    // made and not recorded.
    let task = tokio::spawn(async move {
        let response = next.run(request).await;
        let subject = response
            .extensions()
            .get::<ActionNote>()
            .and_then(|n| n.subject.clone())
            .unwrap_or(subject);
        let outcome = outcome(&response);
        record(&node, &principal, action, subject, outcome).await;
        response
    });
    task.await
        .unwrap_or_else(|_| Problem::internal().into_response())
}

async fn record<N: Node>(
    node: &N,
    principal: &Principal,
    action: &'static str,
    subject: String,
    (refused, bytes): (Option<&'static str>, u64),
) {
    node.record_action(LocalAction {
        principal: principal.label.clone(),
        action,
        subject,
        refused,
        bytes,
    })
    .await;
}

/// A response's outcome for its record: the problem it refused with, if
/// it did, and the bytes the call wrote.
fn outcome(response: &Response) -> (Option<&'static str>, u64) {
    let refused = (!response.status().is_success()).then(|| {
        response
            .extensions()
            .get::<ProblemCode>()
            .map_or("refused", |c| c.0)
    });
    let bytes = response
        .extensions()
        .get::<ActionNote>()
        .map_or(0, |n| n.bytes);
    (refused, bytes)
}

/// What a call on `path` (of the route `template`) acts on: the value of
/// the route's first parameter (an object's path, a proposal id, a token's
/// name), else the path itself.
fn subject_of(template: &str, path: &str) -> String {
    let Some(start) = template.find('{') else {
        return path.to_owned();
    };
    let Some(value) = path.get(start..) else {
        return path.to_owned();
    };
    let value = if template[start..].starts_with("{*") {
        value
    } else {
        value.split('/').next().unwrap_or(value)
    };
    // Percent-encoded bytes stay as sent; the audit log bounds every field.
    value.to_owned()
}

/// 403 `role-required`: which roles would open the route, and which the
/// caller has.
fn role_required(principal: &Principal, method: &Method, path: &str, allowed: Roles) -> Problem {
    let needed = if allowed.is_empty() {
        "the admin role".to_owned()
    } else {
        format!("one of the roles {} (or admin)", allowed.names())
    };
    Problem::new(
        StatusCode::FORBIDDEN,
        "role-required",
        format!(
            "{method} {path} needs {needed}; {} has {}",
            principal.label,
            principal.roles.names()
        ),
    )
}
