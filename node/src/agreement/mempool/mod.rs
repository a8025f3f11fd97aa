//! Proposals and what members decide about them, from the moment one is
//! proposed until it is committed, fails, is withdrawn or expires.
//!
//! A member proposes an entry; every node keeps it here while members
//! decide on it (each node by its endorsement policy, or its people):
//! endorsements and signed rejections are gossiped alike, and a member's
//! first decision is final. Once the endorsements meet the contracts'
//! requirement the entry is *eligible* and the proposer of the next block
//! may include it; once the rejections leave too few members to meet it,
//! it has *failed*, on every node that saw them. Closed proposals stay
//! listable for a while. Pure: time comes in as an argument.

pub mod decisions;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use quorate_contracts::{self as contracts, MemberId, Timestamp};
use quorate_ledger::chain::ChainState;
use quorate_ledger::entry::{Endorsement, Entry, EntryId, verify_endorsement};
use serde::Serialize;

pub use decisions::{Rejection, Withdrawal};

/// Most open proposals held at once; past this new ones are refused (a
/// peer cannot grow our memory by proposing).
pub const PROPOSALS_MAX: usize = 10_000;
/// Most proposals one member may have open at once.
pub const PROPOSALS_PER_MEMBER_MAX: usize = 1_000;
/// Most closed proposals (committed, failed, withdrawn, expired) kept
/// listable; the oldest closed is forgotten first.
pub const CLOSED_KEPT_MAX: usize = 1_024;
/// Longest a closed proposal stays listable (ms). A committed one can
/// still be looked up in the ledger after that.
pub const CLOSED_KEPT_MS: u64 = 7 * 24 * 3_600_000;

/// Where a proposal stands, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ProposalState {
    /// Waiting for endorsements.
    Pending {
        /// Members that endorsed so far.
        endorsements: usize,
        /// How many the contracts require.
        required: u32,
    },
    /// Endorsed enough; waits for a block.
    Eligible,
    /// In the ledger.
    Committed {
        /// The block's height.
        height: u64,
    },
    /// Can no longer be committed: rejected by too many members (or by a
    /// member it needs), or refused by the rules as the state moved on.
    Failed {
        /// Why.
        reason: String,
    },
    /// Withdrawn by its proposer.
    Withdrawn,
    /// Did not gather its endorsements within the proposal TTL.
    Expired,
}

impl ProposalState {
    /// Whether it may still be committed.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Pending { .. } | Self::Eligible)
    }
}

/// This node's decision on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalDecision {
    /// Not decided (the policy asks a person, who has not acted).
    Undecided,
    /// We endorsed it.
    Endorsed,
    /// We rejected it.
    Refused,
}

/// One proposal and what we know of it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The entry with the endorsements gathered so far.
    pub entry: Entry,
    /// Members' signed rejections, by member.
    pub rejections: BTreeMap<MemberId, Rejection>,
    /// When we first saw it.
    pub received_at: Timestamp,
    /// Its state.
    pub state: ProposalState,
    /// What this node decided.
    pub decision: LocalDecision,
    /// What this node's endorsement policy said of it, once asked.
    pub policy: Option<String>,
    /// The proposer's withdrawal, once withdrawn (kept to gossip again).
    pub withdrawal: Option<Withdrawal>,
}

