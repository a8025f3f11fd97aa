//! Persistence of the chain in the embedded store (redb).
//!
//! One file, these tables:
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | `"format"`, `"tip"` | format tag; `height (u64 BE) ‖ hash (32)` |
//! | `blocks` | height | canonical CBOR of the block |
//! | `certificates` | height | canonical CBOR of its quorum certificate |
//! | `entries` | entry id (32 bytes) | `(height, index in block)` |
//! | `membership_changes` | `(height, index)` | () |
//! | `chain` | `"meta"`, `"consortium"` | the chain's meta row (tip, tree version, root, grant counts); the consortium row |
//! | `members` | member id | canonical CBOR of the member |
//! | `grants` | grant id | canonical CBOR of the grant record |
//! | `grant_pairs` | `grantee ‖ grantor ‖ grant id` | () |
//! | `recent_entries` | entry id | its block's time (ms): the replay window |
//! | `state_tree` | node key `(version, depth, path)` | canonical CBOR of the node |
//! | `state_tree_stale` | `(stale since, node key)` | (): what pruning may delete |
//! | `state_tree_versions` | version (a height) | its block's time (ms) |
//! | `consensus` | `"machine"` | the agreement machine's persisted state |
//!
//! Only the meta, consortium and member rows and the replay window are
//! loaded at open; grants are read on demand ([`Store::grants`]) and tree
//! nodes as paths need them ([`Store::tree`]).
//!
//! Appending writes the block, its certificate, its entry index, the rows
//! it changed, the tree's new nodes (and prunes old ones) and the new tip
//! in one write transaction committed with
//! `Durability::Immediate` (fsync before `commit` returns): a crash leaves
//! the store at the old tip or the new one, never between. The node drives
//! the store from one task; redb admits one writer at a time anyway.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

mod snapshots;
pub use snapshots::{StoreGrants, StoreTree};

/// Largest stored block (or certificate) accepted.
pub const BLOCK_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Format tag in the `meta` table: refuses files that are not ours, and
/// ours of another format. v2: blocks' `tx_root` covers whole entries,
/// certificates' `value_id` is a byte string, and the state is rows with a
/// state tree, so v1 bytes would not decode or verify. v3: grants are read
/// from their rows on demand, through an index of grant pairs, and the
/// meta row counts them.
pub const FORMAT: &[u8] = b"quorate-ledger-store v3";

/// What every [`FORMAT`] tag starts with, to tell an old store of ours
/// from a foreign file.
const FORMAT_NAME: &[u8] = b"quorate-ledger-store ";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const ENTRIES: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("entries");
/// The chain's meta row (`"meta"`) and the consortium row (`"consortium"`).
const CHAIN: TableDefinition<&str, &[u8]> = TableDefinition::new("chain");
/// Member rows: member id → canonical CBOR of the member.
const MEMBERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("members");
/// Grant rows: grant id → canonical CBOR of the grant record.
const GRANTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("grants");
/// The grants between two members: `grantee ‖ grantor ‖ grant id` → ().
/// A grant's parties never change, so a row is written once, with it.
const GRANT_PAIRS: TableDefinition<&[u8], ()> = TableDefinition::new("grant_pairs");
/// The replay window: entry id → its block's time (ms).
const RECENT: TableDefinition<&[u8], u64> = TableDefinition::new("recent_entries");
/// Where membership changes are: (height, index in block) → ().
const MEMBERSHIP: TableDefinition<(u64, u32), ()> = TableDefinition::new("membership_changes");
/// The versions the state tree holds, with their block's time (ms): a
/// block that changed the state wrote the version of its height. Pruning
/// removes the oldest.
const TREE_VERSIONS: TableDefinition<u64, u64> = TableDefinition::new("state_tree_versions");
/// State tree nodes: node key (version, depth, path) → canonical CBOR.
const TREE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state_tree");
/// Nodes the versions from `stale_since` on no longer use, for pruning.
const TREE_STALE: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("state_tree_stale");
const CONSENSUS: TableDefinition<&str, &[u8]> = TableDefinition::new("consensus");

