//! The state tree: a versioned, authenticated map from 32-byte key hashes
//! to byte values (DESIGN.md section 4; `docs/state-tree.md`).
//!
//! A binary sparse Merkle tree over the 256 bits of each key hash (most
//! significant bit of byte 0 first), with *leaf shortcuts*: a key that is
//! alone in a subtree sits as a leaf at the top of that subtree instead of
//! at depth 256, and an empty subtree is one constant hash. The shape, and
//! so the root, depends only on the set of (key, value) pairs, never on the
//! order of the changes that made it.
//!
//! The tree is pure: it reads nodes through [`TreeReader`] (which the store
//! implements; [`MemoryTree`] is an in-memory one) and [`apply`] returns
//! every change as a [`TreeUpdate`] for the caller to persist in the
//! block's own transaction. A batch of `k` changes reads and writes
//! O(k · depth) nodes, depth ≈ log2(n). Nodes are stored under a
//! [`NodeKey`] (the version that wrote them and their position), so a node
//! is written once and replaced once: the update's stale list says exactly
//! which nodes the newer versions no longer need, and pruning them keeps
//! every later version provable. [`prove`] gives a [`Proof`] of a key's
//! value or of its absence, [`Proof::verify`] checks it against a root.

mod apply;
mod memory;
mod proof;

pub use apply::{ApplyError, StaleNode, TreeUpdate, apply};
pub use memory::MemoryTree;
pub use proof::{
    LookupError, PROOF_BYTES_MAX, Proof, ProofError, ProofLeaf, get, prove, root_hash,
};

use std::fmt;
use std::sync::LazyLock;

use blake3::hazmat::{ContextKey, HasherExt, hash_derive_key_context};
use serde::{Deserialize, Serialize};

use crate::hash::{Hash, hash_tagged};

/// The context strings of the state tree's hashes (blake3 `derive_key`).
pub mod tag {
    /// A key hash: a namespace and a canonical key.
    pub const KEY: &str = "quorate 2026 state key v1";
    /// A value hash: the bytes of a value.
    pub const VALUE: &str = "quorate 2026 state value v1";
    /// A leaf: a key hash and a value hash.
    pub const LEAF: &str = "quorate 2026 state leaf v1";
    /// An internal node: its left and right children's hashes.
    pub const NODE: &str = "quorate 2026 state node v1";
    /// An empty subtree (no bytes).
    pub const EMPTY: &str = "quorate 2026 state empty v1";
}

/// Bits in a key hash, so the greatest depth of a leaf.
pub const KEY_BITS: u16 = 256;

/// A key of the map: the 32-byte hash of a canonical key ([`key_hash`]).
pub type KeyHash = Hash;

/// A version of the tree: the height of the block that made it.
pub type Version = u64;

/// The key hash of `key_bytes` in `namespace`:
/// `H(KEY, u64-BE(len(namespace)) ‖ namespace ‖ key_bytes)`. The length
/// prefix keeps (`"ab"`, `"c"`) and (`"a"`, `"bc"`) apart.
pub fn key_hash(namespace: &[u8], key_bytes: &[u8]) -> KeyHash {
    static KEY: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(tag::KEY));
    let len = (namespace.len() as u64).to_be_bytes();
    tagged(&KEY, &[&len, namespace, key_bytes])
}

/// The hash of a value: `H(VALUE, value)`.
pub fn value_hash(value: &[u8]) -> Hash {
    static KEY: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(tag::VALUE));
    tagged(&KEY, &[value])
}

/// The hash of a leaf: `H(LEAF, key_hash ‖ value_hash)`.
pub fn leaf_hash(key: &KeyHash, value_hash: &Hash) -> Hash {
    static KEY: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(tag::LEAF));
    tagged(&KEY, &[&key.0, &value_hash.0])
}

/// The hash of an internal node: `H(NODE, left ‖ right)`, an empty child
/// counting as [`empty_hash`].
pub fn internal_hash(left: &Hash, right: &Hash) -> Hash {
    static KEY: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(tag::NODE));
    tagged(&KEY, &[&left.0, &right.0])
}

