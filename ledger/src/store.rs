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
//! | `state` | `"chain"` | the chain state after the tip |
//! | `consensus` | `"machine"` | the agreement machine's persisted state |
//!
//! Appending writes the block, its certificate, its entry index, the state
//! and the new tip in one write transaction committed with
//! `Durability::Immediate` (fsync before `commit` returns): a crash leaves
//! the store at the old tip or the new one, never between. The node drives
//! the store from one task; redb admits one writer at a time anyway.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Largest stored block (or certificate) accepted.
pub const BLOCK_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Format tag in the `meta` table: refuses files that are not ours, and
/// ours of another format. v2: blocks' `tx_root` covers whole entries and
/// certificates' `value_id` is a byte string, so v1 bytes would not decode
/// or verify.
pub const FORMAT: &[u8] = b"quorate-ledger-store v2";

/// What every [`FORMAT`] tag starts with, to tell an old store of ours
/// from a foreign file.
const FORMAT_NAME: &[u8] = b"quorate-ledger-store ";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const ENTRIES: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("entries");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
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
    db: Database,
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
            txn.open_table(STATE).map_err(|e| storage(&e))?;
            txn.open_table(CONSENSUS).map_err(|e| storage(&e))?;
        }
        txn.commit().map_err(|e| storage(&e))?;
        Ok(Self { db })
    }

    /// The latest stored block, if any.
    pub fn tip(&self) -> Result<Option<Tip>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let meta = txn.open_table(META).map_err(read_err)?;
        let tip = meta.get("tip").map_err(read_err)?;
        Ok(tip.and_then(|v| decode_tip(v.value())))
    }

    /// Appends one block and the state after it.
    pub fn append(&self, block: &StoredBlock, state: &[u8]) -> Result<(), AppendError> {
        self.append_batch(std::slice::from_ref(block), state)
    }

    /// Appends blocks in order and the state after the last, in one durable
    /// transaction: all or nothing.
    pub fn append_batch(&self, blocks: &[StoredBlock], state: &[u8]) -> Result<(), AppendError> {
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
            let mut state_table = txn.open_table(STATE).map_err(write_err)?;
            state_table.insert("chain", state).map_err(write_err)?;
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

    /// The state after the tip.
    pub fn state(&self) -> Result<Option<Vec<u8>>, ReadError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(STATE).map_err(read_err)?;
        Ok(table
            .get("chain")
            .map_err(read_err)?
            .map(|v| v.value().to_vec()))
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
