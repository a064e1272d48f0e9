//! `RocksDbBackend`: kalamstore's embedded default engine, one RocksDB column family per
//! partition.
//!
//! Calls run RocksDB inline on the calling thread (point operations take microseconds; a scan
//! chunk is bounded by `chunk_size`), so the backend works from any runtime without a bridge.

mod config;
mod error;

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kalamstore_storage::backend::{
    BackendStats, Capabilities, Direction, KvPair, Partition, ScanChunk, ScanRequest,
    StorageBackend, WriteBatch, WriteOp,
};
use kalamstore_storage::{Error, Result};
use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedOptions, BoundColumnFamily, Cache, DBCompressionType, DBWithThreadMode,
    MultiThreaded, Options, ReadOptions, WriteOptions,
};

pub use config::RocksDbConfig;
use error::{ENGINE, RocksDbError, rocks};

type Db = DBWithThreadMode<MultiThreaded>;

/// Column families of partitions carry this prefix, which keeps RocksDB's own `default` family
/// out of the partition namespace.
const CF_PREFIX: &str = "p:";

/// A [`StorageBackend`] on RocksDB.
pub struct RocksDbBackend {
    /// `None` once closed.
    db: RwLock<Option<Arc<Db>>>,
    /// Partitions that exist; also serialises creation and drops (RocksDB refuses a
    /// duplicate family).
    partitions: Mutex<BTreeSet<Partition>>,
    config: RocksDbConfig,
    cf_options: Options,
    write_options: WriteOptions,
}

impl std::fmt::Debug for RocksDbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbBackend")
            .field("path", &self.config.path)
            .finish_non_exhaustive()
    }
}

fn cf_name(partition: &Partition) -> String {
    format!("{CF_PREFIX}{partition}")
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
        let cf = family(&db, partition)?;
        let budget = request.chunk_budget();
        let (start, end) = request.range.bounds();
        if budget == 0 || kalamstore_storage::backend::is_empty_range(&start, &end) {
            return Ok(0);
        }
        let mut options = ReadOptions::default();
        match &start {
            Bound::Included(s) => options.set_iterate_lower_bound(s.to_vec()),
            Bound::Excluded(s) => options.set_iterate_lower_bound(successor(s)),
            Bound::Unbounded => {}
        }
        match &end {
            Bound::Included(e) => options.set_iterate_upper_bound(successor(e)),
            Bound::Excluded(e) => options.set_iterate_upper_bound(e.to_vec()),
            Bound::Unbounded => {}
        }
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
            visit(k, v)?;
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
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        if config.bloom_bits_per_key > 0.0 {
            table.set_bloom_filter(config.bloom_bits_per_key, false);
        }
        table.set_cache_index_and_filter_blocks(true);
        // 16 KiB blocks: a flush's scan of the hot rows pays per block (read, checksum, cache
        // insert); a point read decodes one block either way.
        table.set_block_size(16 << 10);

        let mut cf_options = Options::default();
        cf_options.set_block_based_table_factory(&table);
        cf_options.set_write_buffer_size(config.write_buffer_bytes);
        cf_options.set_max_write_buffer_number(4);
        // Hot rows live in the newest levels until a table flush takes them to Parquet: those
        // levels stay uncompressed (no compression on memtable flushes, none on the flush's
        // scan); rows that stay longer (stream tables, idle scopes) move down and are compressed.
        cf_options.set_compression_per_level(&[
            DBCompressionType::None,
            DBCompressionType::None,
            DBCompressionType::Lz4,
            DBCompressionType::Lz4,
            DBCompressionType::Lz4,
            DBCompressionType::Lz4,
            DBCompressionType::Lz4,
        ]);
        cf_options.set_bottommost_compression_type(DBCompressionType::Zstd);
        cf_options.set_level_compaction_dynamic_level_bytes(true);

        let mut db_options = cf_options.clone();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(config.max_background_jobs);
        db_options.set_db_write_buffer_size(config.total_write_buffer_bytes);
        db_options.set_bytes_per_sync(1 << 20);
        // Table files are read through a mapping: an uncompressed block (the newest levels,
        // see above) is used in place, without a read call and a copy per block.
        db_options.set_allow_mmap_reads(true);
        db_options.set_enable_pipelined_write(true);

        // Opening must name every existing family, so list them first; a new directory has none.
        let families = if path.join("CURRENT").exists() {
            Db::list_cf(&db_options, path).map_err(rocks(|| {
                format!("listing column families in {}", path.display())
            }))?
        } else {
            vec!["default".to_owned()]
        };
        let partitions = families
            .iter()
            .filter_map(|name| name.strip_prefix(CF_PREFIX))
            .map(Partition::new)
            .collect::<Result<BTreeSet<_>>>()?;
        let descriptors = families
            .into_iter()
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, cf_options.clone()));
        let db = Db::open_cf_descriptors(&db_options, path, descriptors)
            .map_err(rocks(|| format!("opening {}", path.display())))?;

        let mut write_options = WriteOptions::default();
        write_options.set_sync(config.sync_writes);
        Ok(Self {
            db: RwLock::new(Some(Arc::new(db))),
            partitions: Mutex::new(partitions),
            config,
            cf_options,
            write_options,
        })
    }

    /// The configuration this backend was opened with.
    pub fn config(&self) -> &RocksDbConfig {
        &self.config
    }

    fn db(&self) -> Result<Arc<Db>> {
        self.db.read().clone().ok_or(Error::Closed {
            engine: ENGINE,
            reason: "close() was called",
        })
    }
}

