//! The Tendermint algorithm (Buchman, Kwon, Milosevic 2018, Algorithm 1) as
//! a pure state machine: `apply(input, now) -> effects`.
//!
//! The "upon" rules of the paper are evaluated to a fixpoint after every
//! input; rules that fire "for the first time" keep a flag per round. The
//! machine verifies every signature itself, counts at most one vote per
//! validator, round and kind (a second, different one is equivocation
//! evidence), and keeps only a bounded window of rounds. One addition to
//! the paper, from Tendermint's proposer-based timestamps: a fresh value
//! is prevoted only if it is also timely for this validator's clock
//! ([`Input::Proposal`]).

use std::collections::{BTreeMap, BTreeSet};

use quorate_contracts::Timestamp;
use quorate_did::{Keypair, Signature};
use serde::{Deserialize, Serialize};

use super::certificate::{QuorumCertificate, SignedVote, Validators, VoteKind};

/// Domain tag of proposal signatures.
pub const PROPOSAL_SIGNING_TAG: &[u8] = b"QUORATE_PROPOSAL_V1";
/// Rounds ahead of the current one whose messages are kept (for the
/// round-skip rule); later ones are dropped.
pub const ROUNDS_AHEAD_MAX: u32 = 8;

/// Rounds behind the current one whose messages are kept: a decision may
/// still complete there, and a re-proposed value needs the prevotes of its
/// valid round (its proof of lock). Older rounds are dropped; memory stays
/// bounded by this window × 2 votes × validators.
pub const ROUNDS_BEHIND_MAX: u32 = 64;

/// Messages for the next height kept until it starts (peers that decided
/// first are already there); beyond this they are dropped and left to sync.
pub const NEXT_HEIGHT_MESSAGES_MAX: usize = 1024;

/// A value agreement can decide on: identified by a 32-byte hash.
pub trait ConsensusValue: Clone + std::fmt::Debug + PartialEq {
    /// The value's id (for a block, its hash).
    fn id(&self) -> [u8; 32];
}

/// Timeouts, in milliseconds: `base + round × delta` for each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The chain (part of every signed message).
    pub chain_id: String,
    /// Waiting for a proposal.
    pub propose_ms: u64,
    /// Waiting for more prevotes after a quorum of any.
    pub prevote_ms: u64,
    /// Waiting for more precommits after a quorum of any.
    pub precommit_ms: u64,
    /// Added per round, so a slow network eventually fits.
    pub delta_ms: u64,
}

/// The step within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    /// Waiting for the proposal.
    Propose,
    /// Prevoted.
    Prevote,
    /// Precommitted.
    Precommit,
}

/// Which timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimeoutKind {
    /// OnTimeoutPropose.
    Propose,
    /// OnTimeoutPrevote.
    Prevote,
    /// OnTimeoutPrecommit.
    Precommit,
    /// Re-send our signed messages of the round: the algorithm assumes
    /// messages are eventually delivered, and a lossy network only keeps
    /// that promise if lost messages are sent again.
    Rebroadcast,
}

/// A proposer's signed value for a height and round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedProposal<V> {
    /// The height.
    pub height: u64,
    /// The round.
    pub round: u32,
    /// The round in which the value last gathered a prevote quorum, if any.
    pub valid_round: Option<u32>,
    /// The value.
    pub value: V,
    /// The proposer's index in the validator set.
    pub proposer: u16,
    /// Signature of [`proposal_sign_bytes`].
    pub signature: Signature,
}

