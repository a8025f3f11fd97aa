//! `quorate node run`: wires a node together and runs it until SIGINT or
//! SIGTERM (mini-redis's `server::run(listener, shutdown)` shape: the caller
//! owns shutdown).

use std::path::{Path, PathBuf};

use quorate_ledger::block::CommittedBlock;
use quorate_ledger::codec;
use quorate_ledger::ledger::Ledger;
use tracing::info;

use crate::agreement::driver::{Driver, DriverConfig, Handle};
use crate::home::NodeHome;
use crate::home::config::Config;
use crate::home::lock::HomeLock;
use crate::net;

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

/// Why the ledger could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenLedgerError {
    /// A file or directory could not be read or created.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "read").
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The store did not open.
    #[error("cannot open the ledger {}: {source}", path.display())]
    Store {
        /// The ledger file.
        path: PathBuf,
        /// The error.
        source: quorate_ledger::ledger::LedgerError,
    },
    /// The ledger is empty and no genesis was given.
    #[error("the ledger is empty and there is no genesis at {}", .0.display())]
    NoGenesis(PathBuf),
    /// The genesis file is too large to be one.
    #[error("{} is {len} bytes; not a genesis", path.display())]
    GenesisTooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The genesis file does not decode.
    #[error("{} is not a genesis block: {source}", path.display())]
    GenesisDecode {
        /// The file.
        path: PathBuf,
        /// The error.
        source: codec::DecodeError,
    },
    /// The genesis block does not verify.
    #[error("{} does not verify: {source}", path.display())]
    GenesisInvalid {
        /// The file.
        path: PathBuf,
        /// The error.
        source: quorate_ledger::ledger::LedgerError,
    },
}

/// Opens the node's ledger, writing genesis from `HOME/genesis.cbor` on
/// first start.
pub fn open_ledger(home: &NodeHome, config: &Config) -> Result<Ledger, OpenLedgerError> {
    let path = ledger_path(home, config);
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| OpenLedgerError::Io { what, path, source }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    let mut ledger = Ledger::open(&path).map_err(|source| OpenLedgerError::Store {
        path: path.clone(),
        source,
    })?;
    let history = config.ledger.state_history.0.as_millis();
    ledger.keep_state_history(Some(u64::try_from(history).unwrap_or(u64::MAX)));
    if ledger.chain().is_none() {
        let genesis_path = home.root().join(GENESIS_FILE);
        let len = std::fs::metadata(&genesis_path)
            .map_err(|_| OpenLedgerError::NoGenesis(genesis_path.clone()))?
            .len();
        if len > GENESIS_BYTES_MAX {
            return Err(OpenLedgerError::GenesisTooLarge {
                path: genesis_path,
                len,
            });
        }
        let bytes = std::fs::read(&genesis_path).map_err(io("read", &genesis_path))?;
        let genesis: CommittedBlock =
            codec::decode(&bytes).map_err(|source| OpenLedgerError::GenesisDecode {
                path: genesis_path.clone(),
                source,
            })?;
        ledger
            .init_genesis(&genesis)
            .map_err(|source| OpenLedgerError::GenesisInvalid {
                path: genesis_path,
                source,
            })?;
    }
    Ok(ledger)
}

