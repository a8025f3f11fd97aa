//! Goal: over libp2p a read is one request however many chunks it takes
//! (one authorization, one rate-limit token, one audit record with the
//! full byte count), its chunks are bound to the caller, the offset and
//! the content, and refusals cross the wire as stable codes that come
//! back as the same problem. Method: the data protocol's answers, called
//! with decoded requests as the network loop hands them over.

use quorate_api::objects::ByteRange;
use quorate_api::problem::Problem;
use quorate_api::refusal::{Code, Refusal};
use quorate_contracts::{DenyReason, GrantId};
use quorate_did::Did;

use super::*;
use crate::net::protocol::{self, Denial, OBJECT_CHUNK_BYTES, Request, Response};

const BIG: &str = "reports/big.bin";

/// An object of two whole chunks and a bit: three chunks.
fn big_object() -> Vec<u8> {
    (0..2 * OBJECT_CHUNK_BYTES + 1000)
        .map(|i| (i % 251) as u8)
        .collect()
}

fn ask_object(at: &str) -> Request {
    Request::Object {
        purpose: None,
        query: None,
        path: at.to_owned(),
        range: None,
        if_match: None,
    }
}

/// The first answer of a download: its data, its end and its ticket.
fn opened(response: Response) -> (Vec<u8>, u64, serde_bytes::ByteBuf) {
    match response {
        Response::Download {
            data, end, ticket, ..
        } => (data.into_vec(), end, ticket),
        other => panic!("not a download: {other:?}"),
    }
}

/// The refusal a `Denied` answer carries, as the asking node reads it.
fn denied(response: Response) -> Denial {
    match response {
        Response::Denied(denial) => denial,
        other => panic!("not denied: {other:?}"),
    }
}

/// Fetches the rest of a download from `at` to `end`, chunk by chunk.
async fn rest(
    f: &Fixture,
    caller: &Did,
    ticket: &serde_bytes::ByteBuf,
    mut at: u64,
    end: u64,
) -> (Vec<u8>, usize) {
    let (mut data, mut chunks) = (Vec::new(), 0);
    while at < end {
        let request = Request::Chunk {
            ticket: ticket.clone(),
            at,
        };
        match f.gateway.answer_peer(caller, request).await {
            Response::Chunk { start, data: piece } => {
                assert_eq!(start, at);
                at += piece.len() as u64;
                data.extend_from_slice(&piece);
                chunks += 1;
            }
            other => panic!("not a chunk: {other:?}"),
        }
    }
    (data, chunks)
}

#[tokio::test]
async fn a_download_is_one_authorization_one_token_and_one_record_however_many_chunks() {
    let mut f = Fixture::new();
    // One request a minute: a second authorization would be refused.
    let grant = f.grant(
        GRANTEE,
        Terms {
            rate: Some((1, 60)),
            ..Terms::default()
        },
    );
    let object = big_object();
    f.put(BIG, &object);
    let grantee = f.did(GRANTEE);

    let (mut got, end, ticket) = opened(f.gateway.answer_peer(&grantee, ask_object(BIG)).await);
    assert_eq!(got.len() as u64, OBJECT_CHUNK_BYTES);
    assert_eq!(end, object.len() as u64);
    let (tail, chunks) = rest(&f, &grantee, &ticket, got.len() as u64, end).await;
    got.extend(tail);
    assert_eq!(chunks, 2);
    assert!(got == object, "the download differs from the object");

    // The token was the first chunk's: a new request is over the rate.
    let again = denied(f.gateway.answer_peer(&grantee, ask_object(BIG)).await);
    assert_eq!(again.code, "rate-limited");
    assert!(again.retry_after_secs.is_some_and(|s| s >= 1));

    let records = f.audit().await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let download = &records[0].decision;
    assert_eq!(
        (
            download.transport.as_str(),
            download.decision.as_str(),
            download.bytes,
            download.grant.clone(),
            download.reason.clone()
        ),
        (
            "p2p",
            "allow",
            object.len() as u64,
            Some(grant.to_string()),
            None
        )
    );
    assert_eq!(records[1].decision.reason.as_deref(), Some("rate-limited"));
    // The download's ticket is spent.
    let after = Request::Chunk { ticket, at: end };
    assert_eq!(
        denied(f.gateway.answer_peer(&grantee, after).await).code,
        "unknown-download"
    );
}

#[tokio::test]
async fn a_revocation_stops_a_download_between_chunks_and_its_record_says_how_far_it_got() {
    let mut f = Fixture::new();
    let grant = f.grant(GRANTEE, Terms::default());
    f.put(BIG, &big_object());
    let grantee = f.did(GRANTEE);
    let (first, _, ticket) = opened(f.gateway.answer_peer(&grantee, ask_object(BIG)).await);
    f.revoke(grant);
    let next = Request::Chunk {
        ticket,
        at: first.len() as u64,
    };
    let refused = denied(f.gateway.answer_peer(&grantee, next).await);
    assert_eq!(refused.code, "revoked-grant");
    let records = f.audit().await;
    let record = only_record(&records, BIG);
    assert_eq!(
        (
            record.decision.decision.as_str(),
            record.decision.bytes,
            record.decision.reason.as_deref()
        ),
        ("allow", OBJECT_CHUNK_BYTES, Some("revoked-grant"))
    );
}

