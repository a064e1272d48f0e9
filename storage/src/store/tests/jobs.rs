//! Job life cycles through real flushes: every status a job record goes through, retries of
//! transient failures, and cancellation of a queued and of a running job.

use std::collections::HashMap;

use object_store::throttle::{ThrottleConfig, ThrottledStore};

use std::sync::atomic::AtomicUsize;

use futures::stream::BoxStream;

use super::*;
use crate::testing::{FailAfter, wait_until};

/// The statuses each job's record was written with, in order.
type Seen = Arc<parking_lot::Mutex<HashMap<String, Vec<JobStatus>>>>;

/// Memory engines behind a [`FailAfter`] on table partitions that records every job record
/// written; the cold store is one in-memory object store whose puts take `slow_puts`, and
/// whose next `hang_puts` puts never answer (or answer after `hang_for`).
#[derive(Debug)]
struct RecordingEngines {
    backend: Arc<FailAfter<MemoryBackend>>,
    cold: Arc<object_store::memory::InMemory>,
    slow_puts: Duration,
    hang_puts: Arc<AtomicUsize>,
    hang_for: Option<Duration>,
}

/// An object store whose next `hang` puts never answer, or answer after `hang_for`.
#[derive(Debug)]
struct Hanging {
    inner: Arc<dyn object_store::ObjectStore>,
    hang: Arc<AtomicUsize>,
    hang_for: Option<Duration>,
}

impl std::fmt::Display for Hanging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hanging({})", self.inner)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Hanging {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        let take = |n: usize| n.checked_sub(1);
        if self
            .hang
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
            .is_ok()
        {
            match self.hang_for {
                Some(pause) => tokio::time::sleep(pause).await,
                None => std::future::pending::<()>().await,
            }
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
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
        _cache: Option<crate::cache::CacheRequest<'_>>,
    ) -> Result<Arc<dyn StorageBackend>> {
        Ok(self.backend.clone())
    }

    async fn cold_store(
        &self,
        _store: Arc<dyn object_store::ObjectStore>,
        _cache: Option<crate::cache::CacheRequest<'_>>,
    ) -> Result<crate::cache::ColdTier> {
        // Throttling needs streamed reads, which the in-memory store gives (a local
        // directory's file reads it cannot throttle).
        let config = ThrottleConfig {
            wait_put_per_call: self.slow_puts,
            ..ThrottleConfig::default()
        };
        let slow = Arc::new(ThrottledStore::new(self.cold.clone(), config));
        Ok(crate::cache::ColdTier {
            store: Arc::new(Hanging {
                inner: slow,
                hang: self.hang_puts.clone(),
                hang_for: self.hang_for,
            }),
            cache: None,
        })
    }
}

/// A store with one SHARED table on [`RecordingEngines`], with settings from `configure`.
async fn recording_store(
    slow_puts: Duration,
    hang_puts: Arc<AtomicUsize>,
    hang_for: Option<Duration>,
    configure: impl FnOnce(&mut StoreConfig),
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
        hang_puts,
        hang_for,
    };
    let mut config = StoreConfig::new(dir.path(), Arc::new(engines));
    config.background = false;
    config.retry_backoff = Duration::from_millis(1);
    configure(&mut config);
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
    let (_dir, store, backend, seen) =
        recording_store(Duration::ZERO, Default::default(), None, |_| {}).await;
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

