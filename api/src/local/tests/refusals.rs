//! The router's own refusals, through `oneshot` against a node that
//! stores nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use quorate_contracts::ResourcePath;
use quorate_did::Did;
use tower::ServiceExt as _;

use crate::auth::{Principal, Unauthenticated};
use crate::local::access::LocalAction;
use crate::local::responses::{
    AuditRecord, BlockView, EntryLocation, GrantView, Identity, LedgerSummary, Members, NewToken,
    NodeStatus, ProposalView, Tokens,
};
use crate::local::{AuditQuery, Budgets, Limits, Node, ProposalRequest, TokenRequest, router};
use crate::objects::{ByteRange, ListQuery, Listing, ObjectBody, ObjectInfo};
use crate::problem::Problem;

const TOKEN: &str = "test-token";

/// A node with no objects; `status` waits at `gate` when it is set,
/// like a slow admin request.
#[derive(Clone, Default)]
struct Empty {
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

fn none<T>() -> Result<T, Problem> {
    Err(Problem::not_found("nothing here"))
}

impl Node for Empty {
    fn authenticate(&self, token: &str) -> Result<Principal, Unauthenticated> {
        if token == TOKEN {
            Ok(Principal::admin())
        } else {
            Err(Unauthenticated::Invalid)
        }
    }
    async fn record_action(&self, _: LocalAction) {}
    async fn events(
        &self,
        _: &Principal,
        _: Option<u64>,
    ) -> Result<crate::local::EventStream, Problem> {
        none()
    }
    async fn tokens(&self) -> Result<Tokens, Problem> {
        none()
    }
    async fn create_token(&self, _: TokenRequest) -> Result<NewToken, Problem> {
        none()
    }
    async fn revoke_token(&self, _: String) -> Result<(), Problem> {
        none()
    }
    async fn jwt_revocations(&self) -> Result<crate::local::responses::JwtRevocations, Problem> {
        none()
    }
    async fn revoke_jwt(
        &self,
        _: crate::local::requests::JwtRevocationRequest,
    ) -> Result<crate::local::responses::JwtRevocationView, Problem> {
        none()
    }
    async fn upstreams(&self) -> Result<crate::local::responses::UpstreamsView, Problem> {
        none()
    }
    async fn reload_upstreams(&self) -> Result<crate::local::responses::UpstreamsView, Problem> {
        none()
    }
    async fn status(&self) -> NodeStatus {
        if let Some(gate) = &self.gate {
            let _pass = gate.acquire().await;
        }
        NodeStatus::default()
    }
    async fn propose(&self, _: ProposalRequest) -> Result<String, Problem> {
        none()
    }
    async fn proposals(&self) -> Vec<ProposalView> {
        Vec::new()
    }
    async fn proposal(&self, _: String) -> Result<ProposalView, Problem> {
        none()
    }
    async fn decide(&self, _: String, _: bool, _: Option<String>) -> Result<(), Problem> {
        none()
    }
    async fn withdraw(&self, _: String) -> Result<(), Problem> {
        none()
    }
    async fn endorsement_policy(
        &self,
    ) -> Result<crate::local::endorsement::EndorsementPolicyView, Problem> {
        none()
    }
    async fn set_endorsement_policy(
        &self,
        _: crate::local::endorsement::EndorsementPolicy,
    ) -> Result<crate::local::endorsement::EndorsementPolicyView, Problem> {
        none()
    }
    async fn grants(
        &self,
        _: crate::local::GrantQuery,
    ) -> Result<crate::local::GrantPage, Problem> {
        Ok(crate::local::GrantPage::default())
    }
    async fn grant(&self, _: String) -> Result<GrantView, Problem> {
        none()
    }
    async fn grant_proof(&self, _: String) -> Result<Vec<u8>, Problem> {
        none()
    }
    async fn grant_status(&self, _: String, _: Option<u64>) -> Result<Vec<u8>, Problem> {
        none()
    }
    async fn member_status(&self, _: String, _: Option<u64>) -> Result<Vec<u8>, Problem> {
        none()
    }
    async fn identity(&self) -> Identity {
        super::fake::identity()
    }
    async fn members(&self) -> Members {
        Members {
            epoch: 0,
            members: Vec::new(),
        }
    }
    async fn put_object(
        &self,
        path: ResourcePath,
        content_type: String,
        body: Body,
    ) -> Result<ObjectInfo, Problem> {
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|_| Problem::too_large("over 1 MiB"))?;
        Ok(ObjectInfo {
            path: path.to_string(),
            size: bytes.len() as u64,
            etag: "e".into(),
            content_type,
            modified_ms: 0,
        })
    }
    async fn get_object(
        &self,
        _: ResourcePath,
        _: Option<ByteRange>,
    ) -> Result<ObjectBody, Problem> {
        none()
    }
    async fn head_object(&self, _: ResourcePath) -> Result<ObjectInfo, Problem> {
        none()
    }
    async fn delete_object(&self, _: ResourcePath) -> Result<(), Problem> {
        none()
    }
    async fn list_objects(&self, _: ListQuery) -> Result<Listing, Problem> {
        Ok(Listing {
            objects: Vec::new(),
            next: None,
        })
    }
    async fn peer_get(
        &self,
        _: String,
        _: ResourcePath,
        _: Option<ByteRange>,
        _: Option<String>,
        _: Option<String>,
    ) -> Result<ObjectBody, Problem> {
        none()
    }
    async fn peer_put(
        &self,
        _: String,
        _: ResourcePath,
        _: crate::objects::PeerWrite,
        _: Body,
    ) -> Result<crate::objects::Written, Problem> {
        none()
    }
    async fn peer_delete(
        &self,
        _: String,
        _: ResourcePath,
        _: crate::objects::Precondition,
        _: Option<String>,
    ) -> Result<(), Problem> {
        none()
    }
    async fn peer_list(
        &self,
        _: String,
        _: ListQuery,
        _: Option<String>,
    ) -> Result<Listing, Problem> {
        none()
    }
    async fn audit(&self, _: AuditQuery) -> Result<Vec<AuditRecord>, Problem> {
        Ok(Vec::new())
    }
    type Gateway = Self;
    fn gateway(&self) -> Self {
        self.clone()
    }
    async fn metrics(&self) -> String {
        String::new()
    }
    async fn entry(&self, _: String) -> Result<EntryLocation, Problem> {
        none()
    }
    async fn ready(&self) -> Result<(), Problem> {
        Ok(())
    }
    async fn ledger(&self) -> Result<LedgerSummary, Problem> {
        none()
    }
    async fn block(&self, _: u64) -> Result<(BlockView, Vec<u8>), Problem> {
        none()
    }
    async fn ledger_export(&self) -> Result<Body, Problem> {
        none()
    }
    async fn offers(&self) -> Result<crate::local::catalog::Offers, Problem> {
        none()
    }
    async fn offer(&self, _: String) -> Result<crate::local::catalog::OfferView, Problem> {
        none()
    }
    async fn put_offer(
        &self,
        _: String,
        _: crate::local::catalog::Offer,
    ) -> Result<(crate::local::catalog::OfferView, bool), Problem> {
        none()
    }
    async fn delete_offer(&self, _: String) -> Result<(), Problem> {
        none()
    }
    async fn catalog(&self) -> Result<serde_json::Value, Problem> {
        none()
    }
    async fn peer_catalog(&self, _: String) -> Result<serde_json::Value, Problem> {
        none()
    }
    async fn access_requests(
        &self,
        _: crate::local::access_requests::AccessRequestQuery,
    ) -> Result<crate::local::access_requests::AccessRequests, Problem> {
        none()
    }
    async fn access_request(
        &self,
        _: String,
    ) -> Result<crate::local::access_requests::AccessRequestView, Problem> {
        none()
    }
    async fn request_access(
        &self,
        _: crate::local::access_requests::NewAccessRequest,
    ) -> Result<crate::local::access_requests::AccessRequestView, Problem> {
        none()
    }
    async fn accept_access_request(
        &self,
        _: String,
        _: Principal,
    ) -> Result<crate::local::access_requests::AccessRequestView, Problem> {
        none()
    }
    async fn decline_access_request(
        &self,
        _: String,
        _: String,
        _: Principal,
    ) -> Result<crate::local::access_requests::AccessRequestView, Problem> {
        none()
    }
    async fn withdraw_access_request(
        &self,
        _: String,
    ) -> Result<crate::local::access_requests::AccessRequestView, Problem> {
        none()
    }
}

