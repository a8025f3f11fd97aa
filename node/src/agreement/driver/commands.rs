//! The driver's commands from the local API: proposals, decisions and the
//! proposal list, with their typed refusals.

use std::sync::Arc;

use quorate_contracts::{Body, Timestamp};
use quorate_ledger::entry::{Entry, EntryId, Proposal};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info};

use quorate_api::local::endorsement::Outcome;

use crate::agreement::mempool::{AddError, LocalDecision, ProposalState, Rejection, Withdrawal};
use crate::net::Topic;
use crate::net::protocol::{self, MempoolMessage};

use super::*;

/// Capacity of the command channel from the API.
pub const COMMANDS_MAX: usize = 256;

/// Requests from the API.
#[derive(Debug)]
pub enum Command {
    /// Propose an entry as this member.
    Propose {
        /// What to propose.
        body: Body,
        /// Its id, or why it was refused.
        reply: oneshot::Sender<Result<EntryId, ProposeError>>,
    },
    /// Approve (endorse) or reject a proposal.
    Decide {
        /// The proposal.
        id: EntryId,
        /// Endorse it?
        approve: bool,
        /// Why it is rejected (for `approve: false`; gossiped, signed).
        reason: Option<String>,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), DecideError>>,
    },
    /// Withdraw a proposal this member made.
    Withdraw {
        /// The proposal.
        id: EntryId,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), DecideError>>,
    },
    /// Propose from an API request (names and DIDs resolved here).
    ProposeRequest {
        /// The request.
        request: quorate_api::local::ProposalRequest,
        /// Its id, or why it was refused.
        reply: oneshot::Sender<Result<EntryId, ProposeError>>,
    },
    /// List proposals, open and closed (or open only).
    Proposals {
        /// Only pending and eligible ones.
        open_only: bool,
        /// The list, as the API shows it.
        reply: oneshot::Sender<Vec<quorate_api::local::responses::ProposalView>>,
    },
    /// One proposal, if the mempool holds it.
    Proposal {
        /// The proposal.
        id: EntryId,
        /// As the API shows it.
        reply: oneshot::Sender<Option<quorate_api::local::responses::ProposalView>>,
    },
    /// The endorsement policy in force.
    EndorsementPolicy {
        /// It, and where it comes from.
        reply: oneshot::Sender<quorate_api::local::endorsement::EndorsementPolicyView>,
    },
    /// Replace the endorsement policy (already checked and written to the
    /// home by the caller); undecided proposals are judged again.
    SetEndorsementPolicy {
        /// The new policy.
        policy: Box<crate::agreement::policy::Policy>,
        /// Where it comes from.
        source: String,
        /// Done.
        reply: oneshot::Sender<()>,
    },
    /// What the endorsement policy says of a member's access request
    /// (counted and logged like a proposal's verdict); `None` if this node
    /// is not a member.
    JudgeAccess {
        /// Who asks.
        requester: quorate_contracts::MemberId,
        /// The grant it would become (this node the grantor).
        terms: Box<quorate_contracts::GrantTerms>,
        /// The verdict.
        reply: oneshot::Sender<Option<crate::agreement::policy::Verdict>>,
    },
}

/// A client of the driver, for the API; cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) status: watch::Receiver<Status>,
    pub(super) state: watch::Receiver<Arc<quorate_contracts::State>>,
}

impl Handle {
    /// Sends a command; `None` if the driver has stopped.
    pub async fn send(&self, command: Command) -> Option<()> {
        self.commands.send(command).await.ok()
    }

    /// The committed state, updated as blocks with entries commit.
    pub fn state(&self) -> watch::Receiver<Arc<quorate_contracts::State>> {
        self.state.clone()
    }

