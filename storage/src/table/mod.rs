//! The table layer: one open table ([`TableHandle`]) with its definition, its state (buffered
//! counters and manifest, mirrored from the meta partition), its locks and its reader pins.
//! One code path serves USER, SHARED and STREAM tables; the kind only decides the key scope
//! (per user or shared) and whether rows are ever flushed. The partitions' layout is in
//! `format`.
//!
//! # Locking
//! Every lock of the core, what it protects, and the order in which they are taken. A task
//! holding a lock only ever takes locks further down the list (so no two tasks wait on each
//! other); the synchronous locks are leaves, never held across an `.await`.
//!
//! | # | lock | kind | protects |
//! |---|------|------|----------|
//! | 0 | `Store` statement lock per table scope | async mutex | a read-modify-write statement (SQL `UPDATE`, `DELETE`; `REPLACE` waits for them) from reading its rows to its commit |
//! | 1 | `Store` `ddl` | async mutex | catalog changes: namespaces, storages, table create/drop, ALTER |
//! | 2 | `TableHandle::lock_files` | async mutex | a table's files and vectors: one flush, compaction, move, ALTER or drop at a time |
//! | 3 | `TableHandle::read_tiers` / `lock_tiers` | async rwlock | the hot rows and manifest as one snapshot: readers hold it shared while they snapshot both (and a point read while it reads); commits that move rows between the tiers or swap files hold it exclusive |
//! | 4 | `TableHandle::lock_rows` | async mutex | the write path (read-modify-write of rows and counters), a flush's sequence cut and commit, a move's copy of the hot rows |
//! | 5 | `Store` `tables` | async mutex | the map of open table handles |
//! | 6 | `Store` `storages` | async mutex | the map of open storages |
//! | leaf | `TableHandle::def` | rwlock | the current definition (swapped by ALTER under 2 and 4) |
//! | leaf | `TableHandle::state` | rwlock | counters and manifest in memory (changed by commits under 3 or 4) |
//! | leaf | `TableHandle::last_flush` | mutex | when the table last flushed (interval policy) |
//! | leaf | `TableHandle::hot_cache` | mutex | decoded hot rows of the last whole-scope reads (taken after `state`) |
//! | leaf | `MetadataCache` | foyer's shard locks | cached footers, key pages and bloom filters |
//! | leaf | `ReaderPins` | mutex | live reader pins per epoch |
//! | leaf | `Store` `cancels`, `scheduler`, `background` | mutex | running jobs' cancel flags, the scheduler task, background failures |
//!
//! Examples: a flush takes 2, briefly 4 (the cut), then 3 and 4 for its commit; a drop takes
//! 1, 2, 3, 4, then 5; a scan takes 3 shared and pins its files ([`pins`]) before releasing
//! it, and 4 too while it reads hot entries the cache does not hold (a write changes hot
//! entries and the files' hidden rows together); the write path takes 4 alone.

mod feed;
mod hot;
mod pins;
mod state;
mod storage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use crate::backend::{Partition, ScanRequest, WriteBatch, scan_each};
use crate::codec::{KalamValue, Row, SystemColumns, encode_key, read_system_columns};
use crate::error::{Error, Result};
use crate::format::{
    DataFile, DeletionVector, FileIndexCache, FileMeta, Hidden, HotCount, META_DEFINITION,
    META_DELTA_PENDING, META_LOG_FLOOR, META_OVERLAY, MetaKey, counter_key, hot_partition,
    last_seq, log_partition, meta_partition, scope_dir, scope_prefix,
};
use crate::ids::{KeyScope, TableId, UserId};
use crate::schema::{DeltaPublishing, TableDefinition, TableType};

#[cfg(test)]
pub(crate) use feed::RING_CAPACITY;
pub(crate) use feed::{ChangeHub, Listening, RingRead};
pub(crate) use hot::{HotCache, HotDecoder, HotRows, upgrade_hot_row};
pub(crate) use pins::{READER_WAIT, ReaderPin, ReaderPins};
pub use state::FileEntry;
pub(crate) use state::TableState;
pub(crate) use storage::StorageHandle;