#[tokio::test]
async fn a_ticket_is_bound_to_its_caller_its_offset_and_its_content() {
    let mut f = Fixture::new();
    f.grant(GRANTEE, Terms::default());
    f.grant(STRANGER_TO_GRANTS, Terms::default());
    let object = big_object();
    f.put(BIG, &object);
    let grantee = f.did(GRANTEE);
    let (first, _, ticket) = opened(f.gateway.answer_peer(&grantee, ask_object(BIG)).await);
    let at = first.len() as u64;
    let chunk = |ticket: &serde_bytes::ByteBuf, at: u64| Request::Chunk {
        ticket: ticket.clone(),
        at,
    };

    // Another member, even one with a grant, cannot use the ticket.
    let other = f.did(STRANGER_TO_GRANTS);
    let code = denied(f.gateway.answer_peer(&other, chunk(&ticket, at)).await).code;
    assert_eq!(code, "unknown-download");
    // Nor can anyone use a made-up one, of any length.
    for made_up in [vec![0u8; 16], vec![1u8; 3]] {
        let made_up = serde_bytes::ByteBuf::from(made_up);
        let code = denied(f.gateway.answer_peer(&grantee, chunk(&made_up, at)).await).code;
        assert_eq!(code, "unknown-download");
    }
    // Chunks come in order.
    let skipped = denied(
        f.gateway
            .answer_peer(&grantee, chunk(&ticket, at + 1))
            .await,
    );
    assert_eq!(
        (skipped.code.as_str(), skipped.detail.as_str()),
        (
            "bad-chunk",
            format!("the next chunk starts at {at}, not {}", at + 1).as_str()
        )
    );
    // The object changes: the download ends rather than mix contents.
    let mut changed = object.clone();
    changed[0] ^= 1;
    f.put(BIG, &changed);
    let refused = denied(f.gateway.answer_peer(&grantee, chunk(&ticket, at)).await);
    assert_eq!(refused.code, "changed");
    let records = f.audit().await;
    let record = only_record(&records, BIG);
    assert_eq!(
        (record.decision.bytes, record.decision.reason.as_deref()),
        (OBJECT_CHUNK_BYTES, Some("changed"))
    );
}

#[tokio::test]
async fn small_reads_ranges_and_bad_paths_over_libp2p() {
    let mut f = Fixture::new();
    f.grant(GRANTEE, Terms::default());
    f.put("reports/q3.csv", b"quarter,revenue\n");
    let grantee = f.did(GRANTEE);
    let ranged = Request::Object {
        purpose: None,
        query: None,
        path: "reports/q3.csv".into(),
        range: Some(ByteRange::Suffix(8)),
        if_match: None,
    };
    match f.gateway.answer_peer(&grantee, ranged).await {
        Response::Object {
            start, end, data, ..
        } => assert_eq!((start, end, data.as_slice()), (8, 16, &b"revenue\n"[..])),
        other => panic!("not an object: {other:?}"),
    }
    let bad = denied(
        f.gateway
            .answer_peer(&grantee, ask_object("../etc/passwd"))
            .await,
    );
    assert_eq!(bad.code, "bad-path");
    let none = denied(
        f.gateway
            .answer_peer(&grantee, ask_object("reports/none.csv"))
            .await,
    );
    assert_eq!(none.code, "not-found");
    let outsider = f.did(STRANGER_TO_GRANTS);
    let refused = denied(
        f.gateway
            .answer_peer(&outsider, ask_object("reports/q3.csv"))
            .await,
    );
    assert_eq!(refused.code, "no-grant");
    assert!(matches!(
        f.gateway.answer_peer(&grantee, Request::Status).await,
        Response::Refused(_)
    ));
    let reasons = f.reasons().await;
    assert_eq!(
        reasons,
        [
            None,
            Some("bad-path".into()),
            Some("not-found".into()),
            Some("no-grant".into())
        ]
    );
}

#[test]
fn refusals_cross_the_wire_as_codes_and_come_back_as_the_same_problem() {
    let grant = GrantId([9; 32]);
    let refusals = [
        Refusal::Denied(DenyReason::Revoked { grant }),
        Refusal::Denied(DenyReason::NotAMember),
        Refusal::RateLimited {
            retry_after_secs: 7,
        },
        Refusal::StaleLedger,
        Refusal::NotFound(path("reports/q4.csv")),
        Refusal::RangeNotSatisfiable { size: 3 },
        Refusal::UnknownDownload,
        Refusal::BadChunk {
            expected: 4,
            asked: 5,
        },
        Refusal::TooManyDownloads,
        Refusal::Changed,
        Refusal::Upstream(quorate_api::refusal::UpstreamFailure::TooLarge(9)),
        Refusal::Internal,
    ];
    for refusal in refusals {
        let bytes = protocol::encode(&Response::Denied(Denial::from(&refusal))).unwrap();
        let Response::Denied(denial) = protocol::decode::<Response>(&bytes).unwrap() else {
            panic!("not a denial");
        };
        let back = denial.into_refusal();
        assert_eq!(back.code(), refusal.code());
        let (here, there) = (Problem::from(&refusal), Problem::from(&back));
        assert_eq!(
            (there.status, there.code, there.retry_after_secs),
            (here.status, here.code, here.retry_after_secs)
        );
        assert_eq!(there.detail, format!("the peer refused: {}", here.detail));
    }
    // A code of no vocabulary of ours is the peer's refusal, nothing more.
    let odd = Denial {
        code: "urn:evil:<script>".into(),
        detail: "no".into(),
        retry_after_secs: None,
    };
    let problem = Problem::from(odd.into_refusal());
    assert_eq!(
        (problem.status.as_u16(), problem.code),
        (502, Code::PeerRefused.as_str())
    );
}
