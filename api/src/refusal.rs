//! Why the gateway refused a request, in words of its own domain: no HTTP
//! status, no wire format. The signed HTTP door ([`crate::gateway`]) maps a
//! [`Refusal`] to a problem once, and the node's libp2p serving maps it to
//! its wire message once; both name it by its stable [`Code`], which is
//! also the audit record's reason.

use std::net::IpAddr;
use std::time::Duration;

use quorate_contracts::{DenyKind, DenyReason, PathError, ResourcePath};
use quorate_did::Did;

use crate::signature::{Replayed, SignatureError};

/// Declares [`Code`]: each own variant with its code, written once.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)*) => {
        /// A refusal's stable code: the problem type's suffix over HTTP
        /// (`urn:quorate:problem:<code>`), the code on the libp2p wire and
        /// the audit record's reason.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            /// `contracts::authorize` denied it (or a later check of the
            /// grant did): the deny reason's own code.
            Denied(DenyKind),
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            const OWN: &[Code] = &[$(Code::$variant),*];

            /// The code as text.
            pub fn as_str(self) -> &'static str {
                match self {
                    Code::Denied(kind) => kind.code(),
                    $(Code::$variant => $code,)*
                }
            }
        }
    };
}

codes! {
    /// The ledger is too old to decide on.
    StaleLedger = "stale-ledger",
    /// This node is not a member.
    NotServing = "not-serving",
    /// Over a request rate.
    RateLimited = "rate-limited",
    /// No such object.
    NotFound = "not-found",
    /// The range lies outside the object.
    RangeNotSatisfiable = "range-not-satisfiable",
    /// A malformed `Range`.
    BadRange = "bad-range",
    /// A malformed resource path.
    BadPath = "bad-path",
    /// A malformed request.
    BadRequest = "bad-request",
    /// The object changed during a download.
    Changed = "changed",
    /// A download ticket names no open download of the caller's.
    UnknownDownload = "unknown-download",
    /// A chunk asked for out of order.
    BadChunk = "bad-chunk",
    /// Too many downloads open.
    TooManyDownloads = "too-many-downloads",
    /// The upstream failed or answered badly.
    UpstreamFailed = "upstream-failed",
    /// The upstream did not answer in time.
    UpstreamTimeout = "upstream-timeout",
    /// The upstream's circuit is open.
    UpstreamUnavailable = "upstream-unavailable",
    /// The upstream's answer does not fit one libp2p chunk.
    UpstreamTooLarge = "upstream-too-large",
    /// The node failed; the cause is in its log.
    Internal = "internal",
    /// Addressed to another gateway's authority.
    WrongAuthority = "wrong-authority",
    /// Not signed.
    Unauthenticated = "unauthenticated",
    /// A signature that does not verify or breaks the policy.
    BadSignature = "bad-signature",
    /// Signed for another member.
    WrongAudience = "wrong-audience",
    /// A nonce used before.
    Replayed = "replayed",
    /// The nonce journal cannot be written.
    ReplayJournalUnavailable = "replay-journal-unavailable",
    /// The audit log cannot be written: the gateway serves nobody.
    AuditUnavailable = "audit-unavailable",
    /// Too busy to track replays.
    Overloaded = "overloaded",
    /// Unauthenticated refusals counted, not audited one by one.
    RefusalsSuppressed = "refusals-suppressed",
    /// A member's gateway refused with a code this node does not know.
    PeerRefused = "peer-refused",
    /// An access request that is malformed, out of bounds or misaddressed.
    InvalidAccessRequest = "invalid-access-request",
    /// No access request of that id (of the caller's).
    UnknownAccessRequest = "unknown-access-request",
    /// An access request decided, withdrawn or expired already.
    AccessRequestClosed = "access-request-closed",
    /// Too many access requests from the caller, open or lately.
    TooManyAccessRequests = "too-many-access-requests",
    /// No offer of that id the caller may see.
    UnknownOffer = "unknown-offer",
    /// An access request asking for more than the offer it cites.
    OutsideOffer = "outside-offer",
    /// A body over its limit.
    TooLarge = "too-large",
    /// A body that does not match its `Content-Digest`.
    DigestMismatch = "digest-mismatch",
    /// A `Content-Digest` that is malformed or names no supported
    /// algorithm.
    BadDigest = "bad-digest",
    /// An upload ticket names no open upload of the caller's.
    UnknownUpload = "unknown-upload",
    /// Too many uploads open.
    TooManyUploads = "too-many-uploads",
    /// The path cannot take this write: an upstream route's over libp2p,
    /// or a POST to a stored object.
    NotWritable = "not-writable",
}

