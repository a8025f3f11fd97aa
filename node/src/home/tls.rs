//! The gateway listener's TLS: certificate authorities and certificates
//! for `node init`, `quorate tls ca|issue` and the testnet, and the rustls
//! server configuration the listener serves with.
//!
//! ```text
//! HOME/tls/
//!   gateway.crt   the gateway's certificate chain, PEM, leaf first
//!   gateway.key   its private key, PKCS#8 PEM, mode 0600
//!   ca.crt        the authority that issued it: what members' clients trust
//! ```
//!
//! `node init` makes a one-off authority for the home and forgets its key,
//! so the certificate can be verified (pin `tls/ca.crt`) but not reissued;
//! `quorate tls issue --ca DIR` replaces it with one from a kept authority
//! (the testnet's, or an organization's own). A deployment with its own
//! PKI names its PEM files in `[gateway.tls]` instead.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::durable;

/// The gateway's certificate chain in a home, by default.
pub const GATEWAY_CERT_FILE: &str = "tls/gateway.crt";
/// The gateway's private key in a home, by default.
pub const GATEWAY_KEY_FILE: &str = "tls/gateway.key";
/// The authority members' clients trust for this gateway.
pub const HOME_CA_FILE: &str = "tls/ca.crt";
/// An authority's certificate in its directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// An authority's private key in its directory (0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// Largest PEM file read: a chain of a few certificates, or a key.
pub const PEM_BYTES_MAX: u64 = 256 * 1024;
/// How long a gateway or client certificate is valid (the longest a
/// browser accepts, so the habit carries to real deployments).
pub const LEAF_VALIDITY_DAYS: i64 = 397;
/// How long an authority is valid.
pub const CA_VALIDITY_DAYS: i64 = 3_650;
/// How far back a new certificate's validity starts, for clocks that are
/// a little behind.
const BACKDATE: time::Duration = time::Duration::hours(1);
/// Most names a certificate carries.
pub const NAMES_MAX: usize = 32;

/// Why a certificate could not be made, loaded or served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file that should be there is not.
    #[error("{} does not exist", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A private key file is readable by others, too large or unreadable.
    #[error(transparent)]
    Key(#[from] quorate_did::keyfile::LoadError),
    /// A file is not the PEM it should be.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Generating or signing a certificate failed.
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate, key or client authority.
    #[error("the TLS configuration is not usable: {0}")]
    Config(String),
    /// An authority exists already where a new one was asked for.
    #[error("{} already holds an authority ({CA_CERT_FILE}); use it, or choose another directory", path.display())]
    AuthorityExists {
        /// The directory.
        path: PathBuf,
    },
    /// A name for a certificate is empty, too long or not a DNS name or IP.
    #[error("{name:?} is not a host name or IP address for a certificate")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// Too many names.
    #[error("a certificate carries at most {NAMES_MAX} names")]
    TooManyNames,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A certificate authority whose key is at hand: it issues gateway
/// certificates (and client certificates, for mTLS).
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate chain, leaf first.
    pub chain_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: zeroize::Zeroizing<String>,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::days(days);
}

