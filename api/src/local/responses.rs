//! What the local API answers: one type per route's body, each with the
//! JSON Schema that `/openapi.json` carries for it (see [`super::openapi`]).
//!
//! Field names and shapes are a contract with clients (the CLI, scripts,
//! the end-to-end tests): add fields, never rename or retype one.

use std::collections::BTreeMap;

use quorate_contracts::Action;
use schemars::JsonSchema;
use serde::Serialize;

pub use crate::objects::{Listing, ObjectInfo};

/// `GET /v1/status`: where this node stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NodeStatus {
    /// Committed height.
    pub height: u64,
    /// The tip block's hash (empty until the ledger is open).
    #[schemars(regex(pattern = r"^([0-9a-f]{64})?$"))]
    pub tip_hash: String,
    /// The tip block's time (ms since the Unix epoch).
    pub tip_time_ms: u64,
    /// The member set's epoch.
    pub epoch: u64,
    /// Members in the epoch.
    pub members: u64,
    /// Whether this node is a member (a validator).
    pub is_member: bool,
    /// Connected peers.
    pub peers: u64,
    /// Open proposals.
    pub pending_proposals: u64,
    /// Equivocations detected.
    pub evidence: u64,
    /// Peer messages dropped, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Decided blocks adopted on the check made when they were proposed.
    pub decided_reusing_check: u64,
    /// Decided blocks checked again.
    pub decided_rechecked: u64,
    /// Milliseconds since this node last committed or synced a block;
    /// absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_age_ms: Option<u64>,
}

/// `POST /v1/proposals`: the new proposal's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ProposalId {
    /// The proposal's (and, once committed, the entry's) id.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub id: String,
}

/// One proposal in `GET /v1/proposals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ProposalView {
    /// Its id.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub id: String,
    /// The proposer's name.
    pub proposer: String,
    /// What is proposed, with members by name.
    pub body: ProposalBody,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ProposalState,
    /// This node's decision.
    pub decision: LocalDecision,
    /// Members that endorsed it, by name.
    pub endorsers: Vec<String>,
    /// Members that rejected it, with their reasons (signed by each and
    /// gossiped, so every member sees the same).
    pub rejections: Vec<RejectionView>,
    /// What this node's endorsement policy said of it (`rule NAME:
    /// endorse`), once asked; absent for this node's own proposals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// When the proposer made it (ms since the Unix epoch).
    pub created_at_ms: u64,
}

/// A member's rejection of a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RejectionView {
    /// The member, by name.
    pub member: String,
    /// Why, as it signed it.
    pub reason: String,
}

/// What a proposal proposes, by `kind`, with members by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ProposalBody {
    /// The consortium's first block.
    Genesis {},
    /// Admit an organization.
    AddMember {
        /// Its name.
        name: String,
        /// Its did:key.
        did: String,
    },
    /// Remove a member.
    RemoveMember {
        /// Its name.
        member: String,
    },
    /// Move a member to a new key.
    RotateKey {
        /// Its name.
        member: String,
        /// The new did:key.
        new_did: String,
    },
    /// Grant access.
    Grant(GrantTerms),
    /// Revoke a grant.
    Revoke {
        /// The grant's id.
        #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
        grant: String,
    },
    /// Change the consortium's policy.
    SetPolicy {
        /// The policy, as text.
        policy: String,
    },
}

/// Where a proposal stands (`state`, with what that state carries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ProposalState {
    /// Waiting for endorsements.
    Pending {
        /// Members that endorsed so far.
        endorsements: u64,
        /// How many the rules require.
        required: u32,
    },
    /// Endorsed enough; waits for a block.
    Eligible,
    /// In the ledger (a grant's id is the proposal's).
    Committed {
        /// The block's height.
        height: u64,
    },
    /// Can no longer be committed: rejected by too many members, or
    /// refused by the rules as the ledger moved on.
    Failed {
        /// Why, with who rejected it.
        reason: String,
    },
    /// Withdrawn by its proposer.
    Withdrawn,
    /// Did not gather its endorsements in time.
    Expired,
}

/// This node's decision on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LocalDecision {
    /// Not decided (the endorsement policy asks a person, who has not
    /// acted yet).
    Undecided,
    /// Endorsed.
    Endorsed,
    /// Refused.
    Refused,
}

/// A grant's terms, with members by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GrantTerms {
    /// The member whose data it is.
    pub grantor: String,
    /// The member it lets in.
    pub grantee: String,
    /// Patterns: `*`, `prefix/*` or an exact path.
    pub resources: Vec<String>,
    /// What it allows.
    #[schemars(with = "Vec<ActionName>")]
    pub actions: Vec<Action>,
    /// Start (ms since the Unix epoch).
    pub not_before_ms: u64,
    /// End (ms since the Unix epoch, exclusive).
    pub not_after_ms: u64,
    /// Why.
    pub purpose: Option<String>,
}

