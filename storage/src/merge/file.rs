//! Reading one flushed data file, as a stream of batches in file order: row groups pruned by
//! key range, statistics and bloom filter ([`prune_row_groups`]), the deletion vector and the
//! key pages turned into a row selection before decoding ([`live_rows`]), predicates pushed
//! into the decoder, large reads decoded in parallel parts, and old schema versions adapted to
//! the current one (`adapt`).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowPredicate, ArrowPredicateFn, ArrowReaderMetadata, RowFilter, RowSelection,
};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::adapt::{FileColumns, Finisher};
use super::plan::FilePlan;
use crate::error::{Error, Result};
use crate::filter::ColumnStats;
use crate::format::{
    DeletionVector, KEY_COLUMN, ObjectFileReader, RowGroupKeys, bounds_overlap, is_unbounded,
    key_column, key_mask, key_page_ranges, point_key,
};
use crate::spawn::AbortOnDrop;
use crate::table::{FileEntry, TableHandle};

/// Rows read per decoded batch.
pub(crate) const BATCH_ROWS: usize = 8192;

/// Reads selecting at least this many rows decode their row groups in parallel.
const PARALLEL_READ_ROWS: usize = 64 * 1024;

/// Decoded batches each parallel part may hold before the reader takes them.
const PART_AHEAD: usize = 2;

/// A stream of batches that owns everything it reads.
pub type BatchStream = BoxStream<'static, Result<RecordBatch>>;

/// The rows of one kept row group to decode.
#[derive(Debug, Clone)]
struct RowGroupRows {
    /// The row group's index in the file.
    row_group: usize,
    /// Live row ranges, relative to the row group.
    live: Vec<Range<usize>>,
    /// Rows in the row group.
    rows: usize,
}

impl RowGroupRows {
    fn selected(&self) -> usize {
        self.live.iter().map(ExactSizeIterator::len).sum()
    }
}

/// Reads the rows of one file that survive `dead` (its deletion vector, or that plus the rows
/// hot keys hide), the plan's filter and key bounds, in the plan's output schema.
pub(crate) async fn read_file(
    table: &TableHandle,
    entry: &FileEntry,
    plan: &FilePlan,
    dead: Option<&DeletionVector>,
) -> Result<Vec<RecordBatch>> {
    file_stream(table, entry, plan, dead)
        .await?
        .try_collect()
        .await
}

/// [`read_file`] as a stream: the file's row groups are decoded as the stream is polled.
pub(crate) async fn file_stream(
    table: &TableHandle,
    entry: &FileEntry,
    plan: &FilePlan,
    dead: Option<&DeletionVector>,
) -> Result<BatchStream> {
    let dead = dead.unwrap_or(&entry.dv);
    if !bounds_overlap(&entry.meta.min_key, &entry.meta.max_key, &plan.keys)
        || dead.len() >= entry.meta.rows
        || plan.limit == Some(0)
    {
        return Ok(stream::empty().boxed());
    }
    let file = table.data_file(&entry.meta);
    let footer = table.file_index.footer(file).await?;
    let columns = FileColumns::new(plan, entry.meta.schema_version, &footer);
    let keep = match &plan.positions {
        Some(positions) => row_groups_holding(&footer, positions),
        None => prune_row_groups(table, entry, &footer, plan, &columns).await?,
    };
    table.reads.count(&keep);
    let selection = live_rows(&footer, &keep, plan, dead);
    if selection.is_empty() {
        return Ok(stream::empty().boxed());
    }
    let what = file.describe();
    let decoder = Decoder {
        reader: file.reader(),
        footer,
        plan: plan.clone(),
        columns: Arc::new(columns),
        what: what.clone(),
    };
    let parts = parallel_parts(plan, &selection);
    let decoded: BatchStream = if parts > 1 {
        let per_part = selection.len().div_ceil(parts);
        let streams = selection
            .chunks(per_part)
            .map(|chunk| decoder.open(chunk))
            .collect::<Result<Vec<_>>>()?;
        decode_ahead(streams)
    } else {
        decoder.open(&selection)?.boxed()
    };
    let finish = Finisher {
        plan: plan.clone(),
        columns: decoder.columns.clone(),
        schema: plan.output_schema(),
        what,
    };
    Ok(limit_rows(
        decoded.map(move |batch| finish.batch(batch?)),
        plan.limit,
    ))
}