impl Authority {
    /// A new authority named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, TlsError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        name.push(DnType::OrganizationName, "Quorate");
        params.distinguished_name = name;
        // It signs end-entity certificates only, never another authority.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let cert = params.clone().self_signed(&key)?;
        Ok(Self {
            params,
            key,
            cert_pem: cert.pem(),
        })
    }

    /// Creates an authority in `dir` (its certificate and its 0600 key);
    /// refuses if one is there.
    pub fn create(dir: &Path, common_name: &str) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        if cert_path.exists() {
            return Err(TlsError::AuthorityExists {
                path: dir.to_owned(),
            });
        }
        let authority = Self::generate(common_name)?;
        super::create_private_dir(dir).map_err(io_error(dir))?;
        let key_path = dir.join(CA_KEY_FILE);
        durable::replace(&key_path, authority.key.serialize_pem().as_bytes())
            .map_err(io_error(&key_path))?;
        durable::replace(&cert_path, authority.cert_pem.as_bytes())
            .map_err(io_error(&cert_path))?;
        Ok(authority)
    }

    /// The authority kept in `dir`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let cert_pem = read_pem_text(&cert_path)?;
        let params = CertificateParams::from_ca_cert_pem(&cert_pem).map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            what: format!("not an authority's certificate ({e})"),
        })?;
        let key_path = dir.join(CA_KEY_FILE);
        let key_bytes = quorate_did::keyfile::read_secret_file(&key_path, PEM_BYTES_MAX)?;
        let key_text = std::str::from_utf8(&key_bytes).map_err(|_| TlsError::Pem {
            path: key_path.clone(),
            what: "not PEM text".to_owned(),
        })?;
        let key = KeyPair::from_pem(key_text).map_err(|e| TlsError::Pem {
            path: key_path.clone(),
            what: format!("not a private key ({e})"),
        })?;
        Ok(Self {
            params,
            key,
            cert_pem,
        })
    }

    /// The authority's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (host names or IP addresses).
    pub fn issue_server(&self, common_name: &str, names: &[String]) -> Result<Issued, TlsError> {
        self.issue(common_name, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `common_name` (for mTLS).
    pub fn issue_client(&self, common_name: &str) -> Result<Issued, TlsError> {
        self.issue(common_name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        common_name: &str,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Issued, TlsError> {
        if names.len() > NAMES_MAX {
            return Err(TlsError::TooManyNames);
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let issuer = self.params.clone().self_signed(&self.key)?;
        let cert = params.signed_by(&key, &issuer, &self.key)?;
        Ok(Issued {
            chain_pem: cert.pem(),
            key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
        })
    }
}

/// A subject alternative name: an IP address if it parses as one, else a
/// DNS name.
fn san(name: &str) -> Result<SanType, TlsError> {
    let invalid = || TlsError::InvalidName {
        name: name.to_owned(),
    };
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    if !valid {
        return Err(invalid());
    }
    Ok(SanType::DnsName(
        name.to_ascii_lowercase()
            .try_into()
            .map_err(|_| invalid())?,
    ))
}

/// Checks that each of `names` can go in a certificate, before anything
/// is written.
pub fn check_names(names: &[String]) -> Result<(), TlsError> {
    if names.len() + loopback_names().len() > NAMES_MAX {
        return Err(TlsError::TooManyNames);
    }
    names.iter().try_for_each(|n| san(n).map(drop))
}

/// The names every gateway certificate carries, so that a node on one
/// machine is reachable by its loopback names.
pub fn loopback_names() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"]
        .map(str::to_owned)
        .to_vec()
}

/// Writes `issued` as `home`'s gateway certificate, with `ca_pem` as the
/// authority its clients trust. Each file is replaced atomically; the key
/// is written first, so a crash between leaves an old certificate that
/// does not match the new key, and the node refuses to start rather than
/// serve with a certificate it cannot prove.
pub fn install(home: &Path, issued: &Issued, ca_pem: &str) -> Result<(), TlsError> {
    let dir = home.join("tls");
    super::create_private_dir(&dir).map_err(io_error(&dir))?;
    for (file, contents) in [
        (GATEWAY_KEY_FILE, issued.key_pem.as_bytes()),
        (GATEWAY_CERT_FILE, issued.chain_pem.as_bytes()),
        (HOME_CA_FILE, ca_pem.as_bytes()),
    ] {
        let path = home.join(file);
        durable::replace(&path, contents).map_err(io_error(&path))?;
    }
    Ok(())
}

/// Gives `home` a gateway certificate from a one-off authority whose key
/// is dropped here (what `node init` does).
pub fn install_self_issued(home: &Path, name: &str, extra: &[String]) -> Result<(), TlsError> {
    let authority = Authority::generate(&format!("{name} gateway authority"))?;
    let mut names = loopback_names();
    names.extend(extra.iter().cloned());
    let issued = authority.issue_server(name, &names)?;
    install(home, &issued, authority.cert_pem())
}

fn read_pem_text(path: &Path) -> Result<String, TlsError> {
    let bytes = durable::read_bounded(path, PEM_BYTES_MAX)
        .map_err(io_error(path))?
        .ok_or_else(|| TlsError::Missing {
            path: path.to_owned(),
        })?;
    String::from_utf8(bytes).map_err(|_| TlsError::Pem {
        path: path.to_owned(),
        what: "not PEM text".to_owned(),
    })
}

/// The certificates of a PEM file (at least one).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read_pem_text(path)?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("not a PEM certificate chain ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "holds no certificate".to_owned(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file, which only its owner may read.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = quorate_did::keyfile::read_secret_file(path, PEM_BYTES_MAX)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: format!("not a PEM private key ({e})"),
    })
}