/// Whether `proposal` comes from its round's proposer under `validators`
/// and its signature verifies: the cheap checks, which a node runs before
/// checking the proposed value itself (a validator's block check is the
/// costly part). The signature goes through the process's memo, so the
/// machine's own check after a node's costs a hash.
pub fn authenticate_proposal<V: ConsensusValue>(
    chain_id: &str,
    validators: &super::certificate::Validators,
    proposal: &SignedProposal<V>,
) -> Result<(), &'static str> {
    let expected = validators
        .proposer(proposal.height, proposal.round)
        .and_then(|d| validators.index_of(d));
    if expected != Some(proposal.proposer) {
        return Err("proposal from a validator that is not the round's proposer");
    }
    let Some(key) = validators.get(proposal.proposer) else {
        return Err("proposal from a validator that is not the round's proposer");
    };
    let bytes = proposal_sign_bytes(
        chain_id,
        proposal.height,
        proposal.round,
        proposal.valid_round,
        &proposal.value.id(),
    );
    if !crate::verified::verify(key, &bytes, &proposal.signature) {
        return Err("proposal signature does not verify");
    }
    Ok(())
}

/// The bytes a proposal signs: tag, u16-BE length ‖ chain id, height u64 BE,
/// round u32 BE, valid round (0 | 1 ‖ u32 BE), value id.
pub fn proposal_sign_bytes(
    chain_id: &str,
    height: u64,
    round: u32,
    valid_round: Option<u32>,
    id: &[u8; 32],
) -> Vec<u8> {
    let chain = chain_id.as_bytes();
    let len = u16::try_from(chain.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(PROPOSAL_SIGNING_TAG.len() + 2 + chain.len() + 8 + 4 + 5 + 32);
    out.extend_from_slice(PROPOSAL_SIGNING_TAG);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&chain[..usize::from(len)]);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    match valid_round {
        Some(r) => {
            out.push(1);
            out.extend_from_slice(&r.to_be_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(id);
    out
}

/// What the machine sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message<V> {
    /// A proposal.
    Proposal(SignedProposal<V>),
    /// A vote.
    Vote(SignedVote),
}

/// What happens to the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<V> {
    /// Start (or resume) agreeing on `height` with these validators.
    StartHeight {
        /// The height.
        height: u64,
        /// Its validators.
        validators: Validators,
    },
    /// The driver's value, after [`Effect::RequestValue`].
    ProposeValue {
        /// The height asked for.
        height: u64,
        /// The round asked for.
        round: u32,
        /// The value.
        value: V,
    },
    /// A proposal from the network; `valid` is the driver's check of the
    /// value against the ledger, `timely` its check of the value's time
    /// against its own clock when the proposal arrived.
    Proposal {
        /// The proposal.
        proposal: SignedProposal<V>,
        /// Whether the value is valid.
        valid: bool,
        /// Whether the value's time was close enough to this validator's
        /// clock. Only a fresh proposal (no valid round) needs it to be
        /// prevoted (line 22); a re-proposal with a proof of lock, locking
        /// on a quorum of prevotes and deciding on a quorum of precommits
        /// need validity alone, as in Tendermint's proposer-based
        /// timestamps. So a value once prevoted by a quorum never becomes
        /// unvotable, and a validator whose clock is behind still locks
        /// and decides with the others.
        timely: bool,
    },
    /// A vote from the network.
    Vote(SignedVote),
    /// A timeout armed by [`Effect::ArmTimeout`] fired.
    TimeoutElapsed {
        /// Which.
        kind: TimeoutKind,
        /// Its height.
        height: u64,
        /// Its round.
        round: u32,
    },
}

/// Two different votes by one validator for the same height, round and
/// kind: proof that it is faulty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// The first vote seen.
    pub first: SignedVote,
    /// The conflicting one.
    pub second: SignedVote,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<V> {
    /// Make this durable before carrying out any later effect.
    Persist(PersistedState<V>),
    /// Send to every validator.
    Broadcast(Message<V>),
    /// Deliver `TimeoutElapsed` at `at`.
    ArmTimeout {
        /// Which.
        kind: TimeoutKind,
        /// Height.
        height: u64,
        /// Round.
        round: u32,
        /// When.
        at: Timestamp,
    },
    /// We propose at `(height, round)`: answer with `ProposeValue`.
    RequestValue {
        /// Height.
        height: u64,
        /// Round.
        round: u32,
    },
    /// `value` is decided at `height`; the certificate proves it.
    Decide {
        /// Height.
        height: u64,
        /// The value.
        value: V,
        /// A quorum of precommits for it.
        certificate: QuorumCertificate,
    },
    /// A validator equivocated.
    Evidence(Equivocation),
    /// A message was dropped (bad signature, not a validator, wrong
    /// proposer); the driver counts and logs these.
    Rejected {
        /// Why.
        reason: &'static str,
    },
}

/// What must survive a crash so we never sign conflicting messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState<V> {
    /// The height.
    pub height: u64,
    /// The round.
    pub round: u32,
    /// The step.
    pub step: Step,
    /// Locked round and value.
    pub locked: Option<(u32, V)>,
    /// Valid round and value.
    pub valid: Option<(u32, V)>,
    /// Votes we signed at this height.
    pub signed_votes: Vec<SignedVote>,
    /// Rounds of this height in which we signed a proposal.
    pub proposed_rounds: Vec<u32>,
}

