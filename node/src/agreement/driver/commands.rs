//! The driver's commands from the local API: proposals, decisions and the
//! proposal list, with their typed refusals.

use std::sync::Arc;

use quorate_contracts::{Body, Timestamp};
use quorate_ledger::entry::{Entry, EntryId, Proposal};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info};

use crate::agreement::mempool::{AddError, LocalDecision, ProposalState};
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
    /// List proposals.
    Proposals {
        /// The list, as the API shows it.
        reply: oneshot::Sender<Vec<quorate_api::local::responses::ProposalView>>,
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

/// Why a proposal was not endorsed or refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecideError {
    /// This node is not a member (only members endorse).
    #[error("this node is not a member")]
    NotAMember,
    /// No ledger yet.
    #[error("the node has no ledger yet")]
    NoLedger,
    /// No such proposal is open (unknown, or committed and gone).
    #[error("no proposal {0}")]
    UnknownProposal(EntryId),
    /// The endorsement could not be encoded.
    #[error("the endorsement cannot be encoded: {0}")]
    Encode(#[from] quorate_ledger::codec::EncodeError),
    /// The mempool refused this node's own endorsement (a bug).
    #[error("the mempool refused this node's endorsement: {0}")]
    Refused(AddError),
}

impl From<AddError> for DecideError {
    fn from(e: AddError) -> Self {
        match e {
            AddError::Unknown(id) => Self::UnknownProposal(id),
            other => Self::Refused(other),
        }
    }
}

impl Driver {
    pub(super) async fn maybe_auto_endorse(&mut self, id: EntryId) -> Result<(), DriverError> {
        if self.config.approval != ApprovalPolicy::Auto {
            return Ok(());
        }
        let undecided = self.mempool.get(&id).is_some_and(|p| {
            p.decision == LocalDecision::Undecided && p.state != ProposalState::Expired
        });
        if undecided && let Err(reason) = self.endorse(id).await {
            debug!(target: "mempool", %id, %reason, "not endorsed");
        }
        Ok(())
    }

    pub(super) async fn endorse(&mut self, id: EntryId) -> Result<(), DecideError> {
        let me = self.me().ok_or(DecideError::NotAMember)?;
        let chain = self.ledger.chain().ok_or(DecideError::NoLedger)?;
        let pending = self
            .mempool
            .get(&id)
            .ok_or(DecideError::UnknownProposal(id))?;
        let mut entry = pending.entry.clone();
        entry.endorse(me, &self.key)?;
        let Some(endorsement) = entry.endorsements.iter().find(|e| e.member == me).cloned() else {
            // `endorse` just added it.
            return Err(DecideError::Refused(AddError::BadEndorsement(me)));
        };
        self.mempool
            .add_endorsement(&id, endorsement.clone(), chain)?;
        let _ = self.mempool.decide(&id, LocalDecision::Endorsed);
        let bytes = protocol::encode(&MempoolMessage::Endorsement {
            entry: id,
            endorsement,
        })?;
        self.net.publish(Topic::Mempool, bytes).await;
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
            Command::Decide { id, approve, reply } => {
                let result = if approve {
                    self.endorse(id).await
                } else {
                    self.mempool
                        .decide(&id, LocalDecision::Refused)
                        .map_err(Into::into)
                };
                let _ = reply.send(result);
            }
            Command::Proposals { reply } => {
                use quorate_api::local::responses as view;
                let name = crate::views::member_name_in(self.ledger.chain().map(|c| c.state()));
                let views = self
                    .mempool
                    .iter()
                    .map(|(id, p)| view::ProposalView {
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
                            ProposalState::Rejected { reason } => view::ProposalState::Rejected {
                                reason: reason.clone(),
                            },
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
                    })
                    .collect();
                let _ = reply.send(views);
            }
        }
        Ok(())
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
        let _ = self.mempool.decide(&id, LocalDecision::Endorsed);
        if adds_member {
            self.publish_sync_access();
        }
        let bytes = protocol::encode(&MempoolMessage::Entry(Box::new(entry)))?;
        self.net.publish(Topic::Mempool, bytes).await;
        info!(target: "mempool", %id, "proposed");
        Ok(id)
    }
}
