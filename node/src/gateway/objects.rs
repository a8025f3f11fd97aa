//! The organization's own objects, on disk: what the gateway serves.
//!
//! Content lives in files named by the blake3 of the object path and of
//! the content (`files/<path-hash>-<etag>`), so a path never becomes a file
//! name (no traversal, whatever the path) and an overwrite never touches
//! the file being replaced. The index (path → metadata) is a redb table.
//! A put is durable when it returns: the file is synced and renamed, the
//! directory synced, then the index committed; the old file is removed
//! after. A crash in between leaves at worst an unreferenced file, which
//! [`ObjectStore::open`] removes.
//!
//! Blocking: call it from `spawn_blocking`.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use quorate_api::objects::{Listing, ObjectInfo};
use quorate_contracts::ResourcePath;
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};

const INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

/// The index's page cache (redb's default, 1 GiB, would let memory grow
/// with the number of objects).
const INDEX_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Most objects one listing returns.
pub const LIST_LIMIT_MAX: usize = 1000;
/// Longest content type kept.
pub const CONTENT_TYPE_BYTES_MAX: usize = 256;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// Disk I/O.
    #[error("object storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The index database.
    #[error("object index: {0}")]
    Index(String),
    /// An index record is unreadable (a bug or a damaged disk).
    #[error("object index record for {0} is damaged")]
    Damaged(String),
}

fn index_err(e: impl std::fmt::Display) -> ObjectError {
    ObjectError::Index(e.to_string())
}

/// A finished upload, to become an object's content.
#[derive(Debug)]
pub struct Content<'a> {
    /// Where it was written ([`ObjectStore::upload_path`]).
    pub upload: &'a Path,
    /// Its blake3 (hex).
    pub etag: String,
    /// Its length.
    pub size: u64,
    /// Its media type.
    pub content_type: &'a str,
    /// When it was written (ms since the Unix epoch).
    pub now_ms: u64,
}

/// What [`ObjectStore::commit_if`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Stored; `replaced` if an object was there before.
    Stored {
        /// The object as stored.
        info: ObjectInfo,
        /// Whether it replaced one.
        replaced: bool,
    },
    /// The condition did not hold: nothing changed.
    Refused,
}

/// What [`ObjectStore::delete_if`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The object is gone.
    Deleted,
    /// There was none.
    Missing,
    /// The condition did not hold: nothing changed.
    Refused,
}

/// The object store of one node.
#[derive(Debug)]
pub struct ObjectStore {
    files: PathBuf,
    uploads: PathBuf,
    db: redb::Database,
}

impl ObjectStore {
    /// Opens (creating) the store under `dir`, and removes files a crash
    /// left unreferenced and unfinished uploads.
    pub fn open(dir: &Path) -> Result<Self, ObjectError> {
        let files = dir.join("files");
        let uploads = dir.join("uploads");
        std::fs::create_dir_all(&files)?;
        if uploads.exists() {
            std::fs::remove_dir_all(&uploads)?;
        }
        std::fs::create_dir_all(&uploads)?;
        let db = redb::Builder::new()
            .set_cache_size(INDEX_CACHE_BYTES)
            .create(dir.join("index.redb"))
            .map_err(index_err)?;
        let write = db.begin_write().map_err(index_err)?;
        write.open_table(INDEX).map_err(index_err)?;
        write.commit().map_err(index_err)?;
        let store = Self { files, uploads, db };
        store.remove_unreferenced()?;
        Ok(store)
    }

