//! Goal: a member writes and deletes in org-a's namespace only under a
//! grant that gives it `write` (or `delete`) on the path; the body must
//! match the digest its signature covers; nothing refused is stored; each
//! write is one audit record naming the writer, the bytes and the digest,
//! over signed HTTP and over libp2p (in chunks, authorized once). Method:
//! the signed door's router called with `oneshot`, and the libp2p answers
//! called directly, on the real pipeline and store.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode};
use quorate_api::gateway::{Settings, router};
use quorate_api::objects::Precondition;
use quorate_api::signature::{
    AUDIENCE_HEADER, RequestParts, content_digest_sha256, sha256_field, sign_request,
};
use quorate_did::Keypair;
use sha2::Digest as _;
use tower::ServiceExt as _;

use super::*;
use crate::net::protocol::{Request as PeerRequest, Response as PeerResponse};

const AUTHORITY: &str = "org-a.example:8080";
const BODY: &[u8] = b"station,reading\nnorth,12.5\n";

fn writes() -> Terms<'static> {
    Terms {
        resources: &["inbox/*"],
        actions: &[Action::Read, Action::Write],
        ..Terms::default()
    }
}

/// A signed `method` of `target` by `key` for org-a, with `headers`
/// (names lowercase), covering them besides `@method`, `@target-uri` and
/// the audience.
fn signed(
    key: &Keypair,
    method: &str,
    target: &str,
    audience: &Did,
    headers: &[(&str, String)],
    body: Vec<u8>,
    nonce: &str,
) -> Request<HttpBody> {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let uri = format!("https://{AUTHORITY}{target}");
    let audience = audience.to_string();
    let mut fields: Vec<(&str, &str)> = vec![(AUDIENCE_HEADER, &audience)];
    fields.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
    let parts = RequestParts {
        method,
        target_uri: &uri,
        headers: &fields,
    };
    let mut covered = vec!["@method", "@target-uri", AUDIENCE_HEADER];
    covered.extend(headers.iter().map(|(n, _)| *n));
    let signature = sign_request(&parts, &covered, key, created, nonce).unwrap();
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .header("host", AUTHORITY)
        .header(AUDIENCE_HEADER, audience.as_str())
        .header("signature-input", signature.signature_input)
        .header("signature", signature.signature);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    request.body(HttpBody::from(body)).unwrap()
}

/// A signed PUT of `body` with its digest covered.
fn put(key: &Keypair, target: &str, audience: &Did, body: &[u8], nonce: &str) -> Request<HttpBody> {
    let digest = content_digest_sha256(body);
    signed(
        key,
        "PUT",
        target,
        audience,
        &[("content-digest", digest)],
        body.to_vec(),
        nonce,
    )
}

async fn answer(door: &Router, request: Request<HttpBody>) -> (StatusCode, String, Vec<u8>) {
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

fn stored(f: &Fixture, at: &str) -> Option<Vec<u8>> {
    let (info, mut file) = f.gateway.objects().open_at(&path(at), 0).unwrap()?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, info.size);
    Some(bytes)
}

