//! Jobs: their records in `sys.jobs`, each job's life recorded around the runner's attempts
//! (`runner.rs`), and the jobs a user starts on a table (flush, compaction).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::runner::{IN_JOB, JobControl, watched};
use super::{JOBS, ORPHAN_WATCH, Store, sys};
use crate::backend::WriteBatch;
use crate::catalog::{JobKind, JobRecord, JobStatus};
use crate::delta::Reason;
use crate::error::{Error, Result};
use crate::flush::compact::{CompactionPolicy, compact_scope, remove_replaced};
use crate::flush::{FlushOutcome, flush_scope};
use crate::ids::{KeyScope, TableId, UserId};
use crate::job::{JobContext, JobOutcome};
use crate::schema::TableType;
use crate::table::TableHandle;

/// Which scopes a flush or compaction covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every user of a USER table, or the one keyspace of a SHARED table.
    All,
    /// One user of a USER table.
    User(UserId),
}

impl Scope {
    /// The user of a one-user scope.
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Self::User(u) => Some(u),
            Self::All => None,
        }
    }
}

/// What an application job ([`Store::run_app_job`]) uses while it runs: its id, progress
/// reports that `system.jobs` shows, and whether `KILL JOB` asked it to stop.
#[derive(Debug, Clone)]
pub struct JobProgress {
    store: Store,
    job: JobContext,
}

impl JobProgress {
    /// The job's id.
    pub fn id(&self) -> &str {
        self.job.id()
    }

    /// Records what the job has done so far.
    pub async fn report(&self, done: &JobOutcome) -> Result<()> {
        self.store.job_progress(self.job.id(), done).await
    }

    /// [`Error::JobCancelled`] once `KILL JOB` asked the job to stop: call it at safe points.
    pub fn check_cancelled(&self) -> Result<()> {
        self.job.check_cancel()
    }
}

impl From<FlushOutcome> for JobOutcome {
    fn from(o: FlushOutcome) -> Self {
        Self {
            rows: o.rows,
            bytes: o.bytes,
            files: o.files,
            summary: None,
        }
    }
}

impl Store {
    /// The scopes a flush of `scope` covers: one user, or every scope with buffered rows.
    fn flush_scopes(handle: &TableHandle, scope: &Scope) -> Result<Vec<KeyScope>> {
        Ok(match scope {
            Scope::User(u) => vec![handle.scope(Some(u))?],
            Scope::All => handle
                .buffered_scopes()
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
        })
    }

    /// Flushes buffered rows of a table (all scopes or one user) to Parquet, as a job.
    pub async fn flush_table(&self, table: &TableId, scope: Scope) -> Result<JobRecord> {
        let handle = self.handle(table).await?;
        if handle.definition().table_type == TableType::Stream {
            return Err(Error::InvalidQuery {
                table: table.to_string(),
                reason: "STREAM tables are never flushed".into(),
            });
        }
        let store = self.clone();
        self.run_table_job(JobKind::Flush, handle, scope, move |handle, scope, job| {
            let store = store.clone();
            async move {
                let mut total = FlushOutcome::default();
                let mut range_deleted = false;
                for s in Self::flush_scopes(&handle, &scope)? {
                    let flushed = flush_scope(&handle, &s, &store.inner.seq, &job).await?;
                    total.add(flushed.outcome);
                    range_deleted |= flushed.range_deleted;
                }
                if total.files > 0 || total.deleted > 0 {
                    store.publish(&handle, Reason::Flush).await;
                }
                if range_deleted {
                    // Once per table flush, not per scope: one memtable flush for all users.
                    store.reclaim_flushed(&handle).await;
                }
                *handle.last_flush.lock() = store.now_ms();
                Ok(total.into())
            }
        })
        .await
    }

    /// Runs `work` as a job of `kind` on one table: queued until it holds the table's
    /// maintenance lock (jobs on one table run one at a time), run on a live handle.
    pub(super) async fn run_table_job<F, Fut>(
        &self,
        kind: JobKind,
        handle: Arc<TableHandle>,
        scope: Scope,
        mut work: F,
    ) -> Result<JobRecord>
    where
        F: FnMut(Arc<TableHandle>, Scope, JobContext) -> Fut,
        Fut: std::future::Future<Output = Result<JobOutcome>>,
    {
        let user = scope.user().cloned();
        let table = handle.id.clone();
        let lock = Some(handle.clone());
        self.run_job(kind, Some(table), user, lock, move |job| {
            work(handle.clone(), scope.clone(), job)
        })
        .await
    }

