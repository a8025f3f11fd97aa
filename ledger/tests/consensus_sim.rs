//! Goal: the agreement machine is safe and live under a hostile network and
//! a Byzantine member: no two honest nodes ever decide different values at
//! one height, every decision carries a valid quorum certificate, every
//! honest node reaches the target height once the network behaves, and an
//! equivocating member is caught.
//! Method: N machines over a simulated network driven by a seeded PRNG
//! (loss, delay, duplication, reordering, a partition, crash-restart from
//! the last persisted state, one Byzantine member, one member whose clock
//! is ahead or behind so that proposals are not timely), many seeds. A failure
//! prints `seed=…`; `QUORATE_SIM_SEED=<n>` replays one seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use quorate_contracts::Timestamp;
use quorate_did::Keypair;
use quorate_ledger::consensus::{
    Config, ConsensusValue, Effect, Input, Machine, Message, PersistedState, QuorumCertificate,
    SignedVote, TimeoutKind, Validators, VoteKind, verify_certificate,
};

const CHAIN: &str = "sim";

#[derive(Debug, Clone, PartialEq)]
struct Value {
    height: u64,
    proposer: usize,
    nonce: u64,
}

impl ConsensusValue for Value {
    fn id(&self) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&self.height.to_be_bytes());
        id[8..16].copy_from_slice(&(self.proposer as u64).to_be_bytes());
        id[16..24].copy_from_slice(&self.nonce.to_be_bytes());
        id
    }
}

/// SplitMix64: small, seedable, good enough for fault injection.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Byzantine {
    None,
    /// Signs a conflicting second vote for every vote it sends, and sends
    /// each version to half of the others.
    Equivocate,
    /// Sends votes under other validators' indexes, signed with its own key.
    Forge,
}

/// A member whose clock is off: which proposals are timely for whom.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Skew {
    None,
    /// Member `n`'s clock is behind: every value built by another member
    /// looks too far ahead to it.
    Behind(usize),
    /// Member `n`'s clock is ahead: the values it builds look too far
    /// ahead to every other member.
    Ahead(usize),
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    n: usize,
    heights: u64,
    loss_percent: u64,
    dup_percent: u64,
    delay_max_ms: u64,
    /// Faults (loss, partition) stop at this simulated time.
    stable_after_ms: u64,
    partition: bool,
    crash: bool,
    byzantine: Byzantine,
    skew: Skew,
}

enum Event {
    Deliver {
        to: usize,
        message: Message<Value>,
    },
    Timeout {
        node: usize,
        kind: TimeoutKind,
        height: u64,
        round: u32,
    },
    Restart {
        node: usize,
    },
    /// What the node's sync does: fetch decided heights from a peer that is
    /// ahead, check their certificates, and resume agreement after them.
    Sync {
        node: usize,
    },
}

struct Node {
    machine: Option<Machine<Value>>,
    persisted: Option<PersistedState<Value>>,
    decided: Vec<Value>,
    certificates: Vec<QuorumCertificate>,
    evidence: usize,
    /// Heights decided by agreement (the rest came by sync).
    by_agreement: u64,
}

struct Sim {
    s: Scenario,
    /// Messages each node has already relayed (gossip forwards a message
    /// once; the paper assumes what one honest node receives, all do).
    relayed: Vec<std::collections::HashSet<Vec<u8>>>,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    keys: Vec<Keypair>,
    validators: Validators,
    nodes: Vec<Node>,
    nonce: u64,
}

fn config() -> Config {
    Config {
        chain_id: CHAIN.into(),
        propose_ms: 300,
        prevote_ms: 200,
        precommit_ms: 200,
        delta_ms: 100,
    }
}

