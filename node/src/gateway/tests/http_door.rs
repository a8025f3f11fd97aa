//! Goal: the signed HTTP door in front of the real pipeline refuses what
//! is unsigned, badly signed, replayed, misaddressed or signed for another
//! member, with the problem types members see, and audits refusals with a
//! member behind them. Method: the door's router, called with
//! `tower::ServiceExt::oneshot` (no listener), signing as a client does.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use quorate_api::gateway::{Settings, router};
use quorate_api::signature::{AUDIENCE_HEADER, RequestParts, sign_request};
use quorate_did::Keypair;
use tower::ServiceExt as _;

use super::*;

const AUTHORITY: &str = "org-a.example:8080";
const REPORT: &[u8] = b"quarter,revenue\nq3,1000000\n";

/// A signed GET of `target` by `key`, for `audience`, addressed to
/// `host`.
fn signed(key: &Keypair, target: &str, audience: &Did, host: &str, nonce: &str) -> Request<Body> {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let uri = format!("https://{AUTHORITY}{target}");
    let audience = audience.to_string();
    let parts = RequestParts {
        method: "GET",
        target_uri: &uri,
        headers: &[(AUDIENCE_HEADER, &audience)],
    };
    let covered = ["@method", "@target-uri", AUDIENCE_HEADER];
    let signature = sign_request(&parts, &covered, key, created, nonce).unwrap();
    Request::get(target)
        .header("host", host)
        .header(AUDIENCE_HEADER, audience)
        .header("signature-input", signature.signature_input)
        .header("signature", signature.signature)
        .body(Body::empty())
        .unwrap()
}

/// The status and problem type (`urn:quorate:problem:` cut off) of the
/// door's answer, and its body.
async fn answer(door: &Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = door.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let kind = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json["type"].as_str().map(str::to_owned))
        .map(|t| t.trim_start_matches("urn:quorate:problem:").to_owned())
        .unwrap_or_default();
    (status, kind, body)
}

#[tokio::test]
async fn the_signed_door_refuses_before_the_pipeline_and_the_pipeline_after_it() {
    let mut f = Fixture::new();
    f.grant(GRANTEE, Terms::default());
    f.put("reports/q3.csv", REPORT);
    let (owner, grantee_key) = (f.did(OWNER), f.consortium.keys[GRANTEE].clone());
    let target = "/gateway/objects/reports/q3.csv";
    // One door, so one replay guard, for the whole test.
    let door = router(f.gateway.clone(), Settings::new(60, AUTHORITY, owner));

    let ok = answer(
        &door,
        signed(&grantee_key, target, &owner, AUTHORITY, "n-1"),
    )
    .await;
    assert_eq!((ok.0, ok.2.as_slice()), (StatusCode::OK, REPORT));

    let unsigned = Request::get(target)
        .header("host", AUTHORITY)
        .body(Body::empty())
        .unwrap();
    let mut tampered = signed(&grantee_key, target, &owner, AUTHORITY, "n-2");
    *tampered.uri_mut() = "/gateway/objects/reports/q4.csv".parse().unwrap();
    let stranger = Keypair::from_seed(&[99; 32]);
    let other_member = f.did(STRANGER_TO_GRANTS);
    let cases = [
        (unsigned, 401, "unauthenticated"),
        (tampered, 401, "bad-signature"),
        (
            signed(&grantee_key, target, &owner, "org-c.example:8080", "n-3"),
            421,
            "wrong-authority",
        ),
        (
            signed(&grantee_key, target, &other_member, AUTHORITY, "n-4"),
            421,
            "wrong-audience",
        ),
        (
            signed(&stranger, target, &owner, AUTHORITY, "n-5"),
            403,
            "not-a-member",
        ),
        // The first request's nonce again.
        (
            signed(&grantee_key, target, &owner, AUTHORITY, "n-1"),
            401,
            "replayed",
        ),
        // Past the door, the pipeline's own refusals.
        (
            signed(
                &f.consortium.keys[STRANGER_TO_GRANTS],
                target,
                &owner,
                AUTHORITY,
                "n-6",
            ),
            403,
            "no-grant",
        ),
        (
            signed(
                &grantee_key,
                "/gateway/objects/reports/q4.csv",
                &owner,
                AUTHORITY,
                "n-7",
            ),
            404,
            "not-found",
        ),
    ];
    for (request, status, kind) in cases {
        let (got_status, got_kind, body) = answer(&door, request).await;
        assert_eq!((got_status.as_u16(), got_kind.as_str()), (status, kind));
        assert!(
            !body.windows(7).any(|w| w == b"quarter"),
            "data in a refusal"
        );
    }

    // Every decision with a member's valid signature behind it is audited;
    // the anonymous refusals too (within their rate per source).
    let reasons: Vec<(Option<String>, Option<String>)> = f
        .audit()
        .await
        .into_iter()
        .map(|r| (r.decision.caller, r.decision.reason))
        .collect();
    let grantee = Some(f.did(GRANTEE).to_string());
    assert!(reasons.contains(&(grantee.clone(), None)), "{reasons:?}");
    assert!(reasons.contains(&(grantee.clone(), Some("replayed".into()))));
    assert!(reasons.contains(&(grantee, Some("not-found".into()))));
    for anonymous in [
        "unauthenticated",
        "bad-signature",
        "wrong-authority",
        "wrong-audience",
        "not-a-member",
    ] {
        assert!(
            reasons.contains(&(None, Some(anonymous.into()))),
            "{anonymous}: {reasons:?}"
        );
    }
}

