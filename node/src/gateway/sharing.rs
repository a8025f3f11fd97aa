//! Members' requests about data rather than for it: reading this
//! organization's catalog, and filing, following and withdrawing access
//! requests. The same door as a read: a fresh ledger, a current member's
//! key, the member's rate; the catalog reads, requests and withdrawals are
//! audited (status checks are the requester's own record, and are not).

use std::sync::Arc;

use quorate_api::refusal::Refusal;
use quorate_contracts::{Member, State};
use quorate_did::Did;
use quorate_ledger::hash::Hash;

use super::{Gateway, audit};
use crate::sharing::desk::{DeskError, Standing};
use crate::sharing::request::SignedAccessRequest;
use crate::sharing::{ReceiveError, Sharing};

/// Who asks, and who is asked, on the committed ledger.
struct Parties {
    state: Arc<State>,
    me: Member,
    caller: Member,
}

impl Gateway {
    /// This node's catalog and access desk.
    pub fn sharing(&self) -> &Sharing {
        &self.inner.parts.sharing
    }

    /// The checks every such request meets: freshness, this node a
    /// member, the caller a member's current key, the member's rate.
    fn parties(&self, caller: &Did) -> Result<Parties, Refusal> {
        self.ready()?;
        let state = self.state();
        let me = state
            .member_by_did(&self.inner.parts.me)
            .cloned()
            .ok_or(Refusal::NotServing)?;
        let them = state
            .member_by_did(caller)
            .cloned()
            .ok_or_else(|| Refusal::NotAMemberKey(Box::new(*caller)))?;
        self.rate_limit(caller, None)?;
        Ok(Parties {
            state,
            me,
            caller: them,
        })
    }

    /// This organization's catalog as `caller` may see it (DCAT, JSON-LD).
    pub async fn catalog_for(
        &self,
        caller: &Did,
        transport: &str,
    ) -> Result<serde_json::Value, Refusal> {
        let answer = self
            .parties(caller)
            .map(|p| self.sharing().catalog_for(&p.me, &p.caller));
        self.record_sharing(
            transport,
            caller,
            "catalog",
            "catalog",
            answer.as_ref().err(),
        )
        .await;
        answer
    }

    /// Files `caller`'s access request; where it stands once kept (and
    /// put to the endorsement policy).
    pub(super) async fn access_request(
        &self,
        caller: &Did,
        transport: &str,
        request: SignedAccessRequest,
    ) -> Result<Standing, Refusal> {
        let id = request
            .id()
            .map_or_else(|_| "-".to_owned(), |id| id.to_string());
        let answer = async {
            let parties = self.parties(caller)?;
            let now = self.clocks()[0].0;
            self.sharing()
                .receive(&parties.caller, &parties.me, &parties.state, request, now)
                .await
                .map_err(receive_refusal)
        }
        .await;
        self.record_sharing(
            transport,
            caller,
            "access-request",
            &id,
            answer.as_ref().err(),
        )
        .await;
        answer
    }

    /// Where one of `caller`'s requests stands.
    pub(super) async fn access_status(&self, caller: &Did, id: &Hash) -> Result<Standing, Refusal> {
        let parties = self.parties(caller)?;
        let now = self.clocks()[0].0;
        self.sharing()
            .standing_for(parties.caller.id, id, now)
            .await
            .ok_or(Refusal::UnknownAccessRequest)
    }

    /// `caller` withdraws one of its open requests.
    pub(super) async fn access_withdraw(
        &self,
        caller: &Did,
        transport: &str,
        id: &Hash,
    ) -> Result<Standing, Refusal> {
        let answer = async {
            let parties = self.parties(caller)?;
            let now = self.clocks()[0].0;
            self.sharing()
                .withdraw_incoming(parties.caller.id, id, now)
                .await
                .map_err(desk_refusal)
        }
        .await;
        self.record_sharing(
            transport,
            caller,
            "access-withdraw",
            &id.to_string(),
            answer.as_ref().err(),
        )
        .await;
        answer
    }

    async fn record_sharing(
        &self,
        transport: &str,
        caller: &Did,
        action: &str,
        resource: &str,
        refusal: Option<&Refusal>,
    ) {
        let counter = if refusal.is_some() {
            &self.inner.denied
        } else {
            &self.inner.allowed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .parts
            .auditor
            .record(audit::Decision {
                transport: transport.to_owned(),
                caller: Some(caller.to_string()),
                action: action.to_owned(),
                resource: resource.to_owned(),
                decision: if refusal.is_some() { "deny" } else { "allow" }.to_owned(),
                reason: refusal.map(|r| r.code().as_str().to_owned()),
                grant: None,
                bytes: 0,
                purpose: None,
                digest: None,
            })
            .await;
    }
}

/// A refused incoming request, in the gateway's words.
fn receive_refusal(e: ReceiveError) -> Refusal {
    match e {
        ReceiveError::Invalid(why) => Refusal::InvalidAccessRequest(why),
        ReceiveError::Request(e) => Refusal::InvalidAccessRequest(e.to_string()),
        ReceiveError::UnknownOffer(id) => Refusal::UnknownOffer(id),
        ReceiveError::OutsideOffer(why) => Refusal::OutsideOffer(why),
        ReceiveError::Desk(e) => desk_refusal(e),
    }
}

/// The desk's refusal, in the gateway's words.
pub(crate) fn desk_refusal(e: DeskError) -> Refusal {
    match e {
        DeskError::Unknown(_) => Refusal::UnknownAccessRequest,
        DeskError::Closed { state, .. } => Refusal::AccessRequestClosed(state),
        e @ (DeskError::TooManyOpen | DeskError::TooFrequent | DeskError::Full) => {
            Refusal::TooManyAccessRequests(e.to_string())
        }
        DeskError::Io(e) => {
            tracing::error!(target: "access", error = %e, "cannot write the access requests");
            Refusal::Internal
        }
    }
}
