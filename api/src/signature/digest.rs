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
