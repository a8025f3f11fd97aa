//! Goal: every refusal of the pipeline has its own typed reason and code,
//! serves nothing and is audited; an allowed read is audited with its
//! grant and bytes. Method: the pipeline's read and list, called directly.

use quorate_api::gateway::status;
use quorate_api::objects::{ByteRange, Forward, ListQuery, ObjectBody};
use quorate_api::problem::Problem;
use quorate_api::refusal::{Code, Refusal, UpstreamFailure};
use quorate_contracts::{Action, DenyReason};
use quorate_did::{Did, Keypair};

use super::*;

const REPORT: &[u8] = b"quarter,revenue\nq3,1000000\n";

async fn read(fixture: &Fixture, caller: &Did, at: &str) -> Result<ObjectBody, Refusal> {
    fixture
        .gateway
        .read(caller, "http", &path(at), None, None, &Forward::default())
        .await
}

async fn body(object: ObjectBody) -> Vec<u8> {
    axum::body::to_bytes(object.body, usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn an_allowed_read_is_served_and_audited_with_its_grant_and_bytes() {
    let mut f = Fixture::new();
    let grant = f.grant(GRANTEE, Terms::default());
    f.put("reports/q3.csv", REPORT);
    let object = read(&f, &f.did(GRANTEE), "reports/q3.csv").await.unwrap();
    assert_eq!(body(object).await, REPORT);
    let ranged = f
        .gateway
        .read(
            &f.did(GRANTEE),
            "http",
            &path("reports/q3.csv"),
            Some(ByteRange::Bounded(0, 6)),
            None,
            &Forward::default(),
        )
        .await
        .unwrap();
    assert_eq!((ranged.span, ranged.partial), ((0, 7), true));
    assert_eq!(body(ranged).await, b"quarter");

    assert_eq!(f.gateway.decisions(), (2, 0));
    let records = f.audit().await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let first = &records[0].decision;
    assert_eq!(
        (first.decision.as_str(), first.grant.clone(), first.bytes),
        ("allow", Some(grant.to_string()), REPORT.len() as u64)
    );
    assert_eq!(first.caller, Some(f.did(GRANTEE).to_string()));
    assert_eq!(records[1].decision.bytes, 7);
}

#[tokio::test]
async fn every_refusal_of_the_pipeline_has_its_reason_serves_nothing_and_is_audited() {
    let mut f = Fixture::new();
    let reports = f.grant(GRANTEE, Terms::default());
    let listing_only = f.grant(
        GRANTEE,
        Terms {
            resources: &["metrics/*"],
            actions: &[Action::List],
            ..Terms::default()
        },
    );
    let later = f.grant(
        GRANTEE,
        Terms {
            resources: &["plans/*"],
            window: (T0 + 2 * HOUR_MS, T0 + 3 * HOUR_MS),
            ..Terms::default()
        },
    );
    let revoked = f.grant(
        GRANTEE,
        Terms {
            resources: &["old/*"],
            ..Terms::default()
        },
    );
    f.revoke(revoked);
    for at in [
        "reports/q3.csv",
        "metrics/load.csv",
        "plans/2027.csv",
        "old/q1.csv",
        "secret/keys.csv",
    ] {
        f.put(at, REPORT);
    }
    let stranger = Keypair::from_seed(&[99; 32]).did();
    let grantee = f.did(GRANTEE);
    let cases: Vec<(Did, &str, Refusal)> = vec![
        (
            f.did(STRANGER_TO_GRANTS),
            "reports/q3.csv",
            Refusal::Denied(DenyReason::NoGrant),
        ),
        (
            grantee,
            "secret/keys.csv",
            Refusal::Denied(DenyReason::OutOfScope),
        ),
        (
            grantee,
            "metrics/load.csv",
            Refusal::Denied(DenyReason::ActionNotGranted {
                grant: listing_only,
            }),
        ),
        (
            grantee,
            "plans/2027.csv",
            Refusal::Denied(DenyReason::NotYetValid { grant: later }),
        ),
        (
            grantee,
            "old/q1.csv",
            Refusal::Denied(DenyReason::Revoked { grant: revoked }),
        ),
        (
            stranger,
            "reports/q3.csv",
            Refusal::Denied(DenyReason::NotAMember),
        ),
        (
            grantee,
            "reports/q4.csv",
            Refusal::NotFound(path("reports/q4.csv")),
        ),
    ];
    for (caller, at, expected) in &cases {
        let refused = read(&f, caller, at).await.unwrap_err();
        assert_eq!(&refused, expected, "{at}");
    }
    let unsatisfiable = f
        .gateway
        .read(
            &grantee,
            "http",
            &path("reports/q3.csv"),
            Some(ByteRange::From(1_000)),
            None,
            &Forward::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        unsatisfiable,
        Refusal::RangeNotSatisfiable {
            size: REPORT.len() as u64
        }
    );

    assert_eq!(f.gateway.decisions(), (0, cases.len() as u64 + 1));
    let records = f.audit().await;
    assert_eq!(records.len(), cases.len() + 1, "{records:#?}");
    for (record, (_, at, expected)) in records.iter().zip(&cases) {
        let d = &record.decision;
        assert_eq!(d.resource, *at);
        assert_eq!(
            (
                d.decision.as_str(),
                d.reason.as_deref(),
                d.bytes,
                d.grant.as_ref()
            ),
            ("deny", Some(expected.code().as_str()), 0, None),
            "{at}"
        );
    }
    // The grant that allows `reports/` still does.
    assert!(
        read(&f, &grantee, "reports/q3.csv").await.is_ok(),
        "{reports}"
    );
}

#[tokio::test]
async fn a_grant_past_its_end_at_either_clock_is_expired() {
    let mut f = Fixture::new();
    let grant = f.grant(GRANTEE, Terms::default());
    f.put("reports/q3.csv", REPORT);
    let grantee = f.did(GRANTEE);
    let expired = Refusal::Denied(DenyReason::Expired { grant });

    // The gateway's clock past the end, the chain's not.
    f.set_clock(T0 + HOUR_MS);
    assert_eq!(
        read(&f, &grantee, "reports/q3.csv").await.unwrap_err(),
        expired
    );
    // The chain's time past the end, the gateway's clock not: a gateway
    // whose clock is behind still refuses.
    f.set_clock(NOW);
    f.set_chain_time(T0 + HOUR_MS + 1);
    assert_eq!(
        read(&f, &grantee, "reports/q3.csv").await.unwrap_err(),
        expired
    );
    // The chain's time before the start.
    f.set_chain_time(T0 - 1);
    assert_eq!(
        read(&f, &grantee, "reports/q3.csv").await.unwrap_err(),
        Refusal::Denied(DenyReason::NotYetValid { grant })
    );
    f.set_chain_time(NOW);
    assert!(read(&f, &grantee, "reports/q3.csv").await.is_ok());
}

#[tokio::test]
async fn a_stale_ledger_fails_closed_for_reads_and_listings() {
    let mut f = Fixture::new();
    f.grant(GRANTEE, Terms::default());
    f.put("reports/q3.csv", REPORT);
    f.go_stale();
    let grantee = f.did(GRANTEE);
    let refused = read(&f, &grantee, "reports/q3.csv").await.unwrap_err();
    assert_eq!(refused, Refusal::StaleLedger);
    assert_eq!(refused.retry_after_secs(), Some(1));
    let listed = f
        .gateway
        .list(&grantee, "http", &ListQuery::default(), None)
        .await
        .unwrap_err();
    assert_eq!(listed, Refusal::StaleLedger);
    let reasons = f.reasons().await;
    assert_eq!(reasons, vec![Some("stale-ledger".to_owned()); 2]);
}

#[tokio::test]
async fn a_node_that_is_not_a_member_serves_nobody() {
    let outsider = Keypair::from_seed(&[42; 32]).did();
    let f = Fixture::serving_as(Some(outsider));
    let refused = read(&f, &f.did(GRANTEE), "reports/q3.csv")
        .await
        .unwrap_err();
    assert_eq!(refused, Refusal::NotServing);
}

#[tokio::test]
async fn a_grant_rate_limit_refuses_past_its_burst_and_says_how_long_to_wait() {
    let mut f = Fixture::new();
    f.grant(
        GRANTEE,
        Terms {
            rate: Some((2, 60)),
            ..Terms::default()
        },
    );
    f.put("reports/q3.csv", REPORT);
    let grantee = f.did(GRANTEE);
    for _ in 0..2 {
        read(&f, &grantee, "reports/q3.csv").await.unwrap();
    }
    let refused = read(&f, &grantee, "reports/q3.csv").await.unwrap_err();
    let Refusal::RateLimited { retry_after_secs } = refused else {
        panic!("not rate-limited: {refused:?}");
    };
    assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}");
    let problem = Problem::from(&refused);
    assert_eq!(
        (
            problem.status.as_u16(),
            problem.code,
            problem.retry_after_secs
        ),
        (429, "rate-limited", Some(retry_after_secs))
    );
    let decisions = f.decisions().await;
    assert_eq!(decisions, ["allow", "allow", "deny"]);
}

#[tokio::test]
async fn an_upstream_answer_longer_than_a_chunk_is_refused_as_too_large() {
    let limit = 1024;
    let small = axum::body::Body::from(vec![7u8; limit as usize]);
    assert_eq!(
        super::super::read::buffered(small, limit)
            .await
            .unwrap()
            .len(),
        1024
    );
    let large = axum::body::Body::from(vec![7u8; limit as usize + 1]);
    let failure = super::super::read::buffered(large, limit)
        .await
        .unwrap_err();
    assert_eq!(failure, UpstreamFailure::TooLarge(limit));
    let refusal = Refusal::from(failure);
    assert_eq!(refusal.code(), Code::UpstreamTooLarge);
    assert_eq!(status(refusal.code()).as_u16(), 502);
}

#[tokio::test]
async fn a_listing_shows_only_what_the_caller_may_list() {
    let mut f = Fixture::new();
    f.grant(
        GRANTEE,
        Terms {
            resources: &["reports/*", "metrics/load.csv"],
            actions: &[Action::Read, Action::List],
            ..Terms::default()
        },
    );
    for at in [
        "reports/q3.csv",
        "reports/q4.csv",
        "metrics/load.csv",
        "metrics/cpu.csv",
        "secret/keys.csv",
    ] {
        f.put(at, REPORT);
    }
    let listing = f
        .gateway
        .list(&f.did(GRANTEE), "p2p", &ListQuery::default(), None)
        .await
        .unwrap();
    let paths: Vec<&str> = listing.objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(
        paths,
        ["metrics/load.csv", "reports/q3.csv", "reports/q4.csv"]
    );
    assert_eq!(listing.next, None);
    let none = f
        .gateway
        .list(
            &f.did(STRANGER_TO_GRANTS),
            "p2p",
            &ListQuery::default(),
            None,
        )
        .await
        .unwrap();
    assert!(none.objects.is_empty());
    let stranger = Keypair::from_seed(&[99; 32]).did();
    assert_eq!(
        f.gateway
            .list(&stranger, "p2p", &ListQuery::default(), None)
            .await
            .unwrap_err(),
        Refusal::Denied(DenyReason::NotAMember)
    );
}

#[tokio::test]
async fn a_purpose_bound_grant_serves_and_lists_only_for_its_declared_purpose() {
    let mut f = Fixture::new();
    let grant = f.grant(
        GRANTEE,
        Terms {
            actions: &[Action::Read, Action::List],
            purpose: Some("customs clearance"),
            ..Terms::default()
        },
    );
    f.put("reports/q3.csv", REPORT);
    let grantee = f.did(GRANTEE);
    let at = path("reports/q3.csv");
    for declared in [None, Some("marketing")] {
        let refused = f
            .gateway
            .read(&grantee, "http", &at, None, declared, &Forward::default())
            .await
            .unwrap_err();
        assert_eq!(
            refused,
            Refusal::Denied(DenyReason::PurposeMismatch { grant })
        );
        assert_eq!(refused.code().as_str(), "purpose-mismatch");
        let listed = f
            .gateway
            .list(&grantee, "p2p", &ListQuery::default(), declared)
            .await
            .unwrap();
        assert!(listed.objects.is_empty(), "{declared:?}");
    }
    let served = f
        .gateway
        .read(
            &grantee,
            "http",
            &at,
            None,
            Some("customs clearance"),
            &Forward::default(),
        )
        .await
        .unwrap();
    assert_eq!(body(served).await, REPORT);
    let listed = f
        .gateway
        .list(
            &grantee,
            "p2p",
            &ListQuery::default(),
            Some("customs clearance"),
        )
        .await
        .unwrap();
    assert_eq!(listed.objects.len(), 1);
    // Each record carries what was declared.
    let records = f.audit().await;
    let declared: Vec<(Option<&str>, &str)> = records
        .iter()
        .map(|r| (r.decision.purpose.as_deref(), r.decision.decision.as_str()))
        .collect();
    assert_eq!(
        declared,
        [
            (None, "deny"),
            (None, "allow"),
            (Some("marketing"), "deny"),
            (Some("marketing"), "allow"),
            (Some("customs clearance"), "allow"),
            (Some("customs clearance"), "allow"),
        ]
    );
}
