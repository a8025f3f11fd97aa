//! The proposal reads the driver alone cannot answer: a committed entry
//! the mempool no longer holds is found in the ledger.

use super::*;

impl LocalNode {
    /// The open proposals only (what the events feeder watches once a
    /// second: the closed ones, up to a thousand, are not built for it).
    pub(crate) async fn open_proposals(&self) -> Vec<ProposalView> {
        self.ask(|reply| Command::Proposals {
            open_only: true,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    /// A committed entry as a proposal view, from the ledger (members by
    /// their names now).
    pub(super) async fn committed_proposal(
        &self,
        id: EntryId,
    ) -> Result<Option<ProposalView>, Problem> {
        let reader = self.ledger.clone();
        let found = on_reader(move || {
            let Some((height, index)) = reader.entry_location(&id)? else {
                return Ok(None);
            };
            let entry = reader
                .block(height)?
                .and_then(|b| b.block.entries.into_iter().nth(index as usize));
            Ok::<_, quorate_ledger::ledger::LedgerError>(entry.map(|e| (height, e)))
        })
        .await?
        .map_err(|e| ledger_read_failed(&e))?;
        let Some((height, entry)) = found else {
            return Ok(None);
        };
        let state = self.gateway.state();
        let name = crate::views::member_name(&state);
        Ok(Some(ProposalView {
            id: id.to_string(),
            proposer: name(&entry.proposal.proposer),
            body: crate::views::body(&entry.proposal.body, &name),
            state: quorate_api::local::responses::ProposalState::Committed { height },
            decision: quorate_api::local::responses::LocalDecision::Undecided,
            endorsers: entry.endorsements.iter().map(|e| name(&e.member)).collect(),
            rejections: Vec::new(),
            policy: None,
            created_at_ms: entry.proposal.created_at.0,
        }))
    }

    /// A decision or withdrawal on a proposal the mempool no longer holds
    /// is 409 if the ledger has it (it was committed), else the driver's
    /// refusal.
    pub(super) async fn closed_if_committed(
        &self,
        id: EntryId,
        result: Result<(), DecideError>,
    ) -> Result<(), Problem> {
        match result {
            Err(DecideError::UnknownProposal(_)) => match self.committed_proposal(id).await? {
                Some(ProposalView {
                    state: quorate_api::local::responses::ProposalState::Committed { height },
                    ..
                }) => Err(DecideError::Closed {
                    id,
                    state: format!("committed at height {height}"),
                }
                .into()),
                _ => Err(DecideError::UnknownProposal(id).into()),
            },
            other => Ok(other?),
        }
    }
}
