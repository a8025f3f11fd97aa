//! The pipeline's decision, before anything is served: freshness, the
//! contract's `authorize` on the committed state, the grant's window at the
//! chain's time, then the rate limits. Cheap: lookups in the state
//! snapshot and one lock around the buckets, no I/O.

use std::time::Instant;

use quorate_api::refusal::Refusal;
use quorate_contracts::{
    AccessRequest, Action, Decision, DenyReason, GrantId, GrantRecord, GrantStatus, RateLimit,
    ResourcePath, RowsError, State, Timestamp, authorize,
};
use quorate_did::Did;

use super::Gateway;
use super::limits::take;

/// A request the pipeline allowed, under this grant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Allowed {
    pub(super) grant: GrantId,
}

impl Gateway {
    /// Able to decide and record: refuses with `audit-unavailable` while
    /// the audit log cannot be written, and with `stale-ledger` when the
    /// ledger is not fresh.
    pub fn ready(&self) -> Result<(), Refusal> {
        if self.inner.parts.auditor.failure().is_some() {
            return Err(Refusal::AuditUnavailable);
        }
        let age = self
            .inner
            .parts
            .status
            .borrow()
            .last_commit
            .map(|at| at.elapsed());
        if age.is_none_or(|age| age > self.inner.parts.config.max_ledger_age.0) {
            return Err(Refusal::StaleLedger);
        }
        Ok(())
    }

    /// Freshness, membership, grants, rate limits: one authorization and
    /// one rate-limit token.
    pub(super) fn decide(
        &self,
        caller: &Did,
        action: Action,
        path: &ResourcePath,
        purpose: Option<&str>,
    ) -> Result<Allowed, Refusal> {
        self.ready()?;
        let state = self.state();
        let Some(owner) = state.member_by_did(&self.inner.parts.me) else {
            return Err(Refusal::NotServing);
        };
        let [now, chain_time] = self.clocks();
        let decision = authorize(
            &state,
            &AccessRequest {
                owner: owner.id,
                caller,
                action,
                path,
                now,
                purpose,
            },
        )
        .map_err(rows_refusal)?;
        let (grant, rate_limit) = match decision {
            // The window must hold at the chain's time too: from the
            // decision, not a second read of the grant.
            Decision::Allow { grant, window, .. } if chain_time >= window[1] => {
                return Err(Refusal::Denied(DenyReason::Expired { grant }));
            }
            Decision::Allow { grant, window, .. } if chain_time < window[0] => {
                return Err(Refusal::Denied(DenyReason::NotYetValid { grant }));
            }
            Decision::Allow {
                grant, rate_limit, ..
            } => (grant, rate_limit),
            Decision::Deny(reason) => return Err(Refusal::Denied(reason)),
        };
        self.rate_limit(caller, rate_limit.map(|limit| (grant, limit)))?;
        Ok(Allowed { grant })
    }

    /// This node's clock, and the chain's (the tip's time). A grant's
    /// window must hold at both: a gateway whose clock is behind would
    /// otherwise serve a grant past its end, one ahead before its start.
    pub(super) fn clocks(&self) -> [Timestamp; 2] {
        let tip = self.inner.parts.status.borrow().tip_time_ms;
        [(self.inner.clock)(), Timestamp(tip)]
    }

    /// The member's bucket, then the grant's if it has a rate limit.
    pub(super) fn rate_limit(
        &self,
        caller: &Did,
        grant_limit: Option<(GrantId, RateLimit)>,
    ) -> Result<(), Refusal> {
        let config = &self.inner.parts.config;
        let now = Instant::now();
        let Ok(mut limits) = self.inner.limits.lock() else {
            return Err(Refusal::Internal);
        };
        let mut result = take(
            &mut limits.members,
            caller.public_key_bytes(),
            f64::from(config.member_rate.max(1)),
            f64::from(config.member_burst.max(1)),
            now,
        );
        if result.is_ok()
            && let Some((grant, limit)) = grant_limit
        {
            let rate = f64::from(limit.requests.max(1)) / f64::from(limit.per_seconds.max(1));
            result = take(
                &mut limits.grants,
                grant,
                rate,
                f64::from(limit.requests.max(1)),
                now,
            );
        }
        result.map_err(|wait| Refusal::RateLimited {
            retry_after_secs: wait,
        })
    }

    /// Whether `grant` is still active and within its window at both
    /// clocks (checked between the chunks of a download: no new
    /// authorization, no new token).
    pub(super) fn grant_still_holds(&self, grant: GrantId) -> Result<(), Refusal> {
        let state = self.state();
        let clocks = self.clocks();
        let reason = match grant_record(&state, grant).map_err(rows_refusal)? {
            None => Some(DenyReason::NoGrant),
            Some(record) => match record.status {
                GrantStatus::Revoked { .. } => Some(DenyReason::Revoked { grant }),
                GrantStatus::Ended { .. } => Some(DenyReason::Ended { grant }),
                GrantStatus::Active if clocks.iter().any(|t| *t >= record.terms.not_after) => {
                    Some(DenyReason::Expired { grant })
                }
                GrantStatus::Active => None,
            },
        };
        match reason {
            Some(reason) => Err(Refusal::Denied(reason)),
            None => Ok(()),
        }
    }
}

/// `grant`'s record in `state`: the gateway's one read of a grant by id
/// (from the store's snapshot unless a recent block changed it).
fn grant_record(state: &State, grant: GrantId) -> Result<Option<GrantRecord>, RowsError> {
    state.grant(&grant)
}

/// A failed read of the grant rows: refused (`internal`), the cause
/// logged, never sent.
pub(super) fn rows_refusal(e: RowsError) -> Refusal {
    tracing::error!(target: "gateway", error = %e, "reading grant rows failed");
    Refusal::Internal
}