impl Code {
    /// The code whose text is `code`, if it is one of ours (a peer's
    /// refusal is named in our vocabulary, never in its own words).
    pub fn parse(code: &str) -> Option<Self> {
        DenyKind::parse(code)
            .map(Code::Denied)
            .or_else(|| Self::OWN.iter().copied().find(|c| c.as_str() == code))
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the gateway refused. Display is the human detail (which check
/// failed; never data, never internals).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// `contracts::authorize` denied it, or the grant stopped holding
    /// between the chunks of a download.
    #[error("{}", denied_detail(.0))]
    Denied(DenyReason),
    /// A valid signature by a key that is not a member's.
    #[error("{0} is not a member's key")]
    NotAMemberKey(Box<Did>),
    /// The last commit is older than `max_ledger_age`: this node may have
    /// missed a revocation, so it fails closed.
    #[error("this node's ledger is not fresh enough to decide; it may have missed a revocation")]
    StaleLedger,
    /// This node is not a member of the consortium: it serves nobody.
    #[error("this node is not a member of the consortium")]
    NotServing,
    /// Over the member's or the grant's request rate.
    #[error("over the request rate allowed to this member or grant")]
    RateLimited {
        /// Seconds until a token is available.
        retry_after_secs: u64,
    },
    /// No object at this path.
    #[error("no object {0}")]
    NotFound(ResourcePath),
    /// The range lies outside the object.
    #[error("the object has {size} bytes")]
    RangeNotSatisfiable {
        /// The object's size.
        size: u64,
    },
    /// A malformed `Range`.
    #[error(transparent)]
    BadRange(#[from] BadRange),
    /// A malformed resource path.
    #[error("{path:?} is not a resource path: {error}")]
    BadPath {
        /// The path as asked for.
        path: String,
        /// What is wrong with it.
        error: PathError,
    },
    /// A malformed request (what is wrong).
    #[error("{0}")]
    BadRequest(&'static str),
    /// The object changed between the chunks of a download (its ETag).
    #[error("the object changed during the download")]
    Changed,
    /// A download ticket that names no open download of the caller's.
    #[error("no such download: it ended, expired, or is another member's")]
    UnknownDownload,
    /// A chunk asked for out of order.
    #[error("the next chunk starts at {expected}, not {asked}")]
    BadChunk {
        /// Where the next chunk starts.
        expected: u64,
        /// Where the request asked.
        asked: u64,
    },
    /// Too many downloads open, in all or for this member.
    #[error("too many downloads are open; retry when one ends")]
    TooManyDownloads,
    /// The upstream service that serves the path.
    #[error(transparent)]
    Upstream(#[from] UpstreamFailure),
    /// The node failed (storage, a task); the cause is logged where it
    /// happened, never sent.
    #[error("the node failed to handle the request; see its log")]
    Internal,
    /// Addressed to another authority than this gateway's.
    #[error("this gateway is {authority}; the request is addressed to {addressed:?}")]
    WrongAuthority {
        /// This gateway's authority.
        authority: String,
        /// The request's `Host` (cut short).
        addressed: String,
    },
    /// The request's signature.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The signature's nonce.
    #[error(transparent)]
    Replay(#[from] Replayed),
    /// The nonce journal cannot be written: serving could let a replay
    /// through after a restart.
    #[error("this gateway cannot record the request's nonce; retry shortly")]
    JournalUnavailable,
    /// The audit log cannot be written: serving would leave decisions
    /// unrecorded, so the gateway serves nobody until it can.
    #[error(
        "this gateway cannot write its audit log, so it serves nobody until it can; retry later"
    )]
    AuditUnavailable,
    /// Unauthenticated refusals from one source, counted rather than
    /// audited one by one (a summary record, never an answer).
    #[error("{count} unauthenticated refusals from {from} were not audited one by one")]
    Suppressed {
        /// How many.
        count: u64,
        /// From where.
        from: IpAddr,
    },
    /// An access request that is malformed, out of bounds or
    /// misaddressed (what to fix).
    #[error("{0}")]
    InvalidAccessRequest(String),
    /// No access request of that id of the caller's.
    #[error("no such access request of yours")]
    UnknownAccessRequest,
    /// The access request is decided, withdrawn or expired.
    #[error("the access request is {0} already")]
    AccessRequestClosed(&'static str),
    /// Too many access requests from the caller (which bound).
    #[error("{0}")]
    TooManyAccessRequests(String),
    /// No offer of that id that the caller may see.
    #[error("no offer {0:?} in this member's catalog")]
    UnknownOffer(String),
    /// The request asks for more than its offer gives.
    #[error("outside the offer: {0}")]
    OutsideOffer(String),
    /// A write's body is over the limit for members' writes.
    #[error("objects written by members are limited to {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// A write's `Content-Digest`: malformed, or not the body's.
    #[error(transparent)]
    Digest(#[from] crate::signature::DigestError),
    /// An upload ticket that names no open upload of the caller's.
    #[error("no such upload: it ended, expired, or is another member's")]
    UnknownUpload,
    /// Too many uploads open, in all or for this member.
    #[error("too many uploads are open; retry when one ends")]
    TooManyUploads,
    /// A write's or delete's precondition (`If-Match`, `If-None-Match`)
    /// did not hold: what is not so.
    #[error("{0}")]
    PreconditionFailed(&'static str),
    /// A write over libp2p to a path an upstream route serves.
    #[error("{0} is served by an upstream service, which takes writes over signed HTTPS only")]
    NotWritable(ResourcePath),
    /// A POST to a path no upstream route serves.
    #[error("{0} is no upstream route's: POST goes to upstream services; store an object with PUT")]
    PostToStored(ResourcePath),
    /// A member's gateway refused this node's request (over libp2p).
    #[error("the peer refused: {detail}")]
    ByPeer {
        /// Its code, in our vocabulary.
        code: Code,
        /// Its words.
        detail: String,
        /// Its wait.
        retry_after_secs: Option<u64>,
    },
}

fn denied_detail(reason: &DenyReason) -> String {
    match reason.grant() {
        Some(grant) => format!("{} (grant {grant})", reason.code()),
        None => reason.code().to_owned(),
    }
}

impl Refusal {
    /// Its stable code.
    pub fn code(&self) -> Code {
        match self {
            Refusal::Denied(reason) => Code::Denied(reason.kind()),
            Refusal::NotAMemberKey(_) => Code::Denied(DenyKind::NotAMember),
            Refusal::StaleLedger => Code::StaleLedger,
            Refusal::NotServing => Code::NotServing,
            Refusal::RateLimited { .. } => Code::RateLimited,
            Refusal::NotFound(_) => Code::NotFound,
            Refusal::RangeNotSatisfiable { .. } => Code::RangeNotSatisfiable,
            Refusal::BadRange(_) => Code::BadRange,
            Refusal::BadPath { .. } => Code::BadPath,
            Refusal::BadRequest(_) => Code::BadRequest,
            Refusal::Changed => Code::Changed,
            Refusal::UnknownDownload => Code::UnknownDownload,
            Refusal::BadChunk { .. } => Code::BadChunk,
            Refusal::TooManyDownloads => Code::TooManyDownloads,
            Refusal::Upstream(failure) => failure.code(),
            Refusal::Internal => Code::Internal,
            Refusal::WrongAuthority { .. } => Code::WrongAuthority,
            Refusal::Signature(SignatureError::Unsigned) => Code::Unauthenticated,
            Refusal::Signature(SignatureError::WrongAudience(_)) => Code::WrongAudience,
            Refusal::Signature(_) => Code::BadSignature,
            Refusal::Replay(Replayed::Seen) => Code::Replayed,
            Refusal::Replay(Replayed::TooLong) => Code::BadSignature,
            Refusal::Replay(Replayed::CallerFull) => Code::RateLimited,
            Refusal::Replay(_) => Code::Overloaded,
            Refusal::JournalUnavailable => Code::ReplayJournalUnavailable,
            Refusal::AuditUnavailable => Code::AuditUnavailable,
            Refusal::Suppressed { .. } => Code::RefusalsSuppressed,
            Refusal::InvalidAccessRequest(_) => Code::InvalidAccessRequest,
            Refusal::UnknownAccessRequest => Code::UnknownAccessRequest,
            Refusal::AccessRequestClosed(_) => Code::AccessRequestClosed,
            Refusal::TooManyAccessRequests(_) => Code::TooManyAccessRequests,
            Refusal::UnknownOffer(_) => Code::UnknownOffer,
            Refusal::OutsideOffer(_) => Code::OutsideOffer,
            Refusal::TooLarge { .. } => Code::TooLarge,
            Refusal::Digest(crate::signature::DigestError::Mismatch(_)) => Code::DigestMismatch,
            Refusal::Digest(_) => Code::BadDigest,
            Refusal::UnknownUpload => Code::UnknownUpload,
            Refusal::TooManyUploads => Code::TooManyUploads,
            Refusal::NotWritable(_) | Refusal::PostToStored(_) => Code::NotWritable,
            Refusal::PreconditionFailed(_) => Code::Changed,
            Refusal::ByPeer { code, .. } => *code,
        }
    }

    /// How long to wait before asking again, when waiting helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Refusal::Upstream(UpstreamFailure::CircuitOpen {
                retry_after_secs, ..
            }) => Some(*retry_after_secs),
            Refusal::ByPeer {
                retry_after_secs, ..
            } => *retry_after_secs,
            Refusal::TooManyAccessRequests(_) => Some(60),
            Refusal::AuditUnavailable => Some(5),
            Refusal::StaleLedger
            | Refusal::TooManyDownloads
            | Refusal::TooManyUploads
            | Refusal::JournalUnavailable
            | Refusal::Replay(Replayed::CallerFull | Replayed::Full) => Some(1),
            _ => None,
        }
    }
}

/// How an upstream service failed the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamFailure {
    /// No upstream route covers the path.
    #[error("no upstream serves {0}")]
    NoRoute(ResourcePath),
    /// The service has no such resource (it answered 404).
    #[error("the upstream has no such resource")]
    NotFound,
    /// The route's URL and the path make no request URL.
    #[error("bad upstream URL")]
    BadUrl,
    /// No connection, or it broke before the headers.
    #[error("the upstream could not be reached")]
    Unreachable,
    /// An answer other than success or 404.
    #[error("the upstream answered {0}")]
    Status(u16),
    /// No headers within the route's timeout.
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The body broke off (or stalled past the timeout).
    #[error("the upstream body broke off: {0}")]
    BodyBroke(String),
    /// The query string is longer than the limit, or not one a URI may
    /// carry.
    #[error("the query string is at most {0} bytes of a URI's query characters")]
    BadQuery(usize),
    /// The answer is longer than one libp2p chunk.
    #[error("upstream answers over {0} bytes are served over signed HTTP only")]
    TooLarge(u64),
    /// The route failed too often in a row; it is not asked for a while.
    #[error("the upstream for {prefix}/ failed {failures} times in a row; retrying it shortly")]
    CircuitOpen {
        /// The route's prefix.
        prefix: String,
        /// The failures that opened it.
        failures: u32,
        /// Until the trial call.
        retry_after_secs: u64,
    },
}

impl UpstreamFailure {
    /// Its stable code.
    pub fn code(&self) -> Code {
        match self {
            UpstreamFailure::NoRoute(_) | UpstreamFailure::NotFound => Code::NotFound,
            UpstreamFailure::BadQuery(_) => Code::BadRequest,
            UpstreamFailure::BadUrl
            | UpstreamFailure::Unreachable
            | UpstreamFailure::Status(_)
            | UpstreamFailure::BodyBroke(_) => Code::UpstreamFailed,
            UpstreamFailure::Timeout(_) => Code::UpstreamTimeout,
            UpstreamFailure::TooLarge(_) => Code::UpstreamTooLarge,
            UpstreamFailure::CircuitOpen { .. } => Code::UpstreamUnavailable,
        }
    }

    /// Whether this counts against the route's circuit: the service
    /// answering "no such resource" is the service working.
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            UpstreamFailure::NoRoute(_) | UpstreamFailure::NotFound | UpstreamFailure::BadQuery(_)
        )
    }
}

