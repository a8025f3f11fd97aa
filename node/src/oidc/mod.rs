//! Single sign-on: bearer JWTs from the organization's identity provider,
//! mapped to local API roles (`[auth.oidc]` in the config).
//!
//! A JWT is accepted only if its header's `alg` is one of the accepted
//! algorithms (EdDSA, ES256, RS256; `none` never), it names a key of the
//! provider's JWKS made for that algorithm, its signature verifies, and
//! its claims hold: `iss` is the issuer, `aud` names the audience, `exp`
//! and `nbf` hold within the leeway, `sub` is present. The principal is
//! `oidc:<sub>`, with the roles its `roles_claim` values map to.
//!
//! The JWKS comes from a file or an `https://` URL (its certificate
//! checked against `jwks_ca`, or the system's authorities; `http://` on
//! this machine only), read at start and again every `jwks_refresh`, and
//! soon (at most once per
//! [`JWKS_REFETCH_MIN`]) after a token names a key it does not hold, so a
//! provider's key rotation is picked up. A failed read keeps the keys held.
//! Verification reads memory only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use quorate_api::auth::{Principal, Role, Roles, Unauthenticated};
use serde::{Deserialize, Serialize};

use crate::home::duration::HumanDuration;
use crate::home::jwt_revocations::JwtRevocations;

/// Largest JWT read.
pub const JWT_BYTES_MAX: usize = 8 * 1024;
/// Largest JWKS document read.
pub const JWKS_BYTES_MAX: usize = 64 * 1024;
/// Most keys kept from a JWKS.
pub const JWKS_KEYS_MAX: usize = 32;
/// Longest leeway on `exp` and `nbf`.
pub const LEEWAY_MAX: Duration = Duration::from_secs(300);
/// Shortest interval between two reads of the JWKS.
pub const JWKS_REFETCH_MIN: Duration = Duration::from_secs(30);
/// Longest wait for the JWKS URL's answer.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `sub` accepted (it names the principal in the audit log).
pub const SUBJECT_BYTES_MAX: usize = 255;
/// Keys not read again for this long are no longer trusted (a provider
/// that cannot be reached may have withdrawn them).
pub const KEYS_STALE_MAX: Duration = Duration::from_secs(24 * 3600);
/// Most claim values mapped to roles.
pub const ROLE_MAPPINGS_MAX: usize = 256;

/// `[auth]`: who may call the local API besides the tokens of the home.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Single sign-on with the organization's identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSection>,
}

/// `[auth.oidc]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must name.
    pub audience: String,
    /// The provider's JWKS as a file (relative to the node home)...
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// ... or as an `https://` URL (or an `http://` one on this machine,
    /// a loopback host).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The authorities (a PEM file, relative to the node home) an
    /// `https://` `jwks_url`'s certificate must chain to. Absent: the
    /// system's trusted authorities.
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// The algorithms accepted, from EdDSA, ES256 and RS256.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim whose values (a string or an array of strings) name roles.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// What each value of the roles claim gives: `"quorate-approvers" =
    /// ["approver"]`. Values not listed give nothing.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<Role>>,
    /// How far `exp` and `nbf` may be off (at most 5 minutes).
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    /// How often the JWKS is read again.
    #[serde(default = "default_refresh")]
    pub jwks_refresh: HumanDuration,
    /// The console's client id at the provider, for sign-in through it
    /// (the authorization code flow with PKCE); its ID tokens name it as
    /// their `aud`, which is accepted beside `audience`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Where the browser signs in (with `client_id`).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where the console trades the code for an ID token (with
    /// `client_id`; the provider must allow the console's origin, CORS).
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

fn default_algorithms() -> Vec<String> {
    ["EdDSA", "ES256", "RS256"].map(str::to_owned).to_vec()
}

fn default_roles_claim() -> String {
    "groups".to_owned()
}

fn default_leeway() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