/// Why a node could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another process holds the home.
    #[error(transparent)]
    Lock(#[from] crate::home::lock::LockError),
    /// The config does not load.
    #[error(transparent)]
    Config(#[from] crate::home::OpenError),
    /// The ledger does not open.
    #[error(transparent)]
    Ledger(#[from] OpenLedgerError),
    /// The member key does not load (or a rotation cannot be finished).
    #[error(transparent)]
    Key(#[from] crate::home::RotateError),
    /// The swarm cannot start.
    #[error("cannot start the network: {0}")]
    Network(#[from] net::NetworkError),
    /// The driver cannot start, or stopped with an error.
    #[error(transparent)]
    Driver(#[from] crate::agreement::driver::DriverError),
    /// The gateway listens on every address and `[gateway] authority`
    /// does not say what members call it.
    #[error(
        "[gateway] listen = \"{listen}\" is every address: set [gateway] authority to the host:port members address the gateway by"
    )]
    GatewayAuthority {
        /// The listen address.
        listen: std::net::SocketAddr,
    },
    /// The nonce journal does not open.
    #[error("cannot open the nonce journal: {0}")]
    Nonces(#[from] crate::gateway::nonces::OpenError),
    /// The object store does not open.
    #[error("cannot open the object store in {}: {source}", path.display())]
    Objects {
        /// The data directory.
        path: PathBuf,
        /// The error.
        source: crate::gateway::objects::ObjectError,
    },
    /// An `[[upstream]]` section is invalid.
    #[error("config [[upstream]]: {0}")]
    Upstream(#[from] crate::gateway::upstream::UpstreamConfigError),
    /// The API tokens do not load.
    #[error(transparent)]
    Tokens(#[from] crate::home::tokens::LoadError),
    /// The revoked single-sign-on tokens cannot be read.
    #[error(transparent)]
    JwtRevocations(#[from] crate::home::jwt_revocations::LoadJwtRevocationsError),
    /// The endorsement policy file cannot be used.
    #[error("endorsement policy: {0}")]
    EndorsementPolicy(#[from] crate::home::endorsement::PolicyFileError),
    /// `[auth.oidc]` cannot be used.
    #[error(transparent)]
    Oidc(#[from] crate::oidc::OidcConfigError),
    /// The audit log does not open.
    #[error("cannot open the audit log: {0}")]
    Audit(#[from] crate::gateway::audit::AuditError),
    /// A thread or runtime cannot be started.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The error.
        source: std::io::Error,
    },
    /// The catalog or the access requests cannot be read.
    #[error(transparent)]
    Sharing(#[from] crate::sharing::OpenError),
    /// The network thread ended before the swarm started (it panicked).
    #[error("the network thread stopped")]
    NetworkLost,
    /// The agreement thread ended without a result (it panicked).
    #[error("the agreement thread stopped")]
    AgreementLost,
}

/// A started node: its driver handle and the task running it.
pub struct RunningNode {
    /// Talks to the driver.
    pub handle: Handle,
    /// What the local API and the gateway serve.
    pub local: crate::local_api::LocalNode,
    /// Ends when the node stops, saying why.
    pub task: tokio::task::JoinHandle<Result<crate::agreement::driver::Stopped, StartError>>,
    /// Holds the home while the node runs.
    pub lock: HomeLock,
    /// What the gateway's signed HTTP routes need: this member, its public
    /// authority, and the nonces accepted before this start (taken by
    /// whoever serves the gateway's HTTP routes).
    pub gateway_http: Option<quorate_api::gateway::Settings>,
}

/// The gateway's HTTP settings: the public authority from `[gateway]
/// authority` (or `[gateway] listen`), and the nonce journal in `data`,
/// with a task that syncs it.
fn gateway_http(
    config: &Config,
    data: &std::path::Path,
    me: quorate_did::Did,
) -> Result<quorate_api::gateway::Settings, StartError> {
    let skew = config.gateway.signature_skew.0.as_secs().max(1);
    let authority = match (&config.gateway.authority, config.gateway.listen) {
        (Some(authority), _) => authority.clone(),
        (None, Some(listen)) if listen.ip().is_unspecified() => {
            return Err(StartError::GatewayAuthority { listen });
        }
        (None, Some(listen)) => listen.to_string(),
        // No HTTP gateway: members come over libp2p, which has no
        // authority; this one is never matched.
        (None, None) => config.api.listen.to_string(),
    };
    let now_secs = i64::try_from(crate::agreement::driver::now().0 / 1000).unwrap_or(i64::MAX);
    let (journal, replay) = crate::gateway::nonces::NonceFile::open(data, skew, now_secs)?;
    info!(
        nonces = replay.len(),
        %authority,
        "gateway remembers the nonces of its replay window"
    );
    let journal = std::sync::Arc::new(journal);
    let syncing = std::sync::Arc::downgrade(&journal);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::gateway::nonces::SYNC_INTERVAL);
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
) -> Result<RunningNode, StartError> {
    let lock = HomeLock::acquire(home.root())?;
    let config = home.load_config()?;
    let tokens = std::sync::Arc::new(crate::home::tokens::TokenRegistry::open(home)?);
    let jwt_revocations =
        std::sync::Arc::new(crate::home::jwt_revocations::JwtRevocations::open(home)?);
    let oidc = match &config.auth.oidc {
        Some(section) => {
            let verifier = std::sync::Arc::new(
                crate::oidc::OidcVerifier::new(section, home.root())?
                    .with_revocations(jwt_revocations.clone()),
            );
            tokio::spawn(verifier.clone().refresh_loop());
            Some(verifier)
        }
        None => None,
    };
    let ledger = open_ledger(home, &config)?;
    let chain = ledger
        .chain()
        .ok_or(crate::agreement::driver::DriverError::NoGenesis)?;
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
    let (stop_network, network_stops) = tokio::sync::oneshot::channel::<()>();
    let (net, inbound) = network_on_own_thread(
        key.clone(),
        chain.chain_id().to_owned(),
        config.p2p.listen.clone(),
        config.p2p.bootstrap.clone(),
        network_stops,
    )
    .await?;
    let (policy, policy_source) = crate::home::endorsement::effective(
        config.consensus.approval,
        &home.endorsement_policy_path(),
    )?;
    info!(source = %policy_source, rules = policy.document().rules.len(), "endorsement policy");
    let driver_config = DriverConfig {
        heartbeat: config.consensus.heartbeat.0,
        policy,
        policy_source,
        consensus: config.consensus.machine_config(chain.chain_id()),
        sync_interval: config.consensus.sync_interval.0,
    };
    let did = key.did();
    let reader = ledger.reader();
    let sharing_key = key.clone();
    let (driver, handle) = Driver::new(key, ledger, net.clone(), driver_config)?;
    let data = data_dir(home, &config);
    let sharing = crate::sharing::Sharing::open(
        home.root(),
        &data,
        sharing_key,
        genesis_hash,
        handle.clone(),
    )?;
    let gateway_http = gateway_http(&config, &data, did)?;
    let objects =
        crate::gateway::objects::ObjectStore::open(&data.join("objects")).map_err(|source| {
            StartError::Objects {
                path: data.clone(),
                source,
            }
        })?;
    let upstreams = crate::gateway::upstream::Upstreams::new(&config.upstream)?;
    let upstream_table =
        crate::gateway::upstream::UpstreamTable::new(upstreams, Some(&home.config_path()));
    reload_on_hangup(upstream_table.clone());
    let (auditor, _audit_task) = crate::gateway::audit::Auditor::start_with_segments(
        data.join("audit.log"),
        config
            .gateway
            .audit_segment_bytes
            .max(crate::home::config::AUDIT_SEGMENT_BYTES_MIN),
    )?;
    let gateway = crate::gateway::Gateway::new(crate::gateway::Parts {
        me: did,
        name: config.node.name.clone(),
        state: handle.state(),
        status: handle.status_receiver(),
        objects: std::sync::Arc::new(objects),
        upstreams: upstream_table.clone(),
        auditor,
        config: config.gateway.clone(),
        sharing,
    });
    tokio::spawn(gateway.clone().serve_peers(inbound.data, net.clone()));
    tokio::spawn(driver.sync_server().serve(inbound.sync));
    let local = crate::local_api::LocalNode::new(crate::local_api::LocalNodeParts {
        handle: handle.clone(),
        gateway,
        net,
        object_bytes_max: config.gateway.object_bytes_max,
        genesis_hash,
        ledger: reader,
        access: crate::local_api::Access {
            tokens,
            oidc,
            jwt_revocations,
        },
        policy: crate::local_api::PolicyHome {
            approval: config.consensus.approval,
            path: home.endorsement_policy_path(),
        },
    });
    local.start_events();
    // Agreement runs on a thread of its own: however busy the shared
    // workers are with members' data (and the local API), the driver's
    // votes, commits and fsyncs are scheduled like any other thread.
    let agreement = on_own_thread("quorate-agreement", async move {
        driver
            .run(inbound.events, shutdown)
            .await
            .map_err(StartError::from)
    })?;
    let task = tokio::spawn(async move {
        let stopped = agreement.await.unwrap_or(Err(StartError::AgreementLost));
        let _ = stop_network.send(());
        stopped
    });
    Ok(RunningNode {
        handle,
        local,
        task,
        lock,
        gateway_http: Some(gateway_http),
    })
}

/// How many nice levels below the process the threads of the shared
/// runtime run (members' data, the local API, their blocking work): when
/// the machine is busy, the kernel runs the agreement and network threads
/// first, so a flood of data requests cannot slow commits (and with them
/// the freshness every request is checked against). Idle, it changes
/// nothing.
pub const SHARED_WORKERS_NICE: i32 = 5;

/// Lowers the calling thread's priority by [`SHARED_WORKERS_NICE`] (on
/// Linux a thread's nice value is its own); for the shared runtime's
/// `on_thread_start`. If the system refuses, the thread runs as it was.
pub fn lower_shared_worker_priority() {
    #[cfg(target_os = "linux")]
    {
        // Absolute, not relative: a blocking thread started by a worker
        // inherits the worker's value already. The first thread to ask
        // (a worker, started from the main thread) gives the baseline.
        static BASELINE: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
        let Ok(current) = rustix::process::nice(0) else {
            return;
        };
        let target = BASELINE.get_or_init(|| current) + SHARED_WORKERS_NICE;
        if current < target {
            let _ = rustix::process::nice(target - current);
        }
    }
}

/// Builds the swarm on a thread of its own, with a runtime of its own,
/// where every connection's task then runs: gossip, votes and members'
/// requests are read and written there, whatever the shared workers are
/// doing. It runs until `stop` fires (the node stopped) or every client
/// is gone.
async fn network_on_own_thread(
    key: quorate_did::Keypair,
    chain_id: String,
    listen: Vec<String>,
    bootstrap: Vec<String>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(net::Client, net::Inbound), StartError> {
    let (started, ready) = tokio::sync::oneshot::channel();
    let running = on_own_thread("quorate-network", async move {
        match net::spawn(&key, &chain_id, &listen, &bootstrap) {
            Ok((client, inbound, event_loop)) => {
                let _ = started.send(Ok((client, inbound)));
                tokio::select! {
                    () = event_loop.run() => {}
                    _ = stop => {}
                }
            }
            Err(e) => {
                let _ = started.send(Err(e));
            }
        }
    })?;
    drop(running);
    match ready.await {
        Ok(started) => Ok(started?),
        Err(_) => Err(StartError::NetworkLost),
    }
}

/// Runs `task` on a new thread with a runtime of its own (single-threaded:
/// what it spawns runs there too); the receiver gets its output.
fn on_own_thread<T: Send + 'static>(
    name: &str,
    task: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<T>, StartError> {
    let (done, output) = tokio::sync::oneshot::channel();
    let thread_error = |source| StartError::Thread {
        name: name.to_owned(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(thread_error)?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = done.send(runtime.block_on(task));
        })
        .map_err(thread_error)?;
    Ok(output)
}

/// On SIGHUP, reloads the upstream routes from the config (as `quorate
/// node reload` does through the API); an invalid config is logged and the
/// routes in force are kept. Without this, SIGHUP would end the process.
fn reload_on_hangup(table: crate::gateway::upstream::UpstreamTable) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload the upstream routes through the API");
            return;
        };
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let table = table.clone();
                match tokio::task::spawn_blocking(move || table.reload()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(
                        target: "upstream",
                        error = %e,
                        "SIGHUP: reload refused; the routes in force are kept"
                    ),
                    Err(e) => {
                        tracing::error!(target: "upstream", error = %e, "SIGHUP: reload failed")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(table);
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
