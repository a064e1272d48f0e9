//! Maintenance: one pass that applies flush policies, removes expired STREAM rows and runs the
//! cleanup job when due, run by the background scheduler of a long-lived store or on demand by
//! [`Store::maintain`] (one-shot processes, cron); the cleanup job itself; and the log of
//! background failures (work nobody waits for is never silently dropped: each failure is
//! logged with `tracing` and counted per kind, see [`Store::background_failures`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::jobs::Scope;
use super::{ORPHAN_WATCH, Store, sys};
use crate::backend::{ScanRequest, WriteBatch};
use crate::catalog::{JobKind, JobRecord, JobStatus};
use crate::changes::{oldest_logged, retention_floor, trim_log};
use crate::error::{Error, Result};
use crate::flush::compact::collect_orphans;
use crate::format::{HotCount, hot_partition, log_partition};
use crate::ids::{KeyScope, TableId};
use crate::job::JobOutcome;
use crate::schema::{ChangeRetention, TableDefinition, TableType};
use crate::table::TableHandle;

/// Hot entries read per chunk of a STREAM expiry.
const EXPIRY_CHUNK: usize = 4096;

/// Failures of one kind of background work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundFailure {
    /// What failed: `flush`, `expiry`, `cleanup`, `reclaim`, `catalog`.
    pub kind: &'static str,
    /// How many times it failed since the store opened.
    pub count: u64,
    /// The table of the last failure, if it concerned one.
    pub table: Option<TableId>,
    /// The last failure, with its causes.
    pub last_error: String,
    /// When it last failed, ms since the epoch.
    pub last_at_ms: i64,
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceOutcome {
    /// Flushes and compactions a restart interrupted, run again and completed.
    pub resumed: u64,
    /// Flush jobs a table's policy asked for, run.
    pub flushes: u64,
    /// Rows those flushes wrote to Parquet.
    pub rows_flushed: u64,
    /// Expired STREAM rows removed from the hot engines.
    pub stream_rows_expired: u64,
    /// The cleanup job, when it was due.
    pub cleanup: Option<JobRecord>,
    /// Pieces of work that failed (each also logged and counted as a background failure).
    pub failures: u64,
    /// Tables not visited because the time budget ran out.
    pub tables_skipped: usize,
    /// Change logs trimmed to their table's `CHANGE_RETENTION`.
    pub log_trims: u64,
}

/// The store's part that runs background work: the task (one tick every
/// `scheduler_interval`), the failures of work nobody waits for, per kind (a leaf lock), and
/// when the last cleanup job ended (ms; `i64::MIN` until read from the job records).
#[derive(Debug)]
pub(super) struct Scheduler {
    pub(super) task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    failures: parking_lot::Mutex<BTreeMap<&'static str, BackgroundFailure>>,
    last_cleanup_ms: AtomicI64,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self {
            task: parking_lot::Mutex::default(),
            failures: parking_lot::Mutex::default(),
            last_cleanup_ms: AtomicI64::new(i64::MIN),
        }
    }
}

/// What a cleanup job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupOutcome {
    /// Finished job records past their retention, removed.
    pub jobs_removed: u64,
    /// Interrupted moves and drops finished.
    pub tasks_finished: u64,
    /// Unreferenced Parquet files past their grace period, deleted.
    pub orphans_removed: u64,
    /// Expired STREAM rows removed from the hot engines.
    pub stream_rows_expired: u64,
}

impl From<CleanupOutcome> for JobOutcome {
    fn from(c: CleanupOutcome) -> Self {
        Self {
            rows: c.stream_rows_expired,
            bytes: 0,
            files: c.orphans_removed,
            summary: Some(format!(
                "removed {} job record(s), {} orphaned file(s) and {} expired STREAM row(s); \
                 finished {} interrupted task(s)",
                c.jobs_removed, c.orphans_removed, c.stream_rows_expired, c.tasks_finished
            )),
        }
    }
}

