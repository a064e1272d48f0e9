//! `RocksDbConfig`: where the database lives and how RocksDB is tuned.

use std::path::PathBuf;

/// Settings of a [`RocksDbBackend`](crate::RocksDbBackend). The defaults suit a write-heavy
/// workload on a small machine.
#[derive(Debug, Clone)]
pub struct RocksDbConfig {
    /// Directory of the database; created when missing.
    pub path: PathBuf,
    /// Shared LRU block cache for every partition, in bytes.
    pub block_cache_bytes: usize,
    /// Memtable size per partition before it is flushed, in bytes (default: the whole budget).
    pub write_buffer_bytes: usize,
    /// Memtable budget across all partitions, in bytes.
    pub total_write_buffer_bytes: usize,
    /// Background flush and compaction threads.
    pub max_background_jobs: i32,
    /// fsync the WAL before acknowledging each write (survives power loss, not only a crash).
    pub sync_writes: bool,
    /// Bloom filter bits per key (0 disables the filter).
    pub bloom_bits_per_key: f64,
    /// `reclaim` flushes the shared memtable only when it holds at least this many bytes:
    /// entries under a range delete in a smaller one cost scans little.
    pub reclaim_min_memtable_bytes: usize,
}

impl RocksDbConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            block_cache_bytes: 64 << 20,
            // One partition may fill the whole budget: a table's hot rows are a write buffer in
            // front of its Parquet files and should stay in memory (and the WAL) until the
            // table flush moves them. A memtable flush would write them to a level-0 file only
            // for the table flush to read them back and delete them; with the whole budget per
            // partition that happens only when the budget overflows.
            write_buffer_bytes: 256 << 20,
            total_write_buffer_bytes: 256 << 20,
            max_background_jobs: 2,
            sync_writes: false,
            bloom_bits_per_key: 10.0,
            reclaim_min_memtable_bytes: 16 << 20,
        }
    }

    /// Sets `sync_writes`.
    pub fn with_sync_writes(mut self, sync: bool) -> Self {
        self.sync_writes = sync;
        self
    }
}