#[derive(Debug, Default)]
struct RoundState<V> {
    /// The round's proposal, whether it is valid, and whether it was timely.
    proposal: Option<(SignedProposal<V>, bool, bool)>,
    /// Votes per voter: one normally, two when the voter equivocated (the
    /// paper counts messages per value, so an equivocator counts toward
    /// each value it signed; at most f of them can, which keeps quorums
    /// intersecting in an honest voter).
    prevotes: BTreeMap<u16, Vec<SignedVote>>,
    precommits: BTreeMap<u16, Vec<SignedVote>>,
    prevote_timeout_armed: bool,
    precommit_timeout_armed: bool,
    locked_in_this_round: bool,
}

impl<V> RoundState<V> {
    fn new() -> Self {
        Self {
            proposal: None,
            prevotes: BTreeMap::new(),
            precommits: BTreeMap::new(),
            prevote_timeout_armed: false,
            precommit_timeout_armed: false,
            locked_in_this_round: false,
        }
    }

    fn senders(&self) -> BTreeSet<u16> {
        let mut s: BTreeSet<u16> = self
            .prevotes
            .keys()
            .chain(self.precommits.keys())
            .copied()
            .collect();
        if let Some((p, _, _)) = &self.proposal {
            s.insert(p.proposer);
        }
        s
    }
}

/// The agreement state machine of one validator.
#[derive(Debug)]
pub struct Machine<V> {
    config: Config,
    key: Keypair,
    validators: Validators,
    me: Option<u16>,
    height: u64,
    round: u32,
    step: Step,
    locked: Option<(u32, V)>,
    valid: Option<(u32, V)>,
    decided: bool,
    rounds: BTreeMap<u32, RoundState<V>>,
    signed_votes: Vec<SignedVote>,
    proposed_rounds: Vec<u32>,
    started: bool,
    next_height: Vec<Input<V>>,
}

impl<V: ConsensusValue> Machine<V> {
    /// A machine with no history (a fresh validator, or a new height).
    pub fn new(config: Config, key: Keypair) -> Self {
        Self {
            config,
            key,
            validators: Validators::new(Vec::new()),
            me: None,
            height: 0,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            decided: false,
            rounds: BTreeMap::new(),
            signed_votes: Vec::new(),
            proposed_rounds: Vec::new(),
            started: false,
            next_height: Vec::new(),
        }
    }

    /// A machine resuming from what it persisted before a crash. The next
    /// `StartHeight` for the same height keeps the locks and signed votes.
    pub fn restore(config: Config, key: Keypair, persisted: PersistedState<V>) -> Self {
        let mut m = Self::new(config, key);
        m.height = persisted.height;
        m.round = persisted.round;
        m.step = persisted.step;
        m.locked = persisted.locked;
        m.valid = persisted.valid;
        m.signed_votes = persisted.signed_votes;
        m.proposed_rounds = persisted.proposed_rounds;
        m
    }

    /// The current height.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The current round.
    pub fn round(&self) -> u32 {
        self.round
    }

