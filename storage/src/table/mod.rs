//! The table layer: one open table (its partitions, manifest, counters and locks); its write
//! path is in `write`. One code path serves USER, SHARED and STREAM tables; the kind only
//! decides the key scope (per user or shared) and whether rows are ever flushed.
//!
//! Layout in the hot engine of the table's storage:
//!
//! | partition            | key                                  | value                         |
//! |----------------------|--------------------------------------|-------------------------------|
//! | `t.<ns>.<table>.hot` | `[<user> 0x00]` + encoded primary key | row (`codec::Row`), tombstones with `_deleted` |
//! | `t.<ns>.<table>.meta`| `d`                                  | the table definition          |
//! |                      | `c` + `<user>`                       | buffered hot rows, u64 LE     |
//! |                      | `f` + `<user>` 0x00 + file id (BE)   | `FileMeta`                    |
//! |                      | `v` + `<user>` 0x00 + file id (BE)   | deletion vector               |
//!
//! `<user>` is empty for SHARED and STREAM tables. User ids never contain 0x00, so the scope
//! prefix is unambiguous.

pub mod filter;
pub mod manifest;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::bloom_filter::Sbbf;

use crate::backend::{Partition, ScanRequest, StorageBackend};
use crate::catalog::StorageDefinition;
use crate::codec::{KalamValue, Row, SystemColumns, encode_key, read_system_columns};
use crate::error::{Error, Result};
use crate::ids::{TableId, UserId};
use crate::location::OpenedStore;
use crate::merge::dv::DeletionVector;
use crate::schema::{TableDefinition, TableType};
use crate::seq::now_nanos;
use manifest::FileMeta;

/// A storage opened for use: its definition, hot engine and cold object store.
pub struct StorageHandle {
    /// The registered definition.
    pub def: StorageDefinition,
    /// The hot engine.
    pub hot: Arc<dyn StorageBackend>,
    /// The cold object store (Parquet files).
    pub cold: OpenedStore,
}

impl std::fmt::Debug for StorageHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageHandle")
            .field("id", &self.def.id)
            .finish_non_exhaustive()
    }
}

/// One live file of a scope with its current deletion vector.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// The manifest entry.
    pub meta: FileMeta,
    /// Dead row positions.
    pub dv: Arc<DeletionVector>,
    /// Shared by every copy of the entry: while a reader holds one, a compaction that
    /// replaced the file waits before deleting it.
    pub(crate) pin: Arc<()>,
}

impl FileEntry {
    /// An entry for a newly committed file.
    pub(crate) fn new(meta: FileMeta, dv: DeletionVector) -> Self {
        Self {
            meta,
            dv: Arc::new(dv),
            pin: Arc::new(()),
        }
    }
}

/// The in-memory state of a table, mirrored from its meta partition.
#[derive(Debug, Default)]
pub(crate) struct TableState {
    /// Buffered hot entries per scope (user id, or "" for shared).
    pub counters: HashMap<String, u64>,
    /// Live files per scope, in file id order.
    pub files: BTreeMap<String, Vec<FileEntry>>,
}

/// One change to a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Adds a row; an existing key is an error. Omitted columns take their default or NULL.
    Insert(Vec<(String, KalamValue)>),
    /// Adds or replaces a row.
    Upsert(Vec<(String, KalamValue)>),
    /// Changes columns of the row with this primary key, if it exists.
    Update {
        /// Primary-key values, in key column order.
        key: Vec<KalamValue>,
        /// New values.
        set: Vec<(String, KalamValue)>,
    },
    /// Deletes the row with this primary key, if it exists.
    Delete {
        /// Primary-key values, in key column order.
        key: Vec<KalamValue>,
    },
}

/// What a write changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Rows inserted (incl. upserts of new keys).
    pub inserted: u64,
    /// Rows replaced or changed.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
}

/// `_key` bloom filters per (file id, row group); `None`: the row group has none.
pub(crate) type BloomCache = HashMap<(i64, usize), Option<Arc<Sbbf>>>;

