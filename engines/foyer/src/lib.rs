//! `FoyerBackend<B>`: a foyer hybrid (memory + disk) read cache in front of a durable engine,
//! and `RangeCachedStore`, a cache of immutable object byte ranges for cold Parquet reads.
//!
//! foyer is a cache, not a store: it may evict anything, and its disk tier drops writes under
//! load. So the wrapped engine stays the source of truth and the cache only answers point reads:
//!
//! - `get` serves from the cache, filling a miss from the inner engine (absent keys are cached
//!   as negative entries);
//! - writes go to the inner engine first, then replace the cached entry (insert the new value,
//!   and tombstone the disk copy when the disk tier holds or queues one); a bulk batch (more
//!   than `BULK_OPS` ops) only takes its keys out of memory, so a load keeps the cache, and
//!   into a partition the cache holds nothing of (nothing read or written through it in its
//!   epoch) it adds nothing to the inner write;
//! - no lock is held across a call to the inner engine. Keys hash to stripes, each with a
//!   generation that every write bumps before and after its inner write (two short critical
//!   sections; a bulk batch, which caches nothing, only after). A fill inserts what it read
//!   only if its stripe's generation did not move while it read, so a fill that read an old
//!   value never lands after the write that replaced it; a write caches its value only if no
//!   other write of its stripe overlapped it, otherwise it removes the key from memory and the
//!   next read fills it;
//! - only this type inserts into the memory tier, always under the key's stripe lock, so a
//!   memory hit is current. The disk tier is not trusted that way: foyer writes evicted entries
//!   asynchronously, can write an entry evicted just before a newer write after that write's
//!   tombstone, and drops writes under load, so an older copy can outlive a newer value. Every
//!   cached value carries a stamp (the process and the stripe generation at which it was
//!   current); a disk copy is served only while its stripe's generation still equals its stamp,
//!   i.e. no write of the stripe began or ended since. Otherwise it is a miss and the inner engine
//!   answers;
//! - scans always go to the inner engine: the cache holds single keys and cannot tell whether
//!   it holds every key of a range;
//! - dropping a partition, or deleting a range in it, moves it to a new epoch once the inner
//!   engine applied the change, which makes every old cache key unreachable;
//! - the disk tier reopens warm only after a clean close, when the inner engine's state token
//!   is unchanged, and only for partitions the last process did not write (their entries were
//!   all filled from that unchanged state); otherwise it starts cold (see `warm`). A copy
//!   stamped by an earlier process is served while this process has not written its partition.

mod config;
mod entry;
mod epochs;
mod error;
mod owned;
mod range_cache;
mod stripes;
mod warm;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use foyer::{HybridCacheProperties, Load, Location};
use kalamstore_storage::backend::{
    BackendStats, Capabilities, Partition, ScanChunk, ScanRequest, StorageBackend, WriteBatch,
    WriteOp,
};
use kalamstore_storage::{CacheCounters, Error, Result};

pub use config::FoyerConfig;
use entry::{CacheKey, CacheKeyRef, CacheValue, Stamp};
use epochs::Epochs;
use error::ENGINE;
use owned::OwnedCache;
pub use range_cache::RangeCachedStore;
use stripes::Stripes;

/// A batch of more ops than this is a bulk write: it only takes its keys out of memory.
const BULK_OPS: usize = 64;

/// A read cache in front of a durable [`StorageBackend`].
pub struct FoyerBackend<B: ?Sized> {
    inner: Arc<B>,
    cache: OwnedCache<CacheKey, CacheValue>,
    /// Orders fills against writes (see `stripes`).
    stripes: Stripes,
    /// Each partition's epoch, part of every cache key (see `epochs`).
    epochs: Epochs,
    /// This process's (this open's) stamp incarnation, random.
    incarnation: u64,
    counters: Arc<CacheCounters>,
    closed: AtomicBool,
}

impl<B: ?Sized> std::fmt::Debug for FoyerBackend<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoyerBackend").finish_non_exhaustive()
    }
}