/// Why a proposal, a decision or a withdrawal was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The mempool is full.
    #[error("the node holds {PROPOSALS_MAX} proposals already")]
    Full,
    /// The proposer has too many proposals pending.
    #[error("the proposer has {PROPOSALS_PER_MEMBER_MAX} proposals pending already")]
    ProposerFull,
    /// For another chain, or an epoch that has not come.
    #[error("proposal is for chain {chain_id:?} epoch {epoch}")]
    WrongChain {
        /// Its chain id.
        chain_id: String,
        /// Its epoch.
        epoch: u64,
    },
    /// The proposer is not a member, or did not sign it.
    #[error("proposal is not signed by its proposer, a current member")]
    Unsigned,
    /// The rules refuse it outright.
    #[error("{0}")]
    Rule(contracts::Violation),
    /// An endorsement by a non-member or with a bad signature.
    #[error("endorsement by {0} is not a valid member signature")]
    BadEndorsement(MemberId),
    /// A rejection by a non-member, with a bad signature or too long.
    #[error("rejection by {0} is not a valid member signature")]
    BadRejection(MemberId),
    /// A withdrawal not signed by the proposer.
    #[error("the withdrawal is not signed by the proposer")]
    BadWithdrawal,
    /// The member decided otherwise already; its first decision stands.
    #[error("{member} has {earlier} this proposal already; a member's decision is final")]
    Decided {
        /// Who.
        member: MemberId,
        /// `endorsed` or `rejected`.
        earlier: &'static str,
    },
    /// No such proposal.
    #[error("no pending proposal {0}")]
    Unknown(EntryId),
    /// The proposal is closed (committed, failed, withdrawn or expired).
    #[error("proposal {id} is closed ({state:?})")]
    Closed {
        /// Its id.
        id: EntryId,
        /// How it ended.
        state: ProposalState,
    },
    /// The proposal cannot be hashed (over the encoding limits).
    #[error("proposal cannot be encoded: {0}")]
    Encode(String),
}

/// Proposals whose endorsements or rejections arrived first (gossip does
/// not keep order between publishers), at most; their decisions wait.
pub const EARLY_DECIDED_MAX: usize = 4096;
/// Early slots one member's decisions may open.
pub const EARLY_PER_MEMBER_MAX: usize = 256;

/// Decisions on a proposal not seen yet.
#[derive(Debug)]
struct Early {
    /// When the first arrived.
    first: Timestamp,
    /// Whose decision opened the slot.
    opener: MemberId,
    endorsements: Vec<Endorsement>,
    rejections: Vec<Rejection>,
}

/// The proposals.
#[derive(Debug, Default)]
pub struct Mempool {
    proposals: BTreeMap<EntryId, Pending>,
    /// Open proposals (the rest of `proposals` is closed).
    open: usize,
    /// Closed proposals, oldest closed first, with when they closed.
    closed: VecDeque<(Timestamp, EntryId)>,
    /// Valid decisions on proposals not seen yet.
    early: BTreeMap<EntryId, Early>,
    /// The epoch the open proposals' decisions were last checked in: they
    /// are checked again only when a commit moves it.
    epoch: u64,
}

impl Mempool {
    /// An empty mempool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a new proposal (ours or a peer's) after checking it is signed by
    /// its proposer and the rules do not refuse it outright. Endorsements it
    /// carries are merged. A proposal of an earlier epoch is taken too
    /// (`docs/ledger-format.md` §5 rule 2.1), with the endorsements that
    /// still verify. Returns its id.
    pub fn add_proposal(
        &mut self,
        entry: Entry,
        chain: &ChainState,
        now: Timestamp,
    ) -> Result<EntryId, AddError> {
        let id = entry.id().map_err(|e| AddError::Encode(e.to_string()))?;
        if chain.is_recently_committed(&id) {
            // A late copy of a committed entry: nothing left to do.
            return Ok(id);
        }
        if let Some(known) = self.proposals.get(&id) {
            if known.state.is_open() {
                let endorsements = known.entry.endorsements.clone();
                for e in entry
                    .endorsements
                    .into_iter()
                    .filter(|e| !endorsements.contains(e))
                {
                    // Extra endorsements on a known proposal: take the valid ones.
                    let _ = self.add_endorsement(&id, e, chain);
                }
            }
            return Ok(id);
        }
        let state = chain.state();
        let proposal = &entry.proposal;
        if proposal.chain_id != state.chain_id || proposal.epoch > state.epoch {
            return Err(AddError::WrongChain {
                chain_id: proposal.chain_id.clone(),
                epoch: proposal.epoch,
            });
        }
        if self.open >= PROPOSALS_MAX {
            return Err(AddError::Full);
        }
        // Counting is O(pool): only worth it once the pool could hold a
        // member's whole allowance.
        let by_proposer = || {
            self.proposals
                .values()
                .filter(|p| p.entry.proposal.proposer == proposal.proposer && p.state.is_open())
                .count()
        };
        if self.open >= PROPOSALS_PER_MEMBER_MAX && by_proposer() >= PROPOSALS_PER_MEMBER_MAX {
            return Err(AddError::ProposerFull);
        }
        let proposer_signed = entry
            .endorsements
            .iter()
            .any(|e| e.member == proposal.proposer && valid_endorsement(chain, &id, e));
        if !proposer_signed {
            return Err(AddError::Unsigned);
        }
        contracts::check_proposal(state, proposal.proposer, &proposal.body, now)
            .map_err(AddError::Rule)?;
        let mut clean = Entry {
            proposal: entry.proposal.clone(),
            endorsements: Vec::new(),
        };
        let (early_endorsements, early_rejections) = self
            .early
            .remove(&id)
            .map(|e| (e.endorsements, e.rejections))
            .unwrap_or_default();
        let mut rejections = BTreeMap::new();
        for r in early_rejections {
            if r.member != clean.proposal.proposer && valid_rejection(chain, &id, &r) {
                rejections.entry(r.member).or_insert(r);
            }
        }
        for e in entry.endorsements.into_iter().chain(early_endorsements) {
            if !rejections.contains_key(&e.member) && valid_endorsement(chain, &id, &e) {
                clean.add_endorsement(e);
            }
        }
        self.proposals.insert(
            id,
            Pending {
                entry: clean,
                rejections,
                received_at: now,
                state: ProposalState::Pending {
                    endorsements: 0,
                    required: 0,
                },
                decision: LocalDecision::Undecided,
                policy: None,
                withdrawal: None,
            },
        );
        self.open += 1;
        self.refresh(&id, chain, now);
        Ok(id)
    }

