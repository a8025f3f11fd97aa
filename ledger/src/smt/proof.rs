//! Reading a key at a version, and proofs of its value or its absence.

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError, Limits};
use crate::hash::Hash;

use super::{
    KEY_BITS, KeyHash, LeafNode, Node, NodeKey, ReadError, TreeReader, Version, bit,
    common_prefix_bits, empty_hash, internal_hash, leaf_hash, value_hash,
};

/// Largest encoded [`Proof`]: a leaf and 256 siblings fit with room to
/// spare (the exact worst case is 8,811 bytes).
pub const PROOF_BYTES_MAX: usize = 9 * 1024;

/// The leaf where a key's path ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofLeaf {
    /// The leaf's key: the key proven present, or another key whose leaf
    /// sits where the proven key would be (so the proven key is absent).
    pub key_hash: KeyHash,
    /// The hash of the leaf's value.
    pub value_hash: Hash,
}

/// A proof, against a root, of a key's value or of its absence.
///
/// The key's path runs from the root down one bit of the key per level
/// (0 left, 1 right) and ends after `siblings.len()` levels at a leaf or
/// at an empty subtree. `siblings[i]` is the hash of the subtree beside the
/// path at depth `i + 1` (the other child of the path's node at depth `i`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The leaf that ends the path, or `None` if it ends in an empty
    /// subtree.
    pub leaf: Option<ProofLeaf>,
    /// The siblings from the root down; at most 256.
    pub siblings: Vec<Hash>,
}

/// Why a proof does not show what it was asked to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// More siblings than a 256-bit key has levels.
    #[error("{found} siblings; a path has at most {KEY_BITS}")]
    TooManySiblings {
        /// In the proof.
        found: usize,
    },
    /// The path ends at another key's leaf, but that key does not share
    /// the path's first `depth` bits, so its leaf cannot be there.
    #[error("the proof's leaf is not on the key's path at depth {depth}")]
    LeafOffPath {
        /// The path's length.
        depth: usize,
    },
    /// The path does not lead to the root.
    #[error("the path does not lead to the root")]
    RootMismatch,
    /// A valid proof that the key is absent; a value was expected.
    #[error("the key is absent")]
    Absent,
    /// A valid proof that the key has a value; absence was expected.
    #[error("the key is present")]
    Present,
    /// A valid proof that the key has another value than the one expected.
    #[error("the key has another value")]
    ValueMismatch,
}