/// Which row groups may hold matching rows: their `_key` range meets the key bounds, their
/// statistics may satisfy the filter, and for a point read their bloom filter may hold it.
async fn prune_row_groups(
    table: &TableHandle,
    entry: &FileEntry,
    footer: &ArrowReaderMetadata,
    plan: &FilePlan,
    columns: &FileColumns,
) -> Result<Vec<bool>> {
    let row_groups = footer.metadata().row_groups();
    let n = row_groups.len();
    let key_stats = RowGroupKeys::of(footer);
    let mut keep: Vec<bool> = (0..n)
        .map(|i| key_stats.may_overlap(i, &plan.keys))
        .collect();
    if let Some(filter) = &plan.filter {
        let stats = |column: &str| -> Option<ColumnStats> {
            if !columns.is_unchanged(column) {
                return None;
            }
            let conv =
                StatisticsConverter::try_new(column, footer.schema(), footer.parquet_schema())
                    .ok()?;
            Some(ColumnStats {
                mins: conv.row_group_mins(row_groups.iter()).ok()?,
                maxes: conv.row_group_maxes(row_groups.iter()).ok()?,
                null_counts: conv.row_group_null_counts(row_groups.iter()).ok(),
                row_counts: conv.row_group_row_counts(row_groups.iter()).ok().flatten(),
            })
        };
        for (k, may) in keep.iter_mut().zip(filter.may_match(n, &stats)) {
            *k &= may;
        }
    }
    if let Some(point) = point_key(&plan.keys) {
        let file = table.data_file(&entry.meta);
        for (i, k) in keep.iter_mut().enumerate() {
            if *k && let Some(bloom) = table.file_index.key_bloom(file, footer, i).await? {
                *k = bloom.check(point);
            }
        }
    }
    Ok(keep)
}

/// Which row groups hold any of `positions`.
fn row_groups_holding(footer: &ArrowReaderMetadata, positions: &Range<u64>) -> Vec<bool> {
    let mut start = 0u64;
    let row_groups = footer.metadata().row_groups();
    row_groups
        .iter()
        .map(|rg| {
            let end = start + rg.num_rows() as u64;
            let holds = positions.start < end && start < positions.end;
            start = end;
            holds
        })
        .collect()
}

/// The rows to decode: per kept row group, the ranges that are alive (not in `dead`), within
/// the plan's positions if it has any and, for bounded reads, on a `_key` page that meets the
/// bounds.
fn live_rows(
    footer: &ArrowReaderMetadata,
    keep: &[bool],
    plan: &FilePlan,
    dead: &DeletionVector,
) -> Vec<RowGroupRows> {
    let pages = key_page_ranges(footer, keep, &plan.keys);
    let (lowest, highest) = plan
        .positions
        .as_ref()
        .map_or((0, u64::MAX), |p| (p.start, p.end));
    let mut selection = Vec::new();
    let mut start = 0u64;
    let mut dead_positions = dead.iter().peekable();
    for (i, rg) in footer.metadata().row_groups().iter().enumerate() {
        let rows = rg.num_rows() as u64;
        while dead_positions.next_if(|d| *d < start).is_some() {}
        if keep[i] {
            let allowed = pages.get(&i);
            let mut live = Vec::new();
            // Adds the live positions [from, to) (absolute), limited to the allowed pages.
            let mut push = |from: u64, to: u64| {
                let (from, to) = (from.max(lowest), to.min(highest));
                if from >= to {
                    return;
                }
                let (from, to) = (from - start, to - start);
                let mut add = |lo: u64, hi: u64| {
                    if lo < hi {
                        live.push(lo as usize..hi as usize);
                    }
                };
                match allowed {
                    None => add(from, to),
                    Some(allowed) => {
                        for a in allowed {
                            add(from.max(a.start), to.min(a.end));
                        }
                    }
                }
            };
            let mut run_start = start;
            while let Some(dead) = dead_positions.next_if(|d| *d < start + rows) {
                if dead > run_start {
                    push(run_start, dead);
                }
                run_start = dead + 1;
            }
            if run_start < start + rows {
                push(run_start, start + rows);
            }
            if !live.is_empty() {
                selection.push(RowGroupRows {
                    row_group: i,
                    live,
                    rows: rows as usize,
                });
            }
        }
        start += rows;
    }
    selection
}

/// How many parts a read decodes in parallel: one per core for a large read without a limit
/// on a multi-threaded runtime, else one.
fn parallel_parts(plan: &FilePlan, selection: &[RowGroupRows]) -> usize {
    let selected: usize = selection.iter().map(RowGroupRows::selected).sum();
    match tokio::runtime::Handle::try_current() {
        Ok(rt)
            if plan.limit.is_none()
                && selected >= PARALLEL_READ_ROWS
                && rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
        {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(selection.len())
        }
        _ => 1,
    }
}

/// Opens Parquet decoders over parts of one file.
struct Decoder {
    reader: ObjectFileReader,
    footer: ArrowReaderMetadata,
    plan: FilePlan,
    columns: Arc<FileColumns>,
    what: String,
}

