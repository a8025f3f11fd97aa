use std::collections::BTreeSet;

use proptest::prelude::*;
use quorate_did::{Did, Keypair};

use crate::*;

fn authorize_ok(state: &State, request: &AccessRequest<'_>) -> Decision {
    authorize(state, request).expect("grants in memory are always readable")
}

fn grants_of(s: &State) -> Vec<(GrantId, GrantRecord)> {
    let mut out = Vec::new();
    s.visit_grants(None, &mut |id, r| {
        out.push((id, r.clone()));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    out
}

fn grant_of(s: &State, id: &GrantId) -> GrantRecord {
    s.grant(id).unwrap().expect("the grant exists")
}

/// Grant rows held the way a store holds them, for states on a base.
#[derive(Debug, Default)]
struct MemoryRows(std::collections::BTreeMap<GrantId, GrantRecord>);

impl GrantRows for MemoryRows {
    fn get(&self, id: &GrantId) -> Result<Option<GrantRecord>, RowsError> {
        Ok(self.0.get(id).cloned())
    }

    fn between(&self, grantee: &MemberId, grantor: &MemberId) -> Result<Vec<GrantId>, RowsError> {
        Ok(self
            .0
            .iter()
            .filter(|(_, r)| r.terms.grantee == *grantee && r.terms.grantor == *grantor)
            .map(|(id, _)| *id)
            .collect())
    }

    fn visit(
        &self,
        after: Option<&GrantId>,
        visit: &mut dyn FnMut(GrantId, &GrantRecord) -> std::ops::ControlFlow<()>,
    ) -> Result<(), RowsError> {
        for (id, r) in &self.0 {
            if after.is_some_and(|a| id <= a) {
                continue;
            }
            if visit(*id, r).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// A base holding `s`'s grants as they are now: what a store's snapshot
/// after writing `s`'s changes holds.
fn rows_of(s: &State) -> std::sync::Arc<dyn GrantRows> {
    std::sync::Arc::new(MemoryRows(grants_of(s).into_iter().collect()))
}

/// Rows that cannot be read.
#[derive(Debug)]
struct BrokenRows;

impl GrantRows for BrokenRows {
    fn get(&self, _: &GrantId) -> Result<Option<GrantRecord>, RowsError> {
        Err(RowsError("disk on fire".into()))
    }
    fn between(&self, _: &MemberId, _: &MemberId) -> Result<Vec<GrantId>, RowsError> {
        Err(RowsError("disk on fire".into()))
    }
    fn visit(
        &self,
        _: Option<&GrantId>,
        _: &mut dyn FnMut(GrantId, &GrantRecord) -> std::ops::ControlFlow<()>,
    ) -> Result<(), RowsError> {
        Err(RowsError("disk on fire".into()))
    }
}

const T0: u64 = 1_800_000_000_000;

fn did(i: u8) -> Did {
    Keypair::from_seed(&[i + 1; 32]).did()
}

fn member_id(i: u8) -> MemberId {
    MemberId([i + 1; 32])
}

/// A state of `n` members (ids `[i+1; 32]`, keys from seeds `[i+1; 32]`).
fn state(n: u8) -> State {
    let genesis = Genesis {
        chain_id: "c".into(),
        members: (0..n)
            .map(|i| NewMember {
                name: format!("org-{i}"),
                did: did(i),
            })
            .collect(),
        policy: Policy::default(),
        time: Timestamp(T0),
    };
    let ids: Vec<MemberId> = (0..n).map(member_id).collect();
    State::genesis(&genesis, &ids).unwrap()
}

fn terms(
    grantor: u8,
    grantee: u8,
    patterns: &[&str],
    actions: &[Action],
    from: u64,
    to: u64,
) -> GrantTerms {
    GrantTerms {
        grantor: member_id(grantor),
        grantee: member_id(grantee),
        resources: patterns
            .iter()
            .map(|p| ResourcePattern::parse(p).unwrap())
            .collect(),
        actions: actions.to_vec(),
        not_before: Timestamp(from),
        not_after: Timestamp(to),
        purpose: None,
        rate_limit: None,
    }
}

fn ctx(id: u8, height: u64) -> ApplyContext {
    ApplyContext {
        entry_id: [100 + id; 32],
        height,
        time: Timestamp(T0 + height),
    }
}

#[test]
fn paths_refuse_traversal_and_odd_characters() {
    for good in ["a", "datasets/shipments/2026-11.csv", "A.b_c-d/e"] {
        ResourcePath::parse(good).unwrap();
    }
    let cases = [
        ("", PathError::Empty),
        ("../etc/passwd", PathError::DotSegment),
        ("a/./b", PathError::DotSegment),
        ("a//b", PathError::EmptySegment),
        ("/a", PathError::EmptySegment),
        ("a/", PathError::EmptySegment),
        ("a\\b", PathError::Character('\\')),
        ("a%2e%2e", PathError::Character('%')),
        ("a b", PathError::Character(' ')),
    ];
    for (bad, err) in cases {
        assert_eq!(ResourcePath::parse(bad), Err(err), "{bad:?}");
    }
    assert_eq!(
        ResourcePath::parse(&"a".repeat(1025)),
        Err(PathError::TooLong)
    );
    assert_eq!(
        ResourcePath::parse(&vec!["a"; 33].join("/")),
        Err(PathError::TooManySegments)
    );
}

#[test]
fn patterns_match_exact_prefix_and_all() {
    let p = |s| ResourcePath::parse(s).unwrap();
    let prefix = ResourcePattern::parse("datasets/shipments/*").unwrap();
    assert!(prefix.matches(&p("datasets/shipments/a.csv")));
    assert!(prefix.matches(&p("datasets/shipments/2026/a.csv")));
    assert!(!prefix.matches(&p("datasets/shipments")));
    assert!(!prefix.matches(&p("datasets/shipmentsX/a.csv")));
    let exact = ResourcePattern::parse("datasets/a.csv").unwrap();
    assert!(exact.matches(&p("datasets/a.csv")));
    assert!(!exact.matches(&p("datasets/a.csv2")));
    assert!(
        ResourcePattern::parse("*")
            .unwrap()
            .matches(&p("anything/at/all"))
    );
    assert!(ResourcePattern::parse("a/../*").is_err());
    assert_eq!(prefix.to_string(), "datasets/shipments/*");
}

#[test]
fn quorum_arithmetic() {
    for (n, q, f) in [
        (1, 1, 0),
        (2, 2, 0),
        (3, 3, 0),
        (4, 3, 1),
        (5, 4, 1),
        (7, 5, 2),
        (10, 7, 3),
    ] {
        assert_eq!((quorum(n), max_faulty(n)), (q, f), "n={n}");
    }
}

#[test]
fn who_may_propose_what() {
    let s = state(4);
    let now = Timestamp(T0);
    let grant = terms(0, 1, &["*"], &[Action::Read], T0, T0 + 1000);
    check_proposal(&s, member_id(0), &Body::Grant(grant.clone()), now).unwrap();
    assert_eq!(
        check_proposal(&s, member_id(1), &Body::Grant(grant.clone()), now),
        Err(Violation::NotGrantor)
    );
    assert_eq!(
        check_proposal(&s, member_id(9), &Body::Grant(grant), now),
        Err(Violation::ProposerNotMember(member_id(9)))
    );
    let to_self = terms(0, 0, &["*"], &[Action::Read], T0, T0 + 1000);
    assert_eq!(
        check_proposal(&s, member_id(0), &Body::Grant(to_self), now),
        Err(Violation::SelfGrant)
    );
    let over = terms(0, 1, &["*"], &[Action::Read], T0, T0 + 1000);
    assert!(matches!(
        check_proposal(&s, member_id(0), &Body::Grant(over), Timestamp(T0 + 1000)),
        Err(Violation::Window { .. })
    ));
    let unsorted = terms(0, 1, &["*"], &[Action::Write, Action::Read], T0, T0 + 1000);
    assert!(matches!(
        check_proposal(&s, member_id(0), &Body::Grant(unsorted), now),
        Err(Violation::Terms(_))
    ));
    let too_long = terms(
        0,
        1,
        &["*"],
        &[Action::Read],
        T0,
        T0 + Policy::default().grant_duration_max_ms + 1,
    );
    assert!(matches!(
        check_proposal(&s, member_id(0), &Body::Grant(too_long), now),
        Err(Violation::TooLong { .. })
    ));

    let rotate = Body::RotateKey {
        member: member_id(1),
        new_did: did(50),
    };
    assert_eq!(
        check_proposal(&s, member_id(0), &rotate, now),
        Err(Violation::NotSelf)
    );
    check_proposal(&s, member_id(1), &rotate, now).unwrap();
    let reuse = Body::RotateKey {
        member: member_id(1),
        new_did: did(2),
    };
    assert!(matches!(
        check_proposal(&s, member_id(1), &reuse, now),
        Err(Violation::DidInUse(_))
    ));

    let dup_name = Body::AddMember(NewMember {
        name: "org-0".into(),
        did: did(60),
    });
    assert!(matches!(
        check_proposal(&s, member_id(0), &dup_name, now),
        Err(Violation::Name(_))
    ));
    let lone = state(1);
    assert_eq!(
        check_proposal(
            &lone,
            member_id(0),
            &Body::RemoveMember {
                member: member_id(0)
            },
            now
        ),
        Err(Violation::LastMember)
    );
    let bad_policy = Body::SetPolicy(Policy {
        proposal_ttl_ms: 1,
        ..Policy::default()
    });
    assert!(matches!(
        check_proposal(&s, member_id(0), &bad_policy, now),
        Err(Violation::Policy(_))
    ));
}

#[test]
fn endorsement_requirements() {
    let mut s = state(4);
    let grant = Body::Grant(terms(0, 1, &["*"], &[Action::Read], T0, T0 + 1000));
    let set = |ids: &[u8]| ids.iter().map(|i| member_id(*i)).collect::<BTreeSet<_>>();
    assert!(check_endorsements(&s, member_id(0), &grant, &set(&[0, 1])).is_err());
    assert!(
        check_endorsements(&s, member_id(0), &grant, &set(&[1, 2, 3])).is_err(),
        "grantor required"
    );
    check_endorsements(&s, member_id(0), &grant, &set(&[0, 1, 2])).unwrap();
    assert_eq!(
        check_endorsements(&s, member_id(0), &grant, &set(&[0, 1, 9])),
        Err(Violation::EndorserNotMember(member_id(9)))
    );

    s.apply(ctx(1, 1), member_id(0), &grant).unwrap();
    let id = GrantId([101; 32]);
    let revoke = Body::Revoke { grant: id };
    check_endorsements(&s, member_id(0), &revoke, &set(&[0])).unwrap();
    assert!(check_endorsements(&s, member_id(2), &revoke, &set(&[2])).is_err());
    check_endorsements(&s, member_id(2), &revoke, &set(&[1, 2, 3])).unwrap();
    let rotate = Body::RotateKey {
        member: member_id(1),
        new_did: did(50),
    };
    assert!(
        check_endorsements(&s, member_id(1), &rotate, &set(&[0, 2, 3])).is_err(),
        "old key required"
    );
}

#[test]
fn apply_each_kind() {
    let mut s = state(4);
    s.apply(
        ctx(1, 1),
        member_id(0),
        &Body::Grant(terms(0, 1, &["*"], &[Action::Read], T0, T0 + 10_000)),
    )
    .unwrap();
    let g = GrantId([101; 32]);
    assert_eq!(
        s.apply(
            ctx(1, 2),
            member_id(0),
            &Body::Grant(terms(0, 1, &["*"], &[Action::Read], T0, T0 + 10_000))
        ),
        Err(Violation::GrantExists(g)),
        "grant ids are never reused"
    );
    s.apply(
        ctx(2, 2),
        member_id(0),
        &Body::AddMember(NewMember {
            name: "org-new".into(),
            did: did(70),
        }),
    )
    .unwrap();
    assert_eq!(s.epoch, 1);
    let new = MemberId([102; 32]);
    assert_eq!(s.members[&new].joined_epoch, 1);
    assert_eq!(s.member_by_did(&did(70)).map(|m| m.id), Some(new));
    s.apply(
        ctx(3, 3),
        member_id(1),
        &Body::RotateKey {
            member: member_id(1),
            new_did: did(71),
        },
    )
    .unwrap();
    assert_eq!(s.member_by_did(&did(71)).map(|m| m.id), Some(member_id(1)));
    assert!(
        s.member_by_did(&did(1)).is_none(),
        "the old key no longer names the member"
    );
    s.apply(
        ctx(4, 4),
        member_id(2),
        &Body::RemoveMember {
            member: member_id(1),
        },
    )
    .unwrap();
    assert_eq!(grant_of(&s, &g).status, GrantStatus::Ended { height: 4 });
    assert_eq!(s.epoch, 3);
}

#[test]
fn every_deny_reason_and_allow() {
    let mut s = state(3);
    let caller = did(1);
    let p = ResourcePath::parse("data/x.csv").unwrap();
    let ask = |s: &State, action, path: &ResourcePath, now| {
        authorize_ok(
            s,
            &AccessRequest {
                owner: member_id(0),
                caller: &caller,
                action,
                path,
                now: Timestamp(now),
                purpose: None,
            },
        )
    };
    let stranger = did(99);
    assert_eq!(
        authorize_ok(
            &s,
            &AccessRequest {
                owner: member_id(0),
                caller: &stranger,
                action: Action::Read,
                path: &p,
                now: Timestamp(T0),
                purpose: None,
            }
        ),
        Decision::Deny(DenyReason::NotAMember)
    );
    assert_eq!(
        ask(&s, Action::Read, &p, T0),
        Decision::Deny(DenyReason::NoGrant)
    );
    s.apply(
        ctx(1, 1),
        member_id(0),
        &Body::Grant(terms(
            0,
            1,
            &["data/*"],
            &[Action::Read],
            T0 + 100,
            T0 + 200,
        )),
    )
    .unwrap();
    let g = GrantId([101; 32]);
    let other = ResourcePath::parse("secret/x").unwrap();
    assert_eq!(
        ask(&s, Action::Read, &other, T0 + 150),
        Decision::Deny(DenyReason::OutOfScope)
    );
    assert_eq!(
        ask(&s, Action::Read, &p, T0 + 50),
        Decision::Deny(DenyReason::NotYetValid { grant: g })
    );
    assert_eq!(
        ask(&s, Action::Read, &p, T0 + 200),
        Decision::Deny(DenyReason::Expired { grant: g })
    );
    assert_eq!(
        ask(&s, Action::Write, &p, T0 + 150),
        Decision::Deny(DenyReason::ActionNotGranted { grant: g })
    );
    assert_eq!(
        ask(&s, Action::Read, &p, T0 + 150),
        Decision::Allow {
            grant: g,
            rate_limit: None,
            window: [Timestamp(T0 + 100), Timestamp(T0 + 200)]
        }
    );
    s.apply(ctx(2, 2), member_id(0), &Body::Revoke { grant: g })
        .unwrap();
    assert_eq!(
        ask(&s, Action::Read, &p, T0 + 150),
        Decision::Deny(DenyReason::Revoked { grant: g })
    );
    assert_eq!(DenyReason::Revoked { grant: g }.code(), "revoked-grant");
}

#[test]
fn every_deny_kind_is_listed_and_its_code_parses_back() {
    // No wildcard: a new kind does not compile until it is listed here,
    // and so remembered in `DenyKind::ALL`.
    let listed = |kind: DenyKind| match kind {
        DenyKind::NotAMember
        | DenyKind::NoGrant
        | DenyKind::OutOfScope
        | DenyKind::ActionNotGranted
        | DenyKind::NotYetValid
        | DenyKind::Expired
        | DenyKind::Ended
        | DenyKind::Revoked
        | DenyKind::PurposeMismatch => DenyKind::ALL.contains(&kind),
    };
    for kind in DenyKind::ALL {
        assert!(listed(kind));
        assert_eq!(DenyKind::parse(kind.code()), Some(kind));
    }
    let mut codes: Vec<&str> = DenyKind::ALL.iter().map(|k| k.code()).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), DenyKind::ALL.len());
    assert_eq!(DenyKind::parse("no-such-code"), None);
    let g = GrantId([7; 32]);
    assert_eq!(DenyReason::Ended { grant: g }.kind(), DenyKind::Ended);
}

#[test]
fn the_same_state_has_the_same_rows_however_it_was_built() {
    let g1 = Body::Grant(terms(0, 1, &["*"], &[Action::Read], T0, T0 + 1000));
    let g2 = Body::Grant(terms(1, 2, &["a/*"], &[Action::List], T0, T0 + 1000));
    let mut a = state(3);
    a.apply(ctx(1, 1), member_id(0), &g1).unwrap();
    a.apply(ctx(2, 1), member_id(1), &g2).unwrap();
    let mut b = state(3);
    b.apply(ctx(2, 1), member_id(1), &g2).unwrap();
    b.apply(ctx(1, 1), member_id(0), &g1).unwrap();
    let encode = |s: &State| {
        let mut out = Vec::new();
        let rows = (
            s.consortium(),
            s.members.values().cloned().collect::<Vec<_>>(),
            grants_of(s),
        );
        ciborium::ser::into_writer(&rows, &mut out).unwrap();
        out
    };
    assert_eq!(encode(&a), encode(&b));
    let back = State::from_rows(a.consortium(), a.members.values().cloned(), grants_of(&a));
    assert_eq!(back, a);
    assert!(back.same_grants(&a));
    // The rebuilt index answers like the original.
    let caller = did(1);
    let path = ResourcePath::parse("z").unwrap();
    let request = AccessRequest {
        owner: member_id(0),
        caller: &caller,
        action: Action::Read,
        path: &path,
        now: Timestamp(T0 + 1),
        purpose: None,
    };
    assert_eq!(authorize_ok(&back, &request), authorize_ok(&a, &request));
    assert!(matches!(
        authorize_ok(&back, &request),
        Decision::Allow { .. }
    ));
}

fn arb_grant() -> impl Strategy<Value = (u8, u8, Vec<&'static str>, Vec<Action>, u64, u64, u8)> {
    let patterns = prop::sample::subsequence(vec!["*", "a/*", "a/b/*", "a/b/c", "b/*", "c"], 1..3);
    let actions = prop::sample::subsequence(vec![Action::Read, Action::List, Action::Write], 1..3);
    (
        0u8..4,
        0u8..4,
        patterns,
        actions,
        0u64..100,
        1u64..100,
        0u8..3,
    )
}

fn arb_path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a", "a/b", "a/b/c", "a/b/c/d", "b", "b/x", "c", "cc", "a/bb",
    ])
}

