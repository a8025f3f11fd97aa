//! Goal: every route turns the node's answer into a body that validates
//! against its schema in `/openapi.json`, and each of the node's refusals
//! into problem+json with its status, type and `Retry-After`.
//! Method: `oneshot` requests (in process, no sockets) against a fake node
//! that answers with sample values of every response type, or refuses
//! every fallible call with one chosen problem.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use quorate_contracts::Action;
use serde_json::Value;
use tower::ServiceExt as _;

use super::fake::{Fake, HEX, app, body_of, identity, proposals, request};
use crate::local::responses::NodeStatus;
use crate::local::{ProposalRequest, openapi};
use crate::problem::Problem;
/// Checks `instance` against the schema at `pointer` in the document (its
/// `$ref`s resolved within the document).
fn check(doc: &Value, pointer: &str, instance: &Value) {
    let errors = errors(doc, pointer, instance);
    assert!(
        errors.is_empty(),
        "{pointer}: {instance} does not validate: {errors:?}"
    );
}

fn errors(doc: &Value, pointer: &str, instance: &Value) -> Vec<String> {
    assert!(doc.pointer(pointer).is_some(), "no schema at {pointer}");
    let mut root = doc.clone();
    // A fragment is a URI's: braces are percent-encoded.
    let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
    root["$ref"] = Value::from(format!("#{fragment}"));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The check is not vacuous: bodies of the wrong shape fail it.
#[test]
fn wrong_bodies_do_not_validate() {
    let doc = openapi::document_value();
    let status = "/components/schemas/NodeStatus";
    let mut good = serde_json::to_value(NodeStatus::default()).unwrap();
    assert!(errors(&doc, status, &good).is_empty());
    good["tip_hash"] = Value::from("00");
    assert!(!errors(&doc, status, &good).is_empty());
    good["tip_hash"] = Value::from(HEX);
    good["height"] = Value::from(-1);
    assert!(!errors(&doc, status, &good).is_empty());
    let mut view = serde_json::to_value(&proposals()[0]).unwrap();
    view["body"]["kind"] = Value::from("launch");
    assert!(!errors(&doc, "/components/schemas/ProposalView", &view).is_empty());
    let problem = serde_json::json!({
        "type": "urn:quorate:problem:unlisted", "title": "x", "status": 400, "detail": "x"
    });
    assert!(!errors(&doc, "/components/schemas/Problem", &problem).is_empty());
}

/// A JSON pointer's escaping of one token.
fn token(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// The routes that answer JSON: (method, request target, documented path,
/// JSON body, the success status).
const JSON_ROUTES: &[(&str, &str, &str, Option<&str>, u16)] = &[
    ("GET", "/v1/principal", "/v1/principal", None, 200),
    ("GET", "/v1/tokens", "/v1/tokens", None, 200),
    (
        "POST",
        "/v1/tokens",
        "/v1/tokens",
        Some(r#"{"name":"alice","roles":["approver"],"expires_in_s":86400}"#),
        201,
    ),
    ("GET", "/v1/status", "/v1/status", None, 200),
    ("GET", "/v1/identity", "/v1/identity", None, 200),
    ("GET", "/v1/members", "/v1/members", None, 200),
    ("GET", "/v1/peers", "/v1/peers", None, 200),
    ("GET", "/v1/proposals", "/v1/proposals", None, 200),
    (
        "POST",
        "/v1/proposals",
        "/v1/proposals",
        Some(
            r#"{"revoke":{"grant":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#,
        ),
        202,
    ),
    ("GET", "/v1/grants", "/v1/grants", None, 200),
    (
        "GET",
        "/v1/grants/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "/v1/grants/{id}",
        None,
        200,
    ),
    ("GET", "/v1/objects", "/v1/objects", None, 200),
    ("PUT", "/v1/objects/a.csv", "/v1/objects/{path}", None, 201),
    (
        "GET",
        "/v1/peers/org-b/objects",
        "/v1/peers/{peer}/objects",
        None,
        200,
    ),
    ("GET", "/v1/audit", "/v1/audit", None, 200),
    ("GET", "/v1/ledger", "/v1/ledger", None, 200),
    (
        "GET",
        "/v1/ledger/blocks/4",
        "/v1/ledger/blocks/{height}",
        None,
        200,
    ),
    (
        "GET",
        "/v1/ledger/entries/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "/v1/ledger/entries/{id}",
        None,
        200,
    ),
    ("GET", "/openapi.json", "/openapi.json", None, 200),
];

/// The grant of [`HEX`]'s route.
fn grant_route() -> String {
    format!("/v1/grants/{HEX}")
}

#[tokio::test]
async fn every_json_answer_validates_against_its_schema() {
    let doc = openapi::document_value();
    for (method, target, path, body, status) in JSON_ROUTES {
        let response = app(Fake::default())
            .oneshot(request(method, target, *body))
            .await
            .unwrap();
        let (got, headers, bytes) = body_of(response).await;
        assert_eq!(got.as_u16(), *status, "{method} {target}");
        assert_eq!(
            headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json",
            "{method} {target}"
        );
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        let pointer = format!(
            "/paths/{}/{}/responses/{status}/content/application~1json/schema",
            token(path),
            method.to_ascii_lowercase()
        );
        check(&doc, &pointer, &json);
    }
}

#[tokio::test]
async fn the_other_answers_have_their_documented_media_types() {
    let grant = grant_route();
    for (target, media) in [
        (format!("{grant}/proof"), "application/cbor"),
        (format!("{grant}/status"), "application/cbor"),
        ("/v1/ledger/blocks/4?format=cbor".into(), "application/cbor"),
        ("/v1/ledger/export".into(), "application/octet-stream"),
        ("/v1/objects/a.csv".into(), "text/csv"),
        ("/v1/peers/org-b/objects/a.csv".into(), "text/csv"),
        ("/metrics".into(), "text/plain; version=0.0.4"),
    ] {
        let response = app(Fake::default())
            .oneshot(request("GET", &target, None))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{target}");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            media,
            "{target}"
        );
    }
    for (method, target, status) in [
        ("POST", format!("/v1/proposals/{HEX}/approve"), 204),
        ("POST", format!("/v1/proposals/{HEX}/reject"), 204),
        ("DELETE", "/v1/objects/a.csv".into(), 204),
        ("DELETE", "/v1/tokens/alice".into(), 204),
        ("HEAD", "/v1/objects/a.csv".into(), 200),
    ] {
        let response = app(Fake::default())
            .oneshot(request(method, &target, None))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {target}");
    }
}

/// The grant links its next page.
#[tokio::test]
async fn a_page_of_grants_links_the_next() {
    let response = app(Fake::default())
        .oneshot(request("GET", "/v1/grants?grantee=org-b&limit=1", None))
        .await
        .unwrap();
    let link = response
        .headers()
        .get(header::LINK)
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        link,
        format!("</v1/grants?grantee=org-b&after={HEX}&limit=1>; rel=\"next\"")
    );
}

/// Each refusal a node can make, through the routes that can make it.
#[tokio::test]
async fn the_nodes_refusals_reach_the_client_as_problems() {
    use axum::http::StatusCode as S;
    let doc = openapi::document_value();
    let mut overloaded = Problem::new(S::SERVICE_UNAVAILABLE, "too-many-proposals", "full");
    overloaded.retry_after_secs = Some(5);
    let refusals = [
        (
            Problem::new(S::FORBIDDEN, "not-a-member", "not a member"),
            vec![
                ("POST", "/v1/proposals".to_owned()),
                ("POST", format!("/v1/proposals/{HEX}/approve")),
            ],
        ),
        (
            Problem::not_found("no proposal"),
            vec![
                ("POST", format!("/v1/proposals/{HEX}/reject")),
                ("GET", format!("/v1/grants/{HEX}")),
                ("GET", format!("/v1/ledger/entries/{HEX}")),
                ("GET", "/v1/objects/a.csv".to_owned()),
            ],
        ),
        (
            Problem::new(S::UNPROCESSABLE_ENTITY, "proposal-rejected", "self grant"),
            vec![("POST", "/v1/proposals".to_owned())],
        ),
        (overloaded, vec![("POST", "/v1/proposals".to_owned())]),
        (
            Problem::new(S::SERVICE_UNAVAILABLE, "node-stopping", "stopping"),
            vec![
                ("POST", format!("/v1/proposals/{HEX}/approve")),
                ("GET", format!("/v1/grants/{HEX}/proof")),
                ("GET", "/v1/ledger/export".to_owned()),
            ],
        ),
        (
            Problem::new(
                S::INTERNAL_SERVER_ERROR,
                "ledger-read-failed",
                "see the log",
            ),
            vec![
                ("GET", format!("/v1/grants/{HEX}/proof")),
                ("GET", "/v1/ledger/blocks/1".to_owned()),
                ("GET", format!("/v1/ledger/entries/{HEX}")),
            ],
        ),
        (
            Problem::new(S::UNPROCESSABLE_ENTITY, "height-beyond-tip", "past the tip"),
            vec![("GET", format!("/v1/grants/{HEX}/status?at=9"))],
        ),
    ];
    let proposal = r#"{"remove_member":{"member":"org-b"}}"#;
    for (problem, routes) in refusals {
        for (method, target) in routes {
            let body = (target == "/v1/proposals").then_some(proposal);
            let node = Fake {
                refusal: Some(problem.clone()),
                ..Fake::default()
            };
            let response = app(node)
                .oneshot(request(method, &target, body))
                .await
                .unwrap();
            let (status, headers, bytes) = body_of(response).await;
            assert_eq!(status, problem.status, "{method} {target}");
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                "application/problem+json"
            );
            assert_eq!(
                headers.get(header::RETRY_AFTER).map(|v| v
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()),
                problem.retry_after_secs,
                "{method} {target}"
            );
            let json: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["type"], problem.type_uri(), "{method} {target}");
            check(&doc, "/components/schemas/Problem", &json);
            // The document says this route may answer this status.
            let path = doc["paths"]
                .as_object()
                .unwrap()
                .keys()
                .find(|p| matches_path(p, target.split('?').next().unwrap()))
                .unwrap();
            let responses = &doc["paths"][path][method.to_ascii_lowercase()]["responses"];
            assert!(
                responses.get(status.as_str()).is_some(),
                "{method} {path} does not document {status}"
            );
        }
    }
}