/// A `Range` header that is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRange {
    /// Not `bytes=a-b`, `bytes=a-` or `bytes=-n` (the value).
    #[error("Range {0:?} is malformed")]
    Malformed(String),
    /// Bytes outside visible ASCII.
    #[error("Range holds bytes outside visible ASCII")]
    NotAscii,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_and_unknown_codes_do_not() {
        let all = Code::OWN
            .iter()
            .copied()
            .chain(DenyKind::ALL.into_iter().map(Code::Denied));
        let mut seen = std::collections::HashSet::new();
        for code in all {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
        assert_eq!(Code::parse("urn:quorate:problem:no-grant"), None);
        assert_eq!(Code::parse("whatever"), None);
    }

    #[test]
    fn a_denial_names_its_grant_and_waits_are_given_where_they_help() {
        let grant = quorate_contracts::GrantId([7; 32]);
        let revoked = Refusal::Denied(DenyReason::Revoked { grant });
        assert_eq!(revoked.code().as_str(), "revoked-grant");
        assert_eq!(
            revoked.to_string(),
            format!("revoked-grant (grant {grant})")
        );
        assert_eq!(revoked.retry_after_secs(), None);
        let limited = Refusal::RateLimited {
            retry_after_secs: 4,
        };
        assert_eq!(
            (limited.code(), limited.retry_after_secs()),
            (Code::RateLimited, Some(4))
        );
        assert_eq!(
            Refusal::Replay(Replayed::CallerFull).code(),
            Code::RateLimited
        );
        assert_eq!(
            Refusal::Signature(SignatureError::Unsigned).code(),
            Code::Unauthenticated
        );
    }
}
