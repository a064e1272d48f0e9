//! Merge-on-read: a scope's flushed files (deletion vectors applied) overlaid with its hot rows
//! (a hot upsert replaces the flushed row with its key, a hot tombstone hides it). The flushed
//! rows that hot keys replace are found by merge-joining the sorted hot keys with each file's
//! `_key` column and join the file's deletion vector for that read, so the decoder skips them
//! like flushed deletes; large reads decode their row groups in parallel.

pub mod dv;
pub(crate) mod keys;
pub mod object_reader;
pub(crate) mod read;

use std::ops::Bound;
use std::sync::Arc;

use arrow::array::{AsArray, BinaryArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::backend::{KeyRange, ScanRequest, scan_all};
use crate::codec::{KalamValue, Row, decode_batch, encode_key, value_at};
use crate::error::{Error, Result};
use crate::schema::{ColumnDefinition, DELETED_COLUMN, TableDefinition};
use crate::table::TableHandle;
use crate::table::filter::{BoundFilter, Filter};
pub use read::KEY_COLUMN;
use read::{FilePlan, KeyBounds, key_mask, output_schema, project, read_file};

/// What a scan returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanOptions {
    /// Columns to return, in this order (`None`: every column).
    pub columns: Option<Vec<String>>,
    /// Rows must match this.
    pub filter: Option<Filter>,
    /// Stop after this many rows.
    pub limit: Option<usize>,
    /// Also return `_seq` and `_updated`.
    pub with_system: bool,
}

impl ScanOptions {
    /// Every column of every row.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only rows matching `filter`.
    pub fn filtered(filter: Filter) -> Self {
        Self {
            filter: Some(filter),
            ..Self::default()
        }
    }
}

/// The encoded-key bounds a filter implies on a single-column primary key.
fn key_bounds(def: &TableDefinition, filter: Option<&Filter>) -> KeyBounds {
    let unbounded = (Bound::Unbounded, Bound::Unbounded);
    let pk: Vec<_> = def.primary_key().collect();
    let (Some(filter), [pk]) = (filter, pk.as_slice()) else {
        return unbounded;
    };
    let encode = |v: KalamValue| {
        crate::table::filter::coerce(&v, pk.data_type)
            .and_then(|v| encode_key(&[v], &[pk.name.as_str()]).ok())
    };
    let (lo, hi) = filter.bounds_of(&pk.name);
    let lo = match lo {
        Bound::Included(v) => encode(v).map_or(Bound::Unbounded, Bound::Included),
        _ => Bound::Unbounded,
    };
    let hi = match hi {
        Bound::Included(v) => encode(v).map_or(Bound::Unbounded, Bound::Included),
        _ => Bound::Unbounded,
    };
    (lo, hi)
}

fn hot_range(prefix: &[u8], keys: &KeyBounds) -> KeyRange {
    let with_prefix = |k: &Vec<u8>| {
        let mut out = prefix.to_vec();
        out.extend_from_slice(k);
        Bytes::from(out)
    };
    let start = match &keys.0 {
        Bound::Included(k) => Bound::Included(with_prefix(k)),
        Bound::Excluded(k) => Bound::Excluded(with_prefix(k)),
        Bound::Unbounded if prefix.is_empty() => Bound::Unbounded,
        Bound::Unbounded => Bound::Included(Bytes::copy_from_slice(prefix)),
    };
    let end = match &keys.1 {
        Bound::Included(k) => Bound::Included(with_prefix(k)),
        Bound::Excluded(k) => Bound::Excluded(with_prefix(k)),
        Bound::Unbounded if prefix.is_empty() => Bound::Unbounded,
        Bound::Unbounded => {
            crate::backend::prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded)
        }
    };
    KeyRange::Range(start, end)
}

/// Resolves a projection against the current columns.
pub(crate) fn projected_columns(
    def: &TableDefinition,
    columns: Option<&[String]>,
) -> Result<Vec<ColumnDefinition>> {
    match columns {
        None => Ok(def.columns().to_vec()),
        Some(names) => names
            .iter()
            .map(|n| {
                def.schema
                    .column(n)
                    .cloned()
                    .ok_or_else(|| Error::InvalidQuery {
                        table: def.id.to_string(),
                        reason: format!("no column `{n}`"),
                    })
            })
            .collect(),
    }
}

/// The hot entries of a scope within key bounds, taken under the table's commit lock together
/// with the file list, so no row is seen twice or missed while a flush commits.
pub(crate) struct Snapshot {
    pub files: Vec<crate::table::FileEntry>,
    pub hot: Vec<(Bytes, Bytes)>,
}

pub(crate) async fn snapshot(
    table: &TableHandle,
    scope: &str,
    keys: &KeyBounds,
) -> Result<Snapshot> {
    let _read = table.commit.read().await;
    let files = table.files(scope);
    let hot = if table.buffered(scope) > 0 {
        let prefix = table.scope_prefix(scope);
        scan_all(
            table.storage.hot.as_ref(),
            &table.hot,
            ScanRequest::new(hot_range(&prefix, keys)).chunk_size(4096),
        )
        .await?
    } else {
        Vec::new()
    };
    Ok(Snapshot { files, hot })
}

