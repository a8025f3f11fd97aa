//! The local API's admin token: `Authorization: Bearer <token>`, compared
//! in constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::problem::Problem;

/// The admin token the local API accepts.
#[derive(Clone)]
pub struct AdminToken(std::sync::Arc<str>);

impl AdminToken {
    /// Wraps the token read from the node home.
    pub fn new(token: &str) -> Self {
        Self(token.trim().into())
    }

    /// Whether `presented` is the token, in time independent of where they
    /// differ.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Middleware: refuses requests without the admin bearer token (401).
pub async fn require_admin(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if token.matches(p) => next.run(request).await,
        Some(_) => Problem::unauthenticated("the admin token is not valid").into_response(),
        None => Problem::unauthenticated(
            "the local API needs `Authorization: Bearer <token>` (the node home's admin.token)",
        )
        .into_response(),
    }
}