    /// Adds a member's endorsement of a proposal, after checking it. One
    /// for a proposal not seen yet is kept until it arrives (bounded), as
    /// endorsements can overtake their proposal. One for a closed proposal
    /// changes nothing.
    pub fn add_endorsement(
        &mut self,
        id: &EntryId,
        endorsement: Endorsement,
        chain: &ChainState,
    ) -> Result<(), AddError> {
        if !valid_endorsement(chain, id, &endorsement) {
            return Err(AddError::BadEndorsement(endorsement.member));
        }
        if chain.is_recently_committed(id) {
            return Ok(());
        }
        let Some(pending) = self.proposals.get_mut(id) else {
            let early = self.early_for(id, endorsement.member, chain)?;
            if early.endorsements.len() < quorate_contracts::model::MEMBERS_MAX
                && !early
                    .endorsements
                    .iter()
                    .any(|e| e.member == endorsement.member)
            {
                early.endorsements.push(endorsement);
            }
            return Ok(());
        };
        if !pending.state.is_open() {
            return Ok(());
        }
        if pending.rejections.contains_key(&endorsement.member) {
            return Err(AddError::Decided {
                member: endorsement.member,
                earlier: "rejected",
            });
        }
        pending.entry.add_endorsement(endorsement);
        self.refresh(id, chain, chain.tip().time);
        Ok(())
    }

    /// Adds a member's signed rejection, after checking it: the member's
    /// first decision stands, so a rejection after its endorsement is
    /// refused (and the proposer, who endorsed by proposing, withdraws
    /// instead). Enough rejections fail the proposal.
    pub fn add_rejection(
        &mut self,
        id: &EntryId,
        rejection: Rejection,
        chain: &ChainState,
        now: Timestamp,
    ) -> Result<(), AddError> {
        if !valid_rejection(chain, id, &rejection) {
            return Err(AddError::BadRejection(rejection.member));
        }
        if chain.is_recently_committed(id) {
            return Ok(());
        }
        let Some(pending) = self.proposals.get_mut(id) else {
            let early = self.early_for(id, rejection.member, chain)?;
            if early.rejections.len() < quorate_contracts::model::MEMBERS_MAX
                && !early
                    .rejections
                    .iter()
                    .any(|r| r.member == rejection.member)
            {
                early.rejections.push(rejection);
            }
            return Ok(());
        };
        if !pending.state.is_open() {
            return Ok(());
        }
        if let Some(earlier) = pending.rejections.get(&rejection.member) {
            return if *earlier == rejection {
                Ok(())
            } else {
                Err(AddError::Decided {
                    member: rejection.member,
                    earlier: "rejected",
                })
            };
        }
        if pending
            .entry
            .endorsements
            .iter()
            .any(|e| e.member == rejection.member)
        {
            return Err(AddError::Decided {
                member: rejection.member,
                earlier: "endorsed",
            });
        }
        pending.rejections.insert(rejection.member, rejection);
        self.refresh(id, chain, now);
        Ok(())
    }

