//! RFC 9530 `Content-Digest`: the body's hash, covered by the signature.

use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha512};

use super::sfv;

/// Why a body does not match its `Content-Digest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The header is not a structured-field dictionary of byte sequences.
    #[error("Content-Digest is malformed: {0}")]
    Malformed(String),
    /// No algorithm we support (`sha-256`, `sha-512`).
    #[error("Content-Digest has no sha-256 or sha-512 value")]
    NoSupportedAlgorithm,
    /// A digest does not match the body.
    #[error("the body does not match its {0} Content-Digest")]
    Mismatch(&'static str),
}

/// Checks `body` against every supported digest in `header`; at least one
/// must be present and all present must match.
pub fn verify_content_digest(header: &str, body: &[u8]) -> Result<(), DigestError> {
    let entries =
        sfv::parse_dictionary(header).map_err(|e| DigestError::Malformed(e.to_string()))?;
    let mut checked = false;
    for entry in entries {
        let sfv::Member::Item(sfv::Item::Bytes(expected)) = &entry.value else {
            return Err(DigestError::Malformed(format!(
                "{} is not a byte sequence",
                entry.key
            )));
        };
        let (name, actual): (&'static str, Vec<u8>) = match entry.key.as_str() {
            "sha-256" => ("sha-256", Sha256::digest(body).to_vec()),
            "sha-512" => ("sha-512", Sha512::digest(body).to_vec()),
            _ => continue,
        };
        if *expected != actual {
            return Err(DigestError::Mismatch(name));
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(DigestError::NoSupportedAlgorithm)
    }
}

/// The `Content-Digest` header value of `body` with sha-256.
pub fn content_digest_sha256(body: &[u8]) -> String {
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
    )
}

/// The digests a `Content-Digest` header promises, to be checked against
/// a body as it streams ([`StreamingDigest`]): every supported algorithm
/// it names (`sha-256`, `sha-512`); others are ignored, as RFC 9530 asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDigest {
    sha256: Option<[u8; 32]>,
    sha512: Option<[u8; 64]>,
}

impl ExpectedDigest {
    /// The digests of a `Content-Digest` value; at least one supported.
    pub fn parse(header: &str) -> Result<Self, DigestError> {
        let entries =
            sfv::parse_dictionary(header).map_err(|e| DigestError::Malformed(e.to_string()))?;
        let mut expected = Self {
            sha256: None,
            sha512: None,
        };
        for entry in entries {
            let sfv::Member::Item(sfv::Item::Bytes(bytes)) = &entry.value else {
                return Err(DigestError::Malformed(format!(
                    "{} is not a byte sequence",
                    entry.key
                )));
            };
            let wrong_length =
                || DigestError::Malformed(format!("{} has the wrong length", entry.key));
            match entry.key.as_str() {
                "sha-256" => {
                    expected.sha256 = Some(bytes.as_slice().try_into().map_err(|_| wrong_length())?)
                }
                "sha-512" => {
                    expected.sha512 = Some(bytes.as_slice().try_into().map_err(|_| wrong_length())?)
                }
                _ => {}
            }
        }
        if expected.sha256.is_none() && expected.sha512.is_none() {
            return Err(DigestError::NoSupportedAlgorithm);
        }
        Ok(expected)
    }

    /// Nothing promised: [`StreamingDigest::finish`] then only computes
    /// the sha-256.
    pub fn none() -> Self {
        Self {
            sha256: None,
            sha512: None,
        }
    }

    /// A sha-256 digest alone (what a libp2p upload carries).
    pub fn sha256(digest: [u8; 32]) -> Self {
        Self {
            sha256: Some(digest),
            sha512: None,
        }
    }
}

/// A body's digests, computed as it streams: sha-256 always (the audit
/// record names it), sha-512 when the expected digest has one.
#[derive(Debug, Clone)]
pub struct StreamingDigest {
    sha256: Sha256,
    sha512: Option<Sha512>,
}

impl StreamingDigest {
    /// Ready for a body that should match `expected` (sha-256 alone when
    /// nothing is expected yet).
    pub fn new(expected: Option<&ExpectedDigest>) -> Self {
        Self {
            sha256: Sha256::new(),
            sha512: expected
                .filter(|e| e.sha512.is_some())
                .map(|_| Sha512::new()),
        }
    }

    /// Hashes the next piece of the body.
    pub fn update(&mut self, piece: &[u8]) {
        self.sha256.update(piece);
        if let Some(sha512) = &mut self.sha512 {
            sha512.update(piece);
        }
    }

    /// The body's sha-256, once checked against every digest `expected`
    /// names.
    pub fn finish(self, expected: &ExpectedDigest) -> Result<[u8; 32], DigestError> {
        let sha256: [u8; 32] = self.sha256.finalize().into();
        if expected.sha256.is_some_and(|e| e != sha256) {
            return Err(DigestError::Mismatch("sha-256"));
        }
        if let Some(e) = expected.sha512 {
            let actual = self.sha512.map(|h| h.finalize().to_vec());
            if actual.as_deref() != Some(e.as_slice()) {
                return Err(DigestError::Mismatch("sha-512"));
            }
        }
        Ok(sha256)
    }
}

/// The `Content-Digest` form of a sha-256 digest: `sha-256=:<base64>:`.
pub fn sha256_field(digest: &[u8; 32]) -> String {
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod streaming_tests {
    use super::*;

    #[test]
    fn a_streamed_body_matches_its_digest_and_a_changed_one_does_not() {
        let body = b"hello, members";
        let header = format!(
            "{}, sha-512=:{}:",
            content_digest_sha256(body),
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(body))
        );
        let expected = ExpectedDigest::parse(&header).unwrap();
        let mut digest = StreamingDigest::new(Some(&expected));
        digest.update(&body[..5]);
        digest.update(&body[5..]);
        let sha256 = digest.finish(&expected).unwrap();
        assert_eq!(sha256_field(&sha256), content_digest_sha256(body));

        let mut changed = StreamingDigest::new(Some(&expected));
        changed.update(b"hello, member!");
        assert_eq!(
            changed.finish(&expected),
            Err(DigestError::Mismatch("sha-256"))
        );
        // sha-512 alone is checked too.
        let only512 = ExpectedDigest::parse(header.split(", ").nth(1).unwrap()).unwrap();
        let mut other = StreamingDigest::new(Some(&only512));
        other.update(b"other");
        assert_eq!(
            other.finish(&only512),
            Err(DigestError::Mismatch("sha-512"))
        );
    }

    #[test]
    fn a_digest_header_without_a_usable_value_is_refused() {
        assert_eq!(
            ExpectedDigest::parse("md5=:AAAA:"),
            Err(DigestError::NoSupportedAlgorithm)
        );
        assert!(matches!(
            ExpectedDigest::parse("sha-256=:AAAA:"),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            ExpectedDigest::parse("sha-256=abc"),
            Err(DigestError::Malformed(_))
        ));
    }
}