/// An open table.
pub(crate) struct TableHandle {
    /// `namespace.table`.
    pub(crate) id: TableId,
    pub(crate) def: parking_lot::RwLock<Arc<TableDefinition>>,
    pub(crate) storage: Arc<StorageHandle>,
    pub(crate) hot: Partition,
    pub(crate) meta: Partition,
    /// The change log (`format::changelog`).
    pub(crate) log: Partition,
    /// The change log's tail in memory and its subscribers' wake-up (see [`feed`]).
    pub(crate) feed: Arc<ChangeHub>,
    /// Lock 4 of the module's `# Locking` table ([`lock_rows`](Self::lock_rows)).
    write_lock: tokio::sync::Mutex<()>,
    /// Lock 3 ([`read_tiers`](Self::read_tiers), [`lock_tiers`](Self::lock_tiers)).
    commit: tokio::sync::RwLock<()>,
    /// Lock 2 ([`lock_files`](Self::lock_files)).
    maintenance: tokio::sync::Mutex<()>,
    pub(crate) state: parking_lot::RwLock<TableState>,
    /// Footers and bloom filters of the table's files.
    pub(crate) file_index: FileIndexCache,
    /// Readers of the table's files (see [`pins`]).
    pub(crate) pins: Arc<ReaderPins>,
    /// When the table last flushed, ms by the store's clock (the interval policy).
    pub(crate) last_flush: parking_lot::Mutex<i64>,
    /// Set when the table moved to another storage or was dropped: this handle's storage no
    /// longer holds the table, and operations that find it set go back to the store.
    pub(crate) retired: AtomicBool,
    /// Bumped by every write batch (under lock 4): a flush that sees it unchanged at its
    /// commit knows no row changed since its sequence cut.
    pub(crate) write_generation: AtomicU64,
    /// Decoded hot rows of the scopes last read whole (see [`HotCache`]).
    pub(crate) hot_cache: parking_lot::Mutex<HotCache>,
    /// What the core's file reads skipped and decoded, since the table was opened.
    pub(crate) reads: ReadCounters,
}

/// Row groups the core's file reads pruned (by key range, statistics or bloom filter) and
/// kept, since the table was opened: what shows that a filter skipped data.
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    pub(crate) row_groups_pruned: AtomicU64,
    pub(crate) row_groups_read: AtomicU64,
}

impl ReadCounters {
    /// Counts one file read's row groups: `keep[i]` when group `i` is read.
    pub(crate) fn count(&self, keep: &[bool]) {
        let read = keep.iter().filter(|k| **k).count() as u64;
        let pruned = keep.len() as u64 - read;
        self.row_groups_read.fetch_add(read, Ordering::Relaxed);
        self.row_groups_pruned.fetch_add(pruned, Ordering::Relaxed);
    }

    /// `(pruned, read)` so far.
    #[cfg(test)]
    pub(crate) fn row_groups(&self) -> (u64, u64) {
        (
            self.row_groups_pruned.load(Ordering::Relaxed),
            self.row_groups_read.load(Ordering::Relaxed),
        )
    }
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What opening a table found to bring up to date in its meta partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FormatUpgrade {
    /// The hidden rows were never recorded (the table predates them): find them.
    pub(crate) find_hidden: bool,
}

/// A scope's files as one reader sees them, pinned until the view is dropped.
pub(crate) struct FilesView {
    /// The live files, oldest first.
    pub(crate) files: Vec<FileEntry>,
    _pin: ReaderPin,
}

impl TableHandle {
    /// Lock 2: the table's files and deletion vectors, held by the one flush, compaction,
    /// move, ALTER or drop that changes them.
    pub(crate) async fn lock_files(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.maintenance.lock().await
    }

    /// [`lock_files`](Self::lock_files) when nobody holds it.
    pub(crate) fn try_lock_files(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.maintenance.try_lock().ok()
    }

    /// Lock 3 shared: the hot rows and the manifest stay one snapshot while it is held (a
    /// reader takes both under it, so it never sees a row in both tiers or in neither).
    pub(crate) async fn read_tiers(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.commit.read().await
    }

    /// Lock 3 exclusive: for a commit that moves rows between the tiers or swaps files.
    pub(crate) async fn lock_tiers(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.commit.write().await
    }