/// A block as the store sees it: encoded bytes plus the facts it checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: [u8; 32],
    /// The previous block's hash (zero for genesis).
    pub prev_hash: [u8; 32],
    /// Canonical CBOR of the block.
    pub block: Vec<u8>,
    /// Canonical CBOR of its certificate.
    pub certificate: Vec<u8>,
    /// Ids of its entries, in order.
    pub entry_ids: Vec<[u8; 32]>,
    /// Indexes of its entries that change membership (at most one).
    pub membership_entries: Vec<u32>,
}

/// What a batch of blocks changed in the state, encoded: written in the
/// blocks' own transaction, so the rows always match the tip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateWrite {
    /// The chain's meta row.
    pub meta: Vec<u8>,
    /// The consortium row, if it changed.
    pub consortium: Option<Vec<u8>>,
    /// Member rows to put (`Some`) or delete (`None`).
    pub members: Vec<([u8; 32], Option<Vec<u8>>)>,
    /// Grant rows to put (`Some`) or delete (`None`).
    pub grants: Vec<([u8; 32], Option<Vec<u8>>)>,
    /// Grants added: `grantee ‖ grantor ‖ grant id`.
    pub grant_pairs: Vec<[u8; 96]>,
    /// Entry ids that joined the replay window, with their block's time.
    pub recent_added: Vec<([u8; 32], u64)>,
    /// Entry ids that left it.
    pub recent_removed: Vec<[u8; 32]>,
    /// State tree versions written, with their block's time (ms).
    pub tree_versions: Vec<(u64, u64)>,
    /// State tree nodes to store: (node key, canonical CBOR).
    pub tree_nodes: Vec<(Vec<u8>, Vec<u8>)>,
    /// State tree nodes gone stale: (stale since, node key).
    pub tree_stale: Vec<(u64, Vec<u8>)>,
    /// Old state tree versions to prune in the same transaction.
    pub prune: Option<Prune>,
}

/// Which state tree versions a write prunes: those whose block time is
/// before `before_ms`, except the newest of them (the state in force at
/// `before_ms`, which later heights may still use), and at most
/// `nodes_max` nodes this time (the rest go with later writes), so an
/// append costs what it writes, not the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    /// Versions made before this block time (ms) go.
    pub before_ms: u64,
    /// Most nodes deleted by one write.
    pub nodes_max: usize,
}

/// Most version rows one write prunes.
const PRUNE_VERSIONS_MAX: usize = 1024;

/// The state's rows as stored, visited one at a time (a state of a million
/// grants is never held twice in memory while it loads).
pub trait RowVisitor {
    /// The error a visit can end with.
    type Error: From<ReadError>;
    /// The meta row and the consortium row.
    fn chain(&mut self, meta: &[u8], consortium: &[u8]) -> Result<(), Self::Error>;
    /// One member row.
    fn member(&mut self, value: &[u8]) -> Result<(), Self::Error>;
    /// One entry of the replay window.
    fn recent(&mut self, id: &[u8], time_ms: u64) -> Result<(), Self::Error>;
}

/// A stored block as read back: `(height, block bytes, certificate bytes)`.
pub type RawBlock = (u64, Vec<u8>, Vec<u8>);

/// The latest stored block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: [u8; 32],
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file is not a Quorate ledger store.
    #[error("{path} is not a Quorate ledger store")]
    Foreign {
        /// The path.
        path: String,
    },
    /// A Quorate ledger store of another format, which this build cannot
    /// read (nor convert: the chain's hashes differ between formats).
    #[error(
        "{path} is a ledger store in format {found:?}; this build reads only {:?}",
        String::from_utf8_lossy(FORMAT)
    )]
    Format {
        /// The path.
        path: String,
        /// The store's format tag.
        found: String,
    },
    /// redb refused the file or failed.
    #[error("cannot open the ledger store {path}: {message}")]
    Storage {
        /// The path.
        path: String,
        /// redb's message.
        message: String,
    },
}

/// A read failed.
#[derive(Debug, thiserror::Error)]
#[error("ledger store read failed: {0}")]
pub struct ReadError(String);

