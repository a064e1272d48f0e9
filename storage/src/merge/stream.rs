//! The streamed merge-on-read scan of a table ([`TableScan`]): a snapshot of the scopes it
//! covers (taken when the first partition is polled), hot rows first (they are the newest),
//! then each file without its dead rows: its deletion vector and the rows newer hot entries
//! hide (recorded by the writes, see `format::partitions`). A scan splits into any number of
//! partitions that read disjoint files (partition 0 also returns the hot rows), which together
//! return each live row once.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::boolean;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::file::{BATCH_ROWS, BatchStream, file_stream, limit_rows};
use super::hot::{Scopes, Snapshot, snapshot};
use super::plan::FilePlan;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use crate::error::{Error, Result};
use crate::format::{DeletionVector, FileMeta, ObjectFileReader, is_unbounded, key_mask, project};
use crate::ids::{KeyScope, UserId};
use crate::schema::TableDefinition;
use crate::table::{FileEntry, TableHandle};

/// The column an all-users read adds: the user each row belongs to.
pub const USER_COLUMN: &str = "_user";

/// One file of a scan's snapshot, as a Parquet reader outside the core (DataFusion's) needs
/// it: the rows to skip are exactly those the core's own read skips.
#[derive(Debug, Clone)]
pub struct ScanFile {
    /// Whose file it is, for an all-users read of a USER table.
    pub user: Option<UserId>,
    /// The manifest entry (path, size, rows, schema version).
    pub meta: FileMeta,
    /// Rows a read skips: the deletion vector and the rows newer hot entries hide.
    pub dead: Arc<DeletionVector>,
}

impl ScanFile {
    /// Rows a read of the file returns (before any filter).
    pub fn live_rows(&self) -> u64 {
        self.meta.rows.saturating_sub(self.dead.len())
    }
}

/// What a scan reads, fixed when it was taken: the files and the hot rows, consistent with
/// each other. The files stay pinned (not deleted by a compaction) while it lives.
pub struct ScanSnapshot {
    /// The files, oldest first within each scope.
    pub files: Vec<ScanFile>,
    /// The hot rows that match the scan's filter, in the scan's schema.
    pub hot: Vec<RecordBatch>,
    _snapshot: Arc<Snapshot>,
}

impl std::fmt::Debug for ScanSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanSnapshot")
            .field("files", &self.files.len())
            .field("hot_batches", &self.hot.len())
            .finish_non_exhaustive()
    }
}

/// Reads of a table's Parquet files for a reader outside the core: byte ranges through the
/// storage's cold store (and its cache), footers through the storage's metadata cache.
#[derive(Clone)]
pub struct FileAccess {
    table: Arc<TableHandle>,
}

impl std::fmt::Debug for FileAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAccess")
            .field("table", &self.table.id)
            .finish_non_exhaustive()
    }
}

impl FileAccess {
    /// A reader of one of the table's files.
    pub fn reader(&self, meta: &FileMeta) -> ObjectFileReader {
        self.table.data_file(meta).reader()
    }

    /// The file's footer with its page index, from the metadata cache.
    pub async fn metadata(&self, meta: &FileMeta) -> Result<ArrowReaderMetadata> {
        self.table
            .file_index
            .footer(self.table.data_file(meta))
            .await
    }
}

/// How many rows a read will return, from the manifest and the buffered-row counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowEstimate {
    /// The estimate.
    pub rows: u64,
    /// Whether it is the exact count of the read's rows (no filter, no STREAM expiry), as of
    /// the table's last commit.
    pub exact: bool,
}

