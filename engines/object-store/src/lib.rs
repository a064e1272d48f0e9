//! `ObjectStoreBackend`: durable key-value state kept entirely in an `object_store` store
//! (local directory, `memory://`, `s3://`), built on SlateDB.
//!
//! # Key layout inside SlateDB
//!
//! | key                              | value                 | meaning                          |
//! |----------------------------------|-----------------------|----------------------------------|
//! | `0x00 "gen"`                     | u64 BE                | next partition generation        |
//! | `0x00 "p" <name>`                | u64 BE generation     | partition exists                 |
//! | `0x00 "x" <generation u64 BE>`   | name                  | dropped, data not yet purged     |
//! | `0x01 <generation u64 BE> <key>` | value                 | a key of a partition             |
//!
//! Each creation of a partition gets a fresh generation, so a partition that is dropped and
//! created again never sees old keys, even if purging them was interrupted; the drop marker
//! lets the next open finish the purge.
//!
//! # Runtime and ownership
//!
//! SlateDB runs background tasks (WAL flush, compaction, GC) on the runtime that opened it. The
//! backend owns a multi-thread runtime for them and runs every call as a task there, awaiting its
//! join handle, so callers may use any runtime (or a current-thread one) without `block_on`.
//!
//! Durable writes share WAL flushes (`commit`): a write waits for one object-store PUT that
//! carries every write made while the previous one ran, not for a timer.
//!
//! A second opener of the same path *fences* the first: SlateDB gives the newer writer the
//! store, and the older one's next write fails with [`Error::Closed`] ("fenced"); data is never
//! corrupted.

mod commit;
mod config;
mod error;

use std::collections::HashMap;
use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use kalamstore_storage::backend::{
    BackendStats, Capabilities, Direction, Partition, ScanChunk, ScanRequest, StorageBackend,
    WriteBatch, WriteOp, is_empty_range, prefix_successor,
};
use kalamstore_storage::{Error, Result};
use slatedb::config::{GarbageCollectorOptions, ScanOptions, Settings};
use slatedb::db_cache::foyer::{FoyerCache, FoyerCacheOptions};
use slatedb::db_cache::{DbCache, SplitCache};
use slatedb::{Db, IterationOrder};
use tokio::sync::{Mutex, RwLock};

use commit::GroupCommit;
pub use config::{AckMode, ObjectStoreConfig, OpenedStore, S3Options, open_store};
pub use error::ObjectStoreError;
use error::{ENGINE, shared_flush, slate};

const GENERATION_KEY: &[u8] = b"\x00gen";
const REGISTRY_PREFIX: &[u8] = b"\x00p";
const DROPPED_PREFIX: &[u8] = b"\x00x";
const DATA_TAG: u8 = 0x01;
/// Keys deleted per batch while purging a dropped partition.
const PURGE_BATCH: usize = 1000;
/// SlateDB's own WAL flush interval when writes are durable on ack: writers flush together
/// (see `commit`), and a timed flush between theirs would only delay them; it stays as a
/// backstop.
const DURABLE_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// A [`StorageBackend`] on SlateDB over an object store.
pub struct ObjectStoreBackend {
    /// `None` once closed.
    db: RwLock<Option<Db>>,
    /// Partition name -> generation.
    partitions: RwLock<HashMap<Partition, u64>>,
    /// Serialises partition creation and drops.
    ddl: Mutex<()>,
    /// Shares WAL flushes among durable writes.
    commit: Arc<GroupCommit>,
    config: ObjectStoreConfig,
    in_memory: bool,
    /// Owned runtime for SlateDB's tasks; taken on drop.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreBackend")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Drop for ObjectStoreBackend {
    fn drop(&mut self) {
        // Dropping a runtime blocks; from inside another runtime that panics, so let it wind
        // down in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn data_prefix(generation: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(9);
    out.put_u8(DATA_TAG);
    out.put_u64(generation);
    out.freeze()
}

fn data_key(generation: u64, key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(9 + key.len());
    out.put_u8(DATA_TAG);
    out.put_u64(generation);
    out.put_slice(key);
    out.freeze()
}

fn registry_key(partition: &Partition) -> Bytes {
    [REGISTRY_PREFIX, partition.as_str().as_bytes()]
        .concat()
        .into()
}

fn dropped_key(generation: u64) -> Bytes {
    [DROPPED_PREFIX, &generation.to_be_bytes()[..]]
        .concat()
        .into()
}

fn decode_u64(bytes: &[u8], what: &str) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::from(ObjectStoreError::CorruptRegistry(what.to_owned())))?;
    Ok(u64::from_be_bytes(array))
}