    /// The proposer's withdrawal: an open proposal closes as withdrawn.
    pub fn withdraw(
        &mut self,
        id: &EntryId,
        withdrawal: &Withdrawal,
        chain: &ChainState,
        now: Timestamp,
    ) -> Result<(), AddError> {
        let pending = self.proposals.get(id).ok_or(AddError::Unknown(*id))?;
        let proposer = chain.state().members.get(&pending.entry.proposal.proposer);
        if !proposer.is_some_and(|m| withdrawal.verify(id, &m.did)) {
            return Err(AddError::BadWithdrawal);
        }
        if !pending.state.is_open() {
            return Err(AddError::Closed {
                id: *id,
                state: pending.state.clone(),
            });
        }
        if let Some(p) = self.proposals.get_mut(id) {
            p.withdrawal = Some(withdrawal.clone());
        }
        self.close(id, ProposalState::Withdrawn, now);
        Ok(())
    }

    /// Records this node's decision (its signed endorsement or rejection
    /// is added and gossiped by the caller). A different decision than one
    /// already made is refused: it was gossiped and is final.
    pub fn decide(
        &mut self,
        id: &EntryId,
        me: MemberId,
        decision: LocalDecision,
    ) -> Result<(), AddError> {
        let pending = self.proposals.get_mut(id).ok_or(AddError::Unknown(*id))?;
        let earlier = match (pending.decision, decision) {
            (LocalDecision::Endorsed, LocalDecision::Refused) => "endorsed",
            (LocalDecision::Refused, LocalDecision::Endorsed) => "rejected",
            _ => {
                pending.decision = decision;
                return Ok(());
            }
        };
        Err(AddError::Decided {
            member: me,
            earlier,
        })
    }

    /// What `member` decided on `id` as the proposal's signatures show
    /// (this node's own decision survives a restart this way: peers resend
    /// its endorsement or rejection with the proposal).
    pub fn signed_decision(&self, id: &EntryId, member: MemberId) -> Option<LocalDecision> {
        let p = self.proposals.get(id)?;
        if p.rejections.contains_key(&member) {
            Some(LocalDecision::Refused)
        } else if p.entry.endorsements.iter().any(|e| e.member == member) {
            Some(LocalDecision::Endorsed)
        } else {
            None
        }
    }

