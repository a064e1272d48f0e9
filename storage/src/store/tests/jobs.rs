//! Job life cycles through real flushes: every status a job record goes through, retries of
//! transient failures, and cancellation of a queued and of a running job.

use std::collections::HashMap;

use object_store::throttle::{ThrottleConfig, ThrottledStore};

use super::*;
use crate::testing::{FailAfter, wait_until};

/// The statuses each job's record was written with, in order.
type Seen = Arc<parking_lot::Mutex<HashMap<String, Vec<JobStatus>>>>;

/// Memory engines behind a [`FailAfter`] on table partitions that records every job record
/// written; the cold store is one in-memory object store whose puts take `slow_puts`.
#[derive(Debug)]
struct RecordingEngines {
    backend: Arc<FailAfter<MemoryBackend>>,
    cold: Arc<object_store::memory::InMemory>,
    slow_puts: Duration,
}

#[async_trait::async_trait]
impl EngineProvider for RecordingEngines {
    fn default_engine(&self, _dir: &std::path::Path) -> HotEngine {
        HotEngine::Memory
    }

    async fn open(
        &self,
        _engine: &HotEngine,
        _s3: &S3Options,
        _cache: Option<&CacheSpec>,
    ) -> Result<Arc<dyn StorageBackend>> {
        Ok(self.backend.clone())
    }

    async fn cold_store(
        &self,
        _store: Arc<dyn object_store::ObjectStore>,
        _cache: Option<&CacheSpec>,
    ) -> Result<Arc<dyn object_store::ObjectStore>> {
        // Throttling needs streamed reads, which the in-memory store gives (a local
        // directory's file reads it cannot throttle).
        let config = ThrottleConfig {
            wait_put_per_call: self.slow_puts,
            ..ThrottleConfig::default()
        };
        Ok(Arc::new(ThrottledStore::new(self.cold.clone(), config)))
    }
}

async fn recording_store(
    slow_puts: Duration,
) -> (
    tempfile::TempDir,
    Store,
    Arc<FailAfter<MemoryBackend>>,
    Seen,
) {
    let seen = Seen::default();
    let record = seen.clone();
    let backend = Arc::new(
        FailAfter::new(Arc::new(MemoryBackend::new()), usize::MAX)
            .only_partitions("t.")
            .observing(move |partition, _key, value| {
                if partition.as_str() == JOBS {
                    let job = JobRecord::decode(value).unwrap();
                    record.lock().entry(job.id).or_default().push(job.status);
                }
            }),
    );
    let dir = tempfile::tempdir().unwrap();
    let engines = RecordingEngines {
        backend: backend.clone(),
        cold: Arc::new(object_store::memory::InMemory::new()),
        slow_puts,
    };
    let mut config = StoreConfig::new(dir.path(), Arc::new(engines));
    config.background = false;
    config.retry_backoff = Duration::from_millis(1);
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    (dir, store, backend, seen)
}

async fn insert(store: &Store, ids: std::ops::Range<i64>) {
    let rows = ids.map(|i| row(i, "x")).collect();
    store.insert(&t(), None, rows).await.unwrap();
}

#[tokio::test]
async fn a_flush_goes_new_queued_running_and_retries_a_store_that_heals() {
    use JobStatus::*;
    let (_dir, store, backend, seen) = recording_store(Duration::ZERO).await;
    insert(&store, 0..10).await;
    let job = store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(seen.lock()[&job.id], [New, Queued, Running, Completed]);
    assert_eq!((job.attempts, job.rows), (1, 10));

    // The commit fails once: the job retries and completes; nothing is lost or doubled.
    insert(&store, 10..20).await;
    backend.fail_next(1);
    let job = store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(
        seen.lock()[&job.id],
        [New, Queued, Running, Retrying, Running, Completed]
    );
    assert_eq!((job.attempts, job.rows), (2, 10));
    assert!(job.error.unwrap().contains("injected failure"));
    assert_eq!(ids(&store, None, None).await, (0..20).collect::<Vec<_>>());
    let stats = store.table_stats(&t()).await.unwrap();
    assert_eq!((stats[0].files, stats[0].hot_rows), (2, 0));

    // A store that stays down: every attempt fails, the job fails, the rows stay hot.
    insert(&store, 20..25).await;
    backend.fail_from_now();
    let err = store.flush_table(&t(), Scope::All).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let job = store.jobs().await.unwrap().pop().unwrap();
    assert_eq!(
        seen.lock()[&job.id],
        [
            New, Queued, Running, Retrying, Running, Retrying, Running, Failed
        ]
    );
    assert_eq!(job.attempts, JobKind::Flush.max_attempts());
    assert_eq!(store.table_stats(&t()).await.unwrap()[0].hot_rows, 5);
    assert_eq!(ids(&store, None, None).await, (0..25).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_job_cancels_a_running_flush_and_a_queued_one_leaving_the_table_unchanged() {
    use JobStatus::*;
    // Each Parquet upload takes 2 s: long enough to be killed midway.
    let (_dir, store, _backend, seen) = recording_store(Duration::from_secs(2)).await;
    insert(&store, 0..50).await;
    let running = tokio::spawn({
        let store = store.clone();
        async move { store.flush_table(&t(), Scope::All).await }
    });
    let status_of = |status: JobStatus| {
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            async move {
                let seen = seen.lock();
                let mut found = seen.iter().filter(|(_, s)| s.last() == Some(&status));
                found.next().map(|(id, _)| id.clone())
            }
        }
    };
    wait_until("the first flush runs", || async {
        status_of(Running)().await.is_some()
    })
    .await;
    let first = status_of(Running)().await.unwrap();
    // A second flush of the same table waits for the first.
    let queued = tokio::spawn({
        let store = store.clone();
        async move { store.flush_table(&t(), Scope::All).await }
    });
    wait_until("the second flush is queued", || async {
        status_of(Queued)().await.is_some()
    })
    .await;
    let second = status_of(Queued)().await.unwrap();
    store.cancel_job(&second).await.unwrap();
    store.cancel_job(&first).await.unwrap();

    let err = running.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::JobCancelled { .. }), "{err}");
    let err = queued.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::JobCancelled { .. }), "{err}");
    assert_eq!(seen.lock()[&first], [New, Queued, Running, Cancelled]);
    assert_eq!(seen.lock()[&second], [New, Queued, Cancelled]);
    let stats = store.table_stats(&t()).await.unwrap();
    assert_eq!((stats[0].files, stats[0].hot_rows), (0, 50));
    assert!(store.manifest(&t()).await.unwrap().is_empty());
    assert_eq!(ids(&store, None, None).await, (0..50).collect::<Vec<_>>());
}
