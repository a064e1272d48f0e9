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
//!   than `BULK_OPS` ops) only takes its keys out of memory, so a load keeps the cache;
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
mod error;
mod range_cache;
mod warm;

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
use foyer::{HybridCacheProperties, Load, Location};
use kalamstore_storage::backend::{
    BackendStats, Capabilities, Partition, ScanChunk, ScanRequest, StorageBackend, WriteBatch,
    WriteOp,
};
use kalamstore_storage::{CacheCounters, Error, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use config::FoyerConfig;
use error::{ENGINE, FoyerError};
pub use range_cache::RangeCachedStore;

/// Number of stripes (generations) ordering fills against writes. A write makes the disk
/// copies of every key of its stripe miss once, so more stripes keep more of the disk tier
/// usable under writes (16 bytes each).
const STRIPES: usize = 1 << 14;

#[derive(Debug, Clone, Hash, PartialEq, Eq, Serialize, Deserialize)]
struct CacheKey {
    epoch: u64,
    key: Bytes,
}

/// A batch of more ops than this is a bulk write: it only takes its keys out of memory.
const BULK_OPS: usize = 64;

/// What the cache holds for a key: its value (`None`: the key is absent) and when that was
/// the inner engine's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheValue {
    stamp: Stamp,
    value: Option<Bytes>,
}

impl CacheValue {
    fn len(&self) -> usize {
        self.value.as_ref().map_or(0, Bytes::len)
    }
}

/// When a cached value was current: the process that cached it and its stripe's generation
/// then. The value stays current while that generation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    incarnation: u64,
    generation: u64,
}

