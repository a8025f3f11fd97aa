//! The driver: one task that owns the ledger, the agreement machine and the
//! mempool, and turns the machine's effects into durable writes, gossip
//! and timers (STYLE.md: pure core, effectful shell).
//!
//! Order matters for safety: a `Persist` effect is written (fsync) before
//! any later effect of the same step is carried out, so a vote is never
//! sent unless a restart would remember it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quorate_contracts::{MemberId, Timestamp};
use quorate_did::Keypair;
use quorate_ledger::block::{Block, CommittedBlock, ENTRIES_PER_BLOCK_MAX};
use quorate_ledger::chain::{CheckedBlock, check_timely};
use quorate_ledger::consensus::{
    self, Effect, Input, Machine, Message, PersistedState, TimeoutKind,
};
use quorate_ledger::entry::EntryId;
use quorate_ledger::hash::Hash;
use quorate_ledger::ledger::{Ledger, LedgerError};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::agreement::mempool::Mempool;
use crate::net::protocol::{self, ConsensusMessage, MempoolMessage};
use crate::net::{self, Topic};

mod commands;
mod gossip;
mod sync;

pub use commands::{COMMANDS_MAX, Command, DecideError, Handle, ProposeError};
pub use sync::SYNCED_MAX;
use sync::sync_loop;

/// Most consensus messages buffered for the next height.
pub const FUTURE_MESSAGES_MAX: usize = 1024;
/// Most equivocation evidence kept in memory.
pub const EVIDENCE_MAX: usize = 100;

/// How a node decides whether to endorse others' proposals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalPolicy {
    /// The endorsement policy's rules decide (the home's
    /// `endorsement-policy.toml`, or the careful defaults).
    Policy,
    /// Shorthand for one rule: endorse every proposal the contract rules
    /// accept.
    Auto,
    /// Shorthand for one rule: ask a person for every proposal
    /// (`quorate proposal approve|reject`).
    Manual,
}

/// The driver's settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// With nothing to order, a block is still committed this often.
    pub heartbeat: Duration,
    /// How this node endorses: its endorsement policy, compiled.
    pub policy: crate::agreement::policy::Policy,
    /// Where the policy comes from (as `GET /v1/endorsement-policy` says).
    pub policy_source: String,
    /// Agreement timeouts.
    pub consensus: consensus::Config,
    /// How often to compare tips with peers and catch up.
    pub sync_interval: Duration,
}

/// What the node reports about itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Tip height.
    pub height: u64,
    /// Tip hash.
    pub tip_hash: String,
    /// Tip time (ms since the Unix epoch).
    pub tip_time_ms: u64,
    /// The member set's epoch.
    pub epoch: u64,
    /// Members in the epoch.
    pub members: usize,
    /// Whether this node is a member (a validator).
    pub is_member: bool,
    /// Connected peers.
    pub peers: usize,
    /// Open proposals in the mempool.
    pub pending_proposals: usize,
    /// Equivocations detected.
    pub evidence: usize,
    /// Peer messages dropped, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Decided blocks adopted on the check made when they were proposed.
    pub decided_reusing_check: u64,
    /// Decided blocks checked again (not seen as a proposal, or its check
    /// was not kept).
    pub decided_rechecked: u64,
    /// The endorsement policy's decisions, by (outcome, rule).
    #[serde(skip)]
    pub policy_decisions: BTreeMap<(&'static str, String), u64>,
    /// Milliseconds since this node last committed or synced a block.
    #[serde(skip)]
    pub last_commit: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Consensus {
        kind: TimeoutKind,
        height: u64,
        round: u32,
    },
    ProposeDue {
        height: u64,
        round: u32,
    },
}

/// Checked blocks of the next height kept for its decision (one per
/// round's proposal, a few rounds).
const CHECKED_BLOCKS_MAX: usize = 8;

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The ledger failed in a way that makes going on unsafe.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The agreement state could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] quorate_ledger::codec::EncodeError),
    /// The ledger has no genesis.
    #[error("the ledger has no genesis block")]
    NoGenesis,
}

/// Why the driver stopped, when it stopped cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown future resolved.
    Shutdown,
    /// A block moved this member to a new key: the node must start again
    /// under it (its votes, endorsements and libp2p identity all change).
    KeyRotated {
        /// The member's key from that block on.
        did: quorate_did::Did,
    },
}

