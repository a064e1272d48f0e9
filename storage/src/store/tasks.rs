//! Multi-step table operations that must survive a crash (storage moves and drops): their
//! records in `sys.tasks`, removal of a table's data from a storage, and the recovery that
//! finishes or undoes an interrupted one when the store opens or cleans up.

use std::sync::Arc;

use super::probe::delete_prefix;
use super::{Store, TASKS, sys};
use crate::catalog::{JobStatus, TableTask, TableTaskOp};
use crate::error::{Error, Result};
use crate::format::{hot_partition, log_partition, meta_partition, table_dir};
use crate::ids::TableId;
use crate::table::StorageHandle;

/// Removes every trace of table `id` from a storage: its hot and meta partitions and its
/// Parquet directory. Idempotent.
pub(super) async fn remove_table_data(storage: &StorageHandle, id: &TableId) -> Result<()> {
    storage.hot.drop_partition(&hot_partition(id)).await?;
    storage.hot.drop_partition(&meta_partition(id)).await?;
    storage.hot.drop_partition(&log_partition(id)).await?;
    delete_prefix(storage, &table_dir(&storage.cold.prefix, id)).await
}

impl Store {
    /// The operation in progress on a table, if any.
    pub(super) async fn task(&self, table: &TableId) -> Result<Option<TableTask>> {
        self.inner
            .system
            .get(&sys(TASKS), table.to_string().as_bytes())
            .await?
            .map(|b| TableTask::decode(&b))
            .transpose()
    }

    /// Every operation in progress.
    pub async fn table_tasks(&self) -> Result<Vec<TableTask>> {
        self.catalog(TASKS, |_, v| TableTask::decode(v)).await
    }

    pub(super) async fn put_task(&self, task: &TableTask) -> Result<()> {
        self.inner
            .system
            .put(
                &sys(TASKS),
                task.table.to_string().into(),
                task.encode().into(),
            )
            .await
    }

    pub(super) async fn delete_task(&self, table: &TableId) -> Result<()> {
        self.inner
            .system
            .delete(&sys(TASKS), table.to_string().as_bytes())
            .await
    }

    /// Finishes or undoes every interrupted operation (one whose job is not running in this
    /// process): a move that had not switched the catalog loses its partial copy, one that had
    /// loses its source, a drop finishes. A task whose storage cannot be opened stays for the
    /// next try, with the reason in its job. Returns how many finished.
    pub(super) async fn resume_tasks(&self) -> Result<u64> {
        let mut finished = 0;
        for task in self.table_tasks().await? {
            if self.job_is_running(&task.job) {
                continue;
            }
            match self.resume_task(&task).await {
                Ok(()) => finished += 1,
                Err(e) => self.note_job(&task.job, None, Some(e.report())).await?,
            }
        }
        Ok(finished)
    }

    /// Makes sure no unfinished operation is left on a table before a new one starts:
    /// an interrupted one is finished or undone now, a running one is an error.
    pub(super) async fn settle_task(&self, table: &TableId) -> Result<()> {
        let Some(task) = self.task(table).await? else {
            return Ok(());
        };
        if self.job_is_running(&task.job) {
            return Err(Error::TableBusy {
                table: table.to_string(),
                job: task.job,
            });
        }
        self.resume_task(&task).await
    }

    async fn resume_task(&self, task: &TableTask) -> Result<()> {
        let (storage, status, note) = match &task.op {
            TableTaskOp::Move {
                to,
                switched: false,
                ..
            } => (
                to,
                JobStatus::Failed,
                "interrupted before the catalog switch; the partial copy was removed and the \
                 table stays on its source storage",
            ),
            TableTaskOp::Move {
                from,
                switched: true,
                ..
            } => (
                from,
                JobStatus::Completed,
                "interrupted after the catalog switch; the source copy was removed on restart",
            ),
            TableTaskOp::Drop { storage } => (
                storage,
                JobStatus::Completed,
                "interrupted; the table's data was removed on restart",
            ),
        };
        let handle: Arc<StorageHandle> = self.storage(storage).await?;
        remove_table_data(&handle, &task.table).await?;
        self.delete_task(&task.table).await?;
        self.note_job(&task.job, Some(status), Some(note.to_owned()))
            .await
    }

    /// Sets a job's status (when given) and message, if the record still exists.
    pub(super) async fn note_job(
        &self,
        job: &str,
        status: Option<JobStatus>,
        message: Option<String>,
    ) -> Result<()> {
        let Some(mut record) = self.job(job).await? else {
            return Ok(());
        };
        if let Some(status) = status {
            record.status = status;
            record.ended_at_ms.get_or_insert_with(|| self.now_ms());
        }
        record.error = message;
        self.put_job(&record).await
    }
}
