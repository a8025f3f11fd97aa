//! Goal: the local API refuses requests without the admin token with a 401
//! problem+json body of a stable type, and lets the right token through.
//! Method: an axum router guarded by `require_admin`, driven with `oneshot`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use axum::{Router, middleware};
use http_body_util::BodyExt;
use quorate_api::auth::{AdminToken, require_admin};
use tower::ServiceExt;

fn app() -> Router {
    let token = AdminToken::new("s3cret-token\n");
    Router::new()
        .route("/v1/status", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(token, require_admin))
}

async fn call(auth: Option<&str>) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut request = Request::get("/v1/status");
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let response = app()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, content_type, json)
}

#[tokio::test]
async fn missing_or_wrong_tokens_are_refused_as_problems() {
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-tokeN"),
        Some("Basic s3cret-token"),
    ] {
        let (status, content_type, body) = call(auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(body["type"], "urn:quorate:problem:unauthenticated");
        assert_eq!(body["status"], 401);
        assert!(body["detail"].as_str().unwrap().len() > 10);
    }
}

#[tokio::test]
async fn the_admin_token_is_accepted() {
    let (status, _, _) = call(Some("Bearer s3cret-token")).await;
    assert_eq!(status, StatusCode::OK);
}
