//! The harness's network: it stands in for the swarm, routing each driver's
//! `net::Command`s to the other drivers as the `net::Event`s a swarm would
//! deliver. A seeded RNG shuffles each batch of deliveries, and a test's
//! drop rule (which may draw from the same RNG) chooses what is lost. The
//! drivers run on real tasks and timers, so a seed fixes the sequence of
//! draws, not which message meets which draw: a failure replays often,
//! not always.
//!
//! What it keeps of the real event loop: gossip reaches every other running
//! node whose member set (`set_members`) names its author; agreement
//! requests reach the named peer's sync server, whoever asks (the server
//! decides), and fail when lost; data requests are not carried.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use libp2p::gossipsub::MessageId;
use quorate_did::Did;
use quorate_ledger::consensus::VoteKind;
use quorate_node::net::protocol::{self, ConsensusMessage, Request, Response};
use quorate_node::net::{
    self, Client, Command, Event, PeerRequest, Protocol, RequestError, ResponseHandle, Topic,
};
use tokio::sync::{mpsc, oneshot, watch};

/// Commands routed in one batch, whose deliveries are shuffled together.
const BATCH_MAX: usize = 64;
/// Capacity of the channel that merges every driver's commands.
const ROUTED_MAX: usize = 4096;
/// How long a request waits for its answer before it fails (the swarm's
/// `REQUEST_TIMEOUT`, shortened: in process an answer is quick or lost).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// splitmix64: tiny and seedable, enough to choose orders and drops.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// What one delivery carries, as a drop rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Traffic {
    /// A block proposal.
    Proposal { height: u64, round: u32 },
    /// A prevote or precommit.
    Vote {
        kind: VoteKind,
        height: u64,
        round: u32,
    },
    /// Mempool gossip (entries, endorsements).
    Mempool,
    /// Consensus gossip that does not decode.
    Malformed,
    /// An agreement request (status, blocks).
    Request,
    /// The answer to one.
    Response,
}

/// One message on its way from one node to another.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) traffic: Traffic,
}

/// Whether to lose a delivery.
pub(crate) type DropRule = Box<dyn FnMut(&Delivery, &mut Rng) -> bool + Send>;

/// What the network did, for tests to wait on and assert.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    /// Block requests refused, by the node that asked.
    pub(crate) blocks_refused: BTreeMap<usize, u64>,
    /// Block requests answered with blocks, by the node that asked.
    pub(crate) blocks_served: BTreeMap<usize, u64>,
}

struct Node {
    did: Did,
    /// Bumped at each attach: commands a stopped incarnation still had in
    /// flight are discarded, as a closed socket would.
    generation: u64,
    /// `None` while the node is stopped.
    events: Option<mpsc::Sender<Event>>,
    /// Its sync server's inbox (agreement's requests), likewise.
    sync: Option<mpsc::Sender<PeerRequest>>,
    /// Whose gossip it hears (`Client::set_members`).
    members: HashSet<Did>,
}

/// What a node is handed: gossip for its driver, a request for its sync
/// server.
enum Inbound {
    Event(Event),
    Request(PeerRequest),
}

/// A node's side of the network: its client and what reaches it.
pub(crate) struct Attached {
    pub(crate) client: Client,
    /// Gossip, for the driver.
    pub(crate) events: mpsc::Receiver<Event>,
    /// Agreement's requests, for the sync server.
    pub(crate) sync: mpsc::Receiver<PeerRequest>,
}

struct Shared {
    nodes: BTreeMap<usize, Node>,
    rng: Rng,
    drop_rule: Option<DropRule>,
    /// Gossip published so far: each publication gets its own id.
    published: u64,
}

struct Inner {
    shared: Mutex<Shared>,
    stats: watch::Sender<Stats>,
    routed: mpsc::Sender<(usize, u64, Command)>,
}

/// The network; cheap to clone.
#[derive(Clone)]
pub(crate) struct SimNet {
    inner: Arc<Inner>,
}