    /// After flushes that removed their rows with range deletes: the flushed entries are
    /// still in the hot engine under the range tombstones, and scans of the table step over
    /// them until the engine drops them, so ask it to now. The rows are committed: a hint that
    /// fails leaves that to the engine's own schedule, and is logged and counted.
    async fn reclaim_flushed(&self, table: &TableHandle) {
        if let Err(e) = table.storage.hot.reclaim(&table.hot).await {
            self.record_background_failure("reclaim", Some(&table.id), &e);
        }
    }

    /// Runs work of the embedding application (an export, an import) as a job of `kind`:
    /// recorded in `system.jobs` with its progress, stoppable by `KILL JOB`, run once (no
    /// retries: the work may not be idempotent).
    pub async fn run_app_job<F, Fut>(
        &self,
        kind: JobKind,
        user: Option<UserId>,
        work: F,
    ) -> Result<JobRecord>
    where
        F: FnOnce(JobProgress) -> Fut,
        Fut: std::future::Future<Output = Result<JobOutcome>>,
    {
        let mut work = Some(work);
        let store = self.clone();
        self.run_job(kind, None, user, None, move |job| {
            let progress = JobProgress {
                store: store.clone(),
                job,
            };
            let work = work.take();
            async move {
                match work {
                    Some(work) => work(progress).await,
                    // Invariant: `max_attempts` of application jobs is 1, so there is no
                    // second call; were there one, it fails instead of running twice.
                    None => Err(Error::JobCancelled {
                        job: progress.job.id().to_owned(),
                    }),
                }
            }
        })
        .await
    }

    /// Rewrites a table's files (all scopes or one user) without their deleted rows, as a job.
    pub async fn compact_table(
        &self,
        table: &TableId,
        scope: Scope,
        policy: CompactionPolicy,
    ) -> Result<JobRecord> {
        let handle = self.handle(table).await?;
        let store = self.clone();
        let work = move |handle: Arc<TableHandle>, scope: Scope, job: JobContext| {
            let store = store.clone();
            async move {
                let mut total = FlushOutcome::default();
                let mut replaced = Vec::new();
                for s in handle.file_scopes() {
                    if let Scope::User(u) = &scope
                        && s.user() != Some(u)
                    {
                        continue;
                    }
                    let seq = &store.inner.seq;
                    let done = compact_scope(&handle, &s, seq, policy, &job).await?;
                    total.add(done.outcome);
                    replaced.extend(done.replaced);
                }
                // The log stops naming the replaced files before they are deleted.
                if !replaced.is_empty() {
                    store.publish(&handle, Reason::Compaction).await;
                }
                remove_replaced(&handle, replaced).await?;
                Ok(total.into())
            }
        };
        self.run_table_job(JobKind::Compaction, handle, scope, work)
            .await
    }

