//! This node's endorsement policy: which proposals it endorses on its own,
//! which it rejects, and which it leaves to a person. Ordered rules, the
//! first match deciding; pure (the committed state and the proposal come in).
//!
//! The document ([`EndorsementPolicy`], in `api`) is checked once and
//! compiled here into [`Policy`], so judging a proposal parses nothing.

use std::collections::BTreeSet;

use quorate_api::local::endorsement::{
    EndorsementPolicy, Outcome, PolicyRule, ProposalKind, RULE_LIST_MAX, RULES_MAX, Relation,
};
use quorate_contracts::{Action, Body, GrantTerms, MemberId, ResourcePattern, State};
use quorate_ledger::entry::Proposal;

use crate::agreement::mempool::decisions::REASON_BYTES_MAX;
use crate::home::duration::HumanDuration;

/// The name that stands for this organization in a rule's member lists.
pub const ME: &str = "me";

/// Why a policy document is refused (nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// More rules than [`RULES_MAX`].
    #[error("a policy has at most {RULES_MAX} rules, this one has {0}")]
    TooManyRules(usize),
    /// A rule's name is empty, too long, has other characters, or repeats.
    #[error("rule {index}: name {name:?} is taken or invalid (1 to 64 of a-z, 0-9, '-')")]
    Name {
        /// The rule's position (from 1).
        index: usize,
        /// As given.
        name: String,
    },
    /// A list longer than [`RULE_LIST_MAX`].
    #[error("rule {rule:?}: {field} has more than {RULE_LIST_MAX} values")]
    ListTooLong {
        /// The rule.
        rule: String,
        /// The list.
        field: &'static str,
    },
    /// A resource pattern that does not parse.
    #[error("rule {rule:?}: resource {pattern:?}: {reason}")]
    Resource {
        /// The rule.
        rule: String,
        /// As given.
        pattern: String,
        /// Why not.
        reason: quorate_contracts::PathError,
    },
    /// A duration that does not parse.
    #[error("rule {rule:?}: duration_max: {reason}")]
    Duration {
        /// The rule.
        rule: String,
        /// Why not.
        reason: crate::home::duration::ParseDurationError,
    },
    /// A reason on a rule that does not reject, none on one that does, or
    /// one too long.
    #[error(
        "rule {rule:?}: a reject rule needs a reason of 1 to {REASON_BYTES_MAX} bytes, and only a reject rule has one"
    )]
    Reason {
        /// The rule.
        rule: String,
    },
}

/// A compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    kinds: BTreeSet<ProposalKind>,
    proposer_is: BTreeSet<Relation>,
    proposers: BTreeSet<String>,
    grantors: BTreeSet<String>,
    grantees: BTreeSet<String>,
    resources: Vec<ResourcePattern>,
    actions: BTreeSet<Action>,
    duration_max_ms: Option<u64>,
    purposes: BTreeSet<String>,
    outcome: Outcome,
    reason: Option<String>,
}

impl Rule {
    /// Whether it has a condition on a grant's terms.
    fn about_terms(&self) -> bool {
        !(self.grantors.is_empty()
            && self.grantees.is_empty()
            && self.resources.is_empty()
            && self.actions.is_empty()
            && self.duration_max_ms.is_none()
            && self.purposes.is_empty())
    }
}

/// A checked policy, ready to judge proposals.
#[derive(Debug, Clone)]
pub struct Policy {
    document: EndorsementPolicy,
    rules: Vec<Rule>,
}

/// What the policy decided about one proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Endorse, reject or ask.
    pub outcome: Outcome,
    /// The rule that decided (none matched: ask).
    pub rule: Option<String>,
    /// For a rejection, the reason to sign.
    pub reason: Option<String>,
}

impl Verdict {
    /// How the proposal list and the log say it: `rule grants-by-their-grantor: endorse`.
    pub fn note(&self) -> String {
        let outcome = match self.outcome {
            Outcome::Endorse => "endorse",
            Outcome::Reject => "reject",
            Outcome::Ask => "ask a person",
        };
        match &self.rule {
            Some(rule) => format!("rule {rule}: {outcome}"),
            None => format!("no rule matched: {outcome}"),
        }
    }

    /// The outcome's name, for metrics.
    pub fn outcome_name(&self) -> &'static str {
        match self.outcome {
            Outcome::Endorse => "endorse",
            Outcome::Reject => "reject",
            Outcome::Ask => "ask",
        }
    }
}