    /// The proposals after `cursor` in id order, then the rest from the
    /// start: a walk that takes a few at a time reaches every one in turn.
    pub fn iter_from(&self, cursor: Option<EntryId>) -> impl Iterator<Item = (&EntryId, &Pending)> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let (after, before) = match cursor {
            Some(c) => (
                self.proposals.range((Excluded(c), Unbounded)),
                Some(self.proposals.range((Unbounded, Included(c)))),
            ),
            None => (self.proposals.range::<EntryId, _>(..), None),
        };
        after.chain(before.into_iter().flatten())
    }

    /// Notes what this node's endorsement policy said of a proposal.
    pub fn note_policy(&mut self, id: &EntryId, note: String) {
        if let Some(p) = self.proposals.get_mut(id) {
            p.policy = Some(note);
        }
    }

    /// A proposal.
    pub fn get(&self, id: &EntryId) -> Option<&Pending> {
        self.proposals.get(id)
    }

    /// All proposals, open and closed, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&EntryId, &Pending)> {
        self.proposals.iter()
    }

    /// How many are open.
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Whether an entry ready for a block passes `fit` (without copying
    /// the pool).
    pub fn any_eligible(&self, fit: impl Fn(&Entry) -> bool) -> bool {
        self.proposals
            .values()
            .any(|p| p.state == ProposalState::Eligible && fit(&p.entry))
    }

    /// Entries ready for a block, oldest first, at most `max`.
    pub fn eligible(&self, max: usize) -> Vec<Entry> {
        let mut ready: Vec<&Pending> = self
            .proposals
            .values()
            .filter(|p| p.state == ProposalState::Eligible)
            .collect();
        ready.sort_by_key(|p| p.received_at);
        ready
            .into_iter()
            .take(max)
            .map(|p| p.entry.clone())
            .collect()
    }

    /// Marks the entries of a committed block committed (the ledger has
    /// them now, and `add_proposal` refuses late copies), and re-evaluates
    /// the rest against the new state. After a membership change the
    /// decisions that no longer verify (a member removed, or its key
    /// rotated) are dropped and the rest kept: the proposal stays valid.
    pub fn on_commit(&mut self, committed: &[(u64, EntryId)], chain: &ChainState, now: Timestamp) {
        for &(height, ref id) in committed {
            match self.proposals.get(id).map(|p| p.state.is_open()) {
                Some(true) => self.close(id, ProposalState::Committed { height }, now),
                // Closed here (it failed, say, by a faulty member's
                // rejection) but committed all the same: the ledger decides.
                Some(false) => {
                    if let Some(p) = self.proposals.get_mut(id) {
                        p.state = ProposalState::Committed { height };
                    }
                }
                None => {}
            }
        }
        let open: Vec<EntryId> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.state.is_open())
            .map(|(id, _)| *id)
            .collect();
        // Signatures are checked again only when the member set moved (a
        // member removed, or a key rotated): once per membership change,
        // not on every block after it.
        let epoch_moved = chain.state().epoch != self.epoch;
        self.epoch = chain.state().epoch;
        for id in open {
            let Some(p) = self.proposals.get_mut(&id) else {
                continue;
            };
            if epoch_moved {
                p.entry
                    .endorsements
                    .retain(|e| valid_endorsement(chain, &id, e));
                p.rejections.retain(|_, r| valid_rejection(chain, &id, r));
                let proposer = p.entry.proposal.proposer;
                if !p.entry.endorsements.iter().any(|e| e.member == proposer) {
                    let reason =
                        "the proposer's key changed, or it left, since it proposed; propose again"
                            .to_owned();
                    self.close(&id, ProposalState::Failed { reason }, now);
                    continue;
                }
            }
            self.refresh(&id, chain, now);
        }
    }

    /// Expires open proposals older than the policy's TTL, and forgets
    /// closed ones past [`CLOSED_KEPT_MS`] or [`CLOSED_KEPT_MAX`].
    pub fn expire(&mut self, now: Timestamp, ttl_ms: u64) {
        self.early
            .retain(|_, early| now.saturating_ms_since(early.first) <= ttl_ms);
        let stale: Vec<EntryId> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.state.is_open() && now.saturating_ms_since(p.received_at) > ttl_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.close(&id, ProposalState::Expired, now);
        }
        self.forget_closed(now);
    }

    /// The early-decision slot of `id` for a decision by `member`, if one
    /// may be kept: at most [`EARLY_DECIDED_MAX`] slots, and at most
    /// [`EARLY_PER_MEMBER_MAX`] opened by one member's decisions, so that
    /// one member cannot crowd out everyone's early endorsements.
    fn early_for(
        &mut self,
        id: &EntryId,
        member: MemberId,
        chain: &ChainState,
    ) -> Result<&mut Early, AddError> {
        if !self.early.contains_key(id) {
            if self.early.len() >= EARLY_DECIDED_MAX {
                return Err(AddError::Unknown(*id));
            }
            // Counting is O(map): only once the map could hold a member's
            // whole allowance.
            if self.early.len() >= EARLY_PER_MEMBER_MAX {
                let opened_by = self.early.values().filter(|e| e.opener == member).count();
                if opened_by >= EARLY_PER_MEMBER_MAX {
                    return Err(AddError::Unknown(*id));
                }
            }
        }
        Ok(self.early.entry(*id).or_insert_with(|| Early {
            first: chain.tip().time,
            opener: member,
            endorsements: Vec::new(),
            rejections: Vec::new(),
        }))
    }

    fn close(&mut self, id: &EntryId, state: ProposalState, now: Timestamp) {
        let Some(p) = self.proposals.get_mut(id) else {
            return;
        };
        debug_assert!(p.state.is_open(), "closing a closed proposal");
        debug_assert!(!state.is_open(), "closing into an open state");
        if !p.state.is_open() {
            return;
        }
        p.state = state;
        self.open -= 1;
        self.closed.push_back((now, *id));
        self.forget_closed(now);
    }

    fn forget_closed(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.closed.front() {
            if self.closed.len() <= CLOSED_KEPT_MAX && now.saturating_ms_since(at) <= CLOSED_KEPT_MS
            {
                break;
            }
            self.closed.pop_front();
            self.proposals.remove(&id);
        }
    }

    fn refresh(&mut self, id: &EntryId, chain: &ChainState, now: Timestamp) {
        let Some(p) = self.proposals.get_mut(id) else {
            return;
        };
        if !p.state.is_open() {
            return;
        }
        let state = chain.state();
        let proposal = &p.entry.proposal;
        let endorsers: BTreeSet<MemberId> = p.entry.endorsements.iter().map(|e| e.member).collect();
        let requirement =
            contracts::required_endorsements(state, proposal.proposer, &proposal.body);
        let next = match contracts::check_proposal(
            state,
            proposal.proposer,
            &proposal.body,
            p.received_at,
        ) {
            Err(v) => ProposalState::Failed {
                reason: v.to_string(),
            },
            Ok(()) => match contracts::check_endorsements(
                state,
                proposal.proposer,
                &proposal.body,
                &endorsers,
            ) {
                Ok(()) => ProposalState::Eligible,
                Err(_) => match requirement
                    .as_ref()
                    .ok()
                    .and_then(|r| failure(state, r, &p.rejections))
                {
                    Some(reason) => ProposalState::Failed { reason },
                    None => ProposalState::Pending {
                        endorsements: endorsers.len(),
                        // Unreadable rows: the usual quorum, until a re-check.
                        required: requirement
                            .map_or_else(|_| contracts::quorum(state.members.len()), |r| r.quorum),
                    },
                },
            },
        };
        if next.is_open() {
            p.state = next;
        } else {
            self.close(id, next, now);
        }
    }
}