impl Store {
    /// Starts the background scheduler: one tick every `scheduler_interval`, until the store
    /// closes or is dropped.
    pub(super) fn start_scheduler(&self) {
        let weak = std::sync::Arc::downgrade(&self.inner);
        let interval = self.inner.config.scheduler_interval;
        let handle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { break };
                let store = Store { inner };
                if store.inner.closed.load(Ordering::Acquire) {
                    break;
                }
                store.maintenance_pass(None).await;
            }
        });
        *self.inner.scheduler.task.lock() = Some(handle);
    }

    /// Logs and counts a failure of background work.
    pub(super) fn record_background_failure(
        &self,
        kind: &'static str,
        table: Option<&TableId>,
        error: &Error,
    ) {
        let report = error.report();
        match table {
            Some(t) => tracing::warn!(kind, table = %t, error = %report, "background work failed"),
            None => tracing::warn!(kind, error = %report, "background work failed"),
        }
        let mut log = self.inner.scheduler.failures.lock();
        let entry = log.entry(kind).or_insert_with(|| BackgroundFailure {
            kind,
            count: 0,
            table: None,
            last_error: String::new(),
            last_at_ms: 0,
        });
        entry.count += 1;
        entry.table = table.cloned();
        entry.last_error = report;
        entry.last_at_ms = self.now_ms();
    }

    /// Failures of background work since the store opened, one entry per kind of work (a
    /// failed background flush also leaves a `failed` job record).
    pub fn background_failures(&self) -> Vec<BackgroundFailure> {
        self.inner
            .scheduler
            .failures
            .lock()
            .values()
            .cloned()
            .collect()
    }

    /// Runs the maintenance that is due once, now: flushes the tables whose policy asks for
    /// it, removes expired STREAM rows and runs the cleanup job when `cleanup_interval` has
    /// passed since the last one. No new table is started once `budget` has run out (work in
    /// progress finishes). Failures are counted in the outcome and as background failures;
    /// the pass goes on with the next table.
    pub async fn maintain(&self, budget: Duration) -> Result<MaintenanceOutcome> {
        self.check_open()?;
        let deadline = tokio::time::Instant::now().checked_add(budget);
        Ok(self.maintenance_pass(deadline).await)
    }

    async fn maintenance_pass(&self, deadline: Option<tokio::time::Instant>) -> MaintenanceOutcome {
        let mut done = MaintenanceOutcome::default();
        let mut failed = |kind: &'static str, table: Option<&TableId>, e: &Error| {
            self.record_background_failure(kind, table, e);
            done.failures += 1;
        };
        let resumed = match self.resume_requeued().await {
            Ok(n) => n,
            Err(e) => {
                failed("resume", None, &e);
                0
            }
        };
        let tables = match self.all_tables().await {
            Ok(t) => t,
            Err(e) => {
                failed("catalog", None, &e);
                return done;
            }
        };
        // Tables are maintained concurrently, as many at a time as there are job workers.
        let workers = self.inner.config.job_workers.max(1);
        let passes: Vec<TablePass> = futures::stream::iter(tables)
            .map(|def| self.maintain_table(def, deadline))
            .buffer_unordered(workers)
            .collect()
            .await;
        let (mut flushes, mut rows_flushed, mut expired, mut skipped) = (0, 0, 0, 0);
        for pass in passes {
            done.log_trims += pass.log_trims;
            flushes += pass.flushes;
            rows_flushed += pass.rows_flushed;
            expired += pass.expired;
            skipped += usize::from(pass.skipped);
            for (kind, table, e) in &pass.failures {
                failed(kind, Some(table), e);
            }
        }
        let mut cleanup = None;
        let in_time = deadline.is_none_or(|d| tokio::time::Instant::now() < d);
        match self.cleanup_due().await {
            Ok(true) if in_time => match self.cleanup().await {
                Ok(job) => cleanup = Some(job),
                Err(e) => failed("cleanup", None, &e),
            },
            Ok(_) => {}
            Err(e) => failed("cleanup", None, &e),
        }
        done.resumed = resumed;
        done.flushes = flushes;
        done.rows_flushed = rows_flushed;
        done.stream_rows_expired = expired;
        done.tables_skipped = skipped;
        done.cleanup = cleanup;
        done
    }

    /// One table's share of a maintenance pass: its due flushes, or its STREAM expiry.
    async fn maintain_table(
        &self,
        def: TableDefinition,
        deadline: Option<tokio::time::Instant>,
    ) -> TablePass {
        let mut pass = TablePass::default();
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            pass.skipped = true;
            return pass;
        }
        // A table nobody opened and with nothing hot has nothing to flush or expire: one seek
        // tells, so a pass over a data dir of many idle tables opens none of them.
        // A closed one is opened only when its change log has entries past retention.
        let idle = match self.idle_and_closed(&def).await {
            Ok(true) => match self.log_trim_due(&def).await {
                Ok(due) => !due,
                Err(e) => {
                    pass.failures.push(("trim", def.id, e));
                    return pass;
                }
            },
            Ok(false) => false,
            Err(e) => {
                pass.failures.push(("catalog", def.id, e));
                return pass;
            }
        };
        if idle {
            return pass;
        }
        let handle = match self.handle(&def.id).await {
            Ok(h) => h,
            Err(e) => {
                pass.failures.push(("catalog", def.id, e));
                return pass;
            }
        };
        // A move or flush in progress holds the table: its log is trimmed next pass.
        if let Some(_maintenance) = handle.try_lock_files() {
            match trim_log(&handle, self.now_ms()).await {
                Ok(Some(_)) => pass.log_trims += 1,
                Ok(None) => {}
                Err(e) => pass.failures.push(("trim", def.id.clone(), e)),
            }
        }
        if def.table_type == TableType::Stream {
            match self.expire_stream_job(handle).await {
                Ok(job) => pass.expired += job.map_or(0, |j| j.rows),
                Err(e) => pass.failures.push(("expiry", def.id, e)),
            }
            return pass;
        }
        for scope in due_flushes(&handle) {
            match self.flush_table(&def.id, scope).await {
                Ok(job) => {
                    pass.flushes += 1;
                    pass.rows_flushed += job.rows;
                }
                Err(e) => pass.failures.push(("flush", def.id.clone(), e)),
            }
        }
        pass
    }

    /// Whether a closed table's change log holds entries past its time-based retention (a
    /// count-based retention is enforced while the table is in use).
    async fn log_trim_due(&self, def: &TableDefinition) -> Result<bool> {
        let floor = match def.options.change_retention {
            ChangeRetention::Off => i64::MAX,
            retention => match retention_floor(retention, self.now_ms()) {
                Some(floor) => floor,
                None => return Ok(false),
            },
        };
        let storage = self.storage(&def.storage_id).await?;
        let oldest = oldest_logged(storage.hot.as_ref(), &log_partition(&def.id)).await?;
        Ok(oldest.is_some_and(|seq| seq < floor))
    }

    /// Whether the table's handle is not open and its hot partition holds no entry.
    async fn idle_and_closed(&self, def: &TableDefinition) -> Result<bool> {
        if self.inner.tables.lock().await.contains_key(&def.id) {
            return Ok(false);
        }
        let storage = self.storage(&def.storage_id).await?;
        let first = storage
            .hot
            .scan(&hot_partition(&def.id), &ScanRequest::default().limit(1))
            .await?;
        Ok(first.entries.is_empty())
    }

    /// Removes a STREAM table's expired rows as an `expiry` job, when a read-only look finds
    /// any (so passes with nothing to remove record no job). The job looks again under the
    /// table's write lock: a row written since counts by its new time.
    async fn expire_stream_job(&self, handle: Arc<TableHandle>) -> Result<Option<JobRecord>> {
        if !stream_expiry_due(&handle).await? {
            return Ok(None);
        }
        let job = self
            .run_table_job(
                JobKind::Expiry,
                handle,
                Scope::All,
                |handle, _, _| async move {
                    Ok(JobOutcome {
                        rows: expire_stream(&handle).await?,
                        ..JobOutcome::default()
                    })
                },
            )
            .await?;
        Ok(Some(job))
    }

    /// Whether `cleanup_interval` has passed since the last cleanup job ended (in this
    /// process or, by its job record, an earlier one).
    async fn cleanup_due(&self) -> Result<bool> {
        let mut last = self.inner.scheduler.last_cleanup_ms.load(Ordering::Acquire);
        if last == i64::MIN {
            last = self
                .jobs()
                .await?
                .iter()
                .filter(|j| j.kind == JobKind::Cleanup && j.status == JobStatus::Completed)
                .filter_map(|j| j.ended_at_ms)
                .max()
                .unwrap_or(i64::MIN + 1);
            self.inner
                .scheduler
                .last_cleanup_ms
                .fetch_max(last, Ordering::AcqRel);
        }
        let interval =
            i64::try_from(self.inner.config.cleanup_interval.as_millis()).unwrap_or(i64::MAX);
        Ok(self.now_ms().saturating_sub(last) >= interval)
    }

    /// The tables a cleanup must look at for orphaned files: those named by a job that had not
    /// ended an orphan grace period before the previous completed cleanup started (only a job
    /// writes files, so an orphan comes from one; older ones were that cleanup's to collect),
    /// and those on the watch list (jobs whose records went before that). `None` when no
    /// cleanup completed yet: every table.
    pub(super) async fn tables_touched_since_last_cleanup(
        &self,
    ) -> Result<Option<BTreeSet<TableId>>> {
        let watched: Vec<TableId> = self
            .catalog(ORPHAN_WATCH, |k, _| {
                String::from_utf8_lossy(k).parse::<TableId>()
            })
            .await?;
        let jobs = self.jobs().await?;
        let Some(previous) = jobs
            .iter()
            .filter(|j| j.kind == JobKind::Cleanup && j.status == JobStatus::Completed)
            .filter_map(|j| j.started_at_ms)
            .max()
        else {
            return Ok(None);
        };
        let grace = i64::try_from(self.inner.config.orphan_grace.as_millis()).unwrap_or(i64::MAX);
        let from = previous.saturating_sub(grace);
        Ok(Some(
            jobs.into_iter()
                .filter(|j| j.ended_at_ms.is_none_or(|ended| ended >= from))
                .filter_map(|j| j.table)
                .chain(watched)
                .collect(),
        ))
    }

    /// Takes off the watch list the tables whose watched job ended an orphan grace period
    /// before `started` (the start of a cleanup that looked at them: their orphans were old
    /// enough to go).
    async fn unwatch_collected(&self, started: i64) -> Result<()> {
        let grace = i64::try_from(self.inner.config.orphan_grace.as_millis()).unwrap_or(i64::MAX);
        let done_before = started.saturating_sub(grace);
        let stale: Vec<Vec<u8>> = self
            .catalog(ORPHAN_WATCH, |k, v| {
                let ended = v.try_into().map(i64::from_be_bytes).unwrap_or(i64::MIN);
                Ok((ended < done_before).then(|| k.to_vec()))
            })
            .await?
            .into_iter()
            .flatten()
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for key in stale {
            batch.delete(&sys(ORPHAN_WATCH), key);
        }
        self.inner.system.batch(batch).await
    }

    /// Runs the cleanup job now: removes finished jobs past their retention, orphaned files
    /// past the grace period and expired STREAM rows, and finishes interrupted tasks. Tables
    /// no job worked on since the previous cleanup, closed and with nothing hot, are skipped:
    /// a data dir of many idle tables costs a cleanup one seek per table.
    pub async fn cleanup(&self) -> Result<JobRecord> {
        let store = self.clone();
        self.run_job(JobKind::Cleanup, None, None, None, move |_job| {
            let store = store.clone();
            async move {
                // Before old job records go: they name the tables worked on since.
                let started = store.now_ms();
                let touched = store.tables_touched_since_last_cleanup().await?;
                let mut done = CleanupOutcome {
                    jobs_removed: store.remove_old_jobs().await?,
                    tasks_finished: store.resume_tasks().await?,
                    ..CleanupOutcome::default()
                };
                for def in store.all_tables().await? {
                    if let Some(touched) = &touched
                        && !touched.contains(&def.id)
                        && store.idle_and_closed(&def).await?
                    {
                        continue;
                    }
                    let handle = store.handle(&def.id).await?;
                    if def.table_type == TableType::Stream {
                        done.stream_rows_expired += expire_stream(&handle).await?;
                        continue;
                    }
                    let _m = handle.lock_files().await;
                    if handle.is_retired() {
                        continue;
                    }
                    done.orphans_removed +=
                        collect_orphans(&handle, store.inner.config.orphan_grace).await?;
                }
                store.unwatch_collected(started).await?;
                Ok(done.into())
            }
        })
        .await
        .inspect(|job| {
            let ended = job.ended_at_ms.unwrap_or_else(|| self.now_ms());
            self.inner
                .scheduler
                .last_cleanup_ms
                .fetch_max(ended, Ordering::AcqRel);
        })
    }
}

