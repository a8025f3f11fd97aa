//! Ledger values as the local API shows them (the types of
//! [`quorate_api::local::responses`]). Pure functions of the state:
//! whoever holds a published state can render them, without a round trip
//! to the driver.

use quorate_api::local::responses::{self as view, GrantView, LedgerGrantStatus, Standing};
use quorate_contracts::{Body, GrantId, GrantRecord, GrantStatus, MemberId, State, Timestamp};

/// A grant's terms, with member ids shown by `name`.
pub(crate) fn terms(
    t: &quorate_contracts::GrantTerms,
    name: &dyn Fn(&MemberId) -> String,
) -> view::GrantTerms {
    view::GrantTerms {
        grantor: name(&t.grantor),
        grantee: name(&t.grantee),
        resources: t.resources.iter().map(|r| r.to_string()).collect(),
        actions: t.actions.clone(),
        not_before_ms: t.not_before.0,
        not_after_ms: t.not_after.0,
        purpose: t.purpose.clone(),
    }
}

/// A grant's standing at `time`: what its status means then.
pub(crate) fn standing(record: &GrantRecord, time: Timestamp) -> Standing {
    match record.status {
        GrantStatus::Revoked { .. } => Standing::Revoked,
        GrantStatus::Ended { .. } => Standing::Ended,
        GrantStatus::Active if time >= record.terms.not_after => Standing::Expired,
        GrantStatus::Active if time < record.terms.not_before => Standing::NotYetValid,
        GrantStatus::Active => Standing::Active,
    }
}

/// A committed grant: its terms, id, ledger status, commit height, and its
/// standing as of the tip's time (`as_of_ms`).
pub(crate) fn grant(
    id: &GrantId,
    record: &GrantRecord,
    tip_time: Timestamp,
    name: &dyn Fn(&MemberId) -> String,
) -> GrantView {
    GrantView {
        id: id.to_string(),
        terms: terms(&record.terms, name),
        status: match record.status {
            GrantStatus::Active => LedgerGrantStatus::Active,
            GrantStatus::Revoked { height } => LedgerGrantStatus::Revoked { height },
            GrantStatus::Ended { height } => LedgerGrantStatus::Ended { height },
        },
        committed_height: record.committed_height,
        standing: standing(record, tip_time),
        as_of_ms: tip_time.0,
    }
}

/// Names members by their name in `state`, or their id if gone.
pub(crate) fn member_name(state: &State) -> impl Fn(&MemberId) -> String + '_ {
    member_name_in(Some(state))
}

/// [`member_name`], for a node that may have no state yet (before
/// genesis): every member is then named by its id.
pub(crate) fn member_name_in(state: Option<&State>) -> impl Fn(&MemberId) -> String + '_ {
    move |id| {
        state
            .and_then(|state| state.members.get(id))
            .map(|m| m.name.clone())
            .unwrap_or_else(|| id.to_string())
    }
}

/// A proposal's body as the API shows it.
pub(crate) fn body(body: &Body, name: &dyn Fn(&MemberId) -> String) -> view::ProposalBody {
    use view::ProposalBody as B;
    match body {
        Body::Grant(t) => B::Grant(terms(t, name)),
        Body::Revoke { grant } => B::Revoke {
            grant: grant.to_string(),
        },
        Body::AddMember(member) => B::AddMember {
            name: member.name.clone(),
            did: member.did.to_string(),
        },
        Body::RemoveMember { member } => B::RemoveMember {
            member: name(member),
        },
        Body::RotateKey { member, new_did } => B::RotateKey {
            member: name(member),
            new_did: new_did.to_string(),
        },
        Body::SetPolicy(policy) => B::SetPolicy {
            policy: format!("{policy:?}"),
        },
        Body::Genesis(_) => B::Genesis {},
    }
}
