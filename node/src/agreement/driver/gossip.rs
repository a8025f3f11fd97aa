//! Gossip: what the driver does with members' consensus and mempool
//! messages, and what it sends again (resends, and forged entries under
//! fault injection).

use quorate_ledger::consensus::Input;
use tracing::debug;

use crate::agreement::mempool::ProposalState;
use crate::net::Topic;
use crate::net::protocol::{self, ConsensusMessage, MempoolMessage};

use super::*;

impl Driver {
    pub(super) fn on_consensus_message(
        &mut self,
        message: ConsensusMessage,
        from: Option<quorate_did::Did>,
    ) {
        let Some(chain) = self.ledger.chain() else {
            return;
        };
        let next = chain.tip().height + 1;
        let height = match &message {
            ConsensusMessage::Proposal(p) => p.height,
            ConsensusMessage::Vote(v) => v.height,
        };
        if height > next {
            // Early, or we are behind (sync will catch up): keep a bounded few.
            if height == next + 1 && self.future.len() < FUTURE_MESSAGES_MAX {
                self.future.push((message, from));
            }
            return;
        }
        if height < next {
            return;
        }
        let input = match message {
            ConsensusMessage::Proposal(proposal) => {
                // Cheap checks first: a proposal not signed by its round's
                // proposer never gets its block checked.
                if let Err(reason) = quorate_ledger::consensus::authenticate_proposal(
                    chain.chain_id(),
                    &chain.validators(),
                    &proposal,
                ) {
                    self.reject_from(from, reason);
                    return;
                }
                let valid = match self.ledger.check_block(&proposal.value) {
                    Ok(checked) => {
                        self.remember_checked(&proposal.value, checked);
                        true
                    }
                    Err(e) => {
                        debug!(target: "consensus", height, error = %e, "proposed block is invalid");
                        false
                    }
                };
                let timely = check_timely(&proposal.value, now()).is_ok();
                if !timely {
                    // Its proposer's clock is ahead of ours, or ours behind.
                    self.reject_from(from, PROPOSAL_TIME_AHEAD);
                }
                Input::Proposal {
                    proposal,
                    valid,
                    timely,
                }
            }
            ConsensusMessage::Vote(vote) => Input::Vote(vote),
        };
        self.inputs.push_back((input, from));
    }

    /// Returns whether the message is valid to forward.
    pub(super) async fn on_mempool_message(
        &mut self,
        message: MempoolMessage,
    ) -> Result<bool, DriverError> {
        let Some(chain) = self.ledger.chain() else {
            return Ok(false);
        };
        match message {
            MempoolMessage::Entry(entry) => {
                let adds_member =
                    matches!(entry.proposal.body, quorate_contracts::Body::AddMember(_));
                match self.mempool.add_proposal(*entry, chain, now()) {
                    Ok(id) => {
                        if adds_member {
                            // The node it names may sync from now on.
                            self.publish_sync_access();
                        }
                        self.apply_policy(id, false).await;
                        Ok(true)
                    }
                    Err(e) => {
                        debug!(target: "mempool", error = %e, "proposal not taken");
                        Ok(!matches!(e, crate::agreement::mempool::AddError::Unsigned))
                    }
                }
            }
            MempoolMessage::Endorsement { entry, endorsement } => Ok(self
                .mempool
                .add_endorsement(&entry, endorsement, chain)
                .is_ok()),
            MempoolMessage::Rejection { entry, rejection } => {
                let taken = self.mempool.add_rejection(&entry, rejection, chain, now());
                if let Err(e) = &taken {
                    debug!(target: "mempool", %entry, error = %e, "rejection not taken");
                }
                Ok(taken.is_ok())
            }
            MempoolMessage::Withdrawal { entry, withdrawal } => {
                use crate::agreement::mempool::AddError;
                let taken = self.mempool.withdraw(&entry, &withdrawal, chain, now());
                // A repeat for a proposal closed already, or one for a
                // proposal not seen here, is no fault: it is passed on (its
                // signature is checked where the proposal is known).
                Ok(match taken {
                    Ok(()) | Err(AddError::Closed { .. } | AddError::Unknown(_)) => true,
                    Err(e) => {
                        debug!(target: "mempool", %entry, error = %e, "withdrawal not taken");
                        false
                    }
                })
            }
        }
    }

    /// Gossips again, with every endorsement and rejection this node
    /// holds, the proposals that have waited longer than [`RESEND_AFTER`]:
    /// gossip is not resent by itself, and a proposal or decision published
    /// while a link was down would otherwise wait for its expiry. A
    /// proposal that failed or was withdrawn has its rejections or its
    /// withdrawal sent again for a proposal TTL, so that every member
    /// learns how it ended. Receivers merge what they get; at most
    /// [`RESENDS_MAX`] proposals every [`RESEND_INTERVAL`], open ones first.
    pub(super) async fn resend_stale_proposals(&mut self) {
        if self.last_resend.elapsed() < RESEND_INTERVAL {
            return;
        }
        self.last_resend = Instant::now();
        let Some(chain) = self.ledger.chain() else {
            return;
        };
        let ttl = chain.state().policy.proposal_ttl_ms;
        let now_ms = now().0;
        let cutoff = now_ms.saturating_sub(RESEND_AFTER.as_millis() as u64);
        let waited = |p: &&crate::agreement::mempool::Pending| p.received_at.0 <= cutoff;
        let cursor = self.resend_cursor;
        let open = self
            .mempool
            .iter_from(cursor)
            .map(|(_, p)| p)
            .filter(waited)
            .filter(|p| p.state.is_open());
        let ended = self
            .mempool
            .iter_from(cursor)
            .map(|(_, p)| p)
            .filter(waited)
            .filter(|p| {
                matches!(
                    p.state,
                    ProposalState::Failed { .. } | ProposalState::Withdrawn
                ) && now_ms.saturating_sub(p.received_at.0) <= ttl
            });
        let mut messages = Vec::new();
        let mut last = None;
        for p in open.chain(ended).take(RESENDS_MAX) {
            let Ok(id) = p.entry.id() else { continue };
            last = Some(id);
            if p.state.is_open() {
                messages.push(MempoolMessage::Entry(Box::new(p.entry.clone())));
            }
            messages.extend(p.rejections.values().map(|r| MempoolMessage::Rejection {
                entry: id,
                rejection: r.clone(),
            }));
            if let Some(withdrawal) = &p.withdrawal {
                messages.push(MempoolMessage::Withdrawal {
                    entry: id,
                    withdrawal: withdrawal.clone(),
                });
            }
        }
        // The next round starts after the last one sent: with more than
        // RESENDS_MAX waiting, each gets its turn.
        self.resend_cursor = last;
        if !messages.is_empty() {
            debug!(target: "mempool", count = messages.len(), "gossiping open proposals and decisions again");
        }
        for message in messages {
            if let Ok(bytes) = protocol::encode(&message) {
                self.net.publish(Topic::Mempool, bytes).await;
            }
        }
    }

    /// Gossips forged grant proposals (fault injection).
    #[cfg(feature = "fault-injection")]
    pub(super) async fn forge(&mut self) {
        if !self.faults.forge_grant {
            return;
        }
        let (Some(me), Some(chain)) = (self.me(), self.ledger.chain()) else {
            return;
        };
        for entry in crate::agreement::fault::forged_entries(
            chain.state(),
            chain.chain_id(),
            me,
            &self.key,
            now(),
        ) {
            if let Ok(bytes) = protocol::encode(&MempoolMessage::Entry(Box::new(entry))) {
                self.net.publish(Topic::Mempool, bytes).await;
            }
        }
    }
}
