//! Live events for the local API (`GET /v1/events`, Server-Sent Events):
//! blocks and the entries they commit (grants made and revoked, with their
//! parties), grants of ours close to their end, proposals opening, changing
//! and closing, and readiness changes, each with an id that only grows.
//!
//! One feeder task watches the driver's status (and polls once a second,
//! for readiness and proposals) and appends to a ring of the last
//! [`EVENTS_KEPT`] events; each client reads the ring from the id it has
//! seen, so a slow client holds nothing but its place. A client that fell
//! out of the ring, or resumes from an id no longer held, is told so with a
//! `reset` event (reload what you show) and goes on from the newest.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use quorate_api::local::Node as _;
use quorate_api::local::responses::LiveEvent;
use quorate_api::problem::Problem;
use tokio::sync::{Semaphore, watch};

/// Events kept for clients that resume or fall behind.
pub const EVENTS_KEPT: usize = 1024;
/// Clients streaming events at once; more are refused (503).
pub const EVENT_CLIENTS_MAX: usize = 32;
/// Streams one principal may hold at once (a console in a few tabs), so
/// that one token cannot take every place.
pub const EVENT_CLIENTS_PER_PRINCIPAL_MAX: usize = 4;
/// Blocks described one by one after a jump in height; a larger jump is
/// one `reset`.
pub const BLOCKS_PER_STEP_MAX: u64 = 64;
/// How often readiness and the proposals are looked at.
const POLL: Duration = Duration::from_secs(1);
/// A grant of ours (given or received) is announced as expiring once this
/// close to its end.
pub const EXPIRY_NOTICE_MS: u64 = 24 * 3600 * 1000;
/// How often our grants are looked at for expiry notices.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);
/// ... and how soon after a block that changed grants.
const EXPIRY_RECHECK: Duration = Duration::from_secs(2);
/// Most grants looked at per side (given, received) per check: one page.
const EXPIRY_SCAN_MAX: u32 = quorate_api::local::GRANTS_PAGE_MAX;
/// A client that reads nothing for this long is dropped, freeing its place.
pub const EVENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

pub use quorate_api::local::EventStream;

/// The ring of recent events, shared by the feeder and every client.
#[derive(Clone)]
pub struct EventHub {
    ring: Arc<Mutex<VecDeque<Arc<LiveEvent>>>>,
    /// The newest event's id (0 before the first).
    newest: watch::Sender<u64>,
    clients: Arc<Semaphore>,
    /// Streams open, by principal.
    per_principal: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("newest", &*self.newest.borrow())
            .finish_non_exhaustive()
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    /// An empty hub whose first event has the id 1.
    pub fn new() -> Self {
        Self::starting_after(0)
    }