/// The store's own failure points, armed per instance: a compaction whose commit fails twice
/// is retried twice and completes; a flush that fails right after its commit is retried, finds
/// nothing left to flush and completes; rows are neither lost nor doubled.
#[tokio::test]
async fn failpoints_make_commits_fail_in_process_and_the_jobs_retry() {
    use JobStatus::*;
    let failpoints = Failpoints::default();
    let armed = failpoints.clone();
    let (_dir, store, _backend, seen) =
        recording_store(Duration::ZERO, Default::default(), None, move |c| {
            c.failpoints = armed;
        })
        .await;
    for part in 0..3 {
        insert(&store, part * 10..part * 10 + 10).await;
        store.flush_table(&t(), Scope::All).await.unwrap();
    }
    failpoints.fail_next("compaction.before_commit", 2);
    let job = store
        .compact_table(&t(), Scope::All, CompactionPolicy::all())
        .await
        .unwrap();
    assert_eq!(
        seen.lock()[&job.id],
        [
            New, Queued, Running, Retrying, Running, Retrying, Running, Completed
        ]
    );
    assert_eq!(job.attempts, 3);
    assert!(job.error.unwrap().contains("compaction.before_commit"));
    assert_eq!(store.table_stats(&t()).await.unwrap()[0].files, 1);

    insert(&store, 30..40).await;
    failpoints.fail_next("flush.after_commit", 1);
    let job = store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(
        seen.lock()[&job.id],
        [New, Queued, Running, Retrying, Running, Completed]
    );
    assert_eq!(failpoints.remaining("flush.after_commit"), 0);
    let stats = store.table_stats(&t()).await.unwrap();
    assert_eq!((stats[0].files, stats[0].hot_rows), (2, 0));
    assert_eq!(ids(&store, None, None).await, (0..40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_job_cancels_a_running_flush_and_a_queued_one_leaving_the_table_unchanged() {
    use JobStatus::*;
    // Each Parquet upload takes 2 s (within its deadline): long enough to be killed midway.
    let slow = Duration::from_secs(2);
    let (_dir, store, _backend, seen) =
        recording_store(slow, Default::default(), None, |_| {}).await;
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

/// With one job worker, a flush of a second table waits `queued` while the flush of the first
/// runs (held before its commit), although the two tables do not share a lock, and runs once
/// the first has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_beyond_the_workers_wait_queued_for_one() {
    use JobStatus::*;
    let failpoints = Failpoints::default();
    let armed = failpoints.clone();
    let (_dir, store, _backend, seen) =
        recording_store(Duration::ZERO, Default::default(), None, move |config| {
            config.job_workers = 1;
            config.failpoints = armed;
        })
        .await;
    let mut other = messages(TableType::Shared);
    other.id = "app.other".parse().unwrap();
    store.create_table(other.clone(), false).await.unwrap();
    insert(&store, 0..10).await;
    store
        .insert(&other.id, None, (0..10).map(|i| row(i, "y")).collect())
        .await
        .unwrap();
    let mut held = failpoints.pause_next("flush.before_commit");
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.flush_table(&t(), Scope::All).await }
    });
    held.reached().await.unwrap();
    let second = tokio::spawn({
        let store = store.clone();
        let id = other.id.clone();
        async move { store.flush_table(&id, Scope::All).await }
    });
    let last_statuses = || {
        let mut last: Vec<JobStatus> = seen
            .lock()
            .values()
            .filter_map(|s| s.last().copied())
            .collect();
        last.sort_by_key(|s| format!("{s:?}"));
        last
    };
    wait_until("the second flush is queued", || async {
        last_statuses() == [Queued, Running]
    })
    .await;
    // Held, the first flush keeps the only worker: the second stays queued.
    tokio::task::yield_now().await;
    assert_eq!(last_statuses(), [Queued, Running]);
    held.release();
    let first = first.await.unwrap().unwrap();
    let second = second.await.unwrap().unwrap();
    assert_eq!(seen.lock()[&first.id], [New, Queued, Running, Completed]);
    assert_eq!(seen.lock()[&second.id], [New, Queued, Running, Completed]);
    // The worker passes on only after the first job's final record.
    assert!(
        first.ended_at_ms <= second.started_at_ms,
        "{first:?} {second:?}"
    );
    assert_eq!((first.rows, second.rows), (10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_whose_object_store_never_answers_times_out_retries_and_the_table_stays_usable() {
    use JobStatus::*;
    let hang = Arc::new(AtomicUsize::new(0));
    let (_dir, store, _backend, seen) =
        recording_store(Duration::ZERO, hang.clone(), None, |config| {
            config.object_store_timeout = Duration::from_secs(1);
        })
        .await;
    insert(&store, 0..10).await;
    // The Parquet upload of the first attempt never answers.
    hang.store(1, Ordering::SeqCst);
    let job = store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(
        seen.lock()[&job.id],
        [New, Queued, Running, Retrying, Running, Completed]
    );
    let error = job.error.unwrap();
    assert!(error.contains("did not answer within 1s"), "{error}");
    assert_eq!((job.attempts, job.rows), (2, 10));
    // Nothing held on to the table: it takes writes, flushes and reads as before.
    insert(&store, 10..20).await;
    store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(ids(&store, None, None).await, (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_stops_a_flush_past_its_time_limit_and_retries_it() {
    use JobStatus::*;
    let hang = Arc::new(AtomicUsize::new(0));
    // The first Parquet upload answers after 3 s; a flush may take 500 ms.
    let (_dir, store, _backend, seen) = recording_store(
        Duration::ZERO,
        hang.clone(),
        Some(Duration::from_secs(3)),
        |config| {
            config
                .job_timeouts
                .insert(JobKind::Flush, Duration::from_millis(500));
        },
    )
    .await;
    insert(&store, 0..10).await;
    hang.store(1, Ordering::SeqCst);
    let job = store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(
        seen.lock()[&job.id],
        [New, Queued, Running, Retrying, Running, Completed]
    );
    let error = job.error.unwrap();
    assert!(
        error.contains("ran longer than its limit of 500ms"),
        "{error}"
    );
    assert_eq!((job.attempts, job.rows), (2, 10));
    assert_eq!(ids(&store, None, None).await, (0..10).collect::<Vec<_>>());
    assert_eq!(store.table_stats(&t()).await.unwrap()[0].files, 1);
}