/// What a maintenance pass did on one table.
#[derive(Default)]
struct TablePass {
    flushes: u64,
    rows_flushed: u64,
    expired: u64,
    log_trims: u64,
    skipped: bool,
    failures: Vec<(&'static str, TableId, Error)>,
}

/// The flushes a table's policy asks for now: each scope past the `rows` threshold, and every
/// scope once the `interval` has passed since the last flush.
fn due_flushes(handle: &TableHandle) -> Vec<Scope> {
    let policy = handle.definition().options.flush_policy;
    let mut due = Vec::new();
    if let Some(rows) = policy.rows {
        for (scope, n) in handle.buffered_scopes() {
            if n >= rows {
                due.push(match scope {
                    KeyScope::Shared => Scope::All,
                    KeyScope::User(u) => Scope::User(u),
                });
            }
        }
    }
    let now = handle.storage.clock.now_ms();
    if let Some(interval) = policy.interval
        && now.saturating_sub(*handle.last_flush.lock())
            >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX)
    {
        if handle.buffered_scopes().is_empty() {
            *handle.last_flush.lock() = now;
        } else {
            due.push(Scope::All);
        }
    }
    due
}

/// Whether a STREAM table holds a row that is expired or deleted (a read-only scan that stops
/// at the first one).
async fn stream_expiry_due(table: &TableHandle) -> Result<bool> {
    if table.buffered(&KeyScope::Shared) == 0 || table.is_retired() {
        return Ok(false);
    }
    let (expired, _) = expired_entries(table, true).await?;
    Ok(!expired.is_empty())
}