    /// Where an upload writes before [`ObjectStore::commit`].
    pub fn upload_path(&self) -> Result<PathBuf, ObjectError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| ObjectError::Io(std::io::Error::other(e)))?;
        Ok(self.uploads.join(hex::encode(bytes)))
    }

    fn file_of(&self, path: &str, etag: &str) -> PathBuf {
        let name = blake3::hash(path.as_bytes()).to_hex();
        self.files.join(format!("{name}-{etag}"))
    }

    /// Makes the finished upload at `upload` the content of `path`,
    /// durably, and returns its metadata.
    pub fn commit(
        &self,
        path: &ResourcePath,
        upload: &Path,
        etag: String,
        size: u64,
        content_type: &str,
        now_ms: u64,
    ) -> Result<ObjectInfo, ObjectError> {
        let content = Content {
            upload,
            etag,
            size,
            content_type,
            now_ms,
        };
        match self.commit_if(path, content, |_| true)? {
            Committed::Stored { info, .. } => Ok(info),
            Committed::Refused => Err(index_err("an unconditional commit was refused")),
        }
    }

    /// Like [`ObjectStore::commit`], if `condition` holds for the ETag of
    /// the object it would replace (none: no object), read in the same
    /// index transaction as the write, so no other commit comes between.
    /// A refused commit removes the upload and leaves the object as it was.
    pub fn commit_if(
        &self,
        path: &ResourcePath,
        content: Content<'_>,
        condition: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<Committed, ObjectError> {
        let Content {
            upload,
            etag,
            size,
            content_type,
            now_ms,
        } = content;
        File::open(upload)?.sync_all()?;
        let target = self.file_of(path.as_str(), &etag);
        let meta = ObjectInfo {
            path: path.to_string(),
            size,
            etag,
            content_type: content_type.chars().take(CONTENT_TYPE_BYTES_MAX).collect(),
            modified_ms: now_ms,
        };
        let record = serde_json::to_vec(&meta).map_err(index_err)?;
        let write = self.db.begin_write().map_err(index_err)?;
        let old = {
            let mut table = write.open_table(INDEX).map_err(index_err)?;
            let old = match table.get(path.as_str()).map_err(index_err)? {
                None => None,
                Some(record) => Some(
                    serde_json::from_slice::<ObjectInfo>(record.value())
                        .map_err(|_| ObjectError::Damaged(path.to_string()))?,
                ),
            };
            if !condition(old.as_ref().map(|o| o.etag.as_str())) {
                drop(table);
                write.abort().map_err(index_err)?;
                let _ = std::fs::remove_file(upload);
                return Ok(Committed::Refused);
            }
            // The content is in place before the index names it.
            std::fs::rename(upload, &target)?;
            File::open(&self.files)?.sync_all()?;
            table
                .insert(path.as_str(), record.as_slice())
                .map_err(index_err)?;
            old
        };
        write.commit().map_err(index_err)?;
        if let Some(old) = &old
            && old.etag != meta.etag
        {
            let _ = std::fs::remove_file(self.file_of(&old.path, &old.etag));
        }
        Ok(Committed::Stored {
            info: meta,
            replaced: old.is_some(),
        })
    }

    /// The metadata of `path`, if it exists.
    pub fn meta(&self, path: &ResourcePath) -> Result<Option<ObjectInfo>, ObjectError> {
        let read = self.db.begin_read().map_err(index_err)?;
        let table = read.open_table(INDEX).map_err(index_err)?;
        let Some(record) = table.get(path.as_str()).map_err(index_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(record.value())
            .map(Some)
            .map_err(|_| ObjectError::Damaged(path.to_string()))
    }

    /// Opens `path` for reading at `offset`.
    pub fn open_at(
        &self,
        path: &ResourcePath,
        offset: u64,
    ) -> Result<Option<(ObjectInfo, File)>, ObjectError> {
        let Some(meta) = self.meta(path)? else {
            return Ok(None);
        };
        let mut file = File::open(self.file_of(&meta.path, &meta.etag))?;
        file.seek(SeekFrom::Start(offset.min(meta.size)))?;
        Ok(Some((meta, file)))
    }

    /// Deletes `path`; whether it existed.
    pub fn delete(&self, path: &ResourcePath) -> Result<bool, ObjectError> {
        Ok(self.delete_if(path, |_| true)? == Deleted::Deleted)
    }

    /// Deletes `path` if `condition` holds for its ETag (none: no object),
    /// read in the same index transaction as the delete.
    pub fn delete_if(
        &self,
        path: &ResourcePath,
        condition: impl FnOnce(Option<&str>) -> bool,
    ) -> Result<Deleted, ObjectError> {
        let write = self.db.begin_write().map_err(index_err)?;
        let old = {
            let mut table = write.open_table(INDEX).map_err(index_err)?;
            let old = match table.get(path.as_str()).map_err(index_err)? {
                None => None,
                Some(record) => Some(
                    serde_json::from_slice::<ObjectInfo>(record.value())
                        .map_err(|_| ObjectError::Damaged(path.to_string()))?,
                ),
            };
            if !condition(old.as_ref().map(|o| o.etag.as_str())) {
                drop(table);
                write.abort().map_err(index_err)?;
                return Ok(Deleted::Refused);
            }
            let Some(old) = old else {
                drop(table);
                write.abort().map_err(index_err)?;
                return Ok(Deleted::Missing);
            };
            table.remove(path.as_str()).map_err(index_err)?;
            old
        };
        write.commit().map_err(index_err)?;
        let _ = std::fs::remove_file(self.file_of(&old.path, &old.etag));
        Ok(Deleted::Deleted)
    }

    /// Objects whose path starts with `prefix`, after `after`, at most
    /// `limit` (capped at [`LIST_LIMIT_MAX`]).
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Listing, ObjectError> {
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let read = self.db.begin_read().map_err(index_err)?;
        let table = read.open_table(INDEX).map_err(index_err)?;
        let start = match after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let mut objects = Vec::new();
        let mut next = None;
        for item in table.range(start..).map_err(index_err)? {
            let (key, value) = item.map_err(index_err)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if Some(key) == after {
                continue;
            }
            if objects.len() == limit {
                next = objects.last().map(|m: &ObjectInfo| m.path.clone());
                break;
            }
            objects.push(
                serde_json::from_slice(value.value())
                    .map_err(|_| ObjectError::Damaged(key.to_owned()))?,
            );
        }
        Ok(Listing { objects, next })
    }

    fn remove_unreferenced(&self) -> Result<(), ObjectError> {
        let read = self.db.begin_read().map_err(index_err)?;
        let table = read.open_table(INDEX).map_err(index_err)?;
        let mut referenced = std::collections::HashSet::new();
        for item in table.iter().map_err(index_err)? {
            let (key, value) = item.map_err(index_err)?;
            if let Ok(meta) = serde_json::from_slice::<ObjectInfo>(value.value()) {
                referenced.insert(self.file_of(key.value(), &meta.etag));
            }
        }
        for entry in std::fs::read_dir(&self.files)? {
            let path = entry?.path();
            if !referenced.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn put(store: &ObjectStore, path: &str, content: &[u8]) -> ObjectInfo {
        let upload = store.upload_path().unwrap();
        std::fs::write(&upload, content).unwrap();
        let etag = blake3::hash(content).to_hex().to_string();
        let path = ResourcePath::parse(path).unwrap();
        store
            .commit(&path, &upload, etag, content.len() as u64, "text/plain", 1)
            .unwrap()
    }

    fn read(store: &ObjectStore, path: &str, offset: u64) -> Option<Vec<u8>> {
        let (_, mut file) = store
            .open_at(&ResourcePath::parse(path).unwrap(), offset)
            .unwrap()?;
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        Some(out)
    }

    #[test]
    fn put_overwrite_read_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path()).unwrap();
        put(&store, "datasets/a.csv", b"one");
        let meta = put(&store, "datasets/a.csv", b"two, longer");
        assert_eq!(meta.size, 11);
        assert_eq!(read(&store, "datasets/a.csv", 0).unwrap(), b"two, longer");
        assert_eq!(read(&store, "datasets/a.csv", 5).unwrap(), b"longer");
        // The replaced content's file is gone: one file per object.
        assert_eq!(
            std::fs::read_dir(dir.path().join("files")).unwrap().count(),
            1
        );
        drop(store);

        let store = ObjectStore::open(dir.path()).unwrap();
        assert_eq!(read(&store, "datasets/a.csv", 0).unwrap(), b"two, longer");
        let path = ResourcePath::parse("datasets/a.csv").unwrap();
        assert!(store.delete(&path).unwrap());
        assert!(!store.delete(&path).unwrap());
        assert_eq!(read(&store, "datasets/a.csv", 0), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("files")).unwrap().count(),
            0
        );
    }

    #[test]
    fn listing_pages_through_a_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path()).unwrap();
        for name in ["a/1", "a/2", "a/3", "ab/1", "b/1"] {
            put(&store, name, name.as_bytes());
        }
        let first = store.list("a/", None, 2).unwrap();
        let paths: Vec<_> = first.objects.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["a/1", "a/2"]);
        assert_eq!(first.next.as_deref(), Some("a/2"));
        let second = store.list("a/", first.next.as_deref(), 2).unwrap();
        let paths: Vec<_> = second.objects.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["a/3"]);
        assert_eq!(second.next, None);
        assert_eq!(store.list("", None, 100).unwrap().objects.len(), 5);
    }

    #[test]
    fn unreferenced_files_and_unfinished_uploads_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path()).unwrap();
        put(&store, "kept", b"kept");
        std::fs::write(dir.path().join("files/orphan"), b"x").unwrap();
        std::fs::write(store.upload_path().unwrap(), b"half").unwrap();
        drop(store);
        let store = ObjectStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("files")).unwrap().count(),
            1
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("uploads"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(read(&store, "kept", 0).unwrap(), b"kept");
    }
}