/// A signed GET declaring `purpose` in `Quorate-Purpose`, covered by the
/// signature or not.
fn signed_for_purpose(
    key: &Keypair,
    target: &str,
    audience: &Did,
    nonce: &str,
    purpose: &str,
    covered: bool,
) -> Request<Body> {
    use quorate_api::signature::PURPOSE_HEADER;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let uri = format!("https://{AUTHORITY}{target}");
    let audience = audience.to_string();
    let headers = [
        (AUDIENCE_HEADER, audience.as_str()),
        (PURPOSE_HEADER, purpose),
    ];
    let parts = RequestParts {
        method: "GET",
        target_uri: &uri,
        headers: &headers,
    };
    let components: &[&str] = if covered {
        &["@method", "@target-uri", AUDIENCE_HEADER, PURPOSE_HEADER]
    } else {
        &["@method", "@target-uri", AUDIENCE_HEADER]
    };
    let signature = sign_request(&parts, components, key, created, nonce).unwrap();
    Request::get(target)
        .header("host", AUTHORITY)
        .header(AUDIENCE_HEADER, audience)
        .header(PURPOSE_HEADER, purpose)
        .header("signature-input", signature.signature_input)
        .header("signature", signature.signature)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_declared_purpose_must_be_signed_and_match_the_grant() {
    let mut f = Fixture::new();
    f.grant(
        GRANTEE,
        Terms {
            purpose: Some("customs clearance"),
            ..Terms::default()
        },
    );
    f.put("reports/q3.csv", REPORT);
    let (owner, key) = (f.did(OWNER), f.consortium.keys[GRANTEE].clone());
    let target = "/gateway/objects/reports/q3.csv";
    let door = router(f.gateway.clone(), Settings::new(60, AUTHORITY, owner));

    // Declared but not covered: a purpose changed in flight would be
    // served under another grant's terms, so it is refused unread.
    let (status, kind, _) = answer(
        &door,
        signed_for_purpose(&key, target, &owner, "p-1", "customs clearance", false),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::UNAUTHORIZED, "bad-signature")
    );
    // Covered, but another purpose; then none at all.
    let (status, kind, body) = answer(
        &door,
        signed_for_purpose(&key, target, &owner, "p-2", "marketing", true),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::FORBIDDEN, "purpose-mismatch")
    );
    assert!(!body.windows(REPORT.len()).any(|w| w == REPORT));
    let (status, kind, _) = answer(&door, signed(&key, target, &owner, AUTHORITY, "p-3")).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::FORBIDDEN, "purpose-mismatch")
    );
    // Covered and the grant's: served.
    let (status, _, body) = answer(
        &door,
        signed_for_purpose(&key, target, &owner, "p-4", "customs clearance", true),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, REPORT);
}