/// Whether a documented path (`/v1/grants/{id}`) matches a request path.
fn matches_path(documented: &str, actual: &str) -> bool {
    let (d, a): (Vec<_>, Vec<_>) = (documented.split('/').collect(), actual.split('/').collect());
    let tail = d.last().is_some_and(|s| *s == "{path}");
    (d.len() == a.len() || (tail && a.len() >= d.len()))
        && d.iter()
            .zip(&a)
            .all(|(d, a)| d == a || (d.starts_with('{') && !a.is_empty()))
}

#[tokio::test]
async fn the_admin_token_is_required_and_must_match() {
    let doc = openapi::document_value();
    for authorization in [None, Some("Bearer wrong"), Some("Basic abc")] {
        for (method, target, ..) in JSON_ROUTES {
            if *target == "/openapi.json" {
                continue;
            }
            let mut builder = Request::builder().method(*method).uri(*target);
            if let Some(value) = authorization {
                builder = builder.header(header::AUTHORIZATION, value);
            }
            let response = app(Fake::default())
                .oneshot(builder.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let (status, headers, bytes) = body_of(response).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {target}");
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                "application/problem+json"
            );
            let json: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["type"], "urn:quorate:problem:unauthenticated");
            check(&doc, "/components/schemas/Problem", &json);
        }
    }
}

