//! Named API tokens: who may call the local API besides the bootstrap
//! admin, with which roles, until when.
//!
//! They live in `HOME/tokens.json` (mode 0600) as hashes only: a token is
//! `qrt_<id>_<secret>` (8 and 32 random bytes, hex), and the file keeps the
//! id, the name, the roles, the times and `blake3::derive_key`'s hash (the
//! context [`TOKEN_HASH_CONTEXT`]) of `id ‖ secret`. The secret is shown
//! once, when the token is made. The node is the file's only writer (it
//! holds the home's lock; `quorate token …` goes through its API), so the
//! registry keeps the tokens in memory and rewrites the file, atomically
//! and durably, before a change takes effect.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use quorate_api::auth::{AdminToken, Principal, Role, Roles, Unauthenticated};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::NodeHome;

/// File name of the named tokens in the home.
pub const TOKENS_FILE: &str = "tokens.json";
/// Most named tokens a node holds.
pub const TOKENS_MAX: usize = 256;
/// Longest token name.
pub const TOKEN_NAME_LEN_MAX: usize = 64;
/// Longest life a token may be given.
pub const TOKEN_LIFE_MAX_MS: u64 = 3650 * 24 * 3600 * 1000;
/// The `blake3::derive_key` context of a token's stored hash.
pub const TOKEN_HASH_CONTEXT: &str = "quorate 2026 api token v1";
/// What every named token starts with.
pub const TOKEN_PREFIX: &str = "qrt_";
/// Largest tokens file read (256 tokens take about 80 KiB).
const TOKENS_FILE_BYTES_MAX: u64 = 1 << 20;
/// Random bytes of a token's id and of its secret.
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// The file's format version.
const FORMAT_VERSION: u32 = 1;

/// One named token as stored (its hash, never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredToken {
    /// The public part of the token (16 hex digits).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// `blake3::derive_key(TOKEN_HASH_CONTEXT, id ‖ secret)`, hex.
    pub hash: String,
    /// When it was made (ms since the Unix epoch).
    pub created_ms: u64,
    /// When it expires (ms since the Unix epoch), if it does.
    pub expires_ms: Option<u64>,
}

impl StoredToken {
    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|end| now_ms >= end)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    version: u32,
    tokens: Vec<StoredToken>,
}

/// Why the tokens could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The admin token could not be read.
    #[error(transparent)]
    AdminToken(#[from] quorate_did::keyfile::LoadError),
    /// `admin.token` is not text.
    #[error("{} is not text; run `quorate node init --force` to write a new one", path.display())]
    AdminTokenNotText {
        /// The file.
        path: PathBuf,
    },
    /// The tokens file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: quorate_did::keyfile::LoadError,
    },
    /// The tokens file does not hold valid tokens.
    #[error("{} is not a valid tokens file ({reason}); fix it, or remove it to revoke every named token", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A name that is not 1..=64 of `[a-z0-9._-]` starting with a letter or
    /// digit, or the reserved `admin`.
    #[error(
        "{0:?} is not a token name: use 1 to {TOKEN_NAME_LEN_MAX} of a-z, 0-9, '.', '_', '-', starting with a letter or digit (`admin` is reserved)"
    )]
    InvalidName(String),
    /// No role given.
    #[error("a token needs at least one role ({})", role_list())]
    NoRoles,
    /// An expiry of zero, or past [`TOKEN_LIFE_MAX_MS`].
    #[error("a token's life is from 1 s to 3650 days")]
    InvalidLife,
    /// A token of that name exists.
    #[error("a token named {0:?} exists; revoke it first")]
    Exists(String),
    /// [`TOKENS_MAX`] tokens exist.
    #[error("this node holds {TOKENS_MAX} named tokens, the most it may; revoke some first")]
    TooMany,
    /// The system's randomness failed.
    #[error("no randomness for a token: {0}")]
    Random(getrandom::Error),
    /// The file could not be written (nothing changed).
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Why a token could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// No token has that name.
    #[error("no token is named {0:?}")]
    Unknown(String),
    /// The file could not be written (nothing changed).
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn role_list() -> String {
    Role::ALL.map(Role::name).join(", ")
}

/// The bootstrap admin token and the named tokens, resolved from memory on
/// every request.
#[derive(Debug)]
pub struct TokenRegistry {
    admin: AdminToken,
    path: PathBuf,
    /// By id.
    tokens: RwLock<BTreeMap<String, StoredToken>>,
    /// Held across a change's file write, so changes apply one at a time.
    writes: Mutex<()>,
}

