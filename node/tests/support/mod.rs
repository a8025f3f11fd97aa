//! A consortium of agreement drivers in one process: keys, a genesis, a
//! ledger on disk for each (in a temporary directory), and the in-memory
//! network ([`sim_net`]) between them. Nodes can be stopped and started
//! again on their ledgers.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

pub(crate) mod sim_net;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quorate_contracts::{Action, Body, GrantTerms, MemberId, Policy, ResourcePattern, Timestamp};
use quorate_did::Keypair;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::consensus;
use quorate_ledger::ledger::Ledger;
use quorate_node::agreement::driver::{
    self, Command, Driver, DriverConfig, DriverError, Handle, Status, Stopped,
};
use quorate_node::agreement::policy::Policy as EndorsementPolicy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use sim_net::SimNet;

pub(crate) const CHAIN: &str = "harness-chain";
/// How long any one wait may take: generous, since the machine is shared;
/// a healthy run takes a fraction of it.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// The seed: `QUORATE_HARNESS_SEED` if set (to replay a failure), else the
/// test's own.
pub(crate) fn seed(default: u64) -> u64 {
    std::env::var("QUORATE_HARNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Short timers, so that a height takes tens of milliseconds and a lost
/// round well under a second.
pub(crate) fn driver_config() -> DriverConfig {
    DriverConfig {
        heartbeat: Duration::from_millis(100),
        policy: auto_policy(),
        policy_source: "approval = \"auto\"".to_owned(),
        consensus: consensus::Config {
            chain_id: CHAIN.to_owned(),
            propose_ms: 400,
            prevote_ms: 200,
            precommit_ms: 200,
            delta_ms: 100,
        },
        sync_interval: Duration::from_millis(200),
    }
}

/// The `approval = "auto"` shorthand: endorse whatever the rules accept.
pub(crate) fn auto_policy() -> EndorsementPolicy {
    EndorsementPolicy::compile(quorate_api::local::endorsement::EndorsementPolicy::always(
        "auto",
        quorate_api::local::endorsement::Outcome::Endorse,
    ))
    .expect("the auto policy compiles")
}

/// Prints the seed when a test fails, so that the run can be replayed.
struct SeedReport(u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("seed={0} (replay with QUORATE_HARNESS_SEED={0})", self.0);
        }
    }
}

struct Running {
    handle: Handle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Stopped, DriverError>>,
    /// The sync server: it ends once detached, letting go of the ledger.
    server: JoinHandle<()>,
}

struct Node {
    key: Keypair,
    ledger: PathBuf,
    running: Option<Running>,
    /// Its endorsement policy (the auto shorthand unless a test sets one).
    policy: EndorsementPolicy,
}

/// Drivers `0..members` are the genesis members; the rest share the chain
/// but are not members.
pub(crate) struct Consortium {
    pub(crate) net: SimNet,
    nodes: Vec<Node>,
    members: Vec<MemberId>,
    _dir: tempfile::TempDir,
    _seed: SeedReport,
}