/// The driver task.
pub struct Driver {
    key: Keypair,
    /// This node's member id, once it is a member (it outlives key changes).
    member: Option<MemberId>,
    /// When open proposals were last gossiped again.
    last_resend: Instant,
    /// Where the next resend starts (the last proposal resent).
    resend_cursor: Option<EntryId>,
    ledger: Ledger,
    machine: Option<Machine<Block>>,
    mempool: Mempool,
    net: net::Client,
    config: DriverConfig,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    inputs: VecDeque<(Input<Block>, Option<quorate_did::Did>)>,
    future: Vec<(ConsensusMessage, Option<quorate_did::Did>)>,
    evidence: Vec<consensus::Equivocation>,
    last_commit: Instant,
    status: watch::Sender<Status>,
    commands: mpsc::Receiver<Command>,
    peers: usize,
    /// Set while we are the proposer waiting for the heartbeat: proposing
    /// as soon as an entry becomes eligible keeps commit latency low.
    waiting_to_propose: Option<(u64, u32)>,
    /// Blocks of the next height already checked (our own proposal, and
    /// proposals received), by hash: the decided one is adopted on its
    /// certificate alone, not checked a second time. Cleared on commit.
    checked: Vec<(Hash, CheckedBlock)>,
    /// How decided blocks were adopted: on a kept check, or checked again.
    decided: (u64, u64),
    /// Messages dropped, by reason (a metric), and the (peer, reason) pairs
    /// already logged, so a misbehaving peer cannot flood the log.
    rejected: BTreeMap<&'static str, u64>,
    logged: std::collections::HashSet<(String, &'static str)>,
    /// The peer whose message is being applied, to attribute rejections.
    current_peer: Option<quorate_did::Did>,
    /// The committed state, for the gateway (republished when it changes).
    state: watch::Sender<Arc<quorate_contracts::State>>,
    /// Who may read blocks, for the sync server (republished on a change).
    sync_access: watch::Sender<Arc<crate::agreement::sync_server::SyncAccess>>,
    /// The endorsement policy, and where it comes from.
    policy: crate::agreement::policy::Policy,
    policy_source: String,
    /// Its decisions, counted by (outcome, rule), at most
    /// [`POLICY_COUNTERS_MAX`] pairs.
    policy_decisions: BTreeMap<(&'static str, String), u64>,
    /// Test-only misbehaviour (`QUORATE_FAULT`).
    #[cfg(feature = "fault-injection")]
    faults: crate::agreement::fault::Faults,
}

/// Most (outcome, rule) pairs counted; past this, new pairs go uncounted.
pub const POLICY_COUNTERS_MAX: usize = 256;

/// A proposal still open after this is gossiped again.
pub const RESEND_AFTER: Duration = Duration::from_secs(3);
/// How often open proposals are gossiped again.
pub const RESEND_INTERVAL: Duration = Duration::from_secs(5);
/// Most proposals gossiped again each time.
pub const RESENDS_MAX: usize = 32;

/// Most (peer, reason) pairs remembered for log-once; past this, rejections
/// are still counted but no longer logged.
pub const LOGGED_REJECTIONS_MAX: usize = 4096;

/// The reason counted (and logged once per peer) when a proposal is not
/// prevoted because its block time is too far ahead of this node's clock.
pub const PROPOSAL_TIME_AHEAD: &str =
    "proposal not prevoted: its block time is too far ahead of this node's clock";

/// The wall clock as the pure crates see it.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    #[cfg(feature = "fault-injection")]
    let ms = ms.saturating_add_signed(crate::agreement::fault::clock_offset_ms());
    Timestamp(ms)
}

impl Driver {
    /// A driver over `ledger` (which must have its genesis).
    pub fn new(
        key: Keypair,
        ledger: Ledger,
        net: net::Client,
        config: DriverConfig,
    ) -> Result<(Self, Handle), DriverError> {
        let (commands_tx, commands) = mpsc::channel(COMMANDS_MAX);
        let (status, status_rx) = watch::channel(Status::default());
        let initial = ledger
            .chain()
            .map(|c| c.state().clone())
            .ok_or(DriverError::NoGenesis)?;
        let (state, state_rx) = watch::channel(Arc::new(initial));
        let genesis = ledger
            .chain()
            .map(|c| c.genesis_hash())
            .ok_or(DriverError::NoGenesis)?;
        let (sync_access, _) =
            watch::channel(Arc::new(crate::agreement::sync_server::SyncAccess {
                genesis,
                epoch: None,
                readers: Default::default(),
            }));
        let policy = config.policy.clone();
        let policy_source = config.policy_source.clone();
        let mut driver = Self {
            policy,
            policy_source,
            policy_decisions: BTreeMap::new(),
            key,
            member: None,
            last_resend: Instant::now(),
            resend_cursor: None,
            ledger,
            machine: None,
            mempool: Mempool::new(),
            net,
            config,
            timers: BTreeMap::new(),
            timer_seq: 0,
            inputs: VecDeque::new(),
            future: Vec::new(),
            evidence: Vec::new(),
            last_commit: Instant::now(),
            status,
            commands,
            peers: 0,
            waiting_to_propose: None,
            checked: Vec::new(),
            decided: (0, 0),
            rejected: BTreeMap::new(),
            logged: std::collections::HashSet::new(),
            current_peer: None,
            state,
            sync_access,
            #[cfg(feature = "fault-injection")]
            faults: crate::agreement::fault::Faults::from_env(),
        };
        driver.start_height(true)?;
        Ok((
            driver,
            Handle {
                commands: commands_tx,
                status: status_rx,
                state: state_rx,
            },
        ))
    }

