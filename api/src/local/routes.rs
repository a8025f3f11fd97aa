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

/// The admin listener's routes: the local API, each route open to the
/// roles [`super::access`] names for it, the console, `/metrics` and the
/// probes, under the node's [`Limits`]. Members' signed routes are not
/// here: they have a listener of their own ([`gateway_router`]).
///
/// Every refusal is `application/problem+json` with a stable type: the
/// handlers' own, extractor rejections, the fallbacks (404 `not-found`,
/// 405 `method-not-allowed` with `Allow`), and the limits on the request
/// target and header section, checked before anything else runs.
pub fn router<N: Node>(node: N, limits: Limits) -> Router {
    let sign_in = node.console_sign_in();
    let admin_budget = Budget::new(limits.budgets.admin);
    let put = put_object::<N>.layer(middleware::from_fn_with_state(
        limits.object_bytes_max,
        refuse_declared_too_large,
    ));
    let admin = Router::new()
        .route("/v1/principal", get(principal))
        .route("/v1/tokens", get(tokens::<N>).post(create_token::<N>))
        .route("/v1/tokens/{name}", delete(revoke_token::<N>))
        .route(
            "/v1/jwt-revocations",
            get(jwt_revocations::<N>).post(revoke_jwt::<N>),
        )
        .route("/v1/upstreams", get(upstreams::<N>))
        .route("/v1/upstreams/reload", post(reload_upstreams::<N>))
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
        .route(
            "/v1/peers/{peer}/objects/{*path}",
            get(peer_get::<N>)
                .put(peer_put::<N>)
                .delete(peer_delete::<N>),
        )
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
        .with_state(node.clone());
    let openapi = Router::new().route(
        "/openapi.json",
        get(|| async { ([(CONTENT_TYPE, "application/json")], openapi_json()) }),
    );
    with_edges(
        Router::new()
            .merge(crate::console::router(sign_in))
            .merge(probes(node))
            .merge(openapi)
            .merge(admin),
    )
}

/// The gateway listener's routes: members' signed requests
/// ([`crate::gateway`]) under their own budget, and the probes (for a
/// load balancer in front), nothing of the admin API; the same limits and
/// refusals as [`router`].
pub fn gateway_router<N: Node>(
    node: N,
    gateway: crate::gateway::Settings,
    limits: Limits,
) -> Router {
    let gateway_budget = Budget::new(limits.budgets.gateway);
    let signed = crate::gateway::router(node.gateway(), gateway)
        .route_layer(middleware::from_fn_with_state(gateway_budget, budget));
    with_edges(Router::new().merge(probes(node)).merge(signed))
}

/// `/healthz` and `/readyz`, answered from memory on both listeners.
fn probes<N: Node>(node: N) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<N>))
        .with_state(node)
}

/// What every request on either listener meets: the limits on its head
/// and JSON bodies, problem+json refusals, and the fallbacks.
fn with_edges(routes: Router) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
        .layer(middleware::from_fn(problems_only))
        .layer(middleware::from_fn(head_limits))
}
