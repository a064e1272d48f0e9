//! A foyer hybrid cache that owns the runtime its disk tier runs on, and opens warm or cold
//! from the marker a clean close left (see `warm`).

use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, LruConfig, RecoverMode, Spawner, StorageKey, StorageValue,
};
use kalamstore_storage::{Error, Result};

use crate::config::FoyerConfig;
use crate::error::{ENGINE, FoyerError};
use crate::warm;

/// A foyer hybrid cache plus the runtime its disk tier runs on.
pub(crate) struct OwnedCache<K: StorageKey + Clone, V: StorageValue> {
    pub(crate) cache: HybridCache<K, V>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// The disk tier's directory, where the warm marker lives.
    pub(crate) disk_dir: Option<std::path::PathBuf>,
}

impl<K: StorageKey + Clone, V: StorageValue> OwnedCache<K, V> {
    /// Builds a cache named `name` with `weigh` as its entry weigher, on its own runtime.
    ///
    /// The disk tier reopens with its earlier entries only when a clean close left a marker
    /// whose token equals `token` (the source's state now); the marker's payload is returned
    /// then. Otherwise (no token, no marker, another token) it starts empty.
    pub(crate) async fn build(
        config: &FoyerConfig,
        name: &'static str,
        weigh: fn(&K, &V) -> usize,
        token: Option<Vec<u8>>,
    ) -> Result<(Self, Option<Vec<u8>>)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("kalamstore-foyer")
            .enable_all()
            .build()
            .map_err(|e| FoyerError::Runtime(e.to_string()).during("starting the cache runtime"))?;
        let handle = runtime.handle().clone();
        let mut warm = None;
        if let Some(dir) = &config.disk_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| FoyerError::Runtime(format!("creating {}: {e}", dir.display())))
                .map_err(|e| e.during("opening the disk tier"))?;
            let marker = warm::take(dir).map_err(|e| e.during("reading the warm marker"))?;
            warm = marker
                .filter(|m| token.as_ref() == Some(&m.token))
                .map(|m| m.payload);
        }
        let recover = if warm.is_some() {
            RecoverMode::Quiet
        } else {
            RecoverMode::None
        };
        let config = config.clone();
        let build_handle = handle.clone();
        let disk_dir = config.disk_dir.clone();
        let cache = handle
            .spawn(async move {
                let builder = HybridCacheBuilder::new()
                    .with_name(name)
                    .with_policy(HybridCachePolicy::WriteOnEviction)
                    .with_flush_on_close(true)
                    .memory(config.memory_bytes)
                    .with_eviction_config(LruConfig::default())
                    .with_weighter(weigh)
                    .storage()
                    .with_spawner(Spawner::from(build_handle))
                    .with_recover_mode(recover);
                let builder = match &config.disk_dir {
                    Some(dir) => {
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
        let owned = Self {
            cache,
            runtime: Some(runtime),
            handle,
            disk_dir,
        };
        Ok((owned, warm))
    }

    /// Stops the cache, writing its memory tier to disk; with a `marker`, leaves it for the
    /// next open to reopen warm.
    pub(crate) async fn close(&self, marker: Option<warm::Marker>) -> Result<()> {
        let cache = self.cache.clone();
        self.handle
            .spawn(async move { cache.close().await })
            .await
            .map_err(Error::task(ENGINE, "closing the cache"))?
            .map_err(|e| FoyerError::from(e).during("closing the cache"))?;
        if let (Some(dir), Some(marker)) = (&self.disk_dir, marker) {
            warm::put(dir, &marker).map_err(|e| e.during("writing the warm marker"))?;
        }
        Ok(())
    }
}

impl<K: StorageKey + Clone, V: StorageValue> Drop for OwnedCache<K, V> {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
