//! `RocksDbBackend`: kalamstore's embedded default engine. Every partition is a key range of
//! one rows column family, prefixed with its generation, and named in a registry (see
//! `registry`): creating or dropping a partition costs the same with 10 partitions as with
//! 10,000, and all partitions share one memtable budget. A database of the earlier layout (a
//! family per partition) is migrated when opened (see `migrate`).
//!
//! Calls run RocksDB inline on the calling thread (point operations take microseconds; a scan
//! chunk is bounded by `chunk_size`), so the backend works from any runtime without a bridge.

mod config;
mod error;
mod maintenance;
mod migrate;
mod registry;
mod staged;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use kalamstore_storage::backend::{
    BackendStats, Capabilities, Direction, KvPair, Partition, ScanChunk, ScanRequest,
    StorageBackend, WriteBatch, WriteOp,
};
use kalamstore_storage::{Error, Result};
use parking_lot::{Mutex, RwLock};
use rocksdb::{DBWithThreadMode, Options, ReadOptions, SingleThreaded, WriteOptions};

pub use config::RocksDbConfig;
use config::Tuning;
use error::{ENGINE, RocksDbError, rocks};
use registry::{
    KeyPrefix, Layout, NEXT_GENERATION, Registry, Resolver, load_registry, registry_key,
};

/// Column families are fixed once the database is open (partitions are key ranges), so the
/// single-threaded handle mode serves: its family handles are plain references, looked up
/// without RocksDB's lock on the family map. Reads and writes still run from any thread.
type Db = DBWithThreadMode<SingleThreaded>;

/// A [`StorageBackend`] on RocksDB.
pub struct RocksDbBackend {
    /// `None` once closed.
    db: ArcSwapOption<Db>,
    /// Where the rows and the registry live (fixed when the database was created).
    layout: Layout,
    /// Partitions that exist, by generation.
    registry: RwLock<Registry>,
    /// Serialises creations and drops (each reads and advances the registry).
    registry_writes: Mutex<()>,
    /// Resolves partitions' prefixes from the registry (a thread reuses its last answer).
    resolver: Resolver,
    config: RocksDbConfig,
    write_options: WriteOptions,
    /// Table-file settings of staged batches' files (the rows family's).
    sst_options: Options,
    /// Names of staged files, in this process.
    staged_files: std::sync::atomic::AtomicU64,
    /// Partitions migrated out of the earlier layout when this backend opened.
    migrated: migrate::Migrated,
    /// Range deletes written through batches since the backend opened (`stats`: a flush
    /// removes a scope's rows with one).
    range_deletes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbBackend")
            .field("path", &self.config.path)
            .finish_non_exhaustive()
    }
}

impl RocksDbBackend {
    /// Walks one chunk of `request` with a raw iterator, handing every entry to `visit`;
    /// returns how many entries it visited.
    fn iterate(
        &self,
        partition: &Partition,
        request: &ScanRequest,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<usize> {
        let db = self.db()?;
        let prefix = self.prefix(partition)?;
        let cf = self.layout.rows_family(&db)?;
        let budget = request.chunk_budget();
        let (start, end) = request.range.bounds();
        if budget == 0 || kalamstore_storage::backend::is_empty_range(&start, &end) {
            return Ok(0);
        }
        let (lower, upper) = prefix.bounds(&start, &end);
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(lower);
        options.set_iterate_upper_bound(upper);
        let mut it = db.raw_iterator_cf_opt(&cf, options);
        match request.direction {
            Direction::Forward => it.seek_to_first(),
            Direction::Reverse => it.seek_to_last(),
        }
        let mut visited = 0usize;
        while visited < budget {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            // Every key within the bounds carries the partition's prefix.
            visit(&k[prefix.len()..], v)?;
            visited += 1;
            match request.direction {
                Direction::Forward => it.next(),
                Direction::Reverse => it.prev(),
            }
        }
        it.status()
            .map_err(rocks(|| format!("scanning partition `{partition}`")))?;
        Ok(visited)
    }

    /// Opens (or creates) the database at `config.path`, with every existing partition.
    pub fn open(config: RocksDbConfig) -> Result<Self> {
        let path = &config.path;
        std::fs::create_dir_all(path).map_err(|source| {
            RocksDbError::CreateDir {
                path: path.clone(),
                source,
            }
            .during("opening the database")
        })?;
        let Tuning {
            cf: cf_options,
            db: db_options,
            sst: sst_options,
        } = Tuning::of(&config);

        // Opening must name every existing family, so list them first; a new directory has
        // none. A database of the earlier layout also has one family per partition.
        let existed = path.join("CURRENT").exists();
        let mut families = if existed {
            Db::list_cf(&db_options, path).map_err(rocks(|| {
                format!("listing column families in {}", path.display())
            }))?
        } else {
            vec!["default".to_owned()]
        };
        let layout = Layout::of(existed, &families);
        for family in [layout.rows_cf(), layout.registry_cf()] {
            if !families.iter().any(|f| f == family) {
                families.push(family.to_owned());
            }
        }
        let descriptors = families
            .iter()
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, cf_options.clone()));
        let mut db = Db::open_cf_descriptors(&db_options, path, descriptors)
            .map_err(rocks(|| format!("opening {}", path.display())))?;
        let mut registry = load_registry(&db, layout)?;
        let migrated = migrate::migrate(&mut db, &families, &mut registry)?;
        staged::clear_staged(path)?;

