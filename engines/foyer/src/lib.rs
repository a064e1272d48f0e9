//! `FoyerBackend<B>`: a foyer hybrid (memory + disk) read cache in front of a durable engine,
//! and `RangeCachedStore`, a cache of immutable object byte ranges for cold Parquet reads.
//!
//! foyer is a cache, not a store: it may evict anything, and its disk tier drops writes under
//! load. So the wrapped engine stays the source of truth and the cache only answers point reads:
//!
//! - `get` serves from the cache, filling a miss from the inner engine (absent keys are cached
//!   as negative entries);
//! - writes go to the inner engine first, then replace the cached entry (remove, which also
//!   tombstones the disk copy, then insert the new value);
//! - a fill and a write of the same key hold the same stripe lock, so a fill that read an old
//!   value can never land after the write that replaced it;
//! - scans always go to the inner engine;
//! - dropping a partition moves it to a new epoch, which makes every old cache key unreachable;
//! - the cache starts cold on every open (`RecoverMode::None`): entries from an earlier process
//!   could be stale.

mod config;
mod error;
mod range_cache;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, LruConfig, RecoverMode, Spawner, StorageKey, StorageValue,
};
use kalamstore_storage::backend::{
    BackendStats, Capabilities, Partition, ScanChunk, ScanRequest, StorageBackend, WriteBatch,
};
use kalamstore_storage::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};

pub use config::FoyerConfig;
use error::{ENGINE, FoyerError};
pub use range_cache::RangeCachedStore;

/// Number of stripe locks guarding fills and writes.
const STRIPES: usize = 1024;

#[derive(Debug, Clone, Hash, PartialEq, Eq, Serialize, Deserialize)]
struct CacheKey {
    epoch: u64,
    key: Bytes,
}

/// `None` caches "this key is absent".
type CacheValue = Option<Bytes>;

/// A foyer hybrid cache plus the runtime its disk tier runs on.
pub(crate) struct OwnedCache<K: StorageKey + Clone, V: StorageValue> {
    pub(crate) cache: HybridCache<K, V>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl<K: StorageKey + Clone, V: StorageValue> OwnedCache<K, V> {
    /// Builds a cache named `name` with `weigh` as its entry weigher, on its own runtime.
    pub(crate) async fn build(
        config: &FoyerConfig,
        name: &'static str,
        weigh: fn(&K, &V) -> usize,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("kalamstore-foyer")
            .enable_all()
            .build()
            .map_err(|e| FoyerError::Runtime(e.to_string()).during("starting the cache runtime"))?;
        let handle = runtime.handle().clone();
        let config = config.clone();
        let build_handle = handle.clone();
        let cache = handle
            .spawn(async move {
                let builder = HybridCacheBuilder::new()
                    .with_name(name)
                    .with_policy(HybridCachePolicy::WriteOnEviction)
                    .memory(config.memory_bytes)
                    .with_eviction_config(LruConfig::default())
                    .with_weighter(weigh)
                    .storage()
                    .with_spawner(Spawner::from(build_handle))
                    .with_recover_mode(RecoverMode::None);
                let builder = match &config.disk_dir {
                    Some(dir) => {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            FoyerError::Runtime(format!("creating {}: {e}", dir.display()))
                        })?;
                        let device = FsDeviceBuilder::new(dir)
                            .with_capacity(config.disk_bytes)
                            .build()?;
                        builder.with_engine_config(
                            BlockEngineConfig::new(device).with_block_size(config.block_bytes),
                        )
                    }
                    None => builder,
                };
                Ok::<_, FoyerError>(builder.build().await?)
            })
            .await
            .map_err(Error::task(ENGINE, "building the cache"))?
            .map_err(|e| e.during("building the cache"))?;
        Ok(Self {
            cache,
            runtime: Some(runtime),
            handle,
        })
    }

    pub(crate) async fn close(&self) -> Result<()> {
        let cache = self.cache.clone();
        self.handle
            .spawn(async move { cache.close().await })
            .await
            .map_err(Error::task(ENGINE, "closing the cache"))?
            .map_err(|e| FoyerError::from(e).during("closing the cache"))
    }
}

impl<K: StorageKey + Clone, V: StorageValue> Drop for OwnedCache<K, V> {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A read cache in front of a durable [`StorageBackend`].
pub struct FoyerBackend<B: ?Sized> {
    inner: Arc<B>,
    cache: OwnedCache<CacheKey, CacheValue>,
    stripes: Box<[Mutex<()>]>,
    stripe_hasher: std::hash::RandomState,
    /// Current epoch of each partition seen so far.
    epochs: parking_lot::RwLock<HashMap<Partition, u64>>,
    next_epoch: AtomicU64,
    closed: AtomicBool,
}

impl<B: ?Sized> std::fmt::Debug for FoyerBackend<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoyerBackend").finish_non_exhaustive()
    }
}

fn weigh(key: &CacheKey, value: &CacheValue) -> usize {
    key.key.len() + value.as_ref().map_or(0, Bytes::len) + 48
}

impl<B: StorageBackend + ?Sized> FoyerBackend<B> {
    /// Wraps `inner` with a cache configured by `config`.
    pub async fn new(inner: Arc<B>, config: FoyerConfig) -> Result<Self> {
        let cache = OwnedCache::build(&config, "kalamstore-kv", weigh).await?;
        Ok(Self {
            inner,
            cache,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stripe_hasher: std::hash::RandomState::new(),
            epochs: parking_lot::RwLock::new(HashMap::new()),
            next_epoch: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        })
    }