/// Why `[auth.oidc]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OidcConfigError {
    /// Neither or both of `jwks_file` and `jwks_url`.
    #[error("[auth.oidc] needs exactly one of jwks_file and jwks_url")]
    JwksSource,
    /// A URL that is neither `https://host[:port]/path` nor `http://` on
    /// this machine.
    #[error(
        "[auth.oidc] jwks_url {0:?} is neither an https:// URL nor an http:// URL of this machine (127.0.0.1, [::1] or localhost): keys fetched in clear from elsewhere could be swapped on the way"
    )]
    Url(String),
    /// The authorities for an `https://` JWKS cannot be read, or there are
    /// none.
    #[error("[auth.oidc] the authorities for jwks_url: {0}")]
    JwksAuthorities(String),
    /// An algorithm outside the three.
    #[error("[auth.oidc] algorithm {0:?} is not accepted (use EdDSA, ES256 or RS256)")]
    Algorithm(String),
    /// No algorithm.
    #[error("[auth.oidc] algorithms is empty")]
    NoAlgorithm,
    /// An empty issuer, audience or roles claim.
    #[error("[auth.oidc] {0} is empty")]
    Empty(&'static str),
    /// A leeway over [`LEEWAY_MAX`].
    #[error("[auth.oidc] leeway is at most 5m")]
    Leeway,
    /// A refresh interval under [`JWKS_REFETCH_MIN`].
    #[error("[auth.oidc] jwks_refresh is at least 30s")]
    Refresh,
    /// `client_id` without both endpoints, or an endpoint that is not an
    /// absolute http(s) URL.
    #[error(
        "[auth.oidc] sign-in needs client_id, authorization_endpoint and token_endpoint, each endpoint an http(s) URL: {0}"
    )]
    SignIn(String),
    /// More than [`ROLE_MAPPINGS_MAX`] mapped values.
    #[error("[auth.oidc] roles maps more than {ROLE_MAPPINGS_MAX} values")]
    TooManyMappings,
    /// The JWKS file cannot be read or holds no usable key.
    #[error("[auth.oidc] jwks_file {}: {reason}", path.display())]
    JwksFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Where the JWKS comes from.
enum JwksSource {
    File(PathBuf),
    Url(axum::http::Uri, Box<JwksClient>),
}

/// A client for the JWKS URL, over TLS when it is `https://`, verifying
/// the provider's certificate against the configured authorities.
type JwksClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<axum::body::Bytes>,
>;

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Url(uri, _) => f.debug_tuple("Url").field(uri).finish(),
        }
    }
}