        let mut write_options = WriteOptions::default();
        write_options.set_sync(config.sync_writes);
        Ok(Self {
            db: ArcSwapOption::from_pointee(db),
            layout,
            registry: RwLock::new(registry),
            registry_writes: Mutex::new(()),
            resolver: Resolver::new(),
            config,
            write_options,
            sst_options,
            staged_files: Default::default(),
            migrated,
            range_deletes: Default::default(),
        })
    }

    /// The configuration this backend was opened with.
    pub fn config(&self) -> &RocksDbConfig {
        &self.config
    }

    /// The open database, held for the call: `close` waits for calls in flight. Loaded
    /// through `arc_swap`, not a lock or a clone of the `Arc`: every operation passes here,
    /// and from many tasks the lock word's (or reference count's) cache line bouncing between
    /// cores was a measurable share of a point read.
    fn db(&self) -> Result<OpenDb> {
        let guard = self.db.load();
        if guard.is_none() {
            return Err(Error::Closed {
                engine: ENGINE,
                reason: "close() was called",
            });
        }
        Ok(OpenDb(guard))
    }

    fn generation(&self, partition: &Partition) -> Result<u64> {
        self.registry.read().generation(partition)
    }

    /// The key prefix of `partition`, or `PartitionNotFound`.
    fn prefix(&self, partition: &Partition) -> Result<KeyPrefix> {
        self.resolver.prefix(&self.registry, partition)
    }
}

/// The open database for one call (see [`RocksDbBackend::db`]).
pub(crate) struct OpenDb(arc_swap::Guard<Option<Arc<Db>>>);

impl std::ops::Deref for OpenDb {
    type Target = Db;

    fn deref(&self) -> &Db {
        // `RocksDbBackend::db` hands out a guard only after seeing `Some`, and a guard keeps
        // the value it loaded.
        self.0.as_deref().expect("an OpenDb holds an open database")
    }
}