/// What the gateway listener serves with.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// When set, clients must present a certificate this authority (or
    /// these, one PEM file) issued.
    pub client_ca: Option<PathBuf>,
}

/// The rustls configuration of the gateway listener: TLS 1.2 and 1.3 with
/// rustls's safe defaults, HTTP/1.1 by ALPN, and client certificates
/// required when `client_ca` is set.
pub fn server_config(files: &ServerFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = load_certificates(&files.cert)?;
    let key = load_private_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: path.clone(),
                    what: format!("not an authority's certificate ({e})"),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::Config(format!(
            "{} and {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(home: &Path) -> ServerFiles {
        ServerFiles {
            cert: home.join(GATEWAY_CERT_FILE),
            key: home.join(GATEWAY_KEY_FILE),
            client_ca: None,
        }
    }

    #[test]
    fn a_self_issued_home_serves_and_its_ca_verifies_the_certificate() {
        let home = tempfile::tempdir().unwrap();
        install_self_issued(home.path(), "org-a", &["gw.org-a.example".to_owned()]).unwrap();
        server_config(&files(home.path())).unwrap();
        let roots = load_certificates(&home.path().join(HOME_CA_FILE)).unwrap();
        let mut store = rustls::RootCertStore::empty();
        store.add(roots[0].clone()).unwrap();
        let leaf = load_certificates(&home.path().join(GATEWAY_CERT_FILE)).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier as _;
        let now = rustls::pki_types::UnixTime::now();
        for name in ["127.0.0.1", "localhost", "gw.org-a.example"] {
            let server = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf[0], &[], &server, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("gw.org-b.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(&leaf[0], &[], &other, &[], now)
                .is_err()
        );
    }

    #[test]
    fn a_kept_authority_reloads_and_issues_for_another_home() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let created = Authority::create(&ca_dir, "testnet").unwrap();
        assert!(matches!(
            Authority::create(&ca_dir, "again"),
            Err(TlsError::AuthorityExists { .. })
        ));
        let loaded = Authority::load(&ca_dir).unwrap();
        assert_eq!(loaded.cert_pem(), created.cert_pem());
        let home = dir.path().join("home");
        let issued = loaded.issue_server("org-b", &loopback_names()).unwrap();
        install(&home, &issued, loaded.cert_pem()).unwrap();
        server_config(&files(&home)).unwrap();
        // The key is private; a readable one is refused.
        use std::os::unix::fs::PermissionsExt as _;
        let key = home.join(GATEWAY_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            server_config(&files(&home)),
            Err(TlsError::Key(_))
        ));
    }

    #[test]
    fn bad_files_and_names_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("x.crt");
        std::fs::write(&not_pem, "hello").unwrap();
        let err = load_certificates(&not_pem).unwrap_err().to_string();
        assert!(
            err.contains("x.crt") && err.contains("no certificate"),
            "{err}"
        );
        let missing = load_certificates(&dir.path().join("nope.crt")).unwrap_err();
        assert!(
            matches!(missing, TlsError::Missing { .. }) && missing.to_string().contains("nope.crt"),
            "{missing}"
        );
        let authority = Authority::generate("t").unwrap();
        for bad in ["", "a..b", "has space", "under_score"] {
            assert!(
                matches!(
                    authority.issue_server("x", &[bad.to_owned()]),
                    Err(TlsError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..=NAMES_MAX).map(|i| format!("h{i}.example")).collect();
        assert!(matches!(
            authority.issue_server("x", &many),
            Err(TlsError::TooManyNames)
        ));
    }
}