impl Sim {
    fn new(s: Scenario, seed: u64) -> Self {
        let keys: Vec<Keypair> = (0..s.n)
            .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]))
            .collect();
        let validators = Validators::new(keys.iter().map(|k| k.did()).collect());
        let nodes = (0..s.n)
            .map(|i| Node {
                machine: Some(Machine::new(config(), keys[i].clone())),
                persisted: None,
                decided: Vec::new(),
                certificates: Vec::new(),
                evidence: 0,
                by_agreement: 0,
            })
            .collect();
        Self {
            relayed: vec![std::collections::HashSet::new(); s.n],
            s,
            rng: Rng(seed),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            keys,
            validators,
            nodes,
            nonce: 0,
        }
    }

    fn byzantine(&self, i: usize) -> bool {
        self.s.byzantine != Byzantine::None && i == 0
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Whether `value` is timely for member `to`'s clock.
    fn timely(&self, to: usize, value: &Value) -> bool {
        match self.s.skew {
            Skew::None => true,
            Skew::Behind(n) => to != n || value.proposer == n,
            Skew::Ahead(n) => value.proposer != n || to == n,
        }
    }

    fn faulty_network(&self) -> bool {
        self.now < self.s.stable_after_ms
    }

    fn send(&mut self, from: usize, to: usize, message: Message<Value>) {
        if self.faulty_network() {
            if self.rng.chance(self.s.loss_percent) {
                return;
            }
            // A partition {0, 1} | {2, …} while faults last.
            if self.s.partition && (from < 2) != (to < 2) && self.now > 500 {
                return;
            }
        }
        let delay = 1 + if self.faulty_network() {
            self.rng.below(self.s.delay_max_ms)
        } else {
            self.rng.below(5)
        };
        let copies = if self.faulty_network() && self.rng.chance(self.s.dup_percent) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + delay + self.rng.below(3);
            self.schedule(
                at,
                Event::Deliver {
                    to,
                    message: message.clone(),
                },
            );
        }
    }

    fn broadcast(&mut self, from: usize, message: Message<Value>) {
        for to in 0..self.s.n {
            if to == from {
                continue;
            }
            let message = if self.byzantine(from) {
                self.corrupt(from, to, &message)
            } else {
                message.clone()
            };
            self.send(from, to, message);
        }
    }

    /// What the Byzantine member sends to `to` instead of `message`.
    fn corrupt(&mut self, from: usize, to: usize, message: &Message<Value>) -> Message<Value> {
        let Message::Vote(vote) = message else {
            return message.clone();
        };
        match self.s.byzantine {
            Byzantine::Equivocate if to.is_multiple_of(2) => {
                let other = Some([0xee; 32]);
                let value_id = if vote.value_id.is_some() { None } else { other };
                Message::Vote(SignedVote::sign(
                    CHAIN,
                    vote.kind,
                    vote.height,
                    vote.round,
                    value_id,
                    vote.voter,
                    &self.keys[from],
                ))
            }
            Byzantine::Forge => {
                let victim = (from as u16 + 1) % self.s.n as u16;
                Message::Vote(SignedVote::sign(
                    CHAIN,
                    VoteKind::Precommit,
                    vote.height,
                    vote.round,
                    Some([0xee; 32]),
                    victim,
                    &self.keys[from],
                ))
            }
            _ => message.clone(),
        }
    }

    fn input(&mut self, node: usize, input: Input<Value>) {
        let Some(machine) = self.nodes[node].machine.as_mut() else {
            return;
        };
        let effects = machine.apply(input, Timestamp(self.now));
        for effect in effects {
            match effect {
                Effect::Persist(state) => self.nodes[node].persisted = Some(state),
                Effect::Broadcast(message) => self.broadcast(node, message),
                Effect::ArmTimeout {
                    kind,
                    height,
                    round,
                    at,
                } => self.schedule(
                    at.0,
                    Event::Timeout {
                        node,
                        kind,
                        height,
                        round,
                    },
                ),
                Effect::RequestValue { height, round } => {
                    self.nonce += 1;
                    let value = Value {
                        height,
                        proposer: node,
                        nonce: self.nonce,
                    };
                    self.input(
                        node,
                        Input::ProposeValue {
                            height,
                            round,
                            value,
                        },
                    );
                }
                Effect::Decide {
                    height,
                    value,
                    certificate,
                } => {
                    verify_certificate(CHAIN, &self.validators, &certificate)
                        .expect("decided with a valid certificate");
                    assert_eq!(certificate.value_id, value.id());
                    assert_eq!(height, self.nodes[node].decided.len() as u64 + 1);
                    self.nodes[node].decided.push(value);
                    self.nodes[node].certificates.push(certificate);
                    self.nodes[node].by_agreement += 1;
                    if height < self.s.heights {
                        let validators = self.validators.clone();
                        self.input(
                            node,
                            Input::StartHeight {
                                height: height + 1,
                                validators,
                            },
                        );
                    }
                }
                Effect::Evidence(_) => self.nodes[node].evidence += 1,
                Effect::Rejected { .. } => {}
            }
        }
    }

    fn run(&mut self) {
        for node in 0..self.s.n {
            let validators = self.validators.clone();
            self.input(
                node,
                Input::StartHeight {
                    height: 1,
                    validators,
                },
            );
        }
        if self.s.crash {
            // Node 3 crashes at a random moment during the faults and comes back.
            let at = 200 + self.rng.below(self.s.stable_after_ms.max(400));
            self.schedule(at, Event::Restart { node: usize::MAX });
            self.schedule(at + 700, Event::Restart { node: 3 });
        }
        for node in 0..self.s.n {
            self.schedule(1_000 + node as u64, Event::Sync { node });
        }
        let deadline = self.s.stable_after_ms + 60_000;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > deadline || self.done() {
                break;
            }
            self.now = at;
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            match event {
                Event::Deliver { to, message } => {
                    // Honest nodes relay a message the first time they see it.
                    let key = message_key(&message);
                    if !self.byzantine(to)
                        && self.nodes[to].machine.is_some()
                        && self.relayed[to].insert(key)
                    {
                        for next in 0..self.s.n {
                            if next != to {
                                self.send(to, next, message.clone());
                            }
                        }
                    }
                    let input = match message {
                        Message::Proposal(proposal) => Input::Proposal {
                            timely: self.timely(to, &proposal.value),
                            proposal,
                            valid: true,
                        },
                        Message::Vote(vote) => Input::Vote(vote),
                    };
                    self.input(to, input);
                }
                Event::Timeout {
                    node,
                    kind,
                    height,
                    round,
                } => self.input(
                    node,
                    Input::TimeoutElapsed {
                        kind,
                        height,
                        round,
                    },
                ),
                Event::Restart { node: usize::MAX } => self.nodes[3].machine = None,
                Event::Sync { node } => {
                    self.schedule(self.now + 1_000, Event::Sync { node });
                    self.sync(node);
                }
                Event::Restart { node } => {
                    // Back from the last persisted state, at the next undecided height.
                    let height = self.nodes[node].decided.len() as u64 + 1;
                    let machine = match self.nodes[node].persisted.clone() {
                        Some(p) if p.height == height => {
                            Machine::restore(config(), self.keys[node].clone(), p)
                        }
                        _ => Machine::new(config(), self.keys[node].clone()),
                    };
                    self.nodes[node].machine = Some(machine);
                    if height <= self.s.heights {
                        let validators = self.validators.clone();
                        self.input(node, Input::StartHeight { height, validators });
                    }
                }
            }
        }
    }

    fn sync(&mut self, node: usize) {
        if self.nodes[node].machine.is_none() || self.byzantine(node) || self.faulty_network() {
            return;
        }
        let mine = self.nodes[node].decided.len();
        let Some(ahead) = (0..self.s.n)
            .filter(|i| !self.byzantine(*i))
            .max_by_key(|i| self.nodes[*i].decided.len())
            .filter(|i| self.nodes[*i].decided.len() > mine)
        else {
            return;
        };
        for h in mine..self.nodes[ahead].decided.len() {
            let (value, cert) = (
                self.nodes[ahead].decided[h].clone(),
                self.nodes[ahead].certificates[h].clone(),
            );
            verify_certificate(CHAIN, &self.validators, &cert).expect("synced block is certified");
            self.nodes[node].decided.push(value);
            self.nodes[node].certificates.push(cert);
        }
        let height = self.nodes[node].decided.len() as u64 + 1;
        self.nodes[node].machine = Some(Machine::new(config(), self.keys[node].clone()));
        if height <= self.s.heights {
            let validators = self.validators.clone();
            self.input(node, Input::StartHeight { height, validators });
        }
    }

    fn honest(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.byzantine(*i))
    }

    fn done(&self) -> bool {
        self.honest()
            .all(|(_, n)| n.decided.len() as u64 >= self.s.heights)
    }

    fn check(&self, seed: u64) {
        // Safety: honest nodes agree on every height any two of them decided.
        let honest: Vec<&Node> = self.honest().map(|(_, n)| n).collect();
        for h in 0..self.s.heights as usize {
            let decided: Vec<&Value> = honest.iter().filter_map(|n| n.decided.get(h)).collect();
            assert!(
                decided.windows(2).all(|w| w[0] == w[1]),
                "seed={seed}: conflicting decisions at height {}",
                h + 1
            );
        }
        // Liveness: after the network stabilised, everyone got there.
        if self
            .honest()
            .any(|(_, n)| (n.decided.len() as u64) < self.s.heights)
        {
            for (i, n) in self.nodes.iter().enumerate() {
                let at = n.machine.as_ref().map(|m| (m.height(), m.round()));
                eprintln!(
                    "seed={seed} node {i}: decided {}, machine at (height, round) {at:?}",
                    n.decided.len()
                );
            }
        }
        for (i, n) in self.honest() {
            assert_eq!(
                n.decided.len() as u64,
                self.s.heights,
                "seed={seed}: node {i} decided only {} heights",
                n.decided.len()
            );
        }
    }
}