/// The keys of a STREAM table's hot entries that are expired or deleted, and how many entries
/// are kept; with `first_only`, the scan stops at the first expired one.
async fn expired_entries(table: &TableHandle, first_only: bool) -> Result<(Vec<Bytes>, u64)> {
    let (mut expired, mut kept) = (Vec::new(), 0u64);
    let cutoff = table.expiry_cutoff();
    let mut next = Some(ScanRequest::default().chunk_size(EXPIRY_CHUNK));
    while let Some(request) = next {
        let chunk = table.storage.hot.scan(&table.hot, &request).await?;
        next = chunk.resume;
        for (key, value) in chunk.entries {
            let sys = TableHandle::system_of(&value)?;
            if sys.deleted || cutoff.is_some_and(|c| sys.updated < c) {
                expired.push(key);
                if first_only {
                    return Ok((expired, kept));
                }
            } else {
                kept += 1;
            }
        }
    }
    Ok((expired, kept))
}

/// Deletes expired rows of a STREAM table from the hot engine; returns how many.
pub(super) async fn expire_stream(table: &TableHandle) -> Result<u64> {
    let scope = KeyScope::Shared;
    if table.buffered(&scope) == 0 {
        return Ok(0);
    }
    let _writes = table.lock_rows().await;
    if table.is_retired() {
        return Ok(0);
    }
    let (expired, kept) = expired_entries(table, false).await?;
    let mut batch = WriteBatch::new();
    for key in expired {
        batch.delete(&table.hot, key);
    }
    let removed = batch.len() as u64;
    if removed == 0 {
        return Ok(0);
    }
    // Every tombstone went with the expired rows.
    let count = HotCount {
        entries: kept,
        tombstones: 0,
    };
    table.put_counter(&mut batch, &scope, count);
    table.storage.hot.batch(batch).await?;
    table.state.write().set_count(&scope, count);
    Ok(removed)
}
