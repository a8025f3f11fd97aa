//! The gateway pipeline in process: a real `contracts::State` built by a
//! test consortium, objects and the audit log in a temp dir, the clocks
//! and the ledger's freshness set by the test. No sockets, no driver.

mod downloads;
mod http_door;
mod refusals;
mod sharing;
mod writes;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use quorate_api::refusal::Refusal;
use quorate_contracts::{
    Action, Body, GrantId, GrantTerms, RateLimit, ResourcePath, ResourcePattern, State, Timestamp,
};
use quorate_did::Did;
use quorate_ledger::testing::{Consortium, T0};
use tokio::sync::watch;

use super::audit::{self, Auditor, Record};
use super::objects::ObjectStore;
use super::upstream::{UpstreamTable, Upstreams};
use super::{Gateway, Parts};
use crate::agreement::driver::Status;
use crate::home::config::GatewaySection;

/// Member indices in the test consortium: this node, and two others.
const OWNER: usize = 0;
const GRANTEE: usize = 1;
const STRANGER_TO_GRANTS: usize = 2;

/// The gateway's and the chain's time in a test, unless it moves them.
const NOW: u64 = T0 + 10_000;
/// Grants in the tests hold from `T0` for this long.
const HOUR_MS: u64 = 3_600_000;

/// A gateway of org-a in a three-member consortium.
struct Fixture {
    consortium: Consortium,
    gateway: Gateway,
    state: watch::Sender<Arc<State>>,
    status: watch::Sender<Status>,
    clock: Arc<AtomicU64>,
    audit_log: std::path::PathBuf,
    /// Markers [`Fixture::audit`] wrote so far.
    markers: AtomicUsize,
    /// What the gateway asks of the driver (there is none: tests answer).
    commands:
        Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<crate::agreement::driver::Command>>>,
    _dir: tempfile::TempDir,
}

/// A grant's terms in a test: read (and list) under `resources`, from
/// `T0` for an hour unless `window` says otherwise.
struct Terms<'a> {
    resources: &'a [&'a str],
    actions: &'a [Action],
    window: (u64, u64),
    rate: Option<(u32, u32)>,
    purpose: Option<&'a str>,
}

impl Default for Terms<'_> {
    fn default() -> Self {
        Self {
            resources: &["reports/*"],
            actions: &[Action::Read],
            window: (T0, T0 + HOUR_MS),
            rate: None,
            purpose: None,
        }
    }
}

impl Fixture {
    /// Org-a's gateway, its ledger fresh, both clocks at [`NOW`].
    fn new() -> Self {
        Self::serving_as(None)
    }

    /// The gateway of `me` (org-a's key if `None`).
    fn serving_as(me: Option<Did>) -> Self {
        Self::build(me, GatewaySection::default())
    }

    /// Org-a's gateway under `config`.
    fn configured(config: GatewaySection) -> Self {
        Self::build(None, config)
    }

    fn build(me: Option<Did>, config: GatewaySection) -> Self {
        let consortium = Consortium::new(3);
        let dir = tempfile::tempdir().unwrap();
        let objects = ObjectStore::open(&dir.path().join("objects")).unwrap();
        let audit_log = dir.path().join("audit.log");
        let (auditor, _writer) = Auditor::start(audit_log.clone()).unwrap();
        let (state, state_rx) = watch::channel(Arc::new(consortium.chain.state().clone()));
        let (status, status_rx) = watch::channel(fresh_status(NOW));
        let clock = Arc::new(AtomicU64::new(NOW));
        let reading = clock.clone();
        let (driver, commands) =
            crate::agreement::driver::Handle::detached(state_rx.clone(), status_rx.clone());
        let sharing = crate::sharing::Sharing::open(
            dir.path(),
            dir.path(),
            consortium.keys[OWNER].clone(),
            consortium.chain.genesis_hash(),
            driver,
        )
        .unwrap();
        let parts = Parts {
            sharing,
            me: me.unwrap_or_else(|| consortium.keys[OWNER].did()),
            name: "org-a".to_owned(),
            state: state_rx,
            status: status_rx,
            objects: Arc::new(objects),
            upstreams: UpstreamTable::new(Upstreams::new(&[]).unwrap(), None),
            auditor,
            config,
        };
        let gateway = Gateway::with_clock(
            parts,
            Arc::new(move || Timestamp(reading.load(Ordering::Relaxed))),
        );
        Self {
            consortium,
            gateway,
            state,
            status,
            clock,
            audit_log,
            markers: AtomicUsize::new(0),
            commands: Arc::new(tokio::sync::Mutex::new(commands)),
            _dir: dir,
        }
    }

