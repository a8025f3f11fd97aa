//! The node's configuration file (`config.toml` in the node home).
//!
//! One typed tree, loaded once, unknown fields refused so a typo is an error
//! rather than a silently ignored setting. `quorate node init` writes it from
//! [`TEMPLATE`], an annotated file a person can read and edit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::home::duration::HumanDuration;

/// The annotated template `quorate node init` renders. Placeholders in
/// braces are filled by [`render`].
pub const TEMPLATE: &str = include_str!("config.template.toml");

/// Largest config file we read; a config is a few hundred bytes.
pub const CONFIG_BYTES_MAX: u64 = 64 * 1024;

/// Default port of the local REST API.
pub const DEFAULT_API_PORT: u16 = 7700;
/// Default TCP port of the peer-to-peer listener.
pub const DEFAULT_P2P_PORT: u16 = 7701;
/// Default port of the gateway's TLS listener.
pub const DEFAULT_GATEWAY_PORT: u16 = 7702;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This organization.
    pub node: NodeSection,
    /// The local REST API and gateway.
    pub api: ApiSection,
    /// The peer-to-peer network.
    pub p2p: P2pSection,
    /// Agreement and endorsement.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// The ledger's history.
    #[serde(default)]
    pub ledger: LedgerSection,
    /// The gateway's limits.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// Resource prefixes served by existing HTTP services.
    #[serde(default)]
    pub upstream: Vec<crate::gateway::upstream::UpstreamSection>,
    /// Who may call the local API besides the home's tokens.
    #[serde(default)]
    pub auth: crate::oidc::AuthSection,
}

/// `[gateway]`: what every inbound request from a member is held to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// How far a signature's `created` may be from this node's clock; the
    /// replay window is as long.
    pub signature_skew: HumanDuration,
    /// Refuse (503) every peer request when the last commit is older than
    /// this: a node cut off from the consortium may have missed a
    /// revocation, so it fails closed.
    pub max_ledger_age: HumanDuration,
    /// Requests per second each member may make (a token bucket).
    pub member_rate: u32,
    /// Burst above `member_rate`.
    pub member_burst: u32,
    /// Largest object accepted by a put (bytes).
    pub object_bytes_max: u64,
    /// Largest object a member may write through the gateway under a
    /// `write` grant (bytes; never more than `object_bytes_max`).
    pub write_bytes_max: u64,
    /// Peer requests served at once; more wait their turn.
    pub concurrency: usize,
    /// The `host:port` members address this gateway by (the authority of
    /// their signed requests); a request for any other is refused. Absent:
    /// `listen`.
    pub authority: Option<String>,
    /// The listener for members' signed requests (`/gateway/…`, and the
    /// health probes), over TLS. Absent: members reach this node over
    /// libp2p only.
    pub listen: Option<SocketAddr>,
    /// The listener's certificate, key and optional client authority.
    pub tls: TlsSection,
    /// Connections open at once on the listener; more are answered 503.
    pub connections_max: usize,
    /// Connections open at once from one IP address.
    pub connections_per_address_max: usize,
    /// Time a client has for the TLS handshake, and then for each
    /// request's head (so also the keep-alive idle timeout).
    pub header_read_timeout: HumanDuration,
    /// Requests one connection carries before the node closes it.
    pub requests_per_connection_max: u64,
    /// The audit log's size at which it moves into a segment (`audit/`
    /// beside it) and the chain goes on in a new file; at least 64 KiB.
    pub audit_segment_bytes: u64,
}

/// Smallest audit segment: a few records of the largest size.
pub const AUDIT_SEGMENT_BYTES_MIN: u64 = 64 * 1024;

/// `[gateway.tls]`: paths relative to the node home unless absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// The certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM, readable by the owner only).
    pub key: PathBuf,
    /// When set, a client must also present a certificate issued by an
    /// authority in this PEM file (mutual TLS), besides signing each
    /// request.
    pub client_ca: Option<PathBuf>,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert: PathBuf::from(crate::home::tls::GATEWAY_CERT_FILE),
            key: PathBuf::from(crate::home::tls::GATEWAY_KEY_FILE),
            client_ca: None,
        }
    }
}

impl TlsSection {
    /// The files, resolved against `home`.
    pub fn files(&self, home: &Path) -> crate::home::tls::ServerFiles {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                home.join(p)
            }
        };
        crate::home::tls::ServerFiles {
            cert: resolve(&self.cert),
            key: resolve(&self.key),
            client_ca: self.client_ca.as_deref().map(resolve),
        }
    }
}