/// An open table.
pub struct TableHandle {
    /// `namespace.table`.
    pub id: TableId,
    pub(crate) def: parking_lot::RwLock<Arc<TableDefinition>>,
    pub(crate) storage: Arc<StorageHandle>,
    pub(crate) hot: Partition,
    pub(crate) meta: Partition,
    /// Serializes writes (counters are read-modify-write) and flush commits.
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    /// Readers snapshot hot rows + manifest under `read`; commits that move rows between the
    /// tiers take `write`, so a reader never sees a row twice or not at all.
    pub(crate) commit: tokio::sync::RwLock<()>,
    /// Serializes flush and compaction of the table, so neither loses the other's vectors.
    pub(crate) maintenance: tokio::sync::Mutex<()>,
    pub(crate) state: parking_lot::RwLock<TableState>,
    pub(crate) parquet_meta: parking_lot::Mutex<HashMap<i64, ArrowReaderMetadata>>,
    /// Bloom filters of `_key` per (file, row group); `None`: the row group has none.
    pub(crate) blooms: parking_lot::Mutex<BloomCache>,
    pub(crate) last_flush: parking_lot::Mutex<Instant>,
    /// Set when the table moved to another storage or was dropped: this handle's storage no
    /// longer holds the table, and operations that find it set go back to the store.
    pub(crate) retired: std::sync::atomic::AtomicBool,
    /// Bumped by every write batch (under `write_lock`): a flush that sees it unchanged at its
    /// commit knows no row changed since its sequence cut.
    pub(crate) write_generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub(crate) const META_DEFINITION: &[u8] = b"d";
const META_COUNTER: u8 = b'c';
pub(crate) const META_FILE: u8 = b'f';
const META_DV: u8 = b'v';

/// The hot-row partition of a table.
pub fn hot_partition(id: &TableId) -> Partition {
    Partition::new(format!("t.{}.{}.hot", id.namespace, id.table))
        .expect("namespace and table names are partition-safe")
}

/// The manifest partition of a table.
pub fn meta_partition(id: &TableId) -> Partition {
    Partition::new(format!("t.{}.{}.meta", id.namespace, id.table))
        .expect("namespace and table names are partition-safe")
}

pub(crate) fn counter_key(scope: &str) -> Bytes {
    let mut k = vec![META_COUNTER];
    k.extend_from_slice(scope.as_bytes());
    k.into()
}

pub(crate) fn file_key(tag: u8, scope: &str, id: i64) -> Bytes {
    let mut k = vec![tag];
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k.into()
}

pub(crate) fn manifest_key(scope: &str, id: i64) -> Bytes {
    file_key(META_FILE, scope, id)
}

pub(crate) fn dv_key(scope: &str, id: i64) -> Bytes {
    file_key(META_DV, scope, id)
}

/// `(scope, file id)` of a `f`/`v` key: the id is the last 8 bytes, after a 0x00.
fn split_file_key(key: &[u8]) -> Option<(String, i64)> {
    let body = key.get(1..)?;
    let at = body.len().checked_sub(9)?;
    if body[at] != 0 {
        return None;
    }
    let scope = String::from_utf8(body[..at].to_vec()).ok()?;
    let id = i64::from_be_bytes(body[at + 1..].try_into().ok()?);
    Some((scope, id))
}

/// Where a table's Parquet files of `scope` live in a storage's cold store (`scope` empty:
/// the table's directory).
pub(crate) fn cold_dir(storage: &StorageHandle, id: &TableId, scope: &str) -> String {
    let mut parts = Vec::new();
    if !storage.cold.prefix.is_empty() {
        parts.push(storage.cold.prefix.clone());
    }
    parts.push(id.namespace.to_string());
    parts.push(id.table.to_string());
    if !scope.is_empty() {
        parts.push(scope.to_owned());
    }
    parts.join("/")
}

impl TableHandle {
    /// Opens a table whose partitions exist, loading counters and manifest.
    pub(crate) async fn open(def: TableDefinition, storage: Arc<StorageHandle>) -> Result<Self> {
        let id = def.id.clone();
        let table = Self {
            hot: hot_partition(&id),
            meta: meta_partition(&id),
            id,
            def: parking_lot::RwLock::new(Arc::new(def)),
            storage,
            write_lock: tokio::sync::Mutex::new(()),
            commit: tokio::sync::RwLock::new(()),
            maintenance: tokio::sync::Mutex::new(()),
            state: parking_lot::RwLock::new(TableState::default()),
            parquet_meta: parking_lot::Mutex::new(HashMap::new()),
            blooms: parking_lot::Mutex::new(HashMap::new()),
            last_flush: parking_lot::Mutex::new(Instant::now()),
            retired: std::sync::atomic::AtomicBool::new(false),
            write_generation: std::sync::atomic::AtomicU64::new(0),
        };
        table.reload().await?;
        Ok(table)
    }

    /// Creates the table's partitions and writes its definition into its storage.
    pub(crate) async fn create_in_storage(
        def: &TableDefinition,
        storage: &StorageHandle,
    ) -> Result<()> {
        let (hot, meta) = (hot_partition(&def.id), meta_partition(&def.id));
        storage.hot.create_partition(&hot).await?;
        storage.hot.create_partition(&meta).await?;
        storage
            .hot
            .put(
                &meta,
                Bytes::from_static(META_DEFINITION),
                def.encode().into(),
            )
            .await
    }

