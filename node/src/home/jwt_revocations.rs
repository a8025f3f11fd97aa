//! Revoked single-sign-on tokens: the JWTs an identity provider issued
//! that this node refuses before they expire. A provider's tokens cannot
//! be recalled once issued, so the node keeps its own list, in the home's
//! `jwt-revocations.json` (0600, rewritten atomically and durably before a
//! revocation is acknowledged), and checks it from memory on every
//! request.
//!
//! A revocation names a subject (every token of that `sub` issued at or
//! before the revocation, and any without `iat`: the person signs in
//! again to get a new one), or one token by its `jti`, or both. It is kept
//! for `keep` (30 days unless said; at most 366), which must be longer than
//! the provider's token lifetime: past it, it is forgotten.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::NodeHome;
use super::durable;

/// The file in the node home.
pub const JWT_REVOCATIONS_FILE: &str = "jwt-revocations.json";
/// Revocations kept at once.
pub const JWT_REVOCATIONS_MAX: usize = 1024;
/// How long a revocation is kept unless said.
pub const KEEP_DEFAULT_MS: u64 = 30 * 24 * 3600 * 1000;
/// The longest a revocation is kept.
pub const KEEP_MAX_MS: u64 = 366 * 24 * 3600 * 1000;
/// Longest subject, `jti` or reason.
pub const FIELD_BYTES_MAX: usize = 256;
/// Largest file read back (the bound above, with room).
const FILE_BYTES_MAX: u64 = 4 << 20;
const FORMAT_VERSION: u32 = 1;

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtRevocation {
    /// Tokens of this `sub`.
    pub subject: Option<String>,
    /// The token with this `jti`.
    pub jti: Option<String>,
    /// When it was revoked (ms since the Unix epoch).
    pub revoked_ms: u64,
    /// When it is forgotten.
    pub until_ms: u64,
    /// Why, as the operator wrote it.
    pub reason: Option<String>,
}

