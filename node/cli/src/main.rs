//! `quorate`: the command-line interface of a Quorate node.

mod api;
mod governance;
mod proposals;
mod sharing;
mod testnet;
mod time;
mod tls;
mod tokens;
mod transfer;
mod upstreams;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use quorate_did::Did;
use quorate_node::home::config::{DEFAULT_API_PORT, DEFAULT_GATEWAY_PORT, DEFAULT_P2P_PORT};
use quorate_node::home::{InitOptions, NodeHome};

/// A peer-to-peer data-exchange node: organizations share data under grants
/// that a quorum of consortium members agreed on a replicated ledger.
#[derive(Debug, Parser)]
#[command(name = "quorate", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and manage a node home (key, config, admin token).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Show this node's DID, or resolve any did:key to its DID document.
    #[command(subcommand)]
    Did(DidCommand),
    /// Export a node's ledger, or verify a ledger offline from genesis.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Propose grants and revocations; list, approve or reject proposals
    /// (through the running node's local API).
    #[command(subcommand)]
    Proposal(proposals::ProposalCommand),
    /// This node's endorsement policy: which proposals it endorses on its
    /// own, rejects, or leaves to a person.
    #[command(subcommand)]
    Policy(governance::PolicyCommand),
    /// Propose, list and revoke grants; write and verify grant proofs.
    #[command(subcommand)]
    Grant(api::GrantCommand),
    /// List the consortium's members; write member status proofs.
    #[command(subcommand)]
    Member(api::MemberCommand),
    /// Store, read, list and delete this organization's objects.
    #[command(subcommand)]
    Data(api::DataCommand),
    /// Read other members' objects under their grants, and their
    /// catalogs of offers.
    #[command(subcommand)]
    Peer(api::PeerCommand),
    /// Ask other members for access to their data; accept or decline
    /// what they ask of this organization.
    #[command(subcommand)]
    Access(sharing::AccessCommand),
    /// What this organization offers to members: datasets with the terms
    /// it will grant (shown to members as a DCAT catalog).
    #[command(subcommand)]
    Catalog(sharing::CatalogCommand),
    /// Show gateway decisions; verify an audit log's hash chain.
    #[command(subcommand)]
    Audit(api::AuditCommand),
    /// Make, list and revoke named API tokens with roles, for the people
    /// and applications of this organization.
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Certificates of the gateway's TLS listener: make an authority,
    /// issue a node's gateway certificate or a client's.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    /// Start, inspect, perturb and stop a local multi-node testnet.
    #[command(subcommand)]
    Testnet(testnet::TestnetCommand),
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Write the node's whole ledger to an export file (the node must be
    /// stopped: the store admits one process at a time).
    Export {
        #[command(flatten)]
        home: HomeArg,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify every block, certificate, signature, rule and state root from
    /// genesis, in an export file or a node home. Prints a summary and OK,
    /// or the first failure with its height (exit 1).
    Verify {
        /// An export file (from `quorate ledger export`).
        #[arg(
            value_name = "FILE",
            conflicts_with = "home",
            required_unless_present = "home"
        )]
        file: Option<PathBuf>,
        /// Verify the ledger in this node home instead.
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// The genesis hash you trust (hex hash of block 0): a chain that
        /// starts elsewhere fails, however valid (as in `grant verify`).
        #[arg(long, value_name = "HASH")]
        genesis: Option<String>,
    },
    /// Give the ledger file's free pages back to the file system (the
    /// node must be stopped). Pruned state history and rewritten rows
    /// leave free pages inside the file; the node reuses them, this
    /// shrinks the file.
    Compact {
        #[command(flatten)]
        home: HomeArg,
    },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct HomeArg {
    /// The node home directory.
    #[arg(long, env = "QUORATE_HOME", value_name = "DIR", default_value_os_t = default_home())]
    pub(crate) home: PathBuf,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Run the node in the foreground: ledger, peer-to-peer agreement and
    /// the local API, until SIGINT or SIGTERM. Logs go to stderr
    /// (`RUST_LOG` filters them; `QUORATE_LOG_JSON=1` for JSON lines).
    Run {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Create a node home: an Ed25519 key (key.pem, 0600), an annotated
    /// config.toml, an admin token (admin.token, 0600), the gateway's TLS
    /// certificate (tls/, from a one-off authority) and a data directory.
    Init {
        #[command(flatten)]
        home: HomeArg,
        /// The organization's short name (lowercase letters, digits, '-').
        #[arg(long)]
        name: String,
        /// Port of the local REST API on 127.0.0.1.
        #[arg(long, default_value_t = DEFAULT_API_PORT)]
        api_port: u16,
        /// TCP port of the peer-to-peer listener on 127.0.0.1.
        #[arg(long, default_value_t = DEFAULT_P2P_PORT)]
        p2p_port: u16,
        /// Port of the gateway's TLS listener on 127.0.0.1, for members'
        /// signed requests.
        #[arg(long, default_value_t = DEFAULT_GATEWAY_PORT)]
        gateway_port: u16,
        /// A host name or IP address members reach the gateway by, besides
        /// the loopback ones: its certificate names it.
        #[arg(long = "gateway-host", value_name = "NAME")]
        gateway_hosts: Vec<String>,
        /// Rewrite the config and admin token of an existing home. The key is
        /// never replaced.
        #[arg(long)]
        force: bool,
    },
    /// Read the config's [[upstream]] routes again and put them in force
    /// without a restart (SIGHUP to the node does the same). An invalid
    /// config is refused and the routes in force are kept; other sections
    /// take effect at the next start.
    Reload {
        #[command(flatten)]
        home: HomeArg,
    },
    /// The upstream routes in force, and each URL's calls in flight,
    /// consecutive failures and circuit.
    Upstreams {
        #[command(flatten)]
        home: HomeArg,
    },
}

#[derive(Debug, Subcommand)]
enum DidCommand {
    /// Print this node's DID, then its DID document (JSON).
    Show {
        #[command(flatten)]
        home: HomeArg,
        /// Print only the DID, for scripts.
        #[arg(long)]
        did_only: bool,
    },
    /// Print the DID document of any Ed25519 did:key (no network needed: the
    /// document is derived from the key in the identifier).
    Resolve {
        /// A did:key identifier, e.g. did:key:z6Mk….
        did: String,
    },
    /// Move this organization to a new key: writes it to key.next.pem
    /// (0600; a pending one is reused) and proposes the rotation through the
    /// running node. Once a quorum commits it, the node restarts itself
    /// under the new key; the old one is kept as key.retired-<ms>.pem.
    /// Grants name the member, not the key, so they carry over.
    Rotate {
        #[command(flatten)]
        home: HomeArg,
        /// Wait until the node runs under the new key (at most 60 s).
        #[arg(long)]
        wait: bool,
    },
}

pub(crate) fn default_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".quorate")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print as clap renders them.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's first line names the bad argument, or is
            // followed by the indented list of the missing ones.
            let rendered = e.render().to_string();
            let mut lines = rendered.lines();
            let mut line = lines.next().unwrap_or("invalid arguments").to_owned();
            for more in lines.take_while(|l| l.starts_with("  ")) {
                line.push(' ');
                line.push_str(more.trim());
            }
            eprintln!("{line} (see `quorate --help`)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Proposal(command) => proposals::proposal(command)?,
        Command::Policy(command) => governance::policy(command)?,
        Command::Grant(command) => api::grant(command)?,
        Command::Member(command) => api::member(command)?,
        Command::Audit(command) => api::audit(command)?,
        Command::Data(command) => api::data(command)?,
        Command::Peer(command) => api::peer(command)?,
        Command::Access(command) => sharing::access(command)?,
        Command::Catalog(command) => sharing::catalog(command)?,
        Command::Token(command) => tokens::run(command)?,
        Command::Tls(command) => tls::run(command)?,
        Command::Testnet(command) => testnet::run(command)?,
        Command::Node(NodeCommand::Run { home }) => {
            // Agreement and the network run on threads of their own; the
            // shared workers (members' data, the local API) yield to them.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .on_thread_start(quorate_node::run::lower_shared_worker_priority)
                .build()
                .context("cannot start the async runtime")?;
            let (stopped, lock) = runtime.block_on(run_node(NodeHome::new(home.home)))?;
            // Every task (and with them the listeners, the store and the
            // audit writer's last batch) ends with the runtime, before the
            // home is free for another process.
            runtime.shutdown_timeout(std::time::Duration::from_secs(10));
            drop(lock);
            let stopped = stopped?;
            if let quorate_node::agreement::driver::Stopped::KeyRotated { did } = stopped {
                // The same command starts afresh in this process, under
                // the new key.
                eprintln!("key rotated to {did}: starting again under it");
                use std::os::unix::process::CommandExt as _;
                let exe = std::env::current_exe().context("cannot find the quorate binary")?;
                let error = std::process::Command::new(exe)
                    .args(std::env::args_os().skip(1))
                    .exec();
                anyhow::bail!("cannot start again after the key rotation: {error}");
            }
        }
        Command::Node(NodeCommand::Reload { home }) => upstreams::reload(home)?,
        Command::Node(NodeCommand::Upstreams { home }) => upstreams::show(home)?,
        Command::Node(NodeCommand::Init {
            home,
            name,
            api_port,
            p2p_port,
            gateway_port,
            gateway_hosts,
            force,
        }) => {
            let home = NodeHome::new(home.home);
            let report = home.init(&InitOptions {
                name: &name,
                api_port,
                p2p_port,
                gateway_port,
                gateway_hosts: &gateway_hosts,
                force,
            })?;
            if report.kept_existing_key {
                println!("kept the existing key in {}", home.key_path().display());
            }
            if report.kept_certificate {
                println!(
                    "kept the existing gateway certificate in {}{}",
                    home.root().join("tls").display(),
                    if gateway_hosts.is_empty() {
                        ""
                    } else {
                        " (--gateway-host does not change it: `quorate tls issue` does)"
                    }
                );
            }
            println!("initialized {} in {}", name, home.root().display());
            println!("did:        {}", report.did);
            println!("key:        {} (0600)", home.key_path().display());
            println!("config:     {}", home.config_path().display());
            println!(
                "endorsing:  {} (which proposals this node endorses on its own)",
                home.endorsement_policy_path().display()
            );
            println!("admin token {} (0600)", home.admin_token_path().display());
            println!(
                "gateway:    https://127.0.0.1:{gateway_port} (TLS; clients trust {})",
                home.root()
                    .join(quorate_node::home::tls::HOME_CA_FILE)
                    .display()
            );
        }
        Command::Did(DidCommand::Show { home, did_only }) => {
            let did = NodeHome::new(home.home).load_key()?.did();
            println!("{did}");
            if !did_only {
                print_document(&did)?;
            }
        }
        Command::Did(DidCommand::Resolve { did }) => {
            let did: Did = did
                .trim()
                .parse()
                .with_context(|| format!("cannot resolve {did:?}"))?;
            print_document(&did)?;
        }
        Command::Did(DidCommand::Rotate { home, wait }) => api::rotate(home, wait)?,
        Command::Ledger(LedgerCommand::Export { home, out }) => {
            let ledger = open_home_ledger(home.home)?;
            let tmp = out.with_extension("partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            ledger.export(&mut writer)?;
            let file = writer.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &out)?;
            let tip = ledger.chain().map(|c| c.tip().height).unwrap_or(0);
            println!("exported blocks 0..={tip} to {}", out.display());
        }
        Command::Ledger(LedgerCommand::Compact { home }) => {
            let home = NodeHome::new(home.home);
            let path = home_ledger_path(&home)?;
            // The home lock: a running node holds it.
            let _lock = quorate_node::home::lock::HomeLock::acquire(home.root())
                .context("the node must be stopped to compact its ledger")?;
            let (before, after) = quorate_ledger::store::Store::compact_file(&path)
                .with_context(|| format!("cannot compact {}", path.display()))?;
            println!(
                "compacted {}: {before} bytes -> {after} bytes",
                path.display()
            );
        }
        Command::Ledger(LedgerCommand::Verify {
            file,
            home,
            genesis,
        }) => {
            let trusted: Option<quorate_ledger::hash::Hash> = genesis
                .map(|g| {
                    g.parse()
                        .map_err(|_| anyhow::anyhow!("{g:?} is not a hash (64 hex digits)"))
                })
                .transpose()?;
            let (chain, entries) = match (file, home) {
                (Some(file), _) => {
                    let input = std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?;
                    let chain = quorate_ledger::export::verify(std::io::BufReader::new(input))
                        .map_err(|e| anyhow::anyhow!("FAILED: {e}"))?;
                    (chain, None)
                }
                (None, Some(home)) => {
                    let ledger = open_home_ledger(home)?;
                    let summary = ledger
                        .verify()
                        .map_err(|e| anyhow::anyhow!("FAILED: {e}"))?;
                    (summary.chain, Some(summary.entries))
                }
                (None, None) => anyhow::bail!("give an export FILE or --home DIR"),
            };
            // A valid chain is not necessarily the one meant: pin its start.
            if let Some(expected) = trusted
                && chain.genesis_hash() != expected
            {
                anyhow::bail!(
                    "FAILED: genesis hash {} is not the trusted {expected}",
                    chain.genesis_hash()
                );
            }
            print_summary(&chain, entries)?;
            println!(
                "OK: every block, certificate, endorsement and state root verifies from genesis"
            );
        }
    }
    Ok(())
}