impl ObjectStoreBackend {
    /// Opens the store at `config.url` and the SlateDB inside it.
    pub async fn open(config: ObjectStoreConfig) -> Result<Self> {
        let opened = open_store(&config.url, &config.s3)?;
        Self::open_with_store(opened, config).await
    }

    /// Opens SlateDB inside an already opened store (e.g. a shared `InMemory` in tests).
    pub async fn open_with_store(opened: OpenedStore, config: ObjectStoreConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("kalamstore-slatedb")
            .enable_all()
            .build()
            .map_err(|e| Error::from(ObjectStoreError::Runtime(e.to_string())))?;
        let handle = runtime.handle().clone();
        let mut backend = Self {
            db: RwLock::new(None),
            partitions: RwLock::new(HashMap::new()),
            ddl: Mutex::new(()),
            commit: Arc::default(),
            in_memory: opened.in_memory,
            config,
            runtime: Some(runtime),
            handle,
        };
        let settings = Settings {
            flush_interval: Some(match backend.config.ack {
                AckMode::Durable => backend.config.flush_interval.max(DURABLE_FLUSH_INTERVAL),
                AckMode::Memory => backend.config.flush_interval,
            }),
            garbage_collector_options: Some(GarbageCollectorOptions {
                // Stores without `If-Match` (LocalFileSystem) cannot advance boundary files.
                boundary_files_enabled: opened.conditional_update,
                ..GarbageCollectorOptions::default()
            }),
            ..Settings::default()
        };
        let path = if opened.prefix.is_empty() {
            "kv".to_owned()
        } else {
            format!("{}/kv", opened.prefix)
        };
        let store = opened.store.clone();
        let url = backend.config.url.clone();
        let cache = |bytes: u64| -> Arc<dyn DbCache> {
            Arc::new(FoyerCache::new_with_opts(FoyerCacheOptions {
                max_capacity: bytes.max(1),
                ..FoyerCacheOptions::default()
            }))
        };
        let caches = SplitCache::new()
            .with_block_cache(Some(cache(backend.config.block_cache_bytes)))
            .with_meta_cache(Some(cache(backend.config.block_cache_bytes / 4)));
        let db = backend
            .run(async move {
                Db::builder(path, store)
                    .with_settings(settings)
                    .with_db_cache(Arc::new(caches), 0)
                    .build()
                    .await
                    .map_err(slate(format!("opening {url}")))
            })
            .await?;
        *backend.db.get_mut() = Some(db);
        backend.load_registry().await?;
        backend.purge_dropped().await?;
        Ok(backend)
    }