/// [`Action`] as its schema says it (the contracts crate knows no schemas).
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Action")]
#[allow(dead_code)] // only its schema is used
enum ActionName {
    Read,
    List,
    Write,
}

/// A committed grant (`GET /v1/grants/{id}`, and each of `GET /v1/grants`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GrantView {
    /// Its id.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub id: String,
    /// Its terms.
    #[serde(flatten)]
    pub terms: GrantTerms,
    /// Its status on the ledger.
    pub status: LedgerGrantStatus,
    /// The height of the block that committed it.
    pub committed_height: u64,
    /// What its status means at the tip's time: `active`, `expired`,
    /// `not-yet-valid`, `revoked` or `ended`.
    pub standing: Standing,
    /// The tip's time the standing is judged at (ms since the Unix epoch).
    pub as_of_ms: u64,
}

/// A grant's status as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum LedgerGrantStatus {
    /// Not revoked or ended (its window decides whether it is in force).
    Active,
    /// Revoked.
    Revoked {
        /// The revoking block's height.
        height: u64,
    },
    /// Ended because a party was removed.
    Ended {
        /// The removal's height.
        height: u64,
    },
}

/// A grant's standing at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    /// In force.
    Active,
    /// Its window is over.
    Expired,
    /// Its window has not started.
    NotYetValid,
    /// Revoked.
    Revoked,
    /// Ended with a party's membership.
    Ended,
}

impl Standing {
    /// As filters and views spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Expired => "expired",
            Standing::NotYetValid => "not-yet-valid",
            Standing::Revoked => "revoked",
            Standing::Ended => "ended",
        }
    }
}

/// One page of grants, and where the next begins if there may be more
/// (the handler turns it into a `Link` header).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantPage {
    /// The grants, in id order.
    pub grants: Vec<GrantView>,
    /// The `after` of the next page, if the listing may go on.
    pub next_after: Option<String>,
}

/// `GET /v1/identity`: this organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Identity {
    /// Its member name.
    pub name: String,
    /// Its did:key.
    pub did: String,
    /// Its member id, once it is a member.
    pub member_id: Option<String>,
    /// Its DID document.
    #[schemars(with = "DidDocumentSchema")]
    pub document: quorate_did::DidDocument,
}

/// The schema of [`quorate_did::DidDocument`] (the did crate knows no
/// schemas).
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "DidDocument")]
#[allow(dead_code)] // only its schema is used
struct DidDocumentSchema {
    #[serde(rename = "@context")]
    context: Vec<String>,
    id: String,
    verification_method: Vec<VerificationMethodSchema>,
    authentication: Vec<String>,
    assertion_method: Vec<String>,
    capability_invocation: Vec<String>,
    capability_delegation: Vec<String>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "VerificationMethod")]
#[allow(dead_code)] // only its schema is used
struct VerificationMethodSchema {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    controller: String,
    public_key_multibase: String,
}

/// `GET /v1/members` and `GET /v1/peers`: the current members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Members {
    /// The member set's epoch.
    pub epoch: u64,
    /// The members.
    pub members: Vec<MemberView>,
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct MemberView {
    /// Its name.
    pub name: String,
    /// Its did:key.
    pub did: String,
    /// Its member id.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub id: String,
    /// Whether it is this node.
    pub is_me: bool,
}

/// One record of `GET /v1/audit`: a gateway decision, hash-chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct AuditRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When (ms since the Unix epoch).
    pub time_ms: u64,
    /// `http` (signed), `p2p` (libp2p) or `local`.
    pub transport: String,
    /// The caller's DID, when it was authenticated.
    pub caller: Option<String>,
    /// `read`, `list`, `write` or `delete`.
    pub action: String,
    /// The resource asked for.
    pub resource: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// Why it was denied (a problem type's code), or why it failed.
    pub reason: Option<String>,
    /// The grant that allowed it.
    pub grant: Option<String>,
    /// Bytes of data sent (for a write: received).
    pub bytes: u64,
    /// The purpose the caller declared, if it declared one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// For a write that was stored: the sha-256 of what was written
    /// (`sha-256=:<base64>:`, as `Content-Digest` writes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The previous record's hash.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
}

/// `GET /v1/ledger/entries/{id}`: where a committed entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EntryLocation {
    /// The entry.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub id: String,
    /// Its block's height.
    pub height: u64,
    /// Its place in the block.
    pub index: u32,
}

/// `GET /v1/ledger`: the committed chain at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LedgerSummary {
    /// The consortium's chain id.
    pub chain_id: String,
    /// The genesis block's hash (the chain's identity).
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub genesis_hash: String,
    /// Committed height.
    pub height: u64,
    /// The tip block's hash.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub tip_hash: String,
    /// The tip block's time (ms since the Unix epoch).
    pub tip_time_ms: u64,
    /// The member set's epoch.
    pub epoch: u64,
    /// Members in the epoch.
    pub members: u64,
    /// Grants in force at the tip's time.
    pub active_grants: u64,
    /// Grants ever committed.
    pub grants: u64,
}

