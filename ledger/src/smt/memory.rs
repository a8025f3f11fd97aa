//! The tree's nodes in memory: for tests, benches and callers that build
//! large maps without a store.

use std::collections::{BTreeSet, HashMap};

use crate::hash::Hash;

use super::{
    ApplyError, KeyHash, Node, NodeKey, ReadError, StaleNode, TreeReader, TreeUpdate, Version,
    apply,
};

/// Nodes in a hash map, with the stale list a store would keep (ordered,
/// for pruning). A hash map rather than a `BTreeMap`, so that a read costs
/// the same at any size and the tree's own cost shows in benches.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    nodes: HashMap<NodeKey, Node>,
    stale: BTreeSet<StaleNode>,
    latest: Option<Version>,
}

impl MemoryTree {
    /// An empty tree, with no version written.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last version written.
    pub fn latest(&self) -> Option<Version> {
        self.latest
    }

    /// Applies `changes` to the latest version as `version` and writes the
    /// result; returns the new root.
    pub fn apply<V: AsRef<[u8]>>(
        &mut self,
        version: Version,
        changes: &[(KeyHash, Option<V>)],
    ) -> Result<Hash, ApplyError> {
        let update = apply(self, self.latest, version, changes)?;
        let root = update.root;
        self.write(update);
        Ok(root)
    }

    /// Stores an update's new nodes and records its stale ones, as a store
    /// would in the block's transaction.
    pub fn write(&mut self, update: TreeUpdate) {
        self.nodes.extend(update.new_nodes);
        self.stale.extend(update.stale_nodes);
        self.latest = Some(
            self.latest
                .map_or(update.version, |v| v.max(update.version)),
        );
    }

    /// Deletes every node that no version from `oldest_kept` on uses;
    /// returns how many. Versions before `oldest_kept` are no longer
    /// readable.
    pub fn prune(&mut self, oldest_kept: Version) -> usize {
        let mut removed = 0;
        while let Some(first) = self.stale.first().copied() {
            if first.stale_since > oldest_kept {
                break;
            }
            self.stale.pop_first();
            removed += usize::from(self.nodes.remove(&first.node_key).is_some());
        }
        removed
    }

    /// Nodes stored.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every stored node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeKey, &Node)> {
        self.nodes.iter()
    }

    /// The stale list: nodes not yet pruned that some version no longer
    /// uses.
    pub fn stale_nodes(&self) -> impl Iterator<Item = &StaleNode> {
        self.stale.iter()
    }
}

impl TreeReader for MemoryTree {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, ReadError> {
        Ok(self.nodes.get(key).cloned())
    }
}