/// Decodes hot entries into a batch of the current user columns + `_seq`, `_updated`,
/// `_deleted` + `_key` (the encoded primary key after the scope prefix).
pub(crate) fn hot_batch(table: &TableHandle, entries: &[(Bytes, Bytes)]) -> Result<RecordBatch> {
    let def = table.definition();
    let def = def.as_ref();
    let current = def.schema.version;
    let mut upgraded: Vec<Vec<u8>> = Vec::new();
    let mut rows: Vec<&[u8]> = Vec::with_capacity(entries.len());
    let needs_upgrade = entries
        .iter()
        .any(|(_, v)| crate::codec::read_header(v).map_or(true, |h| h.schema_version != current));
    if needs_upgrade {
        for (_, v) in entries {
            upgraded.push(upgrade_hot_row(def, v)?);
        }
        rows.extend(upgraded.iter().map(Vec::as_slice));
    } else {
        rows.extend(entries.iter().map(|(_, v)| v.as_ref()));
    }
    // Tombstones hold only their key columns, so every column decodes as nullable here.
    let schema = def.arrow_schema(false);
    let nullable = Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ));
    let batch = decode_batch(rows, &nullable, true)?;
    let kind = def.table_type;
    let keys = BinaryArray::from_iter_values(
        entries
            .iter()
            .map(|(k, _)| crate::table::split_hot_key(kind, k).1),
    );
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(KEY_COLUMN, DataType::Binary, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(keys));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|source| Error::Arrow {
        op: "adding keys to hot rows",
        source,
    })
}

/// A hot row written in an older schema version, re-encoded in `def`'s current one (added
/// columns filled, dropped ones gone).
pub(crate) fn upgrade_hot_row(def: &TableDefinition, bytes: &[u8]) -> Result<Vec<u8>> {
    let row = Row::decode(bytes).map_err(|e| Error::decode("hot row", e))?;
    let system = row.system;
    let values = crate::table::upgrade_row(def, row)?;
    Ok(Row {
        schema_version: def.schema.version,
        values,
        system,
    }
    .encode())
}

/// Merge-on-read scan of one scope.
pub(crate) async fn scan(
    table: &TableHandle,
    scope: &str,
    options: &ScanOptions,
) -> Result<Vec<RecordBatch>> {
    let def = table.definition();
    let columns = projected_columns(&def, options.columns.as_deref())?;
    let bound: Option<BoundFilter> = options
        .filter
        .as_ref()
        .map(|f| f.bind(&def.schema, &def.id.to_string()))
        .transpose()?;
    let keys = key_bounds(&def, options.filter.as_ref());
    let snap = snapshot(table, scope, &keys).await?;
    let out_schema = output_schema(&columns, options.with_system, false);
    let mut out = Vec::new();
    let mut returned = 0usize;
    let left = |returned: usize| options.limit.map(|l| l.saturating_sub(returned));

    // Hot rows first: they are the newest, and their keys hide flushed rows.
    let mut hidden: Option<BinaryArray> = None;
    if !snap.hot.is_empty() {
        let batch = hot_batch(table, &snap.hot)?;
        let keys_array = batch
            .column_by_name(KEY_COLUMN)
            .expect("hot_batch adds `_key`")
            .as_binary::<i32>()
            .clone();
        hidden = Some(keys_array.clone());
        let deleted = batch
            .column_by_name(DELETED_COLUMN)
            .expect("decode_batch adds `_deleted`")
            .as_boolean()
            .clone();
        let updated = batch
            .column_by_name(crate::schema::UPDATED_COLUMN)
            .expect("decode_batch adds `_updated`")
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone();
        let alive: arrow::array::BooleanArray = (0..batch.num_rows())
            .map(|i| Some(!deleted.value(i) && !table.expired(updated.value(i))))
            .collect();
        let mut mask =
            arrow::compute::and(&alive, &key_mask(&keys_array, &keys)?).map_err(|source| {
                Error::Arrow {
                    op: "masking hot rows",
                    source,
                }
            })?;
        if let Some(f) = &bound {
            mask = arrow::compute::and_kleene(&mask, &f.evaluate(&batch)?).map_err(|source| {
                Error::Arrow {
                    op: "filtering hot rows",
                    source,
                }
            })?;
        }
        let filtered = filter_record_batch(&batch, &mask).map_err(|source| Error::Arrow {
            op: "filtering hot rows",
            source,
        })?;
        let mut projected = project(&filtered, &out_schema)?;
        if let Some(l) = left(returned)
            && projected.num_rows() > l
        {
            projected = projected.slice(0, l);
        }
        returned += projected.num_rows();
        if projected.num_rows() > 0 {
            out.push(projected);
        }
    }
    for entry in &snap.files {
        if left(returned) == Some(0) {
            break;
        }
        // Flushed rows under a hot key (hot keys come sorted, like the file's) join the
        // file's deletion vector for this read, so the decoder skips them like flushed deletes.
        let dead = match &hidden {
            Some(keys) => Some(keys::hide_keys(table, entry, keys.iter().flatten()).await?),
            None => None,
        };
        let plan = FilePlan {
            columns: &columns,
            all_columns: def.columns(),
            with_system: options.with_system,
            with_key: false,
            filter: bound.as_ref(),
            keys: &keys,
            dead: dead.as_ref(),
            limit: left(returned),
        };
        for batch in read_file(table, entry, &plan).await? {
            returned += batch.num_rows();
            out.push(batch);
        }
    }
    Ok(out)
}

/// Point read of one row by primary key: the hot entry if there is one, else the files.
pub(crate) async fn get(
    table: &TableHandle,
    scope: &str,
    key: &[KalamValue],
) -> Result<Option<Vec<KalamValue>>> {
    let pk = table.encode_primary_key(key)?;
    let _read = table.commit.read().await;
    let mut hot_key = table.scope_prefix(scope);
    hot_key.extend_from_slice(&pk);
    match table.hot_entry(&hot_key).await? {
        Some(values) => Ok(values),
        None => read::get_flushed(table, scope, &pk).await,
    }
}

/// The values of row `row` of a scan batch, in column order.
pub fn row_values(batch: &RecordBatch, row: usize) -> Result<Vec<KalamValue>> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| value_at(a.as_ref(), crate::types::kalam_type_of_field(f)?, row))
        .collect()
}
