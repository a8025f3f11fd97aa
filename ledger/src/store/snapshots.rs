//! Read snapshots of the store that the pure code reads through: the state
//! tree's nodes ([`StoreTree`], a `smt::TreeReader`) and the grant rows
//! ([`StoreGrants`], a `contracts::GrantRows`).

use super::{ReadError, read_err};

/// The state tree's nodes in the store, on one read snapshot.
pub struct StoreTree {
    pub(super) table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl crate::smt::TreeReader for StoreTree {
    fn node(
        &self,
        key: &crate::smt::NodeKey,
    ) -> Result<Option<crate::smt::Node>, crate::smt::ReadError> {
        let failed = |e: &dyn std::fmt::Display| crate::smt::ReadError::from_message(e.to_string());
        let Some(bytes) = self
            .table
            .get(key.to_bytes().as_slice())
            .map_err(|e| failed(&e))?
        else {
            return Ok(None);
        };
        crate::codec::decode(bytes.value())
            .map(Some)
            .map_err(|e| failed(&e))
    }
}

/// The grant rows on one snapshot of the store (see [`Store::grants`]).
pub struct StoreGrants {
    pub(super) grants: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(super) pairs: redb::ReadOnlyTable<&'static [u8], ()>,
}

impl std::fmt::Debug for StoreGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreGrants")
    }
}

impl StoreGrants {
    /// How many grant rows the snapshot holds (without decoding them).
    pub fn len(&self) -> Result<u64, ReadError> {
        use redb::ReadableTableMetadata as _;
        self.grants.len().map_err(read_err)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> Result<bool, ReadError> {
        Ok(self.len()? == 0)
    }
}

fn rows_err(e: impl std::fmt::Display) -> quorate_contracts::RowsError {
    quorate_contracts::RowsError(e.to_string())
}

fn decode_grant(
    bytes: &[u8],
) -> Result<quorate_contracts::GrantRecord, quorate_contracts::RowsError> {
    crate::codec::decode(bytes).map_err(|e| rows_err(format!("a grant row does not decode: {e}")))
}

impl quorate_contracts::GrantRows for StoreGrants {
    fn get(
        &self,
        id: &quorate_contracts::GrantId,
    ) -> Result<Option<quorate_contracts::GrantRecord>, quorate_contracts::RowsError> {
        match self.grants.get(id.0.as_slice()).map_err(rows_err)? {
            Some(bytes) => decode_grant(bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn between(
        &self,
        grantee: &quorate_contracts::MemberId,
        grantor: &quorate_contracts::MemberId,
    ) -> Result<Vec<quorate_contracts::GrantId>, quorate_contracts::RowsError> {
        let mut from = [0u8; 96];
        from[..32].copy_from_slice(&grantee.0);
        from[32..64].copy_from_slice(&grantor.0);
        let mut to = from;
        to[64..].fill(0xff);
        let mut ids = Vec::new();
        for row in self
            .pairs
            .range(from.as_slice()..=to.as_slice())
            .map_err(rows_err)?
        {
            let (key, _) = row.map_err(rows_err)?;
            let id: [u8; 32] = key.value()[64..]
                .try_into()
                .map_err(|_| rows_err("a grant pair key is not 96 bytes"))?;
            ids.push(quorate_contracts::GrantId(id));
        }
        Ok(ids)
    }

    fn visit(
        &self,
        after: Option<&quorate_contracts::GrantId>,
        visit: &mut dyn FnMut(
            quorate_contracts::GrantId,
            &quorate_contracts::GrantRecord,
        ) -> std::ops::ControlFlow<()>,
    ) -> Result<(), quorate_contracts::RowsError> {
        let range = match after {
            Some(after) => self.grants.range::<&[u8]>((
                std::ops::Bound::Excluded(after.0.as_slice()),
                std::ops::Bound::Unbounded,
            )),
            None => self.grants.range::<&[u8]>(..),
        }
        .map_err(rows_err)?;
        for row in range {
            let (id, value) = row.map_err(rows_err)?;
            let id: [u8; 32] = id
                .value()
                .try_into()
                .map_err(|_| rows_err("a grant key is not 32 bytes"))?;
            let record = decode_grant(value.value())?;
            if visit(quorate_contracts::GrantId(id), &record).is_break() {
                break;
            }
        }
        Ok(())
    }
}
