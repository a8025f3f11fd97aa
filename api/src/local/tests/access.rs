//! Goal: every route of the local API is open to exactly the roles its rule
//! names (admin to all), a refusal is 403 `role-required` naming them, bad
//! tokens are 401, and every state-changing call is recorded with who made
//! it, done or refused.
//! Method: `oneshot` requests for every route × every role against the
//! fake node, whose tokens name one role each.

use axum::http::StatusCode;
use serde_json::Value;
use tower::ServiceExt as _;

use super::fake::{EXPIRED_TOKEN, Fake, HEX, app, body_of, request, request_as, role_token};
use crate::auth::{Principal, Role, Roles};
use crate::local::access::{LocalAction, ROUTES, RouteAccess};

/// A concrete request target for a route's path.
fn target(route: &RouteAccess) -> String {
    route
        .path
        .replace("{id}", HEX)
        .replace("{height}", "4")
        .replace("{member}", "org-b")
        .replace("{peer}", "org-b")
        .replace("{*path}", "a.csv")
        .replace("{name}", "alice")
}

fn body(route: &RouteAccess) -> Option<String> {
    match (route.method.as_str(), route.path) {
        ("POST", "/v1/proposals") => Some(
            serde_json::json!({"grant": {"grantee": "org-b", "resources": ["*"], "actions": ["read"], "not_after_ms": 5}})
                .to_string(),
        ),
        ("POST", "/v1/jwt-revocations") => {
            Some(serde_json::json!({"subject": "alice", "reason": "laptop stolen"}).to_string())
        }
        ("POST", "/v1/tokens") => {
            Some(serde_json::json!({"name": "alice", "roles": ["reader"]}).to_string())
        }
        ("PUT", "/v1/catalog/offers/{id}") => Some(
            serde_json::json!({"title": "Shipments", "resource": "datasets/*", "terms": {"actions": ["read"]}})
                .to_string(),
        ),
        ("POST", "/v1/access-requests") => Some(
            serde_json::json!({"to": "org-b", "resources": ["datasets/*"], "actions": ["read"], "duration_ms": 86400000})
                .to_string(),
        ),
        ("POST", "/v1/access-requests/{id}/decline") => {
            Some(serde_json::json!({"reason": "not now"}).to_string())
        }
        ("PUT", "/v1/endorsement-policy") => Some(
            serde_json::to_string(&crate::local::endorsement::EndorsementPolicy::careful())
                .unwrap(),
        ),
        ("PUT", _) => Some("a,b\n".to_owned()),
        _ => None,
    }
}

async fn call(fake: &Fake, token: &str, route: &RouteAccess) -> (StatusCode, Value) {
    let body = body(route);
    let request = request_as(
        token,
        route.method.as_str(),
        &target(route),
        body.as_deref(),
    );
    let response = app(fake.clone()).oneshot(request).await.unwrap();
    let (status, _, bytes) = body_of(response).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_route_is_open_to_exactly_its_roles() {
    let fake = Fake::default();
    let mut allowed = 0;
    let mut refused = 0;
    for route in ROUTES {
        for role in Role::ALL {
            let principal = Principal {
                label: String::new(),
                roles: Roles::of(&[role]),
                expires_ms: None,
            };
            let (status, json) = call(&fake, &role_token(role), route).await;
            let what = format!("{} {} as {role}", route.method, route.path);
            if principal.may(route.roles) {
                allowed += 1;
                assert!(
                    status.is_success(),
                    "{what}: {status} {json}, expected the fake's answer"
                );
            } else {
                refused += 1;
                assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                assert_eq!(json["type"], "urn:quorate:problem:role-required", "{what}");
                let detail = json["detail"].as_str().unwrap();
                assert!(
                    detail.contains(&format!("token:{role} has {role}")),
                    "{what}: {detail}"
                );
                let named = if route.roles.is_empty() {
                    "admin".to_owned()
                } else {
                    route.roles.names()
                };
                assert!(detail.contains(&named), "{what}: {detail}");
            }
        }
    }
    // The matrix is not vacuous either way.
    assert!(
        allowed > 60 && refused > 60,
        "{allowed} allowed, {refused} refused"
    );
}

#[tokio::test]
async fn unknown_and_expired_tokens_are_unauthenticated_on_every_route() {
    let fake = Fake::default();
    for route in ROUTES {
        for (token, says) in [
            ("nonsense", "not valid"),
            ("role-root", "not valid"),
            (EXPIRED_TOKEN, "expired"),
        ] {
            let (status, json) = call(&fake, token, route).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {}",
                route.method,
                route.path
            );
            assert_eq!(json["type"], "urn:quorate:problem:unauthenticated");
            assert!(json["detail"].as_str().unwrap().contains(says), "{json}");
        }
    }
    assert!(
        fake.actions.lock().unwrap().is_empty(),
        "an unauthenticated call is not audited"
    );
}