    /// Re-reads counters, manifest and deletion vectors from the meta partition.
    pub(crate) async fn reload(&self) -> Result<()> {
        let table = self.id.to_string();
        let entries = crate::backend::scan_all(
            self.storage.hot.as_ref(),
            &self.meta,
            ScanRequest::default(),
        )
        .await?;
        let mut state = TableState::default();
        let mut metas: BTreeMap<(String, i64), FileMeta> = BTreeMap::new();
        let mut dvs: HashMap<(String, i64), DeletionVector> = HashMap::new();
        for (key, value) in entries {
            match key.first() {
                Some(&META_COUNTER) => {
                    let scope = String::from_utf8_lossy(&key[1..]).into_owned();
                    let n = value
                        .as_ref()
                        .try_into()
                        .map(u64::from_le_bytes)
                        .map_err(|_| Error::Corrupt {
                            what: format!("row counter of table {table}"),
                            reason: format!("{} bytes", value.len()),
                        })?;
                    state.counters.insert(scope, n);
                }
                Some(&META_FILE) => {
                    let at = split_file_key(&key).ok_or_else(|| Error::Corrupt {
                        what: format!("manifest of table {table}"),
                        reason: "bad file key".into(),
                    })?;
                    metas.insert(at, FileMeta::decode(&value, &table)?);
                }
                Some(&META_DV) => {
                    let at = split_file_key(&key).ok_or_else(|| Error::Corrupt {
                        what: format!("manifest of table {table}"),
                        reason: "bad deletion vector key".into(),
                    })?;
                    let dv = DeletionVector::decode(&value, &format!("{table} file {}", at.1))?;
                    dvs.insert(at, dv);
                }
                _ => {}
            }
        }
        for ((scope, id), meta) in metas {
            let dv = dvs.remove(&(scope.clone(), id)).unwrap_or_default();
            state
                .files
                .entry(scope)
                .or_default()
                .push(FileEntry::new(meta, dv));
        }
        *self.state.write() = state;
        Ok(())
    }

    /// Whether the table left this handle's storage (moved or dropped).
    pub fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Fails with [`Error::TableRetired`] when the table left this handle's storage.
    pub(crate) fn check_live(&self) -> Result<()> {
        if self.is_retired() {
            return Err(Error::TableRetired {
                table: self.id.to_string(),
            });
        }
        Ok(())
    }

    /// The current definition.
    pub fn definition(&self) -> Arc<TableDefinition> {
        self.def.read().clone()
    }

    /// The scope name of `user` for this table, checking that a USER table gets a user and
    /// other kinds do not.
    pub fn scope(&self, user: Option<&UserId>) -> Result<String> {
        let kind = self.definition().table_type;
        match (kind, user) {
            (TableType::User, Some(u)) => Ok(u.to_string()),
            (TableType::User, None) => Err(Error::Scope {
                table: self.id.to_string(),
                reason: "a USER table needs a user id (e.g. --user or EXECUTE AS USER)",
            }),
            (_, None) => Ok(String::new()),
            (_, Some(_)) => Err(Error::Scope {
                table: self.id.to_string(),
                reason: "only USER tables take a user id",
            }),
        }
    }

    /// The key prefix of a scope in the hot partition.
    pub(crate) fn scope_prefix(&self, scope: &str) -> Vec<u8> {
        if scope.is_empty() {
            Vec::new()
        } else {
            let mut p = scope.as_bytes().to_vec();
            p.push(0);
            p
        }
    }

    /// Where a scope's Parquet files live in the cold store.
    pub(crate) fn cold_dir(&self, scope: &str) -> String {
        cold_dir(&self.storage, &self.id, scope)
    }

    /// Buffered hot entries of a scope.
    pub fn buffered(&self, scope: &str) -> u64 {
        self.state.read().counters.get(scope).copied().unwrap_or(0)
    }

    /// Scopes with buffered hot entries, and how many each holds.
    pub fn buffered_scopes(&self) -> Vec<(String, u64)> {
        self.state
            .read()
            .counters
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (s.clone(), *n))
            .collect()
    }

    /// The live files of a scope.
    pub fn files(&self, scope: &str) -> Vec<FileEntry> {
        self.state
            .read()
            .files
            .get(scope)
            .cloned()
            .unwrap_or_default()
    }

    /// Every scope that has files.
    pub fn file_scopes(&self) -> Vec<String> {
        self.state.read().files.keys().cloned().collect()
    }

