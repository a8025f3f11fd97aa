//! Proposals waiting to be ordered, and the endorsements they gather.
//!
//! A member proposes an entry; every node keeps it here while members
//! endorse it (each node by its approval policy); once the endorsements meet
//! the contracts' requirement the entry is *eligible* and the proposer of the
//! next block may include it. Pure: time comes in as an argument.

use std::collections::{BTreeMap, BTreeSet};

use quorate_contracts::{self as contracts, MemberId, Timestamp};
use quorate_ledger::chain::ChainState;
use quorate_ledger::entry::{Endorsement, Entry, EntryId, verify_endorsement};
use serde::Serialize;

/// Most proposals held at once; past this new ones are refused (a peer
/// cannot grow our memory by proposing).
pub const PROPOSALS_MAX: usize = 10_000;
/// Most proposals one member may have pending at once.
pub const PROPOSALS_PER_MEMBER_MAX: usize = 1_000;

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
    /// Refused: by this node's operator, or by the rules when it was due.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Did not gather its endorsements within the proposal TTL.
    Expired,
}

/// This node's decision on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalDecision {
    /// Not decided (manual policy, operator has not acted).
    Undecided,
    /// We endorsed it.
    Endorsed,
    /// We refused to endorse it.
    Refused,
}

/// One proposal and what we know of it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The entry with the endorsements gathered so far.
    pub entry: Entry,
    /// When we first saw it.
    pub received_at: Timestamp,
    /// Its state.
    pub state: ProposalState,
    /// What this node decided.
    pub decision: LocalDecision,
}

/// Why a proposal or endorsement was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The mempool is full.
    #[error("the node holds {PROPOSALS_MAX} proposals already")]
    Full,
    /// The proposer has too many proposals pending.
    #[error("the proposer has {PROPOSALS_PER_MEMBER_MAX} proposals pending already")]
    ProposerFull,
    /// For another chain or epoch.
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
    /// No such proposal.
    #[error("no pending proposal {0}")]
    Unknown(EntryId),
    /// The proposal cannot be hashed (over the encoding limits).
    #[error("proposal cannot be encoded: {0}")]
    Encode(String),
}

/// Proposals whose endorsements arrived first (gossip does not keep order
/// between publishers), at most; their endorsements wait for them.
pub const EARLY_ENDORSED_MAX: usize = 4096;

/// The pending proposals.
#[derive(Debug, Default)]
pub struct Mempool {
    pending: BTreeMap<EntryId, Pending>,
    /// Valid endorsements of proposals not seen yet, with when the first
    /// arrived.
    early: BTreeMap<EntryId, (Timestamp, Vec<Endorsement>)>,
}

impl Mempool {
    /// An empty mempool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a new proposal (ours or a peer's) after checking it is signed by
    /// its proposer and the rules do not refuse it outright. Endorsements it
    /// carries are merged. Returns its id.
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
        if let Some(known) = self.pending.get(&id) {
            let endorsements = known.entry.endorsements.clone();
            for e in entry
                .endorsements
                .into_iter()
                .filter(|e| !endorsements.contains(e))
            {
                // Extra endorsements on a known proposal: take the valid ones.
                let _ = self.add_endorsement(&id, e, chain);
            }
            return Ok(id);
        }
        let state = chain.state();
        let proposal = &entry.proposal;
        if proposal.chain_id != state.chain_id || proposal.epoch != state.epoch {
            return Err(AddError::WrongChain {
                chain_id: proposal.chain_id.clone(),
                epoch: proposal.epoch,
            });
        }
        if self.pending.len() >= PROPOSALS_MAX {
            return Err(AddError::Full);
        }
        // Counting is O(pool): only worth it once the pool could hold a
        // member's whole allowance.
        let by_proposer = || {
            self.pending
                .values()
                .filter(|p| p.entry.proposal.proposer == proposal.proposer && is_open(&p.state))
                .count()
        };
        if self.pending.len() >= PROPOSALS_PER_MEMBER_MAX
            && by_proposer() >= PROPOSALS_PER_MEMBER_MAX
        {
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
        let early = self.early.remove(&id).map(|(_, e)| e).unwrap_or_default();
        for e in entry.endorsements.into_iter().chain(early) {
            if valid_endorsement(chain, &id, &e) {
                clean.add_endorsement(e);
            }
        }
        self.pending.insert(
            id,
            Pending {
                entry: clean,
                received_at: now,
                state: ProposalState::Pending {
                    endorsements: 0,
                    required: 0,
                },
                decision: LocalDecision::Undecided,
            },
        );
        self.refresh(&id, chain);
        Ok(id)
    }

