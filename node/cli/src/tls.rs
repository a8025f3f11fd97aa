//! `quorate tls`: the certificates of the gateway's TLS listener.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use quorate_node::home::NodeHome;
use quorate_node::home::tls::{self, Authority};

use crate::HomeArg;

#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Create a certificate authority in DIR (ca.crt, and ca.key at 0600)
    /// to issue gateway and client certificates from. A testnet makes one
    /// for all its nodes; an organization may keep its own.
    Ca {
        /// The directory to create it in.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The authority's name.
        #[arg(long, default_value = "Quorate gateway authority")]
        name: String,
    },
    /// Give a node home a gateway certificate from the authority in DIR,
    /// for the loopback names and each --host (replacing tls/gateway.crt,
    /// tls/gateway.key and tls/ca.crt). The node serves it from its next
    /// start.
    Issue {
        #[command(flatten)]
        home: HomeArg,
        /// The authority's directory (from `quorate tls ca`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// A host name or IP address members reach the gateway by.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
    },
    /// Issue a certificate from the authority in DIR for something other
    /// than a node's gateway: a client's, for gateways that require one
    /// (`[gateway.tls] client_ca`), or with --host a server's (an identity
    /// provider or upstream on the testnet). Writes NAME.crt and NAME.key
    /// (0600) into --out.
    Cert {
        /// The authority's directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The certificate's common name, and its files' name.
        #[arg(long)]
        name: String,
        /// A server's host name or IP address (makes a server certificate).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Where to write the certificate and key.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub(crate) fn run(command: TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::Ca { dir, name } => {
            Authority::create(&dir, &name)?;
            println!("authority:  {}", dir.join(tls::CA_CERT_FILE).display());
            println!(
                "key:        {} (0600)",
                dir.join(tls::CA_KEY_FILE).display()
            );
        }
        TlsCommand::Issue { home, ca, hosts } => {
            let home = NodeHome::new(home.home);
            let config = home.load_config()?;
            let authority = Authority::load(&ca)?;
            let mut names = tls::loopback_names();
            names.extend(hosts);
            let issued = authority.issue_server(&config.node.name, &names)?;
            tls::install(home.root(), &issued, authority.cert_pem())?;
            println!(
                "certificate: {} for {}",
                home.root().join(tls::GATEWAY_CERT_FILE).display(),
                names.join(", ")
            );
            println!(
                "trusted by:  {} (give it to members' clients)",
                home.root().join(tls::HOME_CA_FILE).display()
            );
            if quorate_testnet::launch::running_pid(home.root()).is_some() {
                println!("the node is running: restart it to serve the new certificate");
            }
        }
        TlsCommand::Cert {
            ca,
            name,
            hosts,
            out,
        } => {
            let plain = !name.is_empty()
                && name.len() <= 64
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            anyhow::ensure!(
                plain,
                "--name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.' (it names the files)"
            );
            let authority = Authority::load(&ca)?;
            let issued = if hosts.is_empty() {
                authority.issue_client(&name)?
            } else {
                authority.issue_server(&name, &hosts)?
            };
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let cert = out.join(format!("{name}.crt"));
            let key = out.join(format!("{name}.key"));
            quorate_did::keyfile::write_secret_file(&key, issued.key_pem.as_bytes())?;
            std::fs::write(&cert, issued.chain_pem.as_bytes())
                .with_context(|| format!("cannot write {}", cert.display()))?;
            println!("certificate: {}", cert.display());
            println!("key:         {} (0600)", key.display());
        }
    }
    Ok(())
}
