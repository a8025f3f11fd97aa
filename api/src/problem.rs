//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every failure has a stable machine-readable `type` (a URN naming the
//! check that failed) and a human `detail`. Internal causes are logged,
//! never put in a body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The code of the problem a response carries, in its extensions, for
/// the layers that record what was refused (the body is already JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemCode(pub &'static str);

/// The media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of every problem type.
pub const TYPE_PREFIX: &str = "urn:quorate:problem:";

/// A problem type: the code its URN ends with, the status it goes out
/// with, and what it tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    /// `urn:quorate:problem:<code>`.
    pub code: &'static str,
    /// The HTTP status (a peer's refusal relayed by the local API keeps
    /// the peer's status).
    pub status: u16,
    /// What it means, for the OpenAPI document.
    pub about: &'static str,
}

const fn t(code: &'static str, status: u16, about: &'static str) -> ProblemType {
    ProblemType {
        code,
        status,
        about,
    }
}

/// Every problem type the node answers with, by status. Clients match on
/// the codes, so a code, once listed, keeps its meaning; `/openapi.json`
/// lists them all, and a problem with a code not listed here is a bug
/// (asserted in debug builds).
pub const TYPES: &[ProblemType] = &[
    t("bad-request", 400, "a malformed parameter, query or body"),
    t("bad-path", 400, "a path that is not a resource path"),
    t(
        "bad-content-type",
        400,
        "a Content-Type that is not a media type",
    ),
    t("bad-chunk", 400, "a download or upload chunk out of order"),
    t(
        "bad-digest",
        400,
        "a Content-Digest that is malformed or names neither sha-256 nor sha-512",
    ),
    t(
        "digest-mismatch",
        400,
        "a written body that does not match its Content-Digest; nothing was stored",
    ),
    t(
        "unauthenticated",
        401,
        "no API token, an unknown, revoked or expired one, or an unsigned gateway request",
    ),
    t(
        "bad-signature",
        401,
        "an RFC 9421 signature that does not verify",
    ),
    t("replayed", 401, "a signature nonce seen before"),
    t(
        "refusals-suppressed",
        401,
        "unauthenticated refusals from one source, counted, not each audited",
    ),
    t(
        "not-a-member",
        403,
        "the caller, or this node for a proposal or endorsement, is not a member",
    ),
    t(
        "role-required",
        403,
        "the caller's roles do not open this route of the local API",
    ),
    t(
        "not-proposer",
        403,
        "a withdrawal of a proposal another member made",
    ),
    t("no-grant", 403, "no grant covers the request"),
    t("out-of-scope", 403, "the grants do not cover this resource"),
    t(
        "action-not-granted",
        403,
        "the grant does not give this action",
    ),
    t("not-yet-valid", 403, "the grant has not started"),
    t("expired-grant", 403, "the grant is over"),
    t(
        "ended-grant",
        403,
        "the grant ended with its grantee's membership",
    ),
    t("revoked-grant", 403, "the grant was revoked"),
    t(
        "purpose-mismatch",
        403,
        "the grant names a purpose the request did not declare (Quorate-Purpose)",
    ),
    t(
        "not-found",
        404,
        "no such route, object, grant, proposal, entry or block",
    ),
    t(
        "height-not-held",
        404,
        "this node no longer holds the state at that height",
    ),
    t("unknown-download", 404, "no download with that ticket"),
    t("unknown-upload", 404, "no upload with that ticket"),
    t(
        "unknown-access-request",
        404,
        "no access request of that id (of the caller's)",
    ),
    t(
        "unknown-offer",
        404,
        "no offer of that id in the catalog (that the caller may see)",
    ),
    t(
        "method-not-allowed",
        405,
        "the route does not take this method (Allow lists what it takes)",
    ),
    t("timeout", 408, "the request took too long"),
    t(
        "changed",
        412,
        "the object changed while it was being fetched, or is not the one a write's If-Match names",
    ),
    t(
        "token-exists",
        409,
        "an API token with that name exists (revoke it first)",
    ),
    t(
        "proposal-closed",
        409,
        "a decision or withdrawal on a proposal already committed, failed, withdrawn or expired",
    ),
    t(
        "already-decided",
        409,
        "this member decided otherwise on the proposal already; a decision is final",
    ),
    t(
        "access-request-closed",
        409,
        "a decision or withdrawal on an access request decided, withdrawn or expired already",
    ),
    t(
        "not-writable",
        409,
        "a write to a path an upstream route serves",
    ),
    t(
        "policy-fixed-by-config",
        409,
        "the config's approval = auto or manual fixes the endorsement policy",
    ),
    t("too-large", 413, "a body over its limit"),
    t("uri-too-long", 414, "a request target over 8 KiB"),
    t(
        "unsupported-media-type",
        415,
        "a JSON body without a JSON Content-Type",
    ),
    t("bad-range", 416, "a malformed Range"),
    t(
        "range-not-satisfiable",
        416,
        "a Range the object cannot satisfy",
    ),
    t(
        "wrong-authority",
        421,
        "the signed request names another gateway",
    ),
    t(
        "wrong-audience",
        421,
        "the signed request names another member",
    ),
    t(
        "proposal-rejected",
        422,
        "a well-formed proposal the consortium's rules refuse",
    ),
    t("height-beyond-tip", 422, "a height past the committed tip"),
    t(
        "invalid-policy",
        422,
        "an endorsement policy that does not check (the rule is named)",
    ),
    t(
        "invalid-access-request",
        422,
        "an access request that is malformed, out of bounds or misaddressed (what to fix is named)",
    ),
    t(
        "outside-offer",
        422,
        "an access request asking for more than the offer it cites",
    ),
    t(
        "invalid-offer",
        422,
        "a catalog offer that does not check (the field is named), or a full catalog",
    ),
    t(
        "too-many-tokens",
        422,
        "the node holds as many named API tokens as it may",
    ),
    t(
        "too-many-revocations",
        422,
        "the node keeps as many JWT revocations as it may until some expire",
    ),
    t(
        "config-invalid",
        422,
        "the config file cannot be read, or what it would change is invalid; what is in force is kept",
    ),
    t(
        "invalid-revocation",
        422,
        "a JWT revocation that names neither a subject nor a jti, or is out of bounds",
    ),
    t(
        "rate-limited",
        429,
        "over the grant's rate (Retry-After says when)",
    ),
    t(
        "too-many-access-requests",
        429,
        "too many open access requests between two members, or new ones from one member lately",
    ),
    t(
        "headers-too-large",
        431,
        "more than 64 header fields, or a header section over 16 KiB",
    ),
    t("refused", 400, "a refusal with no more specific type"),
    t("internal", 500, "the node failed; the cause is in its log"),
    t(
        "ledger-read-failed",
        500,
        "the node could not read its ledger; the cause is in its log",
    ),
    t(
        "peer-unreachable",
        502,
        "the member's node did not answer, or answered nonsense",
    ),
    t(
        "peer-refused",
        502,
        "the member's node refused with a type this node does not know",
    ),
    t(
        "upstream-failed",
        502,
        "the upstream behind the gateway failed",
    ),
    t(
        "upstream-too-large",
        502,
        "the upstream's answer is over the object limit",
    ),
    t("node-stopping", 503, "the node is stopping"),
    t("not-ready", 503, "the node has no ledger yet"),
    t(
        "stale-ledger",
        503,
        "the node's ledger is not fresh enough to decide",
    ),
    t("overloaded", 503, "too many requests at once"),
    t(
        "too-many-proposals",
        503,
        "the node, or this member, holds as many open proposals as it may",
    ),
    t(
        "not-serving",
        503,
        "the member's node does not serve data now",
    ),
    t("too-many-downloads", 503, "too many downloads open at once"),
    t("too-many-uploads", 503, "too many uploads open at once"),
    t(
        "replay-journal-unavailable",
        503,
        "the nonce journal cannot be written",
    ),
    t(
        "audit-broken",
        503,
        "the audit log's last records did not verify at start",
    ),
    t(
        "audit-unavailable",
        503,
        "the audit log cannot be written, so the gateway serves nobody",
    ),
    t(
        "upstream-unavailable",
        503,
        "the upstream is marked down for a while",
    ),
    t(
        "upstream-timeout",
        504,
        "the upstream did not answer in time",
    ),
];

