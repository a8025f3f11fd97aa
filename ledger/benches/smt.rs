//! The state tree's cost per block and its proofs (docs/state-tree.md
//! section 8).
//!
//! `cargo bench -p quorate-ledger --bench smt`
//!
//! - `smt_apply/<changes>/<keys>`: `smt::apply` of one batch (half updates
//!   of existing keys, half new keys, 96-byte values) on a tree of `keys`
//!   keys held in a `MemoryTree`; the update is computed, not written.
//! - `smt_prove/<keys>` and `smt_verify/<keys>`: a proof of a present key,
//!   and its verification against the root.
//!
//! Before the timings it prints the proofs' encoded sizes (present and
//! absent keys, mean and largest of 1,000) and the nodes a batch reads,
//! writes and retires (the machine-independent cost).

use std::cell::Cell;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use quorate_ledger::codec;
use quorate_ledger::hash::Hash;
use quorate_ledger::smt::{
    self, KeyHash, MemoryTree, NODE_KEY_BYTES, Node, NodeKey, ReadError, TreeReader,
};

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
const VALUE_BYTES: usize = 96;

fn key(i: u64) -> KeyHash {
    smt::key_hash(b"grant", &i.to_be_bytes())
}

fn value(i: u64) -> Vec<u8> {
    let mut v = vec![0xa5; VALUE_BYTES];
    v[..8].copy_from_slice(&i.to_be_bytes());
    v
}

/// A tree of `n` keys, built in batches of 100,000 (versions 1, 2, …).
fn build(n: u64) -> (MemoryTree, Hash) {
    let mut tree = MemoryTree::new();
    let mut root = smt::empty_hash();
    for (v, start) in (0..n).step_by(100_000).enumerate() {
        let batch: Vec<(KeyHash, Option<Vec<u8>>)> = (start..n.min(start + 100_000))
            .map(|i| (key(i), Some(value(i))))
            .collect();
        root = tree.apply(v as u64 + 1, &batch).unwrap();
    }
    // Keep only the last version, as a pruned store would.
    tree.prune(tree.latest().unwrap());
    println!("tree of {n} keys: {} nodes", tree.node_count());
    (tree, root)
}

fn proof_sizes(tree: &MemoryTree, n: u64) {
    let version = tree.latest().unwrap();
    for (what, offset) in [("present", 0), ("absent", n)] {
        let sizes: Vec<usize> = (0..1000u64)
            .map(|i| {
                let k = key(offset + i * (n / 1000));
                smt::prove(tree, version, &k)
                    .unwrap()
                    .to_bytes()
                    .unwrap()
                    .len()
            })
            .collect();
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        let max = sizes.iter().max().unwrap();
        println!("proof size, {n} keys, {what}: mean {mean:.0} bytes, max {max} bytes");
    }
}

/// Counts the reads of the tree it wraps.
struct Counting<'a>(&'a MemoryTree, Cell<usize>);

impl TreeReader for Counting<'_> {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, ReadError> {
        self.1.set(self.1.get() + 1);
        self.0.node(key)
    }
}

/// The mean number of nodes one batch reads and writes (the same mix as
/// `smt_apply`, 20 batches).
fn nodes_per_batch(tree: &MemoryTree, n: u64, changes: u64) {
    let base = tree.latest().unwrap();
    let counting = Counting(tree, Cell::new(0));
    let (mut written, mut bytes, mut stale) = (0, 0, 0);
    for round in 0..20u64 {
        let batch = mixed_batch(n, changes, round * changes);
        let update = smt::apply(&counting, Some(base), base + 1, &batch).unwrap();
        written += update.new_nodes.len();
        bytes += update
            .new_nodes
            .iter()
            .map(|(_, node)| codec::encode(node).unwrap().len() + NODE_KEY_BYTES)
            .sum::<usize>();
        stale += update.stale_nodes.len();
    }
    println!(
        "nodes per batch of {changes}, {n} keys: {} read, {} written ({} bytes as key + CBOR), {} stale",
        counting.1.get() / 20,
        written / 20,
        bytes / 20,
        stale / 20
    );
}

/// `changes` changes: updates of existing keys spread over the tree
/// alternating with new keys, numbered from `from`.
fn mixed_batch(n: u64, changes: u64, from: u64) -> Vec<(KeyHash, Option<Vec<u8>>)> {
    (from..from + changes)
        .map(|i| {
            let k = if i % 2 == 0 { (i * 7919) % n } else { n + i };
            (key(k), Some(value(i)))
        })
        .collect()
}

fn state_tree(c: &mut Criterion) {
    let trees: Vec<(u64, MemoryTree, Hash)> = SIZES
        .iter()
        .map(|&n| {
            let (tree, root) = build(n);
            proof_sizes(&tree, n);
            nodes_per_batch(&tree, n, 1);
            nodes_per_batch(&tree, n, 256);
            (n, tree, root)
        })
        .collect();

    let mut group = c.benchmark_group("smt_apply");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for changes in [1u64, 256] {
        group.throughput(Throughput::Elements(changes));
        for (n, tree, _) in &trees {
            let base = tree.latest().unwrap();
            let next = Cell::new(0u64);
            group.bench_with_input(BenchmarkId::new(changes.to_string(), n), n, |b, &n| {
                b.iter_batched(
                    || {
                        let from = next.get();
                        next.set(from + changes);
                        mixed_batch(n, changes, from)
                    },
                    |batch| smt::apply(tree, Some(base), base + 1, &batch).unwrap(),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("smt_proof");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (n, tree, root) in &trees {
        let version = tree.latest().unwrap();
        let proofs: Vec<(KeyHash, Vec<u8>, smt::Proof)> = (0..256u64)
            .map(|j| {
                let i = (j * 7919) % n;
                (
                    key(i),
                    value(i),
                    smt::prove(tree, version, &key(i)).unwrap(),
                )
            })
            .collect();
        let next = Cell::new(0usize);
        group.bench_with_input(BenchmarkId::new("prove", n), n, |b, _| {
            b.iter(|| {
                let (k, _, _) = &proofs[next.get() % proofs.len()];
                next.set(next.get() + 1);
                smt::prove(tree, version, k).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("verify", n), n, |b, _| {
            b.iter(|| {
                let (k, v, p) = &proofs[next.get() % proofs.len()];
                next.set(next.get() + 1);
                p.verify(root, k, Some(v)).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, state_tree);
criterion_main!(benches);
