//! One batch of changes: the new version's nodes, and the old ones it
//! leaves behind.

use crate::hash::Hash;

use super::{
    Child, InternalNode, KEY_BITS, KeyHash, LeafNode, Node, NodeKey, ReadError, TreeReader,
    Version, bit, empty_hash,
};

/// What a batch of changes does to the tree, for the caller to persist in
/// one transaction with the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUpdate {
    /// The version written.
    pub version: Version,
    /// The map's root hash at `version`.
    pub root: Hash,
    /// Nodes to store. Every key has `version`, and the root position at
    /// `version` is always among them (an empty map's root is
    /// [`Node::Empty`]).
    pub new_nodes: Vec<(NodeKey, Node)>,
    /// Nodes of the base version that `version` no longer uses.
    pub stale_nodes: Vec<StaleNode>,
}

/// A node that versions from `stale_since` on no longer use. Once no
/// version before `stale_since` is needed, the node can be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StaleNode {
    /// The first version that does not use the node.
    pub stale_since: Version,
    /// The node.
    pub node_key: NodeKey,
}

/// Why a batch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Versions must grow: a node key names the version that wrote it.
    #[error("version {version} is not after the base version {base}")]
    VersionNotAfterBase {
        /// The base version.
        base: Version,
        /// The version asked for.
        version: Version,
    },
    /// The same key twice in one batch (so the batch's order would matter).
    #[error("key {0} is changed twice in one batch")]
    DuplicateKey(KeyHash),
    /// A node the base version refers to is not in the store.
    #[error("missing state tree node {0:?}")]
    MissingNode(NodeKey),
    /// A stored node contradicts its position or its parent.
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

/// Applies `changes` (`Some(value)` sets a key, `None` deletes it; deleting
/// an absent key does nothing) to the tree at `base` (`None`: the empty
/// tree) and returns version `version`, which must be greater than `base`.
///
/// Reads and writes O(changes · depth) nodes. The order of `changes` does
/// not matter; a key may appear once. Nothing is written: the caller stores
/// `new_nodes` and records `stale_nodes`, in the block's transaction.
pub fn apply<R: TreeReader + ?Sized, V: AsRef<[u8]>>(
    reader: &R,
    base: Option<Version>,
    version: Version,
    changes: &[(KeyHash, Option<V>)],
) -> Result<TreeUpdate, ApplyError> {
    if let Some(base) = base
        && version <= base
    {
        return Err(ApplyError::VersionNotAfterBase { base, version });
    }
    let mut ops: Vec<(KeyHash, Op<'_>)> = changes
        .iter()
        .map(|(k, v)| {
            let op = match v {
                Some(v) => Op::Put(v.as_ref()),
                None => Op::Delete,
            };
            (*k, op)
        })
        .collect();
    ops.sort_unstable_by_key(|a| a.0);
    if let Some(w) = ops.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ApplyError::DuplicateKey(w[0].0));
    }

    let mut batch = Batch {
        reader,
        version,
        new_nodes: Vec::new(),
        stale_nodes: Vec::new(),
    };
    let root_pos = NodeKey::root(version);
    let current = match base {
        None => Current::Empty,
        Some(base) => {
            let at = NodeKey::root(base);
            match batch.read(&at)? {
                Node::Empty => {
                    batch.stale(at);
                    Current::Empty
                }
                node => Current::Stored {
                    at,
                    hash: node.hash(),
                    leaf: matches!(node, Node::Leaf(_)),
                },
            }
        }
    };
    let sub = batch.update(root_pos, current, &ops)?;
    // Every version has a root node of its own, so that it can be read and
    // proven from its version alone.
    let root = match sub {
        Sub::Empty => {
            batch.new_nodes.push((root_pos, Node::Empty));
            empty_hash()
        }
        Sub::Internal(child) if child.version == version => child.hash,
        Sub::Internal(child) => {
            let at = root_pos.at_version(child.version);
            let node = batch.read(&at)?;
            batch.stale(at);
            batch.new_nodes.push((root_pos, node));
            child.hash
        }
        Sub::Leaf(leaf) => batch.write_leaf(root_pos, leaf)?.hash,
    };
    Ok(TreeUpdate {
        version,
        root,
        new_nodes: batch.new_nodes,
        stale_nodes: batch.stale_nodes,
    })
}

