//! Objects over HTTP: the types both the local API and the gateway use,
//! `Range` parsing, and the streamed response.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::refusal::BadRange;

/// Largest page of a listing (`limit`); a larger one is refused, not
/// clamped, so a client never mistakes a short page for the end.
pub const LIST_LIMIT_MAX: usize = 1000;

/// Longest `Content-Type` a put may store (it is echoed on every read).
pub const CONTENT_TYPE_BYTES_MAX: usize = 256;

/// What is known of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObjectInfo {
    /// Its path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// blake3 of the content (hex), the `ETag`.
    pub etag: String,
    /// Media type.
    pub content_type: String,
    /// Last written (ms since the Unix epoch).
    pub modified_ms: u64,
}

/// What a member's write stored, as the owner's gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Written {
    /// The object as stored.
    pub object: ObjectInfo,
    /// The sha-256 of what was stored, as `Content-Digest` writes it
    /// (`sha-256=:<base64>:`): the owner's audit record names the same.
    pub digest: String,
    /// Whether it replaced an object at that path.
    pub replaced: bool,
}

/// What a write through this node to a member says besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerWrite {
    /// The media type to store.
    pub content_type: String,
    /// The body's length, when the client declared one.
    pub length: Option<u64>,
    /// The write's condition on what it replaces.
    pub precondition: Precondition,
    /// The purpose the caller declares.
    pub purpose: Option<String>,
}

/// A write's condition on the object it would replace (RFC 9110 section
/// 13.1), checked when the write commits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Precondition {
    /// None: create or replace.
    #[default]
    Any,
    /// `If-None-Match: *`: only if there is no object at the path.
    Absent,
    /// `If-Match: *`: only if there is one.
    Present,
    /// `If-Match: "<etag>"`: only if the object has this ETag.
    Etag(String),
    /// `If-Match` and `If-None-Match: *` together: the object must both
    /// exist and not, so the condition never holds (RFC 9110 evaluates
    /// both).
    Contradictory,
}

impl Precondition {
    /// The precondition `If-Match` and `If-None-Match` state (only the
    /// forms a write uses: `*`, or one strong ETag).
    pub fn of(headers: &HeaderMap) -> Result<Self, &'static str> {
        const BAD: &str = "If-Match takes * or one quoted ETag; If-None-Match takes *";
        let text = |name| -> Result<Option<&str>, &'static str> {
            headers
                .get(name)
                .map(|v| v.to_str().map(str::trim).map_err(|_| BAD))
                .transpose()
                // An empty field states no condition.
                .map(|v| v.filter(|v| !v.is_empty()))
        };
        let if_match = match text(header::IF_MATCH)? {
            None => None,
            Some("*") => Some(Self::Present),
            Some(tag) => Some(
                tag.strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .filter(|t| {
                        !t.is_empty()
                            && t.len() <= 128
                            && t.bytes().all(|b| b.is_ascii_alphanumeric())
                    })
                    .map(|t| Self::Etag(t.to_owned()))
                    .ok_or(BAD)?,
            ),
        };
        let if_none_match = match text(header::IF_NONE_MATCH)? {
            None => false,
            Some("*") => true,
            Some(_) => return Err(BAD),
        };
        Ok(match (if_match, if_none_match) {
            (None, false) => Self::Any,
            (None, true) => Self::Absent,
            (Some(condition), false) => condition,
            (Some(_), true) => Self::Contradictory,
        })
    }

    /// What is not so when it does not hold.
    pub fn unmet(&self) -> &'static str {
        match self {
            Self::Any => "the write's condition did not hold",
            Self::Absent => {
                "an object exists at this path (the write asked for none: If-None-Match: *)"
            }
            Self::Present => "there is no object at this path (If-Match: *)",
            Self::Etag(_) => "the object's ETag is not the one If-Match names",
            Self::Contradictory => "If-Match and If-None-Match: * cannot both hold",
        }
    }

    /// Whether an object with ETag `current` (none: no object) satisfies
    /// it.
    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            Self::Any => true,
            Self::Absent => current.is_none(),
            Self::Present => current.is_some(),
            Self::Etag(tag) => current == Some(tag.as_str()),
            Self::Contradictory => false,
        }
    }
}

