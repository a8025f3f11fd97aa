//! The network actor: [`Client`] (commands in) and [`EventLoop`] (owns the
//! swarm).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, identify, ping};
use quorate_did::{Did, Keypair};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::codec::FramedBytes;
use super::identity::{did_of, libp2p_keypair, peer_id};
use super::limits::{InFlight, PeerBudgets};
use super::{
    COMMANDS_MAX, CONNECTIONS_MAX, CONNECTIONS_PER_PEER_MAX, DATA_EVENTS_MAX,
    DATA_REQUEST_BYTES_MAX, DATA_STREAMS_PER_CONNECTION_MAX, EVENTS_MAX, GOSSIP_BYTES_MAX,
    PING_INTERVAL, PING_TIMEOUT, REDIAL_INTERVAL, REQUEST_TIMEOUT, SYNC_EVENTS_MAX,
};

/// The gossip topics of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Agreement messages: proposals and votes.
    Consensus,
    /// Entries and endorsements waiting to be ordered.
    Mempool,
}

impl Topic {
    fn name(self, chain_id: &str) -> String {
        match self {
            // 2: a vote's value id is a CBOR byte string (1 wrote an
            // array of integers), so nodes of the two never mix votes.
            Topic::Consensus => format!("/quorate/{chain_id}/consensus/2"),
            Topic::Mempool => format!("/quorate/{chain_id}/mempool/1"),
        }
    }
}

/// The two request-response protocols: agreement's (status, sync) and
/// members' data (objects, listings), kept apart so that a burst of data
/// requests never waits in front of, or crowds out, agreement's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `/quorate/request/1`: status and block ranges, for the driver.
    Agreement,
    /// `/quorate/data/2`: members' object and listing requests, for the
    /// gateway (2: a refusal carries its code, not an HTTP status).
    Data,
}

/// A request's reply slot, handed to the driver (or the gateway) with the
/// request. While it lives, the request counts against its peer's budget
/// of requests in flight ([`limits`](super::limits)).
#[derive(Debug)]
pub struct ResponseHandle {
    reply: Reply,
}

/// Where a request's answer goes.
#[derive(Debug)]
enum Reply {
    /// Back to the peer over the swarm.
    Swarm {
        channel: request_response::ResponseChannel<Vec<u8>>,
        protocol: Protocol,
        _in_flight: InFlight,
    },
    /// To an in-process network that stands in for the swarm in tests.
    #[cfg(feature = "test-harness")]
    InMemory(oneshot::Sender<Vec<u8>>),
}

#[cfg(feature = "test-harness")]
impl ResponseHandle {
    /// A reply slot whose answer comes out of the receiver (feature
    /// `test-harness`: an in-process network delivers requests with it).
    pub fn in_memory() -> (Self, oneshot::Receiver<Vec<u8>>) {
        let (reply, answer) = oneshot::channel();
        (
            Self {
                reply: Reply::InMemory(reply),
            },
            answer,
        )
    }

    /// Delivers the answer to an [`in_memory`](Self::in_memory) slot, as
    /// the event loop does for [`Command::Respond`]. False if this slot
    /// belongs to the swarm or the requester stopped waiting.
    pub fn answer_in_memory(self, data: Vec<u8>) -> bool {
        match self.reply {
            Reply::InMemory(reply) => reply.send(data).is_ok(),
            Reply::Swarm { .. } => false,
        }
    }
}

/// A peer's request: agreement's (status, blocks) for the sync server, or
/// a member's data request for the gateway.
#[derive(Debug)]
pub struct PeerRequest {
    /// The requesting peer's DID.
    pub from: Did,
    /// The payload.
    pub data: Vec<u8>,
    /// Where the answer goes.
    pub reply: ResponseHandle,
}

/// What peers did.
#[derive(Debug)]
pub enum Event {
    /// A gossip message from a member. The driver must answer with
    /// [`Client::validate`]: only accepted messages are forwarded further.
    Gossip {
        /// The member that published it (authenticated by its signature).
        from: Did,
        /// Its topic.
        topic: Topic,
        /// The payload.
        data: Vec<u8>,
        /// Its id, for [`Client::validate`].
        id: MessageId,
        /// The peer that forwarded it to us.
        via: PeerId,
    },
    /// A member connected.
    Connected(Did),
    /// A member's last connection closed.
    Disconnected(Did),
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The peer could not be reached, timed out, or refused.
    #[error("request to {peer} failed: {reason}")]
    Failed {
        /// The peer.
        peer: Box<Did>,
        /// libp2p's reason.
        reason: String,
    },
    /// The network task has stopped.
    #[error("the network has stopped")]
    Stopped,
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A listen or bootstrap address is not a multiaddress.
    #[error("invalid address {address:?}: {reason}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The transport or a behaviour could not be built.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// Listening failed (port in use, say).
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        reason: String,
    },
}