    fn persisted(&self) -> PersistedState<V> {
        PersistedState {
            height: self.height,
            round: self.round,
            step: self.step,
            locked: self.locked.clone(),
            valid: self.valid.clone(),
            signed_votes: self.signed_votes.clone(),
            proposed_rounds: self.proposed_rounds.clone(),
        }
    }

    fn timeout_at(&self, kind: TimeoutKind, round: u32, now: Timestamp) -> Timestamp {
        let base = match kind {
            TimeoutKind::Propose => self.config.propose_ms,
            TimeoutKind::Prevote => self.config.prevote_ms,
            TimeoutKind::Precommit => self.config.precommit_ms,
            TimeoutKind::Rebroadcast => return now.saturating_add_ms(self.config.propose_ms),
        };
        now.saturating_add_ms(
            base.saturating_add(u64::from(round).saturating_mul(self.config.delta_ms)),
        )
    }

    /// Applies one input; returns the effects to carry out, in order.
    pub fn apply(&mut self, input: Input<V>, now: Timestamp) -> Vec<Effect<V>> {
        let mut fx = Vec::new();
        match input {
            Input::StartHeight { height, validators } => {
                let resuming = height == self.height && !self.started;
                if !resuming {
                    self.locked = None;
                    self.valid = None;
                    self.signed_votes.clear();
                    self.proposed_rounds.clear();
                    self.round = 0;
                }
                self.height = height;
                self.me = validators.index_of(&self.key.did());
                self.validators = validators;
                self.decided = false;
                self.rounds.clear();
                self.started = true;
                let round = self.round;
                self.start_round(round, now, &mut fx);
                // Replay what arrived early for this height.
                for early in std::mem::take(&mut self.next_height) {
                    match early {
                        Input::Proposal {
                            proposal,
                            valid,
                            timely,
                        } if proposal.height == height => {
                            self.on_proposal(proposal, valid, timely, &mut fx)
                        }
                        Input::Vote(vote) if vote.height == height => self.on_vote(vote, &mut fx),
                        _ => {}
                    }
                }
            }
            Input::ProposeValue {
                height,
                round,
                value,
            } => {
                if self.started
                    && height == self.height
                    && round == self.round
                    && self.step == Step::Propose
                {
                    self.propose(value, None, now, &mut fx);
                }
            }
            Input::Proposal {
                proposal,
                valid,
                timely,
            } => self.on_proposal(proposal, valid, timely, &mut fx),
            Input::Vote(vote) => self.on_vote(vote, &mut fx),
            Input::TimeoutElapsed {
                kind,
                height,
                round,
            } => {
                if self.started && height == self.height && round == self.round && !self.decided {
                    match (kind, self.step) {
                        (TimeoutKind::Propose, Step::Propose) => {
                            self.vote(VoteKind::Prevote, None, now, &mut fx)
                        }
                        (TimeoutKind::Prevote, Step::Prevote) => {
                            self.vote(VoteKind::Precommit, None, now, &mut fx)
                        }
                        (TimeoutKind::Precommit, _) => self.start_round(round + 1, now, &mut fx),
                        (TimeoutKind::Rebroadcast, _) => self.rebroadcast(now, &mut fx),
                        _ => {}
                    }
                }
            }
        }
        if self.started && !self.decided {
            self.run_rules(now, &mut fx);
        }
        fx
    }

    fn start_round(&mut self, round: u32, now: Timestamp, fx: &mut Vec<Effect<V>>) {
        self.round = round;
        self.step = Step::Propose;
        // Forget rounds we have left behind (their messages can no longer
        // change anything but a decision, kept via the decide rule below).
        self.rounds
            .retain(|r, _| r.saturating_add(ROUNDS_BEHIND_MAX) >= round);
        let proposer = self
            .validators
            .proposer(self.height, round)
            .and_then(|d| self.validators.index_of(d));
        if proposer.is_some() && proposer == self.me {
            if self.proposed_rounds.contains(&round) {
                // Proposed before a crash: proposing again could equivocate.
            } else if let Some((vr, value)) = self.valid.clone() {
                self.propose(value, Some(vr), now, fx);
            } else {
                fx.push(Effect::RequestValue {
                    height: self.height,
                    round,
                });
            }
        }
        fx.push(Effect::ArmTimeout {
            kind: TimeoutKind::Propose,
            height: self.height,
            round,
            at: self.timeout_at(TimeoutKind::Propose, round, now),
        });
        fx.push(Effect::ArmTimeout {
            kind: TimeoutKind::Rebroadcast,
            height: self.height,
            round,
            at: self.timeout_at(TimeoutKind::Rebroadcast, round, now),
        });
    }