/// Why a block was not appended. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Not the next height.
    #[error("block {found} does not follow the tip ({expected} expected)")]
    Height {
        /// Expected height.
        expected: u64,
        /// The block's.
        found: u64,
    },
    /// `prev_hash` is not the tip's hash.
    #[error("block {height} does not link to the tip")]
    PrevHash {
        /// The block's height.
        height: u64,
    },
    /// An entry id is already stored: ids are never reused.
    #[error("entry {} is already stored", hex(id))]
    DuplicateEntry {
        /// The id.
        id: [u8; 32],
    },
    /// The block or certificate is over [`BLOCK_BYTES_MAX`].
    #[error("block {height} is {len} bytes, over the {BLOCK_BYTES_MAX}-byte limit")]
    TooLarge {
        /// The height.
        height: u64,
        /// Its size.
        len: usize,
    },
    /// Nothing to append.
    #[error("an empty batch")]
    Empty,
    /// redb failed.
    #[error("ledger store write failed: {0}")]
    Storage(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_err(e: impl std::fmt::Display) -> ReadError {
    ReadError(e.to_string())
}

fn write_err(e: impl std::fmt::Display) -> AppendError {
    AppendError::Storage(e.to_string())
}

fn database_err(name: &str, e: redb::DatabaseError) -> OpenError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => OpenError::Foreign {
            path: name.to_owned(),
        },
        other => OpenError::Storage {
            path: name.to_owned(),
            message: other.to_string(),
        },
    }
}

/// The chain on disk.
pub struct Store {
    /// Shared with the store's readers ([`Store::share`]); redb serves
    /// readers beside its one writer.
    db: std::sync::Arc<Database>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

fn decode_tip(bytes: &[u8]) -> Option<Tip> {
    let height = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let hash = bytes.get(8..40)?.try_into().ok()?;
    Some(Tip { height, hash })
}

fn encode_tip(tip: &Tip) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&tip.height.to_be_bytes());
    out[8..].copy_from_slice(&tip.hash);
    out
}

/// redb's page cache. Its default (1 GiB) let a node's memory grow with
/// the ledger's size; blocks are read rarely (sync, proofs), so a small
/// cache serves.
pub const CACHE_BYTES: usize = 32 * 1024 * 1024;