/// Identifies a message for relaying: the signature is unique to it.
fn message_key(message: &Message<Value>) -> Vec<u8> {
    match message {
        Message::Proposal(p) => p.signature.as_bytes().to_vec(),
        Message::Vote(v) => v.signature.as_bytes().to_vec(),
    }
}

fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("QUORATE_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("QUORATE_SIM_SEED is a number")],
        Err(_) => (1..=default).collect(),
    }
}

fn run_scenario(s: Scenario, count: u64) -> Vec<Sim> {
    seeds(count)
        .into_iter()
        .map(|seed| {
            let mut sim = Sim::new(s, seed);
            sim.run();
            sim.check(seed);
            sim
        })
        .collect()
}

const CALM: Scenario = Scenario {
    n: 4,
    heights: 5,
    loss_percent: 0,
    dup_percent: 0,
    delay_max_ms: 5,
    stable_after_ms: 0,
    partition: false,
    crash: false,
    byzantine: Byzantine::None,
    skew: Skew::None,
};

#[test]
fn n4_calm_network_decides_every_height() {
    run_scenario(CALM, 20);
}

#[test]
fn n4_lossy_reordering_duplicating_network() {
    run_scenario(
        Scenario {
            loss_percent: 20,
            dup_percent: 10,
            delay_max_ms: 400,
            stable_after_ms: 5_000,
            ..CALM
        },
        60,
    );
}

