//! Fault-injecting wrappers for tests: backends that fail on cue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{
    BackendStats, Capabilities, Partition, ScanChunk, ScanRequest, StorageBackend, WriteBatch,
};
use crate::error::{Error, Result};

/// The error [`FailAfter`] injects.
#[derive(Debug, thiserror::Error)]
#[error("injected failure after {0} writes")]
pub struct InjectedFailure(pub usize);

/// Passes the first `n` writes (put, delete, batch) to the inner backend, then fails every write
/// with [`Error::Engine`] without touching the inner backend. Reads always pass.
#[derive(Debug)]
pub struct FailAfter<B: ?Sized> {
    inner: Arc<B>,
    allowed: usize,
    writes: AtomicUsize,
}

impl<B: StorageBackend + ?Sized> FailAfter<B> {
    /// Wraps `inner`, allowing `allowed` writes.
    pub fn new(inner: Arc<B>, allowed: usize) -> Self {
        Self {
            inner,
            allowed,
            writes: AtomicUsize::new(0),
        }
    }

    /// Writes attempted so far, failed ones included.
    pub fn attempted_writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn admit(&self) -> Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if n < self.allowed {
            Ok(())
        } else {
            Err(Error::engine(
                "fail-after",
                "a write",
                InjectedFailure(self.allowed),
            ))
        }
    }
}

#[async_trait]
impl<B: StorageBackend + ?Sized> StorageBackend for FailAfter<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        self.inner.create_partition(partition).await
    }
    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        self.inner.drop_partition(partition).await
    }
    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.inner.list_partitions().await
    }
    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        self.inner.partition_exists(partition).await
    }
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get(partition, key).await
    }
    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        self.admit()?;
        self.inner.put(partition, key, value).await
    }
    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.admit()?;
        self.inner.delete(partition, key).await
    }
    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        self.admit()?;
        self.inner.batch(batch).await
    }
    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk> {
        self.inner.scan(partition, request).await
    }
    async fn reclaim(&self, partition: &Partition) -> Result<()> {
        self.inner.reclaim(partition).await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
    async fn stats(&self) -> Result<BackendStats> {
        self.inner.stats().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    #[tokio::test]
    async fn writes_past_the_allowance_fail_and_change_nothing() {
        let inner = Arc::new(MemoryBackend::new());
        let p = Partition::new("t").unwrap();
        inner.create_partition(&p).await.unwrap();
        let failing = FailAfter::new(inner.clone(), 1);
        failing
            .put(&p, Bytes::from_static(b"a"), Bytes::from_static(b"1"))
            .await
            .unwrap();
        let err = failing
            .put(&p, Bytes::from_static(b"b"), Bytes::from_static(b"2"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("fail-after"), "{err}");
        assert_eq!(inner.get(&p, b"b").await.unwrap(), None);
        assert_eq!(failing.attempted_writes(), 2);
    }
}