/// A node could not be read along a key's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// A node on the path is not in the store (for the root: the version
    /// was never written, or has been pruned).
    #[error("missing state tree node {0:?}")]
    MissingNode(NodeKey),
    /// A stored node contradicts its position.
    #[error("corrupt state tree node {key:?}: {reason}")]
    Corrupt {
        /// The node.
        key: NodeKey,
        /// What is wrong.
        reason: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The map's root hash at `version`.
pub fn root_hash<R: TreeReader + ?Sized>(
    reader: &R,
    version: Version,
) -> Result<Hash, LookupError> {
    let at = NodeKey::root(version);
    Ok(read(reader, &at)?.hash())
}

/// The value of `key` at `version`, or `None` if it is absent.
pub fn get<R: TreeReader + ?Sized>(
    reader: &R,
    version: Version,
    key: &KeyHash,
) -> Result<Option<Vec<u8>>, LookupError> {
    let (leaf, _) = walk(reader, version, key)?;
    Ok(leaf.filter(|l| l.key_hash == *key).map(|l| l.value))
}

/// A proof of `key`'s value, or of its absence, at `version`, against that
/// version's root ([`root_hash`]). Reads one node per level.
pub fn prove<R: TreeReader + ?Sized>(
    reader: &R,
    version: Version,
    key: &KeyHash,
) -> Result<Proof, LookupError> {
    let (leaf, siblings) = walk(reader, version, key)?;
    Ok(Proof {
        leaf: leaf.map(|l| ProofLeaf {
            key_hash: l.key_hash,
            value_hash: l.value_hash,
        }),
        siblings,
    })
}

fn read<R: TreeReader + ?Sized>(reader: &R, at: &NodeKey) -> Result<Node, LookupError> {
    reader.node(at)?.ok_or(LookupError::MissingNode(*at))
}

/// Follows `key` from the root at `version`: the leaf the path ends at,
/// and the siblings from the root down.
fn walk<R: TreeReader + ?Sized>(
    reader: &R,
    version: Version,
    key: &KeyHash,
) -> Result<(Option<LeafNode>, Vec<Hash>), LookupError> {
    let mut at = NodeKey::root(version);
    let mut siblings = Vec::new();
    loop {
        match read(reader, &at)? {
            Node::Empty if at.depth() == 0 => return Ok((None, siblings)),
            Node::Empty => {
                return Err(LookupError::Corrupt {
                    key: at,
                    reason: "an empty-tree marker below the root",
                });
            }
            Node::Leaf(leaf) => return Ok((Some(leaf), siblings)),
            Node::Internal(node) => {
                let corrupt = LookupError::Corrupt {
                    key: at,
                    reason: "an internal node at depth 256",
                };
                if at.depth() >= KEY_BITS {
                    return Err(corrupt);
                }
                let right = bit(key, at.depth());
                let (next, other) = if right {
                    (node.right, node.left)
                } else {
                    (node.left, node.right)
                };
                siblings.push(other.map_or_else(empty_hash, |c| c.hash));
                let Some(next) = next else {
                    return Ok((None, siblings));
                };
                at = at.child(next.version, right).ok_or(corrupt)?;
            }
        }
    }
}

impl Proof {
    /// Checks that this proof shows, against `root`, that `key` has the
    /// value `expected` (`Some`) or is absent (`None`).
    ///
    /// Errors say first whether the proof is valid for `key` and `root` at
    /// all ([`ProofError::TooManySiblings`], [`ProofError::LeafOffPath`],
    /// [`ProofError::RootMismatch`]), then, for a valid proof, how what it
    /// shows differs from `expected`.
    pub fn verify(
        &self,
        root: &Hash,
        key: &KeyHash,
        expected: Option<&[u8]>,
    ) -> Result<(), ProofError> {
        let proven = self.value_hash(root, key)?;
        match (proven, expected) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(ProofError::Absent),
            (Some(_), None) => Err(ProofError::Present),
            (Some(h), Some(v)) if h == value_hash(v) => Ok(()),
            (Some(_), Some(_)) => Err(ProofError::ValueMismatch),
        }
    }

    /// Checks the proof against `root` for `key` and returns what it shows:
    /// the hash of `key`'s value, or `None` for absence.
    pub fn value_hash(&self, root: &Hash, key: &KeyHash) -> Result<Option<Hash>, ProofError> {
        let depth = self.siblings.len();
        if depth > usize::from(KEY_BITS) {
            return Err(ProofError::TooManySiblings { found: depth });
        }
        let (mut acc, proven) = match &self.leaf {
            None => (empty_hash(), None),
            Some(leaf) => {
                let found = leaf_hash(&leaf.key_hash, &leaf.value_hash);
                if leaf.key_hash == *key {
                    (found, Some(leaf.value_hash))
                } else if usize::from(common_prefix_bits(&leaf.key_hash, key)) < depth {
                    return Err(ProofError::LeafOffPath { depth });
                } else {
                    (found, None)
                }
            }
        };
        for (i, sibling) in self.siblings.iter().enumerate().rev() {
            // i < depth ≤ 256, so it fits.
            acc = if bit(key, i as u16) {
                internal_hash(sibling, &acc)
            } else {
                internal_hash(&acc, sibling)
            };
        }
        if acc == *root {
            Ok(proven)
        } else {
            Err(ProofError::RootMismatch)
        }
    }

    /// The proof's canonical CBOR.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode(self)
    }

    /// Decodes a proof from its canonical CBOR, refusing anything over
    /// [`PROOF_BYTES_MAX`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let limits = Limits {
            bytes_max: PROOF_BYTES_MAX,
            // The proof map holds the leaf map and the siblings' array.
            depth_max: 2,
            // The proof map, its 2 keys, the leaf map and its 4 items, the
            // array and 256 siblings.
            items_max: 9 + u32::from(KEY_BITS),
        };
        codec::decode_with_limits(bytes, &limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smt::key_hash;

    #[test]
    fn the_largest_proof_fits_the_limit_and_decodes() {
        let proof = Proof {
            leaf: Some(ProofLeaf {
                key_hash: key_hash(b"a", b"b"),
                value_hash: value_hash(b"c"),
            }),
            siblings: vec![Hash([0xab; 32]); 256],
        };
        let bytes = proof.to_bytes().unwrap();
        assert_eq!(bytes.len(), 8811);
        assert!(bytes.len() <= PROOF_BYTES_MAX);
        assert_eq!(Proof::from_bytes(&bytes).unwrap(), proof);
        let mut long = proof.clone();
        long.siblings.push(Hash([0; 32]));
        assert!(Proof::from_bytes(&long.to_bytes().unwrap()).is_err());
        assert_eq!(
            long.verify(&Hash([0; 32]), &key_hash(b"a", b"b"), None),
            Err(ProofError::TooManySiblings { found: 257 })
        );
    }
}