impl Policy {
    /// Checks and compiles a policy document.
    pub fn compile(document: EndorsementPolicy) -> Result<Self, PolicyError> {
        if document.rules.len() > RULES_MAX {
            return Err(PolicyError::TooManyRules(document.rules.len()));
        }
        let mut names = BTreeSet::new();
        let mut rules = Vec::with_capacity(document.rules.len());
        for (index, rule) in document.rules.iter().enumerate() {
            rules.push(compile_rule(index + 1, rule, &mut names)?);
        }
        Ok(Self { document, rules })
    }

    /// The document it was compiled from.
    pub fn document(&self) -> &EndorsementPolicy {
        &self.document
    }

    /// What to do with `proposal`, by this node (`me`), against the
    /// committed `state`.
    pub fn judge(&self, me: MemberId, state: &State, proposal: &Proposal) -> Verdict {
        self.first_match(&Facts::of(me, state, proposal))
    }

    /// What to do with `requester`'s request for the grant `terms` (whose
    /// grantor is this node, `me`): `endorse` accepts it, `reject`
    /// declines it, `ask` leaves it to a person.
    pub fn judge_access(
        &self,
        me: MemberId,
        state: &State,
        requester: MemberId,
        terms: &GrantTerms,
    ) -> Verdict {
        let mut relations = BTreeSet::from([Relation::Grantee]);
        if requester == me {
            relations.insert(Relation::Me);
        }
        self.first_match(&Facts {
            kind: Some(ProposalKind::AccessRequest),
            relations,
            proposer: names_of(me, state, requester),
            terms: Some(terms.clone()),
            state,
            me,
        })
    }

    fn first_match(&self, facts: &Facts<'_>) -> Verdict {
        for rule in &self.rules {
            if facts.matches(rule) {
                return Verdict {
                    outcome: rule.outcome,
                    rule: Some(rule.name.clone()),
                    reason: rule.reason.clone(),
                };
            }
        }
        Verdict {
            outcome: Outcome::Ask,
            rule: None,
            reason: None,
        }
    }
}

