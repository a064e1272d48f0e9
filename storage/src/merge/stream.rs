//! The streamed merge-on-read scan of a table ([`TableScan`]): a snapshot of the scopes it
//! covers (taken when the first partition is polled), hot rows first (they are the newest),
//! then each file with its deletion vector grown by the rows its scope's hot keys hide. A scan
//! splits into any number of partitions that read disjoint files (partition 0 also returns the
//! hot rows); every partition hides flushed rows under every hot key of their scope, so the
//! partitions together return each live row once.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::boolean;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::file::{BATCH_ROWS, BatchStream, FilePlan, file_stream, limit_rows};
use super::hot::{ScopeRows, Scopes, Snapshot, snapshot};
use super::join::hide_keys;
use crate::error::{Error, Result};
use crate::format::{key_mask, project};
use crate::ids::KeyScope;
use crate::table::{FileEntry, TableHandle};

/// The column an all-users read adds: the user each row belongs to.
pub const USER_COLUMN: &str = "_user";

/// How many rows a read will return, from the manifest and the buffered-row counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowEstimate {
    /// The estimate.
    pub rows: u64,
    /// Whether it is the exact count of the read's rows (no filter, no hot entries that
    /// could replace or delete flushed rows, no STREAM expiry).
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

    /// How many rows the scan will return, from the table's counters (before any filter).
    pub fn estimate(&self) -> RowEstimate {
        let table = &self.state.table;
        let state = table.state.read();
        let (mut flushed, mut hot) = (0u64, 0u64);
        let mut count = |scope: &KeyScope| {
            hot += state.counters.get(scope).copied().unwrap_or(0);
            for f in state
                .files
                .get(scope)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                flushed += f.meta.rows.saturating_sub(f.dv.len());
            }
        };
        match &self.state.scopes {
            Scopes::One(scope) => count(scope),
            Scopes::AllUsers => {
                let scopes: Vec<KeyScope> = state
                    .counters
                    .keys()
                    .chain(state.files.keys())
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                scopes.iter().for_each(&mut count);
            }
        }
        let stream = table.definition().table_type == crate::schema::TableType::Stream;
        RowEstimate {
            rows: flushed + hot,
            exact: hot == 0 && !stream && self.state.plan.filter.is_none(),
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
                    let (scan, snapshot) = (scan.clone(), snapshot.clone());
                    async move { scan.file_batches(&snapshot, &scope, &entry).await }
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

    async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let state = &self.state;
        state
            .snapshot
            .get_or_try_init(|| async {
                snapshot(&state.table, &state.scopes, &state.plan.keys)
                    .await
                    .map(Arc::new)
            })
            .await
            .cloned()
    }

    /// The live hot rows of every scope that match the plan, projected, in batches.
    fn hot_batches(&self, snapshot: &Snapshot) -> Result<Vec<RecordBatch>> {
        let plan = &self.state.plan;
        let schema = plan.output_schema();
        let mut out = Vec::new();
        for scope in &snapshot.scopes {
            let Some(rows) = &scope.hot else { continue };
            let mut mask = boolean::and(
                &rows.alive(&self.state.table),
                &key_mask(&rows.keys, &plan.keys)?,
            )
            .map_err(Error::arrow("masking hot rows"))?;
            if let Some(f) = &plan.filter {
                mask = boolean::and_kleene(&mask, &f.evaluate(&rows.batch)?)
                    .map_err(Error::arrow("filtering hot rows"))?;
            }
            let filtered = filter_record_batch(&rows.batch, &mask)
                .map_err(Error::arrow("filtering hot rows"))?;
            let projected = project(&filtered, &schema)?;
            let mut at = 0;
            while at < projected.num_rows() {
                let len = BATCH_ROWS.min(projected.num_rows() - at);
                out.push(self.with_user(projected.slice(at, len), &scope.scope)?);
                at += len;
            }
        }
        Ok(out)
    }

    /// One file's rows that survive its deletion vector and its scope's hot keys.
    async fn file_batches(
        &self,
        snapshot: &Snapshot,
        scope: &KeyScope,
        entry: &FileEntry,
    ) -> Result<BatchStream> {
        let table = &self.state.table;
        let hot = snapshot
            .scopes
            .iter()
            .find(|s| s.scope == *scope)
            .and_then(|s: &ScopeRows| s.hot.as_ref());
        // Flushed rows under a hot key (hot keys come sorted, like the file's) join the
        // file's deletion vector for this read, so the decoder skips them like flushed deletes.
        let dead = match hot {
            Some(rows) => Some(hide_keys(table, entry, rows.keys.iter().flatten()).await?),
            None => None,
        };
        let batches = file_stream(table, entry, &self.state.plan, dead.as_ref()).await?;
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