    fn chain(&self) -> Result<&quorate_ledger::chain::ChainState, DriverError> {
        self.ledger.chain().ok_or(DriverError::NoGenesis)
    }

    fn me(&self) -> Option<MemberId> {
        let did = self.key.did();
        self.ledger
            .chain()?
            .state()
            .members
            .iter()
            .find(|(_, m)| m.did == did)
            .map(|(id, _)| *id)
    }

    /// (Re)starts agreement at the height after the tip, resuming from the
    /// persisted state when it is for that height.
    fn start_height(&mut self, resume: bool) -> Result<(), DriverError> {
        let chain = self.chain()?;
        let height = chain.tip().height + 1;
        let validators = chain.validators();
        let chain_epoch = chain.state().epoch;
        let members: Vec<_> = chain.state().members.values().map(|m| m.did).collect();
        self.timers.clear();
        self.machine = None;
        if self.me().is_some() {
            let persisted = if resume {
                self.ledger
                    .consensus_state()?
                    .and_then(|bytes| protocol::decode::<PersistedState<Block>>(&bytes).ok())
                    .filter(|p| p.height == height)
            } else {
                None
            };
            let mut machine = match persisted {
                Some(p) => Machine::restore(self.config.consensus.clone(), self.key.clone(), p),
                None => Machine::new(self.config.consensus.clone(), self.key.clone()),
            };
            let effects = machine.apply(Input::StartHeight { height, validators }, now());
            self.machine = Some(machine);
            self.queue_effects(effects)?;
        }
        let net = self.net.clone();
        tokio::spawn(async move { net.set_members(members).await });
        // Messages that arrived early for this height.
        let future = std::mem::take(&mut self.future);
        for (message, from) in future {
            self.on_consensus_message(message, from);
        }
        self.publish_status();
        // Who may read blocks changes with the member set, which changes
        // only with the epoch (pending AddMembers are published as they
        // arrive, and as they expire on the housekeeping tick).
        if self.sync_access.borrow().epoch != Some(chain_epoch) {
            self.publish_sync_access();
        }
        Ok(())
    }