    /// Adds a member's endorsement of a proposal, after checking it. One
    /// for a proposal not seen yet is kept until it arrives (bounded), as
    /// endorsements can overtake their proposal.
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
        let Some(pending) = self.pending.get_mut(id) else {
            if !self.early.contains_key(id) && self.early.len() >= EARLY_ENDORSED_MAX {
                return Err(AddError::Unknown(*id));
            }
            let (_, waiting) = self
                .early
                .entry(*id)
                .or_insert_with(|| (chain.tip().time, Vec::new()));
            if waiting.len() < quorate_contracts::model::MEMBERS_MAX
                && !waiting.iter().any(|e| e.member == endorsement.member)
            {
                waiting.push(endorsement);
            }
            return Ok(());
        };
        pending.entry.add_endorsement(endorsement);
        self.refresh(id, chain);
        Ok(())
    }

    /// Records this node's decision.
    pub fn decide(&mut self, id: &EntryId, decision: LocalDecision) -> Result<(), AddError> {
        let pending = self.pending.get_mut(id).ok_or(AddError::Unknown(*id))?;
        pending.decision = decision;
        if decision == LocalDecision::Refused && is_open(&pending.state) {
            pending.state = ProposalState::Rejected {
                reason: "refused by this node's operator".to_owned(),
            };
        }
        Ok(())
    }

    /// A proposal.
    pub fn get(&self, id: &EntryId) -> Option<&Pending> {
        self.pending.get(id)
    }

    /// All proposals, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&EntryId, &Pending)> {
        self.pending.iter()
    }

    /// Whether an entry ready for a block passes `fit` (without copying
    /// the pool).
    pub fn any_eligible(&self, fit: impl Fn(&Entry) -> bool) -> bool {
        self.pending
            .values()
            .any(|p| p.state == ProposalState::Eligible && fit(&p.entry))
    }

    /// Entries ready for a block, oldest first, at most `max`.
    pub fn eligible(&self, max: usize) -> Vec<Entry> {
        let mut ready: Vec<&Pending> = self
            .pending
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

    /// Drops the entries of a committed block (the ledger has them now,
    /// and `add_proposal` refuses late copies), and re-evaluates the rest
    /// against the new state (an epoch change voids pending endorsements).
    pub fn on_commit(&mut self, _height: u64, ids: &[EntryId], chain: &ChainState) {
        for id in ids {
            self.pending.remove(id);
        }
        let open: Vec<EntryId> = self
            .pending
            .iter()
            .filter(|(_, p)| is_open(&p.state))
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            if p.entry.proposal.epoch != chain.state().epoch {
                p.state = ProposalState::Rejected {
                    reason: format!(
                        "the member set changed (epoch {} → {}); propose again",
                        p.entry.proposal.epoch,
                        chain.state().epoch
                    ),
                };
                continue;
            }
            self.refresh(&id, chain);
        }
    }

    /// Expires open proposals older than the policy's TTL, and forgets
    /// closed ones older than twice that (their state stays queryable for a
    /// while, then memory is reclaimed).
    pub fn expire(&mut self, now: Timestamp, ttl_ms: u64) {
        self.early
            .retain(|_, (first, _)| now.saturating_ms_since(*first) <= ttl_ms);
        for p in self.pending.values_mut() {
            if is_open(&p.state) && now.saturating_ms_since(p.received_at) > ttl_ms {
                p.state = ProposalState::Expired;
            }
        }
        self.pending.retain(|_, p| {
            is_open(&p.state) || now.saturating_ms_since(p.received_at) <= 2 * ttl_ms
        });
    }

    fn refresh(&mut self, id: &EntryId, chain: &ChainState) {
        let Some(p) = self.pending.get_mut(id) else {
            return;
        };
        if !is_open(&p.state) {
            return;
        }
        let state = chain.state();
        let proposal = &p.entry.proposal;
        let endorsers: BTreeSet<MemberId> = p.entry.endorsements.iter().map(|e| e.member).collect();
        let requirement =
            contracts::required_endorsements(state, proposal.proposer, &proposal.body);
        p.state = match contracts::check_proposal(
            state,
            proposal.proposer,
            &proposal.body,
            p.received_at,
        ) {
            Err(v) => ProposalState::Rejected {
                reason: v.to_string(),
            },
            Ok(()) => match contracts::check_endorsements(
                state,
                proposal.proposer,
                &proposal.body,
                &endorsers,
            ) {
                Ok(()) => ProposalState::Eligible,
                Err(_) => ProposalState::Pending {
                    endorsements: endorsers.len(),
                    // Unreadable rows: the usual quorum, until a re-check.
                    required: requirement
                        .map_or_else(|_| contracts::quorum(state.members.len()), |r| r.quorum),
                },
            },
        };
    }
}