impl Store {
    /// Opens the store at `path`, creating it if missing.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let name = path.display().to_string();
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| database_err(&name, e))?;
        Self::init(db, &name)
    }

    /// Opens the store on a redb storage backend instead of a file (tests
    /// inject storage faults this way); `name` stands for the path in
    /// errors. Test-only: it exposes a redb type.
    #[cfg(feature = "test-support")]
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
        name: &str,
    ) -> Result<Self, OpenError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| database_err(name, e))?;
        Self::init(db, name)
    }

    /// Compacts the store at `path` in place: redb keeps the pages that
    /// pruning and rewrites free inside the file, and this gives them back
    /// to the file system. Needs the store to itself (the node stopped).
    /// Returns the file's size before and after.
    pub fn compact_file(path: &Path) -> Result<(u64, u64), OpenError> {
        let name = path.display().to_string();
        let storage = |e: &dyn std::fmt::Display| OpenError::Storage {
            path: name.clone(),
            message: e.to_string(),
        };
        let size = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| storage(&e))
        };
        let before = size(path)?;
        // Opened as a store first: a foreign or old file is refused as
        // such, not rewritten.
        let Self { db } = Self::open(path)?;
        let mut db = std::sync::Arc::try_unwrap(db).map_err(|_| storage(&"the store is shared"))?;
        db.compact().map_err(|e| storage(&e))?;
        drop(db);
        Ok((before, size(path)?))
    }

    /// Checks the format tag (writing it in a new store) and creates the
    /// tables.
    fn init(db: Database, name: &str) -> Result<Self, OpenError> {
        let storage = |e: &dyn std::fmt::Display| OpenError::Storage {
            path: name.to_owned(),
            message: e.to_string(),
        };
        let txn = db.begin_write().map_err(|e| storage(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| storage(&e))?;
            let existing = meta
                .get("format")
                .map_err(|e| storage(&e))?
                .map(|v| v.value().to_vec());
            match existing {
                Some(format) if format.starts_with(FORMAT_NAME) && format != FORMAT => {
                    return Err(OpenError::Format {
                        path: name.to_owned(),
                        found: String::from_utf8_lossy(&format).into_owned(),
                    });
                }
                Some(format) if format != FORMAT => {
                    return Err(OpenError::Foreign {
                        path: name.to_owned(),
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("format", FORMAT).map_err(|e| storage(&e))?;
                }
            }
            for table in [BLOCKS, CERTIFICATES] {
                txn.open_table(table).map_err(|e| storage(&e))?;
            }
            txn.open_table(ENTRIES).map_err(|e| storage(&e))?;
            txn.open_table(CHAIN).map_err(|e| storage(&e))?;
            for table in [MEMBERS, GRANTS, TREE] {
                txn.open_table(table).map_err(|e| storage(&e))?;
            }
            txn.open_table(GRANT_PAIRS).map_err(|e| storage(&e))?;
            txn.open_table(RECENT).map_err(|e| storage(&e))?;
            txn.open_table(TREE_STALE).map_err(|e| storage(&e))?;
            txn.open_table(MEMBERSHIP).map_err(|e| storage(&e))?;
            txn.open_table(TREE_VERSIONS).map_err(|e| storage(&e))?;
            txn.open_table(CONSENSUS).map_err(|e| storage(&e))?;
        }
        txn.commit().map_err(|e| storage(&e))?;
        Ok(Self {
            db: std::sync::Arc::new(db),
        })
    }

    /// Another handle on the same database, for reads from other threads
    /// (a [`crate::reader::LedgerReader`]). Appends stay with the
    /// ledger that owns the store.
    pub(crate) fn share(&self) -> Store {
        Store {
            db: self.db.clone(),
        }
    }

    /// The latest stored block, if any.
    pub fn tip(&self) -> Result<Option<Tip>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let meta = txn.open_table(META).map_err(read_err)?;
        let tip = meta.get("tip").map_err(read_err)?;
        Ok(tip.and_then(|v| decode_tip(v.value())))
    }

    /// Appends one block and what it changed in the state.
    pub fn append(&self, block: &StoredBlock, state: &StateWrite) -> Result<(), AppendError> {
        self.append_batch(std::slice::from_ref(block), state)
    }

    /// Appends blocks in order and what they changed in the state, in one
    /// durable transaction: all or nothing. Writes the blocks and the
    /// changed rows only, never the whole state.
    pub fn append_batch(
        &self,
        blocks: &[StoredBlock],
        state: &StateWrite,
    ) -> Result<(), AppendError> {
        if blocks.is_empty() {
            return Err(AppendError::Empty);
        }
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(write_err)?;
        let new_tip;
        {
            let mut meta = txn.open_table(META).map_err(write_err)?;
            let mut tip = meta
                .get("tip")
                .map_err(write_err)?
                .and_then(|v| decode_tip(v.value()));
            let mut block_table = txn.open_table(BLOCKS).map_err(write_err)?;
            let mut cert_table = txn.open_table(CERTIFICATES).map_err(write_err)?;
            let mut entries = txn.open_table(ENTRIES).map_err(write_err)?;
            for block in blocks {
                let (expected, link) = match tip {
                    None => (0, [0u8; 32]),
                    Some(t) => (t.height + 1, t.hash),
                };
                if block.height != expected {
                    return Err(AppendError::Height {
                        expected,
                        found: block.height,
                    });
                }
                if block.prev_hash != link {
                    return Err(AppendError::PrevHash {
                        height: block.height,
                    });
                }
                let len = block.block.len().max(block.certificate.len());
                if len > BLOCK_BYTES_MAX {
                    return Err(AppendError::TooLarge {
                        height: block.height,
                        len,
                    });
                }
                block_table
                    .insert(block.height, block.block.as_slice())
                    .map_err(write_err)?;
                cert_table
                    .insert(block.height, block.certificate.as_slice())
                    .map_err(write_err)?;
                let mut membership = txn.open_table(MEMBERSHIP).map_err(write_err)?;
                for index in &block.membership_entries {
                    membership
                        .insert((block.height, *index), ())
                        .map_err(write_err)?;
                }
                for (index, id) in block.entry_ids.iter().enumerate() {
                    if entries.get(id.as_slice()).map_err(write_err)?.is_some() {
                        return Err(AppendError::DuplicateEntry { id: *id });
                    }
                    entries
                        .insert(id.as_slice(), (block.height, index as u32))
                        .map_err(write_err)?;
                }
                tip = Some(Tip {
                    height: block.height,
                    hash: block.hash,
                });
            }
            new_tip = tip;
            if let Some(t) = &tip {
                meta.insert("tip", encode_tip(t).as_slice())
                    .map_err(write_err)?;
            }
            write_state(&txn, state)?;
        }
        // Returning early above drops `txn`, which aborts it: nothing written.
        txn.commit().map_err(write_err)?;
        // Read back what crossed the disk (STYLE: assertions in pairs).
        let stored = self
            .tip()
            .map_err(|e| AppendError::Storage(e.to_string()))?;
        assert_eq!(
            stored, new_tip,
            "the tip read back differs from the one written"
        );
        Ok(())
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, ReadError> {
        self.get_u64(BLOCKS, height)
    }

    /// The certificate of the block at `height`.
    pub fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>, ReadError> {
        self.get_u64(CERTIFICATES, height)
    }

    fn get_u64(
        &self,
        table: TableDefinition<u64, &[u8]>,
        key: u64,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(table).map_err(read_err)?;
        Ok(table
            .get(key)
            .map_err(read_err)?
            .map(|v| v.value().to_vec()))
    }

    /// Blocks `from..=to` with their certificates, stopping before the total
    /// would exceed `bytes_max` (at least one block is returned if any).
    pub fn blocks(&self, from: u64, to: u64, bytes_max: usize) -> Result<Vec<RawBlock>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let blocks = txn.open_table(BLOCKS).map_err(read_err)?;
        let certs = txn.open_table(CERTIFICATES).map_err(read_err)?;
        let mut out = Vec::new();
        let mut total = 0usize;
        if from > to {
            return Ok(out);
        }
        for item in blocks.range(from..=to).map_err(read_err)? {
            let (height, block) = item.map_err(read_err)?;
            let height = height.value();
            let block = block.value().to_vec();
            let cert = certs
                .get(height)
                .map_err(read_err)?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            total += block.len() + cert.len();
            if total > bytes_max && !out.is_empty() {
                break;
            }
            out.push((height, block, cert));
        }
        Ok(out)
    }

    /// Where an entry is: `(height, index in block)`.
    pub fn entry_location(&self, id: &[u8; 32]) -> Result<Option<(u64, u32)>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(ENTRIES).map_err(read_err)?;
        Ok(table
            .get(id.as_slice())
            .map_err(read_err)?
            .map(|v| v.value()))
    }

    /// Visits the state's rows at the tip that a node holds in memory (the
    /// meta and consortium rows, members, the replay window; grants are
    /// read on demand through [`Store::grants`]), all from one snapshot;
    /// `false` if the store holds no state yet.
    pub fn visit_state<V: RowVisitor>(&self, visitor: &mut V) -> Result<bool, V::Error> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let chain = txn.open_table(CHAIN).map_err(read_err)?;
        let (Some(meta), Some(consortium)) = (
            chain.get("meta").map_err(read_err)?,
            chain.get("consortium").map_err(read_err)?,
        ) else {
            return Ok(false);
        };
        visitor.chain(meta.value(), consortium.value())?;
        for row in txn
            .open_table(MEMBERS)
            .map_err(read_err)?
            .iter()
            .map_err(read_err)?
        {
            let (_, value) = row.map_err(read_err)?;
            visitor.member(value.value())?;
        }
        for row in txn
            .open_table(RECENT)
            .map_err(read_err)?
            .iter()
            .map_err(read_err)?
        {
            let (id, time) = row.map_err(read_err)?;
            visitor.recent(id.value(), time.value())?;
        }
        Ok(true)
    }

    /// Where the membership changes before `height` are, in order: at most
    /// `max` of them (the first ones).
    pub fn membership_changes(
        &self,
        height: u64,
        max: usize,
    ) -> Result<Vec<(u64, u32)>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(MEMBERSHIP).map_err(read_err)?;
        let mut out = Vec::new();
        for row in table.range(..(height, 0)).map_err(read_err)? {
            if out.len() == max {
                break;
            }
            let (at, _) = row.map_err(read_err)?;
            out.push(at.value());
        }
        Ok(out)
    }

    /// The state tree's version at `height`: the last one written at or
    /// before it (blocks that change nothing write none).
    pub fn tree_version_at(&self, height: u64) -> Result<Option<u64>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(TREE_VERSIONS).map_err(read_err)?;
        let last = table
            .range(..=height)
            .map_err(read_err)?
            .next_back()
            .transpose()
            .map_err(read_err)?;
        Ok(last.map(|(v, _)| v.value()))
    }

    /// The chain's meta row alone (what the tip's state is), if any.
    pub fn meta_row(&self) -> Result<Option<Vec<u8>>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let chain = txn.open_table(CHAIN).map_err(read_err)?;
        Ok(chain
            .get("meta")
            .map_err(read_err)?
            .map(|v| v.value().to_vec()))
    }

    /// The grant rows as of now, on one snapshot of the store: what a
    /// state reads its grants through. The snapshot holds the pages it
    /// reads, so take a new one after each append and drop the old.
    pub fn grants(&self) -> Result<StoreGrants, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        Ok(StoreGrants {
            grants: txn.open_table(GRANTS).map_err(read_err)?,
            pairs: txn.open_table(GRANT_PAIRS).map_err(read_err)?,
        })
    }

    /// A reader of the state tree's nodes, on a snapshot of the store.
    pub fn tree(&self) -> Result<StoreTree, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        Ok(StoreTree {
            table: txn.open_table(TREE).map_err(read_err)?,
        })
    }

    /// Bytes each table stores (keys and values, then redb's own metadata
    /// and fragmentation), for benchmarks: where a ledger's disk goes.
    pub fn table_bytes(&self) -> Result<Vec<(&'static str, u64, u64)>, ReadError> {
        use redb::ReadableTableMetadata as _;
        let txn = self.db.begin_read().map_err(read_err)?;
        let mut out = Vec::new();
        let mut add = |name: &'static str, stats: redb::TableStats| {
            out.push((
                name,
                stats.stored_bytes(),
                stats.metadata_bytes() + stats.fragmented_bytes(),
            ));
        };
        add(
            "blocks",
            txn.open_table(BLOCKS)
                .map_err(read_err)?
                .stats()
                .map_err(read_err)?,
        );
        add(
            "certificates",
            txn.open_table(CERTIFICATES)
                .map_err(read_err)?
                .stats()
                .map_err(read_err)?,
        );
        add(
            "entries",
            txn.open_table(ENTRIES)
                .map_err(read_err)?
                .stats()
                .map_err(read_err)?,
        );
        add(
            "members",
            txn.open_table(MEMBERS)
                .map_err(read_err)?
                .stats()
                .map_err(read_err)?,
        );
        add(
            "grants",
            txn.open_table(GRANTS)
                .map_err(read_err)?
                .stats()
                .map_err(read_err)?,
        );
        add(
            "recent",
            txn.open_table(RECENT)
                .map_err(read_err)?
                .stats()
                .map_err(read_err)?,
        );
        add(
            "state_tree",
            txn.open_table(TREE)
                .map_err(read_err)?
                .stats()
                .map_err(read_err)?,
        );
        add(
            "state_tree_stale",
            txn.open_table(TREE_STALE)
                .map_err(read_err)?
                .stats()
                .map_err(read_err)?,
        );
        Ok(out)
    }

    /// Durably replaces the agreement machine's persisted state.
    pub fn put_consensus_state(&self, bytes: &[u8]) -> Result<(), AppendError> {
        let mut txn = self.db.begin_write().map_err(write_err)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(write_err)?;
        {
            let mut table = txn.open_table(CONSENSUS).map_err(write_err)?;
            table.insert("machine", bytes).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }

    /// The agreement machine's persisted state.
    pub fn consensus_state(&self) -> Result<Option<Vec<u8>>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(CONSENSUS).map_err(read_err)?;
        Ok(table
            .get("machine")
            .map_err(read_err)?
            .map(|v| v.value().to_vec()))
    }
}