/// Longest pause a client may take while sending a request body.
const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the node until it stops; returns why (or how it failed), and the
/// home's lock, to be released once every task has ended.
async fn run_node(
    home: NodeHome,
) -> anyhow::Result<(
    anyhow::Result<quorate_node::agreement::driver::Stopped>,
    quorate_node::home::lock::HomeLock,
)> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var_os("QUORATE_LOG_JSON").is_some() {
        builder.json().init();
    } else {
        builder.init();
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let on_signal = stop.clone();
    tokio::spawn(async move {
        quorate_node::run::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = on_signal.send(true);
    });

    let config = home.load_config()?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the local API", config.api.listen))?;
    // The gateway's certificate is loaded before anything starts, so a
    // node with a bad one stops at once, saying which file.
    let gateway_listener = match config.gateway.listen {
        None => {
            tracing::warn!(
                "no [gateway] listen in the config: members reach this node over libp2p only (a home made before the gateway had a listener of its own: add one, see docs/config.example.toml)"
            );
            None
        }
        Some(address) => {
            let tls =
                quorate_node::home::tls::server_config(&config.gateway.tls.files(home.root()))
                    .context("cannot serve the gateway over TLS ([gateway.tls])")?;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} for the gateway"))?;
            Some((listener, tokio_rustls::TlsAcceptor::from(tls)))
        }
    };
    let mut node = quorate_node::run::start(&home, shutdown()).await?;
    let gateway_http = node
        .gateway_http
        .take()
        .context("the node's gateway settings were already taken")?;
    // The admin routes and the gateway each wait for a slot of their own
    // budget, so one cannot starve the other or the health probes; a
    // client that stops sending its body is cut off.
    let limits = quorate_api::local::Limits {
        budgets: quorate_api::local::Budgets {
            admin: config.api.concurrency.max(1),
            gateway: config.gateway.concurrency.max(1),
        },
        object_bytes_max: config.gateway.object_bytes_max,
    };
    let body_timeout = || tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_IDLE_TIMEOUT);
    let router = quorate_api::local::router(node.local.clone(), limits).layer(body_timeout());
    tracing::info!(address = %config.api.listen, "local API listening");
    let api = tokio::spawn(quorate_api::serve::serve(
        listener,
        router,
        config.api.connection_limits(),
        None,
        shutdown(),
    ));
    let gateway = gateway_listener.map(|(listener, acceptor)| {
        let router = quorate_api::local::gateway_router(node.local.clone(), gateway_http, limits)
            .layer(body_timeout());
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "gateway listening (TLS)");
        }
        tokio::spawn(quorate_api::serve::serve(
            listener,
            router,
            config.gateway.connection_limits(),
            Some(acceptor),
            shutdown(),
        ))
    });
    let result = node.task.await.context("the node task panicked")?;
    // The driver stopped (shutdown or failure): stop the listeners too.
    let _ = stop.send(true);
    let _ = api.await;
    if let Some(gateway) = gateway {
        let _ = gateway.await;
    }
    Ok((result.map_err(anyhow::Error::from), node.lock))
}