#[tokio::test]
async fn state_changing_calls_are_recorded_with_their_principal() {
    let fake = Fake::default();
    let propose = ROUTES
        .iter()
        .find(|r| r.path == "/v1/proposals" && r.method == "POST")
        .unwrap();
    let approve = ROUTES
        .iter()
        .find(|r| r.path == "/v1/proposals/{id}/approve")
        .unwrap();
    let put = ROUTES
        .iter()
        .find(|r| r.path == "/v1/objects/{*path}" && r.method == "PUT")
        .unwrap();
    assert_eq!(
        call(&fake, &role_token(Role::Approver), propose).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(&fake, &role_token(Role::Reader), approve).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&fake, &role_token(Role::Publisher), put).await.0,
        StatusCode::CREATED
    );
    // Reads are not recorded.
    let response = app(fake.clone())
        .oneshot(request("GET", "/v1/status", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A refusal by the node is recorded with its problem type.
    let refusing = Fake {
        refusal: Some(crate::problem::Problem::not_found("no such proposal")),
        actions: fake.actions.clone(),
    };
    assert_eq!(
        call(&refusing, "route-test-token", approve).await.0,
        StatusCode::NOT_FOUND
    );

    let actions = fake.actions.lock().unwrap().clone();
    assert_eq!(
        actions,
        [
            LocalAction {
                principal: "token:approver".into(),
                action: "propose",
                subject: HEX.into(),
                refused: None,
                bytes: 0,
            },
            LocalAction {
                principal: "token:reader".into(),
                action: "approve",
                subject: HEX.into(),
                refused: Some("role-required"),
                bytes: 0,
            },
            LocalAction {
                principal: "token:publisher".into(),
                action: "put-object",
                subject: "reports/q1.csv".into(),
                refused: None,
                bytes: 5,
            },
            LocalAction {
                principal: "admin".into(),
                action: "approve",
                subject: HEX.into(),
                refused: Some("not-found"),
                bytes: 0,
            },
        ]
    );
}

#[tokio::test]
async fn the_principal_route_says_who_the_caller_is() {
    let response = app(Fake::default())
        .oneshot(request_as(
            &role_token(Role::Metrics),
            "GET",
            "/v1/principal",
            None,
        ))
        .await
        .unwrap();
    let (status, _, bytes) = body_of(response).await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"principal": "token:metrics", "roles": ["metrics"], "expires_ms": null})
    );
}