/// The client for `jwks_url`: over TLS only, its certificate checked
/// against the authorities in `ca` (a PEM file), or the system's when
/// there is none; for a loopback `http://` URL, plain (no authority
/// needed).
fn jwks_client(ca: Option<&Path>, https: bool) -> Result<JwksClient, OidcConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let fail = |reason: String| OidcConfigError::JwksAuthorities(reason);
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        _ if !https => {}
        Some(path) => {
            let pem = read_bounded(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| fail(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            // Unreadable entries of the system store are skipped, as
            // every TLS client does; an empty store is an error below.
            let found = rustls_native_certs::load_native_certs();
            let _ = roots.add_parsable_certificates(found.certs);
        }
    }
    if https && roots.is_empty() {
        return Err(fail(match ca {
            Some(path) => format!("{} holds no certificate", path.display()),
            None => "the system trusts none (install ca-certificates, or set jwks_ca)".into(),
        }));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let builder = if https {
        builder.https_only()
    } else {
        builder.https_or_http()
    };
    let connector = builder.enable_http1().build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// A key of the JWKS, with the one algorithm it verifies.
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The claims read from an accepted token (the rest validated by the
/// library).
#[derive(Deserialize)]
struct Claims {
    // Optional here so that their absence is reported by the validation
    // (which runs after this is read) as the missing claim it is.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<serde_json::Number>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// Verifies bearer JWTs against the provider's keys.
pub struct OidcVerifier {
    issuer: String,
    audience: String,
    /// Sign-in for the console, if set.
    console: Option<quorate_api::console::OidcClient>,
    algorithms: Vec<Algorithm>,
    roles_claim: String,
    roles: BTreeMap<String, Roles>,
    leeway: Duration,
    refresh: Duration,
    source: JwksSource,
    /// The keys, and when they were read.
    keys: RwLock<(Arc<Vec<Key>>, std::time::Instant)>,
    /// Woken when a token names a key we do not hold.
    unknown_key: tokio::sync::Notify,
    /// Tokens revoked before their expiry.
    revocations: Option<Arc<JwtRevocations>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// Checks the section; reads the JWKS file now (a URL is read by
    /// [`Self::refresh_loop`]).
    pub fn new(section: &OidcSection, home: &Path) -> Result<Self, OidcConfigError> {
        for (what, value) in [
            ("issuer", &section.issuer),
            ("audience", &section.audience),
            ("roles_claim", &section.roles_claim),
        ] {
            if value.is_empty() {
                return Err(OidcConfigError::Empty(what));
            }
        }
        let algorithms = section
            .algorithms
            .iter()
            .map(|name| {
                accepted_algorithm(name).ok_or_else(|| OidcConfigError::Algorithm(name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(OidcConfigError::NoAlgorithm);
        }
        if section.leeway.0 > LEEWAY_MAX {
            return Err(OidcConfigError::Leeway);
        }
        if section.jwks_refresh.0 < JWKS_REFETCH_MIN {
            return Err(OidcConfigError::Refresh);
        }
        if section.roles.len() > ROLE_MAPPINGS_MAX {
            return Err(OidcConfigError::TooManyMappings);
        }
        let source = match (&section.jwks_file, &section.jwks_url) {
            (Some(file), None) => JwksSource::File(home.join(file)),
            (None, Some(url)) => {
                let uri: axum::http::Uri =
                    url.parse().map_err(|_| OidcConfigError::Url(url.clone()))?;
                // Over plain HTTP, anyone on the path could swap the keys:
                // only a loopback host (a local proxy or cache) is trusted.
                let loopback = uri.host().is_some_and(|h| {
                    h == "localhost"
                        || h.trim_matches(['[', ']'])
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                });
                let https = uri.scheme_str() == Some("https")
                    && uri.host().is_some()
                    && !uri.authority().is_some_and(|a| a.as_str().contains('@'));
                if !(https || uri.scheme_str() == Some("http") && loopback) {
                    return Err(OidcConfigError::Url(url.clone()));
                }
                let ca = section.jwks_ca.as_ref().map(|file| home.join(file));
                JwksSource::Url(uri, Box::new(jwks_client(ca.as_deref(), https)?))
            }
            _ => return Err(OidcConfigError::JwksSource),
        };
        let console = console_client(section)?;
        let verifier = Self {
            issuer: section.issuer.clone(),
            audience: section.audience.clone(),
            console,
            algorithms,
            roles_claim: section.roles_claim.clone(),
            roles: section
                .roles
                .iter()
                .map(|(value, roles)| (value.clone(), roles.iter().copied().collect()))
                .collect(),
            leeway: section.leeway.0,
            refresh: section.jwks_refresh.0,
            source,
            keys: RwLock::new((Arc::new(Vec::new()), std::time::Instant::now())),
            unknown_key: tokio::sync::Notify::new(),
            revocations: None,
        };
        if let JwksSource::File(path) = &verifier.source {
            let read = read_bounded(path).and_then(|bytes| verifier.keys_of(&bytes));
            let keys = read.map_err(|reason| OidcConfigError::JwksFile {
                path: path.clone(),
                reason,
            })?;
            if keys.is_empty() {
                return Err(OidcConfigError::JwksFile {
                    path: path.clone(),
                    reason: "no signature key of an accepted algorithm".into(),
                });
            }
            *verifier.keys.write().unwrap_or_else(|e| e.into_inner()) =
                (Arc::new(keys), std::time::Instant::now());
        }
        Ok(verifier)
    }

    /// Refuses, from now on, the tokens `revocations` names.
    pub fn with_revocations(mut self, revocations: Arc<JwtRevocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Who `token` names, if the provider signed it for us, it holds now
    /// and it is not revoked.
    pub fn verify(&self, token: &str) -> Result<Principal, Unauthenticated> {
        let refuse = |why: String| Unauthenticated::Jwt(why);
        if token.len() > JWT_BYTES_MAX {
            return Err(refuse(format!("it is over {JWT_BYTES_MAX} bytes")));
        }
        // The header's `alg` is checked by name first, so that `none` and
        // every algorithm outside the list get the same clear refusal.
        let alg_name = header_alg(token).ok_or_else(|| refuse("it is not a JWT".into()))?;
        let alg = accepted_algorithm(&alg_name)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| {
                refuse(format!(
                    "algorithm {alg_name:?} is not accepted (accepted: {})",
                    self.algorithms
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| refuse(format!("malformed: {e}")))?;
        let (keys, read_at) = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        if read_at.elapsed() > KEYS_STALE_MAX {
            return Err(refuse(
                "the provider's keys could not be read for over a day; see the node's log".into(),
            ));
        }
        let candidates: Vec<&Key> = keys
            .iter()
            .filter(|k| k.alg == alg)
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .collect();
        let key = match candidates.as_slice() {
            [key] => *key,
            [] => {
                self.unknown_key.notify_one();
                return Err(refuse(match &header.kid {
                    Some(kid) => format!("no {alg:?} key {kid:?} in the provider's JWKS"),
                    None => format!("no {alg:?} key in the provider's JWKS"),
                }));
            }
            _ => {
                return Err(refuse(
                    "it names no key (kid) and the JWKS holds several".into(),
                ));
            }
        };
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        match &self.console {
            Some(console) => validation.set_audience(&[&self.audience, &console.client_id]),
            None => validation.set_audience(&[&self.audience]),
        }
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| refuse(self.explain(&e)))?
            .claims;
        let exp = claims
            .exp
            .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)));
        let (Some(sub), Some(exp)) = (claims.sub, exp) else {
            return Err(refuse("it has no sub or exp claim".into()));
        };
        if sub.is_empty() || sub.len() > SUBJECT_BYTES_MAX {
            return Err(refuse(format!(
                "its sub is empty or over {SUBJECT_BYTES_MAX} bytes"
            )));
        }
        if let Some(revocations) = &self.revocations {
            let jti = claims.other.get("jti").and_then(serde_json::Value::as_str);
            let iat = claims
                .other
                .get("iat")
                .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)));
            let now_ms = jsonwebtoken::get_current_timestamp().saturating_mul(1000);
            if let Some(revoked) = revocations.refusing(&sub, jti, iat, now_ms) {
                return Err(refuse(match (&revoked.jti, &revoked.reason) {
                    (Some(_), Some(reason)) => format!("it was revoked on this node ({reason})"),
                    (Some(_), None) => "it was revoked on this node".to_owned(),
                    (None, Some(reason)) => format!(
                        "{sub} was signed out on this node ({reason}): tokens issued until then are refused; sign in again"
                    ),
                    (None, None) => format!(
                        "{sub} was signed out on this node: tokens issued until then are refused; sign in again"
                    ),
                }));
            }
        }
        let values: Vec<&str> = match claims.other.get(&self.roles_claim) {
            Some(serde_json::Value::String(one)) => vec![one.as_str()],
            Some(serde_json::Value::Array(many)) => {
                many.iter().filter_map(serde_json::Value::as_str).collect()
            }
            _ => Vec::new(),
        };
        let roles = values
            .iter()
            .filter_map(|v| self.roles.get(*v))
            .flat_map(|r| r.iter())
            .collect::<Roles>();
        if roles.is_empty() {
            // Refused here, not at each route, so that an organization's
            // every account cannot fill the audit log with refusals.
            return Err(refuse(format!(
                "its {} claim maps to no role of this node ([auth.oidc.roles])",
                self.roles_claim
            )));
        }
        Ok(Principal {
            label: format!("oidc:{sub}"),
            roles,
            expires_ms: Some(exp.saturating_mul(1000)),
        })
    }

    /// What the console needs to offer sign-in through the provider.
    pub fn console_sign_in(&self) -> Option<quorate_api::console::OidcClient> {
        self.console.clone()
    }

    fn explain(&self, error: &jsonwebtoken::errors::Error) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match error.kind() {
            ErrorKind::ExpiredSignature => "it has expired (exp)".into(),
            ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
            ErrorKind::InvalidIssuer => format!("its issuer is not {:?}", self.issuer),
            ErrorKind::InvalidAudience => format!("its audience is not {:?}", self.audience),
            ErrorKind::InvalidSignature => "its signature does not verify".into(),
            ErrorKind::MissingRequiredClaim(claim) => format!("it has no {claim} claim"),
            ErrorKind::InvalidAlgorithm => "its algorithm does not fit the key".into(),
            _ => format!("malformed: {error}"),
        }
    }

    /// The usable keys of a JWKS document: signature keys of an accepted
    /// algorithm, at most [`JWKS_KEYS_MAX`]; others are skipped.
    fn keys_of(&self, document: &[u8]) -> Result<Vec<Key>, String> {
        if document.len() > JWKS_BYTES_MAX {
            return Err(format!("over {JWKS_BYTES_MAX} bytes"));
        }
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = serde_json::from_slice(document).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for value in set.keys {
            if keys.len() == JWKS_KEYS_MAX {
                break;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let Some(alg) = key_algorithm(&jwk).filter(|a| self.algorithms.contains(a)) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        Ok(keys)
    }

    /// Reads the JWKS again every `jwks_refresh`, and soon after a token
    /// names a key we do not hold; runs until the node stops.
    pub async fn refresh_loop(self: Arc<Self>) {
        let mut first = matches!(self.source, JwksSource::Url(..));
        loop {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(self.refresh) => {}
                    () = self.unknown_key.notified() => {}
                }
            }
            first = false;
            match self
                .read_source()
                .await
                .and_then(|bytes| self.keys_of(&bytes))
            {
                Ok(keys) => {
                    // A set without usable keys is adopted too: keys the
                    // provider withdrew must stop opening the API.
                    if keys.is_empty() {
                        tracing::warn!(source = ?self.source, "the OIDC provider's JWKS holds no signature key of an accepted algorithm");
                    }
                    tracing::debug!(keys = keys.len(), "read the OIDC provider's JWKS");
                    *self.keys.write().unwrap_or_else(|e| e.into_inner()) =
                        (Arc::new(keys), std::time::Instant::now());
                }
                Err(reason) => {
                    tracing::warn!(source = ?self.source, %reason, "cannot read the OIDC provider's JWKS; keeping the keys held");
                }
            }
            tokio::time::sleep(JWKS_REFETCH_MIN).await;
        }
    }

    async fn read_source(&self) -> Result<Vec<u8>, String> {
        match &self.source {
            JwksSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_bounded(&path))
                    .await
                    .map_err(|e| e.to_string())?
            }
            JwksSource::Url(uri, client) => {
                tokio::time::timeout(JWKS_FETCH_TIMEOUT, fetch(client, uri))
                    .await
                    .map_err(|_| format!("no answer within {JWKS_FETCH_TIMEOUT:?}"))?
            }
        }
    }
}

