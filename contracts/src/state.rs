//! The consortium state and the rules that change it.
//!
//! Every node applies the same entries to the same state and gets the same
//! result: the functions here are deterministic and read no clock. An entry
//! that breaks a rule changes nothing.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use imbl::OrdMap;
use quorate_did::Did;
use serde::{Deserialize, Serialize};

use crate::grants::{GrantCounts, GrantRows, Grants, RowsError};
use crate::model::*;
use crate::primitives::{human_duration_ms, rfc3339_ms};
use crate::{MemberId, Timestamp};

/// `⌊2n/3⌋ + 1`: the members whose agreement makes a decision, tolerating
/// `⌊(n−1)/3⌋` faulty ones.
pub fn quorum(n: usize) -> u32 {
    (2 * n / 3 + 1) as u32
}

/// `⌊(n−1)/3⌋`: how many faulty members a consortium of `n` tolerates.
pub fn max_faulty(n: usize) -> u32 {
    (n.saturating_sub(1) / 3) as u32
}

/// Why an entry is refused. Each variant is one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum Violation {
    /// The proposer is not a current member.
    #[error("proposer {0} is not a member")]
    ProposerNotMember(MemberId),
    /// Someone other than the grantor proposed a grant.
    #[error("only the grantor may propose a grant of its data")]
    NotGrantor,
    /// A party of the grant is not a member.
    #[error("{0} is not a member")]
    NotAMember(MemberId),
    /// The grantor grants to itself.
    #[error("a member cannot grant to itself")]
    SelfGrant,
    /// The window is empty or already over.
    #[error(
        "the grant window is empty or over (not_before {}, not_after {})",
        rfc3339_ms(*.not_before),
        rfc3339_ms(*.not_after)
    )]
    Window {
        /// not_before (ms).
        not_before: u64,
        /// not_after (ms).
        not_after: u64,
    },
    /// The window is longer than the policy allows.
    #[error("the grant lasts longer than the policy's {}", human_duration_ms(*.max_ms))]
    TooLong {
        /// The policy's maximum.
        max_ms: u64,
    },
    /// Resources or actions are empty, too many, or not sorted/unique.
    #[error("{0}")]
    Terms(&'static str),
    /// The purpose is too long.
    #[error("purpose is longer than {PURPOSE_BYTES_MAX} bytes")]
    Purpose,
    /// A zero rate limit.
    #[error("a rate limit needs at least one request per at least one second")]
    RateLimit,
    /// No such grant.
    #[error("no grant {0}")]
    UnknownGrant(GrantId),
    /// The grant is not active (revocation is terminal).
    #[error("grant {0} is not active")]
    GrantNotActive(GrantId),
    /// A grant id reused.
    #[error("grant {0} exists already: ids are never reused")]
    GrantExists(GrantId),
    /// A member name that is taken or malformed.
    #[error("member name {0:?} is taken or invalid (1 to 64 of a-z, 0-9, '-')")]
    Name(String),
    /// A DID already used by a member.
    #[error("{0} is already a member's key")]
    DidInUse(String),
    /// A member id reused.
    #[error("member id {0} exists already")]
    MemberExists(MemberId),
    /// Removing the last member.
    #[error("the last member cannot be removed")]
    LastMember,
    /// Too many members.
    #[error("a consortium has at most {MEMBERS_MAX} members")]
    TooManyMembers,
    /// Rotation proposed by someone else.
    #[error("only the member itself may propose a rotation of its key")]
    NotSelf,
    /// A policy value out of range.
    #[error("policy out of range: {0}")]
    Policy(&'static str),
    /// A genesis after genesis, or an invalid genesis.
    #[error("genesis: {0}")]
    Genesis(&'static str),
    /// The endorsements do not meet the requirement.
    #[error("{have} of the {need} required endorsements{missing}")]
    Endorsements {
        /// Valid member endorsements.
        have: u32,
        /// Required.
        need: u32,
        /// Which required signer is missing, if any.
        missing: String,
    },
    /// An endorser is not a member.
    #[error("endorser {0} is not a member")]
    EndorserNotMember(MemberId),
    /// Not a rule: this node could not read its grant rows, so it cannot
    /// judge the entry and refuses it here. Another node may accept it.
    #[error("{0}")]
    Unreadable(RowsError),
}

impl From<RowsError> for Violation {
    fn from(e: RowsError) -> Self {
        Violation::Unreadable(e)
    }
}

/// Whose endorsements an entry needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// Distinct member endorsements needed (the proposer's counts).
    pub quorum: u32,
    /// Members whose endorsement is required whatever the count.
    pub must_include: Vec<MemberId>,
}

/// Where an entry is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyContext {
    /// The entry's id (becomes the grant or member id).
    pub entry_id: [u8; 32],
    /// The block height.
    pub height: u64,
    /// The block time.
    pub time: Timestamp,
}