fn weigh(key: &CacheKey, value: &CacheValue) -> usize {
    key.key.len() + value.len() + 64
}

impl<B: StorageBackend + ?Sized> FoyerBackend<B> {
    /// Wraps `inner` with a cache configured by `config`, counting into fresh counters.
    pub async fn new(inner: Arc<B>, config: FoyerConfig) -> Result<Self> {
        Self::with_counters(inner, config, Arc::default()).await
    }

    /// Wraps `inner` with a cache configured by `config`, counting hits and misses in
    /// `counters`.
    ///
    /// With a disk tier, the cache reopens warm when the last close was clean and the inner
    /// engine's [`StorageBackend::state_token`] is unchanged since; only partitions that the
    /// last process did not write keep their entries.
    pub async fn with_counters(
        inner: Arc<B>,
        config: FoyerConfig,
        counters: Arc<CacheCounters>,
    ) -> Result<Self> {
        let token = match config.disk_dir {
            Some(_) => inner.state_token().await?,
            None => None,
        };
        let (cache, warm) = OwnedCache::build(&config, "kalamstore-kv", weigh, token).await?;
        counters.set_warm_start(warm.is_some());
        Ok(Self {
            inner,
            cache,
            stripes: Stripes::new(),
            epochs: Epochs::open(warm.as_deref()),
            // A fresh `RandomState` carries fresh random keys: two opens differ but by chance.
            incarnation: std::hash::RandomState::new().hash_one(std::process::id()),
            counters,
            closed: AtomicBool::new(false),
        })
    }

    /// The wrapped engine.
    pub fn inner(&self) -> &Arc<B> {
        &self.inner
    }

