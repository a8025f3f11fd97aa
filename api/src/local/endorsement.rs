//! The endorsement policy as a document: what `GET` and `PUT
//! /v1/endorsement-policy` carry, and what the node's
//! `endorsement-policy.toml` holds. The node checks and compiles it; here
//! it is only its shape.

use quorate_contracts::Action;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most rules in a policy.
pub const RULES_MAX: usize = 64;
/// Most values in one of a rule's lists.
pub const RULE_LIST_MAX: usize = 64;

/// Ordered rules: the first that matches a proposal decides what this node
/// does with it. A proposal no rule matches is left to a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndorsementPolicy {
    /// The rules, first match wins.
    #[schemars(length(max = 64))]
    pub rules: Vec<PolicyRule>,
}

/// One rule: every condition it names must hold (an empty list or an
/// absent value holds for anything). Conditions on a grant's terms (`grantors`,
/// `grantees`, `resources`, `actions`, `duration_max`, `purposes`) look at the
/// proposed grant, or for a revocation at the grant it revokes; a rule
/// with any of them matches no other kind of proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// A name for logs, metrics and the proposal list (1 to 64 of a-z,
    /// 0-9, '-'; unique in the policy).
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,64}$"))]
    pub name: String,
    /// Kinds of proposal it is about: grant, revoke, add-member,
    /// remove-member, rotate-key, set-policy, and access-request (a
    /// member's request for access to this organization's data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub kinds: Vec<ProposalKind>,
    /// How the proposer stands to what it proposes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub proposer_is: Vec<Relation>,
    /// Proposers by member name (`me` for this organization).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub proposers: Vec<String>,
    /// Grantors by member name (`me` for this organization).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub grantors: Vec<String>,
    /// Grantees by member name (`me` for this organization).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub grantees: Vec<String>,
    /// Every resource pattern of the grant must fall within one of these
    /// (`*`, `prefix/*` or an exact path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub resources: Vec<String>,
    /// Every action of the grant must be one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(with = "Vec<PolicyAction>")]
    pub actions: Vec<Action>,
    /// The grant lasts at most this long (`90m`, `12h`, `30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_max: Option<String>,
    /// The grant names one of these purposes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub purposes: Vec<String>,
    /// What to do with a proposal it matches.
    pub outcome: Outcome,
    /// For `reject`: the reason the proposer reads (1 to 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub reason: Option<String>,
}

/// A kind of proposal.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProposalKind {
    /// A grant.
    Grant,
    /// A revocation.
    Revoke,
    /// Admitting a member.
    AddMember,
    /// Removing a member.
    RemoveMember,
    /// A member's new key.
    RotateKey,
    /// The consortium's policy.
    SetPolicy,
    /// Not a proposal: a member's request for access to this
    /// organization's data. `endorse` accepts it (this organization
    /// proposes the grant), `reject` declines it with the rule's reason,
    /// `ask` leaves it to a person. The requester is its proposer and its
    /// grantee, this organization its grantor.
    AccessRequest,
}

impl ProposalKind {
    /// The kinds that are proposals on the ledger (all but
    /// [`ProposalKind::AccessRequest`]).
    pub const PROPOSALS: [ProposalKind; 6] = [
        ProposalKind::Grant,
        ProposalKind::Revoke,
        ProposalKind::AddMember,
        ProposalKind::RemoveMember,
        ProposalKind::RotateKey,
        ProposalKind::SetPolicy,
    ];
}

/// How a proposer stands to its proposal.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// This organization proposed it.
    Me,
    /// The grantor of the grant proposed or revoked.
    Grantor,
    /// The grantee of the grant revoked.
    Grantee,
    /// The member a removal or key rotation is about.
    Subject,
    /// None of those: a third party.
    Other,
}

/// What a rule does with a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Endorse it (sign and gossip the endorsement).
    Endorse,
    /// Reject it, with the rule's reason (signed and gossiped).
    Reject,
    /// Leave it to a person with the `approver` role.
    Ask,
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "PolicyAction")]
#[allow(dead_code)] // only its schema is used
enum PolicyAction {
    Read,
    List,
    Write,
}

/// `GET /v1/endorsement-policy`: the policy in force and where it comes
/// from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EndorsementPolicyView {
    /// `file` (the home's `endorsement-policy.toml`), `default` (no file:
    /// the built-in rules), or `approval = "auto"` / `approval = "manual"`
    /// (the config's shorthands, which a `PUT` cannot replace).
    pub source: String,
    /// The rules in force.
    #[serde(flatten)]
    pub policy: EndorsementPolicy,
}

impl EndorsementPolicy {
    /// The rules a careful consortium member starts with: endorse grants
    /// proposed by their grantor (the consortium's rules already hold them
    /// to its policy's limits), revocations by a party to the grant, and a
    /// member's rotation of its own key; leave everything else (membership
    /// changes, third parties' revocations, policy changes) to a person.
    pub fn careful() -> Self {
        let rule = |name: &str, kinds: Vec<ProposalKind>, proposer_is: Vec<Relation>, outcome| {
            PolicyRule {
                name: name.to_owned(),
                kinds,
                proposer_is,
                proposers: Vec::new(),
                grantors: Vec::new(),
                grantees: Vec::new(),
                resources: Vec::new(),
                actions: Vec::new(),
                duration_max: None,
                purposes: Vec::new(),
                outcome,
                reason: None,
            }
        };
        Self {
            rules: vec![
                rule(
                    "grants-by-their-grantor",
                    vec![ProposalKind::Grant],
                    vec![Relation::Grantor],
                    Outcome::Endorse,
                ),
                rule(
                    "revocations-by-a-party",
                    vec![ProposalKind::Revoke],
                    vec![Relation::Grantor, Relation::Grantee],
                    Outcome::Endorse,
                ),
                rule(
                    "own-key-rotations",
                    vec![ProposalKind::RotateKey],
                    vec![Relation::Subject],
                    Outcome::Endorse,
                ),
                rule("everything-else", Vec::new(), Vec::new(), Outcome::Ask),
            ],
        }
    }

    /// One rule with one outcome for every proposal (the shorthands
    /// `approval = "auto"` and `"manual"`). Access requests are not
    /// proposals: no shorthand hands out data, so a person decides them.
    pub fn always(name: &str, outcome: Outcome) -> Self {
        let mut policy = Self::careful();
        policy.rules.truncate(1);
        policy.rules[0].name = name.to_owned();
        policy.rules[0].kinds = ProposalKind::PROPOSALS.to_vec();
        policy.rules[0].proposer_is.clear();
        policy.rules[0].outcome = outcome;
        policy
    }
}
