//! Reading one flushed Parquet file: row groups pruned by key range, statistics and bloom
//! filter, the deletion vector applied as a `RowSelection` before decoding, predicates pushed
//! into the decoder, and old schema versions adapted to the current one.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Scalar, new_null_array};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter, RowSelection,
};
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::PageIndexPolicy;

use super::dv::DeletionVector;
use super::object_reader::ObjectFileReader;
use crate::codec::{KalamValue, array_from_values, value_at};
use crate::error::{Error, Result};
use crate::schema::{ColumnDefinition, SEQ_COLUMN, UPDATED_COLUMN};
use crate::table::filter::{BoundFilter, ColumnStats};
use crate::table::{FileEntry, TableHandle};

/// The hidden column holding each row's encoded primary key (sort key, bloom filter, pruning).
pub const KEY_COLUMN: &str = "_key";

/// Rows read per decoded batch.
pub(crate) const BATCH_ROWS: usize = 8192;

/// Reads selecting at least this many rows decode their row groups in parallel.
const PARALLEL_READ_ROWS: usize = 64 * 1024;

/// Inclusive or exclusive bounds on encoded keys.
pub(crate) type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// What to read from a file.
pub(crate) struct FilePlan<'a> {
    /// User columns to return, in the current schema.
    pub columns: &'a [ColumnDefinition],
    /// All current columns (for evaluating the filter).
    pub all_columns: &'a [ColumnDefinition],
    /// Also return `_seq` and `_updated`.
    pub with_system: bool,
    /// Also return `_key`.
    pub with_key: bool,
    /// Rows must match this.
    pub filter: Option<&'a BoundFilter>,
    /// Rows must have keys within these bounds.
    pub keys: &'a KeyBounds,
    /// Positions to skip instead of the file's own deletion vector (it plus the rows that
    /// hot entries replace).
    pub dead: Option<&'a DeletionVector>,
    /// Stop after this many rows.
    pub limit: Option<usize>,
}

/// The arrow schema of a file read or a scan result.
pub(crate) fn output_schema(
    columns: &[ColumnDefinition],
    with_system: bool,
    with_key: bool,
) -> SchemaRef {
    let mut fields: Vec<Field> = columns.iter().map(ColumnDefinition::arrow_field).collect();
    if with_system {
        fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
        fields.push(Field::new(UPDATED_COLUMN, DataType::Int64, false));
    }
    if with_key {
        fields.push(Field::new(KEY_COLUMN, DataType::Binary, false));
    }
    Arc::new(Schema::new(fields))
}

fn parquet_err(op: String) -> impl FnOnce(parquet::errors::ParquetError) -> Error {
    move |source| Error::Parquet { op, source }
}

fn arrow_err(op: &'static str) -> impl Fn(ArrowError) -> Error {
    move |source| Error::Arrow { op, source }
}

pub(crate) fn reader(table: &TableHandle, entry: &FileEntry) -> ObjectFileReader {
    ObjectFileReader::new(
        table.storage.cold.store.clone(),
        &entry.meta.path,
        entry.meta.size,
    )
}

/// The file's footer and page index, cached per table and file.
pub(crate) async fn file_metadata(
    table: &TableHandle,
    entry: &FileEntry,
) -> Result<ArrowReaderMetadata> {
    if let Some(meta) = table.parquet_meta.lock().get(&entry.meta.id) {
        return Ok(meta.clone());
    }
    let mut r = reader(table, entry);
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let meta = ArrowReaderMetadata::load_async(&mut r, options)
        .await
        .map_err(parquet_err(format!(
            "reading the footer of {} (table {})",
            entry.meta.path, table.id
        )))?;
    table
        .parquet_meta
        .lock()
        .insert(entry.meta.id, meta.clone());
    Ok(meta)
}

fn bounds_overlap(min: &[u8], max: &[u8], keys: &KeyBounds) -> bool {
    let below = match &keys.1 {
        Bound::Included(hi) => min > hi.as_slice(),
        Bound::Excluded(hi) => min >= hi.as_slice(),
        Bound::Unbounded => false,
    };
    let above = match &keys.0 {
        Bound::Included(lo) => max < lo.as_slice(),
        Bound::Excluded(lo) => max <= lo.as_slice(),
        Bound::Unbounded => false,
    };
    !below && !above
}