impl SimNet {
    /// A network with no nodes yet; spawns its router on the current runtime.
    pub(crate) fn new(seed: u64) -> Self {
        let (routed, commands) = mpsc::channel(ROUTED_MAX);
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                nodes: BTreeMap::new(),
                rng: Rng::new(seed),
                drop_rule: None,
                published: 0,
            }),
            stats: watch::Sender::new(Stats::default()),
            routed,
        });
        tokio::spawn(route(inner.clone(), commands));
        Self { inner }
    }

    /// Connects node `node` (named by `did`), replacing any earlier
    /// incarnation: the client its driver talks through and the events it
    /// receives.
    pub(crate) fn attach(&self, node: usize, did: Did) -> Attached {
        let (client, mut commands) = Client::in_memory(net::COMMANDS_MAX);
        let (events_tx, events) = mpsc::channel(net::EVENTS_MAX);
        let (sync_tx, sync) = mpsc::channel(net::SYNC_EVENTS_MAX);
        let generation = {
            let mut shared = self.inner.lock();
            let generation = shared.nodes.get(&node).map_or(0, |n| n.generation + 1);
            shared.nodes.insert(
                node,
                Node {
                    did,
                    generation,
                    events: Some(events_tx),
                    sync: Some(sync_tx),
                    members: HashSet::new(),
                },
            );
            generation
        };
        let routed = self.inner.routed.clone();
        tokio::spawn(async move {
            while let Some(command) = commands.recv().await {
                if routed.send((node, generation, command)).await.is_err() {
                    return;
                }
            }
        });
        Attached {
            client,
            events,
            sync,
        }
    }

    /// Disconnects node `node`: nothing reaches it until it is attached again.
    pub(crate) fn detach(&self, node: usize) {
        if let Some(n) = self.inner.lock().nodes.get_mut(&node) {
            n.events = None;
            n.sync = None;
            n.members.clear();
        }
    }

    /// From now on, a delivery for which `rule` returns true is lost.
    pub(crate) fn drop_when(&self, rule: impl FnMut(&Delivery, &mut Rng) -> bool + Send + 'static) {
        self.inner.lock().drop_rule = Some(Box::new(rule));
    }

    /// From now on, nothing is lost.
    pub(crate) fn heal(&self) {
        self.inner.lock().drop_rule = None;
    }

    /// The stats as they change (hold no borrow of it: the router waits).
    pub(crate) fn stats(&self) -> watch::Receiver<Stats> {
        self.inner.stats.subscribe()
    }

    /// The stats now.
    pub(crate) fn stats_now(&self) -> Stats {
        self.inner.stats.borrow().clone()
    }
}

/// Deliveries counted under the lock and published after it: the stats
/// watch's lock is never taken inside the network's.
#[derive(Debug, Default)]
struct Tally {
    delivered: u64,
    dropped: u64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().expect("the harness network's lock")
    }

    fn publish(&self, tally: Tally) {
        if tally.delivered + tally.dropped > 0 {
            self.stats.send_modify(|s| {
                s.delivered += tally.delivered;
                s.dropped += tally.dropped;
            });
        }
    }
}

/// Whether `delivery` is lost (and counts it either way).
fn loses(shared: &mut Shared, delivery: Delivery, tally: &mut Tally) -> bool {
    let Shared { drop_rule, rng, .. } = shared;
    let lost = drop_rule.as_mut().is_some_and(|rule| rule(&delivery, rng));
    if lost {
        tally.dropped += 1;
    } else {
        tally.delivered += 1;
    }
    lost
}

fn classify(topic: Topic, data: &[u8]) -> Traffic {
    match topic {
        Topic::Mempool => Traffic::Mempool,
        Topic::Consensus => match protocol::decode::<ConsensusMessage>(data) {
            Ok(ConsensusMessage::Proposal(p)) => Traffic::Proposal {
                height: p.height,
                round: p.round,
            },
            Ok(ConsensusMessage::Vote(v)) => Traffic::Vote {
                kind: v.kind,
                height: v.height,
                round: v.round,
            },
            Err(_) => Traffic::Malformed,
        },
    }
}

fn failed(peer: Did, reason: &str) -> RequestError {
    RequestError::Failed {
        peer: Box::new(peer),
        reason: reason.to_owned(),
    }
}

/// The router: takes what is queued (up to a batch), works out the
/// deliveries, shuffles them, and hands them to the drivers without ever
/// waiting on one (a full queue loses the event, as the event loop does).
async fn route(inner: Arc<Inner>, mut commands: mpsc::Receiver<(usize, u64, Command)>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while commands.recv_many(&mut batch, BATCH_MAX).await > 0 {
        let mut out = Vec::new();
        let mut tally = Tally::default();
        for (node, generation, command) in batch.drain(..) {
            route_one(&inner, node, generation, command, &mut out, &mut tally);
        }
        {
            let mut shared = inner.lock();
            shared.rng.shuffle(&mut out);
            for (to, inbound) in out {
                let Some(node) = shared.nodes.get(&to) else {
                    continue;
                };
                match inbound {
                    Inbound::Event(event) => {
                        if let Some(events) = &node.events {
                            let _ = events.try_send(event);
                        }
                    }
                    Inbound::Request(request) => {
                        if let Some(sync) = &node.sync {
                            let _ = sync.try_send(request);
                        }
                    }
                }
            }
        }
        inner.publish(tally);
    }
}