fn is_open(state: &ProposalState) -> bool {
    matches!(
        state,
        ProposalState::Pending { .. } | ProposalState::Eligible
    )
}

fn valid_endorsement(chain: &ChainState, id: &EntryId, e: &Endorsement) -> bool {
    chain
        .state()
        .members
        .get(&e.member)
        .is_some_and(|m| verify_endorsement(id, e, &m.did))
}

#[cfg(test)]
mod tests {
    use quorate_contracts::Body;
    use quorate_ledger::testing::Consortium;

    use super::*;

    fn grant(c: &mut Consortium, by: &[usize]) -> Entry {
        let terms = c.grant_terms(0, 1);
        c.entry(0, Body::Grant(terms), by)
    }

    #[test]
    fn endorsements_make_a_proposal_eligible_and_a_commit_retires_it() {
        let mut c = Consortium::new(4);
        let mut pool = Mempool::new();
        let entry = grant(&mut c, &[]);
        let id = pool.add_proposal(entry.clone(), &c.chain, c.now()).unwrap();
        assert_eq!(
            pool.get(&id).unwrap().state,
            ProposalState::Pending {
                endorsements: 1,
                required: 3
            }
        );
        assert!(pool.eligible(10).is_empty());
        for j in [1, 2] {
            let mut endorsed = entry.clone();
            endorsed.endorse(c.id(j), &c.keys[j]).unwrap();
            let e = endorsed
                .endorsements
                .iter()
                .find(|e| e.member == c.id(j))
                .unwrap()
                .clone();
            pool.add_endorsement(&id, e, &c.chain).unwrap();
        }
        assert_eq!(pool.get(&id).unwrap().state, ProposalState::Eligible);
        let ready = pool.eligible(10);
        assert_eq!(ready.len(), 1);

        let block = c.commit(ready);
        pool.on_commit(block.block.header.height, &[id], &c.chain);
        assert!(pool.get(&id).is_none());
        // A late copy of the committed entry is not taken again.
        pool.add_proposal(entry, &c.chain, c.now()).unwrap();
        assert!(pool.get(&id).is_none());
    }