impl TokenRegistry {
    /// Reads `admin.token` and `tokens.json` (absent: no named tokens).
    pub fn open(home: &NodeHome) -> Result<Self, LoadError> {
        let admin_path = home.admin_token_path();
        let admin = quorate_did::keyfile::read_secret_file(&admin_path, 1024)?;
        let admin = std::str::from_utf8(&admin)
            .map_err(|_| LoadError::AdminTokenNotText { path: admin_path })?;
        let path = home.root().join(TOKENS_FILE);
        let tokens = load(&path)?;
        Ok(Self {
            admin: AdminToken::new(admin),
            path,
            tokens: RwLock::new(tokens),
            writes: Mutex::new(()),
        })
    }

    /// Who `presented` names at `now_ms`.
    pub fn authenticate(&self, presented: &str, now_ms: u64) -> Result<Principal, Unauthenticated> {
        if self.admin.matches(presented) {
            return Ok(Principal::admin());
        }
        let (id, secret) = split_token(presented).ok_or(Unauthenticated::Invalid)?;
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let stored = tokens.get(id).ok_or(Unauthenticated::Invalid)?;
        let hash = token_hash(id, secret);
        let matches: bool = hex::decode(&stored.hash)
            .map(|h| h.ct_eq(hash.as_bytes()).into())
            .unwrap_or(false);
        if !matches {
            return Err(Unauthenticated::Invalid);
        }
        if stored.expired(now_ms) {
            return Err(Unauthenticated::Expired {
                name: stored.name.clone(),
            });
        }
        Ok(Principal {
            label: format!("token:{}", stored.name),
            roles: stored.roles.iter().copied().collect::<Roles>(),
            expires_ms: stored.expires_ms,
        })
    }

    /// Every named token, by name.
    pub fn list(&self) -> Vec<StoredToken> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<StoredToken> = tokens.values().cloned().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Makes a token named `name` with `roles`, living `life_ms` from
    /// `now_ms` (for ever if `None`); durable on return. Returns what is
    /// stored and the token itself, which is not kept.
    pub fn create(
        &self,
        name: &str,
        roles: &[Role],
        life_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(StoredToken, Zeroizing<String>), CreateError> {
        if !valid_name(name) {
            return Err(CreateError::InvalidName(name.to_owned()));
        }
        if roles.is_empty() {
            return Err(CreateError::NoRoles);
        }
        if life_ms.is_some_and(|ms| ms == 0 || ms > TOKEN_LIFE_MAX_MS) {
            return Err(CreateError::InvalidLife);
        }
        self.change(
            |tokens| {
                if tokens.values().any(|t| t.name == name) {
                    return Err(CreateError::Exists(name.to_owned()));
                }
                if tokens.len() >= TOKENS_MAX {
                    return Err(CreateError::TooMany);
                }
                let mut id = [0u8; ID_BYTES];
                let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
                getrandom::fill(&mut id).map_err(CreateError::Random)?;
                getrandom::fill(secret.as_mut()).map_err(CreateError::Random)?;
                let id = hex::encode(id);
                let secret = Zeroizing::new(hex::encode(secret.as_ref()));
                let mut roles = roles.to_vec();
                roles.sort();
                roles.dedup();
                let stored = StoredToken {
                    id: id.clone(),
                    name: name.to_owned(),
                    roles,
                    hash: token_hash(&id, &secret).to_hex().to_string(),
                    created_ms: now_ms,
                    expires_ms: life_ms.map(|ms| now_ms.saturating_add(ms)),
                };
                tokens.insert(id.clone(), stored.clone());
                let token = Zeroizing::new(format!("{TOKEN_PREFIX}{id}_{}", secret.as_str()));
                Ok((stored, token))
            },
            |path, source| CreateError::Io { path, source },
        )
    }

    /// Revokes the token named `name`: refused from the moment this
    /// returns, and gone from the file.
    pub fn revoke(&self, name: &str) -> Result<(), RevokeError> {
        self.change(
            |tokens| {
                let before = tokens.len();
                tokens.retain(|_, t| t.name != name);
                if tokens.len() == before {
                    return Err(RevokeError::Unknown(name.to_owned()));
                }
                Ok(())
            },
            |path, source| RevokeError::Io { path, source },
        )
    }

    /// Applies `edit` to a copy of the tokens, writes the copy durably and
    /// only then adopts it, one change at a time: a failed edit or write
    /// changes nothing.
    fn change<T, E>(
        &self,
        edit: impl FnOnce(&mut BTreeMap<String, StoredToken>) -> Result<T, E>,
        write_failed: impl Fn(PathBuf, io::Error) -> E,
    ) -> Result<T, E> {
        let _write = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let done = edit(&mut next)?;
        let write_failed = |source| write_failed(self.path.clone(), source);
        replace(&self.path, &next).map_err(write_failed)?;
        // From the rename on, the file holds the change: memory follows it
        // even if making the rename durable fails (reported as an error).
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = next;
        sync_parent(&self.path).map_err(write_failed)?;
        Ok(done)
    }
}

/// Whether `name` may name a token.
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TOKEN_NAME_LEN_MAX
        && name != "admin"
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// `qrt_<id>_<secret>` as its id and secret, if it has that shape.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, bytes: usize| s.len() == 2 * bytes && s.bytes().all(is_lower_hex);
    (hex_of(id, ID_BYTES) && hex_of(secret, SECRET_BYTES)).then_some((id, secret))
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn token_hash(id: &str, secret: &str) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_derive_key(TOKEN_HASH_CONTEXT);
    hasher.update(id.as_bytes());
    hasher.update(secret.as_bytes());
    hasher.finalize()
}