    /// An empty hub whose first event has the id `first + 1`. The node
    /// starts after its start time in µs, so the ids of an earlier run are
    /// all lower and a client resuming with one is told to reset.
    pub fn starting_after(first: u64) -> Self {
        Self {
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(EVENTS_KEPT))),
            newest: watch::Sender::new(first),
            clients: Arc::new(Semaphore::new(EVENT_CLIENTS_MAX)),
            per_principal: Arc::default(),
        }
    }

    /// Whether any client is streaming.
    fn watched(&self) -> bool {
        self.clients.available_permits() < EVENT_CLIENTS_MAX
    }

    /// Appends an event of `kind` with `data`.
    pub fn publish(&self, kind: &str, data: serde_json::Value) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let id = *self.newest.borrow() + 1;
        if ring.len() == EVENTS_KEPT {
            ring.pop_front();
        }
        ring.push_back(Arc::new(LiveEvent {
            id,
            kind: kind.to_owned(),
            data,
        }));
        drop(ring);
        self.newest.send_replace(id);
    }

    /// Events after `after` (none of the past if `None`), then each new one,
    /// for as long as the client reads.
    pub fn subscribe(&self, principal: &str, after: Option<u64>) -> Result<EventStream, Problem> {
        let overloaded = |detail: String| {
            Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                detail,
            )
        };
        let Some(own) = PrincipalSlot::take(&self.per_principal, principal) else {
            return Err(overloaded(format!(
                "{principal} streams events {EVENT_CLIENTS_PER_PRINCIPAL_MAX} times already; close one"
            )));
        };
        let Ok(slot) = self.clients.clone().try_acquire_owned() else {
            return Err(overloaded(format!(
                "{EVENT_CLIENTS_MAX} clients are streaming events already"
            )));
        };
        let hub = self.clone();
        let mut newest = self.newest.subscribe();
        let mut seen = after.unwrap_or_else(|| *newest.borrow_and_update());
        let stream = async_stream(move |out| async move {
            let _slots = (slot, own);
            loop {
                let event = match hub.next_after(seen) {
                    Next::Event(event) => (*event).clone(),
                    Next::Reset(now) => LiveEvent {
                        id: now,
                        kind: "reset".to_owned(),
                        data: serde_json::json!({"reason": "events were missed; reload what you show"}),
                    },
                    Next::Wait => {
                        tokio::select! {
                            changed = newest.changed() => if changed.is_err() { return },
                            // A client that went away frees its place at once.
                            () = out.closed() => return,
                        }
                        continue;
                    }
                };
                seen = event.id;
                // One event at a time, and a client that stops reading is
                // let go: nothing waits on it for long.
                match tokio::time::timeout(EVENT_SEND_TIMEOUT, out.send(event)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
        });
        Ok(stream)
    }

    /// The first event after `seen`, or `Reset` if some are gone (or
    /// `seen` is from another run), or `Wait` if there is none yet.
    fn next_after(&self, seen: u64) -> Next {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let newest = *self.newest.borrow();
        if seen > newest {
            return Next::Reset(newest);
        }
        let Some(oldest) = ring.front() else {
            return Next::Wait;
        };
        if seen + 1 < oldest.id {
            return Next::Reset(newest);
        }
        // Ids are consecutive, so the one after `seen` is found by its place.
        match usize::try_from(seen + 1 - oldest.id)
            .ok()
            .and_then(|i| ring.get(i))
        {
            Some(event) => Next::Event(event.clone()),
            None => Next::Wait,
        }
    }

    /// Watches the node and publishes what changes, until it stops.
    pub async fn feed(
        self,
        node: crate::local_api::LocalNode,
        mut status: watch::Receiver<crate::agreement::driver::Status>,
    ) {
        let mut height = status.borrow_and_update().height;
        let mut ready = node.ready().await.is_ok();
        let mut open: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let mut first = true;
        // Grants announced as expiring (each once), and when we last looked.
        let mut warned: std::collections::BTreeSet<String> = Default::default();
        let mut next_expiry_check = std::time::Instant::now();
        loop {
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(POLL) => {}
            }
            let now = status.borrow_and_update().height;
            if now > height {
                if now - height > BLOCKS_PER_STEP_MAX {
                    self.publish("reset", serde_json::json!({"reason": format!("blocks {}..={now} committed", height + 1)}));
                } else {
                    for h in height + 1..=now {
                        if self.publish_block(&node, h).await {
                            // A new grant may end soon: look shortly (the
                            // published state may trail the status a little).
                            next_expiry_check =
                                next_expiry_check.min(std::time::Instant::now() + EXPIRY_RECHECK);
                        }
                    }
                }
                height = now;
            }
            if !self.watched() {
                // Nobody is listening: keep our place, ask nothing of the
                // driver, and take the proposals afresh when someone comes.
                first = true;
                continue;
            }
            if std::time::Instant::now() >= next_expiry_check {
                next_expiry_check = std::time::Instant::now() + EXPIRY_CHECK;
                self.publish_expiring(&node, &mut warned).await;
            }
            let is_ready = node.ready().await.is_ok();
            if is_ready != ready {
                ready = is_ready;
                self.publish("readiness", serde_json::json!({"ready": ready}));
            }
            let proposals = node.open_proposals().await;
            let mut still = BTreeMap::new();
            for view in proposals {
                // What a list shows, not the whole proposal (a grant's terms
                // can be tens of KiB): clients fetch /v1/proposals for more.
                let value = list_value(&view);
                if !first && open.get(&view.id) != Some(&value) {
                    let kind = if open.contains_key(&view.id) {
                        "proposal-changed"
                    } else {
                        "proposal-opened"
                    };
                    self.publish(kind, value.clone());
                }
                still.insert(view.id.clone(), value);
            }
            // Closed since the last look: announced once, with how each
            // ended (or its id alone if it is already forgotten).
            for id in open.keys().filter(|id| !still.contains_key(*id)) {
                let value = match quorate_api::local::Node::proposal(&node, id.clone()).await {
                    Ok(view) => list_value(&view),
                    Err(_) => serde_json::json!({"id": id}),
                };
                self.publish("proposal-closed", value);
            }
            open = still;
            first = false;
        }
    }

    /// Announces each active grant this organization gives or receives
    /// that ends within [`EXPIRY_NOTICE_MS`] of the tip's time, once; the
    /// set of those announced forgets grants no longer active.
    async fn publish_expiring(
        &self,
        node: &crate::local_api::LocalNode,
        warned: &mut std::collections::BTreeSet<String>,
    ) {
        let me = node.identity().await.name;
        let mut active = std::collections::BTreeSet::new();
        for side in ["grantor", "grantee"] {
            let query = quorate_api::local::GrantQuery {
                grantor: (side == "grantor").then(|| me.clone()),
                grantee: (side == "grantee").then(|| me.clone()),
                status: Some("active".to_owned()),
                after: None,
                limit: Some(EXPIRY_SCAN_MAX),
            };
            let Ok(page) = node.grants(query).await else {
                return;
            };
            for grant in page.grants {
                active.insert(grant.id.clone());
                let left = grant.terms.not_after_ms.saturating_sub(grant.as_of_ms);
                if left <= EXPIRY_NOTICE_MS && !warned.contains(&grant.id) {
                    warned.insert(grant.id.clone());
                    self.publish(
                        "grant-expiring",
                        serde_json::json!({
                            "id": grant.id, "grantor": grant.terms.grantor,
                            "grantee": grant.terms.grantee, "not_after_ms": grant.terms.not_after_ms,
                        }),
                    );
                }
            }
        }
        warned.retain(|id| active.contains(id));
    }

    /// Publishes a block and what it did; whether it made or revoked grants.
    async fn publish_block(&self, node: &crate::local_api::LocalNode, height: u64) -> bool {
        let Ok((block, _)) = node.block(height).await else {
            return false;
        };
        self.publish(
            "block",
            serde_json::json!({
                "height": block.height, "hash": block.hash, "time_ms": block.time_ms,
                "proposer": block.proposer, "entries": block.entries.len(),
            }),
        );
        for entry in &block.entries {
            self.publish(
                "entry-committed",
                serde_json::json!({
                    "height": block.height, "id": entry.id, "kind": entry.kind,
                    "proposer": entry.proposer,
                }),
            );
        }
        // New and revoked grants, with their parties, so a client sees what
        // it gives or receives without asking.
        let grants_changed = block
            .entries
            .iter()
            .any(|e| e.kind == "grant" || e.kind == "revoke");
        if grants_changed {
            let (made, revoked) = node.grant_changes(height).await;
            for (id, terms) in made {
                let mut data = serde_json::to_value(&terms).unwrap_or_default();
                data["id"] = id.into();
                data["height"] = block.height.into();
                self.publish("grant-committed", data);
            }
            for id in revoked {
                let parties = node.grant(id.clone()).await.ok();
                self.publish(
                    "grant-revoked",
                    serde_json::json!({
                        "height": block.height, "id": id,
                        "grantor": parties.as_ref().map(|g| g.terms.grantor.clone()),
                        "grantee": parties.as_ref().map(|g| g.terms.grantee.clone()),
                    }),
                );
            }
        }
        grants_changed
    }
}