    /// Lock 4: the rows and counters of the write path (its read-modify-write), a flush's
    /// sequence cut and commit, a move's copy of the hot rows.
    pub(crate) async fn lock_rows(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// Opens a table whose partitions exist, loading counters and manifest; `Some` upgrade
    /// when its stored form is older (see [`reload`](Self::reload)).
    pub(crate) async fn open(
        def: TableDefinition,
        storage: Arc<StorageHandle>,
    ) -> Result<(Self, Option<FormatUpgrade>)> {
        let id = def.id.clone();
        let now = storage.clock.now_ms();
        let file_index = storage.metadata.for_table();
        let mut table = Self {
            hot: hot_partition(&id),
            meta: meta_partition(&id),
            log: log_partition(&id),
            feed: Arc::new(ChangeHub::new(0, 0)),
            id,
            def: parking_lot::RwLock::new(Arc::new(def)),
            storage,
            write_lock: tokio::sync::Mutex::new(()),
            commit: tokio::sync::RwLock::new(()),
            maintenance: tokio::sync::Mutex::new(()),
            state: parking_lot::RwLock::new(TableState::default()),
            file_index,
            pins: Arc::new(ReaderPins::default()),
            last_flush: parking_lot::Mutex::new(now),
            retired: AtomicBool::new(false),
            write_generation: AtomicU64::new(0),
            hot_cache: parking_lot::Mutex::new(HotCache::default()),
            reads: ReadCounters::default(),
        };
        let upgrade = table.reload().await?;
        table.open_log().await?;
        // The interval policy counts from the newest file, else from the table's creation,
        // so it holds across processes (a one-shot CLI never lives a whole interval).
        let newest = {
            let state = table.state.read();
            let files = state.files.values().flatten();
            files.map(|f| f.meta.created_at_ms).max()
        };
        let def = table.definition();
        let created = def.history.iter().map(|v| v.created_at_ms);
        let created = created.fold(def.schema.created_at_ms, i64::min);
        *table.last_flush.lock() = newest.unwrap_or(created);
        Ok((table, upgrade))
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
            .create_partition(&log_partition(&def.id))
            .await?;
        let mut batch = WriteBatch::new();
        batch.put(&meta, Bytes::from_static(META_DEFINITION), def.encode());
        batch.put(&meta, Bytes::from_static(META_OVERLAY), Bytes::new());
        // The log holds every change since the table's creation.
        batch.put(
            &meta,
            Bytes::from_static(META_LOG_FLOOR),
            Bytes::from_static(&[0; 8]),
        );
        if def.options.delta != DeltaPublishing::Off {
            // The Delta log is published when the table is first opened.
            batch.put(&meta, Bytes::from_static(META_DELTA_PENDING), Bytes::new());
        }
        storage.hot.batch(batch).await
    }

    /// Re-reads counters, manifest, deletion vectors and hidden rows from the meta
    /// partition. `Some` when the stored form predates hidden rows or tombstone counts: the
    /// caller brings it up to date (`merge::upgrade_overlay`) before anyone uses the table.
    pub(crate) async fn reload(&self) -> Result<Option<FormatUpgrade>> {
        let loaded = self.load_meta().await?;
        let upgrade = FormatUpgrade {
            find_hidden: !loaded.overlay,
        };
        let needed = !loaded.overlay || loaded.counters.values().any(|(_, t)| t.is_none());
        *self.state.write() = loaded.into_state();
        Ok(needed.then_some(upgrade))
    }

    /// Reads the change log's floor and its last seq. A table that predates the log (no
    /// floor recorded) gets its log and a floor past every `_seq` it holds: cursors from before
    /// get a gap answer, never silently fewer changes.
    async fn open_log(&mut self) -> Result<()> {
        let floor = match self.storage.hot.get(&self.meta, META_LOG_FLOOR).await? {
            Some(bytes) => decode_floor(&bytes, &self.id)?,
            None => {
                self.storage.hot.create_partition(&self.log).await?;
                // A second ahead: ids taken in a burst may run ahead of the clock.
                let floor = crate::seq::first_id_from_now(1000);
                self.storage
                    .hot
                    .put(
                        &self.meta,
                        Bytes::from_static(META_LOG_FLOOR),
                        Bytes::copy_from_slice(&floor.to_be_bytes()),
                    )
                    .await?;
                floor
            }
        };
        let request = ScanRequest::default()
            .direction(crate::backend::Direction::Reverse)
            .limit(1);
        let last = self.storage.hot.scan(&self.log, &request).await?;
        let committed = match last.entries.first() {
            Some((_, value)) => last_seq(value)?,
            None => floor.saturating_sub(1).max(0),
        };
        self.feed = Arc::new(ChangeHub::new(committed, floor));
        Ok(())
    }

    /// The meta partition, decoded.
    async fn load_meta(&self) -> Result<state::Loaded> {
        let mut loaded = state::Loaded::default();
        // Chunk by chunk: a table with a million hidden rows has a million `h` entries.
        let each = |key: Bytes, value: Bytes| -> Result<()> {
            match MetaKey::decode(&key, &self.id)? {
                MetaKey::Counter(scope) => {
                    let count = HotCount::decode(&value).map_err(|len| Error::Corrupt {
                        what: format!("row counter of {scope} of table {}", self.id),
                        reason: format!("{len} bytes, not 8 or 16"),
                    })?;
                    loaded.counters.insert(scope, count);
                }
                MetaKey::File(scope, id) => {
                    let meta = FileMeta::decode(&value, &self.id.to_string())?;
                    loaded.files.insert((scope, id), meta);
                }
                MetaKey::Dv(scope, id) => {
                    let what = format!("{} file {id}", self.id);
                    loaded
                        .dvs
                        .insert((scope, id), DeletionVector::decode(&value, &what)?);
                }
                MetaKey::Hidden(scope, _) => {
                    let at = Hidden::decode(&value).ok_or_else(|| Error::Corrupt {
                        what: format!("hidden row of {scope} of table {}", self.id),
                        reason: format!("{} bytes, not 16", value.len()),
                    })?;
                    loaded
                        .hidden
                        .entry((scope, at.file))
                        .or_default()
                        .insert(at.position);
                }
                MetaKey::Overlay => loaded.overlay = true,
                MetaKey::Definition | MetaKey::Other => {}
            }
            Ok(())
        };
        scan_each(
            self.storage.hot.as_ref(),
            &self.meta,
            ScanRequest::default(),
            each,
        )
        .await?;
        Ok(loaded)
    }

    /// Whether the table left this handle's storage (moved or dropped).
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Marks the table as gone from this handle's storage.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        // Subscribers go to the table's new handle (or learn it was dropped).
        self.feed.wake();
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
    pub(crate) fn definition(&self) -> Arc<TableDefinition> {
        self.def.read().clone()
    }

    /// The key scope of `user` for this table, checking that a USER table gets a user and
    /// other kinds do not.
    pub(crate) fn scope(&self, user: Option<&UserId>) -> Result<KeyScope> {
        let kind = self.definition().table_type;
        match (kind, user) {
            (TableType::User, Some(u)) => Ok(KeyScope::User(u.clone())),
            (TableType::User, None) => Err(Error::Scope {
                table: self.id.to_string(),
                reason: "a USER table needs a user id (e.g. --user or EXECUTE AS USER)",
            }),
            (_, None) => Ok(KeyScope::Shared),
            (_, Some(_)) => Err(Error::Scope {
                table: self.id.to_string(),
                reason: "only USER tables take a user id",
            }),
        }
    }

    /// The key prefix of a scope in the hot partition.
    pub(crate) fn scope_prefix(&self, scope: &KeyScope) -> Vec<u8> {
        scope_prefix(scope)
    }

    /// Where a scope's Parquet files live in the cold store.
    pub(crate) fn cold_dir(&self, scope: &KeyScope) -> String {
        scope_dir(&self.storage.cold.prefix, &self.id, scope)
    }

    /// One of the table's files, for the `format` readers.
    pub(crate) fn data_file<'a>(&'a self, meta: &'a FileMeta) -> DataFile<'a> {
        DataFile {
            store: &self.storage.cold.store,
            meta,
            table: &self.id,
        }
    }

    /// Buffered hot entries of a scope.
    pub(crate) fn buffered(&self, scope: &KeyScope) -> u64 {
        self.state.read().count(scope).entries
    }

    /// The buffered entries and tombstones of a scope.
    pub(crate) fn hot_count(&self, scope: &KeyScope) -> HotCount {
        self.state.read().count(scope)
    }

    /// Scopes with buffered hot entries, and how many each holds.
    pub(crate) fn buffered_scopes(&self) -> Vec<(KeyScope, u64)> {
        self.state
            .read()
            .counters
            .iter()
            .filter(|(_, n)| n.entries > 0)
            .map(|(s, n)| (s.clone(), n.entries))
            .collect()
    }

    /// The live files of a scope. Callers that read them hold the maintenance lock (files
    /// change only under it) or use [`files_view`](Self::files_view).
    pub(crate) fn files(&self, scope: &KeyScope) -> Vec<FileEntry> {
        self.state
            .read()
            .files
            .get(scope)
            .cloned()
            .unwrap_or_default()
    }

    /// The live files of a scope, pinned against deletion while the view lives.
    pub(crate) fn files_view(&self, scope: &KeyScope) -> FilesView {
        FilesView {
            _pin: self.pins.pin(),
            files: self.files(scope),
        }
    }

    /// Every scope that has files.
    pub(crate) fn file_scopes(&self) -> Vec<KeyScope> {
        self.state.read().files.keys().cloned().collect()
    }

    /// Adds the write of a scope's buffered-entry counter to a commit batch.
    pub(crate) fn put_counter(&self, batch: &mut WriteBatch, scope: &KeyScope, count: HotCount) {
        batch.put(&self.meta, counter_key(scope), count.encode());
    }

    /// Encodes primary-key values, checking count and types.
    pub(crate) fn encode_primary_key(&self, key: &[KalamValue]) -> Result<Vec<u8>> {
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
            let v = v
                .coerce(c.data_type)
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
    pub(crate) fn hot_values(&self, bytes: &[u8]) -> Result<Option<Vec<KalamValue>>> {
        let system = Self::system_of(bytes)?;
        if system.deleted || self.expired(system.updated) {
            return Ok(None);
        }
        let row = Row::decode(bytes).map_err(|e| Error::decode("hot row", e))?;
        upgrade_row(&self.definition(), row).map(Some)
    }

    /// Whether a STREAM row written at `updated_ns` is past its TTL.
    pub(crate) fn expired(&self, updated_ns: i64) -> bool {
        self.expiry_cutoff()
            .is_some_and(|cutoff| updated_ns < cutoff)
    }

    /// Rows last written before this instant (ns) are past a STREAM table's TTL now; `None`
    /// when the table's rows do not expire. Many rows are checked against one cutoff.
    pub(crate) fn expiry_cutoff(&self) -> Option<i64> {
        let def = self.definition();
        match (def.table_type, def.options.ttl_seconds) {
            (TableType::Stream, Some(ttl)) => {
                let ttl_ns = i64::try_from(ttl.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX);
                Some(self.storage.clock.now_nanos().saturating_sub(ttl_ns))
            }
            _ => None,
        }
    }

    /// Reads a hot entry's system columns.
    pub(crate) fn system_of(bytes: &[u8]) -> Result<SystemColumns> {
        read_system_columns(bytes).map_err(|e| Error::decode("hot row", e))
    }
}

/// A change-log floor stored in the meta partition.
fn decode_floor(bytes: &[u8], table: &TableId) -> Result<i64> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| Error::Corrupt {
        what: format!("change log floor of table {table}"),
        reason: format!("{} bytes, expected 8", bytes.len()),
    })?;
    Ok(i64::from_be_bytes(b))
}

/// A hot row's values in `def`'s current schema: columns matched by id (so renames keep their
/// values and a re-added column does not see the dropped one's), widened types cast, added
/// columns take their default or NULL.
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
                .and_then(|v| v.coerce(c.data_type))
                .unwrap_or_else(|| c.default.clone().unwrap_or(KalamValue::Null))
        })
        .collect())
}
