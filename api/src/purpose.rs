//! The `Quorate-Purpose` header's value: a grant's purpose is UTF-8 text
//! (at most 256 bytes), a header value visible ASCII, so the purpose is
//! sent percent-encoded (RFC 3986 §2.1: `%XX` for every byte outside
//! visible ASCII, and for `%` itself; a space may stay a space).

use quorate_contracts::model::PURPOSE_BYTES_MAX;

/// The header's name (the same on the gateway's signed requests and on the
/// local API's fetches from peers).
pub const PURPOSE_HEADER: &str = "quorate-purpose";

/// Why a header value is not a purpose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PurposeError {
    /// Empty, or longer than a grant's purpose may be.
    #[error("a purpose is 1 to {PURPOSE_BYTES_MAX} bytes")]
    Length,
    /// A `%` not followed by two hex digits, or bytes that are not UTF-8.
    #[error(
        "Quorate-Purpose is percent-encoded UTF-8 (%XX for bytes outside visible ASCII and for %)"
    )]
    Encoding,
}

/// The purpose a header value declares.
pub fn decode(value: &str) -> Result<String, PurposeError> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.trim().as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2).ok_or(PurposeError::Encoding)?;
            let text = std::str::from_utf8(hex).map_err(|_| PurposeError::Encoding)?;
            bytes.push(u8::from_str_radix(text, 16).map_err(|_| PurposeError::Encoding)?);
            rest = &tail[2..];
        } else if b == b' ' || b.is_ascii_graphic() {
            bytes.push(b);
            rest = tail;
        } else {
            return Err(PurposeError::Encoding);
        }
    }
    let purpose = String::from_utf8(bytes).map_err(|_| PurposeError::Encoding)?;
    if purpose.is_empty() || purpose.len() > PURPOSE_BYTES_MAX {
        return Err(PurposeError::Length);
    }
    Ok(purpose)
}

/// A purpose as a header value.
pub fn encode(purpose: &str) -> String {
    let mut out = String::with_capacity(purpose.len());
    for b in purpose.bytes() {
        if (b == b' ' || b.is_ascii_graphic()) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_round_trip_through_a_header_value() {
        for purpose in [
            "customs clearance",
            "dédouanement",
            "100% audit",
            "a\tb",
            "航运",
        ] {
            let value = encode(purpose);
            assert!(
                value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                "{value}"
            );
            assert_eq!(decode(&value).unwrap(), purpose);
        }
        assert_eq!(encode("dédouanement"), "d%C3%A9douanement");
        assert_eq!(decode("%zz"), Err(PurposeError::Encoding));
        assert_eq!(decode("%C3"), Err(PurposeError::Encoding), "not UTF-8");
        assert_eq!(decode("%4"), Err(PurposeError::Encoding));
        assert_eq!(decode(""), Err(PurposeError::Length));
        assert_eq!(
            decode(&"x".repeat(PURPOSE_BYTES_MAX + 1)),
            Err(PurposeError::Length)
        );
    }
}