/// The two listeners' routers.
fn listeners(node: Empty, budgets: Budgets) -> (axum::Router, axum::Router) {
    let limits = Limits {
        budgets,
        object_bytes_max: 1024,
    };
    let settings = crate::gateway::Settings::new(
        60,
        "127.0.0.1:1",
        quorate_did::Keypair::from_seed(&[7; 32]).did(),
    );
    (
        router(node.clone(), limits),
        crate::local::gateway_router(node, settings, limits),
    )
}

/// Both listeners, as a client that sends `/gateway/…` to the gateway's
/// and the rest to the admin API's sees them.
fn app(node: Empty, budgets: Budgets) -> axum::Router {
    let (admin, gateway) = listeners(node, budgets);
    let dispatch = tower::service_fn(move |request: Request<Body>| {
        let listener = if request.uri().path().starts_with("/gateway/") {
            gateway.clone()
        } else {
            admin.clone()
        };
        listener.oneshot(request)
    });
    axum::Router::new().fallback_service(dispatch)
}

#[tokio::test]
async fn each_listener_answers_its_own_routes_only() {
    let (admin, gateway) = listeners(Empty::default(), Budgets::default());
    let status = |router: &axum::Router, uri: &str| {
        let router = router.clone();
        let uri = uri.to_owned();
        async move { problem(router.oneshot(get(&uri)).await.unwrap()).await }
    };
    // The admin API knows nothing of members' routes ...
    for uri in ["/gateway/objects/a", "/gateway/objects", "/gateway/catalog"] {
        assert_eq!(
            status(&admin, uri).await,
            (404, "not-found".into()),
            "{uri}"
        );
    }
    // ... and the gateway nothing of the admin API's, with a token or not.
    for uri in [
        "/v1/status",
        "/v1/objects/a",
        "/metrics",
        "/console",
        "/openapi.json",
    ] {
        assert_eq!(
            status(&gateway, uri).await,
            (404, "not-found".into()),
            "{uri}"
        );
    }
    // Both answer the probes.
    for router in [&admin, &gateway] {
        for uri in ["/healthz", "/readyz"] {
            let answer = router.clone().oneshot(get(uri)).await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{uri}");
        }
    }
}

fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
}

async fn send(request: Request<Body>) -> Response {
    app(Empty::default(), Budgets::default())
        .oneshot(request)
        .await
        .unwrap()
}

/// The status and problem code of a problem+json answer.
async fn problem(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    assert_eq!(
        content_type.as_ref().map(|t| t.to_str().unwrap()),
        Some("application/problem+json"),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], status);
    let code = json["type"]
        .as_str()
        .unwrap()
        .strip_prefix("urn:quorate:problem:")
        .unwrap()
        .to_owned();
    (status, code)
}

async fn refusal(request: Request<Body>) -> (u16, String) {
    problem(send(request).await).await
}

fn get(uri: &str) -> Request<Body> {
    request("GET", uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    assert_eq!(refusal(get("/nowhere")).await, (404, "not-found".into()));
    assert_eq!(refusal(get("/v1")).await, (404, "not-found".into()));
    let response = send(request("POST", "/v1/status").body(Body::empty()).unwrap()).await;
    let allow = response.headers().get(header::ALLOW).cloned();
    assert_eq!(problem(response).await, (405, "method-not-allowed".into()));
    assert_eq!(allow.unwrap().to_str().unwrap(), "GET,HEAD");
    let response = send(
        request("PATCH", "/v1/objects/a")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let allow = response.headers().get(header::ALLOW).cloned().unwrap();
    assert_eq!(problem(response).await.0, 405);
    for method in ["GET", "PUT", "DELETE", "HEAD"] {
        assert!(allow.to_str().unwrap().contains(method), "{allow:?}");
    }
    let response = send(
        request("PATCH", "/gateway/objects/a")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(problem(response).await, (405, "method-not-allowed".into()));
}

#[tokio::test]
async fn a_declared_length_over_the_object_limit_is_refused_before_the_body() {
    // The body is shorter than declared: a node that read it would
    // store it (201); only the declared length is judged.
    let put = request("PUT", "/v1/objects/big.bin")
        .header(header::CONTENT_LENGTH, "1000000000000")
        .body(Body::from("short"))
        .unwrap();
    assert_eq!(refusal(put).await, (413, "too-large".into()));
    // At the limit it is read.
    let put = request("PUT", "/v1/objects/fits.bin")
        .header(header::CONTENT_LENGTH, "1024")
        .body(Body::from(vec![0u8; 1024]))
        .unwrap();
    assert_eq!(send(put).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn oversized_targets_and_header_sections_are_problems() {
    let long = format!("/v1/objects/{}", "a".repeat(crate::local::URI_BYTES_MAX));
    assert_eq!(refusal(get(&long)).await, (414, "uri-too-long".into()));
    let mut many = request("GET", "/v1/status");
    for i in 0..crate::local::HEADERS_MAX {
        many = many.header(format!("x-field-{i}"), "1");
    }
    assert_eq!(
        refusal(many.body(Body::empty()).unwrap()).await,
        (431, "headers-too-large".into())
    );
    let big = request("GET", "/healthz")
        .header("x-big", "b".repeat(crate::local::HEADER_BYTES_MAX))
        .body(Body::empty())
        .unwrap();
    assert_eq!(refusal(big).await, (431, "headers-too-large".into()));
    // The gateway's routes are held to the same limits.
    let long = format!(
        "/gateway/objects/{}",
        "a".repeat(crate::local::URI_BYTES_MAX)
    );
    assert_eq!(refusal(get(&long)).await, (414, "uri-too-long".into()));
}

#[tokio::test]
async fn bad_parameters_are_problems() {
    for (uri, status, code) in [
        ("/v1/objects/%FF", 400, "bad-path"),
        ("/v1/objects/a%2F..%2Fb", 400, "bad-path"),
        ("/v1/peers/%FF/objects", 400, "bad-path"),
        ("/v1/peers/org-b/objects/%C0", 400, "bad-path"),
        ("/v1/objects?limit=1001", 400, "bad-request"),
        ("/v1/objects?limit=0", 400, "bad-request"),
        ("/v1/objects?limit=x", 400, "bad-request"),
        ("/v1/audit?limit=1001", 400, "bad-request"),
        ("/v1/audit?decision=maybe", 400, "bad-request"),
        ("/v1/ledger/blocks/18446744073709551616", 400, "bad-request"),
        ("/v1/ledger/blocks/+1", 400, "bad-request"),
        ("/v1/ledger/blocks/-1", 400, "bad-request"),
        ("/v1/ledger/entries/abc", 400, "bad-request"),
        ("/v1/grants/zz", 400, "bad-request"),
        ("/v1/grants/%FF/proof", 400, "bad-path"),
    ] {
        assert_eq!(refusal(get(uri)).await, (status, code.into()), "{uri}");
    }
    // The gateway's own rejections come as problems too.
    let (status, _) = refusal(get("/gateway/objects/%FF")).await;
    assert!((400..500).contains(&status), "{status}");
    let approve = request("POST", &format!("/v1/proposals/{}/approve", "g".repeat(64)))
        .body(Body::empty())
        .unwrap();
    assert_eq!(refusal(approve).await, (400, "bad-request".into()));
    // In range, they reach the node.
    for uri in ["/v1/objects?limit=1000", "/v1/audit?limit=1&decision=deny"] {
        assert_eq!(send(get(uri)).await.status(), StatusCode::OK, "{uri}");
    }
    let block = get("/v1/ledger/blocks/18446744073709551615");
    assert_eq!(refusal(block).await, (404, "not-found".into()));
}

#[tokio::test]
async fn malformed_ranges_are_problems() {
    for range in [&b"bytes=9-0"[..], b"bytes=0-\xff", b"bytes=x-"] {
        let get = request("GET", "/v1/objects/a.csv")
            .header(
                header::RANGE,
                axum::http::HeaderValue::from_bytes(range).unwrap(),
            )
            .body(Body::empty())
            .unwrap();
        assert_eq!(refusal(get).await, (416, "bad-range".into()), "{range:?}");
    }
}

#[tokio::test]
async fn puts_store_only_media_types_and_may_be_empty() {
    for bad in [
        "text",
        "text/plain; q",
        "<b>/x",
        &format!("a/{}", "b".repeat(300)),
    ] {
        let put = request("PUT", "/v1/objects/a.txt")
            .header(header::CONTENT_TYPE, bad)
            .body(Body::from("x"))
            .unwrap();
        assert_eq!(
            refusal(put).await,
            (400, "bad-content-type".into()),
            "{bad}"
        );
    }
    let put = request("PUT", "/v1/objects/a.txt")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from("x"))
        .unwrap();
    let stored = send(put).await;
    assert_eq!(stored.status(), StatusCode::CREATED);
    let empty = request("PUT", "/v1/objects/marker")
        .body(Body::empty())
        .unwrap();
    let stored = send(empty).await;
    assert_eq!(stored.status(), StatusCode::CREATED);
    let body = axum::body::to_bytes(stored.into_body(), 1 << 16)
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (info["size"].as_u64(), info["content_type"].as_str()),
        (Some(0), Some("application/octet-stream"))
    );
}

#[tokio::test]
async fn json_bodies_are_refused_as_problems() {
    let post = |content_type: Option<&str>, body: Vec<u8>| {
        let mut builder = request("POST", "/v1/proposals");
        if let Some(t) = content_type {
            builder = builder.header(header::CONTENT_TYPE, t);
        }
        builder.body(Body::from(body)).unwrap()
    };
    let big = vec![b' '; crate::local::JSON_BODY_BYTES_MAX + 1];
    assert_eq!(
        refusal(post(Some("application/json"), big)).await,
        (413, "too-large".into())
    );
    assert_eq!(
        refusal(post(None, b"{}".to_vec())).await,
        (415, "unsupported-media-type".into())
    );
    assert_eq!(
        refusal(post(Some("application/json"), b"{".to_vec())).await,
        (400, "bad-request".into())
    );
    assert_eq!(
        refusal(post(Some("application/json"), b"{\"grant\":1}".to_vec())).await,
        (400, "bad-request".into())
    );
}

#[tokio::test]
async fn without_the_token_admin_routes_are_refused_and_probes_answer() {
    let anonymous = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    assert_eq!(
        refusal(anonymous("/v1/status")).await,
        (401, "unauthenticated".into())
    );
    for uri in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(send(anonymous(uri)).await.status(), StatusCode::OK, "{uri}");
    }
    // The gateway refuses unsigned requests (with its own types).
    let (status, _) = refusal(anonymous("/gateway/objects/a")).await;
    assert!((400..500).contains(&status), "{status}");
}

/// A full admin budget holds admin requests back, and nothing else.
#[tokio::test]
async fn each_group_of_routes_has_its_own_budget() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let node = Empty {
        gate: Some(gate.clone()),
    };
    let app = app(
        node,
        Budgets {
            admin: 2,
            gateway: 2,
        },
    );
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(app.clone().oneshot(get("/v1/status"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = Duration::from_secs(2);
    let queued = tokio::spawn(app.clone().oneshot(get("/v1/identity")));
    for uri in ["/healthz", "/readyz", "/openapi.json", "/gateway/objects/a"] {
        let answer = tokio::time::timeout(quick, app.clone().oneshot(get(uri)))
            .await
            .unwrap_or_else(|_| panic!("{uri} waited on the admin budget"))
            .unwrap();
        assert!(answer.status() != StatusCode::REQUEST_TIMEOUT, "{uri}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !queued.is_finished(),
        "an admin request passed a full budget"
    );
    gate.add_permits(3);
    for task in slow {
        assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let answer = tokio::time::timeout(quick, queued)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

impl crate::gateway::Pipeline for Empty {
    async fn read(
        &self,
        _: Did,
        _: ResourcePath,
        _: Option<ByteRange>,
        _: Option<String>,
        _: crate::objects::Forward,
    ) -> Result<ObjectBody, crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    async fn list(
        &self,
        _: Did,
        _: ListQuery,
        _: Option<String>,
    ) -> Result<crate::objects::Listing, crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    async fn write(
        &self,
        _: Did,
        _: ResourcePath,
        _: crate::gateway::Upload,
    ) -> Result<crate::gateway::Wrote, crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    async fn delete(
        &self,
        _: Did,
        _: ResourcePath,
        _: Option<String>,
        _: crate::objects::Precondition,
        _: crate::objects::Forward,
    ) -> Result<(), crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    async fn catalog(&self, _: Did) -> Result<serde_json::Value, crate::refusal::Refusal> {
        Err(crate::refusal::Refusal::Internal)
    }
    fn is_member(&self, _: &Did) -> bool {
        false
    }
    async fn refused(
        &self,
        _: Option<Did>,
        _: quorate_contracts::Action,
        _: String,
        _: &crate::refusal::Refusal,
    ) {
    }
}
