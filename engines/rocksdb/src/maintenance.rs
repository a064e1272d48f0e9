//! Upkeep of a RocksDB backend: reclaiming the space of a partition's range-deleted entries,
//! and the statistics `stats` reports.

use kalamstore_storage::Result;
use kalamstore_storage::backend::{BackendStats, Partition};

use crate::RocksDbBackend;
use crate::error::{ENGINE, rocks};

impl RocksDbBackend {
    /// `StorageBackend::reclaim`: compacts or flushes what a range delete left of `partition`
    /// when it holds enough to matter.
    pub(crate) fn reclaim_range(&self, partition: &Partition) -> Result<()> {
        let db = self.db()?;
        let prefix = self.prefix(partition)?;
        let cf = self.layout.rows_family(&db)?;
        // Entries under a range delete in table files stay until a compaction drops them:
        // every scan of the range reads past them, and their mapped pages count toward the
        // process's memory. When the partition's files hold enough to matter, its key range
        // is compacted now (RocksDB flushes the memtable first when it overlaps the range).
        let (lower, upper) = (prefix.as_bytes(), prefix.end());
        let on_disk = db
            .get_approximate_sizes_cf(&cf, &[rocksdb::Range::new(lower, &upper)])
            .first()
            .copied()
            .unwrap_or(0);
        if on_disk >= self.config.reclaim_min_file_bytes as u64 {
            let mut options = rocksdb::CompactOptions::default();
            options.set_exclusive_manual_compaction(false);
            db.compact_range_cf_opt(&cf, Some(lower), Some(upper), &options);
            return Ok(());
        }
        // A memtable flush drops the entries a range delete in the same memtable covers; until
        // then every scan of that range steps over them one by one. The memtable is shared by
        // every partition, so it is flushed only when it holds enough to matter. Scheduled,
        // not awaited (RocksDB first waits while switching the memtable would stall writes).
        let active = db
            .property_int_value_cf(&cf, rocksdb::properties::CUR_SIZE_ACTIVE_MEM_TABLE)
            .map_err(rocks(|| "reading the memtable size"))?
            .unwrap_or(0);
        if active < self.config.reclaim_min_memtable_bytes as u64 {
            return Ok(());
        }
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(false);
        db.flush_cf_opt(&cf, &options).map_err(rocks(|| {
            format!("flushing the memtable after `{partition}`")
        }))
    }

    /// `StorageBackend::stats`: the database's size, files, pending flushes and layout.
    pub(crate) fn collect_stats(&self) -> Result<BackendStats> {
        let db = self.db()?;
        let partitions = self.registry.read().partitions.len();
        let cf = self.layout.rows_family(&db)?;
        let int = |name: &std::ffi::CStr| -> Result<u64> {
            Ok(db
                .property_int_value_cf(&cf, name)
                .map_err(rocks(|| "reading the statistics of the rows family"))?
                .unwrap_or(0))
        };
        let keys = int(rocksdb::properties::ESTIMATE_NUM_KEYS)?;
        let bytes = int(rocksdb::properties::ESTIMATE_LIVE_DATA_SIZE)?
            + int(rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES)?;
        // Memtable flushes requested and not yet finished (scheduled ones plus running ones).
        let flushes = db
            .property_int_value(rocksdb::properties::NUM_RUNNING_FLUSHES)
            .map_err(rocks(|| "reading the running flushes"))?
            .unwrap_or(0)
            + int(rocksdb::properties::MEM_TABLE_FLUSH_PENDING)?;
        let table_files = db
            .live_files()
            .map_err(rocks(|| "listing the live table files"))?
            .len();
        Ok(BackendStats {
            engine: ENGINE,
            partitions,
            approximate_keys: Some(keys),
            approximate_bytes: Some(bytes),
            details: vec![
                ("path".into(), self.config.path.display().to_string()),
                ("layout".into(), format!("{:?}", self.layout).to_lowercase()),
                ("sync_writes".into(), self.config.sync_writes.to_string()),
                ("table_files".into(), table_files.to_string()),
                ("flushes_pending".into(), flushes.to_string()),
                (
                    "range_deletes".into(),
                    self.range_deletes
                        .load(std::sync::atomic::Ordering::Relaxed)
                        .to_string(),
                ),
                (
                    "migrated_at_open".into(),
                    format!(
                        "{} partitions, {} keys",
                        self.migrated.partitions, self.migrated.keys
                    ),
                ),
            ],
        })
    }
}