/// A change, sorted by key inside a batch.
#[derive(Clone, Copy)]
enum Op<'a> {
    Put(&'a [u8]),
    Delete,
    /// An unchanged leaf being pushed down by a new neighbour.
    Keep(&'a LeafNode, NodeKey),
}

/// What a position holds in the base version.
#[derive(Clone, Copy)]
enum Current {
    Empty,
    Stored { at: NodeKey, hash: Hash, leaf: bool },
}

/// What a position holds in the new version.
enum Sub {
    Empty,
    /// One leaf, which may yet move up.
    Leaf(LeafSub),
    /// An internal node, already in place (at this very position).
    Internal(Child),
}

/// A lone leaf on its way to its position.
enum LeafSub {
    /// A base leaf, not read.
    Stored { at: NodeKey, hash: Hash },
    /// A leaf in hand; `stored_at` is where the base version keeps it.
    Loaded {
        leaf: LeafNode,
        stored_at: Option<NodeKey>,
    },
}

struct Batch<'r, R: ?Sized> {
    reader: &'r R,
    version: Version,
    new_nodes: Vec<(NodeKey, Node)>,
    stale_nodes: Vec<StaleNode>,
}

impl<R: TreeReader + ?Sized> Batch<'_, R> {
    fn read(&self, at: &NodeKey) -> Result<Node, ApplyError> {
        self.reader.node(at)?.ok_or(ApplyError::MissingNode(*at))
    }

    fn stale(&mut self, at: NodeKey) {
        self.stale_nodes.push(StaleNode {
            stale_since: self.version,
            node_key: at,
        });
    }

    /// The new subtree at `pos` (a key at `self.version`) after `ops`, all
    /// of whose keys lie below `pos`.
    fn update(
        &mut self,
        pos: NodeKey,
        current: Current,
        ops: &[(KeyHash, Op<'_>)],
    ) -> Result<Sub, ApplyError> {
        let (at, hash, leaf) = match current {
            Current::Empty => return self.build(pos, ops),
            Current::Stored { at, hash, leaf } => (at, hash, leaf),
        };
        if ops.is_empty() {
            return Ok(if leaf {
                Sub::Leaf(LeafSub::Stored { at, hash })
            } else {
                Sub::Internal(Child {
                    version: at.version(),
                    hash,
                    leaf: false,
                })
            });
        }
        match self.read(&at)? {
            Node::Leaf(stored) => {
                if !leaf {
                    return Err(ApplyError::Corrupt {
                        key: at,
                        reason: "a leaf where the parent names an internal node",
                    });
                }
                let touched = ops.iter().any(|(k, _)| *k == stored.key_hash);
                if !touched && ops.iter().all(|(_, op)| matches!(op, Op::Delete)) {
                    // Only deletions of absent keys: nothing changes here.
                    return Ok(Sub::Leaf(LeafSub::Stored { at, hash }));
                }
                if touched {
                    // Set again or deleted: the old leaf goes.
                    self.stale(at);
                    self.build(pos, ops)
                } else {
                    let mut merged = ops.to_vec();
                    let i = merged.partition_point(|(k, _)| *k < stored.key_hash);
                    merged.insert(i, (stored.key_hash, Op::Keep(&stored, at)));
                    self.build(pos, &merged)
                }
            }
            Node::Internal(node) => {
                if leaf {
                    return Err(ApplyError::Corrupt {
                        key: at,
                        reason: "an internal node where the parent names a leaf",
                    });
                }
                self.stale(at);
                let (l_ops, r_ops) = ops.split_at(split(&pos, ops, at)?);
                let current = |child: Option<Child>, pos: NodeKey| match child {
                    None => Current::Empty,
                    Some(c) => Current::Stored {
                        at: pos.at_version(c.version),
                        hash: c.hash,
                        leaf: c.leaf,
                    },
                };
                let l_pos = self.child_pos(&pos, false, at)?;
                let r_pos = self.child_pos(&pos, true, at)?;
                let left = self.update(l_pos, current(node.left, l_pos), l_ops)?;
                let right = self.update(r_pos, current(node.right, r_pos), r_ops)?;
                self.combine(pos, left, right)
            }
            Node::Empty => Err(ApplyError::Corrupt {
                key: at,
                reason: "an empty-tree marker below the root",
            }),
        }
    }

    /// The subtree at `pos` holding exactly the keys that `ops` put or keep.
    fn build(&mut self, pos: NodeKey, ops: &[(KeyHash, Op<'_>)]) -> Result<Sub, ApplyError> {
        let mut live = ops.iter().filter(|(_, op)| !matches!(op, Op::Delete));
        match (live.next(), live.next()) {
            (None, _) => Ok(Sub::Empty),
            (Some((key, Op::Put(value))), None) => Ok(Sub::Leaf(LeafSub::Loaded {
                leaf: LeafNode::new(*key, value),
                stored_at: None,
            })),
            (Some((_, Op::Keep(leaf, at))), None) => Ok(Sub::Leaf(LeafSub::Loaded {
                leaf: (*leaf).clone(),
                stored_at: Some(*at),
            })),
            _ => {
                // Two leaves or more: split.
                let (l_ops, r_ops) = ops.split_at(split(&pos, ops, pos)?);
                let left = self.build(self.child_pos(&pos, false, pos)?, l_ops)?;
                let right = self.build(self.child_pos(&pos, true, pos)?, r_ops)?;
                self.combine(pos, left, right)
            }
        }
    }

    fn child_pos(&self, pos: &NodeKey, right: bool, at: NodeKey) -> Result<NodeKey, ApplyError> {
        pos.child(self.version, right).ok_or(ApplyError::Corrupt {
            key: at,
            reason: "an internal node at depth 256",
        })
    }

    /// The subtree at `pos` made of two child subtrees: empty, the lone
    /// leaf moved up, or a new internal node.
    fn combine(&mut self, pos: NodeKey, left: Sub, right: Sub) -> Result<Sub, ApplyError> {
        Ok(match (left, right) {
            (Sub::Empty, Sub::Empty) => Sub::Empty,
            (Sub::Empty, Sub::Leaf(leaf)) | (Sub::Leaf(leaf), Sub::Empty) => Sub::Leaf(leaf),
            (l, r) => {
                let node = InternalNode {
                    left: self.place(self.child_pos(&pos, false, pos)?, l)?,
                    right: self.place(self.child_pos(&pos, true, pos)?, r)?,
                };
                let hash = node.hash();
                self.new_nodes.push((pos, Node::Internal(node)));
                Sub::Internal(Child {
                    version: self.version,
                    hash,
                    leaf: false,
                })
            }
        })
    }

    /// Puts `sub` at `pos` (a key at `self.version`): a leaf is written
    /// there unless the base already has it at that very position.
    fn place(&mut self, pos: NodeKey, sub: Sub) -> Result<Option<Child>, ApplyError> {
        match sub {
            Sub::Empty => Ok(None),
            Sub::Internal(child) => Ok(Some(child)),
            Sub::Leaf(LeafSub::Stored { at, hash }) if at.same_position(&pos) => Ok(Some(Child {
                version: at.version(),
                hash,
                leaf: true,
            })),
            Sub::Leaf(LeafSub::Loaded {
                leaf,
                stored_at: Some(at),
            }) if at.same_position(&pos) => Ok(Some(Child {
                version: at.version(),
                hash: leaf.hash(),
                leaf: true,
            })),
            Sub::Leaf(leaf) => self.write_leaf(pos, leaf).map(Some),
        }
    }

    /// Writes a leaf at `pos`, retiring its base copy if it has one.
    fn write_leaf(&mut self, pos: NodeKey, sub: LeafSub) -> Result<Child, ApplyError> {
        let leaf = match sub {
            LeafSub::Stored { at, .. } => {
                let Node::Leaf(leaf) = self.read(&at)? else {
                    return Err(ApplyError::Corrupt {
                        key: at,
                        reason: "an internal node where the parent names a leaf",
                    });
                };
                self.stale(at);
                leaf
            }
            LeafSub::Loaded { leaf, stored_at } => {
                if let Some(at) = stored_at {
                    self.stale(at);
                }
                leaf
            }
        };
        let hash = leaf.hash();
        self.new_nodes.push((pos, Node::Leaf(leaf)));
        Ok(Child {
            version: self.version,
            hash,
            leaf: true,
        })
    }
}

/// The index of the first op whose key goes right at `pos`'s depth.
fn split(pos: &NodeKey, ops: &[(KeyHash, Op<'_>)], at: NodeKey) -> Result<usize, ApplyError> {
    if pos.depth() >= KEY_BITS {
        // Distinct keys part before depth 256.
        return Err(ApplyError::Corrupt {
            key: at,
            reason: "two keys below depth 256",
        });
    }
    Ok(ops.partition_point(|(k, _)| !bit(k, pos.depth())))
}
