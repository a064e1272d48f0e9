//! What a storage's caches report and how the store reaches them: hit and miss counters shared
//! between an engine provider's caches and the store, and the hook a cold-tier cache is closed
//! through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;

use crate::catalog::CacheSpec;
use crate::error::Result;

/// Hit and miss counters of one cache, updated by the cache and read by `system.caches`.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    hit_bytes: AtomicU64,
    miss_bytes: AtomicU64,
    warm_start: AtomicBool,
}

impl CacheCounters {
    /// Counts a lookup the cache answered, with the bytes it returned.
    pub fn hit(&self, bytes: usize) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.hit_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a lookup the cache had to fill from its source, with the bytes it fetched.
    pub fn miss(&self, bytes: usize) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.miss_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Records whether the cache reopened with the entries of an earlier process.
    pub fn set_warm_start(&self, warm: bool) {
        self.warm_start.store(warm, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            hit_bytes: self.hit_bytes.load(Ordering::Relaxed),
            miss_bytes: self.miss_bytes.load(Ordering::Relaxed),
            warm_start: self.warm_start.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of [`CacheCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered by the cache.
    pub hits: u64,
    /// Lookups filled from the cache's source.
    pub misses: u64,
    /// Bytes the cache answered.
    pub hit_bytes: u64,
    /// Bytes fetched from the source on misses.
    pub miss_bytes: u64,
    /// The disk tier reopened with an earlier process's entries.
    pub warm_start: bool,
}

/// Which tier of a storage a cache fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheTier {
    /// The hot engine's rows (point reads).
    Rows,
    /// The cold store's Parquet byte ranges.
    Files,
    /// The Parquet files' footers, page indexes and `_key` bloom filters (every storage has
    /// one, in memory).
    Metadata,
}

impl std::fmt::Display for CacheTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rows => "rows",
            Self::Files => "files",
            Self::Metadata => "metadata",
        })
    }
}

/// What an engine provider needs to build one tier's cache: the storage's `CACHE` settings, the
/// counters to update, and the identity of the source it fronts (a cache reopened over a
/// different source must start cold).
#[derive(Debug, Clone)]
pub struct CacheRequest<'a> {
    /// The storage's `CACHE (...)` settings.
    pub spec: &'a CacheSpec,
    /// Where the cache counts its hits and misses.
    pub counters: Arc<CacheCounters>,
    /// The source: the hot engine's location or the cold store's URL.
    pub source: &'a str,
}

/// A cache the store closes when it closes (so its disk tier can reopen warm).
#[async_trait]
pub trait CloseCache: Send + Sync {
    /// Writes what the disk tier needs to reopen and stops the cache.
    async fn close_cache(&self) -> Result<()>;
}

/// A storage's cold store as the engine provider hands it to the table layer.
pub struct ColdTier {
    /// What Parquet files are read from and written to.
    pub store: Arc<dyn object_store::ObjectStore>,
    /// The cache in front of it, if any, to close with the store.
    pub cache: Option<Arc<dyn CloseCache>>,
}

impl std::fmt::Debug for ColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdTier")
            .field("store", &self.store.to_string())
            .field("cached", &self.cache.is_some())
            .finish()
    }
}

/// One row of `system.caches`: a cache of an opened storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageCacheStats {
    /// The storage.
    pub storage: crate::ids::StorageId,
    /// Which tier the cache fronts.
    pub tier: CacheTier,
    /// The storage's cache settings.
    pub spec: CacheSpec,
    /// The counters since the storage was opened in this process.
    pub stats: CacheStats,
    /// Bytes the cache holds now, where it can tell (the metadata cache).
    pub used_bytes: Option<u64>,
}