type ReplySlot = oneshot::Sender<Result<Vec<u8>, RequestError>>;

/// What a [`Client`] asks of the event loop. Reachable from outside only
/// with the feature `test-harness`, for an in-process network that stands
/// in for the swarm (`Client::in_memory`).
#[derive(Debug)]
#[cfg_attr(not(feature = "test-harness"), allow(unreachable_pub))]
pub enum Command {
    /// [`Client::publish`].
    Publish {
        /// The topic.
        topic: Topic,
        /// The payload.
        data: Vec<u8>,
    },
    /// [`Client::validate`].
    Validate {
        /// The message.
        id: MessageId,
        /// The peer that forwarded it.
        via: PeerId,
        /// Forward it?
        accept: bool,
    },
    /// [`Client::request`] and [`Client::request_data`].
    Request {
        /// The peer asked.
        peer: Did,
        /// Which protocol.
        protocol: Protocol,
        /// The payload.
        data: Vec<u8>,
        /// Where the answer, or the failure, goes.
        reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
    },
    /// [`Client::respond`].
    Respond {
        /// The request's reply slot.
        handle: ResponseHandle,
        /// The answer.
        data: Vec<u8>,
    },
    /// [`Client::set_members`].
    SetMembers(Vec<Did>),
    /// [`Client::peers`].
    Peers(oneshot::Sender<Vec<Did>>),
    /// [`Client::listen_addrs`].
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
}

/// A handle on the network task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    dropped_events: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Client {
    /// A client with no swarm behind it: its commands come out of the
    /// receiver (feature `test-harness`, for an in-process network that
    /// routes them between drivers).
    #[cfg(feature = "test-harness")]
    pub fn in_memory(capacity: usize) -> (Self, mpsc::Receiver<Command>) {
        let (commands, receiver) = mpsc::channel(capacity);
        let client = Self {
            commands,
            dropped_events: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        (client, receiver)
    }

    /// Publishes `data` on `topic` to the members.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) {
        let _ = self.commands.send(Command::Publish { topic, data }).await;
    }

    /// Tells gossipsub whether a received message is valid (forward it) or
    /// not (drop it and penalize the peer that sent it).
    pub async fn validate(&self, id: MessageId, via: PeerId, accept: bool) {
        let _ = self
            .commands
            .send(Command::Validate { id, via, accept })
            .await;
    }

    /// Sends an agreement request (status, sync) to `peer` and waits for
    /// the answer.
    pub async fn request(&self, peer: Did, data: Vec<u8>) -> Result<Vec<u8>, RequestError> {
        self.request_on(Protocol::Agreement, peer, data).await
    }

    /// Sends a data request (object, listing) to `peer`'s gateway and waits
    /// for the answer.
    pub async fn request_data(&self, peer: Did, data: Vec<u8>) -> Result<Vec<u8>, RequestError> {
        self.request_on(Protocol::Data, peer, data).await
    }

    async fn request_on(
        &self,
        protocol: Protocol,
        peer: Did,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                peer,
                protocol,
                data,
                reply,
            })
            .await
            .map_err(|_| RequestError::Stopped)?;
        answer.await.map_err(|_| RequestError::Stopped)?
    }

    /// Network events dropped because the driver was behind (gossip among
    /// them): agreement traffic lost before the driver saw it. Data
    /// requests travel apart and never count here.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers a request.
    pub async fn respond(&self, handle: ResponseHandle, data: Vec<u8>) {
        let _ = self.commands.send(Command::Respond { handle, data }).await;
    }

    /// Replaces the member set: gossip from anyone else is refused.
    pub async fn set_members(&self, members: Vec<Did>) {
        let _ = self.commands.send(Command::SetMembers(members)).await;
    }

    /// The connected peers.
    pub async fn peers(&self) -> Vec<Did> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Peers(reply)).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// The addresses we listen on (with the actual ports when 0 was asked).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::ListenAddrs(reply))
            .await
            .is_err()
        {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    requests: request_response::Behaviour<FramedBytes>,
    data: request_response::Behaviour<FramedBytes>,
}