fn load(path: &Path) -> Result<BTreeMap<String, StoredToken>, LoadError> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let bytes =
        quorate_did::keyfile::read_secret_file(path, TOKENS_FILE_BYTES_MAX).map_err(|source| {
            LoadError::Read {
                path: path.to_owned(),
                source,
            }
        })?;
    let invalid = |reason: String| LoadError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let file: TokensFile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(invalid(format!(
            "version {}, this node reads {FORMAT_VERSION}",
            file.version
        )));
    }
    if file.tokens.len() > TOKENS_MAX {
        return Err(invalid(format!(
            "{} tokens, at most {TOKENS_MAX}",
            file.tokens.len()
        )));
    }
    let mut tokens = BTreeMap::new();
    let mut names = std::collections::BTreeSet::new();
    for token in file.tokens {
        let well_formed = token.id.len() == 2 * ID_BYTES
            && token.id.bytes().all(is_lower_hex)
            && token.hash.len() == 64
            && token.hash.bytes().all(is_lower_hex)
            && valid_name(&token.name)
            && !token.roles.is_empty();
        if !well_formed {
            return Err(invalid(format!("the token {:?} is malformed", token.name)));
        }
        if !names.insert(token.name.clone()) {
            return Err(invalid(format!("two tokens are named {:?}", token.name)));
        }
        if let Some(other) = tokens.insert(token.id.clone(), token) {
            return Err(invalid(format!("two tokens have the id {}", other.id)));
        }
    }
    Ok(tokens)
}

