//! An open storage: its registered definition, its hot engine and its cold object store.

use std::sync::Arc;

use crate::backend::StorageBackend;
use crate::cache::{CacheCounters, CloseCache};
use crate::catalog::StorageDefinition;
use crate::clock::Clock;
use crate::location::OpenedStore;

/// A storage opened for use.
pub(crate) struct StorageHandle {
    /// The registered definition.
    pub(crate) def: StorageDefinition,
    /// The hot engine.
    pub(crate) hot: Arc<dyn StorageBackend>,
    /// The cold object store (Parquet files).
    pub(crate) cold: OpenedStore,
    /// The store's clock: `_updated` of writes and STREAM expiry.
    pub(crate) clock: Arc<dyn Clock>,
    /// The counters of the hot engine's cache (`rows`) and the cold store's (`files`).
    pub(crate) cache_counters: [Arc<CacheCounters>; 2],
    /// The cold store's cache, closed with the store.
    pub(crate) cold_cache: Option<Arc<dyn CloseCache>>,
    /// The store's failure points (tests).
    pub(crate) failpoints: crate::failpoint::Failpoints,
    /// What reads keep of the storage's Parquet files.
    pub(crate) metadata: Arc<crate::format::MetadataCache>,
    /// Keys a large statement stages at a time (`StoreConfig::write_chunk_rows`).
    pub(crate) write_chunk_rows: usize,
}

impl std::fmt::Debug for StorageHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageHandle")
            .field("id", &self.def.id)
            .finish_non_exhaustive()
    }
}

impl StorageHandle {
    /// Closes the hot engine (unless it is the system engine, which the store closes last) and
    /// the cold store's cache.
    pub(crate) async fn close(&self) -> crate::error::Result<()> {
        if self.def.id != crate::ids::StorageId::local() {
            self.hot.close().await?;
        }
        if let Some(cache) = &self.cold_cache {
            cache.close_cache().await?;
        }
        Ok(())
    }

    /// The counters of the storage's caches, with the tier each fronts: the metadata cache
    /// always, the rows and files caches with a `CACHE` clause.
    pub(crate) fn cache_stats(&self) -> Vec<crate::cache::StorageCacheStats> {
        let metadata = crate::cache::StorageCacheStats {
            storage: self.def.id.clone(),
            tier: crate::cache::CacheTier::Metadata,
            spec: crate::catalog::CacheSpec {
                memory_bytes: self.metadata.budget() as u64,
                disk_bytes: 0,
                disk_path: String::new(),
            },
            stats: self.metadata.counters().snapshot(),
            used_bytes: Some(self.metadata.usage() as u64),
        };
        let Some(spec) = &self.def.cache else {
            return vec![metadata];
        };
        [
            crate::cache::CacheTier::Rows,
            crate::cache::CacheTier::Files,
        ]
        .into_iter()
        .zip(&self.cache_counters)
        .map(|(tier, counters)| crate::cache::StorageCacheStats {
            storage: self.def.id.clone(),
            tier,
            spec: spec.clone(),
            stats: counters.snapshot(),
            used_bytes: None,
        })
        .chain(std::iter::once(metadata))
        .collect()
    }
}