#[tokio::test]
async fn a_member_writes_under_a_write_grant_and_its_record_names_writer_bytes_and_digest() {
    let mut f = Fixture::new();
    let grant = f.grant(GRANTEE, writes());
    let (owner, key) = (f.did(OWNER), f.consortium.keys[GRANTEE].clone());
    let door = router(f.gateway.clone(), Settings::new(60, AUTHORITY, owner));
    let target = "/gateway/objects/inbox/readings.csv";

    let (status, _, body) = answer(&door, put(&key, target, &owner, BODY, "w-1")).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let written: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(written["digest"], content_digest_sha256(BODY));
    assert_eq!(written["replaced"], false);
    assert_eq!(written["object"]["size"], BODY.len());
    assert_eq!(stored(&f, "inbox/readings.csv").unwrap(), BODY);

    // Again: a replacement, 200.
    let other = b"station,reading\nsouth,3\n";
    let (status, _, _) = answer(&door, put(&key, target, &owner, other, "w-2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored(&f, "inbox/readings.csv").unwrap(), other);

    let records = f.audit().await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let first = &records[0].decision;
    assert_eq!(first.action, "write");
    assert_eq!(first.decision, "allow");
    assert_eq!(
        first.caller.as_deref(),
        Some(f.did(GRANTEE).to_string().as_str())
    );
    assert_eq!(first.grant.as_deref(), Some(grant.to_string().as_str()));
    assert_eq!(first.bytes, BODY.len() as u64);
    assert_eq!(
        first.digest.as_deref(),
        Some(content_digest_sha256(BODY).as_str())
    );
}

#[tokio::test]
async fn a_write_without_a_write_grant_or_a_covered_matching_digest_stores_nothing() {
    let mut f = Fixture::new();
    // Read only on reports/*, write on inbox/*.
    f.grant(GRANTEE, Terms::default());
    f.grant(GRANTEE, writes());
    let (owner, key) = (f.did(OWNER), f.consortium.keys[GRANTEE].clone());
    let stranger = f.consortium.keys[STRANGER_TO_GRANTS].clone();
    let door = router(f.gateway.clone(), Settings::new(60, AUTHORITY, owner));

    // A read grant is no write grant; a member without grants has none.
    let refused = answer(
        &door,
        put(&key, "/gateway/objects/reports/q3.csv", &owner, BODY, "a"),
    )
    .await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::FORBIDDEN, "action-not-granted")
    );
    let refused = answer(
        &door,
        put(&stranger, "/gateway/objects/inbox/x.csv", &owner, BODY, "b"),
    )
    .await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::FORBIDDEN, "no-grant")
    );

    // The digest must be covered by the signature...
    let digest = content_digest_sha256(BODY);
    let uncovered = {
        let mut request = signed(
            &key,
            "PUT",
            "/gateway/objects/inbox/x.csv",
            &owner,
            &[],
            BODY.to_vec(),
            "c",
        );
        request
            .headers_mut()
            .insert("content-digest", digest.parse().unwrap());
        request
    };
    let refused = answer(&door, uncovered).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::UNAUTHORIZED, "bad-signature")
    );
    // ... and be the body's.
    let lying = signed(
        &key,
        "PUT",
        "/gateway/objects/inbox/x.csv",
        &owner,
        &[("content-digest", digest.clone())],
        b"not what was signed".to_vec(),
        "d",
    );
    let refused = answer(&door, lying).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::BAD_REQUEST, "digest-mismatch")
    );
    // A digest of no algorithm we know.
    let unknown = signed(
        &key,
        "PUT",
        "/gateway/objects/inbox/x.csv",
        &owner,
        &[("content-digest", "md5=:AAAA:".to_owned())],
        BODY.to_vec(),
        "e",
    );
    let refused = answer(&door, unknown).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::BAD_REQUEST, "bad-digest")
    );

    assert!(stored(&f, "inbox/x.csv").is_none());
    assert!(stored(&f, "reports/q3.csv").is_none());
    let reasons = f.reasons().await;
    assert_eq!(
        reasons,
        [
            Some("action-not-granted".to_owned()),
            Some("no-grant".to_owned()),
            Some("bad-signature".to_owned()),
            Some("digest-mismatch".to_owned()),
            Some("bad-digest".to_owned()),
        ]
    );
    // The mismatch is recorded with the bytes that arrived.
    let records = f.audit().await;
    assert_eq!(
        records[3].decision.bytes,
        b"not what was signed".len() as u64
    );
    // No upload file is left behind.
    let uploads = f._dir.path().join("objects/uploads");
    assert_eq!(std::fs::read_dir(uploads).unwrap().count(), 0);
}

#[tokio::test]
async fn a_query_or_a_post_to_a_stored_object_is_refused_and_audited() {
    let mut f = Fixture::new();
    f.grant(GRANTEE, writes());
    let (owner, key) = (f.did(OWNER), f.consortium.keys[GRANTEE].clone());
    let door = router(f.gateway.clone(), Settings::new(60, AUTHORITY, owner));

    // A query string is for upstream routes: not dropped, refused.
    let queried = put(
        &key,
        "/gateway/objects/inbox/a.csv?version=2",
        &owner,
        BODY,
        "q",
    );
    let refused = answer(&door, queried).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::BAD_REQUEST, "bad-request")
    );
    // POST is for upstream routes too; a stored object takes PUT.
    let digest = content_digest_sha256(BODY);
    let posted = signed(
        &key,
        "POST",
        "/gateway/objects/inbox/a.csv",
        &owner,
        &[("content-digest", digest)],
        BODY.to_vec(),
        "p",
    );
    let refused = answer(&door, posted).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::CONFLICT, "not-writable")
    );
    assert!(stored(&f, "inbox/a.csv").is_none());
    let decisions = f.decisions().await;
    assert_eq!(decisions, ["deny", "deny"]);
}