    /// Re-sends what we signed in the current round (no new signatures),
    /// and arms the next rebroadcast.
    fn rebroadcast(&mut self, now: Timestamp, fx: &mut Vec<Effect<V>>) {
        let round = self.round;
        if let Some(state) = self.rounds.get(&round)
            && let Some((proposal, _, _)) = &state.proposal
            && Some(proposal.proposer) == self.me
        {
            fx.push(Effect::Broadcast(Message::Proposal(proposal.clone())));
        }
        // Our votes of this round, and our non-nil prevotes of earlier ones:
        // a value re-proposed with a valid round is only accepted by peers
        // that hold that round's prevote quorum (Tendermint gossips these
        // proof-of-lock votes for the same reason).
        for vote in self
            .signed_votes
            .iter()
            .filter(|v| v.round == round || (v.kind == VoteKind::Prevote && v.value_id.is_some()))
        {
            fx.push(Effect::Broadcast(Message::Vote(vote.clone())));
        }
        fx.push(Effect::ArmTimeout {
            kind: TimeoutKind::Rebroadcast,
            height: self.height,
            round,
            at: self.timeout_at(TimeoutKind::Rebroadcast, round, now),
        });
    }

    fn propose(
        &mut self,
        value: V,
        valid_round: Option<u32>,
        now: Timestamp,
        fx: &mut Vec<Effect<V>>,
    ) {
        let Some(me) = self.me else { return };
        if self.proposed_rounds.contains(&self.round) {
            return;
        }
        let id = value.id();
        let signature = crate::verified::sign_own(
            &self.key,
            &proposal_sign_bytes(
                &self.config.chain_id,
                self.height,
                self.round,
                valid_round,
                &id,
            ),
        );
        let proposal = SignedProposal {
            height: self.height,
            round: self.round,
            valid_round,
            value,
            proposer: me,
            signature,
        };
        self.proposed_rounds.push(self.round);
        fx.push(Effect::Persist(self.persisted()));
        fx.push(Effect::Broadcast(Message::Proposal(proposal.clone())));
        self.record_proposal(proposal, true, true);
        let _ = now;
    }

    /// Signs (or re-sends the vote already signed for) `(round, kind)`.
    fn vote(
        &mut self,
        kind: VoteKind,
        value_id: Option<[u8; 32]>,
        _now: Timestamp,
        fx: &mut Vec<Effect<V>>,
    ) {
        let round = self.round;
        self.step = match kind {
            VoteKind::Prevote => Step::Prevote,
            VoteKind::Precommit => Step::Precommit,
        };
        let Some(me) = self.me else { return };
        let vote = match self
            .signed_votes
            .iter()
            .find(|v| v.round == round && v.kind == kind)
        {
            // Never sign two different votes for one (height, round, kind).
            Some(existing) => existing.clone(),
            None => {
                let vote = SignedVote::sign(
                    &self.config.chain_id,
                    kind,
                    self.height,
                    round,
                    value_id,
                    me,
                    &self.key,
                );
                self.signed_votes.push(vote.clone());
                fx.push(Effect::Persist(self.persisted()));
                vote
            }
        };
        fx.push(Effect::Broadcast(Message::Vote(vote.clone())));
        self.record_vote(vote, fx);
    }

    /// Keeps a message for the next height, bounded.
    fn keep_for_next_height(&mut self, input: Input<V>) {
        if self.next_height.len() < NEXT_HEIGHT_MESSAGES_MAX {
            self.next_height.push(input);
        }
    }