    /// The status channel (for freshness checks without a copy).
    pub fn status_receiver(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The latest status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A handle on no driver: its commands come out of the receiver, its
    /// state and status are the watches given (tests of what calls the
    /// driver, without one).
    #[cfg(any(test, feature = "test-harness"))]
    pub fn detached(
        state: watch::Receiver<Arc<quorate_contracts::State>>,
        status: watch::Receiver<Status>,
    ) -> (Self, mpsc::Receiver<Command>) {
        let (commands, received) = mpsc::channel(COMMANDS_MAX);
        (
            Self {
                commands,
                status,
                state,
            },
            received,
        )
    }
}

/// Why a proposal was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// This node is not a member (only members propose).
    #[error("this node is not a member")]
    NotAMember,
    /// No ledger yet.
    #[error("the node has no ledger yet")]
    NoLedger,
    /// The request names a member the ledger does not have.
    #[error("no member named {0:?}")]
    UnknownMember(String),
    /// A resource pattern that does not parse.
    #[error("resource {pattern:?}: {reason}")]
    BadResource {
        /// As given.
        pattern: String,
        /// Why it does not parse.
        reason: quorate_contracts::PathError,
    },
    /// A grant id that is not one.
    #[error("{0:?} is not a grant id (64 hex digits)")]
    BadGrantId(String),
    /// A DID that is not a did:key.
    #[error("{did:?} is not a did:key: {reason}")]
    BadDid {
        /// As given.
        did: String,
        /// Why not.
        reason: quorate_did::ParseError,
    },
    /// The consortium's rules refuse it.
    #[error("{0}")]
    Invalid(quorate_contracts::Violation),
    /// The mempool holds as many proposals as it may, or as many of this
    /// member's (a later try may succeed).
    #[error("{0}")]
    Full(AddError),
    /// No randomness for the nonce.
    #[error("no randomness for the nonce: {0}")]
    Entropy(getrandom::Error),
    /// The proposal could not be encoded.
    #[error("the proposal cannot be encoded: {0}")]
    Encode(#[from] quorate_ledger::codec::EncodeError),
    /// The mempool refused our own proposal for a reason that only another
    /// member's can have (a bug).
    #[error("the mempool refused this node's own proposal: {0}")]
    Refused(AddError),
}

impl From<AddError> for ProposeError {
    fn from(e: AddError) -> Self {
        match e {
            AddError::Rule(violation) => Self::Invalid(violation),
            AddError::Full | AddError::ProposerFull => Self::Full(e),
            other => Self::Refused(other),
        }
    }
}

/// Why a proposal was not endorsed, rejected or withdrawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecideError {
    /// This node is not a member (only members endorse).
    #[error("this node is not a member")]
    NotAMember,
    /// No ledger yet.
    #[error("the node has no ledger yet")]
    NoLedger,
    /// No such proposal is known (unknown, or closed long ago).
    #[error("no proposal {0}")]
    UnknownProposal(EntryId),
    /// The proposal is closed: committed, failed, withdrawn or expired.
    #[error("proposal {id} has closed ({state}); it can no longer be decided")]
    Closed {
        /// Its id.
        id: EntryId,
        /// How it ended, in words.
        state: String,
    },
    /// This member decided otherwise already, and that was gossiped.
    #[error("this member has {earlier} proposal {id} already; a decision is final")]
    AlreadyDecided {
        /// The proposal.
        id: EntryId,
        /// `endorsed` or `rejected`.
        earlier: &'static str,
    },
    /// Only the proposer withdraws a proposal.
    #[error("proposal {0} was made by another member; only its proposer withdraws it")]
    NotProposer(EntryId),
    /// The endorsement could not be encoded.
    #[error("the endorsement cannot be encoded: {0}")]
    Encode(#[from] quorate_ledger::codec::EncodeError),
    /// The mempool refused this node's own decision (a bug).
    #[error("the mempool refused this node's decision: {0}")]
    Refused(AddError),
}

impl From<AddError> for DecideError {
    fn from(e: AddError) -> Self {
        match e {
            AddError::Unknown(id) => Self::UnknownProposal(id),
            AddError::Closed { id, state } => Self::Closed {
                id,
                state: closed_words(&state),
            },
            other => Self::Refused(other),
        }
    }
}

/// A mempool refusal of this member's decision: one that conflicts with
/// its earlier decision is `AlreadyDecided` (409), the rest as usual.
fn decided(id: EntryId, e: AddError) -> DecideError {
    match e {
        AddError::Decided { earlier, .. } => DecideError::AlreadyDecided { id, earlier },
        other => other.into(),
    }
}

/// How a closed proposal ended, in words.
fn closed_words(state: &ProposalState) -> String {
    match state {
        ProposalState::Committed { height } => format!("committed at height {height}"),
        ProposalState::Failed { reason } => format!("failed: {reason}"),
        ProposalState::Withdrawn => "withdrawn".to_owned(),
        ProposalState::Expired => "expired".to_owned(),
        ProposalState::Pending { .. } | ProposalState::Eligible => "open".to_owned(),
    }
}

impl Driver {
    /// Asks this node's endorsement policy about a proposal it has not
    /// decided, and acts on the answer: endorse, reject, or leave it to a
    /// person. Logged and counted, once per proposal (again only when
    /// `again`: the policy was replaced). Never about this node's own
    /// proposals, nor one whose signatures already hold its decision.
    pub(super) async fn apply_policy(&mut self, id: EntryId, again: bool) {
        let (Some(me), Some(chain)) = (self.me(), self.ledger.chain()) else {
            return;
        };
        let Some(pending) = self.mempool.get(&id) else {
            return;
        };
        if pending.decision != LocalDecision::Undecided
            || !pending.state.is_open()
            || pending.entry.proposal.proposer == me
            || (pending.policy.is_some() && !again)
        {
            return;
        }
        if let Some(signed) = self.mempool.signed_decision(&id, me) {
            // Decided before a restart: the gossip brought it back.
            let _ = self.mempool.decide(&id, me, signed);
            return;
        }
        let verdict = self
            .policy
            .judge(me, chain.state(), &pending.entry.proposal);
        info!(target: "policy", %id, rule = verdict.rule.as_deref().unwrap_or("-"), outcome = verdict.outcome_name(), "endorsement policy");
        self.count_policy(&verdict);
        self.mempool.note_policy(&id, verdict.note());
        let result = match verdict.outcome {
            Outcome::Endorse => self.endorse(id).await,
            Outcome::Reject => {
                let reason = verdict.reason.clone().unwrap_or_else(|| verdict.note());
                self.reject_proposal(id, &reason).await
            }
            Outcome::Ask => Ok(()),
        };
        if let Err(reason) = result {
            debug!(target: "mempool", %id, %reason, "the policy's decision was not carried out");
        }
    }

