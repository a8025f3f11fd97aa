//! The router's layers: group budgets, the limits on a request's head and
//! a declared body, and the rule that every refusal is a problem.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{
    HEADER_BYTES_MAX, HEADERS_MAX, REFUSAL_TEXT_BYTES_MAX, REFUSED_BODY_DRAIN_BYTES_MAX,
    REFUSED_BODY_DRAIN_TIME, URI_BYTES_MAX,
};
use crate::problem::{PROBLEM_JSON, Problem};

/// A group's budget of requests served at once (more wait for a slot).
#[derive(Clone)]
pub(super) struct Budget(Arc<tokio::sync::Semaphore>);

impl Budget {
    pub(super) fn new(slots: usize) -> Self {
        let slots = slots.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Self(Arc::new(tokio::sync::Semaphore::new(slots)))
    }
}

pub(super) async fn budget(State(budget): State<Budget>, request: Request, next: Next) -> Response {
    // The semaphore is never closed; a slot is held until the response's
    // head is ready (its body streams outside the budget).
    let Ok(_slot) = budget.0.acquire_owned().await else {
        return Problem::internal().into_response();
    };
    next.run(request).await
}

pub(super) async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    Problem::not_found(format!("no route for {method} {}", uri.path())).into_response()
}

pub(super) async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    Problem::method_not_allowed(format!(
        "{} does not take {method}; Allow lists what it takes",
        uri.path()
    ))
    .into_response()
}

/// Refuses a request whose target or header section is over our limits
/// (414, 431), before any route, budget or token check runs.
pub(super) async fn head_limits(request: Request, next: Next) -> Response {
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
pub(super) async fn problems_only(request: Request, next: Next) -> Response {
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
pub(super) async fn refuse_declared_too_large(
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
pub(crate) fn drain(mut body: Body) {
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
