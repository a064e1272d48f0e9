//! `MemoryBackend`: a `BTreeMap` per partition behind a lock, for tests and embedding.

use std::collections::BTreeMap;
use std::ops::Bound;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;

use crate::backend::{
    BackendStats, Capabilities, Direction, Partition, ScanChunk, ScanRequest, StorageBackend,
    WriteBatch, WriteOp, is_empty_range,
};
use crate::error::{Error, Result};

const ENGINE: &str = "memory";

type Tree = BTreeMap<Bytes, Bytes>;

/// An in-memory engine: fast, not durable, gone when dropped.
#[derive(Debug)]
pub struct MemoryBackend {
    /// `None` once closed.
    state: RwLock<Option<BTreeMap<Partition, Tree>>>,
}

/// An open, empty engine (a derived `Default` would start closed).
impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty engine.
    pub fn new() -> Self {
        Self {
            state: RwLock::new(Some(BTreeMap::new())),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&BTreeMap<Partition, Tree>) -> Result<T>) -> Result<T> {
        match &*self.state.read() {
            Some(state) => f(state),
            None => Err(closed()),
        }
    }

    fn write<T>(&self, f: impl FnOnce(&mut BTreeMap<Partition, Tree>) -> Result<T>) -> Result<T> {
        match &mut *self.state.write() {
            Some(state) => f(state),
            None => Err(closed()),
        }
    }
}

fn closed() -> Error {
    Error::Closed {
        engine: ENGINE,
        reason: "close() was called",
    }
}

fn not_found(partition: &Partition) -> Error {
    Error::PartitionNotFound {
        partition: partition.to_string(),
    }
}

#[async_trait]
impl StorageBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: false,
            durable_on_ack: false,
            may_evict: false,
            delete_range: true,
        }
    }

    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        self.write(|s| {
            s.entry(partition.clone()).or_default();
            Ok(())
        })
    }

    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        self.write(|s| {
            s.remove(partition);
            Ok(())
        })
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.read(|s| Ok(s.keys().cloned().collect()))
    }

    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        self.read(|s| Ok(s.contains_key(partition)))
    }

    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Bytes>> {
        self.read(|s| {
            let tree = s.get(partition).ok_or_else(|| not_found(partition))?;
            Ok(tree.get(key).cloned())
        })
    }

    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        self.write(|s| {
            let tree = s.get_mut(partition).ok_or_else(|| not_found(partition))?;
            tree.insert(key, value);
            Ok(())
        })
    }

    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.write(|s| {
            let tree = s.get_mut(partition).ok_or_else(|| not_found(partition))?;
            tree.remove(key);
            Ok(())
        })
    }

    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        self.write(|s| {
            // Check every op before applying any, so a failing batch changes nothing.
            if let Some(partition) = batch.partitions().iter().find(|p| !s.contains_key(*p)) {
                return Err(not_found(partition));
            }
            for op in batch.ops() {
                match op {
                    WriteOp::Put {
                        partition,
                        key,
                        value,
                    } => {
                        s.entry(partition.clone())
                            .or_default()
                            .insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
                    }
                    WriteOp::Delete { partition, key } => {
                        s.entry(partition.clone()).or_default().remove(key);
                    }
                    WriteOp::DeleteRange {
                        partition,
                        start,
                        end,
                    } => {
                        let tree = s.entry(partition.clone()).or_default();
                        if start < end {
                            let range = (Bound::Included(start), Bound::Excluded(end));
                            let doomed: Vec<Bytes> = tree
                                .range::<[u8], _>(range)
                                .map(|(k, _)| k.clone())
                                .collect();
                            for key in doomed {
                                tree.remove(&key);
                            }
                        }
                    }
                }
            }
            Ok(())
        })
    }

    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk> {
        self.read(|s| {
            let tree = s.get(partition).ok_or_else(|| not_found(partition))?;
            let (start, end) = request.range.bounds();
            if is_empty_range(&start, &end) {
                return Ok(ScanChunk::default());
            }
            let budget = request.chunk_budget();
            let range = tree.range::<Bytes, _>((start, end));
            let entries: Vec<_> = match request.direction {
                Direction::Forward => range
                    .take(budget)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Direction::Reverse => range
                    .rev()
                    .take(budget)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            let resume = request.resume_after(entries.last().map(|(k, _)| k), entries.len());
            Ok(ScanChunk { entries, resume })
        })
    }

    async fn flush(&self) -> Result<()> {
        self.read(|_| Ok(()))
    }

    async fn stats(&self) -> Result<BackendStats> {
        self.read(|s| {
            let keys: usize = s.values().map(BTreeMap::len).sum();
            let bytes: usize = s
                .values()
                .flat_map(|t| t.iter())
                .map(|(k, v)| k.len() + v.len())
                .sum();
            Ok(BackendStats {
                engine: ENGINE,
                partitions: s.len(),
                approximate_keys: Some(keys as u64),
                approximate_bytes: Some(bytes as u64),
                details: Vec::new(),
            })
        })
    }

    async fn close(&self) -> Result<()> {
        *self.state.write() = None;
        Ok(())
    }
}