/// A foyer hybrid cache plus the runtime its disk tier runs on.
pub(crate) struct OwnedCache<K: StorageKey + Clone, V: StorageValue> {
    pub(crate) cache: HybridCache<K, V>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// The disk tier's directory, where the warm marker lives.
    disk_dir: Option<std::path::PathBuf>,
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

/// The cache epoch of one partition, and whether this process changed the partition (then
/// the epoch is not handed to the next process: its entries may be stale after a crash or a
/// dropped disk write).
#[derive(Debug)]
struct PartitionEpoch {
    epoch: u64,
    written: AtomicBool,
}

/// A read cache in front of a durable [`StorageBackend`].
pub struct FoyerBackend<B: ?Sized> {
    inner: Arc<B>,
    cache: OwnedCache<CacheKey, CacheValue>,
    /// Generation of each stripe: bumped by every write before and after its inner write.
    stripes: Box<[Mutex<u64>]>,
    stripe_hasher: std::hash::RandomState,
    /// Current epoch of each partition seen so far.
    epochs: parking_lot::RwLock<HashMap<Partition, PartitionEpoch>>,
    next_epoch: AtomicU64,
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

/// The epochs a clean close hands to the next open: `next_epoch`, then each partition that
/// this process only read, as (name length u16, name, epoch u64), little-endian.
fn encode_epochs(next: u64, clean: &[(&Partition, u64)]) -> Vec<u8> {
    let mut out = next.to_le_bytes().to_vec();
    for (partition, epoch) in clean {
        let name = partition.as_str().as_bytes();
        // Partition names are at most `MAX_PARTITION_NAME_LEN` (200) bytes.
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&epoch.to_le_bytes());
    }
    out
}

fn decode_epochs(bytes: &[u8]) -> Option<(u64, HashMap<Partition, PartitionEpoch>)> {
    let (next, mut rest) = bytes.split_first_chunk::<8>()?;
    let mut epochs = HashMap::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let (name, tail) = tail.split_at_checked(usize::from(u16::from_le_bytes(*len)))?;
        let (epoch, tail) = tail.split_first_chunk::<8>()?;
        let partition = Partition::new(std::str::from_utf8(name).ok()?).ok()?;
        epochs.insert(
            partition,
            PartitionEpoch {
                epoch: u64::from_le_bytes(*epoch),
                written: AtomicBool::new(false),
            },
        );
        rest = tail;
    }
    Some((u64::from_le_bytes(*next), epochs))
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
        let (next_epoch, epochs) = warm
            .as_deref()
            .and_then(decode_epochs)
            .unwrap_or_else(|| (1, HashMap::new()));
        counters.set_warm_start(warm.is_some());
        Ok(Self {
            inner,
            cache,
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            stripe_hasher: std::hash::RandomState::new(),
            epochs: parking_lot::RwLock::new(epochs),
            next_epoch: AtomicU64::new(next_epoch),
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

    /// The partition's epoch; a write marks the partition as changed by this process first.
    fn epoch(&self, partition: &Partition, write: bool) -> u64 {
        if let Some(state) = self.epochs.read().get(partition) {
            if write && !state.written.load(Ordering::Relaxed) {
                state.written.store(true, Ordering::Relaxed);
            }
            return state.epoch;
        }
        self.epochs
            .write()
            .entry(partition.clone())
            .or_insert_with(|| PartitionEpoch {
                epoch: self.next_epoch.fetch_add(1, Ordering::Relaxed),
                written: AtomicBool::new(false),
            })
            .epoch_after(write)
    }

    /// Moves `partition` to a fresh epoch (on its next access), making every cached key of
    /// the old one unreachable.
    fn forget(&self, partition: &Partition) {
        self.epochs.write().remove(partition);
    }

    fn cache_key(&self, partition: &Partition, key: &[u8], write: bool) -> CacheKey {
        CacheKey {
            epoch: self.epoch(partition, write),
            key: Bytes::copy_from_slice(key),
        }
    }

    fn stripe_of(&self, key: &CacheKey) -> usize {
        (self.stripe_hasher.hash_one(key) as usize) % STRIPES
    }

    /// The stripe's generation now (a fill's start).
    fn generation(&self, stripe: usize) -> u64 {
        *self.stripes[stripe].lock()
    }

    /// A write's start: bumps the stripe's generation and returns it.
    fn begin_write(&self, stripe: usize) -> u64 {
        let mut generation = self.stripes[stripe].lock();
        *generation += 1;
        *generation
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
        let mut generation = self.stripes[stripe].lock();
        *generation += 1;
        let known = applied && *generation == began + 1;
        let stamp = Stamp {
            incarnation: self.incarnation,
            generation: *generation,
        };
        let (memory, disk) = (self.cache.cache.memory(), self.cache.cache.storage());
        for (key, value) in written {
            if !known {
                memory.remove(&key);
                continue;
            }
            // Older disk copies can no longer be served (their stamps are older than the
            // generation now); a tombstone just spares the disk read of one.
            if disk.may_contains(&key) {
                disk.delete(&key);
            }
            self.cache.cache.insert(key, CacheValue { stamp, value });
        }
    }

    /// A bulk write's end for the keys of one stripe, once the inner engine applied it (or
    /// failed): takes them out of memory, so a read fills them. Every older copy of a key is
    /// stamped with an older generation than the bump here, and a fill that read the old value
    /// either inserted it before this removal or finds the generation moved; so, unlike a
    /// write that caches its value, it needs no bump before the inner write.
    fn end_bulk_write<'k>(&self, stripe: usize, keys: impl IntoIterator<Item = &'k CacheKey>) {
        let mut generation = self.stripes[stripe].lock();
        *generation += 1;
        for key in keys {
            self.cache.cache.memory().remove(key);
        }
    }

    /// Moves each of `partitions` to a fresh epoch, once the inner engine applied (or may
    /// have applied) their range deletes: a fill that read the old rows inserts them under the
    /// old epoch, which nobody reads again.
    fn forget_all(&self, partitions: &[Partition]) {
        for partition in partitions {
            self.forget(partition);
        }
    }

    /// A fill's end: caches what the inner engine returned unless a write of the stripe began
    /// or ended since the fill began (`began` is the generation then).
    fn end_fill(&self, stripe: usize, began: u64, key: CacheKey, value: Option<Bytes>) {
        let generation = self.stripes[stripe].lock();
        if *generation == began {
            let stamp = Stamp {
                incarnation: self.incarnation,
                generation: began,
            };
            self.cache.cache.insert(key, CacheValue { stamp, value });
        }
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
        let generation = self.stripes[stripe].lock();
        let current = if copy.stamp.incarnation == self.incarnation {
            copy.stamp.generation == *generation
        } else {
            // Cached by an earlier process: the partition's epoch was handed over by a clean
            // close that had not written it, so the copy is current until this process
            // writes the partition (a write marks it before it begins).
            self.epochs
                .read()
                .get(partition)
                .is_some_and(|s| s.epoch == key.epoch && !s.written.load(Ordering::Relaxed))
        };
        if !current {
            return None;
        }
        // Memory only: the disk tier holds this copy already. Under the stripe lock, so a
        // write of the key replaces it.
        let memory_only = HybridCacheProperties::default().with_location(Location::InMem);
        let value = copy.value.clone();
        self.cache
            .cache
            .insert_with_properties(key.clone(), copy, memory_only);
        Some(value)
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
        let epochs = self.epochs.read();
        let clean: Vec<(&Partition, u64)> = epochs
            .iter()
            .filter(|(_, s)| !s.written.load(Ordering::Relaxed))
            .map(|(p, s)| (p, s.epoch))
            .collect();
        let payload = encode_epochs(self.next_epoch.load(Ordering::Relaxed), &clean);
        Ok(Some(warm::Marker { token, payload }))
    }
}

impl PartitionEpoch {
    fn epoch_after(&self, write: bool) -> u64 {
        if write {
            self.written.store(true, Ordering::Relaxed);
        }
        self.epoch
    }
}

#[async_trait]
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
        self.forget(partition);
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
        let stripe = self.stripe_of(&ck);
        let began = self.generation(stripe);
        if let Some(value) = self.disk_copy(partition, &ck, stripe).await {
            self.counters.hit(value.as_ref().map_or(0, Bytes::len));
            return Ok(value);
        }
        let value = self.inner.get(partition, key).await?;
        self.counters.miss(value.as_ref().map_or(0, Bytes::len));
        self.end_fill(stripe, began, ck, value.clone());
        Ok(value)
    }

    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        self.check_open()?;
        let ck = self.cache_key(partition, &key, true);
        let stripe = self.stripe_of(&ck);
        let began = self.begin_write(stripe);
        let result = self.inner.put(partition, key, value.clone()).await;
        // Ended on failure too (the write may or may not have applied).
        self.end_write(stripe, began, result.is_ok(), [(ck, Some(value))]);
        result
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.check_open()?;
        let ck = self.cache_key(partition, key, true);
        let stripe = self.stripe_of(&ck);
        let began = self.begin_write(stripe);
        let result = self.inner.delete(partition, key).await;
        self.end_write(stripe, began, result.is_ok(), [(ck, None)]);
        result
    }

    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        self.check_open()?;
        // Partitions with a range delete move to a new epoch once the inner batch is applied;
        // their keys are not cached here (the next read fills them under the new epoch).
        let ranged: Vec<Partition> = batch
            .ops
            .iter()
            .filter(|op| matches!(op, WriteOp::DeleteRange { .. }))
            .map(|op| op.partition().clone())
            .collect();
        // A batch touches a few partitions, mostly in runs: each one's epoch is looked up once
        // (which also marks the partition written before the write begins).
        let mut epochs: Vec<(&Partition, u64)> = Vec::new();
        let mut keys: Vec<(CacheKey, Option<Bytes>)> = Vec::with_capacity(batch.len());
        let bulk = batch.len() > BULK_OPS;
        for op in &batch.ops {
            let partition = op.partition();
            if ranged.contains(partition) {
                continue;
            }
            let epoch = match epochs.iter().rev().find(|(p, _)| *p == partition) {
                Some((_, epoch)) => *epoch,
                None => {
                    let epoch = self.epoch(partition, true);
                    epochs.push((partition, epoch));
                    epoch
                }
            };
            let ck = CacheKey {
                epoch,
                key: Bytes::copy_from_slice(op.key()),
            };
            let value = match op {
                WriteOp::Put { value, .. } if !bulk => Some(value.clone()),
                _ => None,
            };
            keys.push((ck, value));
        }
        if bulk {
            let result = self.inner.batch(batch).await;
            self.forget_all(&ranged);
            // Stripe by stripe, in memory order: one lock per stripe.
            let mut order: Vec<(usize, usize)> = keys
                .iter()
                .enumerate()
                .map(|(at, (ck, _))| (self.stripe_of(ck), at))
                .collect();
            order.sort_unstable();
            for run in order.chunk_by(|a, b| a.0 == b.0) {
                self.end_bulk_write(run[0].0, run.iter().map(|(_, at)| &keys[*at].0));
            }
            return result;
        }
        // Each stripe's keys begin and end one write together. Sorted by stripe; the sort is
        // stable, so a later op on the same key is cached after the earlier one and wins, as
        // in the inner engine.
        let mut written: Vec<(usize, CacheKey, Option<Bytes>)> = keys
            .into_iter()
            .map(|(ck, value)| (self.stripe_of(&ck), ck, value))
            .collect();
        written.sort_by_key(|(stripe, ..)| *stripe);
        let mut runs: Vec<(usize, u64)> = Vec::new();
        for (stripe, ..) in &written {
            if runs.last().is_none_or(|(s, _)| s != stripe) {
                runs.push((*stripe, self.begin_write(*stripe)));
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
