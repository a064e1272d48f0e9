//! Reads and writes of table data, routed to the table's open handle (and retried on its new
//! handle when a move retired the old one while the operation waited), and per-scope stats.

use arrow::record_batch::RecordBatch;

use super::Store;
use crate::codec::KalamValue;
use crate::error::Result;
use crate::ids::{TableId, UserId};
use futures::TryStreamExt;

use crate::merge::{ScanOptions, TableScan};
use crate::table::FileEntry;
use crate::write::{BatchMode, Keyed, Mutation, Rows, WriteSummary};

/// Rows and files of one scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeStats {
    /// The user (USER tables), or `None`.
    pub user: Option<String>,
    /// Buffered hot entries (rows and tombstones).
    pub hot_rows: u64,
    /// Live Parquet files.
    pub files: u64,
    /// Rows in those files, deleted or not.
    pub file_rows: u64,
    /// Rows marked deleted in deletion vectors.
    pub deleted_rows: u64,
    /// Flushed rows that newer hot entries replace or delete (deleted at the next flush).
    pub hidden_rows: u64,
    /// Bytes of the files.
    pub bytes: u64,
}

impl ScopeStats {
    /// Deleted share of flushed rows.
    pub fn deleted_ratio(&self) -> f64 {
        if self.file_rows == 0 {
            0.0
        } else {
            self.deleted_rows as f64 / self.file_rows as f64
        }
    }
}

impl Store {
    /// Applies mutations to a table atomically. USER tables need `user`; others refuse it.
    pub async fn write(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        mutations: Vec<Mutation>,
    ) -> Result<WriteSummary> {
        self.write_rows(table, user, Rows::Mutations(mutations))
            .await
    }

    /// Writes the rows of `batch` atomically: one column per table column, in table order, of
    /// the columns' arrow types (what [`scan`](Self::scan) returns). Each row is checked as a
    /// named row is; `mode` says what an existing key does.
    pub async fn write_batch(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        batch: &RecordBatch,
        mode: BatchMode,
    ) -> Result<WriteSummary> {
        self.write_rows(table, user, Rows::Batch(batch, mode)).await
    }

    /// Deletes atomically the rows whose primary keys are the rows of `keys` (one column per
    /// key column, in key order, of the columns' arrow types); keys without a row are skipped.
    /// Nothing per row is kept but the key bytes, so millions of keys fit a small memory.
    pub async fn delete_keys(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        keys: &RecordBatch,
    ) -> Result<WriteSummary> {
        self.write_rows(table, user, Rows::Keyed(keys, Keyed::Delete))
            .await
    }

    /// Sets the columns `set` of the rows whose primary keys lead the rows of `batch`: its
    /// columns are the key columns (key order), then one per name of `set`, each of its
    /// column's arrow type; keys without a row are skipped. Atomic, like
    /// [`write`](Self::write).
    pub async fn update_keys(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        batch: &RecordBatch,
        set: &[String],
    ) -> Result<WriteSummary> {
        self.write_rows(table, user, Rows::Keyed(batch, Keyed::Update(set)))
            .await
    }

    async fn write_rows(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        rows: Rows<'_>,
    ) -> Result<WriteSummary> {
        let mut attempts = 0;
        loop {
            let handle = self.handle(table).await?;
            // A move retires the handle while holding its write lock: on a retired handle
            // nothing was written yet, so the mutations go to the table's new handle.
            let writes = match handle.lock_writes().await {
                Err(_) if handle.is_retired() && attempts < 3 => {
                    attempts += 1;
                    continue;
                }
                result => result?,
            };
            return handle.write(writes, &self.inner.seq, user, rows).await;
        }
    }

    /// Inserts rows given as `(column, value)` pairs.
    pub async fn insert(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        rows: Vec<Vec<(String, KalamValue)>>,
    ) -> Result<WriteSummary> {
        self.write(
            table,
            user,
            rows.into_iter().map(Mutation::Insert).collect(),
        )
        .await
    }

    /// Merge-on-read scan of a table (one user's rows of a USER table, or every user's with
    /// [`ScanOptions::all_users`]), collected. See [`scan_stream`](Self::scan_stream).
    pub async fn scan(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        options: &ScanOptions,
    ) -> Result<Vec<RecordBatch>> {
        self.on_table(table, |handle| async move {
            crate::merge::scan_table(handle, user, options)?
                .stream()
                .try_collect()
                .await
        })
        .await
    }

    /// A streamed merge-on-read scan of a table: batches come as the files are read (row
    /// group by row group), with the hot rows overlaid; memory stays bounded by the hot
    /// buffer and a few batches per partition. The scan splits into partitions that read
    /// disjoint files ([`TableScan::partition`]). Nothing is read until a stream is polled.
    pub async fn scan_stream(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        options: &ScanOptions,
    ) -> Result<TableScan> {
        self.on_table(table, |handle| async move {
            crate::merge::scan_table(handle, user, options)
        })
        .await
    }

    /// Point read by primary key; values in column order.
    pub async fn get(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        key: &[KalamValue],
    ) -> Result<Option<Vec<KalamValue>>> {
        self.on_table(table, |handle| async move {
            let scope = handle.scope(user)?;
            crate::merge::get(&handle, &scope, key).await
        })
        .await
    }

    /// Point reads of many rows by primary key: each key's row (values in column order) or
    /// `None`, in the order asked, all from one consistent view of the table.
    pub async fn get_many(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        keys: &[Vec<KalamValue>],
    ) -> Result<Vec<Option<Vec<KalamValue>>>> {
        self.on_table(table, |handle| async move {
            let scope = handle.scope(user)?;
            crate::merge::get_many(&handle, &scope, keys).await
        })
        .await
    }

    /// Per-scope rows, files and deletes of a table.
    pub async fn table_stats(&self, table: &TableId) -> Result<Vec<ScopeStats>> {
        let handle = self.handle(table).await?;
        let state = handle.state.read();
        Ok(state
            .scopes()
            .into_iter()
            .map(|s| {
                let files = state.files.get(&s).map(Vec::as_slice).unwrap_or_default();
                ScopeStats {
                    hot_rows: state.count(&s).entries,
                    files: files.len() as u64,
                    file_rows: files.iter().map(|f| f.meta.rows).sum(),
                    deleted_rows: files.iter().map(|f| f.dv.len()).sum(),
                    hidden_rows: files.iter().map(|f| f.hidden.len()).sum(),
                    bytes: files.iter().map(|f| f.meta.size).sum(),
                    user: s.user().map(ToString::to_string),
                }
            })
            .collect())
    }

    /// The live files of a table's scope (its manifest), oldest first.
    pub async fn manifest(&self, table: &TableId) -> Result<Vec<(Option<String>, FileEntry)>> {
        let handle = self.handle(table).await?;
        let state = handle.state.read();
        Ok(state
            .files
            .iter()
            .flat_map(|(s, files)| {
                let user = s.user().map(ToString::to_string);
                files.iter().map(move |f| (user.clone(), f.clone()))
            })
            .collect())
    }
}
