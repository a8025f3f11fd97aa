//! What the local API reads: the proposal body and the routes' queries.

use quorate_contracts::Action;
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// What can be proposed through the API. The node resolves names and DIDs
/// against its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProposalRequest {
    /// Grant a member access to some of this organization's data.
    Grant {
        /// The grantee: a member name or its did:key.
        grantee: String,
        /// Patterns: `*`, `prefix/*` or an exact path.
        resources: Vec<String>,
        /// `read`, `list`, `write`.
        actions: Vec<Action>,
        /// Start (ms since the Unix epoch); now if absent.
        #[serde(default, deserialize_with = "whole_or_null")]
        not_before_ms: Option<u64>,
        /// End (ms since the Unix epoch, exclusive).
        #[serde(deserialize_with = "whole")]
        not_after_ms: u64,
        /// Why.
        #[serde(default)]
        purpose: Option<String>,
        /// At most this many requests per window under this grant.
        #[serde(default, deserialize_with = "rate_limit")]
        rate_limit: Option<quorate_contracts::RateLimit>,
    },
    /// Revoke a grant (alone if this organization granted it).
    Revoke {
        /// The grant id (hex).
        grant: String,
    },
    /// Admit a new organization (a quorum must endorse).
    AddMember {
        /// Its short name.
        name: String,
        /// Its did:key.
        did: String,
    },
    /// Remove a member (a quorum must endorse); its grants end.
    RemoveMember {
        /// The member's name or did:key.
        member: String,
    },
    /// Move this organization to a new key (`quorate did rotate` makes it
    /// and keeps it as `key.next.pem`). Signed with the current key; a
    /// quorum including this member must endorse. Grants name members, not
    /// keys, so they carry over.
    RotateKey {
        /// The new did:key.
        did: String,
    },
}

/// Longest reason a rejection carries, in bytes.
pub const REASON_BYTES_MAX: usize = 256;

/// `POST /v1/proposals/{id}/reject`'s optional body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Why (1 to 256 bytes), signed and gossiped with the rejection.
    pub reason: String,
}

/// Largest integer a JSON number with a fraction part (`5.0`) may stand
/// for: beyond 2^53 a double no longer holds every integer.
const WHOLE_FLOAT_MAX: f64 = 9_007_199_254_740_992.0;

/// A JSON integer as JSON Schema's `integer` admits it: `5` or `5.0` (a
/// zero fraction), in range for `T`.
fn whole<'de, D: serde::Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    whole_number(serde_json::Number::deserialize(d)?)
}

pub(crate) fn whole_or_null<'de, D: serde::Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(whole_number)
        .transpose()
}

fn whole_number<E: serde::de::Error, T: TryFrom<u64>>(n: serde_json::Number) -> Result<T, E> {
    let value = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=WHOLE_FLOAT_MAX).contains(f))
            .map(|f| f as u64)
    });
    value
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| E::custom(format!("{n} is not a whole number in range")))
}

/// A grant's rate limit, its counts read as [`whole`] numbers.
fn rate_limit<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<quorate_contracts::RateLimit>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Lenient {
        #[serde(deserialize_with = "whole")]
        requests: u32,
        #[serde(deserialize_with = "whole")]
        per_seconds: u32,
    }
    Ok(
        Option::<Lenient>::deserialize(d)?.map(|l| quorate_contracts::RateLimit {
            requests: l.requests,
            per_seconds: l.per_seconds,
        }),
    )
}

/// Query of `GET /v1/ledger/blocks/{height}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockQuery {
    /// `json` (default) or `cbor` (the canonical bytes).
    pub format: Option<String>,
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this caller: a did:key, or a local principal (`admin`,
    /// `token:<name>`, `oidc:<sub>`).
    pub caller: Option<String>,
    /// Only `allow` or `deny` (anything else is refused).
    #[serde(default, deserialize_with = "decision")]
    pub decision: Option<String>,
    /// At most this many, newest last: 1 to
    /// [`LIST_LIMIT_MAX`](crate::objects::LIST_LIMIT_MAX), default 100.
    #[serde(default, deserialize_with = "crate::objects::list_limit")]
    pub limit: Option<usize>,
}

fn decision<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let decision = String::deserialize(d)?;
    match decision.as_str() {
        "allow" | "deny" => Ok(Some(decision)),
        _ => Err(serde::de::Error::custom(format!(
            "decision {decision:?}: use allow or deny"
        ))),
    }
}