fn point_key(keys: &KeyBounds) -> Option<&[u8]> {
    match keys {
        (Bound::Included(lo), Bound::Included(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

/// Reads the rows of one file that survive its deletion vector, the plan's filter, key bounds
/// and hidden keys, in the plan's output schema.
pub(crate) async fn read_file(
    table: &TableHandle,
    entry: &FileEntry,
    plan: &FilePlan<'_>,
) -> Result<Vec<RecordBatch>> {
    let out_schema = output_schema(plan.columns, plan.with_system, plan.with_key);
    if !bounds_overlap(&entry.meta.min_key, &entry.meta.max_key, plan.keys)
        || plan.dead.unwrap_or(&entry.dv).len() >= entry.meta.rows
    {
        return Ok(Vec::new());
    }
    let meta = file_metadata(table, entry).await?;
    let file_schema = meta.schema().clone();
    let parquet_schema = meta.parquet_schema();
    let row_groups = meta.metadata().row_groups();
    let n = row_groups.len();
    let what = || format!("reading {} (table {})", entry.meta.path, table.id);
    // Current columns map to the file's by id: the file may predate a rename, a widening, an
    // added or a dropped-and-re-added column.
    let def = table.definition();
    let file_version = def.version(entry.meta.schema_version);
    let source = |c: &ColumnDefinition| -> Option<String> {
        match file_version {
            Some(v) => v.column_by_id(c.id).map(|o| o.name.clone()),
            None => Some(c.name.clone()),
        }
    };
    // Whether the file holds current column `name` under that name and in its current type,
    // so statistics and decoder predicates can use it as is.
    let unchanged = |name: &str| -> bool {
        let current = plan.all_columns.iter().find(|c| c.name == name);
        match (file_schema.field_with_name(name), current) {
            (Ok(f), Some(c)) => {
                source(c).as_deref() == Some(name) && f.data_type() == &c.data_type.to_arrow()
            }
            _ => false,
        }
    };

    // Row groups: key range from the `_key` statistics, then the filter's statistics.
    let mut keep = vec![true; n];
    if let Ok(conv) = StatisticsConverter::try_new(KEY_COLUMN, &file_schema, parquet_schema) {
        let mins = conv.row_group_mins(row_groups.iter());
        let maxes = conv.row_group_maxes(row_groups.iter());
        if let (Ok(mins), Ok(maxes)) = (mins, maxes) {
            let (mins, maxes) = (mins.as_binary::<i32>(), maxes.as_binary::<i32>());
            for (i, k) in keep.iter_mut().enumerate() {
                if mins.is_valid(i) && maxes.is_valid(i) {
                    *k = bounds_overlap(mins.value(i), maxes.value(i), plan.keys);
                }
            }
        }
    }
    if let Some(filter) = plan.filter {
        let stats = |column: &str| -> Option<ColumnStats> {
            if !unchanged(column) {
                return None;
            }
            let conv = StatisticsConverter::try_new(column, &file_schema, parquet_schema).ok()?;
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
    if let Some(point) = point_key(plan.keys) {
        for (i, k) in keep.iter_mut().enumerate() {
            if *k && let Some(bloom) = key_bloom(table, entry, &meta, i).await? {
                *k = bloom.check(point);
            }
        }
    }

    // Pages: within kept row groups, only the `_key` pages whose range meets the key bounds.
    let pages = key_page_ranges(&meta, &keep, plan.keys);

    // The deletion vector becomes a selection over the kept row groups, before decoding: per
    // kept row group, its live row ranges (relative to the row group) and its row count.
    let dead = plan.dead.unwrap_or(&entry.dv);
    let mut kept: Vec<(usize, Vec<std::ops::Range<usize>>, usize)> = Vec::new();
    let mut start = 0u64;
    let mut dead_positions = dead.iter().peekable();
    for (i, rg) in row_groups.iter().enumerate() {
        let rows = rg.num_rows() as u64;
        while dead_positions.next_if(|d| *d < start).is_some() {}
        if keep[i] {
            let allowed = pages.get(&i);
            let mut ranges = Vec::new();
            // Adds the live positions [from, to) (absolute), limited to the allowed pages.
            let mut push = |from: u64, to: u64| {
                let (from, to) = (from - start, to - start);
                let mut add = |lo: u64, hi: u64| {
                    if lo < hi {
                        ranges.push(lo as usize..hi as usize);
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
            if !ranges.is_empty() {
                kept.push((i, ranges, rows as usize));
            }
        }
        start += rows;
    }
    if kept.is_empty() {
        return Ok(Vec::new());
    }

    // Columns to decode: output, filter, key and system columns that the file has.
    let filter_columns: Vec<&str> = plan.filter.map(|f| f.columns()).unwrap_or_default();
    let needs_key = plan.with_key || !matches!(plan.keys, (Bound::Unbounded, Bound::Unbounded));
    let needed: Vec<&ColumnDefinition> = plan
        .all_columns
        .iter()
        .filter(|c| {
            plan.columns.iter().any(|o| o.name == c.name)
                || filter_columns.contains(&c.name.as_str())
        })
        .collect();
    let sources: Vec<Option<String>> = needed.iter().map(|c| source(c)).collect();
    let mut wanted: Vec<&str> = sources.iter().flatten().map(String::as_str).collect();
    if plan.with_system {
        wanted.extend([SEQ_COLUMN, UPDATED_COLUMN]);
    }
    if needs_key {
        wanted.push(KEY_COLUMN);
    }
    let indices: Vec<usize> = wanted
        .iter()
        .filter_map(|name| file_schema.index_of(name).ok())
        .collect();
    // Push the filter into the decoder when the file has every column it reads, with the
    // current type; otherwise evaluate it after adapting the batch.
    let pushed = plan
        .filter
        .is_none_or(|_| filter_columns.iter().all(|name| unchanged(name)));
    let key_index = file_schema.index_of(KEY_COLUMN).ok();
    let build = |parts: &[(usize, Vec<std::ops::Range<usize>>, usize)]| {
        let mut ranges = Vec::new();
        let mut offset = 0usize;
        for (_, live, rows) in parts {
            ranges.extend(live.iter().map(|r| r.start + offset..r.end + offset));
            offset += rows;
        }
        let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), offset);
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader(table, entry), meta.clone())
                .with_projection(ProjectionMask::roots(parquet_schema, indices.clone()))
                .with_row_groups(parts.iter().map(|(i, _, _)| *i).collect())
                .with_row_selection(selection)
                .with_batch_size(BATCH_ROWS);
        let mut predicates: Vec<Box<dyn parquet::arrow::arrow_reader::ArrowPredicate>> = Vec::new();
        if let Some(filter) = plan.filter.filter(|_| pushed) {
            let idx: Vec<usize> = filter_columns
                .iter()
                .filter_map(|c| file_schema.index_of(c).ok())
                .collect();
            let f = filter.clone();
            predicates.push(Box::new(ArrowPredicateFn::new(
                ProjectionMask::roots(parquet_schema, idx),
                move |batch: RecordBatch| {
                    f.evaluate(&batch)
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))
                },
            )));
        }
        // Key bounds are checked on `_key` alone before other columns are decoded.
        if !matches!(plan.keys, (Bound::Unbounded, Bound::Unbounded))
            && let Some(key_index) = key_index
        {
            let bounds = plan.keys.clone();
            predicates.push(Box::new(ArrowPredicateFn::new(
                ProjectionMask::roots(parquet_schema, [key_index]),
                move |batch: RecordBatch| {
                    key_mask(batch.column(0).as_binary::<i32>(), &bounds)
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))
                },
            )));
        }
        if !predicates.is_empty() {
            builder = builder.with_row_filter(RowFilter::new(predicates));
        }
        if let Some(limit) = plan.limit
            && pushed
            && !needs_key
        {
            builder = builder.with_limit(limit);
        }
        builder.build().map_err(parquet_err(what()))
    };
    // A large read without a limit decodes its row groups in parallel parts, one task each,
    // on a multi-threaded runtime; results keep the file's order.
    let selected: usize = kept
        .iter()
        .map(|(_, live, _)| live.iter().map(ExactSizeIterator::len).sum::<usize>())
        .sum();
    let parts = match tokio::runtime::Handle::try_current() {
        Ok(rt)
            if plan.limit.is_none()
                && selected >= PARALLEL_READ_ROWS
                && rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
        {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(kept.len())
        }
        _ => 1,
    };
    let mut decoded: Vec<Vec<RecordBatch>> = Vec::new();
    let mut stream = None;
    if parts > 1 {
        let per_part = kept.len().div_ceil(parts);
        let tasks = kept
            .chunks(per_part)
            .map(|chunk| {
                let stream = build(chunk)?;
                Ok(crate::spawn::AbortOnDrop::spawn(
                    stream.try_collect::<Vec<RecordBatch>>(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        for mut task in tasks {
            decoded.push(task.join().await?.map_err(parquet_err(what()))?);
        }
    } else {
        stream = Some(build(&kept)?);
    }
    let mut decoded = decoded.into_iter().flatten();
    let mut next_batch = async || -> Result<Option<RecordBatch>> {
        match &mut stream {
            Some(stream) => stream.try_next().await.map_err(parquet_err(what())),
            None => Ok(decoded.next()),
        }
    };
    let mut out = Vec::new();
    let mut returned = 0usize;
    while let Some(batch) = next_batch().await? {
        let adapted = adapt(&batch, &needed, &sources, plan.with_system, needs_key)?;
        let mut mask: Option<BooleanArray> = None;
        let mut and = |m: BooleanArray| -> Result<()> {
            mask = Some(match mask.take() {
                None => m,
                Some(prev) => boolean::and_kleene(&prev, &m).map_err(arrow_err("masking"))?,
            });
            Ok(())
        };
        if !pushed && let Some(filter) = plan.filter {
            and(filter.evaluate(&adapted)?)?;
        }
        if needs_key {
            let keys = adapted
                .column_by_name(KEY_COLUMN)
                .expect("adapt adds `_key` when asked")
                .as_binary::<i32>()
                .clone();
            and(key_mask(&keys, plan.keys)?)?;
        }
        let filtered = match mask {
            Some(m) => filter_record_batch(&adapted, &m).map_err(arrow_err("filtering"))?,
            None => adapted,
        };
        let mut projected = project(&filtered, &out_schema)?;
        if let Some(limit) = plan.limit {
            let left = limit - returned;
            if projected.num_rows() > left {
                projected = projected.slice(0, left);
            }
        }
        returned += projected.num_rows();
        if projected.num_rows() > 0 {
            out.push(projected);
        }
        if plan.limit.is_some_and(|l| returned >= l) {
            break;
        }
    }
    Ok(out)
}

/// The `_key` bloom filter of one row group, cached per table.
pub(crate) async fn key_bloom(
    table: &TableHandle,
    entry: &FileEntry,
    meta: &ArrowReaderMetadata,
    row_group: usize,
) -> Result<Option<Arc<Sbbf>>> {
    if let Some(b) = table.blooms.lock().get(&(entry.meta.id, row_group)) {
        return Ok(b.clone());
    }
    let Ok(key_index) = meta.schema().index_of(KEY_COLUMN) else {
        return Ok(None);
    };
    let mut probe =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader(table, entry), meta.clone());
    let bloom = probe
        .get_row_group_column_bloom_filter(row_group, key_index)
        .await
        .map_err(parquet_err(format!(
            "reading the bloom filter of {} (table {})",
            entry.meta.path, table.id
        )))?
        .map(Arc::new);
    table
        .blooms
        .lock()
        .insert((entry.meta.id, row_group), bloom.clone());
    Ok(bloom)
}

/// For each kept row group, the row ranges (relative to the group) of the `_key` pages whose
/// min/max meet the key bounds; row groups without a page index are absent (all rows).
fn key_page_ranges(
    meta: &ArrowReaderMetadata,
    keep: &[bool],
    keys: &KeyBounds,
) -> HashMap<usize, Vec<std::ops::Range<u64>>> {
    let mut out = HashMap::new();
    if matches!(keys, (Bound::Unbounded, Bound::Unbounded)) {
        return out;
    }
    let metadata = meta.metadata();
    let (Some(columns), Some(offsets), Ok(conv)) = (
        metadata.column_index(),
        metadata.offset_index(),
        StatisticsConverter::try_new(KEY_COLUMN, meta.schema(), meta.parquet_schema()),
    ) else {
        return out;
    };
    for (rg, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
        let mins = conv.data_page_mins(columns, offsets, [&rg]);
        let maxes = conv.data_page_maxes(columns, offsets, [&rg]);
        let counts = conv.data_page_row_counts(offsets, metadata.row_groups(), [&rg]);
        let (Ok(mins), Ok(maxes), Ok(Some(counts))) = (mins, maxes, counts) else {
            continue;
        };
        let (mins, maxes) = (mins.as_binary::<i32>(), maxes.as_binary::<i32>());
        let mut at = 0u64;
        let mut allowed = Vec::new();
        for page in 0..counts.len() {
            let rows = counts.value(page);
            let overlaps = !(mins.is_valid(page) && maxes.is_valid(page))
                || bounds_overlap(mins.value(page), maxes.value(page), keys);
            if overlaps {
                allowed.push(at..at + rows);
            }
            at += rows;
        }
        out.insert(rg, allowed);
    }
    out
}

/// Keeps rows whose key is within `keys`.
pub(crate) fn key_mask(keys: &BinaryArray, bounds: &KeyBounds) -> Result<BooleanArray> {
    let mut mask = BooleanArray::from(vec![true; keys.len()]);
    let bound = |b: &Vec<u8>| Scalar::new(BinaryArray::from_vec(vec![b.as_slice()]));
    let and = |m: BooleanArray, n: std::result::Result<BooleanArray, ArrowError>| {
        boolean::and(&m, &n.map_err(arrow_err("key bounds"))?).map_err(arrow_err("key bounds"))
    };
    match &bounds.0 {
        Bound::Included(lo) => mask = and(mask, cmp::gt_eq(keys, &bound(lo)))?,
        Bound::Excluded(lo) => mask = and(mask, cmp::gt(keys, &bound(lo)))?,
        Bound::Unbounded => {}
    }
    match &bounds.1 {
        Bound::Included(hi) => mask = and(mask, cmp::lt_eq(keys, &bound(hi)))?,
        Bound::Excluded(hi) => mask = and(mask, cmp::lt(keys, &bound(hi)))?,
        Bound::Unbounded => {}
    }
    Ok(mask)
}

/// Builds a batch with `columns` under their current names and types (read from the file's
/// column `sources[i]`, cast from an older type, or filled with the default / NULL when the
/// file predates them), plus system and key columns.
fn adapt(
    batch: &RecordBatch,
    columns: &[&ColumnDefinition],
    sources: &[Option<String>],
    with_system: bool,
    with_key: bool,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (c, source) in columns.iter().zip(sources) {
        let field = c.arrow_field();
        let target = field.data_type().clone();
        let array = match source.as_deref().and_then(|s| batch.column_by_name(s)) {
            Some(a) if a.data_type() == &target => a.clone(),
            Some(a) => cast(a, &target).map_err(arrow_err("casting an old column"))?,
            None => fill(c, rows)?,
        };
        fields.push(field.with_nullable(true));
        arrays.push(array);
    }
    let mut take = |name: &str, data_type: DataType| -> Result<()> {
        let array = batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::Corrupt {
                what: "Parquet file".into(),
                reason: format!("column `{name}` missing"),
            })?;
        fields.push(Field::new(name, data_type, false));
        arrays.push(array);
        Ok(())
    };
    if with_system {
        take(SEQ_COLUMN, DataType::Int64)?;
        take(UPDATED_COLUMN, DataType::Int64)?;
    }
    if with_key {
        take(KEY_COLUMN, DataType::Binary)?;
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(arrow_err("adapting a batch to the current schema"))
}

/// A column that a file predates: its default, or NULL.
fn fill(c: &ColumnDefinition, rows: usize) -> Result<ArrayRef> {
    match &c.default {
        Some(v) if !v.is_null() => array_from_values(&c.name, c.data_type, &vec![v.clone(); rows]),
        _ => Ok(new_null_array(&c.data_type.to_arrow(), rows)),
    }
}

/// Selects `schema`'s columns from `batch` by name (types already match).
pub(crate) fn project(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let arrays = schema
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .ok_or_else(|| Error::Corrupt {
                    what: "scan batch".into(),
                    reason: format!("column `{}` missing", f.name()),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(arrow_err("projecting a batch"))
}

/// The current values of the flushed row with encoded key `key` in `scope`, if a live one
/// exists: files pruned by key range, row-group statistics and bloom filter.
pub(crate) async fn get_flushed(
    table: &TableHandle,
    scope: &str,
    key: &[u8],
) -> Result<Option<Vec<KalamValue>>> {
    let def = table.definition();
    for entry in table
        .files(scope)
        .iter()
        .rev()
        .filter(|f| f.meta.may_hold(key))
    {
        if let Some(values) = get_in_file(table, &def, entry, key).await? {
            return Ok(Some(values));
        }
    }
    Ok(None)
}

/// Keys a batch must look up in one file before a merge-join with the file's `_key` column
/// beats one point read (bloom filter, one page) per key.
const MERGE_JOIN_KEYS: usize = 32;

/// The live flushed rows of many encoded keys of one scope (any order), by key. A file asked
/// for a few keys takes point reads; one asked for many merge-joins them with its sorted
/// `_key` column and reads only the matched rows.
pub(crate) async fn get_flushed_many(
    table: &TableHandle,
    scope: &str,
    keys: &[&[u8]],
) -> Result<HashMap<Vec<u8>, Vec<KalamValue>>> {
    let mut found: HashMap<Vec<u8>, Vec<KalamValue>> = HashMap::new();
    let files = table.files(scope);
    if files.is_empty() || keys.is_empty() {
        return Ok(found);
    }
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    let def = table.definition();
    // Newest file first: a key has at most one live flushed row.
    for entry in files.iter().rev() {
        let wanted: Vec<&[u8]> = keys
            .iter()
            .copied()
            .filter(|k| entry.meta.may_hold(k) && !found.contains_key(*k))
            .collect();
        let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else {
            continue;
        };
        if wanted.len() < MERGE_JOIN_KEYS {
            for key in &wanted {
                if let Some(values) = get_in_file(table, &def, entry, key).await? {
                    found.insert(key.to_vec(), values);
                }
            }
            continue;
        }
        let mut cursor = super::keys::KeyCursor::open(table, entry.clone()).await?;
        let mut live = Vec::new();
        for key in &wanted {
            if let Some(pos) = cursor.seek(table, key).await?
                && !entry.dv.contains(pos)
            {
                live.push(pos);
            }
        }
        if live.is_empty() {
            continue;
        }
        let dead = DeletionVector::all_except(entry.meta.rows, live);
        let bounds: KeyBounds = (
            Bound::Included(first.to_vec()),
            Bound::Included(last.to_vec()),
        );
        let plan = FilePlan {
            columns: def.columns(),
            all_columns: def.columns(),
            with_system: false,
            with_key: true,
            filter: None,
            keys: &bounds,
            dead: Some(&dead),
            limit: None,
        };
        for batch in read_file(table, entry, &plan).await? {
            let batch_keys = batch
                .column_by_name(KEY_COLUMN)
                .expect("read_file adds `_key` when asked")
                .as_binary::<i32>();
            for row in 0..batch.num_rows() {
                let values = def
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| value_at(batch.column(i).as_ref(), c.data_type, row))
                    .collect::<Result<Vec<_>>>()?;
                found.insert(batch_keys.value(row).to_vec(), values);
            }
        }
    }
    Ok(found)
}

/// The live row of `key` in one file, by a point read.
async fn get_in_file(
    table: &TableHandle,
    def: &crate::schema::TableDefinition,
    entry: &FileEntry,
    key: &[u8],
) -> Result<Option<Vec<KalamValue>>> {
    let keys: KeyBounds = (Bound::Included(key.to_vec()), Bound::Included(key.to_vec()));
    let plan = FilePlan {
        columns: def.columns(),
        all_columns: def.columns(),
        with_system: false,
        with_key: false,
        filter: None,
        keys: &keys,
        dead: None,
        limit: Some(1),
    };
    let batches = read_file(table, entry, &plan).await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    def.columns()
        .iter()
        .enumerate()
        .map(|(i, c)| value_at(batch.column(i).as_ref(), c.data_type, 0))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
