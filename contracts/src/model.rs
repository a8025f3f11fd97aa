//! What members agree to: resources, actions, grants, members, policy, and
//! the bodies of ledger entries.

use std::fmt;
use std::str::FromStr;

use quorate_did::Did;
use serde::{Deserialize, Serialize};

use crate::{MemberId, Timestamp};

/// Longest resource path.
pub const PATH_BYTES_MAX: usize = 1024;
/// Most segments in a resource path.
pub const PATH_SEGMENTS_MAX: usize = 32;
/// Most resource patterns in one grant.
pub const GRANT_RESOURCES_MAX: usize = 32;
/// Longest grant purpose.
pub const PURPOSE_BYTES_MAX: usize = 256;
/// Longest member name.
pub const NAME_BYTES_MAX: usize = 64;
/// Longest chain id.
pub const CHAIN_ID_BYTES_MAX: usize = 64;
/// Most members in a consortium.
pub const MEMBERS_MAX: usize = 256;

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Fetch an object.
    Read,
    /// List objects under a prefix.
    List,
    /// Store or replace an object.
    Write,
    /// Remove an object.
    Delete,
}

impl Action {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::List => "list",
            Action::Write => "write",
            Action::Delete => "delete",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Action::Read),
            "list" => Ok(Action::List),
            "write" => Ok(Action::Write),
            "delete" => Ok(Action::Delete),
            other => Err(format!(
                "unknown action {other:?} (read, list, write, delete)"
            )),
        }
    }
}

/// Why a string is not a resource path or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty.
    #[error("empty path")]
    Empty,
    /// Longer than [`PATH_BYTES_MAX`].
    #[error("path is longer than {PATH_BYTES_MAX} bytes")]
    TooLong,
    /// More than [`PATH_SEGMENTS_MAX`] segments.
    #[error("path has more than {PATH_SEGMENTS_MAX} segments")]
    TooManySegments,
    /// An empty segment (`a//b`, leading or trailing `/`).
    #[error("empty path segment (leading, trailing or double '/')")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("'.' and '..' segments are not allowed")]
    DotSegment,
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("character {0:?} is not allowed (use A-Z a-z 0-9 . _ -)")]
    Character(char),
}

/// A validated object path: `/`-separated segments of `[A-Za-z0-9._-]`,
/// no `.` or `..`, no empty segment. Nothing it names can escape its
/// owner's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourcePath(String);

impl ResourcePath {
    /// Validates `text`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        if text.len() > PATH_BYTES_MAX {
            return Err(PathError::TooLong);
        }
        let mut segments = 0;
        for segment in text.split('/') {
            segments += 1;
            if segments > PATH_SEGMENTS_MAX {
                return Err(PathError::TooManySegments);
            }
            if segment.is_empty() {
                return Err(PathError::EmptySegment);
            }
            if segment == "." || segment == ".." {
                return Err(PathError::DotSegment);
            }
            if let Some(c) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                return Err(PathError::Character(c));
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ResourcePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResourcePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Which of the grantor's resources a grant covers: `*` (everything), a
/// prefix `datasets/shipments/*` (every path strictly under it, at any
/// depth), or one exact path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourcePattern {
    /// Everything the grantor serves.
    All,
    /// Every path strictly under the prefix.
    Prefix(ResourcePath),
    /// Exactly this path.
    Exact(ResourcePath),
}

impl ResourcePattern {
    /// Parses `*`, `prefix/*` or an exact path.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text == "*" {
            return Ok(Self::All);
        }
        match text.strip_suffix("/*") {
            Some(prefix) => ResourcePath::parse(prefix).map(Self::Prefix),
            None => ResourcePath::parse(text).map(Self::Exact),
        }
    }

    /// Whether `path` is covered.
    pub fn matches(&self, path: &ResourcePath) -> bool {
        match self {
            Self::All => true,
            Self::Exact(p) => p == path,
            Self::Prefix(prefix) => path
                .as_str()
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
        }
    }
}

impl ResourcePattern {
    /// Whether every path `inner` covers, this pattern covers too (`a/*`
    /// covers `a/b/*` and `a/b`; nothing but `*` covers `*`).
    pub fn covers(&self, inner: &ResourcePattern) -> bool {
        match (self, inner) {
            (Self::All, _) => true,
            (_, Self::All) => false,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), Self::Prefix(_)) => false,
            (Self::Prefix(_), Self::Exact(path)) => self.matches(path),
            (Self::Prefix(a), Self::Prefix(b)) => a == b || self.matches(b),
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Prefix(p) => write!(f, "{p}/*"),
            Self::Exact(p) => write!(f, "{p}"),
        }
    }
}