#[test]
fn n7_lossy_partition_heals() {
    run_scenario(
        Scenario {
            n: 7,
            loss_percent: 10,
            delay_max_ms: 200,
            stable_after_ms: 6_000,
            partition: true,
            ..CALM
        },
        40,
    );
}

#[test]
fn n4_crash_restart_from_persisted_state() {
    run_scenario(
        Scenario {
            loss_percent: 10,
            delay_max_ms: 200,
            stable_after_ms: 4_000,
            crash: true,
            ..CALM
        },
        60,
    );
}

#[test]
fn n4_f1_equivocating_member_is_caught_and_harmless() {
    let sims = run_scenario(
        Scenario {
            loss_percent: 5,
            delay_max_ms: 100,
            stable_after_ms: 2_000,
            byzantine: Byzantine::Equivocate,
            ..CALM
        },
        60,
    );
    let caught = sims
        .iter()
        .filter(|s| s.honest().any(|(_, n)| n.evidence > 0))
        .count();
    assert!(
        caught * 2 > sims.len(),
        "equivocation detected in only {caught} of {} runs",
        sims.len()
    );
}

#[test]
fn n4_f1_forged_votes_are_rejected() {
    run_scenario(
        Scenario {
            delay_max_ms: 50,
            byzantine: Byzantine::Forge,
            ..CALM
        },
        40,
    );
}

#[test]
fn n7_f2_equivocating_member_in_a_lossy_network() {
    run_scenario(
        Scenario {
            n: 7,
            loss_percent: 15,
            dup_percent: 5,
            delay_max_ms: 300,
            stable_after_ms: 5_000,
            byzantine: Byzantine::Equivocate,
            ..CALM
        },
        30,
    );
}