/// `schema` plus the `_user` column when `all_users`.
pub(crate) fn with_user_column(schema: SchemaRef, all_users: bool) -> SchemaRef {
    if !all_users {
        return schema;
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(USER_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

struct ScanState {
    table: Arc<TableHandle>,
    plan: FilePlan,
    scopes: Scopes,
    schema: SchemaRef,
    snapshot: tokio::sync::OnceCell<Arc<Snapshot>>,
}

/// A planned merge-on-read read of a table, streamed. Nothing is read until a partition's
/// stream is polled; all partitions share one snapshot.
#[derive(Clone)]
pub struct TableScan {
    state: Arc<ScanState>,
}

impl std::fmt::Debug for TableScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableScan")
            .field("table", &self.state.table.id)
            .finish_non_exhaustive()
    }
}

impl TableScan {
    pub(crate) fn new(table: Arc<TableHandle>, plan: FilePlan, scopes: Scopes) -> Self {
        let schema = with_user_column(plan.output_schema(), scopes == Scopes::AllUsers);
        Self {
            state: Arc::new(ScanState {
                table,
                plan,
                scopes,
                schema,
                snapshot: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// The schema of the batches the scan returns.
    pub fn schema(&self) -> SchemaRef {
        self.state.schema.clone()
    }

    /// How many rows the scan will return, from the table's counters and manifest (before any
    /// filter): each file's rows less its deletion vector and hidden rows, plus the hot
    /// entries that are not tombstones.
    pub fn estimate(&self) -> RowEstimate {
        let table = &self.state.table;
        let state = table.state.read();
        let count = |scope: &KeyScope| {
            let files = state
                .files
                .get(scope)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let flushed: u64 = files.iter().map(FileEntry::live_rows).sum();
            flushed + state.count(scope).rows()
        };
        let rows = match &self.state.scopes {
            Scopes::One(scope) => count(scope),
            Scopes::AllUsers => state.scopes().iter().map(count).sum(),
        };
        let stream = table.definition().table_type == crate::schema::TableType::Stream;
        RowEstimate {
            rows,
            exact: !stream && self.state.plan.filter.is_none(),
        }
    }

    /// The stream of partition `index` of `count` partitions: the hot rows (partition 0) and
    /// the files whose position in the snapshot is `index` modulo `count`, each cut to the
    /// scan's limit.
    pub fn partition(&self, index: usize, count: usize) -> BatchStream {
        let scan = self.clone();
        let count = count.max(1);
        let limit = self.state.plan.limit;
        let rows = stream::once(async move {
            let snapshot = scan.snapshot().await?;
            let hot = if index == 0 {
                scan.hot_batches(&snapshot)?
            } else {
                Vec::new()
            };
            let files: Vec<(KeyScope, FileEntry)> = snapshot
                .scopes
                .iter()
                .flat_map(|s| s.files.iter().map(move |f| (s.scope.clone(), f.clone())))
                .enumerate()
                .filter(|(at, _)| at % count == index)
                .map(|(_, f)| f)
                .collect();
            let files = stream::iter(files)
                .then(move |(scope, entry)| {
                    let scan = scan.clone();
                    async move { scan.file_batches(&scope, &entry).await }
                })
                .try_flatten();
            Ok::<_, Error>(stream::iter(hot.into_iter().map(Ok)).chain(files))
        })
        .try_flatten();
        limit_rows(rows, limit)
    }

    /// How many files the snapshot would read now (a partition count for readers that split
    /// the scan; the snapshot itself may see more or fewer).
    pub fn file_count(&self) -> usize {
        let state = self.state.table.state.read();
        match &self.state.scopes {
            Scopes::One(scope) => state.files.get(scope).map_or(0, Vec::len),
            Scopes::AllUsers => state.files.values().map(Vec::len).sum(),
        }
    }

    /// The whole scan as one stream, cut to its limit.
    pub fn stream(&self) -> BatchStream {
        self.partition(0, 1)
    }

    /// The scan's snapshot (taken now if no partition took it yet): its files with the rows
    /// to skip, and its hot rows, for a reader that reads the files itself.
    pub async fn snapshot_files(&self) -> Result<ScanSnapshot> {
        let snapshot = self.snapshot().await?;
        let hot = self.hot_batches(&snapshot)?;
        let files = snapshot
            .scopes
            .iter()
            .flat_map(|s| {
                s.files.iter().map(|f| ScanFile {
                    user: s.scope.user().cloned(),
                    meta: f.meta.clone(),
                    dead: f.dead(),
                })
            })
            .collect();
        Ok(ScanSnapshot {
            files,
            hot,
            _snapshot: snapshot,
        })
    }

    /// Reads of the table's files (see [`snapshot_files`](Self::snapshot_files)).
    pub fn file_access(&self) -> FileAccess {
        FileAccess {
            table: self.state.table.clone(),
        }
    }

    /// The table's definition the scan was planned with.
    pub fn definition(&self) -> Arc<TableDefinition> {
        self.state.plan.def.clone()
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let state = &self.state;
        state
            .snapshot
            .get_or_try_init(|| async {
                let keep = self.hot_columns();
                snapshot(
                    &state.table,
                    &state.scopes,
                    &state.plan.keys,
                    keep.as_deref(),
                )
                .await
                .map(Arc::new)
            })
            .await
            .cloned()
    }

    /// The user columns the hot rows must be decoded with (the read's and its filter's, by
    /// the table's current column order), `None` when that is all of them.
    fn hot_columns(&self) -> Option<Vec<bool>> {
        let plan = &self.state.plan;
        let mut needed: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
        if let Some(filter) = &plan.filter {
            needed.extend(filter.columns());
        }
        let def = self.state.table.definition();
        let keep: Vec<bool> = def
            .columns()
            .iter()
            .map(|c| needed.contains(&c.name.as_str()))
            .collect();
        keep.contains(&false).then_some(keep)
    }

    /// The live hot rows of every scope that match the plan, projected, in batches.
    fn hot_batches(&self, snapshot: &Snapshot) -> Result<Vec<RecordBatch>> {
        let plan = &self.state.plan;
        let schema = plan.output_schema();
        let mut out = Vec::new();
        for scope in &snapshot.scopes {
            let Some(rows) = &scope.hot else { continue };
            // Without a key bound, filter or TTL, the rows are the cached batch as it is.
            let whole = plan.filter.is_none()
                && is_unbounded(&plan.keys)
                && self.state.table.expiry_cutoff().is_none();
            let projected = match whole {
                true => project(&rows.batch, &schema)?,
                false => {
                    let mut mask = boolean::and(
                        &rows.alive(&self.state.table),
                        &key_mask(&rows.keys, &plan.keys)?,
                    )
                    .map_err(Error::arrow("masking hot rows"))?;
                    if let Some(f) = &plan.filter {
                        mask = boolean::and_kleene(&mask, &f.evaluate(&rows.batch)?)
                            .map_err(Error::arrow("filtering hot rows"))?;
                    }
                    // Projected first (no copy), so only the read's columns are filtered.
                    filter_record_batch(&project(&rows.batch, &schema)?, &mask)
                        .map_err(Error::arrow("filtering hot rows"))?
                }
            };
            let mut at = 0;
            while at < projected.num_rows() {
                let len = BATCH_ROWS.min(projected.num_rows() - at);
                out.push(self.with_user(projected.slice(at, len), &scope.scope)?);
                at += len;
            }
        }
        Ok(out)
    }

    /// One file's rows that survive its deletion vector and its hidden rows.
    async fn file_batches(&self, scope: &KeyScope, entry: &FileEntry) -> Result<BatchStream> {
        let table = &self.state.table;
        let dead = entry.dead();
        let batches = file_stream(table, entry, &self.state.plan, Some(&dead)).await?;
        if self.state.scopes != Scopes::AllUsers {
            return Ok(batches);
        }
        let (scan, scope) = (self.clone(), scope.clone());
        Ok(batches
            .map(move |b| b.and_then(|b| scan.with_user(b, &scope)))
            .boxed())
    }

    /// Adds the `_user` column to a batch of an all-users read.
    fn with_user(&self, batch: RecordBatch, scope: &KeyScope) -> Result<RecordBatch> {
        if self.state.scopes != Scopes::AllUsers {
            return Ok(batch);
        }
        let user: ArrayRef = Arc::new(StringArray::from(vec![scope.as_str(); batch.num_rows()]));
        let mut columns = batch.columns().to_vec();
        columns.push(user);
        RecordBatch::try_new_with_options(
            self.state.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(Error::arrow("adding `_user` to a batch"))
    }
}