    fn did(&self, member: usize) -> Did {
        self.consortium.keys[member].did()
    }

    /// Commits a grant from org-a to `grantee` and publishes the state.
    fn grant(&mut self, grantee: usize, terms: Terms<'_>) -> GrantId {
        let terms = GrantTerms {
            grantor: self.consortium.id(OWNER),
            grantee: self.consortium.id(grantee),
            resources: terms
                .resources
                .iter()
                .map(|r| ResourcePattern::parse(r).unwrap())
                .collect(),
            actions: terms.actions.to_vec(),
            not_before: Timestamp(terms.window.0),
            not_after: Timestamp(terms.window.1),
            purpose: terms.purpose.map(str::to_owned),
            rate_limit: terms.rate.map(|(requests, per_seconds)| RateLimit {
                requests,
                per_seconds,
            }),
        };
        let all = self.consortium.all();
        let entry = self.consortium.entry(OWNER, Body::Grant(terms), &all);
        let id = GrantId(entry.id().unwrap().0);
        self.commit(entry);
        id
    }

    /// Commits org-a's revocation of `grant` and publishes the state.
    fn revoke(&mut self, grant: GrantId) {
        let entry = self
            .consortium
            .entry(OWNER, Body::Revoke { grant }, &[OWNER]);
        self.commit(entry);
    }

    fn commit(&mut self, entry: quorate_ledger::entry::Entry) {
        self.consortium.commit(vec![entry]);
        let state = Arc::new(self.consortium.chain.state().clone());
        self.state.send_replace(state);
    }

    /// Stores `bytes` at `path` in org-a's objects.
    fn put(&self, path: &str, bytes: &[u8]) {
        let store = self.gateway.objects();
        let upload = store.upload_path().unwrap();
        std::fs::write(&upload, bytes).unwrap();
        let etag = blake3::hash(bytes).to_hex().to_string();
        let path = ResourcePath::parse(path).unwrap();
        store
            .commit(&path, &upload, etag, bytes.len() as u64, "text/csv", NOW)
            .unwrap();
    }

    /// Moves the gateway's wall clock.
    fn set_clock(&self, ms: u64) {
        self.clock.store(ms, Ordering::Relaxed);
    }

    /// Moves the chain's time (the tip's), the ledger still fresh.
    fn set_chain_time(&self, ms: u64) {
        self.status.send_replace(fresh_status(ms));
    }

    /// As if the node had not committed for longer than `max_ledger_age`.
    fn go_stale(&self) {
        self.status.send_modify(|status| status.last_commit = None);
    }

    /// Every audit record written so far, in order. A marker record is
    /// written and waited for: the writer keeps order, so every earlier
    /// decision is on disk once it is (and so is counted, or not, exactly).
    /// The decisions of the audit log so far (`allow`, `deny`), in order.
    async fn decisions(&self) -> Vec<String> {
        self.audit()
            .await
            .into_iter()
            .map(|r| r.decision.decision)
            .collect()
    }

    async fn audit(&self) -> Vec<Record> {
        const MARKER: &str = "(test marker)";
        self.gateway
            .refused("test", None, Action::Read, MARKER, &Refusal::Internal)
            .await;
        let asked = self.markers.fetch_add(1, Ordering::Relaxed) + 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let query = audit::Query {
                limit: Some(1000),
                ..audit::Query::default()
            };
            let records = audit::query(&self.audit_log, &query).unwrap();
            let markers = records
                .iter()
                .filter(|r| r.decision.resource == MARKER)
                .count();
            if markers == asked {
                return records
                    .into_iter()
                    .filter(|r| r.decision.resource != MARKER)
                    .collect();
            }
            assert!(Instant::now() < deadline, "the audit log was not written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Fixture {
    /// The reason of every audit record so far (`None` for an allowed
    /// request that ran to its end).
    async fn reasons(&self) -> Vec<Option<String>> {
        self.audit()
            .await
            .into_iter()
            .map(|r| r.decision.reason)
            .collect()
    }
}

fn fresh_status(tip_time_ms: u64) -> Status {
    Status {
        tip_time_ms,
        last_commit: Some(Instant::now()),
        ..Status::default()
    }
}

fn path(text: &str) -> ResourcePath {
    ResourcePath::parse(text).unwrap()
}

/// The one record of `resource`, as the log has it.
fn only_record<'a>(records: &'a [Record], resource: &str) -> &'a Record {
    let of: Vec<&Record> = records
        .iter()
        .filter(|r| r.decision.resource == resource)
        .collect();
    assert_eq!(of.len(), 1, "records of {resource}: {of:#?}");
    of[0]
}
