//! The state's grants: the rows a store holds, plus what blocks changed
//! since the state was last based on them.
//!
//! A consortium's grants outgrow memory long before its members do, so a
//! [`State`](crate::State) can read its grants from a [`GrantRows`] (a
//! store's snapshot) and keep in memory only the grants changed since that
//! snapshot. Without a base every grant is in memory (an offline verifier, a
//! test). Either way the state answers the same questions the same way.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use crate::MemberId;
use crate::model::{GrantId, GrantRecord, GrantStatus};

/// Why grant rows could not be read: the store failed, which is this node's
/// trouble, never a rule of the consortium.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("the grant rows cannot be read: {0}")]
pub struct RowsError(pub String);

/// The grants a store holds, as of one snapshot: a base a state reads
/// through. Implementations must answer from one consistent snapshot (the
/// one the state's counts were taken from).
pub trait GrantRows: Send + Sync + fmt::Debug {
    /// The record of grant `id`.
    fn get(&self, id: &GrantId) -> Result<Option<GrantRecord>, RowsError>;

    /// The ids of the grants from `grantor` to `grantee`, ascending.
    fn between(&self, grantee: &MemberId, grantor: &MemberId) -> Result<Vec<GrantId>, RowsError>;

    /// Visits the records whose ids are greater than `after` (all, if
    /// `None`), ascending, until `visit` breaks.
    fn visit(
        &self,
        after: Option<&GrantId>,
        visit: &mut dyn FnMut(GrantId, &GrantRecord) -> ControlFlow<()>,
    ) -> Result<(), RowsError>;
}

/// How many grants there are, and how many are active (ledger status,
/// expiry aside). Kept in step by every change, stored beside the rows, so
/// nobody counts a million rows to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantCounts {
    /// Every grant ever committed.
    pub total: u64,
    /// Those whose status is active.
    pub active: u64,
}

/// The grants of a state: a base (optional) and the grants changed since.
#[derive(Clone, Default)]
pub(crate) struct Grants {
    base: Option<Arc<dyn GrantRows>>,
    /// Grants added or changed since `base` (every grant, without one).
    changed: OrdMap<GrantId, GrantRecord>,
    /// (grantee, grantor) → the grants in `changed` that `base` does not
    /// hold (only added grants: a status change keeps the pair).
    added_by_pair: OrdMap<(MemberId, MemberId), OrdSet<GrantId>>,
    counts: GrantCounts,
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grants")
            .field("base", &self.base)
            .field("changed", &self.changed.len())
            .field("counts", &self.counts)
            .finish()
    }
}

impl Grants {
    /// Every grant in memory.
    pub(crate) fn in_memory(records: impl IntoIterator<Item = (GrantId, GrantRecord)>) -> Self {
        let mut grants = Self::default();
        for (id, record) in records {
            grants.counts.total += 1;
            if record.status == GrantStatus::Active {
                grants.counts.active += 1;
            }
            grants
                .added_by_pair
                .entry((record.terms.grantee, record.terms.grantor))
                .or_default()
                .insert(id);
            grants.changed.insert(id, record);
        }
        grants
    }

    /// The grants `base` holds, counted by `counts`.
    pub(crate) fn on(base: Arc<dyn GrantRows>, counts: GrantCounts) -> Self {
        Self {
            base: Some(base),
            changed: OrdMap::new(),
            added_by_pair: OrdMap::new(),
            counts,
        }
    }

    /// Takes `base` as holding every grant: what was changed must be in it.
    pub(crate) fn rebase(&mut self, base: Arc<dyn GrantRows>) {
        self.base = Some(base);
        self.changed = OrdMap::new();
        self.added_by_pair = OrdMap::new();
    }

    pub(crate) fn counts(&self) -> GrantCounts {
        self.counts
    }

    pub(crate) fn get(&self, id: &GrantId) -> Result<Option<GrantRecord>, RowsError> {
        if let Some(record) = self.changed.get(id) {
            return Ok(Some(record.clone()));
        }
        match &self.base {
            Some(base) => base.get(id),
            None => Ok(None),
        }
    }

    pub(crate) fn contains(&self, id: &GrantId) -> Result<bool, RowsError> {
        Ok(self.changed.contains_key(id) || self.get(id)?.is_some())
    }

    /// The ids of the grants from `grantor` to `grantee`, ascending.
    pub(crate) fn between(
        &self,
        grantee: &MemberId,
        grantor: &MemberId,
    ) -> Result<Vec<GrantId>, RowsError> {
        let mut ids = match &self.base {
            Some(base) => base.between(grantee, grantor)?,
            None => Vec::new(),
        };
        if let Some(added) = self.added_by_pair.get(&(*grantee, *grantor)) {
            ids.extend(added.iter().copied());
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(ids)
    }

    /// Adds a new grant (its id unused: the caller checked).
    pub(crate) fn insert(&mut self, id: GrantId, record: GrantRecord) {
        self.counts.total += 1;
        if record.status == GrantStatus::Active {
            self.counts.active += 1;
        }
        self.added_by_pair
            .entry((record.terms.grantee, record.terms.grantor))
            .or_default()
            .insert(id);
        self.changed.insert(id, record);
    }

    /// Sets the status of an active grant; `false` if it is not active.
    pub(crate) fn end(&mut self, id: &GrantId, status: GrantStatus) -> Result<bool, RowsError> {
        let Some(mut record) = self.get(id)? else {
            return Ok(false);
        };
        if record.status != GrantStatus::Active {
            return Ok(false);
        }
        record.status = status;
        if status != GrantStatus::Active {
            self.counts.active -= 1;
        }
        self.changed.insert(*id, record);
        Ok(true)
    }

    /// Visits the grants after `after`, ascending by id, the changed ones
    /// in place of the base's, until `visit` breaks.
    pub(crate) fn visit(
        &self,
        after: Option<&GrantId>,
        visit: &mut dyn FnMut(GrantId, &GrantRecord) -> ControlFlow<()>,
    ) -> Result<(), RowsError> {
        let mut changed = match after {
            Some(after) => self.changed.range((
                std::ops::Bound::Excluded(*after),
                std::ops::Bound::Unbounded,
            )),
            None => self.changed.range::<_, GrantId>(..),
        }
        .peekable();
        let mut stopped = false;
        if let Some(base) = &self.base {
            base.visit(after, &mut |id, record| {
                // Changed grants before this one come first; a changed
                // grant replaces the base's version of itself.
                while let Some((next, _)) = changed.peek() {
                    if **next > id {
                        break;
                    }
                    let Some((next, changed_record)) = changed.next() else {
                        break;
                    };
                    if *next == id {
                        return match visit(*next, changed_record) {
                            ControlFlow::Break(()) => {
                                stopped = true;
                                ControlFlow::Break(())
                            }
                            ControlFlow::Continue(()) => ControlFlow::Continue(()),
                        };
                    }
                    if visit(*next, changed_record).is_break() {
                        stopped = true;
                        return ControlFlow::Break(());
                    }
                }
                let flow = visit(id, record);
                stopped = flow.is_break();
                flow
            })?;
        }
        if !stopped {
            for (id, record) in changed {
                if visit(*id, record).is_break() {
                    break;
                }
            }
        }
        Ok(())
    }
}