/// A single byte range as `Range: bytes=…` asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive).
    Bounded(u64, u64),
    /// `bytes=a-`.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a `Range` value. `Ok(None)` for forms we serve whole (several
    /// ranges, other units: RFC 9110 lets a server ignore `Range`); `Err`
    /// for a malformed one.
    pub fn parse(value: &str) -> Result<Option<Self>, BadRange> {
        let Some(spec) = value.trim().strip_prefix("bytes=") else {
            return Ok(None);
        };
        if spec.contains(',') {
            return Ok(None);
        }
        let bad = || BadRange::Malformed(value.to_owned());
        let (first, last) = spec.split_once('-').ok_or_else(bad)?;
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (false, false) => {
                let (a, b) = (number(first)?, number(last)?);
                if b < a {
                    return Err(bad());
                }
                Ok(Some(ByteRange::Bounded(a, b)))
            }
            (false, true) => Ok(Some(ByteRange::From(number(first)?))),
            (true, false) => Ok(Some(ByteRange::Suffix(number(last)?))),
            (true, true) => Err(bad()),
        }
    }

    /// The half-open span `[start, end)` of an object of `size` bytes, or
    /// `None` when unsatisfiable.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        let span = match self {
            ByteRange::Bounded(a, b) => (a, b.saturating_add(1).min(size)),
            ByteRange::From(a) => (a, size),
            ByteRange::Suffix(0) => return None,
            ByteRange::Suffix(n) => (size.saturating_sub(n), size),
        };
        (span.0 < span.1).then_some(span)
    }
}

/// The `Range` of `headers`, if any. A value that is not visible ASCII
/// (bytes above 0x7e) is malformed, not ignored. (hyper refuses control
/// bytes in any header with an empty 400 before the API sees the request.)
pub fn range_of(headers: &HeaderMap) -> Result<Option<ByteRange>, BadRange> {
    match headers.get(header::RANGE) {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(text) => ByteRange::parse(text),
            Err(_) => Err(BadRange::NotAscii),
        },
    }
}

/// Whether `value` is a media type as RFC 9110 section 8.3.1 writes one
/// (`type/subtype`, then `; name=value` parameters, each value a token or
/// a quoted string), at most [`CONTENT_TYPE_BYTES_MAX`] bytes.
pub fn is_media_type(value: &str) -> bool {
    fn tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > CONTENT_TYPE_BYTES_MAX {
        return false;
    }
    let mut at = 0;
    let token = |at: &mut usize| {
        let start = *at;
        while *at < bytes.len() && tchar(bytes[*at]) {
            *at += 1;
        }
        *at > start
    };
    let whitespace = |at: &mut usize| {
        while *at < bytes.len() && matches!(bytes[*at], b' ' | b'\t') {
            *at += 1;
        }
    };
    if !token(&mut at) || bytes.get(at) != Some(&b'/') {
        return false;
    }
    at += 1;
    if !token(&mut at) {
        return false;
    }
    loop {
        whitespace(&mut at);
        if at == bytes.len() {
            return true;
        }
        if bytes[at] != b';' {
            return false;
        }
        at += 1;
        whitespace(&mut at);
        if !token(&mut at) || bytes.get(at) != Some(&b'=') {
            return false;
        }
        at += 1;
        if bytes.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match bytes.get(at) {
                    Some(b'"') => break,
                    Some(b'\\')
                        if bytes
                            .get(at + 1)
                            .is_some_and(|b| (0x20..0x7f).contains(b) || *b == b'\t') =>
                    {
                        at += 2
                    }
                    Some(b) if *b == b'\t' || ((0x20..0x7f).contains(b) && *b != b'\\') => at += 1,
                    _ => return false,
                }
            }
            at += 1;
        } else if !token(&mut at) {
            return false;
        }
    }
}

/// What a member's read carries on to an upstream route besides its path
/// (stored objects take none of it): HEAD rather than GET, the query
/// string, and the request's headers, of which the route's allow-list
/// picks what travels.
#[derive(Debug, Clone, Default)]
pub struct Forward {
    /// A HEAD request: the upstream is asked for headers only.
    pub head: bool,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// The request's headers.
    pub headers: HeaderMap,
}

/// An object's content on its way out: `span` is what `body` yields.
pub struct ObjectBody {
    /// The object.
    pub info: ObjectInfo,
    /// `[start, end)` of the content in `body`.
    pub span: (u64, u64),
    /// Whether a range was asked for (then the answer is 206).
    pub partial: bool,
    /// Whether `span` is known to be exact (else no `Content-Length`: a
    /// proxied upstream that did not say).
    pub sized: bool,
    /// The bytes, streamed.
    pub body: Body,
    /// An upstream's status, when not 200 (stored objects: none).
    pub status: Option<StatusCode>,
    /// Headers an upstream route passes back (stored objects: none).
    pub passed: HeaderMap,
}

