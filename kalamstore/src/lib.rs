//! kalamstore, embedded: [`open`] a data directory as a [`Store`] whose storages can use every
//! engine: RocksDB (the default), the object-store engine and a foyer cache in front of either.
//! [`open_with`] takes the engines' settings ([`Engines`]: RocksDB's `sync_writes` and
//! caches, the object-store engine's ack mode, the foyer cache's block size); a
//! [`StoreConfig`] over [`Engines`] also sets the store's own (background work, retention).
//!
//! ```no_run
//! # async fn demo() -> kalamstore::Result<()> {
//! let store = kalamstore::open("./kalamstore-data").await?;
//! store.create_namespace(&"app".parse()?, true).await?;
//!
//! // Every acknowledged RocksDB write fsynced (survives power loss, not only a crash):
//! let mut engines = kalamstore::Engines::default();
//! engines.rocksdb.sync_writes = true;
//! let durable = kalamstore::open_with("./other-data", engines).await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::ObjectStore;

pub use kalamstore_foyer::{FoyerBackend, FoyerConfig, RangeCachedStore};
pub use kalamstore_object_store::{AckMode, ObjectStoreBackend, ObjectStoreConfig};
pub use kalamstore_rocksdb::{RocksDbBackend, RocksDbConfig};
pub use kalamstore_storage::{
    AccessLevel, BackgroundFailure, BatchMode, CacheCounters, CacheRequest, CacheSpec, CacheStats,
    CacheTier, Change, ChangeOp, ChangePage, ChangeRetention, CleanupOutcome, Clock, CmpOp,
    ColdTier, ColumnDefinition, CompactionPolicy, ConsumerRecord, ConsumerStart, DeltaPublishing,
    EngineProvider, Error, Failpoints, FileEntry, Filter, FlushOutcome, FlushPolicy, HotEngine,
    JobKind, JobOutcome, JobProgress, JobRecord, JobStatus, KalamDataType, KalamValue, KeyScope,
    LiveQuery, MaintenanceOutcome, ManualClock, MemoryBackend, Mutation, NamespaceId,
    OptionsChange, Pause, Result, Role, S3Options, ScanOptions, SchemaChange, SchemaVersion, Scope,
    ScopeStats, SessionHandle, SessionInfo, StartAt, StorageBackend, StorageCacheStats,
    StorageDefinition, StorageId, Store, StoreConfig, SubscribeOptions, Subscription,
    SubscriptionEvent, SystemClock, TableDefinition, TableId, TableName, TableOptions, TableTask,
    TableTaskOp, TableType, TablesChangePage, UserId, UserRecord, WriteSummary,
};
pub use kalamstore_storage::{backend, codec, format, location, types};

/// The engines of a full build: `rocksdb`, `object_store` and `memory`, each optionally behind
/// a foyer hybrid cache, with the settings every storage's engine is opened with.
#[derive(Debug, Clone)]
pub struct Engines {
    /// Settings of every RocksDB hot engine; `path` is each storage's own.
    pub rocksdb: RocksDbConfig,
    /// Settings of every object-store hot engine; `url` and `s3` are each storage's own.
    pub object_store: ObjectStoreConfig,
    /// Settings of every foyer cache; the sizes and the disk directory come from each
    /// storage's `CACHE` clause.
    pub cache: FoyerConfig,
}

impl Default for Engines {
    fn default() -> Self {
        Self {
            rocksdb: RocksDbConfig::new(""),
            object_store: ObjectStoreConfig::new(""),
            cache: FoyerConfig::memory(0),
        }
    }
}

impl Engines {
    /// The foyer settings of a storage's cache; `dir` is where its disk tier lives.
    fn foyer_config(&self, cache: &CacheSpec, dir: String) -> FoyerConfig {
        let memory = usize::try_from(cache.memory_bytes).unwrap_or(usize::MAX);
        let sized = if cache.disk_bytes == 0 {
            FoyerConfig::memory(memory)
        } else {
            FoyerConfig::hybrid(
                memory,
                dir,
                usize::try_from(cache.disk_bytes).unwrap_or(usize::MAX),
            )
        };
        FoyerConfig {
            block_bytes: self.cache.block_bytes,
            worker_threads: self.cache.worker_threads,
            ..sized
        }
    }

