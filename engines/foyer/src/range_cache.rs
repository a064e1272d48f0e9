//! `RangeCachedStore`: an `ObjectStore` wrapper that caches byte ranges of immutable objects
//! (Parquet files) in a foyer hybrid cache, for cold reads from slow stores.
//!
//! Only `get_ranges` (what Parquet readers use for column chunks and pages) is cached, keyed by
//! path and range. Callers must
//! only read immutable objects through it: kalamstore writes every Parquet file under a fresh
//! name and never rewrites it. Writes, deletes and renames through the wrapper drop nothing from
//! the cache, since a path is never reused for different bytes. For the same reason the disk
//! tier reopens warm after a clean close over the same source (named by its URL); a cache over
//! a source that does not outlive the process (`memory://`) always starts cold.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use serde::{Deserialize, Serialize};

use kalamstore_storage::{CacheCounters, CloseCache};

use crate::config::FoyerConfig;
use crate::owned::OwnedCache;
use crate::warm::Marker;

#[derive(Debug, Clone, Hash, PartialEq, Eq, Serialize, Deserialize)]
struct RangeKey {
    path: String,
    start: u64,
    end: u64,
}

fn weigh(key: &RangeKey, value: &Bytes) -> usize {
    key.path.len() + value.len() + 32
}

/// An `ObjectStore` that serves repeated range reads of immutable objects from a foyer cache.
pub struct RangeCachedStore {
    inner: Arc<dyn ObjectStore>,
    cache: OwnedCache<RangeKey, Bytes>,
    /// The source's identity, kept in the warm marker; `None` keeps the disk tier cold.
    source: Option<Vec<u8>>,
    counters: Arc<CacheCounters>,
}

impl RangeCachedStore {
    /// Wraps `inner` with a range cache configured by `config`. `source` names the store
    /// (its URL) when its objects outlive the process: the disk tier then reopens warm after a
    /// clean close over the same source. Hits and misses are counted in `counters`.
    pub async fn new(
        inner: Arc<dyn ObjectStore>,
        config: FoyerConfig,
        source: Option<&str>,
        counters: Arc<CacheCounters>,
    ) -> kalamstore_storage::Result<Self> {
        let source = source.map(|s| s.as_bytes().to_vec());
        let (cache, warm) =
            OwnedCache::build(&config, "kalamstore-ranges", weigh, source.clone()).await?;
        counters.set_warm_start(warm.is_some());
        Ok(Self {
            inner,
            cache,
            source,
            counters,
        })
    }

    /// The cache's hit and miss counters.
    pub fn counters(&self) -> &Arc<CacheCounters> {
        &self.counters
    }

    /// Writes the memory tier to disk, leaves the warm marker and stops the cache.
    pub async fn close(&self) -> kalamstore_storage::Result<()> {
        let marker = self.source.clone().map(|token| Marker {
            token,
            payload: Vec::new(),
        });
        self.cache.close(marker).await
    }
}

#[async_trait]
impl CloseCache for RangeCachedStore {
    async fn close_cache(&self) -> kalamstore_storage::Result<()> {
        self.close().await
    }
}

impl fmt::Debug for RangeCachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RangeCachedStore({})", self.inner)
    }
}

impl fmt::Display for RangeCachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RangeCachedStore({})", self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for RangeCachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let keys: Vec<RangeKey> = ranges
            .iter()
            .map(|r| RangeKey {
                path: location.to_string(),
                start: r.start,
                end: r.end,
            })
            .collect();
        let mut out: Vec<Option<Bytes>> = Vec::with_capacity(ranges.len());
        for key in &keys {
            // A cache error is only a miss: the inner store still has the bytes.
            let hit = self.cache.cache.get(key).await.ok().flatten();
            let hit = hit.map(|e| e.value().clone());
            if let Some(bytes) = &hit {
                self.counters.hit(bytes.len());
            }
            out.push(hit);
        }
        let missing: Vec<usize> = (0..ranges.len()).filter(|i| out[*i].is_none()).collect();
        if !missing.is_empty() {
            let wanted: Vec<Range<u64>> = missing.iter().map(|i| ranges[*i].clone()).collect();
            let fetched = self.inner.get_ranges(location, &wanted).await?;
            for (i, bytes) in missing.into_iter().zip(fetched) {
                self.counters.miss(bytes.len());
                self.cache.cache.insert(keys[i].clone(), bytes.clone());
                out[i] = Some(bytes);
            }
        }
        // Every slot was filled from the cache or from the inner store just above.
        Ok(out.into_iter().flatten().collect())
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
