//! The catalog and access requests, as the local API asks for them: this
//! organization's offers, members' catalogs over libp2p, and both sides
//! of access requests.

use quorate_api::local::access_requests::{
    AccessRequestQuery, AccessRequestView, AccessRequests, Direction, NewAccessRequest,
};
use quorate_api::local::catalog::{Offer, OfferView, Offers};
use quorate_ledger::hash::Hash;

use super::*;
use crate::sharing::catalog::{OfferError, PutError};
use crate::sharing::desk::{DeskError, Record, Standing, Way};
use crate::sharing::request::AccessRequestBody;
use crate::sharing::{AcceptError, dcat};

/// Outgoing requests checked with their owners at once, for a list.
const CHECKS_AT_ONCE: usize = 8;

fn offer_problem(e: PutError) -> Problem {
    match e {
        PutError::Offer(OfferError::Full) | PutError::Offer(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-offer",
            e.to_string(),
        ),
        PutError::Io(e) => internal("cannot write the catalog", &e),
        PutError::Poisoned => Problem::internal(),
    }
}

fn desk_problem(e: DeskError) -> Problem {
    Problem::from(crate::gateway::desk_refusal(e))
}

fn request_id(id: &str) -> Result<Hash, Problem> {
    id.parse().map_err(|_| {
        Problem::bad_request(format!(
            "{id:?} is not an access request id (64 hex digits)"
        ))
    })
}

impl LocalNode {
    pub(super) fn offers_now(&self) -> Offers {
        Offers {
            offers: self
                .gateway
                .sharing()
                .catalog()
                .list()
                .into_iter()
                .map(|o| o.view)
                .collect(),
        }
    }