/// The ledger file of `home`, which must exist.
fn home_ledger_path(home: &NodeHome) -> anyhow::Result<PathBuf> {
    let config = home.load_config()?;
    let path = home.ledger_path(&config);
    anyhow::ensure!(
        path.exists(),
        "{} has no ledger yet ({} is missing)",
        home.root().display(),
        path.display()
    );
    Ok(path)
}

fn open_home_ledger(home: PathBuf) -> anyhow::Result<quorate_ledger::ledger::Ledger> {
    let path = home_ledger_path(&NodeHome::new(home))?;
    quorate_ledger::ledger::Ledger::open(&path)
        .with_context(|| format!("cannot open the ledger {}", path.display()))
}

fn print_summary(
    chain: &quorate_ledger::chain::ChainState,
    entries: Option<u64>,
) -> anyhow::Result<()> {
    let state = chain.state();
    // In force at the tip's time: active on the ledger and within its
    // window. Reading every grant is fine here: this is an offline tool.
    let tip_time = chain.tip().time;
    let (mut in_force, mut expired, mut not_yet) = (0usize, 0usize, 0usize);
    state
        .visit_grants(None, &mut |_, grant| {
            if grant.status == quorate_contracts::GrantStatus::Active {
                if tip_time >= grant.terms.not_after {
                    expired += 1;
                } else if tip_time < grant.terms.not_before {
                    not_yet += 1;
                } else {
                    in_force += 1;
                }
            }
            std::ops::ControlFlow::Continue(())
        })
        .context("cannot read the ledger's grants")?;
    println!("chain:         {}", chain.chain_id());
    println!("genesis:       {}", chain.genesis_hash());
    println!("height:        {}", chain.tip().height);
    println!("tip:           {}", chain.tip().hash);
    if let Some(entries) = entries {
        println!("entries:       {entries}");
    }
    println!(
        "members:       {} (epoch {})",
        state.members.len(),
        state.epoch
    );
    for member in state.members.values() {
        println!("  {:<12} {}", member.name, member.did);
    }
    println!(
        "grants:        {in_force} active, {expired} expired, {not_yet} not yet valid (at the tip's time, {} ms), {} in all",
        tip_time.0,
        state.grant_counts().total
    );
    Ok(())
}

fn print_document(did: &Did) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&did.document())?);
    Ok(())
}