    /// Encodes primary-key values, checking count and types.
    pub fn encode_primary_key(&self, key: &[KalamValue]) -> Result<Vec<u8>> {
        let def = self.definition();
        let columns: Vec<_> = def.primary_key().collect();
        if key.len() != columns.len() {
            return Err(Error::InvalidQuery {
                table: self.id.to_string(),
                reason: format!(
                    "the primary key has {} column(s), {} value(s) given",
                    columns.len(),
                    key.len()
                ),
            });
        }
        let mut values = Vec::with_capacity(key.len());
        for (c, v) in columns.iter().zip(key) {
            let v = filter::coerce(v, c.data_type)
                .filter(|v| !v.is_null())
                .ok_or_else(|| Error::InvalidValue {
                    column: c.name.clone(),
                    reason: format!("key value {v:?} is not a {}", c.data_type),
                })?;
            values.push(v);
        }
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        encode_key(&values, &names)
    }

    /// The hot entry of a key: `Some(None)` for a tombstone or an expired row, `None` when
    /// the key is not hot.
    pub(crate) async fn hot_entry(
        &self,
        hot_key: &[u8],
    ) -> Result<Option<Option<Vec<KalamValue>>>> {
        match self.storage.hot.get(&self.hot, hot_key).await? {
            Some(bytes) => self.hot_values(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// A hot entry's values in the current schema, `None` for a tombstone or an expired row.
    fn hot_values(&self, bytes: &[u8]) -> Result<Option<Vec<KalamValue>>> {
        let system = Self::system_of(bytes)?;
        if system.deleted || self.expired(system.updated) {
            return Ok(None);
        }
        let row = Row::decode(bytes).map_err(|e| Error::decode("hot row", e))?;
        self.upgrade_values(row).map(Some)
    }

    /// Whether a STREAM row written at `updated_ns` is past its TTL.
    pub(crate) fn expired(&self, updated_ns: i64) -> bool {
        let def = self.definition();
        match (def.table_type, def.options.ttl_seconds) {
            (TableType::Stream, Some(ttl)) => {
                let ttl_ns = i64::try_from(ttl.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX);
                updated_ns.saturating_add(ttl_ns) < now_nanos()
            }
            _ => false,
        }
    }

    /// A hot row's values in the current schema: columns matched by id (so renames keep their
    /// values and a re-added column does not see the dropped one's), widened types cast, added
    /// columns take their default or NULL.
    pub(crate) fn upgrade_values(&self, row: Row) -> Result<Vec<KalamValue>> {
        upgrade_row(&self.definition(), row)
    }

    /// Reads a hot entry's system columns.
    pub(crate) fn system_of(bytes: &[u8]) -> Result<SystemColumns> {
        read_system_columns(bytes).map_err(|e| Error::decode("hot row", e))
    }
}

/// The scope a hot key of a table of kind `kind` belongs to, and the encoded primary key after
/// its prefix.
pub(crate) fn split_hot_key(kind: TableType, key: &[u8]) -> (&[u8], &[u8]) {
    if kind == TableType::User {
        match key.iter().position(|b| *b == 0) {
            Some(zero) => (&key[..zero], &key[zero + 1..]),
            None => (key, &[]),
        }
    } else {
        (&[], key)
    }
}

/// A hot row's values in `def`'s current schema (see [`TableHandle::upgrade_values`]).
pub(crate) fn upgrade_row(def: &TableDefinition, row: Row) -> Result<Vec<KalamValue>> {
    if row.schema_version == def.schema.version {
        let mut values = row.values;
        values.resize(def.columns().len(), KalamValue::Null);
        return Ok(values);
    }
    let old = def
        .version(row.schema_version)
        .ok_or_else(|| Error::Corrupt {
            what: format!("row of table {}", def.id),
            reason: format!("unknown schema version {}", row.schema_version),
        })?;
    Ok(def
        .columns()
        .iter()
        .map(|c| {
            old.columns
                .iter()
                .position(|o| o.id == c.id)
                .and_then(|i| row.values.get(i).cloned())
                .and_then(|v| filter::coerce(&v, c.data_type))
                .unwrap_or_else(|| c.default.clone().unwrap_or(KalamValue::Null))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_split_back_even_when_the_id_holds_zero_bytes() {
        for (scope, id) in [
            ("", 0x0100_0000_0000_0000i64),
            ("alice", 0),
            ("bob", i64::MAX),
        ] {
            let key = manifest_key(scope, id);
            assert_eq!(split_file_key(&key), Some((scope.to_owned(), id)));
        }
        assert_eq!(split_file_key(b"f"), None);
    }
}
