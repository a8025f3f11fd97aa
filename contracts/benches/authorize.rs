//! The grant check at 100, 10,000 and 1,000,000 active grants, allowed and
//! denied. DESIGN.md section 8 targets ≤ 1 µs at 10,000 grants.
//!
//! `cargo bench -p quorate-contracts --bench authorize`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use quorate_contracts::{
    AccessRequest, Action, ApplyContext, Body, Decision, Genesis, GrantTerms, MemberId, NewMember,
    Policy, ResourcePath, ResourcePattern, State, Timestamp, authorize,
};
use quorate_did::Keypair;

const MEMBERS: u32 = 64;
const T0: u64 = 1_800_000_000_000;

fn state_with(grants: u32) -> (State, Vec<Keypair>) {
    let keys: Vec<Keypair> = (0..MEMBERS)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_be_bytes());
            seed[31] = 1;
            Keypair::from_seed(&seed)
        })
        .collect();
    let ids: Vec<MemberId> = (0..MEMBERS)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            MemberId(id)
        })
        .collect();
    let genesis = Genesis {
        chain_id: "bench".into(),
        members: keys
            .iter()
            .enumerate()
            .map(|(i, k)| NewMember {
                name: format!("org-{i}"),
                did: k.did(),
            })
            .collect(),
        policy: Policy::default(),
        time: Timestamp(T0),
    };
    let mut state = State::genesis(&genesis, &ids).unwrap();
    for g in 0..grants {
        let grantor = (g % MEMBERS) as usize;
        let grantee = ((g / MEMBERS + 1 + g % MEMBERS) % MEMBERS) as usize;
        let grantee = if grantee == grantor {
            (grantee + 1) % MEMBERS as usize
        } else {
            grantee
        };
        let terms = GrantTerms {
            grantor: ids[grantor],
            grantee: ids[grantee],
            resources: vec![ResourcePattern::parse(&format!("datasets/d{g}/*")).unwrap()],
            actions: vec![Action::Read, Action::List],
            not_before: Timestamp(T0),
            not_after: Timestamp(T0 + 1_000_000_000),
            purpose: None,
            rate_limit: None,
        };
        let mut entry_id = [0u8; 32];
        entry_id[..4].copy_from_slice(&g.to_be_bytes());
        entry_id[31] = 7;
        let ctx = ApplyContext {
            entry_id,
            height: 1,
            time: Timestamp(T0),
        };
        state.apply(ctx, ids[grantor], &Body::Grant(terms)).unwrap();
    }
    (state, keys)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("authorize");
    for grants in [100u32, 10_000, 1_000_000] {
        let (state, keys) = state_with(grants);
        // Grant 0 (the first): member 0 to member 1, datasets/d0/*.
        let owner = *state.members.keys().next().unwrap();
        let caller = keys[1].did();
        let allowed = ResourcePath::parse("datasets/d0/file.csv").unwrap();
        let denied = ResourcePath::parse("datasets/other/file.csv").unwrap();
        let now = Timestamp(T0 + 1);
        let request = |path| AccessRequest {
            owner,
            caller: &caller,
            action: Action::Read,
            path,
            now,
            purpose: None,
        };
        assert!(matches!(
            authorize(&state, &request(&allowed)),
            Ok(Decision::Allow { .. })
        ));
        assert!(matches!(
            authorize(&state, &request(&denied)),
            Ok(Decision::Deny(_))
        ));
        group.bench_with_input(BenchmarkId::new("allow", grants), &grants, |b, _| {
            b.iter(|| authorize(&state, &request(&allowed)))
        });
        group.bench_with_input(BenchmarkId::new("deny", grants), &grants, |b, _| {
            b.iter(|| authorize(&state, &request(&denied)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