/// The consortium-wide part of the state: one row of its own in a store
/// and one leaf of the state tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consortium {
    /// The chain id.
    pub chain_id: String,
    /// Bumped by every membership change.
    pub epoch: u64,
    /// The policy.
    pub policy: Policy,
    /// Proposals created before this time are refused: set to the block
    /// time when a policy raises the proposal TTL, so an entry that left
    /// the replay window under the shorter TTL can never be fresh again.
    pub proposals_since: Timestamp,
}

/// What applying entries changed, key by key: what a store rewrites and
/// the state tree rehashes, so a block costs its changes, not the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Members added, changed or removed.
    pub members: BTreeSet<MemberId>,
    /// Grants added or whose status changed.
    pub grants: BTreeSet<GrantId>,
    /// The chain id, the epoch or the policy changed.
    pub consortium: bool,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.grants.is_empty() && !self.consortium
    }
}

/// The consortium state: members, grants, policy. Its maps are persistent
/// (`imbl`): a clone shares every node with the original, so taking the
/// state to check a block, or handing it to the gateway, costs O(1), and a
/// change copies O(log n). Grants are read through a store's snapshot
/// ([`GrantRows`]) when the state has one, with only the grants changed
/// since in memory; members (at most [`MEMBERS_MAX`]) always are. Indexes
/// are derived, never stored. Two states are equal when their members,
/// grants and consortium rows are (comparing reads every grant: O(n)).
#[derive(Debug, Clone)]
pub struct State {
    /// The chain id.
    pub chain_id: String,
    /// Bumped by every membership change.
    pub epoch: u64,
    /// Current members by id.
    pub members: OrdMap<MemberId, Member>,
    /// Every grant ever committed: a base and the changes since.
    grants: Grants,
    /// The policy.
    pub policy: Policy,
    /// See [`Consortium::proposals_since`].
    pub proposals_since: Timestamp,
    index: Index,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.chain_id == other.chain_id
            && self.epoch == other.epoch
            && self.members == other.members
            && self.policy == other.policy
            && self.grant_counts() == other.grant_counts()
            && self.proposals_since == other.proposals_since
            && self.same_grants(other)
    }
}

impl State {
    /// Whether both states hold the same grants, read row by row: O(n),
    /// for tests and offline checks. A failed read compares unequal.
    pub fn same_grants(&self, other: &State) -> bool {
        let collect = |s: &State| -> Result<Vec<(GrantId, GrantRecord)>, RowsError> {
            let mut out = Vec::new();
            s.visit_grants(None, &mut |id, r| {
                out.push((id, r.clone()));
                ControlFlow::Continue(())
            })?;
            Ok(out)
        };
        matches!((collect(self), collect(other)), (Ok(a), Ok(b)) if a == b)
    }
}