/// Filters and page of `GET /v1/grants` (member names or did:keys; status
/// `active`, `expired`, `revoked`, `ended`; a page after a grant id).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantQuery {
    /// Only grants to this member.
    pub grantee: Option<String>,
    /// Only grants by this member.
    pub grantor: Option<String>,
    /// Only grants in this state.
    pub status: Option<String>,
    /// Only grants whose id sorts after this one (the previous page's last).
    pub after: Option<String>,
    /// At most this many grants (1 to [`GRANTS_PAGE_MAX`], default
    /// [`GRANTS_PAGE_DEFAULT`]).
    pub limit: Option<u32>,
}

/// Grants in a page when the query names no limit.
pub const GRANTS_PAGE_DEFAULT: u32 = 100;
/// Most grants in a page.
pub const GRANTS_PAGE_MAX: u32 = 1000;

impl GrantQuery {
    /// The page size asked for, checked.
    pub fn page_size(&self) -> Result<u32, Problem> {
        match self.limit {
            None => Ok(GRANTS_PAGE_DEFAULT),
            Some(n @ 1..=GRANTS_PAGE_MAX) => Ok(n),
            Some(_) => Err(Problem::bad_request(format!(
                "limit must be 1 to {GRANTS_PAGE_MAX}"
            ))),
        }
    }

    /// This query's filters with `after`, as a query string (for `Link`).
    pub(super) fn next_page(&self, after: &str, limit: u32) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("grantee", &self.grantee),
            ("grantor", &self.grantor),
            ("status", &self.status),
        ] {
            if let Some(value) = value {
                let encoded: String = value
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                            char::from(b).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                parts.push(format!("{name}={encoded}"));
            }
        }
        parts.push(format!("after={after}"));
        parts.push(format!("limit={limit}"));
        parts.join("&")
    }
}

/// The height of `GET /v1/grants/{id}/status`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// The committed height to prove the status at (the tip if absent).
    pub at: Option<u64>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn proposal_integers_may_have_a_zero_fraction_and_optional_fields_may_be_null() {
        use super::ProposalRequest;
        let grant = |fields: &str| {
            serde_json::from_str::<ProposalRequest>(&format!(
                r#"{{"grant":{{"grantee":"org-b","resources":["*"],"actions":["read"],{fields}}}}}"#
            ))
        };
        let Ok(ProposalRequest::Grant {
            not_before_ms,
            not_after_ms,
            rate_limit,
            ..
        }) = grant(
            r#""not_after_ms":5.0,"not_before_ms":null,"rate_limit":{"requests":2.0,"per_seconds":1}"#,
        )
        else {
            panic!("refused");
        };
        assert_eq!((not_before_ms, not_after_ms), (None, 5));
        assert_eq!(
            rate_limit.map(|r| (r.requests, r.per_seconds)),
            Some((2, 1))
        );
        for bad in [
            r#""not_after_ms":5.5"#,
            r#""not_after_ms":-1"#,
            r#""not_after_ms":1e300"#,
            r#""not_after_ms":1,"rate_limit":{"requests":4294967296,"per_seconds":1}"#,
            r#""not_after_ms":1,"rate_limit":{"requests":1,"per_seconds":1,"burst":2}"#,
        ] {
            assert!(grant(bad).is_err(), "{bad}");
        }
    }
}

/// `POST /v1/tokens`: a named API token to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Its name: 1 to 64 of `a-z`, `0-9`, `.`, `_`, `-`, starting with a
    /// letter or digit; `admin` is the bootstrap token's.
    pub name: String,
    /// Its roles (at least one).
    pub roles: Vec<crate::auth::Role>,
    /// Seconds until it expires; it never does if absent.
    #[serde(default, deserialize_with = "whole_or_null")]
    pub expires_in_s: Option<u64>,
}

/// `POST /v1/jwt-revocations`: single-sign-on tokens to refuse
/// before they expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRevocationRequest {
    /// Every token of this `sub` issued until now (and any without `iat`).
    #[serde(default)]
    pub subject: Option<String>,
    /// The one token with this `jti`.
    #[serde(default)]
    pub jti: Option<String>,
    /// Seconds to keep the revocation (30 days if absent; at most 366
    /// days): longer than the provider's tokens live.
    #[serde(default, deserialize_with = "whole_or_null")]
    pub keep_s: Option<u64>,
    /// Why (kept with it).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Resume after this event id (`Last-Event-ID` wins when both are sent).
    pub after: Option<u64>,
}