/// Whether `code` is one of [`TYPES`].
pub fn is_listed(code: &str) -> bool {
    TYPES.iter().any(|t| t.code == code)
}

/// An HTTP error with a stable type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `bad-signature`; the type is `urn:quorate:problem:<code>`.
    pub code: &'static str,
    /// Human explanation of which check failed (no data, no internals).
    pub detail: String,
    /// Seconds to wait, for 429 and 503.
    pub retry_after_secs: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        debug_assert!(
            is_listed(code),
            "problem type {code:?} is not in problem::TYPES"
        );
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after_secs: None,
        }
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    /// 404 `not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 400 `bad-request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 405 `method-not-allowed` (the router adds `Allow`).
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", detail)
    }

    /// 413 `too-large`: a body over the route's limit.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail)
    }

    /// 414 `uri-too-long`.
    pub fn uri_too_long(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::URI_TOO_LONG, "uri-too-long", detail)
    }

    /// 431 `headers-too-large`: too many header fields, or too many bytes.
    pub fn headers_too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            detail,
        )
    }

    /// The problem for a refusal that came with no problem of its own (a
    /// framework's answer): a code chosen by its status alone.
    pub fn for_status(status: StatusCode, detail: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad-request",
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "too-large",
            StatusCode::URI_TOO_LONG => "uri-too-long",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::UNPROCESSABLE_ENTITY => "bad-request",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers-too-large",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded",
            s if s.is_server_error() => "internal",
            _ => "refused",
        };
        Self::new(status, code, detail)
    }

    /// 500 `internal`: the cause goes to the log, not the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the node failed to handle the request; see its log",
        )
    }

    /// The full type URN.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.code)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: self.type_uri(),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, json).into_response();
        response.extensions_mut().insert(ProblemCode(self.code));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_types_are_listed_once_with_error_statuses() {
        let mut seen = std::collections::BTreeSet::new();
        for t in TYPES {
            assert!(seen.insert(t.code), "{} is listed twice", t.code);
            assert!((400..600).contains(&t.status), "{}", t.code);
            assert!(
                t.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                t.code
            );
        }
        // Each status a framework refusal can have gets a listed type.
        for status in 400..600u16 {
            if let Ok(status) = StatusCode::from_u16(status) {
                assert!(is_listed(Problem::for_status(status, "").code));
            }
        }
    }
}