    /// Runs until `shutdown` resolves or an unrecoverable error.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<net::Event>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<Stopped, DriverError> {
        let (synced_tx, mut synced) = mpsc::channel(SYNCED_MAX);
        let sync_task = tokio::spawn(sync_loop(
            self.net.clone(),
            self.status.subscribe(),
            self.chain()?.genesis_hash(),
            self.config.sync_interval,
            synced_tx,
        ));
        tokio::pin!(shutdown);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        let result = loop {
            if let Err(e) = self.drain_inputs().await {
                break Err(e);
            }
            let next_timer = self.timers.first_key_value().map(|((at, _), _)| *at);
            let step = tokio::select! {
                _ = &mut shutdown => break Ok(Stopped::Shutdown),
                Some(event) = events.recv() => self.on_network(event).await,
                Some(command) = self.commands.recv() => self.on_command(command).await,
                Some(blocks) = synced.recv() => self.on_synced(blocks),
                _ = sleep_until(next_timer), if next_timer.is_some() => self.fire_timers(),
                _ = housekeeping.tick() => {
                    #[cfg(feature = "fault-injection")]
                    self.forge().await;
                    self.mempool.expire(now(), self.chain()?.state().policy.proposal_ttl_ms);
                    self.publish_sync_access();
                    self.resend_stale_proposals().await;
                    self.peers = self.net.peers().await.len();
                    self.publish_status();
                    Ok(())
                }
            };
            if let Err(e) = step {
                break Err(e);
            }
            if let Some(did) = self.rotated_key() {
                info!(%did, height = self.chain()?.tip().height, "this member's key was rotated; stopping to start again under the new key");
                break Ok(Stopped::KeyRotated { did });
            }
        };
        sync_task.abort();
        result
    }

    /// The member's new DID if the committed state no longer names this
    /// node's key for it.
    fn rotated_key(&mut self) -> Option<quorate_did::Did> {
        let Some(id) = self.member else {
            self.member = self.me();
            return None;
        };
        let member = self.ledger.chain()?.state().members.get(&id)?;
        (member.did != self.key.did()).then_some(member.did)
    }

    /// Applies queued inputs to the machine and carries out its effects.
    async fn drain_inputs(&mut self) -> Result<(), DriverError> {
        while let Some((input, peer)) = self.inputs.pop_front() {
            let Some(machine) = self.machine.as_mut() else {
                self.inputs.clear();
                break;
            };
            let effects = machine.apply(input, now());
            self.current_peer = peer;
            let result = self.queue_effects(effects);
            self.current_peer = None;
            result?;
        }
        Ok(())
    }

    fn queue_effects(&mut self, effects: Vec<Effect<Block>>) -> Result<(), DriverError> {
        for effect in effects {
            match effect {
                Effect::Persist(state) => {
                    // Durable before anything after it is sent.
                    self.ledger
                        .put_consensus_state(&protocol::encode(&state)?)?;
                }
                Effect::Broadcast(message) => {
                    let message = match message {
                        Message::Proposal(p) => ConsensusMessage::Proposal(p),
                        Message::Vote(v) => ConsensusMessage::Vote(v),
                    };
                    #[cfg(feature = "fault-injection")]
                    if self.faults.equivocate
                        && let ConsensusMessage::Vote(vote) = &message
                    {
                        let other = crate::agreement::fault::conflicting_vote(
                            &self.config.consensus.chain_id,
                            vote,
                            &self.key,
                        );
                        let bytes = protocol::encode(&ConsensusMessage::Vote(other))?;
                        let net = self.net.clone();
                        tokio::spawn(async move { net.publish(Topic::Consensus, bytes).await });
                    }
                    let bytes = protocol::encode(&message)?;
                    let net = self.net.clone();
                    tokio::spawn(async move { net.publish(Topic::Consensus, bytes).await });
                }
                Effect::ArmTimeout {
                    kind,
                    height,
                    round,
                    at,
                } => self.arm(
                    at,
                    Timer::Consensus {
                        kind,
                        height,
                        round,
                    },
                ),
                Effect::RequestValue { height, round } => self.on_request_value(height, round)?,
                Effect::Decide {
                    height,
                    value,
                    certificate,
                } => self.on_decide(height, value, certificate)?,
                Effect::Evidence(evidence) => {
                    // Kept (and logged) up to a bound: a peer equivocating
                    // at every step must not flood memory or the log.
                    if self.evidence.len() < EVIDENCE_MAX {
                        warn!(target: "consensus", ?evidence, "equivocation detected");
                        self.evidence.push(evidence);
                    }
                }
                Effect::Rejected { reason } => self.reject(reason),
            }
        }
        Ok(())
    }