/// `GET /v1/ledger/blocks/{height}`: a committed block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct BlockView {
    /// Its height.
    pub height: u64,
    /// Its hash.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub hash: String,
    /// The previous block's hash.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub prev_hash: String,
    /// The member set's epoch.
    pub epoch: u64,
    /// Its time (ms since the Unix epoch).
    pub time_ms: u64,
    /// The proposer's name.
    pub proposer: String,
    /// The root of its entries.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub tx_root: String,
    /// The root of the state after it.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub state_root: String,
    /// Its entries.
    pub entries: Vec<BlockEntry>,
    /// Who committed it.
    pub certificate: CertificateView,
}

/// An entry of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct BlockEntry {
    /// Its id.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub id: String,
    /// Its body's kind (`grant`, `revoke`, `add-member`, …).
    pub kind: String,
    /// The proposer's name.
    pub proposer: String,
    /// How many members endorsed it.
    pub endorsements: u64,
}

/// A block's commit certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CertificateView {
    /// The round it was decided in.
    pub round: u32,
    /// The signing validators, by index in the epoch's order.
    pub signers: Vec<u16>,
}

/// `GET /v1/principal`: who the caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PrincipalView {
    /// How the audit log names it: `admin`, or `token:<name>`.
    pub principal: String,
    /// Its roles.
    pub roles: Vec<crate::auth::Role>,
    /// When its token expires (ms since the Unix epoch), if it does.
    pub expires_ms: Option<u64>,
}

/// One named API token, as `GET /v1/tokens` lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct TokenView {
    /// Its name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<crate::auth::Role>,
    /// When it was made (ms since the Unix epoch).
    pub created_ms: u64,
    /// When it expires (ms since the Unix epoch), if it does.
    pub expires_ms: Option<u64>,
    /// Whether it has expired (it stays listed until revoked).
    pub expired: bool,
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Tokens {
    /// Every named token, by name.
    pub tokens: Vec<TokenView>,
}

/// A single-sign-on token revocation in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct JwtRevocationView {
    /// Tokens of this `sub` issued until `revoked_ms` are refused.
    pub subject: Option<String>,
    /// The token with this `jti` is refused.
    pub jti: Option<String>,
    /// When it was revoked (ms since the Unix epoch).
    pub revoked_ms: u64,
    /// When it is forgotten.
    pub until_ms: u64,
    /// Why.
    pub reason: Option<String>,
}

/// `GET /v1/jwt-revocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct JwtRevocations {
    /// Those in force, oldest first.
    pub revocations: Vec<JwtRevocationView>,
}

/// `GET /v1/upstreams` (and what `POST /v1/upstreams/reload` put in
/// force): the upstream routes and the health of each URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UpstreamsView {
    /// The routes, in the config's order.
    pub routes: Vec<UpstreamRouteView>,
}

/// One upstream route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UpstreamRouteView {
    /// The resource prefix it serves (`erp` serves `erp/...`).
    pub prefix: String,
    /// `round-robin` or `least-connections`.
    pub balance: String,
    /// The limit on the wait for the headers, and between body chunks.
    pub timeout_ms: u64,
    /// Request headers passed on to the service.
    pub request_headers: Vec<String>,
    /// Response headers passed back to the member.
    pub response_headers: Vec<String>,
    /// Its URLs.
    pub urls: Vec<UpstreamUrlView>,
}

/// One URL of an upstream route, and its passive health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct UpstreamUrlView {
    /// The base URL.
    pub url: String,
    /// Calls in flight on it now.
    pub in_flight: u64,
    /// Consecutive failures.
    pub failures: u32,
    /// Whether its circuit is open: it is skipped until a cool-down ends,
    /// then one trial call decides.
    pub open: bool,
}

/// `POST /v1/tokens`: the token made, with its secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NewToken {
    /// What was stored.
    #[serde(flatten)]
    pub view: TokenView,
    /// The bearer token. The node keeps only its hash: it cannot be shown
    /// again.
    pub token: String,
}

/// One event of `GET /v1/events` (sent as a Server-Sent Event: `id`, `event`
/// and `data`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LiveEvent {
    /// Its id; ids only grow (send the last one seen as `Last-Event-ID` to
    /// resume).
    pub id: u64,
    /// `block`, `entry-committed`, `grant-committed` (its id, height and
    /// terms),
    /// `grant-revoked` (its id and parties), `grant-expiring` (a grant
    /// this organization gives or receives ends within a day),
    /// `proposal-opened`, `proposal-changed` (ProposalViews),
    /// `proposal-closed`, `readiness`, or `reset` (events were missed:
    /// reload what you show).
    pub kind: String,
    /// What happened.
    pub data: serde_json::Value,
}