impl Consortium {
    /// Ledgers and keys for `members + outsiders` nodes, none running yet
    /// (so that a test can set drop rules before the first message).
    pub(crate) fn new(members: usize, outsiders: usize, seed: u64) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let keys: Vec<Keypair> = (0..members + outsiders)
            .map(|i| Keypair::from_seed(&[u8::try_from(i + 1).expect("few nodes"); 32]))
            .collect();
        let names: Vec<String> = (0..members).map(|i| format!("org-{i}")).collect();
        let founders: Vec<(&str, &Keypair)> = names.iter().map(String::as_str).zip(&keys).collect();
        // Genesis now: block times follow it, and a proposal's time must
        // not be ahead of the drivers' clocks.
        let genesis: CommittedBlock =
            quorate_ledger::genesis::build(CHAIN, &founders, Policy::default(), driver::now())
                .expect("a genesis");
        let mut nodes = Vec::new();
        let mut member_ids = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let path = dir.path().join(format!("node-{i}.redb"));
            let mut ledger = Ledger::open(&path).expect("a new ledger");
            ledger.init_genesis(&genesis).expect("genesis accepted");
            if i < members {
                let state = ledger.chain().expect("genesis").state();
                member_ids.push(state.member_by_did(&key.did()).expect("a member").id);
            }
            nodes.push(Node {
                key,
                ledger: path,
                running: None,
                policy: auto_policy(),
            });
        }
        Self {
            net: SimNet::new(seed),
            nodes,
            members: member_ids,
            _dir: dir,
            _seed: SeedReport(seed),
        }
    }

    /// [`new`](Self::new), every node started.
    pub(crate) fn start(members: usize, outsiders: usize, seed: u64) -> Self {
        let mut consortium = Self::new(members, outsiders, seed);
        for i in 0..consortium.nodes.len() {
            consortium.start_node(i);
        }
        consortium
    }

    /// Sets node `i`'s endorsement policy, for its next start.
    pub(crate) fn set_policy(&mut self, i: usize, policy: EndorsementPolicy) {
        self.nodes[i].policy = policy;
    }

    /// Node `i`'s DID.
    pub(crate) fn did(&self, i: usize) -> quorate_did::Did {
        self.nodes[i].key.did()
    }

    /// Sends node `i`'s driver a command made by `command` and waits for
    /// its answer.
    pub(crate) async fn ask<T>(
        &self,
        i: usize,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> T {
        let (reply, answer) = oneshot::channel();
        self.handle(i)
            .send(command(reply))
            .await
            .expect("the driver takes commands");
        answer.await.expect("the driver answers")
    }

    /// Proposes `body` as member `i`; returns the entry's id.
    pub(crate) async fn propose(&self, i: usize, body: Body) -> quorate_ledger::entry::EntryId {
        self.ask(i, |reply| Command::Propose { body, reply })
            .await
            .expect("the proposal is taken")
    }

    /// Node `i`'s view of proposal `id`, if it holds it.
    pub(crate) async fn proposal(
        &self,
        i: usize,
        id: quorate_ledger::entry::EntryId,
    ) -> Option<quorate_api::local::responses::ProposalView> {
        self.ask(i, |reply| Command::Proposal { id, reply }).await
    }

    /// Waits until node `i`'s view of proposal `id` satisfies `done`
    /// (polled; panics after [`WAIT`] with the last view).
    pub(crate) async fn wait_proposal(
        &self,
        i: usize,
        id: quorate_ledger::entry::EntryId,
        what: &str,
        done: impl Fn(&quorate_api::local::responses::ProposalView) -> bool,
    ) -> quorate_api::local::responses::ProposalView {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let view = self.proposal(i, id).await;
            if let Some(view) = view.as_ref().filter(|v| done(v)) {
                return view.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i}: proposal {id} never {what}; last: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every node's index.
    pub(crate) fn all(&self) -> Vec<usize> {
        (0..self.nodes.len()).collect()
    }

    /// Member `i`'s id on the ledger.
    pub(crate) fn member(&self, i: usize) -> MemberId {
        self.members[i]
    }

    /// Starts node `i` on its ledger (after a stop: where it left off).
    pub(crate) fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.running.is_none(), "node {i} is already running");
        let ledger = Ledger::open(&node.ledger).expect("the node's ledger opens");
        let attached = self.net.attach(i, node.key.did());
        let config = DriverConfig {
            policy: node.policy.clone(),
            policy_source: "test".to_owned(),
            ..driver_config()
        };
        let (driver, handle) = Driver::new(node.key.clone(), ledger, attached.client, config)
            .expect("a driver on the ledger");
        let server = tokio::spawn(driver.sync_server().serve(attached.sync));
        let events = attached.events;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(driver.run(events, async move {
            let _ = stopped.await;
        }));
        node.running = Some(Running {
            handle,
            stop,
            task,
            server,
        });
    }

    /// Stops node `i` and waits until it has let go of its ledger; returns
    /// the height it reached.
    pub(crate) async fn stop_node(&mut self, i: usize) -> u64 {
        let running = self.nodes[i]
            .running
            .take()
            .unwrap_or_else(|| panic!("node {i} is not running"));
        let height = running.handle.status().height;
        self.net.detach(i);
        let _ = running.stop.send(());
        let stopped = tokio::time::timeout(WAIT, running.task)
            .await
            .unwrap_or_else(|_| panic!("node {i} did not stop"))
            .expect("the driver task did not panic");
        assert_eq!(
            stopped.expect("the driver stopped cleanly"),
            Stopped::Shutdown,
            "node {i}"
        );
        tokio::time::timeout(WAIT, running.server)
            .await
            .unwrap_or_else(|_| panic!("node {i}'s sync server did not stop"))
            .expect("the sync server did not panic");
        height
    }

    /// Node `i`'s driver.
    pub(crate) fn handle(&self, i: usize) -> &Handle {
        &self.nodes[i]
            .running
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
            .handle
    }

    pub(crate) fn status(&self, i: usize) -> Status {
        self.handle(i).status()
    }

    pub(crate) fn height(&self, i: usize) -> u64 {
        self.status(i).height
    }

    /// The highest tip among `nodes`.
    pub(crate) fn max_height(&self, nodes: &[usize]) -> u64 {
        nodes.iter().map(|&i| self.height(i)).max().unwrap_or(0)
    }

    /// Waits until every node of `nodes` has committed `height` (panics
    /// after [`WAIT`], with every status).
    pub(crate) async fn wait_height(&self, nodes: &[usize], height: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for &i in nodes {
            let mut status = self.handle(i).status_receiver();
            // Only whether it was reached: a borrowed status held on would
            // block the driver's next publication.
            let reached =
                tokio::time::timeout_at(deadline, status.wait_for(|s| s.height >= height))
                    .await
                    .is_ok_and(|r| r.is_ok());
            if !reached {
                panic!(
                    "node {i} did not reach height {height}; heights: {:?}",
                    self.heights()
                );
            }
        }
    }

    /// Each running node's height (for failure messages).
    fn heights(&self) -> Vec<Option<u64>> {
        self.nodes
            .iter()
            .map(|n| n.running.as_ref().map(|r| r.handle.status().height))
            .collect()
    }

    /// Proposes a grant from member `grantor` to member `grantee` through
    /// `grantor`'s driver; returns the entry's id.
    pub(crate) async fn propose_grant(
        &self,
        grantor: usize,
        grantee: usize,
    ) -> quorate_ledger::entry::EntryId {
        let now = driver::now();
        let body = Body::Grant(GrantTerms {
            grantor: self.member(grantor),
            grantee: self.member(grantee),
            resources: vec![ResourcePattern::parse("datasets/shipments/*").expect("a pattern")],
            actions: vec![Action::Read],
            not_before: now,
            not_after: Timestamp(now.0 + 24 * 3_600_000),
            purpose: Some("harness".to_owned()),
            rate_limit: None,
        });
        let (reply, answer) = oneshot::channel();
        self.handle(grantor)
            .send(Command::Propose { body, reply })
            .await
            .expect("the driver takes commands");
        answer
            .await
            .expect("the driver answers")
            .expect("the proposal is taken")
    }

    /// The committed state's watch of node `i` as it is now.
    pub(crate) fn state(&self, i: usize) -> Arc<quorate_contracts::State> {
        self.handle(i).state().borrow().clone()
    }

    /// Stops every running node and opens each ledger again, in node order.
    pub(crate) async fn finish(mut self) -> Vec<Ledger> {
        for i in self.all() {
            if self.nodes[i].running.is_some() {
                self.stop_node(i).await;
            }
        }
        self.nodes
            .iter()
            .map(|n| Ledger::open(&n.ledger).expect("the ledger opens again"))
            .collect()
    }
}

