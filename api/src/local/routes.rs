//! The router: every route, its group's budget and the limits every
//! request meets first.

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler as _;
use axum::http::header::CONTENT_TYPE;
use axum::routing::{delete, get, post};
use axum::{Router, middleware};

use super::access::authorize;
use super::handlers::*;
use super::layers::{
    Budget, budget, head_limits, method_not_allowed, not_found, problems_only,
    refuse_declared_too_large,
};
use super::{JSON_BODY_BYTES_MAX, Limits, Node, openapi_json};

/// The local API's routes, each open to the roles [`super::access`] names
/// for it, and the gateway's signed routes (see [`crate::gateway`]), under
/// the node's [`Limits`].
///
/// Every refusal is `application/problem+json` with a stable type: the
/// handlers' own, extractor rejections, the fallbacks (404 `not-found`,
/// 405 `method-not-allowed` with `Allow`), and the limits on the request
/// target and header section, checked before anything else runs.
pub fn router<N: Node>(node: N, gateway: crate::gateway::Settings, limits: Limits) -> Router {
    let pipeline = node.gateway();
    let node_for_probes = node.clone();
    let sign_in = node.console_sign_in();
    let admin_budget = Budget::new(limits.budgets.admin);
    let gateway_budget = Budget::new(limits.budgets.gateway);
    let put = put_object::<N>.layer(middleware::from_fn_with_state(
        limits.object_bytes_max,
        refuse_declared_too_large,
    ));
    let admin = Router::new()
        .route("/v1/principal", get(principal))
        .route("/v1/tokens", get(tokens::<N>).post(create_token::<N>))
        .route("/v1/tokens/{name}", delete(revoke_token::<N>))
        .route("/v1/status", get(status::<N>))
        .route("/v1/events", get(events::<N>))
        .route("/v1/proposals", get(proposals::<N>).post(propose::<N>))
        .route("/v1/proposals/{id}/approve", post(approve::<N>))
        .route("/v1/proposals/{id}/reject", post(reject::<N>))
        .route("/v1/proposals/{id}", get(proposal::<N>))
        .route("/v1/proposals/{id}/withdraw", post(withdraw::<N>))
        .route(
            "/v1/endorsement-policy",
            get(endorsement_policy::<N>).put(set_endorsement_policy::<N>),
        )
        .route("/v1/grants", get(grants::<N>))
        .route("/v1/grants/{id}", get(grant::<N>))
        .route("/v1/grants/{id}/proof", get(grant_proof::<N>))
        .route("/v1/grants/{id}/status", get(grant_status::<N>))
        .route("/v1/members/{member}/status", get(member_status::<N>))
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
        .route("/v1/catalog", get(super::sharing::catalog::<N>))
        .route("/v1/catalog/offers", get(super::sharing::offers::<N>))
        .route(
            "/v1/catalog/offers/{id}",
            get(super::sharing::offer::<N>)
                .put(super::sharing::put_offer::<N>)
                .delete(super::sharing::delete_offer::<N>),
        )
        .route(
            "/v1/peers/{peer}/catalog",
            get(super::sharing::peer_catalog::<N>),
        )
        .route(
            "/v1/access-requests",
            get(super::sharing::access_requests::<N>).post(super::sharing::request_access::<N>),
        )
        .route(
            "/v1/access-requests/{id}",
            get(super::sharing::access_request::<N>),
        )
        .route(
            "/v1/access-requests/{id}/accept",
            post(super::sharing::accept_access_request::<N>),
        )
        .route(
            "/v1/access-requests/{id}/decline",
            post(super::sharing::decline_access_request::<N>),
        )
        .route(
            "/v1/access-requests/{id}/withdraw",
            post(super::sharing::withdraw_access_request::<N>),
        )
        .route("/v1/audit", get(audit::<N>))
        .route("/v1/ledger", get(ledger::<N>))
        .route("/v1/ledger/blocks/{height}", get(block::<N>))
        .route("/v1/ledger/export", get(ledger_export::<N>))
        .route("/v1/ledger/entries/{id}", get(entry::<N>))
        .route("/metrics", get(metrics::<N>))
        // The token is checked before a slot is taken, so that requests
        // without one cannot queue ahead of the operator's.
        .route_layer(middleware::from_fn_with_state(admin_budget, budget))
        .route_layer(middleware::from_fn_with_state(node.clone(), authorize::<N>))
        .with_state(node);
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<N>))
        .route(
            "/openapi.json",
            get(|| async { ([(CONTENT_TYPE, "application/json")], openapi_json()) }),
        )
        .with_state(node_for_probes);
    let gateway = crate::gateway::router(pipeline, gateway)
        .route_layer(middleware::from_fn_with_state(gateway_budget, budget));
    Router::new()
        .merge(crate::console::router(sign_in))
        .merge(probes)
        .merge(admin)
        .merge(gateway)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
        .layer(middleware::from_fn(problems_only))
        .layer(middleware::from_fn(head_limits))
}