/// A principal's place among the streams, given back when dropped.
struct PrincipalSlot {
    counts: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    principal: String,
}

impl PrincipalSlot {
    fn take(
        counts: &Arc<Mutex<std::collections::HashMap<String, usize>>>,
        principal: &str,
    ) -> Option<Self> {
        let mut held = counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(principal.to_owned()).or_insert(0);
        if *count >= EVENT_CLIENTS_PER_PRINCIPAL_MAX {
            return None;
        }
        *count += 1;
        Some(Self {
            counts: counts.clone(),
            principal: principal.to_owned(),
        })
    }
}

impl Drop for PrincipalSlot {
    fn drop(&mut self) {
        let mut held = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.principal);
            }
        }
    }
}

/// What a client reads next.
enum Next {
    Event(Arc<LiveEvent>),
    Reset(u64),
    Wait,
}

/// A stream fed by `make`'s task through a channel of one: the task waits
/// while the client has not read.
fn async_stream<F, Fut>(make: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<LiveEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(make(tx));
    Box::pin(tokio_stream_of(rx))
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<LiveEvent>,
) -> impl Stream<Item = LiveEvent> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A proposal as an event carries it: what a list shows, not its terms.
fn list_value(view: &quorate_api::local::responses::ProposalView) -> serde_json::Value {
    serde_json::json!({
        "id": view.id, "proposer": view.proposer,
        "kind": serde_json::to_value(&view.body).ok().and_then(|b| b.get("kind").cloned()),
        "state": serde_json::to_value(&view.state).ok(),
        "decision": view.decision, "endorsers": view.endorsers,
        "rejected_by": view.rejections.iter().map(|r| r.member.as_str()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    fn kinds(events: &[LiveEvent]) -> Vec<(u64, String)> {
        events.iter().map(|e| (e.id, e.kind.clone())).collect()
    }

    #[tokio::test]
    async fn clients_read_from_where_they_were_and_are_reset_when_events_are_gone() {
        let hub = EventHub::new();
        hub.publish("a", serde_json::json!(1));
        hub.publish("b", serde_json::json!(2));
        // From the start: both, then what follows.
        let mut from_start = hub.subscribe("a", Some(0)).unwrap();
        hub.publish("c", serde_json::json!(3));
        let got: Vec<LiveEvent> = (&mut from_start).take(3).collect().await;
        assert_eq!(
            kinds(&got),
            [(1, "a".into()), (2, "b".into()), (3, "c".into())]
        );
        // From now: only new ones.
        let mut from_now = hub.subscribe("a", None).unwrap();
        hub.publish("d", serde_json::json!(4));
        assert_eq!(from_now.next().await.unwrap().kind, "d");
        // Resuming past what the ring holds, or from an id of another run.
        for _ in 0..EVENTS_KEPT {
            hub.publish("x", serde_json::json!(0));
        }
        let mut stale = hub.subscribe("b", Some(1)).unwrap();
        assert_eq!(stale.next().await.unwrap().kind, "reset");
        let mut foreign = hub.subscribe("c", Some(1 << 40)).unwrap();
        let reset = foreign.next().await.unwrap();
        assert_eq!(
            (reset.kind.as_str(), reset.id),
            ("reset", 4 + EVENTS_KEPT as u64)
        );
        hub.publish("e", serde_json::json!(5));
        assert_eq!(foreign.next().await.unwrap().kind, "e");
    }

    #[tokio::test]
    async fn clients_are_bounded_in_all_and_per_principal_and_a_closed_client_frees_its_place() {
        let hub = EventHub::new();
        // One principal holds a few places, not all.
        let own: Vec<EventStream> = (0..EVENT_CLIENTS_PER_PRINCIPAL_MAX)
            .map(|_| hub.subscribe("token:greedy", None).unwrap())
            .collect();
        let refused = hub.subscribe("token:greedy", None).err().unwrap();
        assert_eq!(refused.code, "overloaded");
        assert!(
            refused.detail.contains("token:greedy"),
            "{}",
            refused.detail
        );
        // Everyone else fills the rest.
        let others: Vec<EventStream> = (EVENT_CLIENTS_PER_PRINCIPAL_MAX..EVENT_CLIENTS_MAX)
            .map(|i| hub.subscribe(&format!("token:t{i}"), None).unwrap())
            .collect();
        let full = hub.subscribe("token:late", None).err().unwrap();
        assert!(
            full.detail.contains("clients are streaming"),
            "{}",
            full.detail
        );
        drop(own);
        drop(others);
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let again: Vec<_> = (0..EVENT_CLIENTS_PER_PRINCIPAL_MAX)
                    .map(|_| hub.subscribe("token:greedy", None))
                    .collect();
                if again.iter().all(Result::is_ok) {
                    return;
                }
                drop(again);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
    }
}