/// Writes the tokens to a new 0600 sibling, syncs it and renames it over
/// `path`: a crash leaves the old file or the new one.
fn replace(path: &Path, tokens: &BTreeMap<String, StoredToken>) -> io::Result<()> {
    let file = TokensFile {
        version: FORMAT_VERSION,
        tokens: tokens.values().cloned().collect(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    // A sibling left by a crash is removed, so that the one written is new
    // and gets its 0600 mode.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(&tmp)?;
    out.write_all(&json)?;
    out.sync_all()?;
    drop(out);
    fs::rename(&tmp, path)
}

/// Makes a rename in `path`'s directory durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NOW: u64 = 1_800_000_000_000;

    fn home() -> (tempfile::TempDir, NodeHome) {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::new(dir.path().join("home"));
        home.init(&super::super::InitOptions {
            name: "org-a",
            api_port: 7700,
            p2p_port: 7701,
            gateway_port: 7702,
            gateway_hosts: &[],
            force: false,
        })
        .unwrap();
        (dir, home)
    }

    fn admin_token(home: &NodeHome) -> String {
        fs::read_to_string(home.admin_token_path()).unwrap()
    }

    #[test]
    fn a_token_authenticates_with_its_roles_until_it_expires_or_is_revoked() {
        let (_dir, home) = home();
        let registry = TokenRegistry::open(&home).unwrap();
        assert_eq!(
            registry.authenticate(admin_token(&home).trim(), NOW),
            Ok(Principal::admin())
        );
        let (stored, token) = registry
            .create("alice", &[Role::Reader, Role::Approver], Some(60_000), NOW)
            .unwrap();
        assert_eq!(stored.roles, vec![Role::Approver, Role::Reader]);
        assert_eq!(stored.expires_ms, Some(NOW + 60_000));
        let principal = registry.authenticate(&token, NOW + 59_999).unwrap();
        assert_eq!(principal.label, "token:alice");
        assert_eq!(principal.roles, Roles::of(&[Role::Reader, Role::Approver]));
        assert_eq!(
            registry.authenticate(&token, NOW + 60_000),
            Err(Unauthenticated::Expired {
                name: "alice".into()
            })
        );

        // The secret is not in the file, which only its owner can read.
        let text = fs::read_to_string(home.root().join(TOKENS_FILE)).unwrap();
        let secret = token.rsplit('_').next().unwrap();
        assert!(!text.contains(secret));
        let mode = fs::metadata(home.root().join(TOKENS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // It survives a restart, and a revocation is immediate and durable.
        let (_, bob) = registry.create("bob", &[Role::Metrics], None, NOW).unwrap();
        let reopened = TokenRegistry::open(&home).unwrap();
        assert!(reopened.authenticate(&bob, NOW).is_ok());
        reopened.revoke("bob").unwrap();
        assert_eq!(
            reopened.authenticate(&bob, NOW),
            Err(Unauthenticated::Invalid)
        );
        let names: Vec<String> = TokenRegistry::open(&home)
            .unwrap()
            .list()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["alice"]);
    }

    #[test]
    fn tampered_and_foreign_tokens_are_refused() {
        let (_dir, home) = home();
        let registry = TokenRegistry::open(&home).unwrap();
        let (_, token) = registry.create("app", &[Role::Reader], None, NOW).unwrap();
        let mut tampered = token.to_string();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        for presented in [
            tampered.as_str(),
            "",
            "qrt_",
            "qrt_zz_zz",
            &token[..token.len() - 1],
            &token.to_uppercase(),
            "admin",
        ] {
            assert_eq!(
                registry.authenticate(presented, NOW),
                Err(Unauthenticated::Invalid),
                "{presented:?}"
            );
        }
        // Another node's token with the same name is not this one.
        let (_other_dir, other_home) = self::home();
        let other = TokenRegistry::open(&other_home).unwrap();
        let (_, foreign) = other.create("app", &[Role::Reader], None, NOW).unwrap();
        assert_eq!(
            registry.authenticate(&foreign, NOW),
            Err(Unauthenticated::Invalid)
        );
    }

    #[test]
    fn bad_names_roles_lives_duplicates_and_too_many_are_refused() {
        let (_dir, home) = home();
        let registry = TokenRegistry::open(&home).unwrap();
        for name in ["", "admin", "Alice", "-x", "a b", &"a".repeat(65), "a/b"] {
            assert!(
                matches!(
                    registry.create(name, &[Role::Reader], None, NOW),
                    Err(CreateError::InvalidName(_))
                ),
                "{name:?}"
            );
        }
        assert!(matches!(
            registry.create("x", &[], None, NOW),
            Err(CreateError::NoRoles)
        ));
        for life in [0, TOKEN_LIFE_MAX_MS + 1] {
            assert!(matches!(
                registry.create("x", &[Role::Reader], Some(life), NOW),
                Err(CreateError::InvalidLife)
            ));
        }
        registry
            .create("ci.bot_1", &[Role::Reader], None, NOW)
            .unwrap();
        assert!(matches!(
            registry.create("ci.bot_1", &[Role::Reader], None, NOW),
            Err(CreateError::Exists(_))
        ));
        assert!(matches!(
            registry.revoke("nobody"),
            Err(RevokeError::Unknown(_))
        ));
        for i in 1..TOKENS_MAX {
            registry
                .create(&format!("t{i}"), &[Role::Metrics], None, NOW)
                .unwrap();
        }
        assert!(matches!(
            registry.create("one-more", &[Role::Reader], None, NOW),
            Err(CreateError::TooMany)
        ));
        assert_eq!(TokenRegistry::open(&home).unwrap().list().len(), TOKENS_MAX);
    }

    #[test]
    fn a_damaged_tokens_file_stops_the_start_with_what_to_do() {
        let (_dir, home) = home();
        let path = home.root().join(TOKENS_FILE);
        let write = |text: &str| {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        };
        for text in [
            "not json",
            r#"{"version":2,"tokens":[]}"#,
            r#"{"version":1,"tokens":[{"id":"00","name":"a","roles":["reader"],"hash":"00","created_ms":0,"expires_ms":null}]}"#,
        ] {
            write(text);
            let message = TokenRegistry::open(&home).unwrap_err().to_string();
            assert!(message.contains("remove it"), "{message}");
        }
        write(r#"{"version":1,"tokens":[]}"#);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            TokenRegistry::open(&home),
            Err(LoadError::Read { .. })
        ));
    }
}
