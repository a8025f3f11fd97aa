//! The gateway's decision: may this caller do this to this resource now?

use quorate_did::Did;
use serde::Serialize;

use crate::grants::RowsError;
use crate::model::{Action, GrantId, GrantStatus, RateLimit, ResourcePath};
use crate::state::State;
use crate::{MemberId, Timestamp};

/// One request, as the gateway sees it after authenticating the caller.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// Whose data: the serving node's member.
    pub owner: MemberId,
    /// The authenticated caller's key.
    pub caller: &'a Did,
    /// What it wants to do.
    pub action: Action,
    /// To what.
    pub path: &'a ResourcePath,
    /// When (the gateway's clock).
    pub now: Timestamp,
    /// The purpose the caller declared, if any. A grant that names a
    /// purpose serves only requests that declare it.
    pub purpose: Option<&'a str>,
}

/// The answer. A denial is data, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Decision {
    /// Allowed under this grant.
    Allow {
        /// The grant that allows it.
        grant: GrantId,
        /// Its rate limit, for the gateway to enforce.
        rate_limit: Option<RateLimit>,
        /// Its window `[not_before, not_after)`, for a caller that must
        /// hold it at a second clock too (without reading the grant again).
        window: [Timestamp; 2],
    },
    /// Refused, and why.
    Deny(DenyReason),
}

/// Why a request is refused, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DenyReason {
    /// The caller's key is not a member's.
    NotAMember,
    /// The caller holds no grant from the owner.
    NoGrant,
    /// Grants exist, but none covers this resource.
    OutOfScope,
    /// A covering grant does not allow this action.
    ActionNotGranted {
        /// The grant.
        grant: GrantId,
    },
    /// A covering grant is not yet valid.
    NotYetValid {
        /// The grant.
        grant: GrantId,
    },
    /// A covering grant has expired.
    Expired {
        /// The grant.
        grant: GrantId,
    },
    /// A covering grant was ended by a member's removal.
    Ended {
        /// The grant.
        grant: GrantId,
    },
    /// A covering grant was revoked.
    Revoked {
        /// The grant.
        grant: GrantId,
    },
    /// A covering grant names a purpose the request did not declare.
    PurposeMismatch {
        /// The grant.
        grant: GrantId,
    },
}

impl DenyReason {
    /// Stable machine-readable code (the HTTP problem type's suffix).
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    /// The reason without the grant it names.
    pub fn kind(&self) -> DenyKind {
        match self {
            DenyReason::NotAMember => DenyKind::NotAMember,
            DenyReason::NoGrant => DenyKind::NoGrant,
            DenyReason::OutOfScope => DenyKind::OutOfScope,
            DenyReason::ActionNotGranted { .. } => DenyKind::ActionNotGranted,
            DenyReason::NotYetValid { .. } => DenyKind::NotYetValid,
            DenyReason::Expired { .. } => DenyKind::Expired,
            DenyReason::Ended { .. } => DenyKind::Ended,
            DenyReason::Revoked { .. } => DenyKind::Revoked,
            DenyReason::PurposeMismatch { .. } => DenyKind::PurposeMismatch,
        }
    }

    /// The grant the reason names, if any.
    pub fn grant(&self) -> Option<GrantId> {
        match self {
            DenyReason::ActionNotGranted { grant }
            | DenyReason::NotYetValid { grant }
            | DenyReason::Expired { grant }
            | DenyReason::Ended { grant }
            | DenyReason::Revoked { grant }
            | DenyReason::PurposeMismatch { grant } => Some(*grant),
            _ => None,
        }
    }

    /// How telling the reason is: when several grants refuse, the most
    /// telling reason is reported.
    fn rank(&self) -> u8 {
        match self {
            DenyReason::NotAMember => 0,
            DenyReason::NoGrant => 1,
            DenyReason::OutOfScope => 2,
            DenyReason::ActionNotGranted { .. } => 3,
            DenyReason::NotYetValid { .. } => 4,
            DenyReason::Expired { .. } => 5,
            DenyReason::Ended { .. } => 6,
            DenyReason::Revoked { .. } => 7,
            // Everything else held: the closest to an allow.
            DenyReason::PurposeMismatch { .. } => 8,
        }
    }
}