    fn count_policy(&mut self, verdict: &crate::agreement::policy::Verdict) {
        let key = (
            verdict.outcome_name(),
            verdict.rule.clone().unwrap_or_default(),
        );
        // Rule names come from this node's own policy, but policies can be
        // replaced: the counters stay bounded all the same.
        if self.policy_decisions.len() < POLICY_COUNTERS_MAX
            || self.policy_decisions.contains_key(&key)
        {
            *self.policy_decisions.entry(key).or_default() += 1;
        }
    }

    /// Records this member's decision, refusing one that differs from a
    /// decision already made (recorded here, or signed and gossiped before
    /// a restart). `Ok(false)`: the same decision is signed already, so
    /// there is nothing to sign or gossip again.
    fn record_decision(
        &mut self,
        id: EntryId,
        me: quorate_contracts::MemberId,
        decision: LocalDecision,
    ) -> Result<bool, DecideError> {
        let pending = self
            .mempool
            .get(&id)
            .ok_or(DecideError::UnknownProposal(id))?;
        if !pending.state.is_open() {
            return Err(DecideError::Closed {
                id,
                state: closed_words(&pending.state),
            });
        }
        let signed = self.mempool.signed_decision(&id, me);
        if let Some(signed) = signed
            && signed != decision
        {
            let _ = self.mempool.decide(&id, me, signed);
            let earlier = if signed == LocalDecision::Refused {
                "rejected"
            } else {
                "endorsed"
            };
            return Err(DecideError::AlreadyDecided { id, earlier });
        }
        self.mempool
            .decide(&id, me, decision)
            .map_err(|e| decided(id, e))?;
        Ok(signed.is_none())
    }

    pub(super) async fn endorse(&mut self, id: EntryId) -> Result<(), DecideError> {
        let me = self.me().ok_or(DecideError::NotAMember)?;
        if !self.record_decision(id, me, LocalDecision::Endorsed)? {
            return Ok(());
        }
        let chain = self.ledger.chain().ok_or(DecideError::NoLedger)?;
        let Some(pending) = self.mempool.get(&id) else {
            return Err(DecideError::UnknownProposal(id));
        };
        let endorsement = quorate_ledger::entry::Endorsement {
            member: me,
            signature: quorate_ledger::verified::sign_own(
                &self.key,
                &quorate_ledger::entry::endorsement_message(&pending.entry.id()?),
            ),
        };
        self.mempool
            .add_endorsement(&id, endorsement.clone(), chain)
            .map_err(|e| decided(id, e))?;
        let bytes = protocol::encode(&MempoolMessage::Endorsement {
            entry: id,
            endorsement,
        })?;
        self.net.publish(Topic::Mempool, bytes).await;
        Ok(())
    }

    pub(super) async fn reject_proposal(
        &mut self,
        id: EntryId,
        reason: &str,
    ) -> Result<(), DecideError> {
        let me = self.me().ok_or(DecideError::NotAMember)?;
        if !self.record_decision(id, me, LocalDecision::Refused)? {
            return Ok(());
        }
        let chain = self.ledger.chain().ok_or(DecideError::NoLedger)?;
        let rejection = Rejection::sign(&id, me, reason, &self.key);
        self.mempool
            .add_rejection(&id, rejection.clone(), chain, now())
            .map_err(|e| decided(id, e))?;
        let bytes = protocol::encode(&MempoolMessage::Rejection {
            entry: id,
            rejection,
        })?;
        self.net.publish(Topic::Mempool, bytes).await;
        info!(target: "mempool", %id, "rejected");
        Ok(())
    }