impl std::fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBody")
            .field("info", &self.info)
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

/// Headers describing `info` (no body).
pub fn object_headers(info: &ObjectInfo, headers: &mut HeaderMap) {
    let content_type = HeaderValue::from_str(&info.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    if info.etag.is_empty() {
        // A proxied upstream answer: no ETag of ours, and served whole.
        return;
    }
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

impl IntoResponse for ObjectBody {
    fn into_response(self) -> Response {
        let (start, end) = self.span;
        let status = match (self.partial, self.status) {
            (true, _) => StatusCode::PARTIAL_CONTENT,
            (false, Some(status)) => status,
            (false, None) => StatusCode::OK,
        };
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        // The route's own headers first: ours (type, length) win.
        headers.extend(self.passed);
        object_headers(&self.info, headers);
        if self.sized {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        }
        if self.partial
            && let Ok(range) = HeaderValue::from_str(&format!(
                "bytes {start}-{}/{}",
                end.saturating_sub(1),
                self.info.size
            ))
        {
            headers.insert(header::CONTENT_RANGE, range);
        }
        response
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Listing {
    /// Objects, in path order.
    pub objects: Vec<ObjectInfo>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Query of a listing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Paths starting with this.
    #[serde(default)]
    pub prefix: String,
    /// Continue after this path (the previous page's `next`).
    pub after: Option<String>,
    /// Page size: 1 to [`LIST_LIMIT_MAX`] (default 100); anything else is
    /// refused when the query is read.
    #[serde(default, deserialize_with = "list_limit")]
    pub limit: Option<usize>,
}

/// A `limit` of 1 to [`LIST_LIMIT_MAX`], or a deserialization error.
pub(crate) fn list_limit<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<usize>, D::Error> {
    let limit = usize::deserialize(d)?;
    if (1..=LIST_LIMIT_MAX).contains(&limit) {
        Ok(Some(limit))
    } else {
        Err(serde::de::Error::custom(format!(
            "limit {limit} is outside 1..={LIST_LIMIT_MAX}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve() {
        assert_eq!(
            ByteRange::parse("bytes=0-9").unwrap(),
            Some(ByteRange::Bounded(0, 9))
        );
        assert_eq!(
            ByteRange::parse("bytes=5-").unwrap(),
            Some(ByteRange::From(5))
        );
        assert_eq!(
            ByteRange::parse("bytes=-3").unwrap(),
            Some(ByteRange::Suffix(3))
        );
        assert_eq!(ByteRange::parse("bytes=0-1,4-5").unwrap(), None);
        assert_eq!(ByteRange::parse("items=0-1").unwrap(), None);
        for bad in ["bytes=9-0", "bytes=-", "bytes=a-b", "bytes=1"] {
            assert!(ByteRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ByteRange::Bounded(0, 9).resolve(5), Some((0, 5)));
        assert_eq!(ByteRange::From(5).resolve(5), None);
        assert_eq!(ByteRange::Suffix(3).resolve(10), Some((7, 10)));
        assert_eq!(ByteRange::Suffix(30).resolve(10), Some((0, 10)));
        assert_eq!(ByteRange::Suffix(0).resolve(10), None);
    }

    #[test]
    fn media_types_follow_rfc_9110() {
        for good in [
            "text/plain",
            "application/octet-stream",
            "text/csv; charset=utf-8",
            "text/plain;charset=\"utf-8\"",
            "multipart/form-data; boundary=\"a b\\\"c\"",
            "application/vnd.api+json",
        ] {
            assert!(is_media_type(good), "{good}");
        }
        let long = format!("text/{}", "x".repeat(CONTENT_TYPE_BYTES_MAX));
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            "text/plain;",
            "text/plain; charset",
            "text/plain; charset=",
            "text/pl ain",
            "text/plain; a=\"open",
            "text/plain\u{7f}",
            "<script>/x",
            long.as_str(),
        ] {
            assert!(!is_media_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn range_values_outside_visible_ascii_are_malformed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::RANGE,
            HeaderValue::from_bytes(b"bytes=0-\xff").unwrap(),
        );
        assert_eq!(range_of(&headers).unwrap_err(), BadRange::NotAscii);
    }
}
