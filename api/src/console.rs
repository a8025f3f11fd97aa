//! The web console: a page and its script and style, embedded in the
//! binary (no CDN, nothing fetched at run time), served at `/console` on
//! the admin listener.
//!
//! The assets hold no data and need no token; the page signs in with a
//! token the user pastes and calls the local API with it, so every page
//! shows exactly what the token's roles may read. Served with a strict
//! Content-Security-Policy (scripts and styles from this origin only, no
//! inline code, no framing, no connections elsewhere).

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");
const ICON: &str = include_str!("console/favicon.svg");

/// The policy every console answer carries.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, CONSOLE_CSP),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/console` and its assets; `/` and `/ui` lead there.
pub fn router() -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/console/favicon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/ui", get(|| async { Redirect::to("/console") }))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn the_console_is_served_with_a_strict_policy_and_no_inline_code() {
        for (path, media) in [
            ("/console", "text/html"),
            ("/console/app.js", "text/javascript"),
            ("/console/style.css", "text/css"),
        ] {
            let response = router()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert!(headers[CONTENT_TYPE].to_str().unwrap().starts_with(media));
            assert_eq!(headers[CONTENT_SECURITY_POLICY], CONSOLE_CSP);
            assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
        }
        // Nothing inline for the policy to have to allow, nothing from
        // elsewhere, and no value from the API written as HTML.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("eval("));
        assert!(!CONSOLE_CSP.contains("unsafe"));
        let root = router()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(root.headers()["location"], "/console");
    }
}
