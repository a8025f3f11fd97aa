//! JSON views of ledger values, as the local API shows them. Pure
//! functions of the state: whoever holds a published state can render
//! them, without a round trip to the driver.

use quorate_contracts::{Body, GrantId, GrantRecord, GrantStatus, MemberId, State, Timestamp};

/// A grant's terms, with member ids shown by `name`.
pub(crate) fn terms_json(
    t: &quorate_contracts::GrantTerms,
    name: &dyn Fn(&MemberId) -> String,
) -> serde_json::Value {
    serde_json::json!({
        "grantor": name(&t.grantor),
        "grantee": name(&t.grantee),
        "resources": t.resources.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "actions": t.actions,
        "not_before_ms": t.not_before.0,
        "not_after_ms": t.not_after.0,
        "purpose": t.purpose,
    })
}

/// A grant's standing at `time`: what its status means then.
pub(crate) fn standing(record: &GrantRecord, time: Timestamp) -> &'static str {
    match record.status {
        GrantStatus::Revoked { .. } => "revoked",
        GrantStatus::Ended { .. } => "ended",
        GrantStatus::Active if time >= record.terms.not_after => "expired",
        GrantStatus::Active if time < record.terms.not_before => "not-yet-valid",
        GrantStatus::Active => "active",
    }
}

/// A committed grant: its terms, id, ledger status, commit height, and its
/// standing as of the tip's time (`as_of_ms`).
pub(crate) fn grant_json(
    id: &GrantId,
    record: &GrantRecord,
    tip_time: Timestamp,
    name: &dyn Fn(&MemberId) -> String,
) -> serde_json::Value {
    let mut json = terms_json(&record.terms, name);
    if let Some(map) = json.as_object_mut() {
        map.insert("id".into(), id.to_string().into());
        map.insert("status".into(), serde_json::json!(record.status));
        map.insert(
            "committed_height".into(),
            serde_json::json!(record.committed_height),
        );
        map.insert("standing".into(), standing(record, tip_time).into());
        map.insert("as_of_ms".into(), tip_time.0.into());
    }
    json
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
pub(crate) fn body_json(body: &Body, name: &dyn Fn(&MemberId) -> String) -> serde_json::Value {
    let mut json = match body {
        Body::Grant(terms) => terms_json(terms, name),
        Body::Revoke { grant } => serde_json::json!({ "grant": grant.to_string() }),
        Body::AddMember(member) => {
            serde_json::json!({ "name": member.name, "did": member.did.to_string() })
        }
        Body::RemoveMember { member } => serde_json::json!({ "member": name(member) }),
        Body::RotateKey { member, new_did } => {
            serde_json::json!({ "member": name(member), "new_did": new_did.to_string() })
        }
        Body::SetPolicy(policy) => serde_json::json!({ "policy": format!("{policy:?}") }),
        Body::Genesis(_) => serde_json::json!({}),
    };
    if let Some(map) = json.as_object_mut() {
        map.insert("kind".into(), body.kind().into());
    }
    json
}
