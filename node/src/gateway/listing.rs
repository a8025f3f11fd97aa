//! Listings: a page of the objects the caller may `list`, read only from
//! the parts of the namespace its grants cover.

use quorate_api::objects::{ListQuery, Listing, ObjectInfo};
use quorate_api::refusal::Refusal;
use quorate_contracts::{
    AccessRequest, Action, Decision, DenyReason, GrantStatus, MemberId, ResourcePath,
    ResourcePattern, State, Timestamp, authorize,
};
use quorate_did::Did;

use super::accounting::Audited;
use super::objects::{LIST_LIMIT_MAX, ObjectError, ObjectStore};
use super::{Gateway, storage_failed};

impl Gateway {
    /// The pipeline for a listing: only objects the caller may `list`.
    pub async fn list(
        &self,
        caller: &Did,
        transport: &str,
        query: &ListQuery,
        purpose: Option<&str>,
    ) -> Result<Listing, Refusal> {
        let resource = format!("{}*", query.prefix);
        let request = Audited {
            transport,
            caller: Some(caller),
            action: Action::List,
            resource: &resource,
            purpose,
        };
        let outcome = self.list_allowed(caller, query, purpose).await;
        match &outcome {
            Ok(listing) => {
                let objects = listing.objects.len() as u64;
                self.record_allowed(request, None, objects, None).await
            }
            Err(refusal) => self.record_refused(request, refusal).await,
        }
        outcome
    }

    async fn list_allowed(
        &self,
        caller: &Did,
        query: &ListQuery,
        purpose: Option<&str>,
    ) -> Result<Listing, Refusal> {
        // Freshness, membership and the member's rate, once per listing.
        self.ready()?;
        let state = self.state();
        let Some(member) = state.member_by_did(caller).map(|m| m.id) else {
            return Err(Refusal::Denied(DenyReason::NotAMember));
        };
        let owner = state
            .member_by_did(&self.inner.parts.me)
            .map(|m| m.id)
            .ok_or(Refusal::NotServing)?;
        self.rate_limit(caller, None)?;
        // Only the parts of the namespace the caller may list are read, so
        // a page, and its `next` cursor, come from what it may see.
        let clocks = self.clocks();
        let scopes = list_scopes(&state, member, owner, clocks, &query.prefix, purpose)
            .map_err(super::decide::rows_refusal)?;
        let store = self.inner.parts.objects.clone();
        let after = query.after.clone();
        let limit = query.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
        let mut listing = tokio::task::spawn_blocking(move || {
            list_in_scopes(&store, &scopes, after.as_deref(), limit)
        })
        .await
        .map_err(|_| Refusal::Internal)?
        .map_err(storage_failed)?;
        // Each object against the same snapshot, as a read would be.
        let [now, _] = clocks;
        listing.objects.retain(|object| {
            ResourcePath::parse(&object.path).is_ok_and(|path| {
                let request = AccessRequest {
                    owner,
                    caller,
                    action: Action::List,
                    path: &path,
                    now,
                    purpose,
                };
                // An unreadable row lists nothing: deny by default.
                matches!(authorize(&state, &request), Ok(Decision::Allow { .. }))
            })
        });
        Ok(listing)
    }
}

/// A part of the owner's namespace a caller may list: every path under a
/// key prefix, or one path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Prefix(String),
    Exact(ResourcePath),
}

impl Scope {
    fn start(&self) -> &str {
        match self {
            Scope::Prefix(prefix) => prefix,
            Scope::Exact(path) => path.as_str(),
        }
    }
}

/// The parts of `owner`'s namespace under `prefix` that `grantee` may
/// list now, disjoint and in key order. Cost: the grants between the two.
fn list_scopes(
    state: &State,
    grantee: MemberId,
    owner: MemberId,
    clocks: [Timestamp; 2],
    prefix: &str,
    purpose: Option<&str>,
) -> Result<Vec<Scope>, quorate_contracts::RowsError> {
    let mut prefixes = Vec::new();
    let mut exact = Vec::new();
    for (_, record) in state.grants_between(&grantee, &owner)? {
        let terms = &record.terms;
        let listable = record.status == GrantStatus::Active
            && clocks
                .iter()
                .all(|now| terms.not_before <= *now && *now < terms.not_after)
            && terms.actions.contains(&Action::List)
            && terms.purpose.as_deref().is_none_or(|p| purpose == Some(p));
        if !listable {
            continue;
        }
        for pattern in &terms.resources {
            match pattern {
                ResourcePattern::All => prefixes.push(String::new()),
                ResourcePattern::Prefix(p) => prefixes.push(format!("{p}/")),
                ResourcePattern::Exact(p) => exact.push(p.clone()),
            }
        }
    }
    // Intersected with the query's prefix: a granted prefix inside it, or
    // the query's inside a granted one.
    let mut prefixes: Vec<String> = prefixes
        .into_iter()
        .filter_map(|granted| {
            if granted.starts_with(prefix) {
                Some(granted)
            } else if prefix.starts_with(&granted) {
                Some(prefix.to_owned())
            } else {
                None
            }
        })
        .collect();
    prefixes.sort();
    // In key order a prefix comes before everything it covers.
    let mut kept: Vec<String> = Vec::new();
    for p in prefixes {
        if !kept.last().is_some_and(|k| p.starts_with(k.as_str())) {
            kept.push(p);
        }
    }
    let mut scopes: Vec<Scope> = exact
        .into_iter()
        .filter(|path| {
            path.as_str().starts_with(prefix)
                && !kept.iter().any(|k| path.as_str().starts_with(k.as_str()))
        })
        .map(Scope::Exact)
        .collect();
    scopes.extend(kept.into_iter().map(Scope::Prefix));
    scopes.sort_by(|a, b| a.start().cmp(b.start()));
    scopes.dedup();
    Ok(scopes)
}

/// A page of the objects in `scopes` after `after` (blocking). `next` is
/// set when the page is full; it is the last object returned, one the
/// caller may see.
fn list_in_scopes(
    store: &ObjectStore,
    scopes: &[Scope],
    after: Option<&str>,
    limit: usize,
) -> Result<Listing, ObjectError> {
    let mut objects = Vec::new();
    for scope in scopes {
        let remaining = limit - objects.len();
        if remaining == 0 {
            break;
        }
        match scope {
            Scope::Prefix(prefix) => {
                let page = store.list(prefix, after, remaining)?;
                let full = page.next.is_some();
                objects.extend(page.objects);
                if full {
                    break;
                }
            }
            Scope::Exact(path) => {
                if after.is_some_and(|after| path.as_str() <= after) {
                    continue;
                }
                if let Some(info) = store.meta(path)? {
                    objects.push(info);
                }
            }
        }
    }
    let next = (objects.len() == limit)
        .then(|| objects.last().map(|o: &ObjectInfo| o.path.clone()))
        .flatten();
    Ok(Listing { objects, next })
}