    /// Counts a dropped message; logs it once per peer and reason.
    fn reject(&mut self, reason: &'static str) {
        self.reject_from(self.current_peer, reason);
    }

    /// [`reject`](Self::reject) for a message from `peer`.
    fn reject_from(&mut self, peer: Option<quorate_did::Did>, reason: &'static str) {
        *self.rejected.entry(reason).or_default() += 1;
        let peer = peer
            .map(|d| d.to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        if self.logged.len() < LOGGED_REJECTIONS_MAX && self.logged.insert((peer.clone(), reason)) {
            warn!(target: "consensus", %peer, reason, "message dropped (logged once per peer and reason)");
        }
    }

    /// Whether an entry became eligible while we wait to propose: then
    /// propose now rather than at the heartbeat.
    fn propose_if_work(&mut self) -> Result<(), DriverError> {
        if let Some((height, round)) = self.waiting_to_propose
            && self.has_work()
        {
            self.propose_block(height, round)?;
        }
        Ok(())
    }

    /// Whether the next block would carry an entry: one is eligible and
    /// fresh at the block's time. A proposal from a member whose clock is
    /// ahead stays eligible but cannot go in yet; counting it made every
    /// proposer skip the heartbeat and agree empty blocks back to back.
    fn has_work(&self) -> bool {
        let Some(chain) = self.ledger.chain() else {
            return false;
        };
        let time = chain.next_block_time(now());
        self.mempool
            .any_eligible(|entry| chain.is_fresh(&entry.proposal, time))
    }

    fn arm(&mut self, at: Timestamp, timer: Timer) {
        let delay = Duration::from_millis(at.saturating_ms_since(now()));
        self.timer_seq += 1;
        self.timers
            .insert((Instant::now() + delay, self.timer_seq), timer);
    }

    fn fire_timers(&mut self) -> Result<(), DriverError> {
        let now_instant = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now_instant {
                break;
            }
            match entry.remove() {
                Timer::Consensus {
                    kind,
                    height,
                    round,
                } => self.inputs.push_back((
                    Input::TimeoutElapsed {
                        kind,
                        height,
                        round,
                    },
                    None,
                )),
                Timer::ProposeDue { height, round } => self.propose_block(height, round)?,
            }
        }
        Ok(())
    }

    /// We are the proposer: propose now if there is work or the heartbeat is
    /// due, else when the heartbeat falls due.
    fn on_request_value(&mut self, height: u64, round: u32) -> Result<(), DriverError> {
        let due = self.last_commit + self.config.heartbeat;
        if self.has_work() || Instant::now() >= due || round > 0 {
            self.propose_block(height, round)
        } else {
            self.waiting_to_propose = Some((height, round));
            let wait = due.saturating_duration_since(Instant::now());
            self.arm(
                now().saturating_add_ms(wait.as_millis() as u64),
                Timer::ProposeDue { height, round },
            );
            Ok(())
        }
    }

    fn propose_block(&mut self, height: u64, round: u32) -> Result<(), DriverError> {
        // Proposing early and the heartbeat timer may both get here; the
        // machine signs at most one proposal per round, so a second call
        // only builds a block that is ignored.
        self.waiting_to_propose = None;
        let chain = self.chain()?;
        if chain.tip().height + 1 != height {
            return Ok(());
        }
        let Some(me) = self.me() else { return Ok(()) };
        let time = chain.next_block_time(now());
        let (block, checked, skipped) = self.ledger.build_block_checked(
            me,
            time,
            self.mempool.eligible(ENTRIES_PER_BLOCK_MAX),
        )?;
        self.remember_checked(&block, checked);
        for (id, reason) in skipped {
            debug!(target: "consensus", %id, %reason, "entry left out of the block");
        }
        debug!(target: "consensus", height, round, entries = block.entries.len(), "proposing");
        self.inputs.push_back((
            Input::ProposeValue {
                height,
                round,
                value: block,
            },
            None,
        ));
        Ok(())
    }