    /// Runs `fut` on the engine's runtime and waits for it from whatever context calls.
    async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.handle
            .spawn(fut)
            .await
            .map_err(Error::task(ENGINE, "running on the engine's runtime"))?
    }

    async fn db(&self) -> Result<Db> {
        self.db.read().await.clone().ok_or(Error::Closed {
            engine: ENGINE,
            reason: "close() was called",
        })
    }

    async fn generation(&self, partition: &Partition) -> Result<u64> {
        self.partitions
            .read()
            .await
            .get(partition)
            .copied()
            .ok_or_else(|| Error::PartitionNotFound {
                partition: partition.to_string(),
            })
    }

    async fn load_registry(&mut self) -> Result<()> {
        let entries = self.scan_raw(REGISTRY_PREFIX, usize::MAX).await?;
        let map = self.partitions.get_mut();
        for (key, value) in entries {
            let name = String::from_utf8_lossy(&key[REGISTRY_PREFIX.len()..]).into_owned();
            let generation = decode_u64(&value, &name)?;
            map.insert(Partition::new(name)?, generation);
        }
        Ok(())
    }

    /// Every key (and value) starting with `prefix`, up to `limit`.
    async fn scan_raw(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>> {
        let db = self.db().await?;
        let start = Bytes::copy_from_slice(prefix);
        let end = prefix_successor(prefix);
        self.run(async move {
            let range = (
                Bound::Included(start),
                end.map_or(Bound::Unbounded, Bound::Excluded),
            );
            let mut iter = db
                .scan(range)
                .await
                .map_err(slate("scanning engine metadata"))?;
            let mut out = Vec::new();
            while out.len() < limit {
                match iter
                    .next()
                    .await
                    .map_err(slate("scanning engine metadata"))?
                {
                    Some(kv) => out.push((kv.key, kv.value)),
                    None => break,
                }
            }
            Ok(out)
        })
        .await
    }

    /// Writes a SlateDB batch, waiting for durability unless acks are in-memory: the write
    /// joins the next WAL flush shared with concurrent writes (see `commit`).
    async fn write(&self, batch: slatedb::WriteBatch, op: String) -> Result<()> {
        let db = self.db().await?;
        let durable = self.config.ack == AckMode::Durable;
        let commit = self.commit.clone();
        self.run(async move {
            let handle = db.write(batch).await.map_err(slate(op.clone()))?;
            if durable {
                commit
                    .durable(&db)
                    .await
                    .map_err(|e| shared_flush(op.clone(), &e))?;
                // Returns at once: the shared flush covered this write.
                handle.await_durable().await.map_err(slate(op))?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes the keys of dropped generations, then their markers.
    async fn purge_dropped(&self) -> Result<()> {
        for (marker, _) in self.scan_raw(DROPPED_PREFIX, usize::MAX).await? {
            let generation = decode_u64(&marker[DROPPED_PREFIX.len()..], "drop marker")?;
            let prefix = data_prefix(generation);
            loop {
                let keys = self.scan_raw(&prefix, PURGE_BATCH).await?;
                if keys.is_empty() {
                    break;
                }
                let mut batch = slatedb::WriteBatch::new();
                for (key, _) in keys {
                    batch.delete(key);
                }
                self.write(batch, format!("purging dropped generation {generation}"))
                    .await?;
            }
            let mut batch = slatedb::WriteBatch::new();
            batch.delete(marker);
            self.write(batch, "removing a drop marker".into()).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl StorageBackend for ObjectStoreBackend {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            durable_on_ack: self.config.ack == AckMode::Durable && !self.in_memory,
            may_evict: false,
            // SlateDB's write batch has no range tombstone.
            delete_range: false,
        }
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        if self.partitions.read().await.contains_key(partition) {
            return Ok(());
        }
        let db = self.db().await?;
        let next = self
            .run(async move {
                db.get(GENERATION_KEY)
                    .await
                    .map_err(slate("reading the generation counter"))
            })
            .await?
            .map(|v| decode_u64(&v, "generation counter"))
            .transpose()?
            .unwrap_or(1);
        let mut batch = slatedb::WriteBatch::new();
        batch.put(GENERATION_KEY, (next + 1).to_be_bytes());
        batch.put(registry_key(partition), next.to_be_bytes());
        self.write(batch, format!("creating partition `{partition}`"))
            .await?;
        self.partitions
            .write()
            .await
            .insert(partition.clone(), next);
        Ok(())
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let Some(generation) = self.partitions.read().await.get(partition).copied() else {
            self.db().await?;
            return Ok(());
        };
        let mut batch = slatedb::WriteBatch::new();
        batch.delete(registry_key(partition));
        batch.put(dropped_key(generation), partition.as_str().as_bytes());
        self.write(batch, format!("dropping partition `{partition}`"))
            .await?;
        self.partitions.write().await.remove(partition);
        self.purge_dropped().await
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.db().await?;
        let mut out: Vec<Partition> = self.partitions.read().await.keys().cloned().collect();
        out.sort();
        Ok(out)
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        self.db().await?;
        Ok(self.partitions.read().await.contains_key(partition))
    }

    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Bytes>> {
        let db = self.db().await?;
        let full = data_key(self.generation(partition).await?, key);
        let op = format!("reading a key of partition `{partition}`");
        self.run(async move {
            // SlateDB's value is a slice of a whole block; copy so callers do not pin blocks.
            Ok(db
                .get(full)
                .await
                .map_err(slate(op))?
                .map(|v| Bytes::copy_from_slice(&v)))
        })
        .await
    }

    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        let mut batch = slatedb::WriteBatch::new();
        batch.put(data_key(self.generation(partition).await?, &key), value);
        self.write(batch, format!("writing a key of partition `{partition}`"))
            .await
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        let mut batch = slatedb::WriteBatch::new();
        batch.delete(data_key(self.generation(partition).await?, key));
        self.write(batch, format!("deleting a key of partition `{partition}`"))
            .await
    }

    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        self.db().await?;
        if batch.is_empty() {
            return Ok(());
        }
        // Each partition's generation is looked up once, under the lock, not per op.
        let generations: Vec<u64> = {
            let known = self.partitions.read().await;
            batch
                .partitions()
                .iter()
                .map(|p| {
                    known
                        .get(p)
                        .copied()
                        .ok_or_else(|| Error::PartitionNotFound {
                            partition: p.to_string(),
                        })
                })
                .collect::<Result<_>>()?
        };
        let mut slate_batch = slatedb::WriteBatch::new();
        for (partition, op) in batch.indexed_ops() {
            let generation = generations[partition];
            match op {
                WriteOp::Put { key, value, .. } => {
                    slate_batch.put(data_key(generation, key), value)
                }
                WriteOp::Delete { key, .. } => slate_batch.delete(data_key(generation, key)),
                WriteOp::DeleteRange { .. } => {
                    return Err(Error::Unsupported {
                        engine: ENGINE,
                        op: "range deletes in a batch",
                    });
                }
            }
        }
        self.write(
            slate_batch,
            format!("writing a batch of {} ops", batch.len()),
        )
        .await
    }

    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk> {
        let db = self.db().await?;
        let generation = self.generation(partition).await?;
        let (start, end) = request.range.bounds();
        let budget = request.chunk_budget();
        if budget == 0 || is_empty_range(&start, &end) {
            return Ok(ScanChunk::default());
        }
        let prefix = data_prefix(generation);
        let full = |b: Bound<Bytes>| b.map(|k| data_key(generation, &k));
        let lower = match start {
            Bound::Unbounded => Bound::Included(prefix.clone()),
            other => full(other),
        };
        let upper = match end {
            // The prefix starts with DATA_TAG (not 0xFF), so it always has a successor.
            Bound::Unbounded => prefix_successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
            other => full(other),
        };
        let options = ScanOptions {
            order: match request.direction {
                Direction::Forward => IterationOrder::Ascending,
                Direction::Reverse => IterationOrder::Descending,
            },
            read_ahead_bytes: 64 << 10,
            ..ScanOptions::default()
        };
        let op = format!("scanning partition `{partition}`");
        let strip = prefix.len();
        let entries = self
            .run(async move {
                let mut iter = db
                    .scan_with_options((lower, upper), &options)
                    .await
                    .map_err(slate(op.clone()))?;
                let mut out = Vec::with_capacity(budget.min(1024));
                while out.len() < budget {
                    match iter.next().await.map_err(slate(op.clone()))? {
                        Some(kv) => out.push((
                            Bytes::copy_from_slice(&kv.key[strip..]),
                            Bytes::copy_from_slice(&kv.value),
                        )),
                        None => break,
                    }
                }
                Ok(out)
            })
            .await?;
        let resume = request.resume_after(entries.last().map(|(k, _)| k), entries.len());
        Ok(ScanChunk { entries, resume })
    }

    async fn flush(&self) -> Result<()> {
        let db = self.db().await?;
        self.run(async move { db.flush().await.map_err(slate("flushing the WAL")) })
            .await
    }

    async fn stats(&self) -> Result<BackendStats> {
        self.db().await?;
        Ok(BackendStats {
            engine: ENGINE,
            partitions: self.partitions.read().await.len(),
            approximate_keys: None,
            approximate_bytes: None,
            details: vec![("url".into(), self.config.url.clone())],
        })
    }

    async fn close(&self) -> Result<()> {
        let Some(db) = self.db.write().await.take() else {
            return Ok(());
        };
        self.run(async move { db.close().await.map_err(slate("closing")) })
            .await
    }
}

#[cfg(test)]
mod tests;
