//! How members find and ask for each other's data: this organization's
//! [`catalog`] of offers (shown to members as DCAT, [`dcat`]), and the
//! access [`desk`] of signed [`request`]s, incoming and outgoing.
//!
//! An incoming request is checked (signature, addressing, bounds, the
//! offer it cites), kept durably, then put to this node's endorsement
//! policy (the driver's, kind `access-request`): `endorse` accepts it,
//! `reject` declines it with the rule's reason, `ask` leaves it to a
//! person. Accepting proposes the grant as this organization, the
//! grantor; the ledger does the rest as for any grant.

pub mod catalog;
pub mod dcat;
pub mod desk;
pub mod request;

use std::sync::Arc;

use quorate_api::local::ProposalRequest;
use quorate_api::local::endorsement::Outcome;
use quorate_contracts::{
    GrantTerms, Member, MemberId, RateLimit, ResourcePattern, State, Timestamp,
};
use quorate_did::{Did, Keypair};
use quorate_ledger::hash::Hash;
use tracing::{info, warn};

use crate::agreement::driver::{Command, Handle, ProposeError};
use catalog::Catalog;
use desk::{Desk, DeskError, Record, Standing, Way, must_be_open};
use request::{REQUEST_CLOCK_SKEW_MS, RequestError, SignedAccessRequest};

/// The catalog and the access desk of one node; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sharing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    catalog: Catalog,
    desk: Desk,
    key: Keypair,
    genesis: Hash,
    driver: Handle,
}

/// Why an incoming request was refused (nothing kept).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// Malformed, out of bounds, or misaddressed: what to fix.
    #[error("{0}")]
    Invalid(String),
    /// Not signed by the member that sent it.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// It cites an offer the requester cannot see.
    #[error("no offer {0:?} in this member's catalog")]
    UnknownOffer(String),
    /// It asks for more than the offer it cites.
    #[error("outside the offer: {0}")]
    OutsideOffer(String),
    /// The desk's bounds.
    #[error(transparent)]
    Desk(#[from] DeskError),
}