/// Asserts that `ledgers` hold the same blocks up to the lowest tip (the
/// same hashes, hence the same state roots in their headers), and that
/// each ledger's own state root is its tip block's; returns that height.
pub(crate) fn assert_same_chain(ledgers: &[Ledger]) -> u64 {
    let tips: Vec<u64> = ledgers
        .iter()
        .map(|l| l.chain().expect("genesis").tip().height)
        .collect();
    let common = tips.iter().copied().min().expect("at least one ledger");
    for (i, ledger) in ledgers.iter().enumerate() {
        let chain = ledger.chain().expect("genesis");
        let tip = ledger
            .block(chain.tip().height)
            .expect("readable")
            .expect("the tip block");
        assert_eq!(
            tip.block.header.state_root,
            chain.state_root(),
            "ledger {i}: its state root is not its tip's"
        );
    }
    let first: Vec<_> = block_hashes(&ledgers[0], common);
    for (i, ledger) in ledgers.iter().enumerate().skip(1) {
        assert_eq!(
            block_hashes(ledger, common),
            first,
            "ledger {i} differs from ledger 0 (tips {tips:?})"
        );
    }
    common
}

fn block_hashes(ledger: &Ledger, to: u64) -> Vec<(u64, quorate_ledger::hash::Hash)> {
    let mut hashes = Vec::new();
    let mut from = 0;
    // `blocks` stops early at a byte bound.
    while from <= to {
        let blocks = ledger.blocks(from, to).expect("readable");
        assert!(!blocks.is_empty(), "no block at {from}");
        for b in &blocks {
            hashes.push((b.block.header.height, b.block.hash().expect("hashable")));
        }
        from = blocks.last().map_or(to, |b| b.block.header.height) + 1;
    }
    hashes
}
