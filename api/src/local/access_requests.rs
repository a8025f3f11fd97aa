//! Access requests as the local API carries them: a member asks another
//! for access (`POST /v1/access-requests`), the owner accepts (the request
//! becomes its grant proposal) or declines with a reason, and both see
//! where it stands (`GET /v1/access-requests`).

use quorate_contracts::Action;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest note a requester adds for the owner, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 1024;
/// Longest reason of a decline, in bytes.
pub const DECLINE_REASON_BYTES_MAX: usize = 256;

/// `POST /v1/access-requests`: what this organization asks of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccessRequest {
    /// The owner: a member name or its did:key.
    pub to: String,
    /// An offer of the owner's catalog this request answers; its terms
    /// bound the request, and fill in resources and actions left out.
    #[serde(default)]
    pub offer: Option<String>,
    /// Patterns of the owner's objects (`*`, `prefix/*` or a path); the
    /// offer's resource if absent.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Actions asked for; the offer's if absent.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// From when (ms since the Unix epoch); from acceptance if absent.
    #[serde(default, deserialize_with = "super::requests::whole_or_null")]
    pub not_before_ms: Option<u64>,
    /// Until when (ms since the Unix epoch, exclusive). Exactly one of this
    /// and `duration_ms`.
    #[serde(default, deserialize_with = "super::requests::whole_or_null")]
    pub not_after_ms: Option<u64>,
    /// How long, counted from acceptance (ms).
    #[serde(default, deserialize_with = "super::requests::whole_or_null")]
    pub duration_ms: Option<u64>,
    /// Why: the grant's purpose, checked on every request under it.
    #[serde(default)]
    pub purpose: Option<String>,
    /// A note for the owner's approvers (at most 1,024 bytes).
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST /v1/access-requests/{id}/decline`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclineRequest {
    /// Why (1 to 256 bytes); the requester reads it.
    pub reason: String,
}

/// Which requests `GET /v1/access-requests` lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequestQuery {
    /// `incoming` (asked of this organization) or `outgoing` (asked by
    /// it); both if absent.
    pub direction: Option<Direction>,
    /// Only those still open.
    #[serde(default)]
    pub open: Option<bool>,
}

/// Which way a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Asked of this organization.
    Incoming,
    /// Asked by this organization.
    Outgoing,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum AccessRequestState {
    /// Waiting for the owner's decision.
    Open {},
    /// The owner accepted: its grant proposal (whose id the grant takes
    /// once committed).
    Accepted {
        /// The grant proposal's id.
        #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
        proposal: String,
        /// Who accepted: a principal of the owner's (`admin`,
        /// `token:<name>`, `oidc:<sub>`) or `policy:<rule>`.
        by: String,
        /// When (ms since the Unix epoch).
        at_ms: u64,
    },
    /// The owner declined.
    Declined {
        /// Why, as the owner wrote it.
        reason: String,
        /// Who declined (as for `accepted`).
        by: String,
        /// When (ms since the Unix epoch).
        at_ms: u64,
    },
    /// The requester withdrew it.
    Withdrawn {
        /// When (ms since the Unix epoch).
        at_ms: u64,
    },
    /// Nobody decided within the owner's time to keep open requests.
    Expired {
        /// When (ms since the Unix epoch).
        at_ms: u64,
    },
}

impl AccessRequestState {
    /// Whether it still waits for a decision.
    pub fn is_open(&self) -> bool {
        matches!(self, AccessRequestState::Open {})
    }
}

/// One access request, as either side sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessRequestView {
    /// Its id: the hash of what the requester signed (64 hex digits).
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub id: String,
    /// Asked of this organization, or by it.
    pub direction: Direction,
    /// Who asks, by name.
    pub requester: String,
    /// Who is asked, by name.
    pub owner: String,
    /// The offer it answers, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// The patterns asked for.
    pub resources: Vec<String>,
    /// The actions asked for.
    #[schemars(with = "Vec<String>")]
    pub actions: Vec<Action>,
    /// From when (ms since the Unix epoch), if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// Until when (ms since the Unix epoch), if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after_ms: Option<u64>,
    /// How long from acceptance (ms), if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The purpose declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The requester's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the requester made it (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// Where it stands.
    #[serde(flatten)]
    pub state: AccessRequestState,
    /// For an outgoing request still open here: when the owner last
    /// answered about it (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at_ms: Option<u64>,
    /// What the owner's endorsement policy said of an incoming request
    /// (`rule NAME: ask a person`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// `GET /v1/access-requests`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessRequests {
    /// The requests.
    pub requests: Vec<AccessRequestView>,
}
