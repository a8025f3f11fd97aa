//! blake3 Merkle trees over a block's entry leaf hashes
//! ([`Entry::leaf_hash`](crate::entry::Entry::leaf_hash)), and inclusion
//! proofs.
//!
//! The tree has RFC 6962's shape: a tree of `n > 1` leaves is a left subtree
//! of the largest power of two smaller than `n` leaves and a right subtree
//! of the rest. Leaves and inner nodes are hashed under different tags, so
//! a leaf can never pass for a node.

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, hash_tagged, tag};

/// Longest proof accepted: a tree of 2^64 leaves is deeper than any block.
pub const PROOF_SIBLINGS_MAX: usize = 64;

/// The path from one leaf to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's index.
    pub index: u32,
    /// Leaves in the tree.
    pub leaf_count: u32,
    /// Sibling hashes from the leaf up.
    pub siblings: Vec<Hash>,
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// `index` is not below `leaf_count`.
    #[error("index {index} is outside a tree of {leaf_count} leaves")]
    Index {
        /// The index.
        index: u32,
        /// The leaf count.
        leaf_count: u32,
    },
    /// The number of siblings does not fit the tree's shape.
    #[error("{found} siblings; a leaf at this index needs {expected}")]
    Length {
        /// Expected by the shape.
        expected: usize,
        /// In the proof.
        found: usize,
    },
    /// The path does not lead to the root.
    #[error("the path does not lead to the root")]
    Mismatch,
}

fn leaf(hash: &Hash) -> Hash {
    hash_tagged(tag::MERKLE_LEAF, &hash.0)
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&left.0);
    bytes[32..].copy_from_slice(&right.0);
    hash_tagged(tag::MERKLE_NODE, &bytes)
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root over `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => hash_tagged(tag::MERKLE_EMPTY, b""),
        [one] => leaf(one),
        _ => {
            let k = split(leaves.len());
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The proof for leaf `index`, or `None` if there is no such leaf.
pub fn prove(leaves: &[Hash], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut siblings = Vec::new();
    let (mut lo, mut hi) = (0, leaves.len());
    // Walk down to the leaf, then reverse so siblings run leaf-to-root.
    while hi - lo > 1 {
        let k = lo + split(hi - lo);
        if index < k {
            siblings.push(root(&leaves[k..hi]));
            hi = k;
        } else {
            siblings.push(root(&leaves[lo..k]));
            lo = k;
        }
    }
    siblings.reverse();
    Some(InclusionProof {
        index: u32::try_from(index).ok()?,
        leaf_count: u32::try_from(leaves.len()).ok()?,
        siblings,
    })
}

impl InclusionProof {
    /// Checks that `leaf_hash` is leaf `index` of the tree with `root`.
    pub fn verify(&self, leaf_hash: &Hash, expected_root: &Hash) -> Result<(), ProofError> {
        let (index, count) = (self.index as usize, self.leaf_count as usize);
        if index >= count {
            return Err(ProofError::Index {
                index: self.index,
                leaf_count: self.leaf_count,
            });
        }
        // Which side each sibling is on, from the root down.
        let mut sides = Vec::new();
        let (mut lo, mut hi) = (0, count);
        while hi - lo > 1 {
            if sides.len() == PROOF_SIBLINGS_MAX {
                break;
            }
            let k = lo + split(hi - lo);
            if index < k {
                sides.push(false); // sibling on the right
                hi = k;
            } else {
                sides.push(true); // sibling on the left
                lo = k;
            }
        }
        if sides.len() != self.siblings.len() {
            return Err(ProofError::Length {
                expected: sides.len(),
                found: self.siblings.len(),
            });
        }
        let mut acc = leaf(leaf_hash);
        for (sibling, left) in self.siblings.iter().zip(sides.iter().rev()) {
            acc = if *left {
                node(sibling, &acc)
            } else {
                node(&acc, sibling)
            };
        }
        if acc == *expected_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| hash_tagged(tag::ENTRY, &(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn small_trees_have_the_rfc6962_shape() {
        let l = leaves(3);
        assert_eq!(
            root(&l),
            node(&node(&leaf(&l[0]), &leaf(&l[1])), &leaf(&l[2]))
        );
        assert_eq!(root(&l[..1]), leaf(&l[0]));
        assert_ne!(root(&[]), root(&l[..1]));
        assert!(prove(&l, 3).is_none());
    }

    proptest! {
        #[test]
        fn every_leaf_proves_and_any_change_breaks_it(n in 1usize..200, pick in any::<usize>(), bit in 0usize..256) {
            let l = leaves(n);
            let r = root(&l);
            let index = pick % n;
            let proof = prove(&l, index).unwrap();
            prop_assert!(proof.verify(&l[index], &r).is_ok());

            let mut flipped = l[index];
            flipped.0[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(proof.verify(&flipped, &r).is_err());
            let mut bad_root = r;
            bad_root.0[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(proof.verify(&l[index], &bad_root).is_err());
            if !proof.siblings.is_empty() {
                let mut p = proof.clone();
                let s = bit % p.siblings.len();
                p.siblings[s].0[0] ^= 1;
                prop_assert!(p.verify(&l[index], &r).is_err());
            }
            if n > 1 {
                let mut p = proof.clone();
                p.index = ((index + 1) % n) as u32;
                prop_assert!(p.verify(&l[index], &r).is_err());
            }
            let mut p = proof.clone();
            p.leaf_count = index as u32;
            prop_assert!(p.verify(&l[index], &r).is_err());
        }
    }
}