#[tokio::test]
async fn writes_over_the_limit_and_failed_preconditions_are_refused() {
    let config = GatewaySection {
        write_bytes_max: 16,
        ..GatewaySection::default()
    };
    let mut f = Fixture::configured(config);
    f.grant(GRANTEE, writes());
    let (owner, key) = (f.did(OWNER), f.consortium.keys[GRANTEE].clone());
    let door = router(f.gateway.clone(), Settings::new(60, AUTHORITY, owner));
    let target = "/gateway/objects/inbox/big.bin";

    // Declared too large: refused before the body is read.
    let refused = answer(&door, put(&key, target, &owner, &[7u8; 17], "a")).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
    );
    // Streamed (no length) past the limit: refused as it arrives.
    let mut streamed = put(&key, target, &owner, &[7u8; 40], "b");
    streamed.headers_mut().remove("content-length");
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = (0..4).map(|_| Ok(vec![7u8; 10])).collect();
    *streamed.body_mut() = HttpBody::from_stream(futures::stream::iter(pieces));
    let refused = answer(&door, streamed).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
    );
    assert!(stored(&f, "inbox/big.bin").is_none());

    // If-None-Match: * creates only.
    let small = b"0123456789";
    let create_only = |nonce: &str, body: &[u8]| {
        signed(
            &key,
            "PUT",
            target,
            &owner,
            &[
                ("content-digest", content_digest_sha256(body)),
                ("if-none-match", "*".to_owned()),
            ],
            body.to_vec(),
            nonce,
        )
    };
    assert_eq!(
        answer(&door, create_only("c", small)).await.0,
        StatusCode::CREATED
    );
    let refused = answer(&door, create_only("d", b"other")).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::PRECONDITION_FAILED, "changed")
    );
    assert_eq!(stored(&f, "inbox/big.bin").unwrap(), small);
    // If-Match with the current ETag replaces; with another, refused.
    let etag = blake3::hash(small).to_hex().to_string();
    let if_match = |nonce: &str, tag: &str| {
        signed(
            &key,
            "PUT",
            target,
            &owner,
            &[
                ("content-digest", content_digest_sha256(b"new")),
                ("if-match", format!("\"{tag}\"")),
            ],
            b"new".to_vec(),
            nonce,
        )
    };
    let refused = answer(&door, if_match("e", "0000")).await;
    assert_eq!(refused.1, "changed");
    assert_eq!(answer(&door, if_match("f", &etag)).await.0, StatusCode::OK);
    assert_eq!(stored(&f, "inbox/big.bin").unwrap(), b"new");
}

#[tokio::test]
async fn a_delete_needs_a_delete_grant() {
    let mut f = Fixture::new();
    f.grant(GRANTEE, writes());
    f.grant(
        STRANGER_TO_GRANTS,
        Terms {
            resources: &["inbox/*"],
            actions: &[Action::Delete],
            ..Terms::default()
        },
    );
    f.put("inbox/old.csv", BODY);
    let owner = f.did(OWNER);
    let (writer, deleter) = (
        f.consortium.keys[GRANTEE].clone(),
        f.consortium.keys[STRANGER_TO_GRANTS].clone(),
    );
    let door = router(f.gateway.clone(), Settings::new(60, AUTHORITY, owner));
    let target = "/gateway/objects/inbox/old.csv";
    let delete =
        |key: &Keypair, nonce: &str| signed(key, "DELETE", target, &owner, &[], Vec::new(), nonce);

    let refused = answer(&door, delete(&writer, "a")).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::FORBIDDEN, "action-not-granted")
    );
    assert!(stored(&f, "inbox/old.csv").is_some());
    assert_eq!(
        answer(&door, delete(&deleter, "b")).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(stored(&f, "inbox/old.csv").is_none());
    let refused = answer(&door, delete(&deleter, "c")).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::NOT_FOUND, "not-found")
    );
    let actions: Vec<_> = f
        .audit()
        .await
        .into_iter()
        .map(|r| (r.decision.action, r.decision.decision))
        .collect();
    assert_eq!(
        actions,
        [
            ("delete".to_owned(), "deny".to_owned()),
            ("delete".to_owned(), "allow".to_owned()),
            ("delete".to_owned(), "deny".to_owned()),
        ]
    );
}

fn first_chunk(at: &str, data: &[u8], digest: Option<&[u8]>) -> PeerRequest {
    PeerRequest::Put {
        path: at.to_owned(),
        content_type: "text/csv".to_owned(),
        size: None,
        precondition: Precondition::Any,
        purpose: None,
        data: serde_bytes::ByteBuf::from(data.to_vec()),
        digest: digest.map(|d| serde_bytes::ByteBuf::from(d.to_vec())),
    }
}

fn next_chunk(
    ticket: &serde_bytes::ByteBuf,
    at: u64,
    data: &[u8],
    digest: Option<&[u8]>,
) -> PeerRequest {
    PeerRequest::PutChunk {
        ticket: ticket.clone(),
        at,
        data: serde_bytes::ByteBuf::from(data.to_vec()),
        digest: digest.map(|d| serde_bytes::ByteBuf::from(d.to_vec())),
    }
}

