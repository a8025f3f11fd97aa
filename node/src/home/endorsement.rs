//! The home's endorsement policy file, `endorsement-policy.toml`: the
//! rules this node endorses by (`[consensus] approval = "policy"`). Written
//! by `node init` with the careful defaults, and replaced whole through
//! `PUT /v1/endorsement-policy` (`quorate policy set`); without the file
//! the defaults apply.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use quorate_api::local::endorsement::{EndorsementPolicy, Outcome};

use crate::agreement::driver::ApprovalPolicy;
use crate::agreement::policy::{Policy, PolicyError};

/// The file's name in the home.
pub const FILE: &str = "endorsement-policy.toml";
/// Largest policy file read.
pub const FILE_BYTES_MAX: u64 = 256 * 1024;

/// What heads the file when the node writes it.
const HEADER: &str = "\
# This node's endorsement policy (`[consensus] approval = \"policy\"`).
# Ordered rules: the first that matches a proposal decides whether this
# node endorses it, rejects it (with `reason`), or asks a person
# (`quorate proposal approve|reject`). A proposal no rule matches is asked.
# Replace it with `quorate policy set --home HOME FILE`; see docs/governance.md.
";

/// Why the policy file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// It cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Larger than [`FILE_BYTES_MAX`].
    #[error("{}: larger than {FILE_BYTES_MAX} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not TOML of a policy.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place.
        reason: String,
    },
    /// A policy, but not a valid one.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which rule is wrong and how.
        source: PolicyError,
    },
}

/// The policy a node starts with, and where it comes from (as
/// `GET /v1/endorsement-policy` names it).
pub fn effective(
    approval: ApprovalPolicy,
    path: &Path,
) -> Result<(Policy, String), PolicyFileError> {
    let compiled = |document, source: &str| {
        Policy::compile(document)
            .map(|p| (p, source.to_owned()))
            .map_err(|source| PolicyFileError::Invalid {
                path: path.to_owned(),
                source,
            })
    };
    match approval {
        ApprovalPolicy::Auto => compiled(
            EndorsementPolicy::always("auto", Outcome::Endorse),
            "approval = \"auto\"",
        ),
        ApprovalPolicy::Manual => compiled(
            EndorsementPolicy::always("manual", Outcome::Ask),
            "approval = \"manual\"",
        ),
        ApprovalPolicy::Policy => match load(path)? {
            Some(policy) => Ok((policy, "file".to_owned())),
            None => compiled(EndorsementPolicy::careful(), "default"),
        },
    }
}

/// Reads and checks the file; `None` if there is none.
pub fn load(path: &Path) -> Result<Option<Policy>, PolicyFileError> {
    let io_err = |source| PolicyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut text = String::new();
    file.take(FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    if text.len() as u64 > FILE_BYTES_MAX {
        return Err(PolicyFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let document: EndorsementPolicy =
        toml::from_str(&text).map_err(|e| PolicyFileError::Parse {
            path: path.to_owned(),
            reason: e.to_string().trim_end().replace('\n', " "),
        })?;
    Policy::compile(document)
        .map(Some)
        .map_err(|source| PolicyFileError::Invalid {
            path: path.to_owned(),
            source,
        })
}

/// Writes `policy` over the file: a sibling written and synced, renamed
/// over it, and the rename made durable, so a crash leaves the old policy
/// or the new one.
pub fn write(path: &Path, policy: &EndorsementPolicy) -> Result<(), PolicyFileError> {
    let io_err = |source| PolicyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let body = toml::to_string(policy).map_err(|e| PolicyFileError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("toml.tmp");
    let mut out = fs::File::create(&tmp).map_err(io_err)?;
    out.write_all(HEADER.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.write_all(body.as_bytes()))
        .and_then(|()| out.sync_all())
        .map_err(io_err)?;
    drop(out);
    fs::rename(&tmp, path).map_err(io_err)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_defaults_read_back_and_a_bad_file_names_its_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(load(&path).unwrap().is_none());
        let (_, source) = effective(ApprovalPolicy::Policy, &path).unwrap();
        assert_eq!(source, "default");

        write(&path, &EndorsementPolicy::careful()).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# This node's endorsement policy"),
            "{text}"
        );
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(loaded.document(), &EndorsementPolicy::careful());
        let (_, source) = effective(ApprovalPolicy::Policy, &path).unwrap();
        assert_eq!(source, "file");
        // The shorthands ignore the file.
        let (auto, source) = effective(ApprovalPolicy::Auto, &path).unwrap();
        assert_eq!(source, "approval = \"auto\"");
        assert_eq!(auto.document().rules.len(), 1);

        fs::write(&path, "[[rules]]\nname = \"x\"\noutcome = \"reject\"\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("rule \"x\": a reject rule needs a reason"),
            "{err}"
        );
        fs::write(&path, "[[rules]]\nname = \"x\"\noutcome = \"maybe\"\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("maybe"), "{err}");
        fs::write(&path, "rules = []\nextra = 1\n").unwrap();
        assert!(matches!(load(&path), Err(PolicyFileError::Parse { .. })));
    }
}