/// Writes a batch's state rows and tree nodes inside its transaction.
fn write_state(txn: &redb::WriteTransaction, state: &StateWrite) -> Result<(), AppendError> {
    let mut chain = txn.open_table(CHAIN).map_err(write_err)?;
    chain
        .insert("meta", state.meta.as_slice())
        .map_err(write_err)?;
    if let Some(consortium) = &state.consortium {
        chain
            .insert("consortium", consortium.as_slice())
            .map_err(write_err)?;
    }
    for (table, rows) in [(MEMBERS, &state.members), (GRANTS, &state.grants)] {
        let mut table = txn.open_table(table).map_err(write_err)?;
        for (key, value) in rows {
            match value {
                Some(value) => table.insert(key.as_slice(), value.as_slice()),
                None => table.remove(key.as_slice()),
            }
            .map_err(write_err)?;
        }
    }
    let mut pairs = txn.open_table(GRANT_PAIRS).map_err(write_err)?;
    for key in &state.grant_pairs {
        pairs.insert(key.as_slice(), ()).map_err(write_err)?;
    }
    let mut recent = txn.open_table(RECENT).map_err(write_err)?;
    for (id, time) in &state.recent_added {
        recent.insert(id.as_slice(), *time).map_err(write_err)?;
    }
    for id in &state.recent_removed {
        recent.remove(id.as_slice()).map_err(write_err)?;
    }
    let mut versions = txn.open_table(TREE_VERSIONS).map_err(write_err)?;
    for (version, time_ms) in &state.tree_versions {
        versions.insert(*version, *time_ms).map_err(write_err)?;
    }
    drop(versions);
    let mut tree = txn.open_table(TREE).map_err(write_err)?;
    for (key, node) in &state.tree_nodes {
        tree.insert(key.as_slice(), node.as_slice())
            .map_err(write_err)?;
    }
    let mut stale = txn.open_table(TREE_STALE).map_err(write_err)?;
    for (since, key) in &state.tree_stale {
        stale
            .insert((*since, key.as_slice()), ())
            .map_err(write_err)?;
    }
    drop(stale);
    drop(tree);
    if let Some(prune) = &state.prune {
        prune_tree(txn, prune)?;
    }
    Ok(())
}