/// Why accepting a request did not propose its grant (the request stays
/// open).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The desk refused (unknown, closed, cannot write).
    #[error(transparent)]
    Desk(#[from] DeskError),
    /// The requester is no longer a member.
    #[error("the requester is no longer a member")]
    RequesterGone,
    /// The driver refused the grant proposal.
    #[error("the grant cannot be proposed: {0}")]
    Propose(#[from] ProposeError),
    /// The driver has stopped.
    #[error("the node is stopping")]
    Stopping,
}

impl Sharing {
    /// The catalog and desk of `home_dir` and `data_dir`, for the member
    /// holding `key` on the chain of `genesis`.
    pub fn open(
        home_dir: &std::path::Path,
        data_dir: &std::path::Path,
        key: Keypair,
        genesis: Hash,
        driver: Handle,
    ) -> Result<Self, OpenError> {
        Ok(Self {
            inner: Arc::new(Inner {
                catalog: Catalog::open(home_dir)?,
                desk: Desk::open(data_dir)?,
                key,
                genesis,
                driver,
            }),
        })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The desk.
    pub fn desk(&self) -> &Desk {
        &self.inner.desk
    }

    /// The chain's genesis hash.
    pub fn genesis(&self) -> Hash {
        self.inner.genesis
    }

    /// This member's catalog as `reader` sees it.
    pub fn catalog_for(&self, owner: &Member, reader: &Member) -> serde_json::Value {
        dcat::catalog(owner, &self.inner.catalog.visible_to(reader))
    }

    /// Signs a request as this member.
    pub fn sign(
        &self,
        body: request::AccessRequestBody,
    ) -> Result<SignedAccessRequest, RequestError> {
        SignedAccessRequest::sign(body, &self.inner.key)
    }

    /// This member's key.
    pub fn did(&self) -> Did {
        self.inner.key.did()
    }

    /// Takes a request `requester` sent (over libp2p: its key is the
    /// channel's), checks it, keeps it, and puts it to the policy.
    /// Returns where it stands. A request kept already is answered as it
    /// stands.
    pub async fn receive(
        &self,
        requester: &Member,
        owner: &Member,
        state: &State,
        request: SignedAccessRequest,
        now_ms: u64,
    ) -> Result<Standing, ReceiveError> {
        let invalid = |why: &str| ReceiveError::Invalid(why.to_owned());
        let body = &request.body;
        if body.requester != requester.did {
            return Err(invalid(
                "the request names another requester than its sender",
            ));
        }
        if body.owner != owner.did {
            return Err(invalid("the request is addressed to another member"));
        }
        if body.chain != self.inner.genesis {
            return Err(invalid("the request is for another consortium"));
        }
        if requester.id == owner.id {
            return Err(invalid("a member does not ask itself"));
        }
        if body.created_at_ms.abs_diff(now_ms) > REQUEST_CLOCK_SKEW_MS {
            return Err(invalid(
                "the request's time is more than 10 minutes from the owner's clock",
            ));
        }
        request.verify()?;
        let patterns = body
            .check(state.policy.grant_duration_max_ms)
            .map_err(|e| ReceiveError::Invalid(e.to_string()))?;
        if let Some(offer_id) = &body.offer {
            let offer = self
                .inner
                .catalog
                .get(offer_id)
                .filter(|o| o.visible_to(requester))
                .ok_or_else(|| ReceiveError::UnknownOffer(offer_id.clone()))?;
            offer
                .allows(
                    &patterns,
                    &body.actions,
                    Some(body.span_ms(now_ms)),
                    body.purpose.as_deref(),
                )
                .map_err(ReceiveError::OutsideOffer)?;
        }
        let id = request.id()?;
        let (record, new) = self
            .inner
            .desk
            .receive(request, id, requester.id, owner.id, now_ms)
            .await?;
        if !new {
            return Ok(record.standing);
        }
        info!(target: "access", %id, requester = %requester.name, "access request received");
        Ok(self.judge(record, patterns, state, now_ms).await)
    }

    /// Puts a new incoming request to the endorsement policy and acts on
    /// its verdict; where the request stands then.
    async fn judge(
        &self,
        record: Record,
        patterns: Vec<ResourcePattern>,
        state: &State,
        now_ms: u64,
    ) -> Standing {
        let terms = grant_terms(&record, patterns, now_ms);
        let (reply, verdict) = tokio::sync::oneshot::channel();
        let asked = self
            .inner
            .driver
            .send(Command::JudgeAccess {
                requester: record.requester,
                terms: Box::new(terms),
                reply,
            })
            .await;
        let Some(verdict) = (match asked {
            Some(()) => verdict.await.ok().flatten(),
            None => None,
        }) else {
            return record.standing;
        };
        let note = verdict.note();
        let by = format!("policy:{}", verdict.rule.as_deref().unwrap_or("none"));
        let _ = self
            .inner
            .desk
            .update(&record.id, Way::Incoming, now_ms, |r| {
                r.policy = Some(note.clone());
                Ok(())
            })
            .await;
        let outcome = match verdict.outcome {
            Outcome::Endorse => self
                .accept(&record.id, &by, state, now_ms)
                .await
                .map(|r| r.standing),
            Outcome::Reject => {
                let reason = verdict.reason.unwrap_or(note);
                self.decline(&record.id, &reason, &by, now_ms)
                    .await
                    .map(|r| r.standing)
                    .map_err(AcceptError::from)
            }
            Outcome::Ask => Ok(Standing::Open),
        };
        match outcome {
            Ok(standing) => standing,
            Err(AcceptError::Propose(e)) => {
                // The policy would accept, but the consortium's rules
                // refuse the grant: the requester learns why.
                let reason = format!("the grant cannot be proposed: {e}");
                warn!(target: "access", id = %record.id, %reason, "declining an accepted request");
                self.decline(&record.id, &cut(&reason), &by, now_ms)
                    .await
                    .map_or(Standing::Open, |r| r.standing)
            }
            Err(e) => {
                warn!(target: "access", id = %record.id, error = %e, "the policy's verdict was not carried out");
                Standing::Open
            }
        }
    }

    /// Accepts an open incoming request: proposes its grant as this
    /// member, then records the proposal. `by` is who accepted.
    pub async fn accept(
        &self,
        id: &Hash,
        by: &str,
        state: &State,
        now_ms: u64,
    ) -> Result<Record, AcceptError> {
        let record = self.inner.desk.begin_accepting(id, now_ms).await?;
        let accepted = self.propose_accepted(&record, by, state, now_ms).await;
        self.inner.desk.end_accepting(id).await;
        accepted
    }

    /// [`Sharing::accept`] once the request is claimed.
    async fn propose_accepted(
        &self,
        record: &Record,
        by: &str,
        state: &State,
        now_ms: u64,
    ) -> Result<Record, AcceptError> {
        let id = &record.id;
        let grantee = state
            .members
            .get(&record.requester)
            .ok_or(AcceptError::RequesterGone)?;
        let body = &record.request.body;
        let not_before_ms = body.not_before_ms.map(|t| t.max(now_ms));
        let start = not_before_ms.unwrap_or(now_ms);
        let request = ProposalRequest::Grant {
            grantee: grantee.did.to_string(),
            resources: body.resources.clone(),
            actions: body.actions.clone(),
            not_before_ms,
            not_after_ms: start.saturating_add(body.span_ms(now_ms)),
            purpose: body.purpose.clone(),
            rate_limit: None::<RateLimit>,
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .driver
            .send(Command::ProposeRequest { request, reply })
            .await
            .ok_or(AcceptError::Stopping)?;
        let proposal = answer.await.map_err(|_| AcceptError::Stopping)??;
        let accepted = self
            .inner
            .desk
            .update(id, Way::Incoming, now_ms, |r| {
                must_be_open(r)?;
                r.standing = Standing::Accepted {
                    proposal,
                    by: by.to_owned(),
                    at_ms: now_ms,
                };
                Ok(())
            })
            .await?;
        info!(target: "access", %id, %proposal, %by, "access request accepted");
        Ok(accepted)
    }

    /// Declines an open incoming request with `reason`.
    pub async fn decline(
        &self,
        id: &Hash,
        reason: &str,
        by: &str,
        now_ms: u64,
    ) -> Result<Record, DeskError> {
        let declined = self
            .inner
            .desk
            .update(id, Way::Incoming, now_ms, |r| {
                must_be_open(r)?;
                r.standing = Standing::Declined {
                    reason: reason.to_owned(),
                    by: by.to_owned(),
                    at_ms: now_ms,
                };
                Ok(())
            })
            .await?;
        info!(target: "access", %id, %by, "access request declined");
        Ok(declined)
    }

    /// Where an incoming request of `requester`'s stands (another
    /// member's is no such request).
    pub async fn standing_for(
        &self,
        requester: MemberId,
        id: &Hash,
        now_ms: u64,
    ) -> Option<Standing> {
        self.inner
            .desk
            .get(id, now_ms)
            .await
            .filter(|r| r.way == Way::Incoming && r.requester == requester)
            .map(|r| r.standing)
    }

    /// The requester withdraws its open request.
    pub async fn withdraw_incoming(
        &self,
        requester: MemberId,
        id: &Hash,
        now_ms: u64,
    ) -> Result<Standing, DeskError> {
        if self.standing_for(requester, id, now_ms).await.is_none() {
            return Err(DeskError::Unknown(*id));
        }
        if self.inner.desk.is_accepting(id).await {
            // Its grant is being proposed: too late to withdraw.
            return Err(DeskError::Closed {
                id: *id,
                state: "being accepted",
            });
        }
        self.inner
            .desk
            .update(id, Way::Incoming, now_ms, |r| {
                must_be_open(r)?;
                r.standing = Standing::Withdrawn { at_ms: now_ms };
                Ok(())
            })
            .await
            .map(|r| r.standing)
    }
}

/// The grant an incoming request would become if accepted at `now_ms`.
fn grant_terms(record: &Record, resources: Vec<ResourcePattern>, now_ms: u64) -> GrantTerms {
    let body = &record.request.body;
    let start = body.not_before_ms.unwrap_or(now_ms).max(now_ms);
    let mut actions = body.actions.clone();
    actions.sort();
    GrantTerms {
        grantor: record.owner,
        grantee: record.requester,
        resources,
        actions,
        not_before: Timestamp(start),
        not_after: Timestamp(start.saturating_add(body.span_ms(now_ms))),
        purpose: body.purpose.clone(),
        rate_limit: None,
    }
}

/// `text` cut to a decline reason's bound at a character boundary.
fn cut(text: &str) -> String {
    let max = quorate_api::local::access_requests::DECLINE_REASON_BYTES_MAX;
    quorate_contracts::truncate_at_char(text, max).to_owned()
}

/// Why the catalog or the desk cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The catalog.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// The desk.
    #[error(transparent)]
    Desk(#[from] desk::OpenError),
}