    pub(super) fn offer_now(&self, id: &str) -> Result<OfferView, Problem> {
        self.gateway
            .sharing()
            .catalog()
            .get(id)
            .map(|o| o.view)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "unknown-offer",
                    format!("no offer {id:?}"),
                )
            })
    }

    pub(super) async fn write_offer(
        &self,
        id: String,
        offer: Offer,
    ) -> Result<(OfferView, bool), Problem> {
        let sharing = self.gateway.sharing().clone();
        let now = now_ms();
        match tokio::task::spawn_blocking(move || sharing.catalog().put(&id, &offer, now)).await {
            Ok(Ok((checked, created))) => Ok((checked.view, created)),
            Ok(Err(e)) => Err(offer_problem(e)),
            Err(e) => Err(internal("the catalog task failed", &e)),
        }
    }

    pub(super) async fn remove_offer(&self, id: String) -> Result<(), Problem> {
        let sharing = self.gateway.sharing().clone();
        let shown = id.clone();
        match tokio::task::spawn_blocking(move || sharing.catalog().remove(&id)).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-offer",
                format!("no offer {shown:?}"),
            )),
            Ok(Err(e)) => Err(offer_problem(e)),
            Err(e) => Err(internal("the catalog task failed", &e)),
        }
    }

    /// Every offer, as a member in every audience reads the catalog.
    pub(super) fn own_catalog(&self) -> Result<serde_json::Value, Problem> {
        let state = self.gateway.state();
        let me = state
            .member_by_did(self.gateway.me())
            .ok_or_else(|| not_a_member("this node is not a member".into()))?;
        Ok(dcat::catalog(me, &self.gateway.sharing().catalog().list()))
    }

    pub(super) async fn fetch_catalog(&self, peer: &str) -> Result<serde_json::Value, Problem> {
        let peer = self.peer_did(peer)?;
        match self.ask_peer(&peer, &Request::Catalog).await? {
            Response::Catalog(bytes) if bytes.len() <= protocol::CATALOG_BYTES_MAX => {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .ok_or_else(|| unexpected("the member's catalog is not a JSON object"))
            }
            _ => Err(unexpected("unexpected answer")),
        }
    }

    /// Asks `request.to` for access (see [`quorate_api::local::Node::request_access`]).
    pub(super) async fn ask_for_access(
        &self,
        request: NewAccessRequest,
    ) -> Result<AccessRequestView, Problem> {
        let state = self.gateway.state();
        let sharing = self.gateway.sharing().clone();
        let me = state
            .member_by_did(self.gateway.me())
            .cloned()
            .ok_or_else(|| not_a_member("only members ask for access".into()))?;
        let owner = state
            .member_named(&request.to)
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("no member {:?}", request.to)))?;
        if owner.id == me.id {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-access-request",
                "this organization's data is its own: propose a grant instead",
            ));
        }
        sharing
            .desk()
            .may_ask(owner.id)
            .await
            .map_err(desk_problem)?;
        let (mut resources, mut actions) = (request.resources, request.actions);
        if let Some(offer) = request
            .offer
            .as_deref()
            .filter(|_| resources.is_empty() || actions.is_empty())
        {
            // Left out: the offer's own terms, as its owner lists them.
            let catalog = self.fetch_catalog(&owner.name).await?;
            let terms = dcat::offer_terms(&catalog, offer).ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "unknown-offer",
                    format!(
                        "{} lists no offer {offer:?} for this organization",
                        owner.name
                    ),
                )
            })?;
            if resources.is_empty() {
                resources = vec![terms.resource];
            }
            if actions.is_empty() {
                actions = terms.actions;
            }
        }
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| internal("no randomness for the nonce", &e))?;
        let body = AccessRequestBody {
            chain: sharing.genesis(),
            requester: me.did,
            owner: owner.did,
            offer: request.offer,
            resources,
            actions,
            not_before_ms: request.not_before_ms,
            not_after_ms: request.not_after_ms,
            duration_ms: request.duration_ms,
            purpose: request.purpose,
            message: request.message,
            created_at_ms: now_ms(),
            nonce,
        };
        body.check(state.policy.grant_duration_max_ms)
            .map_err(|e| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-access-request",
                    e.to_string(),
                )
            })?;
        let signed = sharing
            .sign(body)
            .map_err(|e| internal("cannot sign the access request", &e))?;
        let id = signed
            .id()
            .map_err(|e| internal("cannot hash the access request", &e))?;
        let answer = self
            .ask_peer(
                &owner.did,
                &Request::AccessRequest(Box::new(signed.clone())),
            )
            .await?;
        let Response::AccessRequest(standing) = answer else {
            return Err(unexpected("unexpected answer"));
        };
        let now = now_ms();
        let record = Record {
            request: signed,
            id,
            way: Way::Outgoing,
            requester: me.id,
            owner: owner.id,
            standing: standing.bounded(now_ms()),
            stored_at_ms: now,
            checked_at_ms: Some(now),
            policy: None,
        };
        let kept = sharing.desk().sent(record).await.map_err(desk_problem)?;
        Ok(kept.view(&state))
    }

    /// Asks the owner where an outgoing open request stands, and keeps its
    /// answer; the record as it stands (unchanged if the owner cannot be
    /// asked now).
    async fn check_with_owner(&self, record: Record) -> Record {
        if record.way != Way::Outgoing || !record.standing.is_open() {
            return record;
        }
        let state = self.gateway.state();
        let Some(owner) = state.members.get(&record.owner) else {
            return record;
        };
        let asked = self
            .ask_peer(&owner.did, &Request::AccessStatus { id: record.id })
            .await;
        let standing = match asked {
            Ok(Response::AccessRequest(standing)) => standing.bounded(now_ms()),
            // The owner lost it (or never kept it): it will not be decided.
            Err(p) if p.code == "unknown-access-request" => Standing::Expired { at_ms: now_ms() },
            _ => return record,
        };
        let now = now_ms();
        self.gateway
            .sharing()
            .desk()
            .update(&record.id, Way::Outgoing, now, |r| {
                r.standing = standing;
                r.checked_at_ms = Some(now);
                Ok(())
            })
            .await
            .unwrap_or(record)
    }

    pub(super) async fn list_access_requests(
        &self,
        query: AccessRequestQuery,
    ) -> Result<AccessRequests, Problem> {
        let records = self
            .gateway
            .sharing()
            .desk()
            .list(now_ms())
            .await
            .map_err(desk_problem)?;
        let wanted = |r: &Record| {
            let way = match r.way {
                Way::Incoming => Direction::Incoming,
                Way::Outgoing => Direction::Outgoing,
            };
            query.direction.is_none_or(|d| d == way)
        };
        let records: Vec<Record> = records.into_iter().filter(wanted).collect();
        let checked: Vec<Record> = futures::stream::iter(records)
            .map(|r| self.check_with_owner(r))
            .buffered(CHECKS_AT_ONCE)
            .collect()
            .await;
        let state = self.gateway.state();
        Ok(AccessRequests {
            requests: checked
                .iter()
                .filter(|r| query.open.is_none_or(|open| open == r.standing.is_open()))
                .map(|r| r.view(&state))
                .collect(),
        })
    }

    pub(super) async fn show_access_request(&self, id: &str) -> Result<AccessRequestView, Problem> {
        let id = request_id(id)?;
        let record = self
            .gateway
            .sharing()
            .desk()
            .get(&id, now_ms())
            .await
            .ok_or_else(|| desk_problem(DeskError::Unknown(id)))?;
        let record = self.check_with_owner(record).await;
        Ok(record.view(&self.gateway.state()))
    }

    pub(super) async fn accept_request(
        &self,
        id: &str,
        by: &Principal,
    ) -> Result<AccessRequestView, Problem> {
        let id = request_id(id)?;
        let state = self.gateway.state();
        match self
            .gateway
            .sharing()
            .accept(&id, &by.label, &state, now_ms())
            .await
        {
            Ok(record) => Ok(record.view(&state)),
            Err(AcceptError::Desk(e)) => Err(desk_problem(e)),
            Err(AcceptError::Propose(e)) => Err(Problem::from(e)),
            Err(AcceptError::RequesterGone) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-access-request",
                "the requester is no longer a member",
            )),
            Err(AcceptError::Stopping) => Err(Problem::from(DriverGone)),
        }
    }

    pub(super) async fn decline_request(
        &self,
        id: &str,
        reason: &str,
        by: &Principal,
    ) -> Result<AccessRequestView, Problem> {
        let id = request_id(id)?;
        let record = self
            .gateway
            .sharing()
            .decline(&id, reason, &by.label, now_ms())
            .await
            .map_err(desk_problem)?;
        Ok(record.view(&self.gateway.state()))
    }

    pub(super) async fn withdraw_request(&self, id: &str) -> Result<AccessRequestView, Problem> {
        let id = request_id(id)?;
        let desk = self.gateway.sharing().desk().clone();
        let record = desk
            .get(&id, now_ms())
            .await
            .filter(|r| r.way == Way::Outgoing)
            .ok_or_else(|| desk_problem(DeskError::Unknown(id)))?;
        crate::sharing::desk::must_be_open(&record).map_err(desk_problem)?;
        let state = self.gateway.state();
        let owner = state
            .members
            .get(&record.owner)
            .ok_or_else(|| Problem::not_found("the owner is no longer a member".to_owned()))?;
        let standing = match self
            .ask_peer(&owner.did, &Request::AccessWithdraw { id })
            .await?
        {
            Response::AccessRequest(standing) => standing.bounded(now_ms()),
            _ => return Err(unexpected("unexpected answer")),
        };
        let now = now_ms();
        let record = desk
            .update(&id, Way::Outgoing, now, |r| {
                r.standing = standing;
                r.checked_at_ms = Some(now);
                Ok(())
            })
            .await
            .map_err(desk_problem)?;
        Ok(record.view(&state))
    }
}