/// Drops the state tree versions `prune` names, and the nodes no kept
/// version uses: a node stale since version `s` is used by versions before
/// `s` only, so once the oldest kept version is `k`, every node stale
/// since `s ≤ k` can go.
fn prune_tree(txn: &redb::WriteTransaction, prune: &Prune) -> Result<(), AppendError> {
    let mut versions = txn.open_table(TREE_VERSIONS).map_err(write_err)?;
    // Times grow with versions: walk from the oldest while the next one is
    // still before the cutoff; the last such is the oldest kept.
    let mut keep = None;
    let mut dropped = Vec::new();
    for row in versions
        .iter()
        .map_err(write_err)?
        .take(PRUNE_VERSIONS_MAX + 1)
    {
        let (version, time_ms) = row.map_err(write_err)?;
        if time_ms.value() >= prune.before_ms {
            break;
        }
        if let Some(older) = keep.replace(version.value()) {
            dropped.push(older);
        }
    }
    let Some(keep) = keep else {
        return Ok(());
    };
    for version in dropped {
        versions.remove(version).map_err(write_err)?;
    }
    let mut stale = txn.open_table(TREE_STALE).map_err(write_err)?;
    let mut gone = Vec::new();
    for row in stale
        .range::<(u64, &[u8])>(..(keep.saturating_add(1), &[][..]))
        .map_err(write_err)?
        .take(prune.nodes_max)
    {
        let (key, _) = row.map_err(write_err)?;
        let (since, node) = key.value();
        gone.push((since, node.to_vec()));
    }
    let mut tree = txn.open_table(TREE).map_err(write_err)?;
    for (since, node) in &gone {
        tree.remove(node.as_slice()).map_err(write_err)?;
        stale.remove((*since, node.as_slice())).map_err(write_err)?;
    }
    Ok(())
}