    /// The wrapped engine.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                engine: ENGINE,
                reason: "close() was called",
            });
        }
        Ok(())
    }

    fn epoch(&self, partition: &Partition) -> u64 {
        if let Some(epoch) = self.epochs.read().get(partition) {
            return *epoch;
        }
        *self
            .epochs
            .write()
            .entry(partition.clone())
            .or_insert_with(|| self.next_epoch.fetch_add(1, Ordering::Relaxed))
    }

    fn cache_key(&self, partition: &Partition, key: &[u8]) -> CacheKey {
        CacheKey {
            epoch: self.epoch(partition),
            key: Bytes::copy_from_slice(key),
        }
    }

    fn stripe_of(&self, key: &CacheKey) -> usize {
        (self.stripe_hasher.hash_one(key) as usize) % STRIPES
    }

    /// Locks the stripes of `keys` in ascending order (no deadlock between batches).
    async fn lock_stripes(&self, keys: &[CacheKey]) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = keys.iter().map(|k| self.stripe_of(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].lock().await);
        }
        guards
    }

    /// Replaces the cached entry of `key` after the inner engine changed it.
    fn set(&self, key: CacheKey, value: CacheValue) {
        // `remove` tombstones any older disk copy; the insert shadows an in-flight one.
        self.cache.cache.remove(&key);
        self.cache.cache.insert(key, value);
    }

    /// The cached entry of `key`; a cache failure (e.g. a disk read error) is only a miss,
    /// since the inner engine still has the data.
    async fn cached(&self, key: &CacheKey) -> Option<CacheValue> {
        let entry = self.cache.cache.get(key).await.ok().flatten()?;
        Some(entry.value().clone())
    }
}

#[async_trait]
impl<B: StorageBackend + ?Sized> StorageBackend for FoyerBackend<B> {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn capabilities(&self) -> Capabilities {
        // The cache never holds the only copy, so the wrapped engine's guarantees carry over;
        // range deletes are refused, as cached keys cannot be dropped by range.
        Capabilities {
            delete_range: false,
            ..self.inner.capabilities()
        }
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        self.check_open()?;
        self.inner.create_partition(partition).await
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        self.check_open()?;
        let result = self.inner.drop_partition(partition).await;
        // A fresh epoch on the next access makes every cached key of the old one unreachable.
        self.epochs.write().remove(partition);
        result
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.check_open()?;
        self.inner.list_partitions().await
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        self.check_open()?;
        self.inner.partition_exists(partition).await
    }

    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Bytes>> {
        self.check_open()?;
        let ck = self.cache_key(partition, key);
        if let Some(value) = self.cached(&ck).await {
            return Ok(value);
        }
        let _stripe = self.stripes[self.stripe_of(&ck)].lock().await;
        if let Some(value) = self.cached(&ck).await {
            return Ok(value);
        }
        let value = self.inner.get(partition, key).await?;
        self.cache.cache.insert(ck, value.clone());
        Ok(value)
    }

    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        self.check_open()?;
        let ck = self.cache_key(partition, &key);
        let _stripe = self.stripes[self.stripe_of(&ck)].lock().await;
        self.inner.put(partition, key, value.clone()).await?;
        self.set(ck, Some(value));
        Ok(())
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.check_open()?;
        let ck = self.cache_key(partition, key);
        let _stripe = self.stripes[self.stripe_of(&ck)].lock().await;
        self.inner.delete(partition, key).await?;
        self.set(ck, None);
        Ok(())
    }

    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        self.check_open()?;
        if batch
            .ops
            .iter()
            .any(|op| matches!(op, kalamstore_storage::WriteOp::DeleteRange { .. }))
        {
            return Err(Error::Unsupported {
                engine: ENGINE,
                op: "range deletes in a batch",
            });
        }
        let updates: Vec<(CacheKey, CacheValue)> = batch
            .ops
            .iter()
            .map(|op| {
                let value = match op {
                    kalamstore_storage::WriteOp::Put { value, .. } => Some(value.clone()),
                    kalamstore_storage::WriteOp::Delete { .. }
                    | kalamstore_storage::WriteOp::DeleteRange { .. } => None,
                };
                (self.cache_key(op.partition(), op.key()), value)
            })
            .collect();
        let keys: Vec<CacheKey> = updates.iter().map(|(k, _)| k.clone()).collect();
        let _stripes = self.lock_stripes(&keys).await;
        self.inner.batch(batch).await?;
        // Later ops on the same key win, as in the inner engine.
        for (key, value) in updates {
            self.set(key, value);
        }
        Ok(())
    }

    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk> {
        self.check_open()?;
        self.inner.scan(partition, request).await
    }

    async fn reclaim(&self, partition: &Partition) -> Result<()> {
        self.check_open()?;
        self.inner.reclaim(partition).await
    }

    async fn flush(&self) -> Result<()> {
        self.check_open()?;
        self.inner.flush().await
    }

    async fn stats(&self) -> Result<BackendStats> {
        self.check_open()?;
        let mut stats = self.inner.stats().await?;
        let memory = self.cache.cache.memory();
        stats
            .details
            .push(("inner_engine".into(), stats.engine.to_owned()));
        stats
            .details
            .push(("cache_memory_bytes".into(), memory.usage().to_string()));
        stats.engine = ENGINE;
        Ok(stats)
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.cache.close().await?;
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests;
