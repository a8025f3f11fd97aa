//! Durable append throughput, with the raw cost of one `fdatasync` on the
//! same disk measured in the same run as the reference (DESIGN.md §8).
//!
//! `cargo bench -p quorate-ledger --features test-support --bench append`
//!
//! - `fdatasync_4k`: write 4 KiB and `sync_data`: the floor of any durable
//!   write here.
//! - `store_batch/N`: one durable transaction of 100 blocks of N entry ids
//!   (no verification): what redb itself sustains.
//! - `ledger_verified/N`: `Ledger::append_batch` of 10 real blocks of N
//!   grant entries, each endorsed by 3 of 4 members and certified: every
//!   signature, rule and state root checked, then written durably.

use std::io::Write;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quorate_contracts::Body;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::ledger::Ledger;
use quorate_ledger::store::{Store, StoredBlock};
use quorate_ledger::testing::Consortium;

fn fdatasync(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("sync")).unwrap();
    let page = [7u8; 4096];
    c.bench_function("fdatasync_4k", |b| {
        b.iter(|| {
            file.write_all(&page).unwrap();
            file.sync_data().unwrap();
        })
    });
}

fn store_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_batch");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for entries in [1usize, 100] {
        group.throughput(Throughput::Elements((100 * entries) as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(entries),
            &entries,
            |b, &entries| {
                b.iter_batched(
                    || {
                        let dir = tempfile::tempdir().unwrap();
                        let store = Store::open(&dir.path().join("s.redb")).unwrap();
                        let mut prev = [0u8; 32];
                        let blocks: Vec<StoredBlock> = (0..100u64)
                            .map(|h| {
                                let mut hash = [0u8; 32];
                                hash[..8].copy_from_slice(&h.to_be_bytes());
                                let b = StoredBlock {
                                    height: h,
                                    hash,
                                    prev_hash: prev,
                                    block: vec![1; 300 * entries],
                                    certificate: vec![2; 300],
                                    entry_ids: (0..entries)
                                        .map(|e| {
                                            let mut id = [0u8; 32];
                                            id[..8].copy_from_slice(&h.to_be_bytes());
                                            id[8..16].copy_from_slice(&(e as u64).to_be_bytes());
                                            id
                                        })
                                        .collect(),
                                    membership_entries: Vec::new(),
                                };
                                prev = hash;
                                b
                            })
                            .collect();
                        (dir, store, blocks)
                    },
                    |(_dir, store, blocks)| {
                        let state = quorate_ledger::store::StateWrite {
                            meta: b"meta".to_vec(),
                            ..Default::default()
                        };
                        store.append_batch(&blocks, &state).unwrap()
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    group.finish();
}

fn chain_of(blocks: usize, entries: usize) -> Vec<CommittedBlock> {
    let mut c = Consortium::new(4);
    let mut out = vec![c.blocks[0].clone()];
    for _ in 0..blocks {
        let batch = (0..entries)
            .map(|i| {
                let grantor = i % 4;
                c.entry(
                    grantor,
                    Body::Grant(c.grant_terms(grantor, (i + 1) % 4)),
                    &[(i + 1) % 4, (i + 2) % 4],
                )
            })
            .collect();
        out.push(c.commit(batch));
    }
    out
}

fn ledger_verified(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger_verified");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for entries in [10usize, 200] {
        let chain = chain_of(10, entries);
        group.throughput(Throughput::Elements((10 * entries) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(entries), &entries, |b, _| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let mut ledger = Ledger::open(&dir.path().join("l.redb")).unwrap();
                    ledger.init_genesis(&chain[0]).unwrap();
                    (dir, ledger)
                },
                |(_dir, mut ledger)| ledger.append_batch(&chain[1..]).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, fdatasync, store_batch, ledger_verified);
criterion_main!(benches);