impl Decoder {
    /// A decoder of the selected rows of `parts`, with the pushed predicates.
    fn open(&self, parts: &[RowGroupRows]) -> Result<BatchStream> {
        let parquet_schema = self.footer.parquet_schema();
        let file_schema = self.footer.schema();
        let mut ranges = Vec::new();
        let mut offset = 0usize;
        for part in parts {
            ranges.extend(part.live.iter().map(|r| r.start + offset..r.end + offset));
            offset += part.rows;
        }
        let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), offset);
        let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
            self.reader.clone(),
            self.footer.clone(),
        )
        .with_projection(ProjectionMask::roots(
            parquet_schema,
            self.columns.indices.clone(),
        ))
        .with_row_groups(parts.iter().map(|p| p.row_group).collect())
        .with_row_selection(selection)
        .with_batch_size(BATCH_ROWS);
        let mut predicates: Vec<Box<dyn ArrowPredicate>> = Vec::new();
        if let Some(filter) = self.plan.filter.clone().filter(|_| self.columns.pushed) {
            let idx: Vec<usize> = filter
                .columns()
                .iter()
                .filter_map(|c| file_schema.index_of(c).ok())
                .collect();
            predicates.push(Box::new(ArrowPredicateFn::new(
                ProjectionMask::roots(parquet_schema, idx),
                move |batch: RecordBatch| {
                    filter
                        .evaluate(&batch)
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))
                },
            )));
        }
        // Key bounds are checked on `_key` alone before other columns are decoded.
        if !is_unbounded(&self.plan.keys)
            && let Ok(key_index) = file_schema.index_of(KEY_COLUMN)
        {
            let bounds = self.plan.keys.clone();
            predicates.push(Box::new(ArrowPredicateFn::new(
                ProjectionMask::roots(parquet_schema, [key_index]),
                move |batch: RecordBatch| {
                    let keys = key_column(&batch, "a `_key` predicate's batch")
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                    key_mask(keys, &bounds).map_err(|e| ArrowError::ExternalError(Box::new(e)))
                },
            )));
        }
        if !predicates.is_empty() {
            builder = builder.with_row_filter(RowFilter::new(predicates));
        }
        if let Some(limit) = self.plan.limit
            && self.columns.pushed
            && !self.plan.needs_key()
        {
            builder = builder.with_limit(limit);
        }
        let op = format!("reading {}", self.what);
        let stream: ParquetRecordBatchStream<ObjectFileReader> =
            builder.build().map_err(|source| Error::Parquet {
                op: op.clone(),
                source,
            })?;
        Ok(stream
            .map_err(move |source| Error::Parquet {
                op: op.clone(),
                source,
            })
            .boxed())
    }
}

/// Decodes parts of a file on their own tasks, each up to [`PART_AHEAD`] batches ahead of the
/// reader, and yields their batches in part order (so the file's order). Dropping the stream
/// aborts the tasks.
fn decode_ahead(parts: Vec<BatchStream>) -> BatchStream {
    let mut receivers = VecDeque::new();
    let mut tasks = VecDeque::new();
    for mut part in parts {
        let (tx, rx) = tokio::sync::mpsc::channel(PART_AHEAD);
        tasks.push_back(AbortOnDrop::spawn(async move {
            while let Some(batch) = part.next().await {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
        }));
        receivers.push_back(rx);
    }
    stream::unfold(
        (receivers, tasks),
        |(mut receivers, mut tasks)| async move {
            loop {
                let rx = receivers.front_mut()?;
                if let Some(batch) = rx.recv().await {
                    return Some((batch, (receivers, tasks)));
                }
                receivers.pop_front();
                // The part's task ended: a panic in it resumes here rather than losing its rows.
                if let Some(mut task) = tasks.pop_front()
                    && let Err(e) = task.join().await
                {
                    return Some((Err(e), (receivers, tasks)));
                }
            }
        },
    )
    .boxed()
}

/// Stops a stream after `limit` rows, cutting the last batch; the stream is not polled
/// again once the limit is reached.
pub(crate) fn limit_rows(
    batches: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    limit: Option<usize>,
) -> BatchStream {
    let Some(limit) = limit else {
        return batches.boxed();
    };
    stream::unfold(
        (batches.boxed(), 0usize),
        move |(mut batches, returned)| async move {
            loop {
                if returned >= limit {
                    return None;
                }
                match batches.next().await? {
                    Err(e) => return Some((Err(e), (batches, limit))),
                    Ok(b) if b.num_rows() == 0 => continue,
                    Ok(b) => {
                        let b = b.slice(0, b.num_rows().min(limit - returned));
                        let returned = returned + b.num_rows();
                        return Some((Ok(b), (batches, returned)));
                    }
                }
            }
        },
    )
    .boxed()
}