fn family<'a>(db: &'a Db, partition: &Partition) -> Result<Arc<BoundColumnFamily<'a>>> {
    db.cf_handle(&cf_name(partition))
        .ok_or_else(|| Error::PartitionNotFound {
            partition: partition.to_string(),
        })
}

/// The smallest key strictly greater than `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.extend_from_slice(key);
    out.push(0);
    out
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
        let mut partitions = self.partitions.lock();
        if partitions.contains(partition) {
            return Ok(());
        }
        db.create_cf(cf_name(partition), &self.cf_options)
            .map_err(rocks(|| format!("creating partition `{partition}`")))?;
        partitions.insert(partition.clone());
        Ok(())
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        let db = self.db()?;
        let mut partitions = self.partitions.lock();
        if !partitions.contains(partition) {
            return Ok(());
        }
        db.drop_cf(&cf_name(partition))
            .map_err(rocks(|| format!("dropping partition `{partition}`")))?;
        partitions.remove(partition);
        Ok(())
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.db()?;
        Ok(self.partitions.lock().iter().cloned().collect())
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        Ok(self.db()?.cf_handle(&cf_name(partition)).is_some())
    }

    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Bytes>> {
        let db = self.db()?;
        let cf = family(&db, partition)?;
        let value = db.get_pinned_cf(&cf, key).map_err(rocks(|| {
            format!("reading a key of partition `{partition}`")
        }))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    async fn get_many(&self, partition: &Partition, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        let (Some(lo), Some(hi)) = (keys.iter().min(), keys.iter().max()) else {
            return Ok(Vec::new());
        };
        let db = self.db()?;
        let cf = family(&db, partition)?;
        let what = || format!("reading {} keys of partition `{partition}`", keys.len());
        // One seek proves the whole batch absent when no stored key lies in its range: the
        // common case of new keys appended past the stored ones.
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(successor(hi));
        let mut it = db.raw_iterator_cf_opt(&cf, options);
        it.seek(lo);
        if !it.valid() {
            it.status().map_err(rocks(what))?;
            return Ok(vec![None; keys.len()]);
        }
        drop(it);
        let sorted = keys.is_sorted();
        db.batched_multi_get_cf(&cf, keys, sorted)
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
        let cf = family(&db, partition)?;
        db.put_cf_opt(&cf, key, value, &self.write_options)
            .map_err(rocks(|| {
                format!("writing a key of partition `{partition}`")
            }))
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        let db = self.db()?;
        let cf = family(&db, partition)?;
        db.delete_cf_opt(&cf, key, &self.write_options)
            .map_err(rocks(|| {
                format!("deleting a key of partition `{partition}`")
            }))
    }

    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        let db = self.db()?;
        // Resolve every family first: a missing partition fails the batch before anything is
        // written. A batch touches a few partitions, mostly in runs: a short list beats hashing
        // the name of every op.
        let mut families: Vec<(&Partition, Arc<BoundColumnFamily<'_>>)> = Vec::new();
        let mut at = 0usize;
        let mut resolved = Vec::with_capacity(batch.ops.len());
        for op in &batch.ops {
            let partition = op.partition();
            if families.get(at).is_none_or(|(p, _)| *p != partition) {
                at = match families.iter().position(|(p, _)| *p == partition) {
                    Some(i) => i,
                    None => {
                        families.push((partition, family(&db, partition)?));
                        families.len() - 1
                    }
                };
            }
            resolved.push(at);
        }
        let mut rocks_batch = rocksdb::WriteBatch::default();
        for (op, at) in batch.ops.iter().zip(resolved) {
            let cf = &families[at].1;
            match op {
                WriteOp::Put { key, value, .. } => rocks_batch.put_cf(cf, key, value),
                WriteOp::Delete { key, .. } => rocks_batch.delete_cf(cf, key),
                // RocksDB rejects a range whose end sorts before its start; it is empty anyway.
                WriteOp::DeleteRange { start, end, .. } if start < end => {
                    rocks_batch.delete_range_cf(cf, start, end)
                }
                WriteOp::DeleteRange { .. } => {}
            }
        }
        db.write_opt(rocks_batch, &self.write_options)
            .map_err(rocks(|| format!("writing a batch of {} ops", batch.len())))
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
        // A memtable flush drops the entries a range delete in the same memtable covers; until
        // then every scan steps over them one by one. Scheduled, not awaited (RocksDB first
        // waits while switching the memtable would stall writes).
        let db = self.db()?;
        let cf = family(&db, partition)?;
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(false);
        db.flush_cf_opt(&cf, &options)
            .map_err(rocks(|| format!("flushing the memtable of `{partition}`")))
    }

    async fn flush(&self) -> Result<()> {
        self.db()?
            .flush_wal(true)
            .map_err(rocks(|| "syncing the WAL"))
    }

    async fn state_token(&self) -> Result<Option<Vec<u8>>> {
        // The database's identity (a UUID written at creation), the sequence number of its
        // last write, and its families (creating or dropping one takes no sequence number).
        let db = self.db()?;
        let mut token = db
            .get_db_identity()
            .map_err(rocks(|| "reading the database identity"))?;
        token.push(0);
        token.extend_from_slice(&db.latest_sequence_number().to_le_bytes());
        for partition in self.partitions.lock().iter() {
            token.push(0);
            token.extend_from_slice(partition.as_str().as_bytes());
        }
        Ok(Some(token))
    }

    async fn stats(&self) -> Result<BackendStats> {
        let db = self.db()?;
        let partitions = self.list_partitions().await?;
        let mut keys = 0u64;
        let mut bytes = 0u64;
        // Memtable flushes requested and not yet finished (scheduled ones plus running ones).
        let mut flushes = db
            .property_int_value(rocksdb::properties::NUM_RUNNING_FLUSHES)
            .map_err(rocks(|| "reading the running flushes"))?
            .unwrap_or(0);
        for partition in &partitions {
            let cf = family(&db, partition)?;
            let int = |name: &std::ffi::CStr| -> Result<u64> {
                Ok(db
                    .property_int_value_cf(&cf, name)
                    .map_err(rocks(|| format!("reading statistics of `{partition}`")))?
                    .unwrap_or(0))
            };
            keys += int(rocksdb::properties::ESTIMATE_NUM_KEYS)?;
            bytes += int(rocksdb::properties::ESTIMATE_LIVE_DATA_SIZE)?
                + int(rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES)?;
            flushes += int(rocksdb::properties::MEM_TABLE_FLUSH_PENDING)?;
        }
        let table_files = db
            .live_files()
            .map_err(rocks(|| "listing the live table files"))?
            .len();
        Ok(BackendStats {
            engine: ENGINE,
            partitions: partitions.len(),
            approximate_keys: Some(keys),
            approximate_bytes: Some(bytes),
            details: vec![
                ("path".into(), self.config.path.display().to_string()),
                ("sync_writes".into(), self.config.sync_writes.to_string()),
                ("table_files".into(), table_files.to_string()),
                ("flushes_pending".into(), flushes.to_string()),
            ],
        })
    }

    async fn close(&self) -> Result<()> {
        let Some(db) = self.db.write().take() else {
            return Ok(());
        };
        db.flush_wal(true)
            .map_err(rocks(|| "syncing the WAL on close"))?;
        // The database closes when the last in-flight call drops its handle.
        drop(db);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
