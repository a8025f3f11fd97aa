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
use axum::http::HeaderName;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};

const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");
const ICON: &str = include_str!("console/favicon.svg");

/// The policy every console answer carries (with the identity provider's
/// token endpoint added to `connect-src` when sign-in through it is set).
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Sign-in through the organization's identity provider (OpenID Connect's
/// authorization code flow with PKCE, the console a public client).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OidcClient {
    /// The provider (the `iss` of its tokens).
    pub issuer: String,
    /// The console's client id at the provider (the `aud` of its ID tokens).
    pub client_id: String,
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: String,
    /// Where the console trades the code for an ID token.
    pub token_endpoint: String,
    /// The origin of the token endpoint (`scheme://host[:port]`).
    #[serde(skip)]
    pub token_origin: String,
}

fn asset(csp: &str, content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, csp),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
            (CROSS_ORIGIN_OPENER_POLICY, "same-origin"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/console` and its assets (with `/console/sign-in.json`, what the page
/// needs to offer sign-in through the provider); `/` and `/ui` lead there.
pub fn router(sign_in: Option<OidcClient>) -> Router {
    let csp: &'static str = match &sign_in {
        Some(client) => Box::leak(
            CONSOLE_CSP
                .replace(
                    "connect-src 'self'",
                    &format!("connect-src 'self' {}", client.token_origin),
                )
                .into_boxed_str(),
        ),
        None => CONSOLE_CSP,
    };
    let asset = move |content_type, body| asset(csp, content_type, body);
    let described = serde_json::json!({ "oidc": sign_in }).to_string();
    Router::new()
        .route(
            "/console/sign-in.json",
            get(move || {
                let described = described.clone();
                async move {
                    let headers = [
                        (CONTENT_TYPE, "application/json"),
                        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ];
                    (headers, described).into_response()
                }
            }),
        )
        .route(
            "/console",
            get(move || async move { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/app.js",
            get(move || async move { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/style.css",
            get(move || async move { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/console/favicon.svg",
            get(move || async move { asset("image/svg+xml", ICON) }),
        )
        .route(
            "/favicon.ico",
            get(move || async move { asset("image/svg+xml", ICON) }),
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
            let response = router(None)
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
        let root = router(None)
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(root.headers()["location"], "/console");
    }

    #[tokio::test]
    async fn with_sign_in_through_the_provider_the_page_may_reach_its_token_endpoint_alone() {
        let client = OidcClient {
            issuer: "https://idp.example".into(),
            client_id: "console".into(),
            authorization_endpoint: "https://idp.example/authorize".into(),
            token_endpoint: "https://idp.example/token".into(),
            token_origin: "https://idp.example".into(),
        };
        let app = router(Some(client));
        let page = app
            .clone()
            .oneshot(Request::get("/console").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' https://idp.example;"),
            "{csp}"
        );
        let described = app
            .oneshot(
                Request::get("/console/sign-in.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = axum::body::to_bytes(described.into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["oidc"]["client_id"], "console");
        assert!(json["oidc"].get("token_origin").is_none());
    }
}