/// A [`DenyReason`] without its grant: what a denial's code alone says (a
/// peer's refusal arrives as its code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyKind {
    /// [`DenyReason::NotAMember`].
    NotAMember,
    /// [`DenyReason::NoGrant`].
    NoGrant,
    /// [`DenyReason::OutOfScope`].
    OutOfScope,
    /// [`DenyReason::ActionNotGranted`].
    ActionNotGranted,
    /// [`DenyReason::NotYetValid`].
    NotYetValid,
    /// [`DenyReason::Expired`].
    Expired,
    /// [`DenyReason::Ended`].
    Ended,
    /// [`DenyReason::Revoked`].
    Revoked,
    /// [`DenyReason::PurposeMismatch`].
    PurposeMismatch,
}

impl DenyKind {
    /// Every kind.
    pub const ALL: [DenyKind; 9] = [
        DenyKind::NotAMember,
        DenyKind::NoGrant,
        DenyKind::OutOfScope,
        DenyKind::ActionNotGranted,
        DenyKind::NotYetValid,
        DenyKind::Expired,
        DenyKind::Ended,
        DenyKind::Revoked,
        DenyKind::PurposeMismatch,
    ];

    /// Stable machine-readable code (the HTTP problem type's suffix); the
    /// one place the deny codes are written.
    pub fn code(self) -> &'static str {
        match self {
            DenyKind::NotAMember => "not-a-member",
            DenyKind::NoGrant => "no-grant",
            DenyKind::OutOfScope => "out-of-scope",
            DenyKind::ActionNotGranted => "action-not-granted",
            DenyKind::NotYetValid => "not-yet-valid",
            DenyKind::Expired => "expired-grant",
            DenyKind::Ended => "ended-grant",
            DenyKind::Revoked => "revoked-grant",
            DenyKind::PurposeMismatch => "purpose-mismatch",
        }
    }

    /// The kind whose code is `code`.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

/// Decides `request` against `state`: allow iff some grant from the owner
/// to the caller's member is active, in its window
/// (`not_before ≤ now < not_after`), allows the action, covers the path,
/// and names no purpose or the one the request declares. Deny by default,
/// with the most telling reason.
///
/// Cost: a hash lookup for the caller, one for the (caller, owner) pair,
/// then only the grants between those two. A failure to read the grants is
/// an error, never an answer: the caller refuses the request.
pub fn authorize(state: &State, request: &AccessRequest<'_>) -> Result<Decision, RowsError> {
    let Some(caller) = state.member_by_did(request.caller) else {
        return Ok(Decision::Deny(DenyReason::NotAMember));
    };
    let mut best = DenyReason::NoGrant;
    for (id, record) in &state.grants_between(&caller.id, &request.owner)? {
        let terms = &record.terms;
        let reason = if !terms.resources.iter().any(|p| p.matches(request.path)) {
            DenyReason::OutOfScope
        } else {
            match record.status {
                GrantStatus::Revoked { .. } => DenyReason::Revoked { grant: *id },
                GrantStatus::Ended { .. } => DenyReason::Ended { grant: *id },
                GrantStatus::Active if request.now >= terms.not_after => {
                    DenyReason::Expired { grant: *id }
                }
                GrantStatus::Active if request.now < terms.not_before => {
                    DenyReason::NotYetValid { grant: *id }
                }
                GrantStatus::Active if !terms.actions.contains(&request.action) => {
                    DenyReason::ActionNotGranted { grant: *id }
                }
                GrantStatus::Active
                    if terms
                        .purpose
                        .as_deref()
                        .is_some_and(|p| request.purpose != Some(p)) =>
                {
                    DenyReason::PurposeMismatch { grant: *id }
                }
                GrantStatus::Active => {
                    return Ok(Decision::Allow {
                        grant: *id,
                        rate_limit: terms.rate_limit,
                        window: [terms.not_before, terms.not_after],
                    });
                }
            }
        };
        if reason.rank() > best.rank() {
            best = reason;
        }
    }
    Ok(Decision::Deny(best))
}