    #[test]
    fn forged_wrong_chain_and_bad_endorsements_are_refused() {
        let mut c = Consortium::new(4);
        let mut pool = Mempool::new();

        // Claims member 0 as proposer, signed by member 3.
        let mut forged = grant(&mut c, &[]);
        let id = forged.id().unwrap();
        forged.endorsements = vec![Endorsement {
            member: c.id(0),
            signature: c.keys[3].sign(&quorate_ledger::entry::endorsement_message(&id)),
        }];
        assert_eq!(
            pool.add_proposal(forged, &c.chain, c.now()),
            Err(AddError::Unsigned)
        );

        let mut other_chain = grant(&mut c, &[]);
        other_chain.proposal.chain_id = "elsewhere".into();
        let other_chain = Entry::propose(other_chain.proposal, &c.keys[0]).unwrap();
        assert!(matches!(
            pool.add_proposal(other_chain, &c.chain, c.now()),
            Err(AddError::WrongChain { .. })
        ));

        let entry = grant(&mut c, &[]);
        let id = pool.add_proposal(entry, &c.chain, c.now()).unwrap();
        let bad = Endorsement {
            member: c.id(2),
            signature: c.keys[1].sign(&quorate_ledger::entry::endorsement_message(&id)),
        };
        assert_eq!(
            pool.add_endorsement(&id, bad, &c.chain),
            Err(AddError::BadEndorsement(c.id(2)))
        );
        assert_eq!(pool.get(&id).unwrap().entry.endorsements.len(), 1);
        assert!(matches!(
            pool.add_endorsement(
                &quorate_ledger::hash::Hash([9; 32]),
                Endorsement {
                    member: c.id(1),
                    signature: c.keys[1].sign(b"x"),
                },
                &c.chain
            ),
            Err(AddError::BadEndorsement(_))
        ));
    }

    #[test]
    fn endorsements_that_overtake_their_proposal_are_kept_for_it() {
        let mut c = Consortium::new(4);
        let mut pool = Mempool::new();
        let mut entry = grant(&mut c, &[]);
        let id = entry.id().unwrap();
        let mut endorsed = entry.clone();
        for j in [1, 2] {
            endorsed.endorse(c.id(j), &c.keys[j]).unwrap();
        }
        for e in endorsed.endorsements.iter().filter(|e| e.member != c.id(0)) {
            pool.add_endorsement(&id, e.clone(), &c.chain).unwrap();
        }
        // A forged early endorsement is refused all the same.
        let forged = Endorsement {
            member: c.id(3),
            signature: c.keys[1].sign(&quorate_ledger::entry::endorsement_message(&id)),
        };
        assert!(pool.add_endorsement(&id, forged, &c.chain).is_err());
        entry.endorsements.truncate(1);
        pool.add_proposal(entry, &c.chain, c.now()).unwrap();
        assert_eq!(pool.get(&id).unwrap().state, ProposalState::Eligible);
    }

    #[test]
    fn refusal_expiry_and_forgetting() {
        let mut c = Consortium::new(4);
        let mut pool = Mempool::new();
        let now = c.now();
        let refused = pool
            .add_proposal(grant(&mut c, &[]), &c.chain, now)
            .unwrap();
        let stale = pool
            .add_proposal(grant(&mut c, &[]), &c.chain, now)
            .unwrap();
        pool.decide(&refused, LocalDecision::Refused).unwrap();
        assert!(matches!(
            pool.get(&refused).unwrap().state,
            ProposalState::Rejected { .. }
        ));
        pool.expire(Timestamp(now.0 + 1_001), 1_000);
        assert_eq!(pool.get(&stale).unwrap().state, ProposalState::Expired);
        // Closed proposals stay visible for a while, then are forgotten.
        pool.expire(Timestamp(now.0 + 2_001), 1_000);
        assert!(pool.get(&stale).is_none() && pool.get(&refused).is_none());
    }

    #[test]
    fn one_member_cannot_fill_the_pool() {
        let mut c = Consortium::new(4);
        let mut pool = Mempool::new();
        for _ in 0..PROPOSALS_PER_MEMBER_MAX {
            let entry = grant(&mut c, &[]);
            pool.add_proposal(entry, &c.chain, c.now()).unwrap();
        }
        let entry = grant(&mut c, &[]);
        assert_eq!(
            pool.add_proposal(entry, &c.chain, c.now()),
            Err(AddError::ProposerFull)
        );
        // Another member still can.
        let terms = c.grant_terms(1, 2);
        let entry = c.entry(1, Body::Grant(terms), &[]);
        pool.add_proposal(entry, &c.chain, c.now()).unwrap();
    }
}