fn denial(response: PeerResponse) -> String {
    match response {
        PeerResponse::Denied(denial) => denial.code,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn an_upload_over_libp2p_is_one_authorization_and_one_record_however_many_chunks() {
    let mut f = Fixture::new();
    let grant = f.grant(GRANTEE, writes());
    let (writer, other) = (f.did(GRANTEE), f.did(STRANGER_TO_GRANTS));
    let body: Vec<u8> = (0..3000u32).flat_map(|i| i.to_le_bytes()).collect();
    let sha256 = sha2::Sha256::digest(&body);
    let (a, rest) = body.split_at(5000);
    let (b, c) = rest.split_at(5000);

    let PeerResponse::Uploading { ticket, next } = f
        .gateway
        .answer_peer(&writer, first_chunk("inbox/series.bin", a, None))
        .await
    else {
        panic!("no upload opened")
    };
    assert_eq!(next, 5000);
    // The ticket is the writer's alone; chunks go in order.
    let stolen = f
        .gateway
        .answer_peer(&other, next_chunk(&ticket, 5000, b, None))
        .await;
    assert_eq!(denial(stolen), "unknown-upload");
    let skipped = f
        .gateway
        .answer_peer(&writer, next_chunk(&ticket, 7000, b, None))
        .await;
    assert_eq!(denial(skipped), "bad-chunk");
    let PeerResponse::Uploading { next, .. } = f
        .gateway
        .answer_peer(&writer, next_chunk(&ticket, 5000, b, None))
        .await
    else {
        panic!("the upload did not go on")
    };
    assert_eq!(next, 10_000);
    assert!(
        stored(&f, "inbox/series.bin").is_none(),
        "stored before its end"
    );
    let PeerResponse::Written(written) = f
        .gateway
        .answer_peer(&writer, next_chunk(&ticket, 10_000, c, Some(&sha256)))
        .await
    else {
        panic!("not written")
    };
    assert_eq!(written.digest, sha256_field(&sha256.into()));
    assert_eq!(stored(&f, "inbox/series.bin").unwrap(), body);
    // The ticket is spent.
    let again = f
        .gateway
        .answer_peer(&writer, next_chunk(&ticket, 12_000, c, None))
        .await;
    assert_eq!(denial(again), "unknown-upload");

    let records = f.audit().await;
    let record = only_record(&records, "inbox/series.bin");
    assert_eq!(record.decision.transport, "p2p");
    assert_eq!(record.decision.decision, "allow");
    assert_eq!(record.decision.bytes, body.len() as u64);
    assert_eq!(
        record.decision.grant.as_deref(),
        Some(grant.to_string().as_str())
    );
    assert_eq!(
        record.decision.digest.as_deref(),
        Some(written.digest.as_str())
    );
}

#[tokio::test]
async fn an_upload_revoked_midway_or_with_the_wrong_digest_stores_nothing() {
    let mut f = Fixture::new();
    let grant = f.grant(GRANTEE, writes());
    let writer = f.did(GRANTEE);

    // The wrong digest, in one chunk.
    let wrong = f
        .gateway
        .answer_peer(&writer, first_chunk("inbox/a.csv", BODY, Some(&[0u8; 32])))
        .await;
    assert_eq!(denial(wrong), "digest-mismatch");
    // A digest that is no sha-256.
    let short = f
        .gateway
        .answer_peer(&writer, first_chunk("inbox/a.csv", BODY, Some(&[0u8; 5])))
        .await;
    assert_eq!(denial(short), "bad-request");
    assert!(stored(&f, "inbox/a.csv").is_none());

    // Revoked between two chunks.
    let PeerResponse::Uploading { ticket, .. } = f
        .gateway
        .answer_peer(&writer, first_chunk("inbox/b.csv", BODY, None))
        .await
    else {
        panic!("no upload opened")
    };
    f.revoke(grant);
    let sha256 = sha2::Sha256::digest([BODY, BODY].concat());
    let revoked = f
        .gateway
        .answer_peer(
            &writer,
            next_chunk(&ticket, BODY.len() as u64, BODY, Some(&sha256)),
        )
        .await;
    assert_eq!(denial(revoked), "revoked-grant");
    assert!(stored(&f, "inbox/b.csv").is_none());
    let uploads = f._dir.path().join("objects/uploads");
    assert_eq!(std::fs::read_dir(uploads).unwrap().count(), 0);
    let reasons = f.reasons().await;
    assert_eq!(
        reasons,
        [
            Some("digest-mismatch".to_owned()),
            Some("bad-request".to_owned()),
            Some("revoked-grant".to_owned()),
        ]
    );
}