impl Serialize for ResourcePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourcePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A grant's id: the id of the ledger entry that created it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantId(pub [u8; 32]);

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantId({})", &self.to_string()[..12])
    }
}

impl FromStr for GrantId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::primitives::parse_hex32(s)
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not a grant id (64 hex digits)"))
    }
}

crate::bytes32!(GrantId, "a 32-byte grant id");

/// How often a grantee may call under a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window, in seconds.
    pub per_seconds: u32,
}

/// What a grant says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTerms {
    /// The member whose data it is.
    pub grantor: MemberId,
    /// The member that may access it.
    pub grantee: MemberId,
    /// What it covers (1 to 32 patterns).
    pub resources: Vec<ResourcePattern>,
    /// What it allows (sorted, unique, non-empty).
    pub actions: Vec<Action>,
    /// From when (inclusive).
    pub not_before: Timestamp,
    /// Until when (exclusive).
    pub not_after: Timestamp,
    /// Why (for the record and the audit log).
    pub purpose: Option<String>,
    /// Optional rate limit, enforced by the grantor's gateway.
    pub rate_limit: Option<RateLimit>,
}

/// A member to admit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMember {
    /// Short name: 1 to 64 of `[a-z0-9-]`.
    pub name: String,
    /// Its key.
    pub did: Did,
}

/// Consortium-wide settings, changed by quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// How long a proposal may gather endorsements before it expires; also
    /// how long after its creation it may still be committed.
    pub proposal_ttl_ms: u64,
    /// Longest grant window (`not_after - not_before`).
    pub grant_duration_max_ms: u64,
}

impl Policy {
    /// Shortest allowed proposal TTL.
    pub const PROPOSAL_TTL_MIN_MS: u64 = 10_000;
    /// Longest allowed proposal TTL.
    pub const PROPOSAL_TTL_MAX_MS: u64 = 7 * 24 * 3_600_000;
}

impl Default for Policy {
    /// Proposals live 10 minutes; grants last at most 2 years.
    fn default() -> Self {
        Self {
            proposal_ttl_ms: 10 * 60_000,
            grant_duration_max_ms: 2 * 366 * 24 * 3_600_000,
        }
    }
}

/// The first entry of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The consortium's chain id.
    pub chain_id: String,
    /// The founding members.
    pub members: Vec<NewMember>,
    /// Initial policy.
    pub policy: Policy,
    /// When the chain starts.
    pub time: Timestamp,
}

/// What a ledger entry does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Starts the chain.
    Genesis(Genesis),
    /// Admits a member.
    AddMember(NewMember),
    /// Removes a member, ending every grant it gave or received.
    RemoveMember {
        /// The member.
        member: MemberId,
    },
    /// Replaces a member's key.
    RotateKey {
        /// The member.
        member: MemberId,
        /// Its new key.
        new_did: Did,
    },
    /// Grants access.
    Grant(GrantTerms),
    /// Ends a grant, for good.
    Revoke {
        /// The grant.
        grant: GrantId,
    },
    /// Changes the policy.
    SetPolicy(Policy),
}

impl Body {
    /// The kind's name, for messages and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Genesis(_) => "genesis",
            Body::AddMember(_) => "add-member",
            Body::RemoveMember { .. } => "remove-member",
            Body::RotateKey { .. } => "rotate-key",
            Body::Grant(_) => "grant",
            Body::Revoke { .. } => "revoke",
            Body::SetPolicy(_) => "set-policy",
        }
    }

    /// Whether it changes the member set (and so the epoch).
    pub fn changes_membership(&self) -> bool {
        matches!(
            self,
            Body::AddMember(_) | Body::RemoveMember { .. } | Body::RotateKey { .. }
        )
    }
}

/// A member of the consortium.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Stable id.
    pub id: MemberId,
    /// Name.
    pub name: String,
    /// Current key.
    pub did: Did,
    /// The epoch from which it votes.
    pub joined_epoch: u64,
}

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantStatus {
    /// In force (within its window).
    Active,
    /// Revoked at this height.
    Revoked {
        /// The height of the revoking block.
        height: u64,
    },
    /// Ended because a party was removed, at this height.
    Ended {
        /// The height of the removal.
        height: u64,
    },
}

/// A committed grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// Its terms.
    pub terms: GrantTerms,
    /// Its status.
    pub status: GrantStatus,
    /// The height that committed it.
    pub committed_height: u64,
}