/// The request body's hand-written schema admits what the API sends as
/// examples of each kind (it is not derived, so it is checked here).
#[test]
fn the_proposal_schema_admits_every_kind_of_proposal() {
    let doc = openapi::document_value();
    let samples = [
        ProposalRequest::Grant {
            grantee: "org-b".into(),
            resources: vec!["*".into()],
            actions: vec![Action::Read],
            not_before_ms: None,
            not_after_ms: 5,
            purpose: Some("audit".into()),
            rate_limit: Some(quorate_contracts::RateLimit {
                requests: 3,
                per_seconds: 10,
            }),
        },
        ProposalRequest::Revoke { grant: HEX.into() },
        ProposalRequest::AddMember {
            name: "org-c".into(),
            did: identity().did,
        },
        ProposalRequest::RemoveMember {
            member: "org-c".into(),
        },
        ProposalRequest::RotateKey {
            did: identity().did,
        },
    ];
    for sample in samples {
        let json = serde_json::to_value(&sample).unwrap();
        check(&doc, "/components/schemas/ProposalRequest", &json);
        // And the reader takes what the schema admits.
        let back: ProposalRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, sample);
    }
}

#[test]
fn every_reference_in_the_document_resolves_and_every_problem_type_is_listed() {
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let doc = openapi::document_value();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 50);
    for r in found {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let listed = doc
        .pointer("/components/schemas/Problem/properties/type/enum")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(listed.len(), crate::problem::TYPES.len());
    for kind in [
        "not-a-member",
        "too-many-proposals",
        "ledger-read-failed",
        "node-stopping",
    ] {
        assert!(
            listed.contains(&Value::from(format!("urn:quorate:problem:{kind}"))),
            "{kind}"
        );
    }
}

/// The token request's hand-written schema admits what the reader takes,
/// and refuses a role the node does not know.
#[test]
fn the_token_request_schema_matches_its_reader() {
    let doc = openapi::document_value();
    let schema = "/components/schemas/TokenRequest";
    let sample = crate::local::TokenRequest {
        name: "ci.bot_1".into(),
        roles: vec![crate::auth::Role::Publisher, crate::auth::Role::Reader],
        expires_in_s: Some(3600),
    };
    let json = serde_json::to_value(&sample).unwrap();
    check(&doc, schema, &json);
    let back: crate::local::TokenRequest = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, sample);
    let mut unknown = json;
    unknown["roles"] = serde_json::json!(["root"]);
    assert!(!errors(&doc, schema, &unknown).is_empty());
    assert!(serde_json::from_value::<crate::local::TokenRequest>(unknown).is_err());
}