#[tokio::test]
async fn live_events_stream_as_sse_and_resume_after_the_last_id() {
    let read = |token: &str, last: Option<&str>| {
        let mut request = request_as(token, "GET", "/v1/events", None);
        if let Some(last) = last {
            request
                .headers_mut()
                .insert("last-event-id", last.parse().unwrap());
        }
        async move {
            let response = app(Fake::default()).oneshot(request).await.unwrap();
            let (status, headers, bytes) = body_of(response).await;
            (status, headers, String::from_utf8(bytes).unwrap())
        }
    };
    let (status, headers, text) = read(&role_token(Role::Reader), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(
        text.contains("id: 1\nevent: block\ndata: {\"height\":4}\n"),
        "{text}"
    );
    assert!(text.contains("event: proposal-opened") && text.contains("id: 3"));
    let (_, _, resumed) = read(&role_token(Role::Auditor), Some("2")).await;
    assert!(!resumed.contains("id: 1\n") && !resumed.contains("id: 2\n"));
    assert!(resumed.contains("id: 3\nevent: readiness"), "{resumed}");
    let (status, _, _) = read(&role_token(Role::Reader), Some("yesterday")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = read(&role_token(Role::Metrics), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[test]
fn an_event_is_shown_only_to_roles_that_may_read_its_source() {
    let with = |roles: &[Role]| Principal {
        label: "oidc:x".into(),
        roles: Roles::of(roles),
        expires_ms: None,
    };
    for kind in [
        "block",
        "entry-committed",
        "grant-committed",
        "grant-revoked",
        "grant-expiring",
        "proposal-opened",
        "readiness",
    ] {
        assert!(crate::local::access::may_see(&with(&[Role::Reader]), kind));
        assert!(crate::local::access::may_see(&Principal::admin(), kind));
        assert!(!crate::local::access::may_see(&with(&[]), kind), "{kind}");
        assert!(!crate::local::access::may_see(
            &with(&[Role::Metrics]),
            kind
        ));
    }
}

/// The policy, written out a second time by hand: a change to the table
/// in `access.rs` has to be made here too, on purpose.
#[test]
fn the_route_table_is_the_documented_policy() {
    const ALL: &[&str] = &["approver", "publisher", "reader", "auditor"];
    const OBJECTS: &[&str] = &["publisher", "reader"];
    let expected: &[(&str, &str, &[&str])] = &[
        (
            "GET",
            "/v1/principal",
            &["approver", "publisher", "reader", "auditor", "metrics"],
        ),
        ("GET", "/v1/status", ALL),
        ("GET", "/v1/events", ALL),
        ("GET", "/v1/identity", ALL),
        ("GET", "/v1/members", ALL),
        ("GET", "/v1/peers", ALL),
        ("GET", "/v1/proposals", ALL),
        ("POST", "/v1/proposals", &["approver"]),
        ("POST", "/v1/proposals/{id}/approve", &["approver"]),
        ("POST", "/v1/proposals/{id}/reject", &["approver"]),
        ("GET", "/v1/proposals/{id}", ALL),
        ("POST", "/v1/proposals/{id}/withdraw", &["approver"]),
        ("GET", "/v1/endorsement-policy", &["approver", "auditor"]),
        ("PUT", "/v1/endorsement-policy", &[]),
        ("GET", "/v1/grants", ALL),
        ("GET", "/v1/grants/{id}", ALL),
        ("GET", "/v1/grants/{id}/proof", ALL),
        ("GET", "/v1/grants/{id}/status", ALL),
        ("GET", "/v1/members/{member}/status", ALL),
        ("GET", "/v1/ledger", ALL),
        ("GET", "/v1/ledger/blocks/{height}", ALL),
        ("GET", "/v1/ledger/entries/{id}", ALL),
        ("GET", "/v1/ledger/export", &["auditor"]),
        ("GET", "/v1/audit", &["auditor"]),
        ("GET", "/v1/objects", OBJECTS),
        ("GET", "/v1/objects/{*path}", OBJECTS),
        ("PUT", "/v1/objects/{*path}", &["publisher"]),
        ("DELETE", "/v1/objects/{*path}", &["publisher"]),
        ("GET", "/v1/peers/{peer}/objects", OBJECTS),
        ("GET", "/v1/peers/{peer}/objects/{*path}", OBJECTS),
        ("PUT", "/v1/peers/{peer}/objects/{*path}", &["publisher"]),
        ("DELETE", "/v1/peers/{peer}/objects/{*path}", &["publisher"]),
        ("GET", "/v1/catalog", ALL),
        ("GET", "/v1/catalog/offers", ALL),
        ("GET", "/v1/catalog/offers/{id}", ALL),
        ("PUT", "/v1/catalog/offers/{id}", &["publisher"]),
        ("DELETE", "/v1/catalog/offers/{id}", &["publisher"]),
        ("GET", "/v1/peers/{peer}/catalog", ALL),
        ("GET", "/v1/access-requests", ALL),
        ("POST", "/v1/access-requests", &["approver"]),
        ("GET", "/v1/access-requests/{id}", ALL),
        ("POST", "/v1/access-requests/{id}/accept", &["approver"]),
        ("POST", "/v1/access-requests/{id}/decline", &["approver"]),
        ("POST", "/v1/access-requests/{id}/withdraw", &["approver"]),
        ("GET", "/v1/tokens", &[]),
        ("POST", "/v1/tokens", &[]),
        ("GET", "/v1/jwt-revocations", &[]),
        ("POST", "/v1/jwt-revocations", &[]),
        ("GET", "/v1/upstreams", &[]),
        ("POST", "/v1/upstreams/reload", &[]),
        ("DELETE", "/v1/tokens/{name}", &[]),
        ("GET", "/metrics", &["metrics"]),
    ];
    assert_eq!(ROUTES.len(), expected.len());
    for (method, path, roles) in expected {
        let route = ROUTES
            .iter()
            .find(|r| r.method.as_str() == *method && r.path == *path)
            .unwrap_or_else(|| panic!("{method} {path} is not in the table"));
        let names: Vec<&str> = route.roles.iter().map(Role::name).collect();
        let mut want = roles.to_vec();
        want.sort_by_key(|n| Role::ALL.iter().position(|r| r.name() == *n));
        assert_eq!(names, want, "{method} {path}");
    }
    // HEAD is GET's, and a principal with no role opens nothing.
    let nobody = Principal {
        label: "oidc:x".into(),
        roles: Roles::NONE,
        expires_ms: None,
    };
    for route in ROUTES {
        assert!(!nobody.may(route.roles), "{} {}", route.method, route.path);
    }
    assert!(
        crate::local::access::route_access(&axum::http::Method::HEAD, "/v1/objects/{*path}")
            .is_some_and(|r| r.roles == Roles::of(&[Role::Publisher, Role::Reader]))
    );
}
