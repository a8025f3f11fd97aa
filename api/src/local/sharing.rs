//! The handlers of the catalog (`/v1/catalog…`, `/v1/peers/{peer}/catalog`)
//! and of access requests (`/v1/access-requests…`).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::Node;
use super::access::ActionNote;
use super::access_requests::{
    AccessRequestQuery, DECLINE_REASON_BYTES_MAX, DeclineRequest, NewAccessRequest,
};
use super::catalog::Offer;
use super::handlers::{json_or_problem, json_problem, path_problem, query_problem};
use crate::auth::Principal;
use crate::gateway::CATALOG_MEDIA_TYPE;
use crate::problem::Problem;

/// A catalog document, as JSON-LD.
fn catalog_response(result: Result<serde_json::Value, Problem>) -> Response {
    match result {
        Ok(catalog) => ([(CONTENT_TYPE, CATALOG_MEDIA_TYPE)], Json(catalog)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn offers<N: Node>(State(node): State<N>) -> Response {
    json_or_problem(node.offers().await)
}

pub(super) async fn offer<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    match id {
        Ok(Path(id)) => json_or_problem(node.offer(id).await),
        Err(e) => path_problem(e).into_response(),
    }
}

pub(super) async fn put_offer<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Offer>, JsonRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return path_problem(e).into_response(),
    };
    let Json(offer) = match body {
        Ok(body) => body,
        Err(e) => return json_problem(e).into_response(),
    };
    match node.put_offer(id, offer).await {
        Ok((view, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(view)).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn delete_offer<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    match id {
        Ok(Path(id)) => match node.delete_offer(id).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(problem) => problem.into_response(),
        },
        Err(e) => path_problem(e).into_response(),
    }
}

pub(super) async fn catalog<N: Node>(State(node): State<N>) -> Response {
    catalog_response(node.catalog().await)
}

pub(super) async fn peer_catalog<N: Node>(
    State(node): State<N>,
    peer: Result<Path<String>, PathRejection>,
) -> Response {
    match peer {
        Ok(Path(peer)) => catalog_response(node.peer_catalog(peer).await),
        Err(e) => path_problem(e).into_response(),
    }
}

pub(super) async fn access_requests<N: Node>(
    State(node): State<N>,
    query: Result<Query<AccessRequestQuery>, QueryRejection>,
) -> Response {
    match query {
        Ok(Query(query)) => json_or_problem(node.access_requests(query).await),
        Err(e) => query_problem(e).into_response(),
    }
}

pub(super) async fn access_request<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    match id {
        Ok(Path(id)) => json_or_problem(node.access_request(id).await),
        Err(e) => path_problem(e).into_response(),
    }
}

pub(super) async fn request_access<N: Node>(
    State(node): State<N>,
    body: Result<Json<NewAccessRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return json_problem(e).into_response(),
    };
    match node.request_access(request).await {
        Ok(view) => {
            let note = ActionNote {
                subject: Some(view.id.clone()),
                bytes: 0,
            };
            (StatusCode::CREATED, axum::Extension(note), Json(view)).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

pub(super) async fn accept_access_request<N: Node>(
    State(node): State<N>,
    axum::Extension(principal): axum::Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    match id {
        Ok(Path(id)) => json_or_problem(node.accept_access_request(id, principal).await),
        Err(e) => path_problem(e).into_response(),
    }
}

pub(super) async fn decline_access_request<N: Node>(
    State(node): State<N>,
    axum::Extension(principal): axum::Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<DeclineRequest>, JsonRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return path_problem(e).into_response(),
    };
    let Json(DeclineRequest { reason }) = match body {
        Ok(body) => body,
        Err(e) => return json_problem(e).into_response(),
    };
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.len() > DECLINE_REASON_BYTES_MAX {
        return Problem::bad_request(format!(
            "a decline's reason is 1 to {DECLINE_REASON_BYTES_MAX} bytes, this one {}",
            reason.len()
        ))
        .into_response();
    }
    json_or_problem(node.decline_access_request(id, reason, principal).await)
}

pub(super) async fn withdraw_access_request<N: Node>(
    State(node): State<N>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    match id {
        Ok(Path(id)) => json_or_problem(node.withdraw_access_request(id).await),
        Err(e) => path_problem(e).into_response(),
    }
}