    fn on_proposal(
        &mut self,
        proposal: SignedProposal<V>,
        valid: bool,
        timely: bool,
        fx: &mut Vec<Effect<V>>,
    ) {
        if self.started && proposal.height == self.height + 1 {
            self.keep_for_next_height(Input::Proposal {
                proposal,
                valid,
                timely,
            });
            return;
        }
        if !self.started || proposal.height != self.height {
            return;
        }
        if proposal.round > self.round.saturating_add(ROUNDS_AHEAD_MAX)
            || proposal.round.saturating_add(ROUNDS_BEHIND_MAX) < self.round
        {
            return;
        }
        if let Err(reason) =
            authenticate_proposal(&self.config.chain_id, &self.validators, &proposal)
        {
            fx.push(Effect::Rejected { reason });
            return;
        }
        self.record_proposal(proposal, valid, timely);
    }

    fn record_proposal(&mut self, proposal: SignedProposal<V>, valid: bool, timely: bool) {
        let state = self
            .rounds
            .entry(proposal.round)
            .or_insert_with(RoundState::new);
        // The first proposal of a round counts; a different second one from
        // the same proposer is ignored (the votes will show who followed it).
        if state.proposal.is_none() {
            state.proposal = Some((proposal, valid, timely));
        }
    }

    fn on_vote(&mut self, vote: SignedVote, fx: &mut Vec<Effect<V>>) {
        if self.started && vote.height == self.height + 1 {
            self.keep_for_next_height(Input::Vote(vote));
            return;
        }
        if !self.started || vote.height != self.height {
            return;
        }
        // Keep a bounded window of rounds: a few behind (a decision may still
        // complete there) and ROUNDS_AHEAD_MAX ahead (for the round skip).
        if vote.round > self.round.saturating_add(ROUNDS_AHEAD_MAX)
            || vote.round.saturating_add(ROUNDS_BEHIND_MAX) < self.round
        {
            return;
        }
        if !vote.verify(&self.config.chain_id, &self.validators) {
            fx.push(Effect::Rejected {
                reason: "vote signature does not verify or voter is not a validator",
            });
            return;
        }
        self.record_vote(vote, fx);
    }

    fn record_vote(&mut self, vote: SignedVote, fx: &mut Vec<Effect<V>>) {
        let state = self
            .rounds
            .entry(vote.round)
            .or_insert_with(RoundState::new);
        let votes = match vote.kind {
            VoteKind::Prevote => &mut state.prevotes,
            VoteKind::Precommit => &mut state.precommits,
        };
        let mine = votes.entry(vote.voter).or_default();
        if mine.iter().any(|v| v.value_id == vote.value_id) {
            return; // a duplicate
        }
        if let Some(first) = mine.first() {
            fx.push(Effect::Evidence(Equivocation {
                first: first.clone(),
                second: vote.clone(),
            }));
        }
        // Two versions are enough to count for either value and to prove
        // the fault; more would only let one voter grow our memory.
        if mine.len() < 2 {
            mine.push(vote);
        }
    }

    /// Voters that voted for `id` (nil when `None`).
    fn count(votes: &BTreeMap<u16, Vec<SignedVote>>, id: Option<&[u8; 32]>) -> usize {
        votes
            .values()
            .filter(|vs| vs.iter().any(|v| v.value_id.as_ref() == id))
            .count()
    }