/// The hash of an empty subtree (of any depth), and the root of the empty
/// map: `H(EMPTY, "")`.
pub fn empty_hash() -> Hash {
    static EMPTY: LazyLock<Hash> = LazyLock::new(|| hash_tagged(tag::EMPTY, b""));
    *EMPTY
}

/// `H(tag, parts concatenated)` from the tag's context key, derived once:
/// the same as [`hash_tagged`] without hashing the tag again each time
/// (half the cost of a node's hash).
fn tagged(context_key: &ContextKey, parts: &[&[u8]]) -> Hash {
    let mut hasher = blake3::Hasher::new_from_context_key(context_key);
    for part in parts {
        hasher.update(part);
    }
    Hash(*hasher.finalize().as_bytes())
}

/// Bit `i` of a key hash (0 = the most significant bit of byte 0); bit `i`
/// chooses the child at depth `i`: 0 left, 1 right.
pub fn bit(key: &KeyHash, i: u16) -> bool {
    debug_assert!(i < KEY_BITS);
    let i = usize::from(i);
    key.0[i / 8] >> (7 - i % 8) & 1 == 1
}

/// How many leading bits two key hashes share (256 if they are equal).
pub fn common_prefix_bits(a: &KeyHash, b: &KeyHash) -> u16 {
    for (i, (x, y)) in a.0.iter().zip(b.0.iter()).enumerate() {
        let diff = x ^ y;
        if diff != 0 {
            // i < 32 and leading_zeros < 8: fits in u16.
            return (i as u16) * 8 + diff.leading_zeros() as u16;
        }
    }
    KEY_BITS
}

/// Where a node is stored: the version that wrote it and its position (the
/// first `depth` bits of the keys below it). Ordered by version, then
/// position, like its [`NodeKey::to_bytes`] form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey {
    version: Version,
    depth: u16,
    // Bits past `depth` are zero, so each position has one representation.
    path: [u8; 32],
}

/// Length of [`NodeKey::to_bytes`].
pub const NODE_KEY_BYTES: usize = 8 + 2 + 32;

/// Bytes that are not a [`NodeKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeKeyError {
    /// Not [`NODE_KEY_BYTES`] long.
    #[error("a node key is {NODE_KEY_BYTES} bytes, not {0}")]
    Length(usize),
    /// A depth over [`KEY_BITS`].
    #[error("depth {0} exceeds {KEY_BITS}")]
    Depth(u16),
    /// Bits set past the depth.
    #[error("path bits set past depth {0}")]
    Path(u16),
}

impl NodeKey {
    /// The root position at `version`.
    pub fn root(version: Version) -> Self {
        Self {
            version,
            depth: 0,
            path: [0; 32],
        }
    }

    /// The version that wrote the node.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The node's depth (0 for the root, at most [`KEY_BITS`]).
    pub fn depth(&self) -> u16 {
        self.depth
    }

    /// The position's bits, zero past [`NodeKey::depth`].
    pub fn path(&self) -> &[u8; 32] {
        &self.path
    }

    /// The position of this node's child on side `right`, as written by
    /// `version`; `None` at depth [`KEY_BITS`], which has no children.
    pub fn child(&self, version: Version, right: bool) -> Option<Self> {
        if self.depth >= KEY_BITS {
            return None;
        }
        let mut path = self.path;
        let i = usize::from(self.depth);
        if right {
            path[i / 8] |= 1 << (7 - i % 8);
        }
        Some(Self {
            version,
            depth: self.depth + 1,
            path,
        })
    }

    /// The same position under another version.
    pub fn at_version(&self, version: Version) -> Self {
        Self { version, ..*self }
    }

    /// Whether two keys name the same position (at any versions).
    pub fn same_position(&self, other: &Self) -> bool {
        self.depth == other.depth && self.path == other.path
    }