#[async_trait]
impl StorageBackend for RocksDbBackend {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            // Acknowledged writes are in the WAL: they survive a process kill; with
            // `sync_writes` they also survive power loss.
            durable_on_ack: true,
            may_evict: false,
            delete_range: true,
        }
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        let db = self.db()?;
        let _writes = self.registry_writes.lock();
        let generation = {
            let registry = self.registry.read();
            if registry.partitions.contains_key(partition) {
                return Ok(());
            }
            registry.next
        };
        let cf = self.layout.registry_family(&db)?;
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(&cf, registry_key(partition), generation.to_be_bytes());
        batch.put_cf(&cf, NEXT_GENERATION, (generation + 1).to_be_bytes());
        db.write_opt(batch, &self.write_options)
            .map_err(rocks(|| format!("creating partition `{partition}`")))?;
        let mut registry = self.registry.write();
        registry.partitions.insert(partition.clone(), generation);
        registry.next = generation + 1;
        self.resolver.changed();
        Ok(())
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        let db = self.db()?;
        let _writes = self.registry_writes.lock();
        let Some(generation) = self.registry.read().partitions.get(partition).copied() else {
            return Ok(());
        };
        // The name and every key go in one atomic batch; the range delete's covered entries
        // are dropped by RocksDB's compactions.
        let prefix = self.layout.prefix(generation);
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(&self.layout.registry_family(&db)?, registry_key(partition));
        batch.delete_range_cf(
            &self.layout.rows_family(&db)?,
            prefix.as_bytes(),
            &prefix.end(),
        );
        db.write_opt(batch, &self.write_options)
            .map_err(rocks(|| format!("dropping partition `{partition}`")))?;
        let mut registry = self.registry.write();
        registry.partitions.remove(partition);
        self.resolver.changed();
        Ok(())
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        let _open = self.db()?;
        let mut partitions: Vec<Partition> =
            self.registry.read().partitions.keys().cloned().collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        let _open = self.db()?;
        Ok(self.registry.read().partitions.contains_key(partition))
    }

    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Bytes>> {
        let db = self.db()?;
        let cf = self.layout.rows_family(&db)?;
        let value = self
            .prefix(partition)?
            .with_key(key, |stored| db.get_pinned_cf(&cf, stored))
            .map_err(rocks(|| {
                format!("reading a key of partition `{partition}`")
            }))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    async fn get_many(&self, partition: &Partition, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        let db = self.db()?;
        let prefix = self.prefix(partition)?;
        // Callers mostly ask in key order (the write path does): then the ends bound the keys.
        let sorted = keys.is_sorted();
        let bounds = match sorted {
            true => keys.first().zip(keys.last()),
            false => keys.iter().min().zip(keys.iter().max()),
        };
        let Some((lo, hi)) = bounds else {
            return Ok(Vec::new());
        };
        let cf = self.layout.rows_family(&db)?;
        let what = || format!("reading {} keys of partition `{partition}`", keys.len());
        // One seek proves the whole batch absent when no stored key lies in its range: the
        // common case of new keys appended past the stored ones.
        let mut options = ReadOptions::default();
        let mut upper = prefix.key(hi);
        upper.push(0);
        options.set_iterate_upper_bound(upper);
        let mut it = db.raw_iterator_cf_opt(&cf, options);
        it.seek(prefix.key(lo));
        if !it.valid() {
            it.status().map_err(rocks(what))?;
            return Ok(vec![None; keys.len()]);
        }
        drop(it);
        let stored: Vec<Vec<u8>> = keys.iter().map(|k| prefix.key(k)).collect();
        db.batched_multi_get_cf(&cf, &stored, sorted)
            .into_iter()
            .map(|value| {
                value
                    .map(|v| v.map(|v| Bytes::copy_from_slice(&v)))
                    .map_err(rocks(what))
            })
            .collect()
    }

    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        let db = self.db()?;
        let stored = self.prefix(partition)?.key(&key);
        db.put_cf_opt(
            &self.layout.rows_family(&db)?,
            stored,
            value,
            &self.write_options,
        )
        .map_err(rocks(|| {
            format!("writing a key of partition `{partition}`")
        }))
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        let db = self.db()?;
        let stored = self.prefix(partition)?.key(key);
        db.delete_cf_opt(&self.layout.rows_family(&db)?, stored, &self.write_options)
            .map_err(rocks(|| {
                format!("deleting a key of partition `{partition}`")
            }))
    }

    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        let db = self.db()?;
        let cf = self.layout.rows_family(&db)?;
        // Resolve every partition's prefix first (each once): a missing partition fails the
        // batch before anything is written.
        let prefixes: Vec<KeyPrefix> = {
            let registry = self.registry.read();
            batch
                .partitions()
                .iter()
                .map(|p| registry.prefix(p))
                .collect::<Result<_>>()?
        };
        // Sized up front (a record is a tag, the family, varint lengths, the prefix of each
        // key and the bytes): a large statement's batch does not grow by doubling.
        let bytes = 12 + batch.data_len() + batch.len() * (2 * 8 + 9);
        let mut rocks_batch = rocksdb::WriteBatch::with_capacity_bytes(bytes);
        let mut key = Vec::new();
        let mut end = Vec::new();
        for (partition, op) in batch.indexed_ops() {
            let prefix = &prefixes[partition];
            match op {
                WriteOp::Put { key: k, value, .. } => {
                    prefix.key_into(&mut key, k);
                    rocks_batch.put_cf(&cf, &key, value);
                }
                WriteOp::Delete { key: k, .. } => {
                    prefix.key_into(&mut key, k);
                    rocks_batch.delete_cf(&cf, &key);
                }
                // RocksDB rejects a range whose end sorts before its start; it is empty
                // anyway.
                WriteOp::DeleteRange { start, end: e, .. } if start < e => {
                    prefix.key_into(&mut key, start);
                    prefix.key_into(&mut end, e);
                    rocks_batch.delete_range_cf(&cf, &key, &end);
                    self.range_deletes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                WriteOp::DeleteRange { .. } => {}
            }
        }
        let ops = batch.len();
        // The engine's copy is what gets written: the caller's bytes go before the memtable
        // takes its own copy.
        drop(batch);
        db.write_opt(rocks_batch, &self.write_options)
            .map_err(rocks(|| format!("writing a batch of {ops} ops")))
    }

    async fn staged_batch(&self) -> Result<Box<dyn kalamstore_storage::StagedBatch + '_>> {
        // Fails once closed, like every other call.
        drop(self.db()?);
        Ok(Box::new(staged::SstBatch::new(self)))
    }

    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk> {
        // Copy the chunk into one buffer and hand out slices of it: two small allocations per
        // entry were most of a large scan's cost.
        let mut arena: Vec<u8> = Vec::new();
        let mut spans: Vec<(usize, usize, usize)> =
            Vec::with_capacity(request.chunk_budget().min(8192));
        self.iterate(partition, request, |k, v| {
            let at = arena.len();
            arena.extend_from_slice(k);
            arena.extend_from_slice(v);
            spans.push((at, at + k.len(), arena.len()));
            Ok(())
        })?;
        let arena = Bytes::from(arena);
        let entries: Vec<KvPair> = spans
            .into_iter()
            .map(|(k, v, end)| (arena.slice(k..v), arena.slice(v..end)))
            .collect();
        let resume = request.resume_after(entries.last().map(|(k, _)| k), entries.len());
        Ok(ScanChunk { entries, resume })
    }

    async fn scan_with(
        &self,
        partition: &Partition,
        request: &ScanRequest,
        visit: &mut (dyn for<'e> FnMut(&'e [u8], &'e [u8]) -> Result<()> + Send),
    ) -> Result<Option<ScanRequest>> {
        // Entries are lent straight out of RocksDB's blocks; only the last key is kept, to
        // resume after it.
        let mut last: Vec<u8> = Vec::new();
        let returned = self.iterate(partition, request, |k, v| {
            last.clear();
            last.extend_from_slice(k);
            visit(k, v)
        })?;
        let last = (returned > 0).then(|| Bytes::from(last));
        Ok(request.resume_after(last.as_ref(), returned))
    }

    async fn reclaim(&self, partition: &Partition) -> Result<()> {
        self.reclaim_range(partition)
    }

    async fn flush(&self) -> Result<()> {
        self.db()?
            .flush_wal(true)
            .map_err(rocks(|| "syncing the WAL"))
    }

    async fn state_token(&self) -> Result<Option<Vec<u8>>> {
        // The database's identity (a UUID written at creation) and the sequence number of its
        // last write: creating or dropping a partition is a registry write, so it counts too.
        let db = self.db()?;
        let mut token = db
            .get_db_identity()
            .map_err(rocks(|| "reading the database identity"))?;
        token.push(0);
        token.extend_from_slice(&db.latest_sequence_number().to_le_bytes());
        Ok(Some(token))
    }

    async fn stats(&self) -> Result<BackendStats> {
        self.collect_stats()
    }

    async fn close(&self) -> Result<()> {
        let Some(db) = self.db.swap(None) else {
            return Ok(());
        };
        // New calls now fail with `Closed`; calls in flight hold the database through their
        // guards (RocksDB runs inline, never across an await): wait for them, so the WAL sync
        // covers their writes and the database closes here, releasing its lock file.
        while Arc::strong_count(&db) > 1 {
            std::thread::yield_now();
        }
        // A clean close writes the memtables out (like a shutdown checkpoint), so the next
        // open replays no WAL: without it, reopening rebuilds up to the whole write buffer in
        // memory before the first read (hundreds of MB after a large statement).
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(true);
        let families = [
            self.layout.registry_family(&db)?,
            self.layout.rows_family(&db)?,
        ];
        db.flush_cfs_opt(&families, &options)
            .map_err(rocks(|| "flushing the memtables on close"))?;
        db.flush_wal(true)
            .map_err(rocks(|| "syncing the WAL on close"))?;
        drop(db);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