    /// One job record.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.inner
            .system
            .get(&sys(JOBS), id.as_bytes())
            .await?
            .map(|b| JobRecord::decode(&b))
            .transpose()
    }

    /// Every job record, oldest first.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.catalog(JOBS, |_, v| JobRecord::decode(v)).await
    }

    /// Asks a running job to stop before it commits.
    pub async fn cancel_job(&self, id: &str) -> Result<()> {
        match self.inner.jobs.cancels.lock().get(id) {
            Some(control) => {
                control.killed.store(true, Ordering::Relaxed);
                control.cancel.store(true, Ordering::Relaxed);
                Ok(())
            }
            None => Err(Error::JobNotFound { job: id.to_owned() }),
        }
    }

    pub(super) async fn put_job(&self, job: &JobRecord) -> Result<()> {
        self.inner
            .system
            .put(&sys(JOBS), job.id.clone().into(), job.encode().into())
            .await
    }

    /// Runs `work` as a job: recorded `new`, `queued` until it holds `lock`'s maintenance lock
    /// (when the job is on a table) and one of the store's job workers, then `running`. A transient failure (see
    /// [`Error::is_transient`]) is recorded as `retrying` and the work runs again after a
    /// backoff with jitter, up to [`JobKind::max_attempts`]; the job ends `completed`,
    /// `failed` or, when [`cancel_job`](Self::cancel_job) stopped it, `cancelled`.
    pub(super) async fn run_job<F, Fut>(
        &self,
        kind: JobKind,
        table: Option<TableId>,
        user: Option<UserId>,
        lock: Option<Arc<TableHandle>>,
        mut work: F,
    ) -> Result<JobRecord>
    where
        F: FnMut(JobContext) -> Fut,
        Fut: std::future::Future<Output = Result<JobOutcome>>,
    {
        self.check_open()?;
        // A job of this kind on this table and scope that a restart interrupted is the one
        // that runs now, under its own record.
        let resumed = {
            let mut requeued = self.inner.jobs.requeued.lock();
            let same = |j: &JobRecord| j.kind == kind && j.table == table && j.user == user;
            requeued
                .iter()
                .position(same)
                .map(|i| requeued.swap_remove(i))
        };
        let mut job = resumed.unwrap_or_else(|| JobRecord {
            id: format!("j-{:016x}", self.inner.seq.next()),
            kind,
            table,
            user,
            status: JobStatus::New,
            created_at_ms: self.now_ms(),
            started_at_ms: None,
            ended_at_ms: None,
            rows: 0,
            bytes: 0,
            files: 0,
            error: None,
            summary: None,
            attempts: 0,
        });
        self.put_job(&job).await?;
        let control = Arc::new(JobControl::default());
        self.inner
            .jobs
            .cancels
            .lock()
            .insert(job.id.clone(), control.clone());
        // The worker is held until the job's final record is written.
        let mut worker = None;
        let result = self
            .attempts(&mut job, lock, &control, &mut worker, &mut work)
            .await;
        self.inner.jobs.cancels.lock().remove(&job.id);
        job.ended_at_ms = Some(self.now_ms());
        let outcome = match result {
            Ok(done) => {
                job.status = JobStatus::Completed;
                job.rows = done.rows;
                job.bytes = done.bytes;
                job.files = done.files;
                job.summary = done.summary;
                Ok(())
            }
            Err(e @ Error::JobCancelled { .. }) => {
                job.status = JobStatus::Cancelled;
                job.error = Some(e.to_string());
                Err(e)
            }
            Err(e) => {
                job.status = JobStatus::Failed;
                job.error = Some(e.report());
                Err(e)
            }
        };
        self.put_job(&job).await?;
        drop(worker);
        outcome.map(|()| job)
    }

    /// The queued and running part of [`run_job`](Self::run_job): every attempt, and the
    /// waits between them.
    async fn attempts<'a, F, Fut>(
        &'a self,
        job: &mut JobRecord,
        lock: Option<Arc<TableHandle>>,
        control: &JobControl,
        worker: &mut Option<tokio::sync::SemaphorePermit<'a>>,
        work: &mut F,
    ) -> Result<JobOutcome>
    where
        F: FnMut(JobContext) -> Fut,
        Fut: std::future::Future<Output = Result<JobOutcome>>,
    {
        let cancel = &control.cancel;
        job.status = JobStatus::Queued;
        self.put_job(job).await?;
        let _maintenance = match &lock {
            Some(handle) => Some(handle.lock_files().await),
            None => None,
        };
        // A job started by a running job uses its parent's worker: waiting for another could
        // deadlock once every worker is held by a parent.
        if IN_JOB.try_with(|()| ()).is_err() {
            let permit = self
                .inner
                .jobs
                .workers
                .acquire()
                .await
                .map_err(|_| Error::Closed {
                    engine: "store",
                    reason: "the job workers were shut down",
                })?;
            *worker = Some(permit);
        }
        loop {
            if let Some(handle) = &lock {
                handle.check_live()?;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::JobCancelled {
                    job: job.id.clone(),
                });
            }
            job.status = JobStatus::Running;
            job.attempts += 1;
            job.started_at_ms.get_or_insert(self.now_ms());
            self.put_job(job).await?;
            let limit = self.inner.config.job_timeout_of(job.kind);
            let context = JobContext::new(&job.id, cancel.clone());
            let attempt = IN_JOB.scope((), work(context));
            match watched(attempt, limit, control, &job.id).await {
                Err(e) if e.is_transient() && job.attempts < job.kind.max_attempts() => {
                    tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts,
                        "retrying after a transient failure: {}", e.report());
                    job.status = JobStatus::Retrying;
                    job.error = Some(e.report());
                    self.put_job(job).await?;
                    tokio::time::sleep(self.retry_backoff(job.attempts)).await;
                }
                result => return result,
            }
        }
    }

    /// The wait before attempt `attempts + 1`: the configured backoff doubled per attempt,
    /// at most 32 times it, and a random half of it added so retries of many jobs spread out.
    fn retry_backoff(&self, attempts: u32) -> std::time::Duration {
        use std::hash::{BuildHasher, Hasher};
        let base = self.inner.config.retry_backoff * 2u32.pow(attempts.saturating_sub(1).min(5));
        // A fresh `RandomState` is randomly keyed: its hash of nothing is a random number.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let jitter = base.mul_f64((random % 1000) as f64 / 2000.0);
        base + jitter
    }

    /// At open: the jobs a restart interrupted. Flushes and compactions (idempotent: their
    /// work commits in one batch or not at all) are queued again and run at the next
    /// maintenance pass under their own record; the others are marked failed (moves and
    /// drops finish through their table task).
    pub(super) async fn requeue_interrupted_jobs(&self) -> Result<()> {
        for mut job in self.jobs().await? {
            if job.status.is_final() {
                continue;
            }
            if matches!(job.kind, JobKind::Flush | JobKind::Compaction) && job.table.is_some() {
                job.status = JobStatus::Queued;
                job.error = Some("interrupted by a restart; queued to run again".into());
                self.put_job(&job).await?;
                self.inner.jobs.requeued.lock().push(job);
            } else {
                job.status = JobStatus::Failed;
                job.ended_at_ms = Some(self.now_ms());
                job.error = Some("interrupted by a restart; its work was not committed".into());
                self.put_job(&job).await?;
            }
        }
        Ok(())
    }

    /// Runs the jobs a restart interrupted (see `requeue_interrupted_jobs`); returns how many
    /// completed. One that cannot start (its table is gone) is marked failed.
    pub(super) async fn resume_requeued(&self) -> Result<u64> {
        let waiting: Vec<JobRecord> = self.inner.jobs.requeued.lock().clone();
        let mut completed = 0;
        for job in waiting {
            let Some(table) = job.table.clone() else {
                continue;
            };
            let scope = job.user.clone().map_or(Scope::All, Scope::User);
            let result = match job.kind {
                JobKind::Compaction => {
                    self.compact_table(&table, scope, CompactionPolicy::default())
                        .await
                }
                _ => self.flush_table(&table, scope).await,
            };
            let unstarted = {
                let mut requeued = self.inner.jobs.requeued.lock();
                let at = requeued.iter().position(|j| j.id == job.id);
                at.map(|i| requeued.swap_remove(i))
            };
            match (result, unstarted) {
                (Ok(_), _) => completed += 1,
                (Err(e), Some(mut job)) => {
                    job.status = JobStatus::Failed;
                    job.ended_at_ms = Some(self.now_ms());
                    job.error = Some(e.report());
                    self.put_job(&job).await?;
                }
                (Err(e), None) => self.record_background_failure("resume", Some(&table), &e),
            }
        }
        Ok(completed)
    }

    /// Removes finished jobs past the retention time, and the oldest finished ones beyond the
    /// retention count.
    pub(super) async fn remove_old_jobs(&self) -> Result<u64> {
        let config = &self.inner.config;
        let now = self.now_ms();
        let cutoff = now - i64::try_from(config.job_retention.as_millis()).unwrap_or(i64::MAX);
        // A job that ended within an orphan grace period may have left files a cleanup cannot
        // take yet: its table goes on the watch list with its record (see
        // `tables_touched_since_last_cleanup`).
        let recent =
            now.saturating_sub(i64::try_from(config.orphan_grace.as_millis()).unwrap_or(i64::MAX));
        // Job ids grow with time, so the catalog lists them oldest first.
        let finished: Vec<JobRecord> = self
            .jobs()
            .await?
            .into_iter()
            .filter(|j| j.status.is_final())
            .collect();
        let over = finished.len().saturating_sub(config.job_retention_count);
        let mut batch = WriteBatch::new();
        for (i, job) in finished.into_iter().enumerate() {
            let ended = job.ended_at_ms.unwrap_or(job.created_at_ms);
            if i < over || ended < cutoff {
                if let Some(table) = job.table.as_ref().filter(|_| ended >= recent) {
                    batch.put(&sys(ORPHAN_WATCH), table.to_string(), ended.to_be_bytes());
                }
                batch.delete(&sys(JOBS), job.id);
            }
        }
        let n = batch.len() as u64;
        if n > 0 {
            self.inner.system.batch(batch).await?;
        }
        Ok(n)
    }

    /// Records a running job's progress.
    pub(super) async fn job_progress(&self, job: &str, done: &JobOutcome) -> Result<()> {
        if let Some(mut record) = self.job(job).await? {
            record.rows = done.rows;
            record.bytes = done.bytes;
            record.files = done.files;
            self.put_job(&record).await?;
        }
        Ok(())
    }

    /// Whether a job is running in this process.
    pub(super) fn job_is_running(&self, job: &str) -> bool {
        self.inner.jobs.cancels.lock().contains_key(job)
    }
}