/// Lookups for the request path; derived, never serialized.
#[derive(Debug, Clone, Default)]
struct Index {
    /// At most `MEMBERS_MAX` entries, so a plain map.
    member_by_key: HashMap<[u8; 32], MemberId>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl State {
    /// The state made of all its rows, grants in memory: O(n log n).
    pub fn from_rows(
        consortium: Consortium,
        members: impl IntoIterator<Item = Member>,
        grants: impl IntoIterator<Item = (GrantId, GrantRecord)>,
    ) -> Self {
        Self::with_grants(consortium, members, Grants::in_memory(grants))
    }

    /// The state of a store: its consortium and member rows, and its grants
    /// read through `base` (counted by `counts`). O(members): what a node
    /// does at start, whatever the number of grants.
    pub fn on_rows(
        consortium: Consortium,
        members: impl IntoIterator<Item = Member>,
        base: Arc<dyn GrantRows>,
        counts: GrantCounts,
    ) -> Self {
        Self::with_grants(consortium, members, Grants::on(base, counts))
    }

    fn with_grants(
        consortium: Consortium,
        members: impl IntoIterator<Item = Member>,
        grants: Grants,
    ) -> Self {
        let mut state = Self {
            chain_id: consortium.chain_id,
            epoch: consortium.epoch,
            members: members.into_iter().map(|m| (m.id, m)).collect(),
            grants,
            policy: consortium.policy,
            proposals_since: consortium.proposals_since,
            index: Index::default(),
        };
        state.reindex_members();
        state
    }

    /// Takes `base` as holding every grant of this state (the store has
    /// written the changes): the changes leave memory.
    pub fn rebase_grants(&mut self, base: Arc<dyn GrantRows>) {
        self.grants.rebase(base);
    }

    /// How many grants there are, and how many are active.
    pub fn grant_counts(&self) -> GrantCounts {
        self.grants.counts()
    }

    /// The record of grant `id`.
    pub fn grant(&self, id: &GrantId) -> Result<Option<GrantRecord>, RowsError> {
        self.grants.get(id)
    }

    /// Visits the grants whose ids are greater than `after` (all, if
    /// `None`), ascending, until `visit` breaks.
    pub fn visit_grants(
        &self,
        after: Option<&GrantId>,
        visit: &mut dyn FnMut(GrantId, &GrantRecord) -> ControlFlow<()>,
    ) -> Result<(), RowsError> {
        self.grants.visit(after, visit)
    }

    /// The ids of every grant, ascending: O(n), for offline checks.
    pub fn grant_ids(&self) -> Result<Vec<GrantId>, RowsError> {
        let mut ids = Vec::new();
        self.visit_grants(None, &mut |id, _| {
            ids.push(id);
            ControlFlow::Continue(())
        })?;
        Ok(ids)
    }

    /// The consortium-wide row.
    pub fn consortium(&self) -> Consortium {
        Consortium {
            chain_id: self.chain_id.clone(),
            epoch: self.epoch,
            policy: self.policy.clone(),
            proposals_since: self.proposals_since,
        }
    }

    /// How many grants are active on the ledger (revoked and ended ones
    /// aside; an active grant past its `not_after` still counts).
    pub fn active_grants(&self) -> u64 {
        self.grants.counts().active
    }

    fn reindex_members(&mut self) {
        self.index.member_by_key = self
            .members
            .values()
            .map(|m| (m.did.public_key_bytes(), m.id))
            .collect();
    }

    /// The state genesis creates; `member_ids` are the ids the ledger
    /// derived for `genesis.members`, in order.
    pub fn genesis(genesis: &Genesis, member_ids: &[MemberId]) -> Result<Self, Violation> {
        if genesis.chain_id.is_empty() || genesis.chain_id.len() > CHAIN_ID_BYTES_MAX {
            return Err(Violation::Genesis("chain id must be 1 to 64 bytes"));
        }
        if genesis.members.is_empty() || genesis.members.len() > MEMBERS_MAX {
            return Err(Violation::Genesis("1 to 256 members"));
        }
        if member_ids.len() != genesis.members.len() {
            return Err(Violation::Genesis("one id per member"));
        }
        check_policy(&genesis.policy)?;
        let mut members = Vec::new();
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for (id, m) in member_ids.iter().zip(&genesis.members) {
            if !valid_name(&m.name) || !names.insert(m.name.clone()) {
                return Err(Violation::Name(m.name.clone()));
            }
            if !keys.insert(m.did.public_key_bytes()) {
                return Err(Violation::DidInUse(m.did.to_string()));
            }
            let member = Member {
                id: *id,
                name: m.name.clone(),
                did: m.did,
                joined_epoch: 0,
            };
            if !ids.insert(*id) {
                return Err(Violation::MemberExists(*id));
            }
            members.push(member);
        }
        let consortium = Consortium {
            chain_id: genesis.chain_id.clone(),
            epoch: 0,
            policy: genesis.policy.clone(),
            proposals_since: Timestamp(0),
        };
        Ok(Self::from_rows(consortium, members, []))
    }

    /// The member holding `did`, if any.
    pub fn member_by_did(&self, did: &Did) -> Option<&Member> {
        self.index
            .member_by_key
            .get(&did.public_key_bytes())
            .and_then(|id| self.members.get(id))
    }

    /// The member that `name_or_did` names: its did:key, or its name in any
    /// case (names are lowercase). The one lookup the API and CLI use.
    pub fn member_named(&self, name_or_did: &str) -> Option<&Member> {
        match name_or_did.parse::<Did>() {
            Ok(did) => self.member_by_did(&did),
            Err(_) => self
                .members
                .values()
                .find(|m| m.name.eq_ignore_ascii_case(name_or_did)),
        }
    }

    /// The grants from `grantor` to `grantee`, ascending by id: the pair's
    /// grants only, whatever the size of the state.
    pub fn grants_between(
        &self,
        grantee: &MemberId,
        grantor: &MemberId,
    ) -> Result<Vec<(GrantId, GrantRecord)>, RowsError> {
        let mut out = Vec::new();
        for id in self.grants.between(grantee, grantor)? {
            if let Some(record) = self.grants.get(&id)? {
                out.push((id, record));
            }
        }
        Ok(out)
    }

    /// Applies one entry: checks it fully, then changes the state. On error
    /// nothing changes. Endorsements are checked separately
    /// ([`check_endorsements`]), by the ledger, against the block's epoch.
    pub fn apply(
        &mut self,
        ctx: ApplyContext,
        proposer: MemberId,
        body: &Body,
    ) -> Result<(), Violation> {
        self.apply_recording(ctx, proposer, body, &mut Changes::default())
    }

    /// [`apply`](Self::apply), adding the keys it changed to `changes`.
    pub fn apply_recording(
        &mut self,
        ctx: ApplyContext,
        proposer: MemberId,
        body: &Body,
        changes: &mut Changes,
    ) -> Result<(), Violation> {
        check_proposal(self, proposer, body, ctx.time)?;
        match body {
            Body::Genesis(_) => return Err(Violation::Genesis("only at height 0")),
            Body::AddMember(new) => {
                let id = MemberId(ctx.entry_id);
                if self.members.contains_key(&id) {
                    return Err(Violation::MemberExists(id));
                }
                self.epoch += 1;
                self.members.insert(
                    id,
                    Member {
                        id,
                        name: new.name.clone(),
                        did: new.did,
                        joined_epoch: self.epoch,
                    },
                );
                changes.members.insert(id);
                changes.consortium = true;
            }
            Body::RemoveMember { member } => {
                self.members.remove(member);
                changes.members.insert(*member);
                // Only the pairs the member is party to (with the members
                // before its removal: a former member's grants all ended
                // with it): the work is its grants, not every grant.
                let mut parties = Vec::new();
                for other in self.members.keys().chain(std::iter::once(member)) {
                    parties.extend(self.grants.between(member, other)?);
                    parties.extend(self.grants.between(other, member)?);
                }
                let ended = GrantStatus::Ended { height: ctx.height };
                for id in parties {
                    if self.grants.end(&id, ended)? {
                        changes.grants.insert(id);
                    }
                }
                self.epoch += 1;
                changes.consortium = true;
            }
            Body::RotateKey { member, new_did } => {
                if let Some(m) = self.members.get_mut(member) {
                    m.did = *new_did;
                }
                self.epoch += 1;
                changes.members.insert(*member);
                changes.consortium = true;
            }
            Body::Grant(terms) => {
                let id = GrantId(ctx.entry_id);
                if self.grants.contains(&id)? {
                    return Err(Violation::GrantExists(id));
                }
                self.grants.insert(
                    id,
                    GrantRecord {
                        terms: terms.clone(),
                        status: GrantStatus::Active,
                        committed_height: ctx.height,
                    },
                );
                changes.grants.insert(id);
            }
            Body::Revoke { grant } => {
                // check_proposal refused a grant that is not active.
                if self
                    .grants
                    .end(grant, GrantStatus::Revoked { height: ctx.height })?
                {
                    changes.grants.insert(*grant);
                }
            }
            Body::SetPolicy(policy) => {
                // A longer TTL would make entries fresh again that already
                // left the replay window (kept for the shorter one): only
                // proposals created from now on count.
                if policy.proposal_ttl_ms > self.policy.proposal_ttl_ms {
                    self.proposals_since = ctx.time;
                }
                self.policy = policy.clone();
                changes.consortium = true;
            }
        }
        if body.changes_membership() {
            self.reindex_members();
        }
        Ok(())
    }
}

fn check_policy(policy: &Policy) -> Result<(), Violation> {
    if !(Policy::PROPOSAL_TTL_MIN_MS..=Policy::PROPOSAL_TTL_MAX_MS)
        .contains(&policy.proposal_ttl_ms)
    {
        return Err(Violation::Policy(
            "proposal_ttl_ms must be between 10 s and 7 days",
        ));
    }
    if policy.grant_duration_max_ms == 0 {
        return Err(Violation::Policy("grant_duration_max_ms must be positive"));
    }
    Ok(())
}

/// Checks who may propose what, and that the proposal is well-formed and
/// possible in `state` at `now`.
pub fn check_proposal(
    state: &State,
    proposer: MemberId,
    body: &Body,
    now: Timestamp,
) -> Result<(), Violation> {
    if !state.members.contains_key(&proposer) {
        return Err(Violation::ProposerNotMember(proposer));
    }
    let member = |id: &MemberId| {
        if state.members.contains_key(id) {
            Ok(())
        } else {
            Err(Violation::NotAMember(*id))
        }
    };
    match body {
        Body::Genesis(_) => Err(Violation::Genesis("only at height 0")),
        Body::Grant(t) => {
            if proposer != t.grantor {
                return Err(Violation::NotGrantor);
            }
            member(&t.grantor)?;
            member(&t.grantee)?;
            if t.grantor == t.grantee {
                return Err(Violation::SelfGrant);
            }
            if t.not_before >= t.not_after || t.not_after <= now {
                return Err(Violation::Window {
                    not_before: t.not_before.0,
                    not_after: t.not_after.0,
                });
            }
            if t.not_after.0 - t.not_before.0 > state.policy.grant_duration_max_ms {
                return Err(Violation::TooLong {
                    max_ms: state.policy.grant_duration_max_ms,
                });
            }
            if t.resources.is_empty() || t.resources.len() > GRANT_RESOURCES_MAX {
                return Err(Violation::Terms("a grant covers 1 to 32 resource patterns"));
            }
            if t.actions.is_empty() || !t.actions.windows(2).all(|w| w[0] < w[1]) {
                return Err(Violation::Terms(
                    "actions must be non-empty, sorted and unique",
                ));
            }
            if t.purpose
                .as_ref()
                .is_some_and(|p| p.len() > PURPOSE_BYTES_MAX)
            {
                return Err(Violation::Purpose);
            }
            if t.rate_limit
                .is_some_and(|r| r.requests == 0 || r.per_seconds == 0)
            {
                return Err(Violation::RateLimit);
            }
            Ok(())
        }
        Body::Revoke { grant } => {
            let record = state.grant(grant)?.ok_or(Violation::UnknownGrant(*grant))?;
            if record.status != GrantStatus::Active {
                return Err(Violation::GrantNotActive(*grant));
            }
            Ok(())
        }
        Body::AddMember(new) => {
            if state.members.len() >= MEMBERS_MAX {
                return Err(Violation::TooManyMembers);
            }
            if !valid_name(&new.name) || state.members.values().any(|m| m.name == new.name) {
                return Err(Violation::Name(new.name.clone()));
            }
            if state.member_by_did(&new.did).is_some() {
                return Err(Violation::DidInUse(new.did.to_string()));
            }
            Ok(())
        }
        Body::RemoveMember { member: target } => {
            member(target)?;
            if state.members.len() == 1 {
                return Err(Violation::LastMember);
            }
            Ok(())
        }
        Body::RotateKey {
            member: target,
            new_did,
        } => {
            member(target)?;
            if proposer != *target {
                return Err(Violation::NotSelf);
            }
            if state.member_by_did(new_did).is_some() {
                return Err(Violation::DidInUse(new_did.to_string()));
            }
            Ok(())
        }
        Body::SetPolicy(policy) => check_policy(policy),
    }
}

/// Whose endorsements `body` needs in `state`.
///
/// - Grant: the grantor plus a quorum of current members (the grantor's
///   endorsement counts toward the quorum).
/// - Revoke by the grantor: the grantor alone. By anyone else: a quorum.
/// - AddMember, RemoveMember, SetPolicy: a quorum.
/// - RotateKey: a quorum including the member itself (its old key).
pub fn required_endorsements(
    state: &State,
    proposer: MemberId,
    body: &Body,
) -> Result<Requirement, RowsError> {
    let q = quorum(state.members.len());
    Ok(match body {
        Body::Grant(t) => Requirement {
            quorum: q,
            must_include: vec![t.grantor],
        },
        Body::Revoke { grant } => match state.grant(grant)? {
            Some(r) if r.terms.grantor == proposer => Requirement {
                quorum: 1,
                must_include: vec![proposer],
            },
            _ => Requirement {
                quorum: q,
                must_include: vec![proposer],
            },
        },
        Body::RotateKey { member, .. } => Requirement {
            quorum: q,
            must_include: vec![*member],
        },
        _ => Requirement {
            quorum: q,
            must_include: vec![proposer],
        },
    })
}

/// Checks that `endorsers` (members whose signatures the ledger verified)
/// meet the requirement.
pub fn check_endorsements(
    state: &State,
    proposer: MemberId,
    body: &Body,
    endorsers: &BTreeSet<MemberId>,
) -> Result<(), Violation> {
    if let Some(outsider) = endorsers.iter().find(|e| !state.members.contains_key(*e)) {
        return Err(Violation::EndorserNotMember(*outsider));
    }
    let requirement = required_endorsements(state, proposer, body)?;
    let have = endorsers.len() as u32;
    let missing: Vec<String> = requirement
        .must_include
        .iter()
        .filter(|m| !endorsers.contains(m))
        .map(|m| {
            state
                .members
                .get(m)
                .map(|m| m.name.clone())
                .unwrap_or_else(|| m.to_string())
        })
        .collect();
    if have < requirement.quorum || !missing.is_empty() {
        return Err(Violation::Endorsements {
            have,
            need: requirement.quorum,
            missing: if missing.is_empty() {
                String::new()
            } else {
                format!(" (missing {})", missing.join(", "))
            },
        });
    }
    Ok(())
}
