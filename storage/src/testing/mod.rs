//! Test helpers: backends that fail on cue, and the one way tests wait for background work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{
    BackendStats, Capabilities, Partition, ScanChunk, ScanRequest, StorageBackend, WriteBatch,
};
use crate::error::{Error, Result};

/// Polls `condition` until it holds, panicking with `what` after 30 seconds. Tests wait for
/// background work on a condition like this, never for a fixed time.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The error [`FailAfter`] injects.
#[derive(Debug, thiserror::Error)]
#[error("injected failure after {0} writes")]
pub struct InjectedFailure(pub usize);

/// Passes the first `n` writes (put, delete, batch) to the inner backend, then fails every write
/// with [`Error::Engine`] without touching the inner backend. Reads always pass. With
/// [`only_partitions`](Self::only_partitions), only writes that touch a partition whose name
/// starts with a prefix count and fail (so a store's catalog keeps working while a table's
/// partitions fail).
pub struct FailAfter<B: ?Sized> {
    inner: Arc<B>,
    allowed: AtomicUsize,
    writes: AtomicUsize,
    /// Failures left before the backend heals; `usize::MAX`: never heals.
    failures_left: AtomicUsize,
    prefix: Option<String>,
    observer: Option<Observer>,
}

/// Sees every put that reaches the inner backend: partition, key and value.
type Observer = Box<dyn Fn(&Partition, &[u8], &[u8]) + Send + Sync>;

impl<B: ?Sized> std::fmt::Debug for FailAfter<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailAfter")
            .field("allowed", &self.allowed)
            .field("writes", &self.writes)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<B: StorageBackend + ?Sized> FailAfter<B> {
    /// Wraps `inner`, allowing `allowed` writes.
    pub fn new(inner: Arc<B>, allowed: usize) -> Self {
        Self {
            inner,
            allowed: AtomicUsize::new(allowed),
            writes: AtomicUsize::new(0),
            failures_left: AtomicUsize::new(usize::MAX),
            prefix: None,
            observer: None,
        }
    }

    /// Calls `observer` with every put (alone or in a batch) that reaches the inner backend.
    pub fn observing(
        mut self,
        observer: impl Fn(&Partition, &[u8], &[u8]) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Fails the next `n` counted writes, then passes every write again (a store that heals).
    pub fn fail_next(&self, n: usize) {
        self.fail_from_now();
        self.failures_left.store(n, Ordering::SeqCst);
    }

    /// Counts (and fails) only writes touching a partition whose name starts with `prefix`.
    pub fn only_partitions(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Fails every counted write from now on.
    pub fn fail_from_now(&self) {
        self.failures_left.store(usize::MAX, Ordering::SeqCst);
        self.allowed
            .store(self.writes.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Writes attempted so far, failed ones included.
    pub fn attempted_writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn counts<'a>(&self, mut partitions: impl Iterator<Item = &'a Partition>) -> bool {
        match &self.prefix {
            None => true,
            Some(prefix) => partitions.any(|p| p.as_str().starts_with(prefix.as_str())),
        }
    }

    fn admit<'a>(&self, partitions: impl Iterator<Item = &'a Partition>) -> Result<()> {
        if !self.counts(partitions) {
            return Ok(());
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        let allowed = self.allowed.load(Ordering::SeqCst);
        if n < allowed {
            return Ok(());
        }
        let healed = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => None,
                usize::MAX => Some(usize::MAX),
                left => Some(left - 1),
            })
            .is_err();
        if healed {
            return Ok(());
        }
        Err(Error::engine(
            "fail-after",
            "a write",
            InjectedFailure(allowed),
        ))
    }

    fn observe(&self, partition: &Partition, key: &[u8], value: &[u8]) {
        if let Some(observer) = &self.observer {
            observer(partition, key, value);
        }
    }
}

// Every method forwarded, so the wrapped engine's fast paths stay in use.
#[async_trait]
#[deny(clippy::missing_trait_methods)]
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
    async fn get_many(&self, partition: &Partition, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        self.inner.get_many(partition, keys).await
    }
    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        self.admit(std::iter::once(partition))?;
        self.observe(partition, &key, &value);
        self.inner.put(partition, key, value).await
    }
    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.admit(std::iter::once(partition))?;
        self.inner.delete(partition, key).await
    }
    // Buffered here, so the commit goes through `batch` and its failure injection.
    async fn staged_batch(&self) -> Result<Box<dyn crate::backend::StagedBatch + '_>> {
        Ok(Box::new(crate::backend::BufferedBatch::new(self)))
    }
    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        self.admit(batch.partitions().iter())?;
        for op in batch.ops() {
            if let crate::backend::WriteOp::Put {
                partition,
                key,
                value,
            } = op
            {
                self.observe(partition, key, value);
            }
        }
        self.inner.batch(batch).await
    }
    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk> {
        self.inner.scan(partition, request).await
    }
    async fn scan_with(
        &self,
        partition: &Partition,
        request: &ScanRequest,
        visit: &mut (dyn for<'e> FnMut(&'e [u8], &'e [u8]) -> Result<()> + Send),
    ) -> Result<Option<ScanRequest>> {
        self.inner.scan_with(partition, request, visit).await
    }
    async fn reclaim(&self, partition: &Partition) -> Result<()> {
        self.inner.reclaim(partition).await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
    async fn state_token(&self) -> Result<Option<Vec<u8>>> {
        self.inner.state_token().await
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
