//! `RocksDbConfig`: where the database lives and how RocksDB is tuned.

use std::path::PathBuf;

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options};

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
    /// `reclaim` compacts a partition's key range when its table files hold at least this
    /// many bytes (entries under the range delete, read past by every scan until dropped).
    pub reclaim_min_file_bytes: usize,
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
            reclaim_min_file_bytes: 64 << 20,
        }
    }

    /// Sets `sync_writes`.
    pub fn with_sync_writes(mut self, sync: bool) -> Self {
        self.sync_writes = sync;
        self
    }
}

/// The RocksDB options a [`RocksDbConfig`] opens with.
pub(crate) struct Tuning {
    /// Every column family's options.
    pub(crate) cf: Options,
    /// The database's options (the families' plus database-wide settings).
    pub(crate) db: Options,
    /// Options of staged batches' table files.
    pub(crate) sst: Options,
}

impl Tuning {
    /// The options `config` asks for (see the comments for why each is set).
    pub(crate) fn of(config: &RocksDbConfig) -> Self {
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
        // Staged files land in the newest levels, which stay uncompressed (see above).
        let mut sst_options = cf_options.clone();
        sst_options.set_compression_type(DBCompressionType::None);
        Self {
            cf: cf_options,
            db: db_options,
            sst: sst_options,
        }
    }
}