fn route_one(
    inner: &Arc<Inner>,
    node: usize,
    generation: u64,
    command: Command,
    out: &mut Vec<(usize, Inbound)>,
    tally: &mut Tally,
) {
    let mut shared = inner.lock();
    let Some(me) = shared.nodes.get(&node) else {
        return;
    };
    if me.generation != generation || me.events.is_none() {
        return;
    }
    let author = me.did;
    match command {
        Command::Publish { topic, data } => {
            shared.published += 1;
            let id = MessageId::new(&shared.published.to_be_bytes());
            let via = net::identity::peer_id(&author);
            let traffic = classify(topic, &data);
            let hearers: Vec<usize> = shared
                .nodes
                .iter()
                .filter(|(j, n)| **j != node && n.events.is_some() && n.members.contains(&author))
                .map(|(j, _)| *j)
                .collect();
            for to in hearers {
                if loses(
                    &mut shared,
                    Delivery {
                        from: node,
                        to,
                        traffic,
                    },
                    tally,
                ) {
                    continue;
                }
                out.push((
                    to,
                    Inbound::Event(Event::Gossip {
                        from: author,
                        topic,
                        data: data.clone(),
                        id: id.clone(),
                        via,
                    }),
                ));
            }
        }
        // Gossip is not relayed further here: every hearer got it directly.
        Command::Validate { .. } => {}
        Command::Request {
            peer,
            protocol,
            data,
            reply,
        } => {
            let target = shared
                .nodes
                .iter()
                .find(|(_, n)| n.did == peer && n.events.is_some())
                .map(|(j, _)| *j);
            let Some(to) = target else {
                let _ = reply.send(Err(failed(peer, "not connected")));
                return;
            };
            if protocol == Protocol::Data {
                let _ = reply.send(Err(failed(peer, "the harness carries agreement only")));
                return;
            }
            let request = Delivery {
                from: node,
                to,
                traffic: Traffic::Request,
            };
            if loses(&mut shared, request, tally) {
                let _ = reply.send(Err(failed(peer, "lost by the harness")));
                return;
            }
            let asked_blocks = matches!(
                protocol::decode::<Request>(&data),
                Ok(Request::Blocks { .. })
            );
            let (handle, answer) = ResponseHandle::in_memory();
            out.push((
                to,
                Inbound::Request(PeerRequest {
                    from: author,
                    data,
                    reply: handle,
                }),
            ));
            tokio::spawn(carry_answer(
                inner.clone(),
                request,
                peer,
                asked_blocks,
                answer,
                reply,
            ));
        }
        Command::Respond { handle, data } => {
            let _ = handle.answer_in_memory(data);
        }
        Command::SetMembers(members) => {
            if let Some(me) = shared.nodes.get_mut(&node) {
                me.members = members.into_iter().collect();
            }
        }
        Command::Peers(reply) => {
            let peers = shared
                .nodes
                .iter()
                .filter(|(j, n)| **j != node && n.events.is_some())
                .map(|(_, n)| n.did)
                .collect();
            let _ = reply.send(peers);
        }
        Command::ListenAddrs(reply) => {
            let _ = reply.send(Vec::new());
        }
    }
}

/// Waits for the answer to `request` and carries it back (or loses it).
async fn carry_answer(
    inner: Arc<Inner>,
    request: Delivery,
    peer: Did,
    asked_blocks: bool,
    answer: oneshot::Receiver<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
) {
    let result = match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(Ok(bytes)) => {
            let back = Delivery {
                from: request.to,
                to: request.from,
                traffic: Traffic::Response,
            };
            let mut tally = Tally::default();
            let lost = loses(&mut inner.lock(), back, &mut tally);
            inner.publish(tally);
            if lost {
                Err(failed(peer, "lost by the harness"))
            } else {
                if asked_blocks {
                    let answer = protocol::decode::<Response>(&bytes);
                    inner.stats.send_modify(|s| {
                        let counts = match answer {
                            Ok(Response::Blocks(_)) => &mut s.blocks_served,
                            Ok(Response::Refused(_)) => &mut s.blocks_refused,
                            _ => return,
                        };
                        *counts.entry(request.from).or_default() += 1;
                    });
                }
                Ok(bytes)
            }
        }
        Ok(Err(_)) => Err(failed(peer, "the peer dropped the request")),
        Err(_) => Err(failed(peer, "timed out")),
    };
    let _ = reply.send(result);
}