    pub(super) async fn withdraw(&mut self, id: EntryId) -> Result<(), DecideError> {
        let me = self.me().ok_or(DecideError::NotAMember)?;
        let chain = self.ledger.chain().ok_or(DecideError::NoLedger)?;
        let pending = self
            .mempool
            .get(&id)
            .ok_or(DecideError::UnknownProposal(id))?;
        if pending.entry.proposal.proposer != me {
            return Err(DecideError::NotProposer(id));
        }
        let withdrawal = Withdrawal::sign(&id, &self.key);
        self.mempool.withdraw(&id, &withdrawal, chain, now())?;
        let bytes = protocol::encode(&MempoolMessage::Withdrawal {
            entry: id,
            withdrawal,
        })?;
        self.net.publish(Topic::Mempool, bytes).await;
        info!(target: "mempool", %id, "withdrawn");
        Ok(())
    }

    pub(super) async fn on_command(&mut self, command: Command) -> Result<(), DriverError> {
        match command {
            Command::Propose { body, reply } => {
                let result = self.propose(body).await;
                let _ = reply.send(result);
                self.propose_if_work()?;
            }
            Command::ProposeRequest { request, reply } => {
                let result = match self.body_of(request) {
                    Ok(body) => self.propose(body).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
                self.propose_if_work()?;
            }
            Command::Decide {
                id,
                approve,
                reason,
                reply,
            } => {
                let result = if approve {
                    self.endorse(id).await
                } else {
                    let reason = reason.unwrap_or_else(|| "rejected by its operator".to_owned());
                    self.reject_proposal(id, &reason).await
                };
                let _ = reply.send(result);
                self.propose_if_work()?;
            }
            Command::Withdraw { id, reply } => {
                let _ = reply.send(self.withdraw(id).await);
            }
            Command::Proposals { open_only, reply } => {
                let views = self
                    .mempool
                    .iter()
                    .filter(|(_, p)| !open_only || p.state.is_open())
                    .map(|(id, p)| self.proposal_view(id, p))
                    .collect();
                let _ = reply.send(views);
            }
            Command::Proposal { id, reply } => {
                let view = self.mempool.get(&id).map(|p| self.proposal_view(&id, p));
                let _ = reply.send(view);
            }
            Command::EndorsementPolicy { reply } => {
                let _ = reply.send(quorate_api::local::endorsement::EndorsementPolicyView {
                    source: self.policy_source.clone(),
                    policy: self.policy.document().clone(),
                });
            }
            Command::SetEndorsementPolicy {
                policy,
                source,
                reply,
            } => {
                self.policy = *policy;
                self.policy_source = source;
                info!(target: "policy", source = %self.policy_source, rules = self.policy.document().rules.len(), "endorsement policy replaced");
                let undecided: Vec<EntryId> = self
                    .mempool
                    .iter()
                    .filter(|(_, p)| p.state.is_open() && p.decision == LocalDecision::Undecided)
                    .map(|(id, _)| *id)
                    .collect();
                for id in undecided {
                    self.apply_policy(id, true).await;
                }
                let _ = reply.send(());
                self.propose_if_work()?;
            }
            Command::JudgeAccess {
                requester,
                terms,
                reply,
            } => {
                let verdict = match (self.me(), self.ledger.chain()) {
                    (Some(me), Some(chain)) => {
                        let verdict =
                            self.policy
                                .judge_access(me, chain.state(), requester, &terms);
                        info!(target: "policy", rule = verdict.rule.as_deref().unwrap_or("-"), outcome = verdict.outcome_name(), "endorsement policy, access request");
                        self.count_policy(&verdict);
                        Some(verdict)
                    }
                    _ => None,
                };
                let _ = reply.send(verdict);
            }
        }
        Ok(())
    }

    /// A proposal as the API shows it, members by name.
    fn proposal_view(
        &self,
        id: &EntryId,
        p: &crate::agreement::mempool::Pending,
    ) -> quorate_api::local::responses::ProposalView {
        use quorate_api::local::responses as view;
        let name = crate::views::member_name_in(self.ledger.chain().map(|c| c.state()));
        view::ProposalView {
            id: id.to_string(),
            proposer: name(&p.entry.proposal.proposer),
            body: crate::views::body(&p.entry.proposal.body, &name),
            state: match &p.state {
                ProposalState::Pending {
                    endorsements,
                    required,
                } => view::ProposalState::Pending {
                    endorsements: *endorsements as u64,
                    required: *required,
                },
                ProposalState::Eligible => view::ProposalState::Eligible,
                ProposalState::Committed { height } => {
                    view::ProposalState::Committed { height: *height }
                }
                ProposalState::Failed { reason } => view::ProposalState::Failed {
                    reason: reason.clone(),
                },
                ProposalState::Withdrawn => view::ProposalState::Withdrawn,
                ProposalState::Expired => view::ProposalState::Expired,
            },
            decision: match p.decision {
                LocalDecision::Undecided => view::LocalDecision::Undecided,
                LocalDecision::Endorsed => view::LocalDecision::Endorsed,
                LocalDecision::Refused => view::LocalDecision::Refused,
            },
            endorsers: p
                .entry
                .endorsements
                .iter()
                .map(|e| name(&e.member))
                .collect(),
            rejections: p
                .rejections
                .values()
                .map(|r| view::RejectionView {
                    member: name(&r.member),
                    reason: r.reason.clone(),
                })
                .collect(),
            policy: p.policy.clone(),
            created_at_ms: p.entry.proposal.created_at.0,
        }
    }

    /// Turns an API request into an entry body against the current state.
    pub(super) fn body_of(
        &self,
        request: quorate_api::local::ProposalRequest,
    ) -> Result<Body, ProposeError> {
        use quorate_api::local::ProposalRequest;
        let chain = self.ledger.chain().ok_or(ProposeError::NoLedger)?;
        let state = chain.state();
        match request {
            ProposalRequest::Grant {
                grantee,
                resources,
                mut actions,
                not_before_ms,
                not_after_ms,
                purpose,
                rate_limit,
            } => {
                let grantor = self.me().ok_or(ProposeError::NotAMember)?;
                let grantee = state
                    .member_named(&grantee)
                    .map(|m| m.id)
                    .ok_or(ProposeError::UnknownMember(grantee))?;
                let resources = resources
                    .iter()
                    .map(|r| {
                        quorate_contracts::ResourcePattern::parse(r).map_err(|reason| {
                            ProposeError::BadResource {
                                pattern: r.clone(),
                                reason,
                            }
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                actions.sort();
                actions.dedup();
                Ok(Body::Grant(quorate_contracts::GrantTerms {
                    grantor,
                    grantee,
                    resources,
                    actions,
                    not_before: Timestamp(not_before_ms.unwrap_or(now().0)),
                    not_after: Timestamp(not_after_ms),
                    purpose,
                    rate_limit,
                }))
            }
            ProposalRequest::Revoke { grant } => Ok(Body::Revoke {
                grant: grant.parse().map_err(|_| ProposeError::BadGrantId(grant))?,
            }),
            ProposalRequest::AddMember { name, did } => {
                let did = did
                    .parse()
                    .map_err(|reason| ProposeError::BadDid { did, reason })?;
                Ok(Body::AddMember(quorate_contracts::NewMember { name, did }))
            }
            ProposalRequest::RemoveMember { member } => {
                let member = state
                    .member_named(&member)
                    .map(|m| m.id)
                    .ok_or(ProposeError::UnknownMember(member))?;
                Ok(Body::RemoveMember { member })
            }
            ProposalRequest::RotateKey { did } => {
                let new_did = did
                    .parse()
                    .map_err(|reason| ProposeError::BadDid { did, reason })?;
                let member = self.me().ok_or(ProposeError::NotAMember)?;
                Ok(Body::RotateKey { member, new_did })
            }
        }
    }

    pub(super) async fn propose(&mut self, body: Body) -> Result<EntryId, ProposeError> {
        let me = self.me().ok_or(ProposeError::NotAMember)?;
        let chain = self.ledger.chain().ok_or(ProposeError::NoLedger)?;
        let adds_member = matches!(body, Body::AddMember(_));
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(ProposeError::Entropy)?;
        let proposal = Proposal {
            chain_id: chain.chain_id().to_owned(),
            epoch: chain.state().epoch,
            proposer: me,
            nonce: u64::from_be_bytes(nonce),
            created_at: now(),
            body,
        };
        let entry = Entry::propose(proposal, &self.key)?;
        let id = self.mempool.add_proposal(entry.clone(), chain, now())?;
        let _ = self.mempool.decide(&id, me, LocalDecision::Endorsed);
        if adds_member {
            self.publish_sync_access();
        }
        let bytes = protocol::encode(&MempoolMessage::Entry(Box::new(entry)))?;
        self.net.publish(Topic::Mempool, bytes).await;
        info!(target: "mempool", %id, "proposed");
        Ok(id)
    }
}