    async fn cached<B: StorageBackend + 'static>(
        &self,
        inner: B,
        cache: Option<CacheRequest<'_>>,
    ) -> Result<Arc<dyn StorageBackend>> {
        let Some(cache) = cache else {
            return Ok(Arc::new(inner));
        };
        let config = self.foyer_config(cache.spec, cache.spec.disk_path.clone());
        Ok(Arc::new(
            FoyerBackend::with_counters(Arc::new(inner), config, cache.counters).await?,
        ))
    }
}

#[async_trait]
impl EngineProvider for Engines {
    fn default_engine(&self, dir: &Path) -> HotEngine {
        HotEngine::RocksDb {
            path: dir.to_string_lossy().into_owned(),
        }
    }

    async fn open(
        &self,
        engine: &HotEngine,
        s3: &S3Options,
        cache: Option<CacheRequest<'_>>,
    ) -> Result<Arc<dyn StorageBackend>> {
        match engine {
            HotEngine::RocksDb { path } => {
                let config = RocksDbConfig {
                    path: path.into(),
                    ..self.rocksdb.clone()
                };
                let backend = tokio::task::spawn_blocking(move || RocksDbBackend::open(config))
                    .await
                    .map_err(Error::task("rocksdb", "opening"))??;
                self.cached(backend, cache).await
            }
            HotEngine::ObjectStore { url } => {
                let config = ObjectStoreConfig {
                    url: url.clone(),
                    s3: s3.clone(),
                    ..self.object_store.clone()
                };
                self.cached(ObjectStoreBackend::open(config).await?, cache)
                    .await
            }
            HotEngine::Memory => self.cached(MemoryBackend::new(), cache).await,
        }
    }

    async fn cold_store(
        &self,
        store: Arc<dyn ObjectStore>,
        cache: Option<CacheRequest<'_>>,
    ) -> Result<ColdTier> {
        let Some(cache) = cache else {
            return Ok(ColdTier { store, cache: None });
        };
        let config = self.foyer_config(cache.spec, format!("{}-ranges", cache.spec.disk_path));
        // Objects in a `memory://` store die with the process: nothing to reopen warm over.
        let lasting = !cache.source.starts_with("memory:");
        let ranges = RangeCachedStore::new(
            store,
            config,
            lasting.then_some(cache.source),
            cache.counters,
        )
        .await?;
        let ranges = Arc::new(ranges);
        Ok(ColdTier {
            store: ranges.clone(),
            cache: Some(ranges),
        })
    }
}

/// Opens a data directory with every engine available, default engine settings and
/// background work on.
pub async fn open(data_dir: impl AsRef<Path>) -> Result<Store> {
    open_with(data_dir, Engines::default()).await
}

/// Opens a data directory with every engine available, opened with `engines`' settings.
pub async fn open_with(data_dir: impl AsRef<Path>, engines: Engines) -> Result<Store> {
    Store::open(StoreConfig::new(data_dir.as_ref(), Arc::new(engines))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn engine_settings_reach_the_engines_a_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let mut engines = Engines::default();
        engines.rocksdb.sync_writes = true;
        engines.object_store.ack = AckMode::Memory;
        engines.cache.block_bytes = 64 << 10;
        let spec = CacheSpec {
            memory_bytes: 1 << 20,
            disk_bytes: 1 << 22,
            disk_path: dir.path().join("cache").to_string_lossy().into_owned(),
        };
        let foyer = engines.foyer_config(&spec, spec.disk_path.clone());
        assert_eq!(foyer.block_bytes, 64 << 10);
        assert_eq!(foyer.disk_bytes, 1 << 22);
        let store = open_with(dir.path().join("data"), engines).await.unwrap();
        let stats = store
            .storage_engine(&StorageId::local())
            .await
            .unwrap()
            .stats()
            .await
            .unwrap();
        assert_eq!(stats.engine, "rocksdb");
        assert!(
            stats
                .details
                .iter()
                .any(|(k, v)| k == "sync_writes" && v == "true"),
            "{:?}",
            stats.details
        );
        store.close().await.unwrap();
    }
}