    /// The cache's hit and miss counters.
    pub fn counters(&self) -> &Arc<CacheCounters> {
        &self.counters
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

    fn cache_key(&self, partition: &Partition, key: &[u8], write: bool) -> CacheKey {
        CacheKey {
            epoch: self.epochs.of(partition, write),
            key: Bytes::copy_from_slice(key),
        }
    }

    /// A write's end, after the inner engine applied it (or failed, `applied` false): caches
    /// the written values of the stripe's keys when the write applied and no other write of
    /// the stripe began or ended since `began`; otherwise removes them from memory (nothing is
    /// known: the next read fills them).
    fn end_write(
        &self,
        stripe: usize,
        began: u64,
        applied: bool,
        written: impl IntoIterator<Item = (CacheKey, Option<Bytes>)>,
    ) {
        self.stripes.end_write(stripe, began, applied, |known| {
            let (memory, disk) = (self.cache.cache.memory(), self.cache.cache.storage());
            for (key, value) in written {
                let Some(generation) = known else {
                    memory.remove(&key);
                    continue;
                };
                // Older disk copies can no longer be served (their stamps are older than the
                // generation now); a tombstone just spares the disk read of one.
                if disk.may_contains(&key) {
                    disk.delete(&key);
                }
                let stamp = Stamp {
                    incarnation: self.incarnation,
                    generation,
                };
                self.cache.cache.insert(key, CacheValue { stamp, value });
            }
        });
    }

    /// A bulk write's end for the keys of one stripe, once the inner engine applied it (or
    /// failed): takes them out of memory, so a read fills them.
    fn end_bulk_write(&self, key: CacheKeyRef<'_>) {
        self.stripes.end_bulk_write(self.stripes.of(&key), || {
            self.cache.cache.memory().remove(&key);
        });
    }

    /// Moves each of `partitions` to a fresh epoch, once the inner engine applied (or may
    /// have applied) their range deletes: a fill that read the old rows inserts them under the
    /// old epoch, which nobody reads again.
    fn forget_all(&self, partitions: &[Partition]) {
        for partition in partitions {
            self.epochs.forget(partition);
        }
    }

    /// A fill's end: caches what the inner engine returned unless a write of the stripe began
    /// or ended since the fill began (`began` is the generation then).
    fn end_fill(&self, stripe: usize, began: u64, key: CacheKey, value: Option<Bytes>) {
        self.stripes.end_fill(stripe, began, || {
            let stamp = Stamp {
                incarnation: self.incarnation,
                generation: began,
            };
            self.cache.cache.insert(key, CacheValue { stamp, value });
        });
    }

    /// The disk tier's copy of `key` if it is still current, which then goes back into memory;
    /// a cache failure (e.g. a disk read error) is only a miss, since the inner engine still
    /// has the data.
    async fn disk_copy(
        &self,
        partition: &Partition,
        key: &CacheKey,
        stripe: usize,
    ) -> Option<Option<Bytes>> {
        self.cache.disk_dir.as_ref()?;
        let copy = match self.cache.cache.storage().load(key).await.ok()? {
            Load::Entry { value, .. } => value,
            Load::Piece { piece, .. } => piece.value().clone(),
            Load::Throttled | Load::Miss => return None,
        };
        self.stripes.with_generation(stripe, |generation| {
            let current = if copy.stamp.incarnation == self.incarnation {
                copy.stamp.generation == generation
            } else {
                // Cached by an earlier process: the partition's epoch was handed over by a
                // clean close that had not written it, so the copy is current until this
                // process writes the partition (a write marks it before it begins).
                self.epochs.is_unwritten(partition, key.epoch)
            };
            if !current {
                return None;
            }
            // Memory only: the disk tier holds this copy already. Under the stripe lock, so
            // a write of the key replaces it.
            let memory_only = HybridCacheProperties::default().with_location(Location::InMem);
            let value = copy.value.clone();
            self.cache
                .cache
                .insert_with_properties(key.clone(), copy, memory_only);
            Some(value)
        })
    }

    /// The marker for the next open: the inner engine's state now and the epochs of the
    /// partitions this process did not write. `None` when the engine cannot tell its state.
    async fn warm_marker(&self) -> Result<Option<warm::Marker>> {
        if self.cache.disk_dir.is_none() {
            return Ok(None);
        }
        let Some(token) = self.inner.state_token().await? else {
            return Ok(None);
        };
        Ok(Some(warm::Marker {
            token,
            payload: self.epochs.handover(),
        }))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<B: StorageBackend + ?Sized> StorageBackend for FoyerBackend<B> {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn capabilities(&self) -> Capabilities {
        // The cache never holds the only copy, so the wrapped engine's guarantees carry over.
        // A range delete moves the partition to a new epoch (see `batch`).
        self.inner.capabilities()
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        self.check_open()?;
        self.inner.create_partition(partition).await
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        self.check_open()?;
        let result = self.inner.drop_partition(partition).await;
        self.epochs.forget(partition);
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
        let ck = self.cache_key(partition, key, false);
        if let Some(entry) = self.cache.cache.memory().get(&ck) {
            let value = entry.value().value.clone();
            self.counters.hit(value.as_ref().map_or(0, Bytes::len));
            return Ok(value);
        }
        let stripe = self.stripes.of(&ck);
        let began = self.stripes.generation(stripe);
        if let Some(value) = self.disk_copy(partition, &ck, stripe).await {
            self.counters.hit(value.as_ref().map_or(0, Bytes::len));
            return Ok(value);
        }
        let value = self.inner.get(partition, key).await?;
        self.counters.miss(value.as_ref().map_or(0, Bytes::len));
        self.end_fill(stripe, began, ck, value.clone());
        Ok(value)
    }

    async fn get_many(&self, partition: &Partition, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        self.check_open()?;
        // Memory and disk first; the misses go to the inner engine in one batch, each filled
        // as `get` fills it (the stripe's generation taken before the inner read).
        let mut out = Vec::with_capacity(keys.len());
        let mut misses: Vec<(usize, CacheKey, usize, u64)> = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            let ck = self.cache_key(partition, key, false);
            if let Some(entry) = self.cache.cache.memory().get(&ck) {
                let value = entry.value().value.clone();
                self.counters.hit(value.as_ref().map_or(0, Bytes::len));
                out.push(value);
                continue;
            }
            let stripe = self.stripes.of(&ck);
            let began = self.stripes.generation(stripe);
            if let Some(value) = self.disk_copy(partition, &ck, stripe).await {
                self.counters.hit(value.as_ref().map_or(0, Bytes::len));
                out.push(value);
                continue;
            }
            out.push(None);
            misses.push((at, ck, stripe, began));
        }
        if misses.is_empty() {
            return Ok(out);
        }
        let missed: Vec<&[u8]> = misses.iter().map(|(at, ..)| keys[*at]).collect();
        let values = self.inner.get_many(partition, &missed).await?;
        if values.len() != missed.len() {
            return Err(Error::engine(
                ENGINE,
                "a batched get",
                format!(
                    "the inner engine answered {} of {} keys",
                    values.len(),
                    missed.len()
                ),
            ));
        }
        for ((at, ck, stripe, began), value) in misses.into_iter().zip(values) {
            self.counters.miss(value.as_ref().map_or(0, Bytes::len));
            self.end_fill(stripe, began, ck, value.clone());
            out[at] = value;
        }
        Ok(out)
    }

    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        self.check_open()?;
        let ck = self.cache_key(partition, &key, true);
        let stripe = self.stripes.of(&ck);
        let began = self.stripes.begin_write(stripe);
        let result = self.inner.put(partition, key, value.clone()).await;
        // Ended on failure too (the write may or may not have applied).
        self.end_write(stripe, began, result.is_ok(), [(ck, Some(value))]);
        result
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.check_open()?;
        let ck = self.cache_key(partition, key, true);
        let stripe = self.stripes.of(&ck);
        let began = self.stripes.begin_write(stripe);
        let result = self.inner.delete(partition, key).await;
        self.end_write(stripe, began, result.is_ok(), [(ck, None)]);
        result
    }

    // Buffered here: the commit is this cache's `batch`, which keeps the cached keys and
    // epochs coherent with the inner engine.
    async fn staged_batch(&self) -> Result<Box<dyn kalamstore_storage::StagedBatch + '_>> {
        Ok(Box::new(kalamstore_storage::BufferedBatch::new(self)))
    }
    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        self.check_open()?;
        // Partitions with a range delete move to a new epoch once the inner batch is applied;
        // their keys are not cached here (the next read fills them under the new epoch).
        let partitions = batch.partitions();
        let mut has_range = vec![false; partitions.len()];
        for (partition, op) in batch.indexed_ops() {
            has_range[partition] |= matches!(op, WriteOp::DeleteRange { .. });
        }
        let ranged: Vec<Partition> = partitions
            .iter()
            .zip(&has_range)
            .filter(|(_, ranged)| **ranged)
            .map(|(p, _)| p.clone())
            .collect();
        let bulk = batch.len() > BULK_OPS;
        // Each partition's epoch is looked up once (which also marks the partition written
        // before the write begins).
        let epochs: Vec<Option<u64>> = partitions
            .iter()
            .zip(&has_range)
            .map(|(p, ranged)| {
                (!ranged).then(|| match bulk {
                    true => self.epochs.of_bulk(p),
                    false => self.epochs.of(p, true),
                })
            })
            .collect();
        if bulk {
            // The keys are copied into one buffer (the batch goes to the inner engine) and
            // taken out of memory once it applied, each under its stripe's lock; none of a
            // partition the cache cannot hold anything of (a load into a partition nobody
            // read through the cache costs no per-key work).
            let partitions = partitions.to_vec();
            let mut bytes = Vec::with_capacity(batch.len() * 32);
            let mut written: Vec<(usize, std::ops::Range<usize>)> = Vec::with_capacity(batch.len());
            for (partition, op) in batch.indexed_ops() {
                if epochs[partition].is_some() {
                    let at = bytes.len();
                    bytes.extend_from_slice(op.key());
                    written.push((partition, at..bytes.len()));
                }
            }
            let result = self.inner.batch(batch).await;
            self.forget_all(&ranged);
            let held: Vec<Option<u64>> = partitions
                .iter()
                .zip(&epochs)
                .map(|(p, epoch)| epoch.filter(|e| self.epochs.may_hold(p, *e)))
                .collect();
            for (partition, span) in written {
                if let Some(epoch) = held[partition] {
                    self.end_bulk_write(CacheKeyRef {
                        epoch,
                        key: &bytes[span],
                    });
                }
            }
            return result;
        }
        let mut keys: Vec<(CacheKey, Option<Bytes>)> = Vec::with_capacity(batch.len());
        for (partition, op) in batch.indexed_ops() {
            let Some(epoch) = epochs[partition] else {
                continue;
            };
            let ck = CacheKey {
                epoch,
                key: Bytes::copy_from_slice(op.key()),
            };
            let value = match op {
                WriteOp::Put { value, .. } => Some(Bytes::copy_from_slice(value)),
                _ => None,
            };
            keys.push((ck, value));
        }
        // Each stripe's keys begin and end one write together. Sorted by stripe; the sort is
        // stable, so a later op on the same key is cached after the earlier one and wins, as
        // in the inner engine.
        let mut written: Vec<(usize, CacheKey, Option<Bytes>)> = keys
            .into_iter()
            .map(|(ck, value)| (self.stripes.of(&ck), ck, value))
            .collect();
        written.sort_by_key(|(stripe, ..)| *stripe);
        let mut runs: Vec<(usize, u64)> = Vec::new();
        for (stripe, ..) in &written {
            if runs.last().is_none_or(|(s, _)| s != stripe) {
                runs.push((*stripe, self.stripes.begin_write(*stripe)));
            }
        }
        let result = self.inner.batch(batch).await;
        self.forget_all(&ranged);
        let applied = result.is_ok();
        let mut written = written.into_iter().peekable();
        for (stripe, began) in runs {
            let run = std::iter::from_fn(|| {
                written
                    .next_if(|(s, ..)| *s == stripe)
                    .map(|(_, ck, value)| (ck, value))
            });
            self.end_write(stripe, began, applied, run);
        }
        result
    }

    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk> {
        self.check_open()?;
        self.inner.scan(partition, request).await
    }

    async fn scan_with(
        &self,
        partition: &Partition,
        request: &ScanRequest,
        visit: &mut (dyn for<'e> FnMut(&'e [u8], &'e [u8]) -> Result<()> + Send),
    ) -> Result<Option<ScanRequest>> {
        self.check_open()?;
        self.inner.scan_with(partition, request, visit).await
    }

    async fn reclaim(&self, partition: &Partition) -> Result<()> {
        self.check_open()?;
        self.inner.reclaim(partition).await
    }

    async fn flush(&self) -> Result<()> {
        self.check_open()?;
        self.inner.flush().await
    }

    async fn state_token(&self) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        self.inner.state_token().await
    }

    async fn stats(&self) -> Result<BackendStats> {
        self.check_open()?;
        let mut stats = self.inner.stats().await?;
        let memory = self.cache.cache.memory();
        let counters = self.counters.snapshot();
        stats.details.extend([
            ("inner_engine".into(), stats.engine.to_owned()),
            ("cache_memory_bytes".into(), memory.usage().to_string()),
            ("cache_hits".into(), counters.hits.to_string()),
            ("cache_misses".into(), counters.misses.to_string()),
            ("cache_warm_start".into(), counters.warm_start.to_string()),
        ]);
        stats.engine = ENGINE;
        Ok(stats)
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // The memory tier goes to disk first; the marker (the inner engine's state and the
        // untouched partitions' epochs) is written only once that succeeded.
        let marker = self.warm_marker().await?;
        self.cache.close(marker).await?;
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests;
