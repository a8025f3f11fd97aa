//! `quorate node run`: wires a node together and runs it until SIGINT or
//! SIGTERM (mini-redis's `server::run(listener, shutdown)` shape: the caller
//! owns shutdown).

use std::path::PathBuf;

use anyhow::Context as _;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::codec;
use quorate_ledger::ledger::Ledger;
use tracing::info;

use crate::config::Config;
use crate::driver::{Driver, DriverConfig, Handle};
use crate::home::NodeHome;
use crate::lock::HomeLock;
use crate::network;

/// File name of the genesis block a new node starts from.
pub const GENESIS_FILE: &str = "genesis.cbor";
/// Largest genesis file read.
pub const GENESIS_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The data directory (ledger, objects, audit log).
pub fn data_dir(home: &NodeHome, config: &Config) -> PathBuf {
    if config.node.data_dir.is_absolute() {
        config.node.data_dir.clone()
    } else {
        home.root().join(&config.node.data_dir)
    }
}

/// The ledger file inside the data directory.
pub fn ledger_path(home: &NodeHome, config: &Config) -> PathBuf {
    data_dir(home, config).join("ledger.redb")
}

/// Opens the node's ledger, writing genesis from `HOME/genesis.cbor` on
/// first start.
pub fn open_ledger(home: &NodeHome, config: &Config) -> anyhow::Result<Ledger> {
    let path = ledger_path(home, config);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut ledger = Ledger::open(&path)
        .with_context(|| format!("cannot open the ledger {}", path.display()))?;
    if ledger.chain().is_none() {
        let genesis_path = home.root().join(GENESIS_FILE);
        let len = std::fs::metadata(&genesis_path)
            .with_context(|| {
                format!(
                    "the ledger is empty and there is no genesis at {}",
                    genesis_path.display()
                )
            })?
            .len();
        anyhow::ensure!(
            len <= GENESIS_BYTES_MAX,
            "{} is {len} bytes; not a genesis",
            genesis_path.display()
        );
        let bytes = std::fs::read(&genesis_path)?;
        let genesis: CommittedBlock = codec::decode(&bytes)
            .with_context(|| format!("{} is not a genesis block", genesis_path.display()))?;
        ledger
            .init_genesis(&genesis)
            .with_context(|| format!("{} does not verify", genesis_path.display()))?;
    }
    Ok(ledger)
}

/// A started node: its driver handle and the task running it.
pub struct RunningNode {
    /// Talks to the driver.
    pub handle: Handle,
    /// What the local API and the gateway serve.
    pub local: crate::api::LocalNode,
    /// Ends when the node stops, saying why.
    pub task: tokio::task::JoinHandle<anyhow::Result<crate::driver::Stopped>>,
    /// Holds the home while the node runs.
    pub lock: HomeLock,
    /// What the gateway's signed HTTP routes need: this member, its public
    /// authority, and the nonces accepted before this start (taken by
    /// whoever serves the gateway's HTTP routes).
    pub gateway_http: Option<quorate_api::gateway::Settings>,
}

/// The gateway's HTTP settings: the public authority from `[gateway]
/// authority` (or `[api] listen`), and the nonce journal in `data`, with a
/// task that syncs it.
fn gateway_http(
    config: &Config,
    data: &std::path::Path,
    me: quorate_did::Did,
) -> anyhow::Result<quorate_api::gateway::Settings> {
    let skew = config.gateway.signature_skew.0.as_secs().max(1);
    let authority = config
        .gateway
        .authority
        .clone()
        .unwrap_or_else(|| config.api.listen.to_string());
    let now_secs = i64::try_from(crate::driver::now().0 / 1000).unwrap_or(i64::MAX);
    let (journal, replay) = crate::nonces::NonceFile::open(data, skew, now_secs)?;
    info!(
        nonces = replay.len(),
        %authority,
        "gateway remembers the nonces of its replay window"
    );
    let journal = std::sync::Arc::new(journal);
    let syncing = std::sync::Arc::downgrade(&journal);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::nonces::SYNC_INTERVAL);
        loop {
            tick.tick().await;
            let Some(journal) = syncing.upgrade() else {
                return;
            };
            let synced = tokio::task::spawn_blocking(move || journal.sync()).await;
            if let Ok(Err(e)) = synced {
                tracing::error!(target: "gateway", error = %e, "cannot sync the nonce journal");
            }
        }
    });
    Ok(quorate_api::gateway::Settings::new(skew, authority, me).with_journal(journal, replay))
}

/// Starts the node of `home`; it stops when `shutdown` resolves.
pub async fn start(
    home: &NodeHome,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningNode> {
    let lock = HomeLock::acquire(home.root())?;
    let config = home.load_config()?;
    let ledger = open_ledger(home, &config)?;
    let chain = ledger.chain().context("ledger without genesis")?;
    let genesis_hash = chain.genesis_hash();
    // A rotation committed while the node was stopping is finished here.
    let key = home.load_current_key(|did| chain.state().members.values().any(|m| m.did == *did))?;
    info!(
        did = %key.did(),
        chain = chain.chain_id(),
        height = chain.tip().height,
        "starting node {}",
        config.node.name
    );
    let (net, inbound, event_loop) = network::spawn(
        &key,
        chain.chain_id(),
        &config.p2p.listen,
        &config.p2p.bootstrap,
    )?;
    tokio::spawn(event_loop.run());
    let driver_config = DriverConfig {
        heartbeat: config.consensus.heartbeat.0,
        approval: config.consensus.approval,
        consensus: config.consensus.machine_config(chain.chain_id()),
        sync_interval: config.consensus.sync_interval.0,
    };
    let did = key.did();
    let (driver, handle) = Driver::new(key, ledger, net.clone(), driver_config)?;
    let data = data_dir(home, &config);
    let gateway_http = gateway_http(&config, &data, did)?;
    let objects = crate::objects::ObjectStore::open(&data.join("objects"))
        .with_context(|| format!("cannot open the object store in {}", data.display()))?;
    let upstreams =
        crate::upstream::Upstreams::new(&config.upstream).context("config [[upstream]]")?;
    let (auditor, _audit_task) = crate::audit::Auditor::start(data.join("audit.log"))
        .context("cannot open the audit log")?;
    let gateway = crate::gateway::Gateway::new(
        did,
        config.node.name.clone(),
        &handle,
        std::sync::Arc::new(objects),
        std::sync::Arc::new(upstreams),
        auditor,
        config.gateway.clone(),
    );
    tokio::spawn(gateway.clone().serve_peers(inbound.data, net.clone()));
    let local = crate::api::LocalNode::new(
        handle.clone(),
        gateway,
        net,
        config.gateway.object_bytes_max,
        genesis_hash,
    );
    // Agreement runs on a thread of its own: however busy the shared
    // workers are with members' data (and the local API), the driver's
    // votes, commits and fsyncs are scheduled like any other thread.
    let agreement = on_own_thread("quorate-agreement", async move {
        driver
            .run(inbound.events, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })?;
    let task = tokio::spawn(async move {
        agreement
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the agreement thread stopped")))
    });
    Ok(RunningNode {
        handle,
        local,
        task,
        lock,
        gateway_http: Some(gateway_http),
    })
}

/// Runs `task` on a new thread with a runtime of its own (single-threaded:
/// what it spawns runs there too); the receiver gets its output.
fn on_own_thread<T: Send + 'static>(
    name: &str,
    task: impl std::future::Future<Output = T> + Send + 'static,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<T>> {
    let (done, output) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the agreement runtime")?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = done.send(runtime.block_on(task));
        })
        .with_context(|| format!("cannot start the {name} thread"))?;
    Ok(output)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