impl JwtRevocation {
    /// Whether a token of `subject`, with `jti` and issued at `iat_s`
    /// (seconds), falls under it.
    fn covers(&self, subject: &str, jti: Option<&str>, iat_s: Option<u64>) -> bool {
        if self.subject.as_deref().is_some_and(|s| s != subject) {
            return false;
        }
        match &self.jti {
            Some(revoked) => jti == Some(revoked.as_str()),
            // A subject's revocation: what was issued until then.
            None => iat_s.is_none_or(|iat| iat.saturating_mul(1000) <= self.revoked_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    revoked: Vec<JwtRevocation>,
}

/// What to revoke.
#[derive(Debug, Clone, Default)]
pub struct RevokeJwt {
    /// Every token of this subject issued until now.
    pub subject: Option<String>,
    /// The token with this `jti`.
    pub jti: Option<String>,
    /// How long to keep it (ms); [`KEEP_DEFAULT_MS`] if `None`.
    pub keep_ms: Option<u64>,
    /// Why.
    pub reason: Option<String>,
}

/// Why a revocation was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeJwtError {
    /// Neither a subject nor a `jti`.
    #[error("a revocation names a subject, a jti, or both")]
    NothingNamed,
    /// A field is empty or too long.
    #[error("{0} is 1 to 256 bytes")]
    Field(&'static str),
    /// `keep` out of bounds.
    #[error("a revocation is kept for 1 s to 366 days")]
    Keep,
    /// The list is full.
    #[error("{JWT_REVOCATIONS_MAX} revocations are kept already; wait for some to expire")]
    Full,
    /// The file could not be written: nothing changed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why the file could not be read at start.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {reason}")]
pub struct LoadJwtRevocationsError {
    path: PathBuf,
    reason: String,
}

/// The revoked JWTs of one node.
#[derive(Debug)]
pub struct JwtRevocations {
    path: PathBuf,
    list: RwLock<Vec<JwtRevocation>>,
    /// Held across a change's file write, so changes apply one at a time.
    writes: Mutex<()>,
}

impl JwtRevocations {
    /// Reads the home's file (absent: none revoked).
    pub fn open(home: &NodeHome) -> Result<Self, LoadJwtRevocationsError> {
        Self::open_file(home.root().join(JWT_REVOCATIONS_FILE))
    }

    fn open_file(path: PathBuf) -> Result<Self, LoadJwtRevocationsError> {
        let refuse = |reason: String| LoadJwtRevocationsError {
            path: path.clone(),
            reason,
        };
        let list = match durable::read_bounded(&path, FILE_BYTES_MAX) {
            Ok(None) => Vec::new(),
            Ok(Some(bytes)) => {
                let file: File =
                    serde_json::from_slice(&bytes).map_err(|e| refuse(e.to_string()))?;
                if file.version != FORMAT_VERSION {
                    return Err(refuse(format!("unknown version {}", file.version)));
                }
                if file.revoked.len() > JWT_REVOCATIONS_MAX {
                    return Err(refuse(format!(
                        "more than {JWT_REVOCATIONS_MAX} revocations"
                    )));
                }
                file.revoked
            }
            Err(e) => return Err(refuse(e.to_string())),
        };
        Ok(Self {
            path,
            list: RwLock::new(list),
            writes: Mutex::new(()),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Revokes what `revoke` names at `now_ms`, durably; the revocation
    /// kept.
    pub fn revoke(&self, revoke: RevokeJwt, now_ms: u64) -> Result<JwtRevocation, RevokeJwtError> {
        let field = |value: Option<String>, name| match value {
            Some(v) if v.is_empty() || v.len() > FIELD_BYTES_MAX => {
                Err(RevokeJwtError::Field(name))
            }
            other => Ok(other),
        };
        let subject = field(revoke.subject, "the subject")?;
        let jti = field(revoke.jti, "the jti")?;
        let reason = field(revoke.reason, "the reason")?;
        if subject.is_none() && jti.is_none() {
            return Err(RevokeJwtError::NothingNamed);
        }
        let keep = revoke.keep_ms.unwrap_or(KEEP_DEFAULT_MS);
        if !(1000..=KEEP_MAX_MS).contains(&keep) {
            return Err(RevokeJwtError::Keep);
        }
        let made = JwtRevocation {
            subject,
            jti,
            revoked_ms: now_ms,
            until_ms: now_ms.saturating_add(keep),
            reason,
        };
        let _one_at_a_time = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<JwtRevocation> = self
            .list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.until_ms > now_ms)
            .cloned()
            .collect();
        if next.len() >= JWT_REVOCATIONS_MAX {
            return Err(RevokeJwtError::Full);
        }
        next.push(made.clone());
        let file = File {
            version: FORMAT_VERSION,
            revoked: next,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| RevokeJwtError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        durable::replace(&self.path, &bytes).map_err(|source| RevokeJwtError::Io {
            path: self.path.clone(),
            source,
        })?;
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = file.revoked;
        Ok(made)
    }

    /// The revocations in force at `now_ms`, oldest first.
    pub fn list(&self, now_ms: u64) -> Vec<JwtRevocation> {
        self.list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|r| r.until_ms > now_ms)
            .cloned()
            .collect()
    }

    /// The revocation in force at `now_ms` that refuses a token of
    /// `subject` with `jti`, issued at `iat_s`, if any.
    pub fn refusing(
        &self,
        subject: &str,
        jti: Option<&str>,
        iat_s: Option<u64>,
        now_ms: u64,
    ) -> Option<JwtRevocation> {
        self.list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.until_ms > now_ms && r.covers(subject, jti, iat_s))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn store(dir: &Path) -> JwtRevocations {
        JwtRevocations::open_file(dir.join(JWT_REVOCATIONS_FILE)).unwrap()
    }

    #[test]
    fn a_subject_revocation_refuses_what_was_issued_until_then_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let revocations = store(dir.path());
        let made = revocations
            .revoke(
                RevokeJwt {
                    subject: Some("alice".into()),
                    reason: Some("laptop stolen".into()),
                    ..RevokeJwt::default()
                },
                NOW,
            )
            .unwrap();
        assert_eq!(made.until_ms, NOW + KEEP_DEFAULT_MS);
        let before = Some(NOW / 1000 - 60);
        let after = Some(NOW / 1000 + 1);
        assert!(revocations.refusing("alice", None, before, NOW).is_some());
        assert!(revocations.refusing("alice", None, None, NOW).is_some());
        assert!(revocations.refusing("alice", None, after, NOW).is_none());
        assert!(revocations.refusing("bob", None, before, NOW).is_none());
        // Kept on disk, and forgotten once its time is over.
        let reopened = store(dir.path());
        assert!(reopened.refusing("alice", None, before, NOW + 1).is_some());
        assert!(
            reopened
                .refusing("alice", None, before, NOW + KEEP_DEFAULT_MS)
                .is_none()
        );
        assert!(reopened.list(NOW + KEEP_DEFAULT_MS).is_empty());
    }

    #[test]
    fn a_jti_revocation_refuses_that_token_only() {
        let dir = tempfile::tempdir().unwrap();
        let revocations = store(dir.path());
        revocations
            .revoke(
                RevokeJwt {
                    jti: Some("t-1".into()),
                    keep_ms: Some(3_600_000),
                    ..RevokeJwt::default()
                },
                NOW,
            )
            .unwrap();
        assert!(
            revocations
                .refusing("alice", Some("t-1"), None, NOW)
                .is_some()
        );
        assert!(
            revocations
                .refusing("bob", Some("t-1"), None, NOW)
                .is_some()
        );
        assert!(
            revocations
                .refusing("alice", Some("t-2"), None, NOW)
                .is_none()
        );
        assert!(revocations.refusing("alice", None, None, NOW).is_none());
        assert!(
            revocations
                .refusing("alice", Some("t-1"), None, NOW + 3_600_000)
                .is_none()
        );
    }

    #[test]
    fn bad_revocations_are_refused_and_the_list_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let revocations = store(dir.path());
        let revoke = |revoke: RevokeJwt| revocations.revoke(revoke, NOW);
        assert!(matches!(
            revoke(RevokeJwt::default()),
            Err(RevokeJwtError::NothingNamed)
        ));
        assert!(matches!(
            revoke(RevokeJwt {
                subject: Some("x".repeat(257)),
                ..RevokeJwt::default()
            }),
            Err(RevokeJwtError::Field(_))
        ));
        assert!(matches!(
            revoke(RevokeJwt {
                subject: Some("alice".into()),
                keep_ms: Some(KEEP_MAX_MS + 1),
                ..RevokeJwt::default()
            }),
            Err(RevokeJwtError::Keep)
        ));
        for i in 0..JWT_REVOCATIONS_MAX {
            revoke(RevokeJwt {
                jti: Some(format!("t-{i}")),
                keep_ms: Some(1000),
                ..RevokeJwt::default()
            })
            .unwrap();
        }
        assert!(matches!(
            revoke(RevokeJwt {
                jti: Some("one-more".into()),
                ..RevokeJwt::default()
            }),
            Err(RevokeJwtError::Full)
        ));
        // Expired ones make room.
        revocations
            .revoke(
                RevokeJwt {
                    jti: Some("later".into()),
                    ..RevokeJwt::default()
                },
                NOW + 1000,
            )
            .unwrap();
        assert_eq!(revocations.list(NOW + 1000).len(), 1);
    }
}
