//! Keeping each table's Delta log (`delta`) up to date with its manifest: after a table is
//! created, flushed, compacted, altered or moved, when its `DELTA` option changes, at open
//! when a crash left the log behind, and on `ALTER TABLE ... REPUBLISH`.
//!
//! A failed publish never fails the change that preceded it (the manifest is committed and is
//! the source of truth): it is logged and counted as a background failure, the table's pending
//! marker stays, and the next publish of the table, or its next open, catches up.

use std::sync::Arc;

use super::Store;
use crate::catalog::{JobKind, JobRecord};
use crate::delta::{self, Reason};
use crate::error::Result;
use crate::flush::FlushOutcome;
use crate::flush::compact::{CompactionPolicy, compact_scope, remove_replaced};
use crate::ids::TableId;
use crate::job::JobContext;
use crate::schema::DeltaPublishing;
use crate::table::TableHandle;

use super::jobs::Scope;

impl Store {
    /// Publishes the table's log; a failure is recorded, not returned (see the module doc).
    /// The caller holds the table's maintenance lock.
    pub(super) async fn publish(&self, handle: &TableHandle, reason: Reason) {
        if let Err(e) = delta::publish(handle, reason).await {
            self.record_background_failure("delta publish", Some(&handle.id), &e);
        }
    }

    /// Rewrites the files a schema change left unreadable through the Delta log (see
    /// `delta::has_stale_files`), publishes, then deletes the replaced files. The caller holds
    /// the table's maintenance lock. A failed publish is an error only when `must_publish`.
    pub(super) async fn rewrite_and_publish(
        &self,
        handle: &TableHandle,
        reason: Reason,
        must_publish: bool,
        job: &JobContext,
    ) -> Result<FlushOutcome> {
        let mut total = FlushOutcome::default();
        let mut replaced = Vec::new();
        if handle.definition().options.delta != DeltaPublishing::Off
            && delta::has_stale_files(handle)
        {
            for scope in handle.file_scopes() {
                let seq = &self.inner.seq;
                let policy = CompactionPolicy::all();
                let done = compact_scope(handle, &scope, seq, policy, job).await?;
                total.add(done.outcome);
                replaced.extend(done.replaced);
            }
        }
        if must_publish {
            delta::publish(handle, reason).await?;
        } else {
            self.publish(handle, reason).await;
        }
        remove_replaced(handle, replaced).await?;
        Ok(total)
    }

    /// Brings a freshly opened table's log up to date when a crash left it behind its
    /// manifest. Runs before the handle is shared, so no other work holds its locks.
    pub(super) async fn repair_publication(&self, handle: &TableHandle) {
        let pending = match delta::is_pending(handle).await {
            Ok(p) => p,
            Err(e) => {
                self.record_background_failure("delta publish", Some(&handle.id), &e);
                return;
            }
        };
        if !pending {
            return;
        }
        let _maintenance = handle.lock_files().await;
        let job = JobContext::new("delta-repair", Default::default());
        if let Err(e) = self
            .rewrite_and_publish(handle, Reason::Repair, false, &job)
            .await
        {
            self.record_background_failure("delta publish", Some(&handle.id), &e);
        }
    }

    /// Rebuilds a table's Delta log from scratch (`ALTER TABLE ... REPUBLISH`), as a job. The
    /// rebuilt log lists the same files with the same deletion vectors as the manifest.
    pub async fn republish_table(&self, table: &TableId) -> Result<JobRecord> {
        let handle = self.handle(table).await?;
        if handle.definition().options.delta == DeltaPublishing::Off {
            return Err(crate::error::Error::InvalidQuery {
                table: table.to_string(),
                reason: "the table does not publish a Delta log (DELTA = off)".into(),
            });
        }
        // Republishing is asked for: its failure is the job's.
        self.rewrite_job(handle, JobKind::Publish, Reason::Republish, true)
            .await
    }

    /// Runs [`rewrite_and_publish`](Self::rewrite_and_publish) of the whole table as a job of
    /// `kind`.
    pub(super) async fn rewrite_job(
        &self,
        handle: Arc<TableHandle>,
        kind: JobKind,
        reason: Reason,
        must_publish: bool,
    ) -> Result<JobRecord> {
        let store = self.clone();
        let work = move |handle: Arc<TableHandle>, _scope: Scope, job: JobContext| {
            let store = store.clone();
            async move {
                let outcome = store
                    .rewrite_and_publish(&handle, reason, must_publish, &job)
                    .await?;
                Ok(outcome.into())
            }
        };
        self.run_table_job(kind, handle, Scope::All, work).await
    }
}