/// The file at `path`, if it is at most [`JWKS_BYTES_MAX`] bytes (more is
/// not read).
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(JWKS_BYTES_MAX as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// The console's sign-in settings, checked: all three or none.
fn console_client(
    section: &OidcSection,
) -> Result<Option<quorate_api::console::OidcClient>, OidcConfigError> {
    let (client_id, authorization, token) = match (
        &section.client_id,
        &section.authorization_endpoint,
        &section.token_endpoint,
    ) {
        (None, None, None) => return Ok(None),
        (Some(c), Some(a), Some(t)) if !c.is_empty() => (c, a, t),
        _ => return Err(OidcConfigError::SignIn("set all three, or none".into())),
    };
    // The origin is rebuilt from a checked host and port (it goes into the
    // page's Content-Security-Policy), and plain http is for this machine
    // only: the browser carries codes and ID tokens over it.
    let origin = |url: &str| -> Result<String, OidcConfigError> {
        let bad = || {
            OidcConfigError::SignIn(format!(
                "{url:?} is not an https URL (or http on this machine)"
            ))
        };
        let uri: axum::http::Uri = url.parse().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?;
        let host = authority.host();
        let bare = host.trim_matches(['[', ']']);
        let plain_host = !authority.as_str().contains('@')
            && (host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                || bare.parse::<std::net::Ipv6Addr>().is_ok());
        if host.is_empty() || !plain_host {
            return Err(bad());
        }
        let loopback = host == "localhost"
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme = match uri.scheme_str() {
            Some("https") => "https",
            Some("http") if loopback => "http",
            _ => return Err(bad()),
        };
        Ok(match authority.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        })
    };
    origin(authorization)?;
    Ok(Some(quorate_api::console::OidcClient {
        issuer: section.issuer.clone(),
        client_id: client_id.clone(),
        authorization_endpoint: authorization.clone(),
        token_endpoint: token.clone(),
        token_origin: origin(token)?,
    }))
}

/// GET `uri`, at most [`JWKS_BYTES_MAX`] of body.
async fn fetch(client: &JwksClient, uri: &axum::http::Uri) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt as _;
    // The transport's error chain says why (for TLS, which certificate
    // check failed), not only that the request failed.
    let response = client.get(uri.clone()).await.map_err(|e| {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(inner) = cause {
            text.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        text
    })?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), JWKS_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body.to_bytes().to_vec())
}

/// One of the three algorithms a provider's tokens may use.
fn accepted_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        _ => None,
    }
}

/// The one algorithm a key verifies: its `alg` if it names one, else what
/// its type and curve are for.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let natural = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(natural),
        Some(named) => {
            let named = accepted_algorithm(&format!("{named:?}"))?;
            (named == natural).then_some(natural)
        }
    }
}

/// The `alg` of a compact JWS's header, read as text.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let (header, rest) = token.split_once('.')?;
    rest.split_once('.')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

/// Whether `token` has the shape of a compact JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("ey") && token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests;