fn compile_rule(
    index: usize,
    rule: &PolicyRule,
    names: &mut BTreeSet<String>,
) -> Result<Rule, PolicyError> {
    let name_ok = (1..=64).contains(&rule.name.len())
        && rule
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok || !names.insert(rule.name.clone()) {
        return Err(PolicyError::Name {
            index,
            name: rule.name.clone(),
        });
    }
    let too_long = |field: &'static str| PolicyError::ListTooLong {
        rule: rule.name.clone(),
        field,
    };
    for (field, len) in [
        ("kinds", rule.kinds.len()),
        ("proposer_is", rule.proposer_is.len()),
        ("proposers", rule.proposers.len()),
        ("grantors", rule.grantors.len()),
        ("grantees", rule.grantees.len()),
        ("resources", rule.resources.len()),
        ("actions", rule.actions.len()),
        ("purposes", rule.purposes.len()),
    ] {
        if len > RULE_LIST_MAX {
            return Err(too_long(field));
        }
    }
    let resources = rule
        .resources
        .iter()
        .map(|pattern| {
            ResourcePattern::parse(pattern).map_err(|reason| PolicyError::Resource {
                rule: rule.name.clone(),
                pattern: pattern.clone(),
                reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let duration_max_ms = rule
        .duration_max
        .as_deref()
        .map(|text| {
            text.parse::<HumanDuration>()
                .map(|d| d.0.as_millis() as u64)
                .map_err(|reason| PolicyError::Duration {
                    rule: rule.name.clone(),
                    reason,
                })
        })
        .transpose()?;
    let reason_ok = match (&rule.outcome, &rule.reason) {
        (Outcome::Reject, Some(r)) => !r.is_empty() && r.len() <= REASON_BYTES_MAX,
        (Outcome::Reject, None) => false,
        (_, reason) => reason.is_none(),
    };
    if !reason_ok {
        return Err(PolicyError::Reason {
            rule: rule.name.clone(),
        });
    }
    Ok(Rule {
        name: rule.name.clone(),
        kinds: rule.kinds.iter().copied().collect(),
        proposer_is: rule.proposer_is.iter().copied().collect(),
        proposers: rule.proposers.iter().cloned().collect(),
        grantors: rule.grantors.iter().cloned().collect(),
        grantees: rule.grantees.iter().cloned().collect(),
        resources,
        actions: rule.actions.iter().copied().collect(),
        duration_max_ms,
        purposes: rule.purposes.iter().cloned().collect(),
        outcome: rule.outcome,
        reason: rule.reason.clone(),
    })
}

/// What a rule can ask about a proposal, worked out once.
struct Facts<'a> {
    kind: Option<ProposalKind>,
    relations: BTreeSet<Relation>,
    /// The proposer's name, and `me` if it is this node.
    proposer: Vec<String>,
    /// The grant proposed or revoked (a revocation of a grant this node
    /// cannot read has none, and matches no rule about terms).
    terms: Option<GrantTerms>,
    state: &'a State,
    me: MemberId,
}

impl<'a> Facts<'a> {
    fn of(me: MemberId, state: &'a State, proposal: &Proposal) -> Self {
        let proposer = proposal.proposer;
        let (kind, terms, subject) = match &proposal.body {
            Body::Grant(terms) => (Some(ProposalKind::Grant), Some(terms.clone()), None),
            Body::Revoke { grant } => (
                Some(ProposalKind::Revoke),
                state.grant(grant).ok().flatten().map(|r| r.terms),
                None,
            ),
            Body::AddMember(_) => (Some(ProposalKind::AddMember), None, None),
            Body::RemoveMember { member } => {
                (Some(ProposalKind::RemoveMember), None, Some(*member))
            }
            Body::RotateKey { member, .. } => (Some(ProposalKind::RotateKey), None, Some(*member)),
            Body::SetPolicy(_) => (Some(ProposalKind::SetPolicy), None, None),
            // Never proposed after genesis; no rule is about it.
            Body::Genesis(_) => (None, None, None),
        };
        let mut relations = BTreeSet::new();
        if proposer == me {
            relations.insert(Relation::Me);
        }
        if let Some(t) = &terms {
            if t.grantor == proposer {
                relations.insert(Relation::Grantor);
            }
            if t.grantee == proposer && kind == Some(ProposalKind::Revoke) {
                relations.insert(Relation::Grantee);
            }
        }
        if subject == Some(proposer) {
            relations.insert(Relation::Subject);
        }
        if relations.iter().all(|r| *r == Relation::Me) {
            relations.insert(Relation::Other);
        }
        Self {
            kind,
            relations,
            proposer: names_of(me, state, proposer),
            terms,
            state,
            me,
        }
    }

    fn matches(&self, rule: &Rule) -> bool {
        let Some(kind) = self.kind else { return false };
        if !rule.kinds.is_empty() && !rule.kinds.contains(&kind) {
            return false;
        }
        // A rule decides access requests only if it names their kind: one
        // written for proposals (with no kinds) never hands out data.
        if kind == ProposalKind::AccessRequest && !rule.kinds.contains(&kind) {
            return false;
        }
        if !rule.proposer_is.is_empty() && rule.proposer_is.is_disjoint(&self.relations) {
            return false;
        }
        if !named(&rule.proposers, &self.proposer) {
            return false;
        }
        if !rule.about_terms() {
            return true;
        }
        let Some(terms) = &self.terms else {
            return false;
        };
        named(
            &rule.grantors,
            &names_of(self.me, self.state, terms.grantor),
        ) && named(
            &rule.grantees,
            &names_of(self.me, self.state, terms.grantee),
        ) && (rule.resources.is_empty()
            || terms
                .resources
                .iter()
                .all(|r| rule.resources.iter().any(|outer| outer.covers(r))))
            && (rule.actions.is_empty() || terms.actions.iter().all(|a| rule.actions.contains(a)))
            && rule
                .duration_max_ms
                .is_none_or(|max| terms.not_after.0.saturating_sub(terms.not_before.0) <= max)
            && (rule.purposes.is_empty()
                || terms
                    .purpose
                    .as_ref()
                    .is_some_and(|p| rule.purposes.contains(p)))
    }
}

/// Whether a rule's name list admits a member known by `names` (an empty
/// list admits everyone).
fn named(list: &BTreeSet<String>, names: &[String]) -> bool {
    list.is_empty() || names.iter().any(|n| list.contains(n))
}

/// The names a rule may use for `member`: its name, and `me` for this node.
fn names_of(me: MemberId, state: &State, member: MemberId) -> Vec<String> {
    let mut names: Vec<String> = state
        .members
        .get(&member)
        .map(|m| m.name.clone())
        .into_iter()
        .collect();
    if member == me {
        names.push(ME.to_owned());
    }
    names
}

#[cfg(test)]
mod tests {
    use quorate_contracts::NewMember;
    use quorate_did::Keypair;
    use quorate_ledger::testing::Consortium;

    use super::*;

    fn proposal(c: &mut Consortium, by: usize, body: Body) -> Proposal {
        c.entry(by, body, &[]).proposal
    }

    fn rule(name: &str, outcome: Outcome) -> PolicyRule {
        let mut r = EndorsementPolicy::always(name, outcome).rules.remove(0);
        r.name = name.to_owned();
        r
    }

    #[test]
    fn access_requests_are_decided_only_by_rules_that_name_them() {
        let c = Consortium::new(3);
        let (me, requester) = (c.id(0), c.id(1));
        // The grant org-b asks org-a for.
        let terms = c.grant_terms(0, 1);
        // A rule written for proposals (no kinds) does not hand out data,
        // nor do the shorthands.
        let mut broad = rule("endorse-org-b", Outcome::Endorse);
        broad.proposers = vec![c.chain.state().members[&requester].name.clone()];
        for document in [
            EndorsementPolicy { rules: vec![broad] },
            EndorsementPolicy::always("auto", Outcome::Endorse),
            EndorsementPolicy::careful(),
        ] {
            let policy = Policy::compile(document).unwrap();
            let v = policy.judge_access(me, c.chain.state(), requester, &terms);
            assert_eq!((v.outcome, v.rule), (Outcome::Ask, None));
        }
        // One that names the kind does, within its terms.
        let mut public = rule("public-requests", Outcome::Endorse);
        public.kinds = vec![ProposalKind::AccessRequest];
        public.proposer_is = vec![Relation::Grantee];
        public.resources = vec!["public/*".into()];
        let policy = Policy::compile(EndorsementPolicy {
            rules: vec![public],
        })
        .unwrap();
        let mut asked = terms.clone();
        asked.resources = vec![ResourcePattern::parse("public/reports/*").unwrap()];
        let v = policy.judge_access(me, c.chain.state(), requester, &asked);
        assert_eq!(
            (v.outcome, v.rule.as_deref()),
            (Outcome::Endorse, Some("public-requests"))
        );
        asked.resources = vec![ResourcePattern::parse("private/*").unwrap()];
        let v = policy.judge_access(me, c.chain.state(), requester, &asked);
        assert_eq!(v.outcome, Outcome::Ask);
    }

    #[test]
    fn the_careful_policy_endorses_what_a_party_proposes_and_asks_for_the_rest() {
        let mut c = Consortium::new(4);
        let policy = Policy::compile(EndorsementPolicy::careful()).unwrap();
        let me = c.id(3);
        let judge = |c: &Consortium, p: &Proposal| policy.judge(me, c.chain.state(), p);

        let terms = c.grant_terms(0, 1);
        let grant = c.entry(0, Body::Grant(terms), &[0, 1, 2]);
        let grant_id = quorate_contracts::GrantId(grant.id().unwrap().0);
        let v = judge(&c, &grant.proposal);
        assert_eq!(
            (v.outcome, v.rule.as_deref()),
            (Outcome::Endorse, Some("grants-by-their-grantor"))
        );
        c.commit(vec![grant]);

        let by_grantor = proposal(&mut c, 0, Body::Revoke { grant: grant_id });
        let by_grantee = proposal(&mut c, 1, Body::Revoke { grant: grant_id });
        let by_third = proposal(&mut c, 2, Body::Revoke { grant: grant_id });
        assert_eq!(judge(&c, &by_grantor).outcome, Outcome::Endorse);
        assert_eq!(judge(&c, &by_grantee).outcome, Outcome::Endorse);
        let v = judge(&c, &by_third);
        assert_eq!(
            (v.outcome, v.rule.as_deref()),
            (Outcome::Ask, Some("everything-else"))
        );

        let member = c.id(1);
        let removal = proposal(&mut c, 0, Body::RemoveMember { member });
        assert_eq!(judge(&c, &removal).outcome, Outcome::Ask);
        let join = proposal(
            &mut c,
            0,
            Body::AddMember(NewMember {
                name: "org-e".into(),
                did: Keypair::from_seed(&[40; 32]).did(),
            }),
        );
        assert_eq!(judge(&c, &join).outcome, Outcome::Ask);
        let member = c.id(1);
        let own = proposal(
            &mut c,
            1,
            Body::RotateKey {
                member,
                new_did: Keypair::from_seed(&[41; 32]).did(),
            },
        );
        assert_eq!(judge(&c, &own).outcome, Outcome::Endorse);
        assert_eq!(judge(&c, &own).note(), "rule own-key-rotations: endorse");
    }

    #[test]
    fn conditions_on_terms_narrow_a_rule_and_skip_other_kinds() {
        let mut c = Consortium::new(4);
        let me = c.id(1);
        let mut public = rule("public-reads", Outcome::Endorse);
        public.grantees = vec![ME.into()];
        public.resources = vec!["datasets/*".into()];
        public.actions = vec![Action::Read, Action::List];
        public.duration_max = Some("90d".into());
        public.purposes = vec!["customs".into()];
        let mut refuse = rule("refuse-rest", Outcome::Reject);
        refuse.reason = Some("not without a person".into());
        let policy = Policy::compile(EndorsementPolicy {
            rules: vec![public, refuse],
        })
        .unwrap();

        // grant_terms: grantee org-b, datasets/shipments/*, read+list, 30
        // days, purpose customs.
        let terms = c.grant_terms(0, 1);
        let fits = proposal(&mut c, 0, Body::Grant(terms.clone()));
        assert_eq!(
            policy.judge(me, c.chain.state(), &fits).rule.as_deref(),
            Some("public-reads")
        );
        let mut wider = terms.clone();
        wider.resources = vec![ResourcePattern::All];
        let mut writes = terms.clone();
        writes.actions = vec![Action::Read, Action::Write];
        let mut longer = terms.clone();
        longer.not_after = quorate_contracts::Timestamp(terms.not_before.0 + 91 * 86_400_000);
        let mut other_purpose = terms.clone();
        other_purpose.purpose = None;
        for t in [wider, writes, longer, other_purpose] {
            let p = proposal(&mut c, 0, Body::Grant(t));
            let v = policy.judge(me, c.chain.state(), &p);
            assert_eq!(
                (v.outcome, v.reason.as_deref()),
                (Outcome::Reject, Some("not without a person"))
            );
        }
        // To someone else: not `me` as grantee.
        let terms = c.grant_terms(0, 2);
        let p = proposal(&mut c, 0, Body::Grant(terms));
        assert_eq!(
            policy.judge(me, c.chain.state(), &p).outcome,
            Outcome::Reject
        );
        // A rule about terms never matches a membership change.
        let member = c.id(2);
        let p = proposal(&mut c, 0, Body::RemoveMember { member });
        assert_eq!(
            policy.judge(me, c.chain.state(), &p).rule.as_deref(),
            Some("refuse-rest")
        );
        // No rule matched: ask.
        let empty = Policy::compile(EndorsementPolicy { rules: vec![] }).unwrap();
        let v = empty.judge(me, c.chain.state(), &p);
        assert_eq!((v.outcome, v.rule), (Outcome::Ask, None));
    }

    #[test]
    fn pattern_coverage() {
        let p = |s| ResourcePattern::parse(s).unwrap();
        assert!(p("*").covers(&p("*")));
        assert!(p("a/*").covers(&p("a/b")));
        assert!(p("a/*").covers(&p("a/b/*")));
        assert!(p("a/*").covers(&p("a/*")));
        assert!(!p("a/*").covers(&p("ab/*")));
        assert!(!p("a/*").covers(&p("a")));
        assert!(!p("a/*").covers(&p("*")));
        assert!(!p("a/b").covers(&p("a/*")));
        assert!(p("a/b").covers(&p("a/b")));
    }

    #[test]
    fn bad_documents_are_refused_with_the_rule_named() {
        let check = |rules: Vec<PolicyRule>| Policy::compile(EndorsementPolicy { rules });
        let mut bad_name = rule("Bad Name", Outcome::Ask);
        assert!(matches!(
            check(vec![bad_name.clone()]),
            Err(PolicyError::Name { index: 1, .. })
        ));
        bad_name.name = "twice".into();
        assert!(matches!(
            check(vec![bad_name.clone(), bad_name]),
            Err(PolicyError::Name { index: 2, .. })
        ));
        let mut r = rule("r", Outcome::Endorse);
        r.resources = vec!["../etc".into()];
        assert!(matches!(check(vec![r]), Err(PolicyError::Resource { .. })));
        let mut r = rule("r", Outcome::Endorse);
        r.duration_max = Some("soon".into());
        assert!(matches!(check(vec![r]), Err(PolicyError::Duration { .. })));
        let r = rule("r", Outcome::Reject);
        assert!(matches!(check(vec![r]), Err(PolicyError::Reason { .. })));
        let mut r = rule("r", Outcome::Endorse);
        r.reason = Some("why".into());
        assert!(matches!(check(vec![r]), Err(PolicyError::Reason { .. })));
        let many = (0..=RULES_MAX)
            .map(|i| rule(&format!("r{i}"), Outcome::Ask))
            .collect();
        assert!(matches!(check(many), Err(PolicyError::TooManyRules(_))));
        let mut r = rule("r", Outcome::Ask);
        r.purposes = vec!["x".into(); RULE_LIST_MAX + 1];
        assert!(matches!(
            check(vec![r]),
            Err(PolicyError::ListTooLong { .. })
        ));
    }
}
