//! How a `Store` opens: the engines it can open ([`EngineProvider`]) and its settings
//! ([`StoreConfig`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::StorageBackend;
use crate::cache::{CacheRequest, ColdTier};
use crate::catalog::{HotEngine, JobKind};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::failpoint::Failpoints;
use crate::location::S3Options;

/// Opens hot engines by kind. The core knows no engine; the `kalamstore` crate supplies a
/// provider with RocksDB, the object-store engine and foyer.
#[async_trait]
pub trait EngineProvider: Send + Sync + 'static {
    /// The engine of the system storage and of storage `local`, living in `dir`.
    fn default_engine(&self, dir: &Path) -> HotEngine;

    /// Opens (creating if needed) a hot engine, with a cache in front when asked; the cache
    /// counts its hits and misses in the request's counters.
    async fn open(
        &self,
        engine: &HotEngine,
        s3: &S3Options,
        cache: Option<CacheRequest<'_>>,
    ) -> Result<Arc<dyn StorageBackend>>;

    /// The object store the table layer reads Parquet from: `store` itself, or a cache of
    /// its byte ranges when the storage has a cache (files are immutable and never renamed,
    /// so a range cached under a path never goes stale).
    async fn cold_store(
        &self,
        store: Arc<dyn object_store::ObjectStore>,
        _cache: Option<CacheRequest<'_>>,
    ) -> Result<ColdTier> {
        Ok(ColdTier { store, cache: None })
    }
}

/// A provider with only the in-memory engine (for tests of the core).
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryEngines;

#[async_trait]
impl EngineProvider for MemoryEngines {
    fn default_engine(&self, _dir: &Path) -> HotEngine {
        HotEngine::Memory
    }

    async fn open(
        &self,
        engine: &HotEngine,
        _s3: &S3Options,
        _cache: Option<CacheRequest<'_>>,
    ) -> Result<Arc<dyn StorageBackend>> {
        match engine {
            HotEngine::Memory => Ok(Arc::new(crate::memory::MemoryBackend::new())),
            other => Err(Error::Unsupported {
                engine: "memory-only provider",
                op: other.kind(),
            }),
        }
    }
}

/// The default budget of a storage's Parquet metadata cache: the footers, page indexes and
/// bloom filters of billions of rows, or the decoded pages point reads keep of a few million
/// (a ceiling: the cache holds only what reads touched).
const DEFAULT_METADATA_CACHE_BYTES: u64 = 256 << 20;

/// How a `Store` opens and runs.
#[derive(Clone)]
pub struct StoreConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The engines it can open.
    pub engines: Arc<dyn EngineProvider>,
    /// Node id of the `_seq` generator (0..=1023).
    pub node_id: u16,
    /// Run flush policies, STREAM expiry and cleanup in the background.
    pub background: bool,
    /// How often the background scheduler looks for work.
    pub scheduler_interval: Duration,
    /// Finished jobs older than this are removed by the cleanup job.
    pub job_retention: Duration,
    /// At most this many finished jobs are kept (the newest); older ones are removed by the
    /// cleanup job even inside `job_retention`.
    pub job_retention_count: usize,
    /// How often the cleanup job runs (in the background, or in [`Store::maintain`]). The
    /// time of the last one is its job record, so the cadence holds across processes.
    ///
    /// [`Store::maintain`]: crate::Store::maintain
    pub cleanup_interval: Duration,
    /// Unreferenced Parquet files older than this are deleted by the cleanup job.
    pub orphan_grace: Duration,
    /// How long one object-store call (or one item of a listing or a body) may take before it
    /// fails as a transient error, so a store that never answers cannot hold a table's lock.
    pub object_store_timeout: Duration,
    /// How long one attempt of a job may run; past it, the watchdog stops the job at its next
    /// safe point and retries it (see [`JobKind::max_attempts`]).
    ///
    /// [`JobKind::max_attempts`]: crate::catalog::JobKind::max_attempts
    pub job_timeout: Duration,
    /// Per-kind exceptions to `job_timeout`.
    pub job_timeouts: std::collections::HashMap<JobKind, Duration>,
    /// The wait before a job's first retry after a transient failure; it doubles per retry,
    /// plus up to half again of random jitter.
    pub retry_backoff: Duration,
    /// The time for `_updated`, STREAM TTL, flush intervals and job records: the system
    /// clock, or a [`ManualClock`](crate::clock::ManualClock) in tests.
    pub clock: Arc<dyn Clock>,
    /// How many jobs run at once: jobs beyond it wait `queued` for a worker (jobs on one table
    /// also wait for each other). A job started by a running job (a flush's Delta publish)
    /// runs on its parent's worker.
    pub job_workers: usize,
    /// Failure points a test arms to make flushes, compactions, moves and drops fail.
    pub failpoints: Failpoints,
    /// Byte budget of each storage's Parquet metadata cache (footers with page indexes,
    /// `_key` page directories and bloom filters, the pages point reads decoded), unless the
    /// storage sets its own.
    pub metadata_cache_bytes: u64,
    /// Keys a large statement reads and stages at a time: its per-row values live for one
    /// chunk, its encoded rows go to the engine's staged batch. Larger chunks read the files
    /// in fewer, longer runs; smaller ones hold less.
    pub write_chunk_rows: usize,
}

impl StoreConfig {
    /// Defaults: background work on, every second; 4 job workers; a 256 MiB metadata cache
    /// per storage; statements staged 64Ki keys at a time; cleanup every minute; jobs
    /// kept a day (at most 1000); orphans collected after an hour; a job attempt may run 6 hours, an
    /// object-store call a minute; the first retry after 200 ms.
    pub fn new(data_dir: impl Into<PathBuf>, engines: Arc<dyn EngineProvider>) -> Self {
        Self {
            data_dir: data_dir.into(),
            engines,
            node_id: 0,
            background: true,
            scheduler_interval: Duration::from_secs(1),
            job_retention: Duration::from_secs(24 * 3600),
            job_retention_count: 1000,
            cleanup_interval: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(3600),
            retry_backoff: Duration::from_millis(200),
            job_timeout: Duration::from_secs(6 * 3600),
            job_timeouts: std::collections::HashMap::new(),
            object_store_timeout: Duration::from_secs(60),
            clock: Arc::new(SystemClock),
            failpoints: Failpoints::default(),
            job_workers: 4,
            metadata_cache_bytes: DEFAULT_METADATA_CACHE_BYTES,
            write_chunk_rows: 65_536,
        }
    }
}

impl StoreConfig {
    /// The time limit of one attempt of a job of `kind`.
    pub fn job_timeout_of(&self, kind: JobKind) -> Duration {
        self.job_timeouts
            .get(&kind)
            .copied()
            .unwrap_or(self.job_timeout)
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("data_dir", &self.data_dir)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}
