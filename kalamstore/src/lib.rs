//! kalamstore, embedded: [`open`] a data directory as a [`Store`] whose storages can use every
//! engine: RocksDB (the default), the object-store engine and a foyer cache in front of either.
//!
//! ```no_run
//! # async fn demo() -> kalamstore::Result<()> {
//! let store = kalamstore::open("./kalamstore-data").await?;
//! store.create_namespace(&"app".parse()?, true).await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kalamstore_foyer::{FoyerBackend, FoyerConfig, RangeCachedStore};
use kalamstore_object_store::{ObjectStoreBackend, ObjectStoreConfig};
use kalamstore_rocksdb::{RocksDbBackend, RocksDbConfig};
pub use kalamstore_storage::*;
use object_store::ObjectStore;

/// The engines of a full build: `rocksdb`, `object_store` and `memory`, each optionally behind
/// a foyer hybrid cache.
#[derive(Debug, Default, Clone, Copy)]
pub struct Engines;

/// The foyer settings of a storage's cache; `dir` is where its disk tier lives.
fn foyer_config(cache: &CacheSpec, dir: String) -> FoyerConfig {
    let memory = usize::try_from(cache.memory_bytes).unwrap_or(usize::MAX);
    if cache.disk_bytes == 0 {
        FoyerConfig::memory(memory)
    } else {
        FoyerConfig::hybrid(
            memory,
            dir,
            usize::try_from(cache.disk_bytes).unwrap_or(usize::MAX),
        )
    }
}

async fn cached<B: StorageBackend + 'static>(
    inner: B,
    cache: Option<&CacheSpec>,
) -> Result<Arc<dyn StorageBackend>> {
    let Some(cache) = cache else {
        return Ok(Arc::new(inner));
    };
    let config = foyer_config(cache, cache.disk_path.clone());
    Ok(Arc::new(FoyerBackend::new(Arc::new(inner), config).await?))
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
        cache: Option<&CacheSpec>,
    ) -> Result<Arc<dyn StorageBackend>> {
        match engine {
            HotEngine::RocksDb { path } => {
                let config = RocksDbConfig::new(path);
                let backend = tokio::task::spawn_blocking(move || RocksDbBackend::open(config))
                    .await
                    .map_err(|e| Error::engine("rocksdb", "opening", e))??;
                cached(backend, cache).await
            }
            HotEngine::ObjectStore { url } => {
                let config = ObjectStoreConfig::new(url.clone()).with_s3(s3.clone());
                cached(ObjectStoreBackend::open(config).await?, cache).await
            }
            HotEngine::Memory => cached(MemoryBackend::new(), cache).await,
        }
    }

    async fn cold_store(
        &self,
        store: Arc<dyn ObjectStore>,
        cache: Option<&CacheSpec>,
    ) -> Result<Arc<dyn ObjectStore>> {
        let Some(cache) = cache else {
            return Ok(store);
        };
        let config = foyer_config(cache, format!("{}-ranges", cache.disk_path));
        Ok(Arc::new(RangeCachedStore::new(store, config).await?))
    }
}

/// Opens a data directory with every engine available and background work on.
pub async fn open(data_dir: impl AsRef<Path>) -> Result<Store> {
    Store::open(StoreConfig::new(data_dir.as_ref(), Arc::new(Engines))).await
}