    fn on_decide(
        &mut self,
        height: u64,
        block: Block,
        certificate: consensus::QuorumCertificate,
    ) -> Result<(), DriverError> {
        let committed = CommittedBlock { block, certificate };
        let ids = committed.block.entry_ids()?;
        let hash = committed.block.hash()?;
        let appended = match self.checked.iter().position(|(h, _)| *h == hash) {
            // Checked when it was proposed: only the certificate is left.
            Some(at) => {
                let (_, checked) = self.checked.swap_remove(at);
                self.decided.0 += 1;
                self.ledger.append_checked(&committed, checked)
            }
            None => {
                self.decided.1 += 1;
                self.ledger.append(&committed)
            }
        };
        match appended {
            Ok(()) => {
                info!(target: "consensus", height, entries = ids.len(), "committed");
            }
            Err(LedgerError::Verify(e)) if self.chain()?.tip().height >= height => {
                debug!(target: "consensus", height, %e, "decided block already applied by sync");
            }
            Err(e) => {
                // A decided block that does not verify means the machine and
                // the ledger disagree: stop rather than diverge.
                error!(target: "consensus", height, error = %e, "decided block refused by the ledger");
                return Err(e.into());
            }
        }
        let committed: Vec<(u64, EntryId)> = ids.into_iter().map(|id| (height, id)).collect();
        self.after_commit(&committed)
    }

    /// Keeps `block`'s check for when it is decided (a few per height).
    fn remember_checked(&mut self, block: &Block, checked: CheckedBlock) {
        let Ok(hash) = block.hash() else { return };
        if self.checked.iter().any(|(h, _)| *h == hash) {
            return;
        }
        if self.checked.len() == CHECKED_BLOCKS_MAX {
            self.checked.remove(0);
        }
        self.checked.push((hash, checked));
    }

    fn after_commit(&mut self, committed: &[(u64, EntryId)]) -> Result<(), DriverError> {
        self.last_commit = Instant::now();
        // Checks were made against the old tip.
        self.checked.clear();
        if let Some(chain) = self.ledger.chain() {
            self.mempool.on_commit(committed, chain, now());
            if !committed.is_empty() {
                // The gateway sees a revocation as soon as it commits. The
                // clone is O(1) (persistent maps); heartbeat blocks change
                // nothing and skip it. The status (with the tip's time, which grant
                // windows are checked against too) goes first, so a state
                // is never seen with an older tip.
                self.publish_status();
                self.state.send_replace(Arc::new(chain.state().clone()));
            }
        }
        self.start_height(false)
    }

    async fn on_network(&mut self, event: net::Event) -> Result<(), DriverError> {
        match event {
            net::Event::Gossip {
                from,
                topic: Topic::Consensus,
                data,
                id,
                via,
            } => {
                let message = protocol::decode::<ConsensusMessage>(&data);
                self.net.validate(id, via, message.is_ok()).await;
                match message {
                    Ok(message) => self.on_consensus_message(message, Some(from)),
                    Err(_) => {
                        self.current_peer = Some(from);
                        self.reject("malformed consensus message");
                        self.current_peer = None;
                    }
                }
            }
            net::Event::Gossip {
                from,
                topic: Topic::Mempool,
                data,
                id,
                via,
            } => {
                let accept = match protocol::decode::<MempoolMessage>(&data) {
                    Ok(message) => self.on_mempool_message(message).await?,
                    Err(_) => false,
                };
                if !accept {
                    self.current_peer = Some(from);
                    self.reject("invalid mempool message");
                    self.current_peer = None;
                }
                self.net.validate(id, via, accept).await;
                self.propose_if_work()?;
            }
            net::Event::Connected(_) | net::Event::Disconnected(_) => {}
        }
        Ok(())
    }

    fn publish_status(&self) {
        let Some(chain) = self.ledger.chain() else {
            return;
        };
        let tip = chain.tip();
        let status = Status {
            height: tip.height,
            tip_hash: tip.hash.to_string(),
            tip_time_ms: tip.time.0,
            epoch: chain.state().epoch,
            members: chain.state().members.len(),
            is_member: self.me().is_some(),
            peers: self.peers,
            pending_proposals: self.mempool.open_count(),
            policy_decisions: self.policy_decisions.clone(),
            evidence: self.evidence.len(),
            rejected: self.rejected.clone(),
            decided_reusing_check: self.decided.0,
            decided_rechecked: self.decided.1,
            last_commit: Some(self.last_commit),
        };
        self.status.send_replace(status);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
