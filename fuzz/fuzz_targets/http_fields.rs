//! The other request header fields the gateway parses from outside:
//! `Content-Digest` (RFC 9530, `verify_content_digest`, through the
//! structured-field parser) and `Range` (`ByteRange::parse`). Input: the
//! header value, a newline, then the body.
//!
//! Properties: a digest header that accepts a body refuses any other body
//! (here: the body with one more byte); the digest we write for a body
//! verifies it; a parsed range resolves, for any object size, to a
//! non-empty span inside the object or to nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_api::objects::ByteRange;
use quorate_api::signature::{DigestError, content_digest_sha256, verify_content_digest};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();

    if verify_content_digest(&header, body).is_ok() {
        let mut other = body.to_vec();
        other.push(0);
        assert!(
            matches!(
                verify_content_digest(&header, &other),
                Err(DigestError::Mismatch(_))
            ),
            "one Content-Digest accepted two bodies"
        );
    }
    verify_content_digest(&content_digest_sha256(body), body)
        .expect("our own digest of a body verifies it");

    if let Ok(Some(range)) = ByteRange::parse(&header) {
        for size in [0, 1, body.len() as u64, u64::MAX / 2, u64::MAX] {
            if let Some((start, end)) = range.resolve(size) {
                assert!(
                    start < end && end <= size,
                    "{range:?} of {size}: {start}..{end}"
                );
            }
        }
    }
});
