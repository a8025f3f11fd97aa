//! Who calls the local API: principals, their roles, and the bootstrap
//! admin token.
//!
//! A request carries `Authorization: Bearer <token>`. The node resolves the
//! token to a [`Principal`] (see [`crate::local::Node::authenticate`]): the
//! home's `admin.token` is the bootstrap `admin`; named tokens made with
//! `quorate token create` carry the roles they were given. Each route
//! declares the roles that may call it ([`crate::local::access`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What a principal may do on the local API. `admin` may do everything;
/// each other role opens a set of routes (the table in
/// [`crate::local::access`], shown per operation in `/openapi.json`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, token management included.
    Admin,
    /// Proposes, and decides proposals (approve, reject).
    Approver,
    /// Writes and deletes the organization's objects.
    Publisher,
    /// Reads objects (its own and what peers grant), grants, members,
    /// proposals and the ledger.
    Reader,
    /// Reads the audit log, the ledger and its export; changes nothing.
    Auditor,
    /// `/metrics` only.
    Metrics,
}

impl Role {
    /// Every role, in the order the documentation lists them.
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Approver,
        Role::Publisher,
        Role::Reader,
        Role::Auditor,
        Role::Metrics,
    ];

    /// Its name, as the API and CLI spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Approver => "approver",
            Role::Publisher => "publisher",
            Role::Reader => "reader",
            Role::Auditor => "auditor",
            Role::Metrics => "metrics",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Roles(u8);

impl Roles {
    /// No role.
    pub const NONE: Roles = Roles(0);

    /// The set of `roles`.
    pub const fn of(roles: &[Role]) -> Roles {
        let mut bits = 0;
        let mut i = 0;
        while i < roles.len() {
            bits |= roles[i].bit();
            i += 1;
        }
        Roles(bits)
    }

    /// Whether `role` is in the set.
    pub const fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether the two sets share a role.
    pub const fn intersects(self, other: Roles) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Its roles, in [`Role::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Its roles' names, comma-separated (`-` when empty).
    pub fn names(self) -> String {
        if self.is_empty() {
            return "-".to_owned();
        }
        self.iter().map(Role::name).collect::<Vec<_>>().join(", ")
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        Roles(roles.into_iter().fold(0, |bits, r| bits | r.bit()))
    }
}

/// Who made a request, once its token is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How the audit log names it: `admin` (the bootstrap token) or
    /// `token:<name>`.
    pub label: String,
    /// What it may do.
    pub roles: Roles,
    /// When its token expires (ms since the Unix epoch), if it does.
    pub expires_ms: Option<u64>,
}

impl Principal {
    /// The bootstrap administrator (the home's `admin.token`).
    pub fn admin() -> Self {
        Self {
            label: "admin".to_owned(),
            roles: Roles::of(&[Role::Admin]),
            expires_ms: None,
        }
    }

    /// Whether it may call a route open to `allowed` (admin may call any).
    pub fn may(&self, allowed: Roles) -> bool {
        self.roles.contains(Role::Admin) || self.roles.intersects(allowed)
    }
}

/// Why a bearer token was not accepted (each a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    /// No `Authorization: Bearer …` header.
    #[error(
        "the local API needs `Authorization: Bearer <token>` (the node home's admin.token, or a token from `quorate token create`)"
    )]
    Missing,
    /// A token this node did not issue, or one that was revoked.
    #[error("the token is not valid (unknown, or revoked)")]
    Invalid,
    /// A bearer JWT the organization's identity provider did not sign for
    /// this node, or whose claims do not hold.
    #[error("the bearer JWT is refused: {0}")]
    Jwt(String),
    /// A named token past its expiry.
    #[error("the token `{name}` expired; ask an administrator for a new one")]
    Expired {
        /// The token's name.
        name: String,
    },
}

/// The admin token the local API accepts.
#[derive(Clone)]
pub struct AdminToken(std::sync::Arc<str>);

impl AdminToken {
    /// Wraps the token read from the node home.
    pub fn new(token: &str) -> Self {
        Self(token.trim().into())
    }

    /// Whether `presented` is the token, in time independent of where they
    /// differ.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The bearer token of a request's `Authorization` header, if it has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_name_parse_and_sets_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::Value::from(role.name())
            );
        }
        assert_eq!(Role::parse("root"), None);
        let set = Roles::of(&[Role::Reader, Role::Auditor]);
        assert_eq!(set.names(), "reader, auditor");
        assert!(set.contains(Role::Reader) && !set.contains(Role::Approver));
        assert_eq!(set.iter().collect::<Roles>(), set);
        assert_eq!(Roles::NONE.names(), "-");
    }

    #[test]
    fn admin_may_call_anything_and_others_only_their_routes() {
        let audit_only = Roles::of(&[Role::Auditor]);
        assert!(Principal::admin().may(audit_only));
        assert!(Principal::admin().may(Roles::NONE));
        let reader = Principal {
            label: "token:r".into(),
            roles: Roles::of(&[Role::Reader]),
            expires_ms: None,
        };
        assert!(!reader.may(audit_only));
        assert!(reader.may(Roles::of(&[Role::Reader, Role::Publisher])));
        assert!(!reader.may(Roles::NONE), "no route is open to nobody");
    }
}