    /// `u64-BE(version) ‖ u16-BE(depth) ‖ path`: a fixed-width form for a
    /// store's table key, sorting like `NodeKey` itself.
    pub fn to_bytes(&self) -> [u8; NODE_KEY_BYTES] {
        let mut out = [0u8; NODE_KEY_BYTES];
        out[..8].copy_from_slice(&self.version.to_be_bytes());
        out[8..10].copy_from_slice(&self.depth.to_be_bytes());
        out[10..].copy_from_slice(&self.path);
        out
    }

    /// Parses [`NodeKey::to_bytes`], refusing a depth over 256 or bits set
    /// past the depth.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NodeKeyError> {
        let bytes: &[u8; NODE_KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| NodeKeyError::Length(bytes.len()))?;
        let mut version = [0u8; 8];
        version.copy_from_slice(&bytes[..8]);
        let depth = u16::from_be_bytes([bytes[8], bytes[9]]);
        if depth > KEY_BITS {
            return Err(NodeKeyError::Depth(depth));
        }
        let mut path = [0u8; 32];
        path.copy_from_slice(&bytes[10..]);
        if masked(&path, depth) != path {
            return Err(NodeKeyError::Path(depth));
        }
        Ok(Self {
            version: u64::from_be_bytes(version),
            depth,
            path,
        })
    }
}

/// `path` with every bit from `depth` on cleared.
fn masked(path: &[u8; 32], depth: u16) -> [u8; 32] {
    let mut out = [0u8; 32];
    let depth = usize::from(depth);
    for (i, byte) in out.iter_mut().enumerate() {
        let keep = depth.saturating_sub(i * 8).min(8);
        // `keep` leading bits of this byte survive.
        let mask = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        *byte = path[i] & mask;
    }
    out
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey(v{}, ", self.version)?;
        for i in 0..self.depth {
            let i = usize::from(i);
            let set = self.path[i / 8] >> (7 - i % 8) & 1 == 1;
            f.write_str(if set { "1" } else { "0" })?;
        }
        if self.depth == 0 {
            f.write_str("root")?;
        }
        f.write_str(")")
    }
}

/// A reference from an internal node to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// The version that wrote the child (its [`NodeKey`] is this version
    /// and the child's position).
    pub version: Version,
    /// The child's hash.
    pub hash: Hash,
    /// Whether the child is a leaf (so an update can tell, without reading
    /// it, that a lone leaf must move up when its sibling empties).
    pub leaf: bool,
}

/// An internal node: at least two leaves lie below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalNode {
    /// The subtree of keys whose bit at this depth is 0.
    pub left: Option<Child>,
    /// The subtree of keys whose bit at this depth is 1.
    pub right: Option<Child>,
}

impl InternalNode {
    /// `H(NODE, left ‖ right)`.
    pub fn hash(&self) -> Hash {
        let side = |c: &Option<Child>| c.map_or_else(empty_hash, |c| c.hash);
        internal_hash(&side(&self.left), &side(&self.right))
    }
}

/// A leaf: one key and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafNode {
    /// The key hash.
    pub key_hash: KeyHash,
    /// `H(VALUE, value)`, kept so that moving a leaf hashes nothing.
    pub value_hash: Hash,
    /// The value (the canonical CBOR of a row).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl LeafNode {
    /// A leaf for `key` holding `value`.
    pub fn new(key: KeyHash, value: &[u8]) -> Self {
        Self {
            key_hash: key,
            value_hash: value_hash(value),
            value: value.to_vec(),
        }
    }

    /// `H(LEAF, key_hash ‖ value_hash)`.
    pub fn hash(&self) -> Hash {
        leaf_hash(&self.key_hash, &self.value_hash)
    }
}

/// A stored node. Its hash is computed from its content, never stored
/// beside it: the tree is content-addressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// The root of an empty map (only ever at a root position).
    Empty,
    /// Two subtrees.
    Internal(InternalNode),
    /// One key and its value.
    Leaf(LeafNode),
}

impl Node {
    /// The node's hash.
    pub fn hash(&self) -> Hash {
        match self {
            Node::Empty => empty_hash(),
            Node::Internal(n) => n.hash(),
            Node::Leaf(l) => l.hash(),
        }
    }
}

/// A store could not read a node (its own failure, wrapped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read a state tree node: {0}")]
pub struct ReadError(String);