/// The task that owns the swarm.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    chain_id: String,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    sync_events: mpsc::Sender<PeerRequest>,
    data_events: mpsc::Sender<PeerRequest>,
    members: HashSet<PeerId>,
    connected: HashSet<PeerId>,
    /// Bootstrap addresses (without `/p2p/…`), each with the peer last
    /// seen there: a member that rotated its key answers at the same address
    /// with a new PeerId, so the configured one is only a first guess.
    bootstrap: Vec<(Multiaddr, Option<PeerId>)>,
    /// Requests under way, per protocol (each numbers its own).
    pending: HashMap<(Protocol, OutboundRequestId), (Did, ReplySlot)>,
    dropped_events: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// What each peer may still send ([`super::limits`]).
    budgets: PeerBudgets,
    /// Whether a listen address is up. Dials wait for it: only then does
    /// TCP dial from the listen port (port reuse), so that every connection
    /// between two members runs between their two p2p ports.
    listening: bool,
}

fn parse_addrs(addrs: &[String]) -> Result<Vec<Multiaddr>, NetworkError> {
    addrs
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|e: libp2p::multiaddr::Error| NetworkError::Address {
                    address: a.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

/// `address` without its `/p2p/…` part, and the peer that part names.
fn split_peer(address: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut peer = None;
    let bare = address
        .iter()
        .filter(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => {
                peer = Some(*id);
                false
            }
            _ => true,
        })
        .collect();
    (bare, peer)
}

/// The streams a started network delivers: agreement's gossip for the
/// driver, peers' status and block requests for the sync server, members'
/// data requests for the gateway. Each has its own bounded channel, so no
/// stream waits behind another.
#[derive(Debug)]
pub struct Inbound {
    /// Gossip and connections: for the driver.
    pub events: mpsc::Receiver<Event>,
    /// Agreement's requests (status, block ranges): for the sync server,
    /// which decides who may read.
    pub sync: mpsc::Receiver<PeerRequest>,
    /// Members' object and listing requests: for the gateway.
    pub data: mpsc::Receiver<PeerRequest>,
}

/// Builds the swarm, starts listening, and returns the client, the inbound
/// streams and the loop to run (`tokio::spawn(event_loop.run())`).
pub fn spawn(
    key: &Keypair,
    chain_id: &str,
    listen: &[String],
    bootstrap: &[String],
) -> Result<(Client, Inbound, EventLoop), NetworkError> {
    let listen = parse_addrs(listen)?;
    let bootstrap = parse_addrs(bootstrap)?
        .into_iter()
        .map(|address| split_peer(&address))
        .collect();
    let build = |e: &dyn std::fmt::Display| NetworkError::Build(e.to_string());
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(GOSSIP_BYTES_MAX)
        // Every message is signed by its publisher, so membership is
        // checked on the author, not on whoever relayed it. (Checking the
        // relay instead, to save this signature, let a non-member relay
        // poison the duplicate cache: its copy was rejected, and the
        // members' copies of the same message were then dropped as
        // duplicates.)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(500))
        // One publication is one message, whoever relays it; publishing
        // the same payload again is a new message (a new sequence number).
        // Agreement depends on that: a vote lost in a partition is only
        // delivered when its author sends it again (an id of the payload
        // alone made gossipsub refuse every resend as a duplicate, and a
        // consortium healed from a 2 | 2 split stayed stuck).
        .message_id_fn(|m: &gossipsub::Message| {
            let mut id = blake3::Hasher::new();
            if let Some(source) = &m.source {
                id.update(&source.to_bytes());
            }
            id.update(&m.sequence_number.unwrap_or(0).to_be_bytes());
            id.update(&m.data);
            MessageId::from(id.finalize().as_bytes().to_vec())
        })
        .build()
        .map_err(|e| build(&e))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(libp2p_keypair(key))
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_behaviour(|id| {
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX))
                .with_max_established(Some(CONNECTIONS_MAX));
            let gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Signed(id.clone()), gossip_config)?;
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/quorate/1".to_owned(),
                    id.public(),
                )),
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(PING_INTERVAL)
                        .with_timeout(PING_TIMEOUT),
                ),
                gossipsub,
                requests: request_response::Behaviour::with_codec(
                    FramedBytes::default(),
                    [(
                        StreamProtocol::new("/quorate/request/1"),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
                ),
                // Requests here carry upload chunks; the streams a
                // connection may open at once bound what its peer can make
                // us hold.
                data: request_response::Behaviour::with_codec(
                    FramedBytes::with_request_max(DATA_REQUEST_BYTES_MAX),
                    [(
                        StreamProtocol::new("/quorate/data/2"),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(REQUEST_TIMEOUT)
                        .with_max_concurrent_streams(DATA_STREAMS_PER_CONNECTION_MAX),
                ),
            })
        })
        .map_err(|e| build(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    for topic in [Topic::Consensus, Topic::Mempool] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(topic.name(chain_id)))
            .map_err(|e| build(&e))?;
    }
    for address in listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| NetworkError::Listen {
                address,
                reason: e.to_string(),
            })?;
    }
    let (commands_tx, commands) = mpsc::channel(COMMANDS_MAX);
    let (events, events_rx) = mpsc::channel(EVENTS_MAX);
    let (sync_events, sync_rx) = mpsc::channel(SYNC_EVENTS_MAX);
    let (data_events, data_rx) = mpsc::channel(DATA_EVENTS_MAX);
    let dropped_events = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let event_loop = EventLoop {
        swarm,
        chain_id: chain_id.to_owned(),
        commands,
        events,
        sync_events,
        data_events,
        members: HashSet::new(),
        connected: HashSet::new(),
        bootstrap,
        pending: HashMap::new(),
        dropped_events: dropped_events.clone(),
        budgets: PeerBudgets::default(),
        listening: false,
    };
    Ok((
        Client {
            commands: commands_tx,
            dropped_events,
        },
        Inbound {
            events: events_rx,
            sync: sync_rx,
            data: data_rx,
        },
        event_loop,
    ))
}