/// Why a proposal can no longer meet `requirement`, given its rejections:
/// a member it needs rejected it, or too few members are left who have not.
fn failure(
    state: &contracts::State,
    requirement: &contracts::Requirement,
    rejections: &BTreeMap<MemberId, Rejection>,
) -> Option<String> {
    let name = |m: &MemberId| {
        state
            .members
            .get(m)
            .map_or_else(|| m.to_string(), |m| m.name.clone())
    };
    if let Some(r) = requirement
        .must_include
        .iter()
        .find_map(|m| rejections.get(m))
    {
        return Some(format!(
            "rejected by {}, whose endorsement it needs: {}",
            name(&r.member),
            r.reason
        ));
    }
    let rejecting: Vec<&Rejection> = rejections
        .values()
        .filter(|r| state.members.contains_key(&r.member))
        .collect();
    let left = state.members.len().saturating_sub(rejecting.len());
    if left >= requirement.quorum as usize {
        return None;
    }
    let who: Vec<String> = rejecting
        .iter()
        .map(|r| format!("{} ({})", name(&r.member), r.reason))
        .collect();
    Some(format!(
        "rejected by {}: {left} members left who could endorse it, {} needed",
        who.join(", "),
        requirement.quorum
    ))
}

fn valid_endorsement(chain: &ChainState, id: &EntryId, e: &Endorsement) -> bool {
    chain
        .state()
        .members
        .get(&e.member)
        .is_some_and(|m| verify_endorsement(id, e, &m.did))
}

fn valid_rejection(chain: &ChainState, id: &EntryId, r: &Rejection) -> bool {
    chain
        .state()
        .members
        .get(&r.member)
        .is_some_and(|m| r.verify(id, &m.did))
}