    /// Evaluates the "upon" rules until none fires.
    fn run_rules(&mut self, now: Timestamp, fx: &mut Vec<Effect<V>>) {
        let quorum = self.validators.quorum();
        let f1 = self.validators.max_faulty() + 1;
        loop {
            if self.decided {
                return;
            }
            // Line 49: a proposal and a quorum of precommits for it, in any round.
            let decision = self.rounds.iter().find_map(|(r, s)| {
                let (p, valid, _) = s.proposal.as_ref()?;
                let id = p.value.id();
                (*valid && Self::count(&s.precommits, Some(&id)) >= quorum)
                    .then(|| (*r, p.value.clone(), id))
            });
            if let Some((round, value, id)) = decision {
                let state = &self.rounds[&round];
                let signatures: Vec<(u16, Signature)> = state
                    .precommits
                    .values()
                    .filter_map(|vs| vs.iter().find(|v| v.value_id == Some(id)))
                    .map(|v| (v.voter, v.signature))
                    .collect();
                self.decided = true;
                fx.push(Effect::Decide {
                    height: self.height,
                    value,
                    certificate: QuorumCertificate {
                        height: self.height,
                        round,
                        value_id: id,
                        signatures,
                    },
                });
                return;
            }
            // Line 55: f+1 validators are in a later round: skip to it.
            let skip = self
                .rounds
                .iter()
                .filter(|(r, _)| **r > self.round)
                .find(|(_, s)| s.senders().len() >= f1)
                .map(|(r, _)| *r);
            if let Some(r) = skip {
                self.start_round(r, now, fx);
                continue;
            }
            let round = self.round;
            let state = self.rounds.entry(round).or_insert_with(RoundState::new);
            let proposal = state.proposal.clone();

            if self.step == Step::Propose
                && let Some((p, valid, timely)) = &proposal
            {
                let id = p.value.id();
                match p.valid_round {
                    // Line 22, with the timeliness of proposer-based
                    // timestamps: a fresh value must be timely.
                    None => {
                        let ok = *valid
                            && *timely
                            && self.locked.as_ref().is_none_or(|(_, v)| v.id() == id);
                        self.vote(VoteKind::Prevote, ok.then_some(id), now, fx);
                        continue;
                    }
                    // Line 28.
                    Some(vr) if vr < round => {
                        let support = self
                            .rounds
                            .get(&vr)
                            .map(|s| Self::count(&s.prevotes, Some(&id)))
                            .unwrap_or(0);
                        if support >= quorum {
                            let ok = *valid
                                && self
                                    .locked
                                    .as_ref()
                                    .is_none_or(|(lr, v)| *lr <= vr || v.id() == id);
                            self.vote(VoteKind::Prevote, ok.then_some(id), now, fx);
                            continue;
                        }
                    }
                    Some(_) => {}
                }
            }
            let state = self.rounds.entry(round).or_insert_with(RoundState::new);
            // Line 34.
            if self.step == Step::Prevote
                && state.prevotes.len() >= quorum
                && !state.prevote_timeout_armed
            {
                state.prevote_timeout_armed = true;
                fx.push(Effect::ArmTimeout {
                    kind: TimeoutKind::Prevote,
                    height: self.height,
                    round,
                    at: self.timeout_at(TimeoutKind::Prevote, round, now),
                });
                continue;
            }
            // Line 36.
            if self.step >= Step::Prevote
                && !state.locked_in_this_round
                && let Some((p, true, _)) = &proposal
            {
                let id = p.value.id();
                if Self::count(&state.prevotes, Some(&id)) >= quorum {
                    state.locked_in_this_round = true;
                    let value = p.value.clone();
                    if self.step == Step::Prevote {
                        self.locked = Some((round, value.clone()));
                        self.valid = Some((round, value));
                        self.vote(VoteKind::Precommit, Some(id), now, fx);
                    } else {
                        self.valid = Some((round, value));
                    }
                    continue;
                }
            }
            let state = self.rounds.entry(round).or_insert_with(RoundState::new);
            // Line 44.
            if self.step == Step::Prevote && Self::count(&state.prevotes, None) >= quorum {
                self.vote(VoteKind::Precommit, None, now, fx);
                continue;
            }
            let state = self.rounds.entry(round).or_insert_with(RoundState::new);
            // Line 47.
            if state.precommits.len() >= quorum && !state.precommit_timeout_armed {
                state.precommit_timeout_armed = true;
                fx.push(Effect::ArmTimeout {
                    kind: TimeoutKind::Precommit,
                    height: self.height,
                    round,
                    at: self.timeout_at(TimeoutKind::Precommit, round, now),
                });
                continue;
            }
            return;
        }
    }
}