impl ReadError {
    /// A read error with a message (for wrapping the store's own).
    pub fn from_message(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Where the tree's nodes are read from: the store, or a [`MemoryTree`].
pub trait TreeReader {
    /// The node stored under `key`, or `None` if there is none.
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, ReadError>;
}

impl<R: TreeReader + ?Sized> TreeReader for &R {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, ReadError> {
        (**self).node(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn bits_and_prefixes_run_from_the_most_significant_bit() {
        let mut k = Hash([0; 32]);
        k.0[0] = 0b1000_0000;
        k.0[31] = 1;
        assert!(bit(&k, 0));
        assert!(!bit(&k, 1));
        assert!(bit(&k, 255));
        assert_eq!(common_prefix_bits(&k, &k), 256);
        assert_eq!(common_prefix_bits(&k, &Hash([0; 32])), 0);
        let mut j = k;
        j.0[31] = 0;
        assert_eq!(common_prefix_bits(&k, &j), 255);
    }

    #[test]
    fn node_keys_round_trip_and_refuse_non_canonical_paths() {
        let root = NodeKey::root(7);
        let k = root
            .child(7, true)
            .and_then(|k| k.child(9, false))
            .and_then(|k| k.child(9, true))
            .unwrap();
        assert_eq!(format!("{k:?}"), "NodeKey(v9, 101)");
        assert_eq!(NodeKey::from_bytes(&k.to_bytes()), Ok(k));
        let mut bad = k.to_bytes();
        bad[10] |= 0b0001_0000;
        assert_eq!(NodeKey::from_bytes(&bad), Err(NodeKeyError::Path(3)));
        let mut deep = k.to_bytes();
        deep[8..10].copy_from_slice(&257u16.to_be_bytes());
        assert_eq!(NodeKey::from_bytes(&deep), Err(NodeKeyError::Depth(257)));
        assert_eq!(NodeKey::from_bytes(&[0; 3]), Err(NodeKeyError::Length(3)));
        let mut full = NodeKey::root(0);
        for _ in 0..256 {
            full = full.child(0, true).unwrap();
        }
        assert_eq!(full.path(), &[0xff; 32]);
        assert!(full.child(0, false).is_none());
        assert_eq!(NodeKey::from_bytes(&full.to_bytes()), Ok(full));
    }

    #[test]
    fn nodes_encode_canonically_with_values_as_byte_strings() {
        let leaf = Node::Leaf(LeafNode::new(key_hash(b"ns", b"k"), b"value"));
        let bytes = codec::encode(&leaf).unwrap();
        assert_eq!(codec::decode::<Node>(&bytes).unwrap(), leaf);
        // "value" then a 5-byte byte string (major type 2).
        let needle = [b"value".as_slice(), &[0x45], b"value"].concat();
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
        let internal = Node::Internal(InternalNode {
            left: None,
            right: Some(Child {
                version: 3,
                hash: leaf.hash(),
                leaf: true,
            }),
        });
        let bytes = codec::encode(&internal).unwrap();
        assert_eq!(codec::decode::<Node>(&bytes).unwrap(), internal);
        assert_eq!(
            codec::decode::<Node>(&codec::encode(&Node::Empty).unwrap()).unwrap(),
            Node::Empty
        );
    }

    #[test]
    fn cached_context_keys_hash_like_derive_key() {
        use crate::hash::hash_tagged;
        let (a, b) = (Hash([1; 32]), Hash([2; 32]));
        let cat = [a.0, b.0].concat();
        assert_eq!(internal_hash(&a, &b), hash_tagged(tag::NODE, &cat));
        assert_eq!(leaf_hash(&a, &b), hash_tagged(tag::LEAF, &cat));
        assert_eq!(value_hash(b"v"), hash_tagged(tag::VALUE, b"v"));
    }

    #[test]
    fn key_hashes_separate_namespaces_by_length() {
        assert_ne!(key_hash(b"ab", b"c"), key_hash(b"a", b"bc"));
        assert_ne!(key_hash(b"", b"x"), value_hash(b"x"));
    }
}