proptest! {
    /// A state reading its grants through a base, rebased now and then the
    /// way a node rebases on its store after each block, answers every
    /// question exactly as the state holding everything in memory.
    #[test]
    fn a_state_on_a_base_agrees_with_one_in_memory(
        ops in prop::collection::vec((0u8..4, 0u8..4, 0u8..4, 0u8..10, any::<bool>()), 1..40),
    ) {
        let mut memory = state(4);
        let mut based = State::on_rows(memory.consortium(), memory.members.values().cloned(), rows_of(&memory), memory.grant_counts());
        for (i, (kind, a, b, target, rebase)) in ops.into_iter().enumerate() {
            let body = match kind {
                0 | 1 => Body::Grant(terms(a, b, &["x/*"], &[Action::Read], T0, T0 + 100)),
                2 => Body::Revoke { grant: GrantId([target + 10; 32]) },
                _ => Body::RemoveMember { member: member_id(b) },
            };
            let c = ApplyContext { entry_id: [i as u8 + 10; 32], height: i as u64 + 1, time: Timestamp(T0) };
            let m = memory.apply(c, member_id(a), &body);
            let d = based.apply(c, member_id(a), &body);
            prop_assert_eq!(m.is_ok(), d.is_ok(), "{:?} / {:?}", m, d);
            prop_assert_eq!(&memory, &based);
            prop_assert_eq!(memory.grant_counts(), based.grant_counts());
            for x in 0..4 {
                for y in 0..4 {
                    prop_assert_eq!(
                        memory.grants_between(&member_id(x), &member_id(y)).unwrap(),
                        based.grants_between(&member_id(x), &member_id(y)).unwrap()
                    );
                }
            }
            let after = GrantId([15; 32]);
            let page = |s: &State| {
                let mut ids = Vec::new();
                s.visit_grants(Some(&after), &mut |id, _| {
                    ids.push(id);
                    if ids.len() == 3 { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
                }).unwrap();
                ids
            };
            prop_assert_eq!(page(&memory), page(&based));
            if rebase {
                let base = rows_of(&based);
                based.rebase_grants(base);
                prop_assert_eq!(&memory, &based);
            }
        }
    }

    #[test]
    fn authorize_agrees_with_a_brute_force_reference(
        grants in prop::collection::vec(arb_grant(), 0..12),
        caller in 0u8..5,
        owner in 0u8..4,
        action in prop::sample::select(vec![Action::Read, Action::List, Action::Write]),
        path in arb_path(),
        now in 0u64..250,
    ) {
        let mut s = state(4);
        for (i, (grantor, grantee, patterns, mut actions, from, len, fate)) in grants.into_iter().enumerate() {
            actions.sort();
            let t = terms(grantor, grantee, &patterns, &actions, T0 + from, T0 + from + len);
            let c = ApplyContext { entry_id: [i as u8 + 1; 32], height: 1, time: Timestamp(T0) };
            // A third of the grants are revoked afterwards.
            if s.apply(c, member_id(grantor), &Body::Grant(t)).is_ok() && fate == 0 {
                let revoke = Body::Revoke { grant: GrantId(c.entry_id) };
                let at = ApplyContext { entry_id: [200 + i as u8; 32], height: 2, time: Timestamp(T0) };
                let _ = s.apply(at, member_id(grantor), &revoke);
            }
        }
        let caller_did = did(caller);
        let path = ResourcePath::parse(path).unwrap();
        let now = Timestamp(T0 + now);
        let decision = authorize_ok(&s, &AccessRequest { owner: member_id(owner), caller: &caller_did, action, path: &path, now, purpose: None });
        // Reference: scan every grant.
        let allowed = s.member_by_did(&caller_did).is_some_and(|m| grants_of(&s).iter().any(|(_, r)| {
            r.terms.grantor == member_id(owner) && r.terms.grantee == m.id
                && r.status == GrantStatus::Active
                && r.terms.not_before <= now && now < r.terms.not_after
                && r.terms.actions.contains(&action)
                && r.terms.resources.iter().any(|p| p.matches(&path))
        }));
        prop_assert_eq!(matches!(decision, Decision::Allow { .. }), allowed, "{:?}", decision);
        if let Decision::Allow { grant, .. } = decision {
            let r = &grant_of(&s, &grant);
            prop_assert!(r.status == GrantStatus::Active && r.terms.resources.iter().any(|p| p.matches(&path)));
        }
    }

    #[test]
    fn a_refused_entry_changes_nothing(grantor in 0u8..5, grantee in 0u8..5, from in 0u64..10, len in 0u64..10, proposer in 0u8..5, revoke in any::<bool>()) {
        let mut s = state(4);
        s.apply(ctx(1, 1), member_id(0), &Body::Grant(terms(0, 1, &["*"], &[Action::Read], T0, T0 + 50))).unwrap();
        let before = s.clone();
        let body = if revoke {
            Body::Revoke { grant: GrantId([grantor; 32]) }
        } else {
            Body::Grant(terms(grantor, grantee, &["*"], &[Action::Read], T0 + from, T0 + from + len))
        };
        if s.apply(ctx(9, 2), member_id(proposer), &body).is_err() {
            prop_assert_eq!(&s, &before);
        }
    }

    #[test]
    fn path_parsing_never_panics_and_never_admits_traversal(text in "[a-z./\\\\%]{0,40}") {
        if let Ok(p) = ResourcePath::parse(&text) {
            prop_assert!(!p.as_str().split('/').any(|s| s.is_empty() || s == "." || s == ".."));
            prop_assert!(!p.as_str().contains('\\') && !p.as_str().contains('%'));
        }
    }

    #[test]
    fn prefix_matching_agrees_with_a_segment_reference(prefix in "[ab](/[ab]){0,3}", path in "[ab](/[ab]){0,4}") {
        let pattern = ResourcePattern::parse(&format!("{prefix}/*")).unwrap();
        let path = ResourcePath::parse(&path).unwrap();
        let p: Vec<&str> = prefix.split('/').collect();
        let q: Vec<&str> = path.as_str().split('/').collect();
        let reference = q.len() > p.len() && q[..p.len()] == p[..];
        prop_assert_eq!(pattern.matches(&path), reference);
    }
}

#[test]
fn unreadable_rows_refuse_rather_than_answer() {
    let s = state(4);
    let broken = State::on_rows(
        s.consortium(),
        s.members.values().cloned(),
        std::sync::Arc::new(BrokenRows),
        GrantCounts::default(),
    );
    let caller = did(1);
    let path = ResourcePath::parse("x").unwrap();
    let request = AccessRequest {
        owner: member_id(0),
        caller: &caller,
        action: Action::Read,
        path: &path,
        now: Timestamp(T0),
        purpose: None,
    };
    assert!(authorize(&broken, &request).is_err());
    let mut next = broken.clone();
    let revoke = Body::Revoke {
        grant: GrantId([1; 32]),
    };
    assert!(matches!(
        next.apply(ctx(5, 1), member_id(0), &revoke),
        Err(Violation::Unreadable(_))
    ));
    let grant = Body::Grant(terms(0, 1, &["x"], &[Action::Read], T0, T0 + 10));
    assert!(matches!(
        next.apply(ctx(6, 1), member_id(0), &grant),
        Err(Violation::Unreadable(_))
    ));
}

#[test]
fn changes_name_exactly_the_rows_an_entry_touched() {
    let mut s = state(3);
    let g = Body::Grant(terms(0, 1, &["*"], &[Action::Read], T0, T0 + 1000));
    let mut changes = Changes::default();
    s.apply_recording(ctx(1, 1), member_id(0), &g, &mut changes)
        .unwrap();
    let id = GrantId([101; 32]);
    assert_eq!(changes.grants.iter().copied().collect::<Vec<_>>(), vec![id]);
    assert!(changes.members.is_empty() && !changes.consortium);
    assert_eq!(s.active_grants(), 1);

    // Removing the grantee ends its grant: the member, the grant and the
    // epoch change, and nothing else.
    let other = Body::Grant(terms(2, 0, &["*"], &[Action::Read], T0, T0 + 1000));
    s.apply(ctx(2, 2), member_id(2), &other).unwrap();
    let mut changes = Changes::default();
    s.apply_recording(
        ctx(3, 3),
        member_id(0),
        &Body::RemoveMember {
            member: member_id(1),
        },
        &mut changes,
    )
    .unwrap();
    assert_eq!(
        changes.members.iter().copied().collect::<Vec<_>>(),
        vec![member_id(1)]
    );
    assert_eq!(changes.grants.iter().copied().collect::<Vec<_>>(), vec![id]);
    assert!(changes.consortium);
    assert_eq!(
        grant_of(&s, &GrantId([102; 32])).status,
        GrantStatus::Active
    );
    assert_eq!(s.active_grants(), 1, "one ended, one still active");

    // A failed entry records nothing.
    let mut changes = Changes::default();
    assert!(
        s.apply_recording(ctx(4, 4), member_id(0), &g, &mut changes)
            .is_err()
    );
    assert!(changes.is_empty());
}

#[test]
fn a_member_is_named_by_its_name_in_any_case_or_its_did() {
    let s = state(3);
    assert_eq!(s.member_named("org-1").map(|m| m.id), Some(member_id(1)));
    assert_eq!(s.member_named("ORG-2").map(|m| m.id), Some(member_id(2)));
    let did = did(0).to_string();
    assert_eq!(s.member_named(&did).map(|m| m.id), Some(member_id(0)));
    assert!(s.member_named("org-9").is_none());
    assert!(s.member_named(&crate::tests::did(9).to_string()).is_none());
}

#[test]
fn durations_read_in_the_largest_fitting_unit() {
    use crate::primitives::human_duration_ms;
    for (ms, text) in [
        (0, "0 ms"),
        (500, "500 ms"),
        (1_500, "1 s 500 ms"),
        (90_000, "90 s"),
        (5_400_000, "90 min"),
        (9_000_000, "2 h 30 min"),
        (43_200_000, "12 h"),
        (93_600_000, "26 h"),
        (86_400_000, "1 day"),
        (Policy::default().grant_duration_max_ms, "732 days"),
        (360_000_000, "4 d 4 h"),
        (86_400_000 + 60_000, "1 d 1 min"),
        (93_784_005, "1 d 2 h 3 min 4 s 5 ms"),
    ] {
        assert_eq!(human_duration_ms(ms), text, "{ms}");
    }
}

#[test]
fn instants_read_as_rfc3339_utc() {
    use crate::primitives::rfc3339_ms;
    for (ms, text) in [
        (0, "1970-01-01T00:00:00Z"),
        (951_782_400_000, "2000-02-29T00:00:00Z"),
        (1_806_451_200_000, "2027-03-31T00:00:00Z"),
        (1_796_083_199_999, "2026-11-30T23:59:59.999Z"),
        (253_402_300_799_000, "9999-12-31T23:59:59Z"),
    ] {
        assert_eq!(rfc3339_ms(ms), text, "{ms}");
    }
    // No input panics, however far out.
    assert!(rfc3339_ms(u64::MAX).ends_with('Z'));
}

#[test]
fn window_and_length_violations_read_in_human_units() {
    let window = Violation::Window {
        not_before: 1_806_451_200_000,
        not_after: 1_806_451_200_000,
    };
    assert_eq!(
        window.to_string(),
        "the grant window is empty or over (not_before 2027-03-31T00:00:00Z, not_after 2027-03-31T00:00:00Z)"
    );
    let too_long = Violation::TooLong {
        max_ms: Policy::default().grant_duration_max_ms,
    };
    assert_eq!(
        too_long.to_string(),
        "the grant lasts longer than the policy's 732 days"
    );
}

#[test]
fn a_grant_that_names_a_purpose_serves_only_requests_that_declare_it() {
    let mut s = state(3);
    let caller = did(1);
    let p = ResourcePath::parse("data/x.csv").unwrap();
    let mut bound = terms(0, 1, &["data/*"], &[Action::Read], T0, T0 + 1_000);
    bound.purpose = Some("customs clearance".into());
    s.apply(ctx(1, 1), member_id(0), &Body::Grant(bound))
        .unwrap();
    let g = GrantId([101; 32]);
    let ask = |purpose| {
        authorize_ok(
            &s,
            &AccessRequest {
                owner: member_id(0),
                caller: &caller,
                action: Action::Read,
                path: &p,
                now: Timestamp(T0 + 10),
                purpose,
            },
        )
    };
    assert_eq!(
        ask(None),
        Decision::Deny(DenyReason::PurposeMismatch { grant: g })
    );
    assert_eq!(
        ask(Some("marketing")),
        Decision::Deny(DenyReason::PurposeMismatch { grant: g })
    );
    assert_eq!(
        DenyReason::PurposeMismatch { grant: g }.code(),
        "purpose-mismatch"
    );
    assert!(matches!(
        ask(Some("customs clearance")),
        Decision::Allow { .. }
    ));
    // Out of scope is still out of scope, whatever the purpose.
    let other = ResourcePath::parse("secret/x").unwrap();
    let request = AccessRequest {
        owner: member_id(0),
        caller: &caller,
        action: Action::Read,
        path: &other,
        now: Timestamp(T0 + 10),
        purpose: Some("customs clearance"),
    };
    assert_eq!(
        authorize_ok(&s, &request),
        Decision::Deny(DenyReason::OutOfScope)
    );
    // A grant without a purpose serves a request that declares one.
    s.apply(
        ctx(2, 2),
        member_id(0),
        &Body::Grant(terms(0, 1, &["open/*"], &[Action::Read], T0, T0 + 1_000)),
    )
    .unwrap();
    let open = ResourcePath::parse("open/y").unwrap();
    let request = AccessRequest {
        path: &open,
        ..request
    };
    assert!(matches!(authorize_ok(&s, &request), Decision::Allow { .. }));
}
