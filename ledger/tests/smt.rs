//! Goal: the state tree's root is a function of the map alone, its updates
//! list exactly the nodes they add and retire, and its proofs show values
//! and absences and nothing else.
//! Method: random batches of sets and deletes (proptest) on a `MemoryTree`,
//! checked after every batch against a plain recursive root over a
//! `BTreeMap` model and against a traversal of the stored nodes; proofs
//! tampered with in every way and bit; a frozen fixture for the bytes, whose
//! values were recomputed independently from docs/state-tree.md in Python
//! (`blake3` package, `derive_key_context=tag`, CBOR read by hand).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use quorate_ledger::hash::{Hash, hash_tagged};
use quorate_ledger::smt::{
    self, ApplyError, KeyHash, LookupError, MemoryTree, Node, NodeKey, Proof, ProofError,
    ProofLeaf, TreeReader, Version,
};

type Model = BTreeMap<KeyHash, Vec<u8>>;

// ---------------------------------------------------------------------------
// The reference: the definition of the root, written out plainly.

fn reference_root(model: &Model) -> Hash {
    let entries: Vec<(&KeyHash, &Vec<u8>)> = model.iter().collect();
    subtree(&entries, 0)
}

/// The root of the subtree holding `entries` (sorted, sharing their first
/// `depth` bits): empty, a lone leaf, or a node over the keys whose bit
/// `depth` is 0 and those whose bit is 1.
fn subtree(entries: &[(&KeyHash, &Vec<u8>)], depth: usize) -> Hash {
    match entries {
        [] => hash_tagged("quorate 2026 state empty v1", b""),
        [(key, value)] => {
            let value_hash = hash_tagged("quorate 2026 state value v1", value);
            hash_tagged(
                "quorate 2026 state leaf v1",
                &[key.0.as_slice(), &value_hash.0].concat(),
            )
        }
        _ => {
            let bit = |k: &KeyHash| k.0[depth / 8] >> (7 - depth % 8) & 1 == 1;
            let split = entries.iter().take_while(|(k, _)| !bit(k)).count();
            let left = subtree(&entries[..split], depth + 1);
            let right = subtree(&entries[split..], depth + 1);
            hash_tagged(
                "quorate 2026 state node v1",
                &[left.0.as_slice(), &right.0].concat(),
            )
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers.

/// A key universe: hashed keys, plus keys that share long prefixes (down to
/// a pair that differs only in bit 255) to exercise deep paths.
fn universe() -> Vec<KeyHash> {
    let mut keys: Vec<KeyHash> = (0u8..40).map(|i| smt::key_hash(b"test", &[i])).collect();
    let base = [0x5au8; 32];
    for flip in [255usize, 254, 200, 129, 64, 9, 8] {
        let mut k = base;
        k[flip / 8] ^= 1 << (7 - flip % 8);
        keys.push(Hash(k));
    }
    keys.push(Hash(base));
    keys.push(Hash([0; 32]));
    keys.push(Hash([0xff; 32]));
    assert_eq!(keys.len(), 50);
    keys
}

/// Every node key reachable from the root of `version`.
fn reachable(tree: &MemoryTree, version: Version) -> BTreeSet<NodeKey> {
    let mut out = BTreeSet::new();
    let mut todo = vec![NodeKey::root(version)];
    while let Some(at) = todo.pop() {
        let node = tree
            .node(&at)
            .unwrap()
            .unwrap_or_else(|| panic!("{at:?} missing"));
        out.insert(at);
        if let Node::Internal(n) = node {
            for (right, child) in [(false, n.left), (true, n.right)] {
                if let Some(c) = child {
                    todo.push(at.child(c.version, right).unwrap());
                }
            }
        }
    }
    out
}

/// Applies `batch` to `tree` at `version`, checks the update against the
/// model and the stored nodes, and writes it.
fn apply_checked(
    tree: &mut MemoryTree,
    model: &mut Model,
    version: Version,
    batch: &[(KeyHash, Option<Vec<u8>>)],
) -> Hash {
    let base = tree.latest();
    let before = base.map(|b| reachable(tree, b)).unwrap_or_default();
    let update = smt::apply(&*tree, base, version, batch).unwrap();
    for (k, v) in batch {
        match v {
            Some(v) => model.insert(*k, v.clone()),
            None => model.remove(k),
        };
    }
    assert_eq!(
        update.root,
        reference_root(model),
        "root at version {version}"
    );
    assert_eq!(update.version, version);

    let new: BTreeSet<NodeKey> = update.new_nodes.iter().map(|(k, _)| *k).collect();
    assert_eq!(new.len(), update.new_nodes.len(), "a node written twice");
    assert!(new.iter().all(|k| k.version() == version));
    assert!(new.contains(&NodeKey::root(version)));
    for (k, node) in &update.new_nodes {
        if let Node::Leaf(l) = node {
            // A leaf sits on its own key's path.
            assert!(smt::common_prefix_bits(&l.key_hash, &Hash(*k.path())) >= k.depth());
        }
    }
    let stale: BTreeSet<NodeKey> = update.stale_nodes.iter().map(|s| s.node_key).collect();
    assert_eq!(
        stale.len(),
        update.stale_nodes.len(),
        "a node retired twice"
    );
    assert!(update.stale_nodes.iter().all(|s| s.stale_since == version));

    let root = update.root;
    tree.write(update);
    let after = reachable(tree, version);
    let expected_stale: BTreeSet<NodeKey> = before.difference(&after).copied().collect();
    let expected_new: BTreeSet<NodeKey> = after.difference(&before).copied().collect();
    assert_eq!(stale, expected_stale, "stale nodes at version {version}");
    assert_eq!(new, expected_new, "new nodes at version {version}");
    assert_eq!(smt::root_hash(tree, version).unwrap(), root);
    root
}

/// Proves every key of `keys` at `version` and checks the proof shows the
/// model's value or absence.
fn check_proofs(tree: &MemoryTree, version: Version, root: &Hash, model: &Model, keys: &[KeyHash]) {
    for key in keys {
        let proof = smt::prove(tree, version, key).unwrap();
        let value = model.get(key).map(Vec::as_slice);
        assert_eq!(
            proof.verify(root, key, value),
            Ok(()),
            "{key:?} at {version}"
        );
        assert_eq!(smt::get(tree, version, key).unwrap().as_deref(), value);
        assert!(proof.siblings.len() <= 256);
        let bytes = proof.to_bytes().unwrap();
        assert_eq!(Proof::from_bytes(&bytes).unwrap(), proof);
    }
}

fn batch_strategy(keys: usize) -> impl Strategy<Value = Vec<(usize, Option<Vec<u8>>)>> {
    let change = (
        0..keys,
        prop_oneof![
            1 => Just(None),
            3 => proptest::collection::vec(any::<u8>(), 0..6).prop_map(Some),
        ],
    );
    proptest::collection::vec(change, 0..24).prop_map(|mut changes| {
        // One change per key and batch.
        let mut seen = BTreeSet::new();
        changes.retain(|(k, _)| seen.insert(*k));
        changes
    })
}

fn to_batch(
    keys: &[KeyHash],
    changes: &[(usize, Option<Vec<u8>>)],
) -> Vec<(KeyHash, Option<Vec<u8>>)> {
    changes.iter().map(|(i, v)| (keys[*i], v.clone())).collect()
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn incremental_roots_match_the_reference_and_old_versions_stay_provable(
        batches in proptest::collection::vec(batch_strategy(50), 1..10),
        prune_at in 0usize..10,
    ) {
        let keys = universe();
        let mut tree = MemoryTree::new();
        let mut model = Model::new();
        let mut history = Vec::new();
        for (i, changes) in batches.iter().enumerate() {
            let version = 10 + 3 * i as u64;
            let root = apply_checked(&mut tree, &mut model, version, &to_batch(&keys, changes));
            history.push((version, root, model.clone()));
        }
        // Every version is still provable while its nodes are kept.
        for (version, root, model) in &history {
            check_proofs(&tree, *version, root, model, &keys);
        }
        // Pruning keeps exactly the nodes of the versions kept.
        let oldest_kept = history[prune_at % history.len()].0;
        tree.prune(oldest_kept);
        let mut live = BTreeSet::new();
        for (version, _, _) in history.iter().filter(|(v, _, _)| *v >= oldest_kept) {
            live.extend(reachable(&tree, *version));
        }
        let stored: BTreeSet<NodeKey> = tree.nodes().map(|(k, _)| *k).collect();
        prop_assert_eq!(stored, live);
        for (version, root, model) in history.iter().filter(|(v, _, _)| *v >= oldest_kept) {
            check_proofs(&tree, *version, root, model, &keys);
        }
        if let Some((version, _, _)) = history.iter().find(|(v, _, _)| *v < oldest_kept) {
            prop_assert_eq!(
                smt::root_hash(&tree, *version),
                Err(LookupError::MissingNode(NodeKey::root(*version)))
            );
        }
    }

    #[test]
    fn the_order_of_changes_in_a_batch_does_not_matter(
        first in batch_strategy(50),
        second in batch_strategy(50),
        seed in any::<u64>(),
    ) {
        let keys = universe();
        let mut tree = MemoryTree::new();
        tree.apply(1, &to_batch(&keys, &first)).unwrap();
        let batch = to_batch(&keys, &second);
        let mut shuffled = batch.clone();
        // A seeded permutation: sort by a keyed hash of each key.
        shuffled.sort_by_key(|(k, _)| hash_tagged("quorate test shuffle", &[k.0.as_slice(), &seed.to_be_bytes()].concat()));
        let a = smt::apply(&tree, Some(1), 2, &batch).unwrap();
        let b = smt::apply(&tree, Some(1), 2, &shuffled).unwrap();
        prop_assert_eq!(a.root, b.root);
        let set = |u: &smt::TreeUpdate| u.new_nodes.iter().cloned().collect::<BTreeMap<_, _>>();
        prop_assert_eq!(set(&a), set(&b));
        let stale = |u: &smt::TreeUpdate| u.stale_nodes.iter().copied().collect::<BTreeSet<_>>();
        prop_assert_eq!(stale(&a), stale(&b));
    }

    #[test]
    fn deleting_everything_returns_the_empty_root(first in batch_strategy(50), split in 0usize..50) {
        let keys = universe();
        let mut tree = MemoryTree::new();
        let mut model = Model::new();
        apply_checked(&mut tree, &mut model, 1, &to_batch(&keys, &first));
        // Delete in two batches, the second also deleting absent keys.
        let present: Vec<KeyHash> = model.keys().copied().collect();
        let (a, _) = present.split_at(split.min(present.len()));
        let one: Vec<(KeyHash, Option<Vec<u8>>)> = a.iter().map(|k| (*k, None)).collect();
        apply_checked(&mut tree, &mut model, 2, &one);
        let all: Vec<(KeyHash, Option<Vec<u8>>)> = keys.iter().map(|k| (*k, None)).collect();
        let root = apply_checked(&mut tree, &mut model, 3, &all);
        prop_assert_eq!(root, smt::empty_hash());
        prop_assert_eq!(reachable(&tree, 3).len(), 1);
        prop_assert_eq!(tree.node(&NodeKey::root(3)).unwrap(), Some(Node::Empty));
        tree.prune(3);
        prop_assert_eq!(tree.node_count(), 1);
        check_proofs(&tree, 3, &root, &model, &keys);
    }

}

proptest! {
    // Each case flips every bit of a proof: a few thousand decodings.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn proofs_fail_for_a_wrong_value_key_or_root_and_every_bit_flip(
        first in batch_strategy(50),
        pick in 0usize..50,
        other in 0usize..50,
    ) {
        let keys = universe();
        let mut tree = MemoryTree::new();
        let mut model = Model::new();
        let root = apply_checked(&mut tree, &mut model, 1, &to_batch(&keys, &first));
        let key = keys[pick];
        let value = model.get(&key).cloned();
        let proof = smt::prove(&tree, 1, &key).unwrap();
        prop_assert_eq!(proof.verify(&root, &key, value.as_deref()), Ok(()));

        // A wrong claim about the key.
        match &value {
            Some(v) => {
                let wrong = [v.as_slice(), b"!"].concat();
                prop_assert_eq!(proof.verify(&root, &key, Some(&wrong)), Err(ProofError::ValueMismatch));
                prop_assert_eq!(proof.verify(&root, &key, None), Err(ProofError::Present));
            }
            None => prop_assert_eq!(proof.verify(&root, &key, Some(b"x")), Err(ProofError::Absent)),
        }
        // Another key: the proof shows nothing about it, unless it is that
        // key's own proof too (both absent from one empty subtree or beside
        // one third leaf, or the other key owns the leaf this one ends at).
        let other_key = keys[other];
        if other_key != key {
            let other_value = model.get(&other_key).map(Vec::as_slice);
            let shared = smt::prove(&tree, 1, &other_key).unwrap() == proof;
            let result = proof.verify(&root, &other_key, other_value);
            prop_assert_eq!(result.is_ok(), shared, "{:?}", result);
        }
        // Another root.
        let mut wrong_root = root;
        wrong_root.0[pick % 32] ^= 0x10;
        prop_assert_eq!(proof.verify(&wrong_root, &key, value.as_deref()), Err(ProofError::RootMismatch));

        // Every single-bit flip of the encoded proof.
        let bytes = proof.to_bytes().unwrap();
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            if let Ok(p) = Proof::from_bytes(&flipped) {
                prop_assert!(p.verify(&root, &key, value.as_deref()).is_err(), "bit {} of {}", i, bytes.len() * 8);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A larger tree, seeded: deeper paths and batches of hundreds.

#[test]
fn thousands_of_keys_in_large_batches_match_the_reference() {
    let mut tree = MemoryTree::new();
    let mut model = Model::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for version in 1..=12u64 {
        let mut batch = BTreeMap::new();
        for _ in 0..600 {
            let key = smt::key_hash(b"grant", &(next() % 4000).to_be_bytes());
            let value = if next() % 4 == 0 {
                None
            } else {
                Some(next().to_be_bytes().to_vec())
            };
            batch.insert(key, value);
        }
        let batch: Vec<_> = batch.into_iter().collect();
        let root = apply_checked(&mut tree, &mut model, version, &batch);
        let sample: Vec<KeyHash> = batch.iter().take(50).map(|(k, _)| *k).collect();
        check_proofs(&tree, version, &root, &model, &sample);
    }
    assert!(model.len() > 1000);
}

// ---------------------------------------------------------------------------
// Errors.

#[test]
fn bad_batches_and_missing_versions_are_refused() {
    let keys = universe();
    let mut tree = MemoryTree::new();
    tree.apply(5, &[(keys[0], Some(b"a".to_vec()))]).unwrap();
    let twice = [(keys[1], Some(b"a".to_vec())), (keys[1], None)];
    assert_eq!(
        smt::apply(&tree, Some(5), 6, &twice),
        Err(ApplyError::DuplicateKey(keys[1]))
    );
    assert_eq!(
        smt::apply(&tree, Some(5), 5, &[(keys[1], None::<Vec<u8>>)]),
        Err(ApplyError::VersionNotAfterBase {
            base: 5,
            version: 5
        })
    );
    assert_eq!(
        smt::apply(&tree, Some(4), 6, &[(keys[1], None::<Vec<u8>>)]),
        Err(ApplyError::MissingNode(NodeKey::root(4)))
    );
    assert_eq!(
        smt::prove(&tree, 9, &keys[0]),
        Err(LookupError::MissingNode(NodeKey::root(9)))
    );
    // An empty batch still writes the version's root (a copy).
    let empty: [(KeyHash, Option<Vec<u8>>); 0] = [];
    let update = smt::apply(&tree, Some(5), 6, &empty).unwrap();
    assert_eq!(update.root, smt::root_hash(&tree, 5).unwrap());
    assert_eq!(update.new_nodes.len(), 1);
    assert_eq!(update.stale_nodes.len(), 1);
    // A leaf that is not on the key's path proves nothing.
    let proof = Proof {
        leaf: Some(ProofLeaf {
            key_hash: Hash([0; 32]),
            value_hash: smt::value_hash(b"a"),
        }),
        siblings: vec![smt::empty_hash()],
    };
    assert_eq!(
        proof.verify(&smt::empty_hash(), &Hash([0xff; 32]), None),
        Err(ProofError::LeafOffPath { depth: 1 })
    );
}

// ---------------------------------------------------------------------------
// Frozen bytes.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fixture map of `docs/state-tree.md` section 7.
fn fixture() -> Vec<(KeyHash, Option<Vec<u8>>)> {
    [
        (
            b"grant".as_slice(),
            b"alpha".as_slice(),
            b"active".as_slice(),
        ),
        (b"grant", b"beta", b"revoked"),
        (b"grant", b"gamma", b"ended"),
        (b"member", b"did:key:z6MkAlice", b"epoch 1"),
        (b"member", b"did:key:z6MkBob", b"epoch 2"),
    ]
    .iter()
    .map(|(ns, k, v)| (smt::key_hash(ns, k), Some(v.to_vec())))
    .collect()
}

#[test]
fn hashes_roots_and_proofs_are_frozen() {
    // Print the values with `cargo test -p quorate-ledger --test smt frozen -- --nocapture`.
    let key = smt::key_hash(b"grant", b"alpha");
    let value_hash = smt::value_hash(b"active");
    let leaf = smt::leaf_hash(&key, &value_hash);
    let mut tree = MemoryTree::new();
    let root = tree.apply(1, &fixture()).unwrap();
    let present = smt::prove(&tree, 1, &key).unwrap();
    let absent_key = smt::key_hash(b"grant", b"delta");
    let absent = smt::prove(&tree, 1, &absent_key).unwrap();
    let present_hex = hex(&present.to_bytes().unwrap());
    let absent_hex = hex(&absent.to_bytes().unwrap());
    println!("empty      {}", smt::empty_hash());
    println!("key        {key}\nvalue_hash {value_hash}\nleaf       {leaf}\nroot       {root}");
    for (k, v) in fixture() {
        println!("entry      {k} {}", hex(v.as_deref().unwrap_or_default()));
    }
    println!("present    {present_hex}\nabsent_key {absent_key}\nabsent     {absent_hex}");
    // The two members alone: their keys both start with bit 0, so the
    // root's right subtree is empty and grant alpha's path ends there.
    let mut members = MemoryTree::new();
    let members_root = members.apply(1, &fixture()[3..]).unwrap();
    let in_empty = smt::prove(&members, 1, &key).unwrap();
    let in_empty_hex = hex(&in_empty.to_bytes().unwrap());
    println!("members    {members_root}\nin_empty   {in_empty_hex}");

    assert_eq!(
        smt::empty_hash().to_string(),
        "4e9ab5b6d265c32a61df5281447b2878298f64ffbda888867471b4f844509340"
    );
    assert_eq!(
        key.to_string(),
        "be2661fdf93f5ae8238097737cf02eefd5765b8a6284b3fafcbc460a5729b4b6"
    );
    assert_eq!(
        value_hash.to_string(),
        "3363940eb0b09957c063c1e5717a2d6d7cee793180bd6ee61c186d88826d1106"
    );
    assert_eq!(
        leaf.to_string(),
        "8a54c99cfa4b010009f781dc0d8eac9749c53ae0fe1d880df1be0cc4fc7d3ab6"
    );
    assert_eq!(
        root.to_string(),
        "0d2d5c8bf56abbaa06857fd036145992a7337bbfb44e7156baa2d64ff94098b8"
    );
    assert_eq!(
        present_hex,
        "a2646c656166a2686b65795f686173685820be2661fdf93f5ae8238097737cf02eefd5765b8a6284b3fafcbc460a5729b4b66a76616c75655f6861736858203363940eb0b09957c063c1e5717a2d6d7cee793180bd6ee61c186d88826d1106687369626c696e67738358209ebda2646dbf4180f30eb92a700c12978e07b11e927fa591cfeada701eed914f58206db5c3ca6d766b741c5cac10298d78a3fa2255b2c20afd3021a716c1b0059b6c58207618c3cd9f80b8899dfcbd0f4f913fb9128659a2c635645aa12151c6bbf9643c"
    );
    assert_eq!(
        absent_key.to_string(),
        "7aa96bc7c31046851dec6783723ef21157206140255d1ae281d951e666a09c86"
    );
    assert_eq!(
        absent_hex,
        "a2646c656166a2686b65795f68617368582051cb8f7caeba577ea89719719f7333f9989d1d17c41d3139b8b04fdd018257546a76616c75655f68617368582081250e39b38f6687e4a6b2cfe691f60c70c0501c0c0474481cb7f3e7801107fd687369626c696e67738258208e0bc20da550c96ddc4f2add303f0d7fd161b7650b964f5bde514be860bac9a55820ad02ca84e8d01c4c8535c181f5ce7602357d4f6942b08ac07ec40850f4cf0b06"
    );
    assert_eq!(present.verify(&root, &key, Some(b"active")), Ok(()));
    assert_eq!(absent.verify(&root, &absent_key, None), Ok(()));
    assert_eq!(
        members_root.to_string(),
        "4678e7e436ee75428d60ec29b1c5d7f00ac2f833eef692fc39d39cd3e1db28fa"
    );
    assert_eq!(
        in_empty_hex,
        "a2646c656166f6687369626c696e67738158209ebda2646dbf4180f30eb92a700c12978e07b11e927fa591cfeada701eed914f"
    );
    assert_eq!(in_empty.leaf, None);
    assert_eq!(in_empty.verify(&members_root, &key, None), Ok(()));
}