impl GatewaySection {
    /// The listener's connection limits.
    pub fn connection_limits(&self) -> quorate_api::serve::ConnectionLimits {
        connection_limits(
            self.connections_max,
            self.connections_per_address_max,
            &self.header_read_timeout,
            self.requests_per_connection_max,
        )
    }
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            signature_skew: HumanDuration(Duration::from_secs(60)),
            max_ledger_age: HumanDuration(Duration::from_secs(30)),
            member_rate: 1000,
            member_burst: 2000,
            object_bytes_max: 1 << 30,
            write_bytes_max: 1 << 30,
            concurrency: 256,
            authority: None,
            listen: None,
            tls: TlsSection::default(),
            connections_max: defaults::connections_max(),
            connections_per_address_max: defaults::connections_per_address_max(),
            header_read_timeout: defaults::header_read_timeout(),
            requests_per_connection_max: defaults::requests_per_connection_max(),
            audit_segment_bytes: 256 << 20,
        }
    }
}

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// How far back (block time) past states stay provable; older state
    /// tree versions are pruned. Blocks are never pruned.
    pub state_history: HumanDuration,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            state_history: HumanDuration(Duration::from_secs(90 * 24 * 3_600)),
        }
    }
}

/// `[consensus]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// `policy`: the home's `endorsement-policy.toml` decides (the careful
    /// defaults without one); `auto`: endorse every proposal the contract
    /// rules accept; `manual`: ask a person for every proposal.
    pub approval: crate::agreement::driver::ApprovalPolicy,
    /// With nothing to order, commit an empty block this often.
    pub heartbeat: HumanDuration,
    /// How long to wait for a round's proposal (grows by `timeout_delta`
    /// per round).
    pub timeout_propose: HumanDuration,
    /// How long to wait for more votes after a quorum of any.
    pub timeout_vote: HumanDuration,
    /// Added to each timeout per round.
    pub timeout_delta: HumanDuration,
    /// How often to compare tips with peers and catch up.
    pub sync_interval: HumanDuration,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        Self {
            approval: crate::agreement::driver::ApprovalPolicy::Policy,
            heartbeat: HumanDuration(Duration::from_secs(1)),
            timeout_propose: HumanDuration(Duration::from_secs(3)),
            timeout_vote: HumanDuration(Duration::from_secs(1)),
            timeout_delta: HumanDuration(Duration::from_millis(500)),
            sync_interval: HumanDuration(Duration::from_secs(2)),
        }
    }
}

impl ConsensusSection {
    /// The agreement machine's timeouts for `chain_id`.
    pub fn machine_config(&self, chain_id: &str) -> quorate_ledger::consensus::Config {
        let ms = |d: &HumanDuration| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX);
        quorate_ledger::consensus::Config {
            chain_id: chain_id.to_owned(),
            propose_ms: ms(&self.timeout_propose),
            prevote_ms: ms(&self.timeout_vote),
            precommit_ms: ms(&self.timeout_vote),
            delta_ms: ms(&self.timeout_delta),
        }
    }
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The organization's short name (lowercase letters, digits, `-`).
    pub name: String,
    /// Where the ledger and objects live; relative paths are relative to the
    /// node home.
    pub data_dir: PathBuf,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address the local API binds to. Keep it on loopback unless a reverse
    /// proxy with TLS stands in front.
    pub listen: SocketAddr,
    /// Connections open at once; more are answered 503 and closed.
    #[serde(default = "defaults::connections_max")]
    pub connections_max: usize,
    /// Connections open at once from one IP address.
    #[serde(default = "defaults::connections_per_address_max")]
    pub connections_per_address_max: usize,
    /// Time a client has to send a request's head, from the connection's
    /// start or the end of the previous answer (so also the keep-alive
    /// idle timeout).
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// Requests one connection carries before the node closes it.
    #[serde(default = "defaults::requests_per_connection_max")]
    pub requests_per_connection_max: u64,
    /// Admin-API requests served at once (the gateway has its own budget,
    /// `[gateway] concurrency`); more wait for a slot.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
}

impl ApiSection {
    /// The listener's connection limits.
    pub fn connection_limits(&self) -> quorate_api::serve::ConnectionLimits {
        connection_limits(
            self.connections_max,
            self.connections_per_address_max,
            &self.header_read_timeout,
            self.requests_per_connection_max,
        )
    }
}

/// A listener's limits, each at least its smallest sensible value.
fn connection_limits(
    connections_max: usize,
    connections_per_address_max: usize,
    header_read_timeout: &HumanDuration,
    requests_per_connection_max: u64,
) -> quorate_api::serve::ConnectionLimits {
    quorate_api::serve::ConnectionLimits {
        connections_max: connections_max.max(1),
        connections_per_address_max: connections_per_address_max.max(1),
        header_read_timeout: header_read_timeout.0.max(Duration::from_millis(100)),
        requests_per_connection_max: requests_per_connection_max.max(1),
    }
}

mod defaults {
    use super::*;
    pub(super) fn connections_max() -> usize {
        1024
    }
    pub(super) fn connections_per_address_max() -> usize {
        256
    }
    pub(super) fn header_read_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub(super) fn requests_per_connection_max() -> u64 {
        10_000
    }
    pub(super) fn concurrency() -> usize {
        quorate_api::local::ADMIN_CONCURRENCY_DEFAULT
    }
}

/// `[p2p]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    /// libp2p multiaddresses to listen on.
    pub listen: Vec<String>,
    /// Peers to dial at start (multiaddresses ending in `/p2p/<peer id>`).
    #[serde(default)]
    pub bootstrap: Vec<String>,
}

