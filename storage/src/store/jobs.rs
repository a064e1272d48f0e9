//! Jobs: their records in `sys.jobs`, the runner that records each job's life, and the jobs a
//! user starts on a table (flush, compaction).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{JOBS, Store, now_ms, sys};
use crate::backend::{WriteBatch, WriteOp};
use crate::catalog::{JobKind, JobRecord, JobStatus};
use crate::delta::Reason;
use crate::error::{Error, Result};
use crate::flush::compact::{CompactionPolicy, compact_scope, remove_replaced};
use crate::flush::{FlushOutcome, flush_scope};
use crate::ids::{KeyScope, TableId, UserId};
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

/// What a job did, as its record shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JobOutcome {
    /// Rows written (flush, compaction, move) or removed (expiry, cleanup).
    pub(crate) rows: u64,
    /// Bytes written.
    pub(crate) bytes: u64,
    /// Files written (or removed, by cleanup).
    pub(crate) files: u64,
    /// What it did, in words, where the counters do not say it all.
    pub(crate) summary: Option<String>,
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
    /// The scopes of a table a job on `scope` covers: one user, or every scope with buffered
    /// rows (and with files, when `with_files`).
    fn scopes_of(handle: &TableHandle, scope: &Scope, with_files: bool) -> Result<Vec<KeyScope>> {
        Ok(match scope {
            Scope::User(u) => vec![handle.scope(Some(u))?],
            Scope::All => {
                let mut s: Vec<KeyScope> = handle
                    .buffered_scopes()
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
                if with_files {
                    s.extend(handle.file_scopes());
                }
                s.sort();
                s.dedup();
                s
            }
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
        self.run_table_job(
            JobKind::Flush,
            handle,
            scope,
            |handle, scope, job, cancel| async move {
                let mut total = FlushOutcome::default();
                let mut range_deleted = false;
                for s in Self::scopes_of(&handle, &scope, false)? {
                    let flushed = flush_scope(&handle, &s, &store.inner.seq, &job, &cancel).await?;
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
                *handle.last_flush.lock() = std::time::Instant::now();
                Ok(total.into())
            },
        )
        .await
    }

    /// Runs `work` as a job of `kind` on one table, holding the table's maintenance lock on a
    /// live handle.
    pub(super) async fn run_table_job<F, Fut>(
        &self,
        kind: JobKind,
        handle: Arc<TableHandle>,
        scope: Scope,
        work: F,
    ) -> Result<JobRecord>
    where
        F: FnOnce(Arc<TableHandle>, Scope, String, Arc<AtomicBool>) -> Fut,
        Fut: std::future::Future<Output = Result<JobOutcome>>,
    {
        let user = scope.user().cloned();
        let table = handle.id.clone();
        self.run_job(kind, Some(table), user, move |job, cancel| async move {
            let _maintenance = handle.maintenance.lock().await;
            handle.check_live()?;
            work(handle.clone(), scope, job, cancel).await
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

    /// Rewrites a table's files (all scopes or one user) without their deleted rows, as a job.
    pub async fn compact_table(
        &self,
        table: &TableId,
        scope: Scope,
        policy: CompactionPolicy,
    ) -> Result<JobRecord> {
        let handle = self.handle(table).await?;
        let store = self.clone();
        let work = move |handle: Arc<TableHandle>,
                         scope: Scope,
                         job: String,
                         cancel: Arc<AtomicBool>| async move {
            let mut total = FlushOutcome::default();
            let mut replaced = Vec::new();
            for s in handle.file_scopes() {
                if let Scope::User(u) = &scope
                    && s.user() != Some(u)
                {
                    continue;
                }
                let seq = &store.inner.seq;
                let done = compact_scope(&handle, &s, seq, policy, &job, &cancel).await?;
                total.add(done.outcome);
                replaced.extend(done.replaced);
            }
            // The log stops naming the replaced files before they are deleted.
            if !replaced.is_empty() {
                store.publish(&handle, Reason::Compaction).await;
            }
            remove_replaced(&handle, replaced).await?;
            Ok(total.into())
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
        match self.inner.cancels.lock().get(id) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
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

    pub(super) async fn run_job<F, Fut>(
        &self,
        kind: JobKind,
        table: Option<TableId>,
        user: Option<UserId>,
        work: F,
    ) -> Result<JobRecord>
    where
        F: FnOnce(String, Arc<AtomicBool>) -> Fut,
        Fut: std::future::Future<Output = Result<JobOutcome>>,
    {
        self.check_open()?;
        let mut job = JobRecord {
            id: format!("j-{:016x}", self.inner.seq.next()),
            kind,
            table,
            user,
            status: JobStatus::New,
            created_at_ms: now_ms(),
            started_at_ms: None,
            ended_at_ms: None,
            rows: 0,
            bytes: 0,
            files: 0,
            error: None,
            summary: None,
        };
        self.put_job(&job).await?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.inner
            .cancels
            .lock()
            .insert(job.id.clone(), cancel.clone());
        job.status = JobStatus::Running;
        job.started_at_ms = Some(now_ms());
        self.put_job(&job).await?;
        let result = work(job.id.clone(), cancel).await;
        self.inner.cancels.lock().remove(&job.id);
        job.ended_at_ms = Some(now_ms());
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
        outcome.map(|()| job)
    }

    pub(super) async fn fail_interrupted_jobs(&self) -> Result<()> {
        for mut job in self.jobs().await? {
            if !job.status.is_final() {
                job.status = JobStatus::Failed;
                job.ended_at_ms = Some(now_ms());
                job.error = Some("interrupted by a restart; its work was not committed".into());
                self.put_job(&job).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn remove_old_jobs(&self) -> Result<u64> {
        let cutoff =
            now_ms() - i64::try_from(self.inner.config.job_retention.as_millis()).unwrap_or(0);
        let mut batch = WriteBatch::new();
        for job in self.jobs().await? {
            if job.status.is_final() && job.ended_at_ms.unwrap_or(job.created_at_ms) < cutoff {
                batch.ops.push(WriteOp::Delete {
                    partition: sys(JOBS),
                    key: job.id.into(),
                });
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
        self.inner.cancels.lock().contains_key(job)
    }
}