impl EventLoop {
    /// Runs until every [`Client`] is dropped.
    pub async fn run(mut self) {
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = redial.tick() => self.redial(),
            }
        }
        debug!(target: "network", "network loop stopped");
    }

    fn redial(&mut self) {
        if !self.listening {
            return;
        }
        let local = *self.swarm.local_peer_id();
        let mut dials = Vec::new();
        for (address, peer) in &self.bootstrap {
            if peer.is_some_and(|p| self.connected.contains(&p) || p == local) {
                continue;
            }
            dials.push(address.clone());
        }
        for address in dials {
            // No expected PeerId: whoever answers is then checked like any
            // peer (a member's Ed25519 key, or disconnected).
            if let Err(e) = self.swarm.dial(address.clone()) {
                debug!(target: "network", %address, error = %e, "dial failed");
            }
        }
    }

    fn emit(&mut self, event: Event) {
        // Never block the swarm on a slow driver: drop and count instead.
        if let Err(e) = self.events.try_send(event) {
            let dropped = self
                .dropped_events
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if dropped.is_power_of_two() {
                warn!(target: "network", dropped, "driver is behind; dropping network events");
            }
            if let mpsc::error::TrySendError::Full(Event::Gossip { id, via, .. }) = e {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &via, MessageAcceptance::Ignore);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Publish { topic, data } => {
                let topic = IdentTopic::new(topic.name(&self.chain_id));
                if let Err(e) = behaviour.gossipsub.publish(topic, data) {
                    // No peers yet, or a duplicate of a message we already
                    // published: agreement retries on its own timeouts.
                    debug!(target: "network", error = %e, "publish failed");
                }
            }
            Command::Validate { id, via, accept } => {
                let acceptance = if accept {
                    MessageAcceptance::Accept
                } else {
                    MessageAcceptance::Reject
                };
                let _ = behaviour
                    .gossipsub
                    .report_message_validation_result(&id, &via, acceptance);
            }
            Command::Request {
                peer,
                protocol,
                data,
                reply,
            } => {
                let id = match protocol {
                    Protocol::Agreement => behaviour.requests.send_request(&peer_id(&peer), data),
                    Protocol::Data => behaviour.data.send_request(&peer_id(&peer), data),
                };
                self.pending.insert((protocol, id), (peer, reply));
            }
            Command::Respond { handle, data } => match handle.reply {
                Reply::Swarm {
                    channel, protocol, ..
                } => {
                    let _ = match protocol {
                        Protocol::Agreement => behaviour.requests.send_response(channel, data),
                        Protocol::Data => behaviour.data.send_response(channel, data),
                    };
                }
                #[cfg(feature = "test-harness")]
                Reply::InMemory(reply) => {
                    let _ = reply.send(data);
                }
            },
            Command::SetMembers(members) => {
                self.members = members.iter().map(peer_id).collect();
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.connected.iter().filter_map(did_of).collect());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(target: "network", %address, peer = %self.swarm.local_peer_id(), "listening");
                if !self.listening {
                    self.listening = true;
                    self.redial();
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let (address, _) = split_peer(address);
                    for (known, peer) in &mut self.bootstrap {
                        if *known == address {
                            *peer = Some(peer_id);
                        }
                    }
                }
                let Some(did) = did_of(&peer_id) else {
                    // Not an Ed25519 identity: it cannot be a member.
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                if num_established.get() == 1 {
                    self.connected.insert(peer_id);
                    debug!(target: "network", %did, "connected");
                    self.emit(Event::Connected(did));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.budgets.forget(&peer_id);
                }
                if num_established == 0
                    && self.connected.remove(&peer_id)
                    && let Some(did) = did_of(&peer_id)
                {
                    self.emit(Event::Disconnected(did));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Requests(event)) => {
                self.on_request_event(Protocol::Agreement, event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Data(event)) => {
                self.on_request_event(Protocol::Data, event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(failure),
            })) => {
                // Dead, not just slow: close it, so the peer counts as gone
                // and is dialed again rather than written to in vain.
                debug!(target: "network", %peer, error = %failure, "ping failed; closing the connection");
                self.swarm.close_connection(connection);
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, via: PeerId, id: MessageId, message: gossipsub::Message) {
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        // The publisher, authenticated by the message's signature.
        let author = message.source.filter(|s| self.members.contains(s));
        let from = author.and_then(|s| did_of(&s));
        let topic = [Topic::Consensus, Topic::Mempool]
            .into_iter()
            .find(|t| IdentTopic::new(t.name(&self.chain_id)).hash() == message.topic);
        let (Some(author), Some(from), Some(topic)) = (author, from, topic) else {
            // From a non-member or on a foreign topic: never forwarded.
            let _ = gossip.report_message_validation_result(&id, &via, MessageAcceptance::Reject);
            return;
        };
        // A member publishing past its budget is not heard (nor passed on),
        // so it cannot crowd the others out of the driver's queue.
        if !self
            .budgets
            .admit_gossip(author, topic, std::time::Instant::now())
        {
            let gossip = &mut self.swarm.behaviour_mut().gossipsub;
            let _ = gossip.report_message_validation_result(&id, &via, MessageAcceptance::Ignore);
            if self.budgets.ignored_gossip.is_power_of_two() {
                warn!(target: "network", %from, ignored = self.budgets.ignored_gossip, "a member's gossip is over its budget");
            }
            return;
        }
        self.emit(Event::Gossip {
            from,
            topic,
            data: message.data,
            id,
            via,
        });
    }

    fn on_request_event(
        &mut self,
        protocol: Protocol,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_inbound_request(protocol, peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, reply)) = self.pending.remove(&(protocol, request_id)) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((peer, reply)) = self.pending.remove(&(protocol, request_id)) {
                    let _ = reply.send(Err(RequestError::Failed {
                        peer: Box::new(peer),
                        reason: error.to_string(),
                    }));
                }
            }
            _ => {}
        }
    }

    /// Admits a peer's request against its budget and hands it on: data
    /// requests (members only) to the gateway, the rest to the driver. A
    /// request not admitted is dropped, which closes its stream at once:
    /// the peer's request fails without an answer.
    fn on_inbound_request(
        &mut self,
        protocol: Protocol,
        peer: PeerId,
        request: Vec<u8>,
        channel: request_response::ResponseChannel<Vec<u8>>,
    ) {
        let Some(from) = did_of(&peer) else {
            return;
        };
        let member = self.members.contains(&peer);
        let now = std::time::Instant::now();
        let admitted = match protocol {
            Protocol::Agreement => self.budgets.admit_request(peer, member, now),
            Protocol::Data => self.budgets.admit_data(peer, member),
        };
        let in_flight = match admitted {
            Ok(in_flight) => in_flight,
            Err(refused) => {
                debug!(target: "network", %from, member, ?protocol, ?refused, "request over the peer's budget");
                return;
            }
        };
        let reply = ResponseHandle {
            reply: Reply::Swarm {
                channel,
                protocol,
                _in_flight: in_flight,
            },
        };
        let request = PeerRequest {
            from,
            data: request,
            reply,
        };
        // Never waits: a full queue refuses the request (the peer retries),
        // and neither queue holds up gossip or the other.
        let queue = match protocol {
            Protocol::Agreement => &self.sync_events,
            Protocol::Data => &self.data_events,
        };
        if queue.try_send(request).is_err() {
            self.budgets.refused_requests += 1;
            debug!(target: "network", ?protocol, "the request queue is full; a request was refused");
        }
    }
}