/// Values that fill the template.
#[derive(Debug, Clone)]
pub struct TemplateValues<'a> {
    /// `[node] name`.
    pub name: &'a str,
    /// `[api] listen` port on 127.0.0.1.
    pub api_port: u16,
    /// `[p2p] listen` TCP port on 127.0.0.1.
    pub p2p_port: u16,
    /// `[gateway] listen` port on 127.0.0.1.
    pub gateway_port: u16,
}

/// Renders [`TEMPLATE`] with `values`.
pub fn render(values: &TemplateValues<'_>) -> String {
    TEMPLATE
        .replace("{name}", values.name)
        .replace("{api_port}", &values.api_port.to_string())
        .replace("{p2p_port}", &values.p2p_port.to_string())
        .replace("{gateway_port}", &values.gateway_port.to_string())
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than any config.
    #[error("config {} is {len} bytes, over the {CONFIG_BYTES_MAX}-byte limit", path.display())]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The file is not valid TOML for this schema.
    #[error("config {}: {message}", path.display())]
    Parse {
        /// The path.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
}

impl Config {
    /// Parses a config from TOML text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Loads and parses the config at `path`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let io_err = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io_err)?.len();
        if len > CONFIG_BYTES_MAX {
            return Err(LoadError::TooLarge {
                path: path.to_owned(),
                len,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io_err)?;
        Self::parse(&text).map_err(|e| LoadError::Parse {
            path: path.to_owned(),
            message: e.to_string().replace('\n', " "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_template_parses_with_the_values_given() {
        let text = render(&TemplateValues {
            name: "org-a",
            api_port: 8100,
            p2p_port: 8101,
            gateway_port: 8102,
        });
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.node.name, "org-a");
        assert_eq!(config.api.listen, "127.0.0.1:8100".parse().unwrap());
        assert_eq!(
            config.p2p.listen,
            vec!["/ip4/127.0.0.1/tcp/8101".to_owned()]
        );
        assert!(config.p2p.bootstrap.is_empty());
        assert_eq!(
            config.gateway.listen,
            Some("127.0.0.1:8102".parse().unwrap())
        );
        assert_eq!(config.gateway.tls, TlsSection::default());
        assert!(!text.contains('{'), "unfilled placeholder in {text}");
    }

    fn limits_default() -> quorate_api::serve::ConnectionLimits {
        quorate_api::serve::ConnectionLimits::default()
    }

    #[test]
    fn shipped_example_config_parses() {
        let text = include_str!("../../../docs/config.example.toml");
        let config = Config::parse(text).unwrap();
        assert_eq!(config.node.name, "org-a");
        // The documented values are the defaults.
        assert_eq!(config.consensus, ConsensusSection::default());
        // Besides the listener, which the example sets.
        assert_eq!(
            config.gateway,
            GatewaySection {
                listen: config.gateway.listen,
                authority: config.gateway.authority.clone(),
                tls: TlsSection {
                    client_ca: None,
                    ..config.gateway.tls.clone()
                },
                ..GatewaySection::default()
            }
        );
        // ... which is a deployment's: exposed, under its public name.
        assert_eq!(config.gateway.listen, Some("0.0.0.0:7702".parse().unwrap()));
        assert_eq!(
            config.gateway.authority.as_deref(),
            Some("gateway.org-a.example:7702")
        );
        assert!(config.gateway.tls.cert.is_absolute());
        assert_eq!(config.gateway.connection_limits(), limits_default());
        assert_eq!(config.ledger, LedgerSection::default());
        assert_eq!(config.api.connection_limits(), limits_default());
    }

    #[test]
    fn the_commented_single_sign_on_example_is_a_valid_section() {
        let text = include_str!("../../../docs/config.example.toml");
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# [auth.oidc]"))
            .map(|l| l.trim_start_matches('#').trim_start())
            .filter(|l| !l.starts_with("Sign-in") && !l.starts_with("provider must"))
            .collect();
        #[derive(Deserialize)]
        struct Only {
            auth: crate::oidc::AuthSection,
        }
        let only: Only = toml::from_str(&block.join("\n")).unwrap();
        let oidc = only.auth.oidc.unwrap();
        assert_eq!(
            oidc.roles["quorate-approvers"],
            [quorate_api::auth::Role::Approver]
        );
        // Its jwks_ca, relative to the home, holds an authority.
        let home = tempfile::tempdir().unwrap();
        let ca = crate::home::tls::Authority::generate("idp").unwrap();
        std::fs::write(home.path().join("idp-ca.crt"), ca.cert_pem()).unwrap();
        let verifier = crate::oidc::OidcVerifier::new(&oidc, home.path()).unwrap();
        let client = verifier.console_sign_in().unwrap();
        assert_eq!(client.token_origin, "https://idp.org-a.example");
        // And the template carries the same example.
        assert!(TEMPLATE.contains(&text[text.find("# Single sign-on").unwrap()..]));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = render(&TemplateValues {
            name: "org-a",
            api_port: 1,
            p2p_port: 2,
            gateway_port: 3,
        })
        .replace("[api]", "[api]\nlisten_typo = 3");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("listen_typo"), "{err}");
    }
}
