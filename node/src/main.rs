//! `quorate`: the command-line interface of a Quorate node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use quorate_did::Did;
use quorate_node::config::{DEFAULT_API_PORT, DEFAULT_P2P_PORT};
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
}

#[derive(Debug, Args)]
struct HomeArg {
    /// The node home directory.
    #[arg(long, env = "QUORATE_HOME", value_name = "DIR", default_value_os_t = default_home())]
    home: PathBuf,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Create a node home: an Ed25519 key (key.pem, 0600), an annotated
    /// config.toml, an admin token (admin.token, 0600) and a data directory.
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
        /// Rewrite the config and admin token of an existing home. The key is
        /// never replaced.
        #[arg(long)]
        force: bool,
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
}

fn default_home() -> PathBuf {
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
            // One line: clap's first line names the bad argument.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see `quorate --help`)");
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
        Command::Node(NodeCommand::Init {
            home,
            name,
            api_port,
            p2p_port,
            force,
        }) => {
            let home = NodeHome::new(home.home);
            let report = home.init(&InitOptions {
                name: &name,
                api_port,
                p2p_port,
                force,
            })?;
            if report.kept_existing_key {
                println!("kept the existing key in {}", home.key_path().display());
            }
            println!("initialized {} in {}", name, home.root().display());
            println!("did:        {}", report.did);
            println!("key:        {} (0600)", home.key_path().display());
            println!("config:     {}", home.config_path().display());
            println!("admin token {} (0600)", home.admin_token_path().display());
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
    }
    Ok(())
}

fn print_document(did: &Did) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&did.document())?);
    Ok(())
}