#[test]
#[ignore = "long soak: cargo test -p quorate-ledger --test consensus_sim -- --ignored"]
fn soak_many_seeds_every_fault() {
    for (s, count) in [
        (
            Scenario {
                loss_percent: 25,
                dup_percent: 10,
                delay_max_ms: 500,
                stable_after_ms: 8_000,
                crash: true,
                ..CALM
            },
            2_000,
        ),
        (
            Scenario {
                n: 7,
                loss_percent: 15,
                delay_max_ms: 300,
                stable_after_ms: 8_000,
                partition: true,
                byzantine: Byzantine::Equivocate,
                ..CALM
            },
            1_000,
        ),
    ] {
        run_scenario(s, count);
    }
}

#[test]
fn n4_a_member_whose_clock_is_behind_still_locks_and_decides_by_agreement() {
    // It prevotes nil on every value but its own (none is timely for it),
    // yet locks and precommits on the others' prevote quorums and decides
    // each height itself, with no sync needed.
    for sim in run_scenario(
        Scenario {
            heights: 8,
            skew: Skew::Behind(3),
            ..CALM
        },
        20,
    ) {
        assert_eq!(sim.nodes[3].by_agreement, 8);
    }
    run_scenario(
        Scenario {
            loss_percent: 10,
            delay_max_ms: 200,
            stable_after_ms: 3_000,
            skew: Skew::Behind(3),
            ..CALM
        },
        40,
    );
}

#[test]
fn n4_values_from_a_member_whose_clock_is_ahead_are_never_decided() {
    for sim in run_scenario(
        Scenario {
            heights: 8,
            loss_percent: 5,
            delay_max_ms: 100,
            stable_after_ms: 2_000,
            skew: Skew::Ahead(2),
            ..CALM
        },
        40,
    ) {
        for (i, node) in sim.nodes.iter().enumerate() {
            assert!(
                node.decided.iter().all(|v| v.proposer != 2),
                "node {i} decided a value built by the member ahead"
            );
        }
    }
}

/// Goal: `authenticate_proposal`, the check a node runs before it checks a
/// proposed block, accepts the round's proposer's signed proposal and
/// refuses one from another validator, one whose signature was made by
/// another key or for another round or value, and one naming no validator.
/// Method: four validators; proposals signed by hand with
/// `proposal_sign_bytes`.
#[test]
fn proposals_are_authenticated_before_their_value_is_checked() {
    use quorate_ledger::consensus::{
        SignedProposal, Validators, authenticate_proposal, proposal_sign_bytes,
    };
    let keys: Vec<Keypair> = (0..4u8)
        .map(|i| Keypair::from_seed(&[i + 40; 32]))
        .collect();
    let validators = Validators::new(keys.iter().map(|k| k.did()).collect());
    let (height, round) = (7, 2);
    let proposer_did = *validators.proposer(height, round).unwrap();
    let proposer = validators.index_of(&proposer_did).unwrap();
    let key = keys.iter().find(|k| k.did() == proposer_did).unwrap();
    let value = Value {
        height,
        proposer: usize::from(proposer),
        nonce: 1,
    };
    let signed = |by: &Keypair, round: u32, value: &Value| {
        by.sign(&proposal_sign_bytes(
            CHAIN,
            height,
            round,
            None,
            &value.id(),
        ))
    };
    let proposal = SignedProposal {
        height,
        round,
        valid_round: None,
        value: value.clone(),
        proposer,
        signature: signed(key, round, &value),
    };
    assert_eq!(authenticate_proposal(CHAIN, &validators, &proposal), Ok(()));

    let other = (proposer + 1) % 4;
    let mut not_the_proposer = proposal.clone();
    not_the_proposer.proposer = other;
    not_the_proposer.signature = signed(&keys[usize::from(other)], round, &value);
    let mut wrong_key = proposal.clone();
    wrong_key.signature = signed(&keys[usize::from(other)], round, &value);
    let mut other_round = proposal.clone();
    other_round.signature = signed(key, round + 1, &value);
    let mut other_value = proposal.clone();
    other_value.value.nonce = 2;
    let mut nobody = proposal.clone();
    nobody.proposer = 9;
    for (what, bad) in [
        ("not the round's proposer", not_the_proposer),
        ("signed by another key", wrong_key),
        ("signed for another round", other_round),
        ("signed for another value", other_value),
        ("no such validator", nobody),
    ] {
        assert!(
            authenticate_proposal(CHAIN, &validators, &bad).is_err(),
            "{what}"
        );
    }
    // Another chain's proposal does not verify here.
    assert!(authenticate_proposal("other", &validators, &proposal).is_err());
}
