//! Point reads by primary key: the hot entry if there is one, else the live flushed row,
//! newest file first; and the batched lookup of many keys that the write path uses.

use std::collections::HashMap;
use std::ops::{Bound, Range};
use std::sync::Arc;

use arrow::array::Array;
use arrow::record_batch::RecordBatch;

use super::file::read_file;
use super::join::FileKeyJoin;
use super::plan::FilePlan;
use crate::codec::{KalamValue, decode_key, value_at};
use crate::error::{Error, Result};
use crate::format::{DeletionVector, Hidden, KeyPage, key_column};
use crate::ids::KeyScope;
use crate::schema::{ColumnDefinition, TableDefinition};
use crate::table::{FileEntry, TableHandle};

/// Keys a batch must look up in one file before a merge-join with the file's `_key` column
/// beats one point read (bloom filter, one page) per key.
const MERGE_JOIN_KEYS: usize = 32;

/// A live flushed row: its values in the current schema, and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlushedRow {
    /// The values, in column order.
    pub(crate) values: Vec<KalamValue>,
    /// Its file and position.
    pub(crate) at: Hidden,
    /// Its `_seq`, when the read asked for it.
    pub(crate) seq: Option<i64>,
}

/// Point read of one row by primary key.
pub(crate) async fn get(
    table: &TableHandle,
    scope: &KeyScope,
    key: &[KalamValue],
) -> Result<Option<Vec<KalamValue>>> {
    let pk = table.encode_primary_key(key)?;
    let _read = table.read_tiers().await;
    let mut hot_key = table.scope_prefix(scope);
    hot_key.extend_from_slice(&pk);
    match table.hot_entry(&hot_key).await? {
        Some(values) => Ok(values),
        None => Ok(get_flushed(table, scope, &pk).await?.map(|row| row.values)),
    }
}

/// Point reads of many rows by primary key (in any order): the values of each key's row, or
/// `None`, in the order asked. Hot entries come from one `get_many`, the others from one pass
/// over the files.
pub(crate) async fn get_many(
    table: &TableHandle,
    scope: &KeyScope,
    keys: &[Vec<KalamValue>],
) -> Result<Vec<Option<Vec<KalamValue>>>> {
    let pks = keys
        .iter()
        .map(|k| table.encode_primary_key(k))
        .collect::<Result<Vec<_>>>()?;
    let prefix = table.scope_prefix(scope);
    let hot_keys: Vec<Vec<u8>> = pks
        .iter()
        .map(|pk| [prefix.as_slice(), pk].concat())
        .collect();
    let _read = table.read_tiers().await;
    let asked: Vec<&[u8]> = hot_keys.iter().map(Vec::as_slice).collect();
    let hot = table.storage.hot.get_many(&table.hot, &asked).await?;
    let cold: Vec<&[u8]> = pks
        .iter()
        .zip(&hot)
        .filter(|(_, h)| h.is_none())
        .map(|(pk, _)| pk.as_slice())
        .collect();
    let mut flushed = get_flushed_many(table, scope, &cold).await?;
    pks.iter()
        .zip(hot)
        .map(|(pk, hot)| match hot {
            Some(bytes) => table.hot_values(&bytes),
            None => Ok(flushed.remove(pk.as_slice()).map(|row| row.values)),
        })
        .collect()
}

/// The current values of the flushed row with encoded key `key` in `scope`, if a live one
/// exists: files pruned by key range, row-group statistics and bloom filter.
async fn get_flushed(
    table: &TableHandle,
    scope: &KeyScope,
    key: &[u8],
) -> Result<Option<FlushedRow>> {
    let def = table.definition();
    let view = table.files_view(scope);
    for entry in view.files.iter().rev().filter(|f| f.meta.may_hold(key)) {
        if let Some(row) = get_in_file(table, &def, entry, key).await? {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

/// The live flushed rows of many encoded keys of one scope (any order), by key. A file asked
/// for a few keys takes point reads; one asked for many merge-joins them with its sorted
/// `_key` column and reads only the matched rows.
pub(crate) async fn get_flushed_many(
    table: &TableHandle,
    scope: &KeyScope,
    keys: &[&[u8]],
) -> Result<HashMap<Vec<u8>, FlushedRow>> {
    flushed_rows(table, scope, keys, false).await
}

/// [`get_flushed_many`] with each row's `_seq`: every file asked for its keys by a merge-join
/// (the change log finds its rows so).
pub(crate) async fn get_flushed_versions(
    table: &TableHandle,
    scope: &KeyScope,
    keys: &[&[u8]],
) -> Result<HashMap<Vec<u8>, FlushedRow>> {
    flushed_rows(table, scope, keys, true).await
}

async fn flushed_rows(
    table: &TableHandle,
    scope: &KeyScope,
    keys: &[&[u8]],
    with_seq: bool,
) -> Result<HashMap<Vec<u8>, FlushedRow>> {
    let mut found: HashMap<Vec<u8>, FlushedRow> = HashMap::new();
    let view = table.files_view(scope);
    if view.files.is_empty() || keys.is_empty() {
        return Ok(found);
    }
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    let def = table.definition();
    // Newest file first: a key has at most one live flushed row.
    for entry in view.files.iter().rev() {
        let wanted: Vec<&[u8]> = keys
            .iter()
            .copied()
            .filter(|k| entry.meta.may_hold(k) && !found.contains_key(*k))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        if !with_seq && wanted.len() < MERGE_JOIN_KEYS {
            for key in &wanted {
                if let Some(row) = get_in_file(table, &def, entry, key).await? {
                    found.insert(key.to_vec(), row);
                }
            }
        } else {
            read_joined(table, &def, entry, &wanted, with_seq, &mut found).await?;
        }
    }
    Ok(found)
}

/// Finds `wanted` (sorted) in one file by a merge-join and reads only their live rows (with
/// their `_seq` when `with_system`).
async fn read_joined(
    table: &TableHandle,
    def: &Arc<TableDefinition>,
    entry: &FileEntry,
    wanted: &[&[u8]],
    with_system: bool,
    found: &mut HashMap<Vec<u8>, FlushedRow>,
) -> Result<()> {
    let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else {
        return Ok(());
    };
    let mut join = FileKeyJoin::expecting(entry.clone(), wanted.len(), first, last);
    let mut live = Vec::new();
    let mut positions: HashMap<&[u8], u64> = HashMap::new();
    for key in wanted {
        if let Some(pos) = join.position(table, key).await?
            && !entry.dv.contains(pos)
        {
            live.push(pos);
            positions.insert(key, pos);
        }
    }
    if live.is_empty() {
        return Ok(());
    }
    let dead = DeletionVector::all_except(entry.meta.rows, live);
    let file = entry.meta.id;
    let plan = FilePlan {
        keys: (
            Bound::Included(first.to_vec()),
            Bound::Included(last.to_vec()),
        ),
        ..FilePlan::all(def.clone(), with_system, true)
    };
    let what = table.data_file(&entry.meta).describe();
    for batch in read_file(table, entry, &plan, Some(&dead)).await? {
        let keys = key_column(&batch, &what)?;
        for row in 0..batch.num_rows() {
            let key = keys.value(row);
            let position = positions.get(key).copied().ok_or_else(|| Error::Corrupt {
                what: what.clone(),
                reason: format!("read row {key:02x?}, which the merge-join did not find"),
            })?;
            let values = row_of(&batch, def, row)?;
            let at = Hidden { file, position };
            let seq = match with_system {
                true => Some(seq_at(&batch, def, row, &what)?),
                false => None,
            };
            found.insert(key.to_vec(), FlushedRow { values, at, seq });
        }
    }
    Ok(())
}

/// The live row of `key` in one file, by a point read: the file's `_key` page directory
/// (cached with its footer) names the page that may hold the key, the row group's bloom
/// filter may rule it out, the page's keys (decoded once, then kept in the storage's metadata
/// cache) give its position, and only that row is decoded (then kept in the same cache, so a
/// row read again decodes nothing).
async fn get_in_file(
    table: &TableHandle,
    def: &Arc<TableDefinition>,
    entry: &FileEntry,
    key: &[u8],
) -> Result<Option<FlushedRow>> {
    let file = table.data_file(&entry.meta);
    let index = table.file_index.index(file).await?;
    let Some(pages) = &index.key_pages else {
        return get_in_file_by_join(table, def, entry, key).await;
    };
    // The bloom verdict of the last row group asked (pages holding a key are adjacent).
    let mut bloom_verdict: Option<(usize, bool)> = None;
    for page in pages.holding(key) {
        let may_hold = match bloom_verdict {
            Some((row_group, may_hold)) if row_group == page.row_group => may_hold,
            _ => {
                let bloom = table
                    .file_index
                    .key_bloom(file, &index.footer, page.row_group)
                    .await?;
                let may_hold = bloom.is_none_or(|b| b.check(key));
                bloom_verdict = Some((page.row_group, may_hold));
                may_hold
            }
        };
        if !may_hold {
            continue;
        }
        if let Some(position) = position_in_page(table, def, entry, page, key).await? {
            let rows = page.first_row..page.first_row + page.rows;
            return read_row_at(table, def, entry, rows, position, key).await;
        }
    }
    Ok(None)
}

/// The position of `key` in one `_key` page of a file, if the page holds it: a binary search
/// of the page's keys, decoded on first use and then kept in the storage's metadata cache.
async fn position_in_page(
    table: &TableHandle,
    def: &Arc<TableDefinition>,
    entry: &FileEntry,
    page: &KeyPage,
    key: &[u8],
) -> Result<Option<u64>> {
    let file = entry.meta.id;
    let keys = match table.file_index.page_keys(file, page.first_row) {
        Some(keys) => keys,
        None => {
            let plan = FilePlan {
                columns: Vec::new(),
                positions: Some(page.first_row..page.first_row + page.rows),
                ..FilePlan::all(def.clone(), false, true)
            };
            let what = table.data_file(&entry.meta).describe();
            // Positions are of the whole file, so the decode must not skip dead rows.
            let batches = read_file(table, entry, &plan, Some(&DeletionVector::new())).await?;
            let joined = arrow::compute::concat_batches(&plan.output_schema(), &batches)
                .map_err(Error::arrow("joining a page's keys"))?;
            let keys = key_column(&joined, &what)?.clone();
            table
                .file_index
                .keep_page_keys(file, page.first_row, keys.clone());
            keys
        }
    };
    // A file's keys are sorted and unique.
    let (mut lo, mut hi) = (0usize, keys.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match keys.value(mid).cmp(key) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(Some(page.first_row + mid as u64)),
        }
    }
    Ok(None)
}

/// The row at `position` of a file, whose encoded key is `key`, unless its deletion vector
/// holds it: its primary-key values decoded from `key` (a key round-trips exactly), the other
/// columns taken from the decoded rows `span` (the `_key` page holding `position`). The span
/// is decoded whole on first use and then kept in the storage's metadata cache, so a later read
/// of any row of the page decodes nothing (a warm point read is a cache lookup).
async fn read_row_at(
    table: &TableHandle,
    def: &Arc<TableDefinition>,
    entry: &FileEntry,
    span: Range<u64>,
    position: u64,
    key: &[u8],
) -> Result<Option<FlushedRow>> {
    if entry.dv.contains(position) {
        return Ok(None);
    }
    let file = entry.meta.id;
    let at = Hidden { file, position };
    let what = || table.data_file(&entry.meta).describe();
    let columns: Vec<_> = def.columns().iter().filter(|c| !c.primary_key).collect();
    // A table of key columns only reads nothing: its row is its key.
    let rows = match columns.is_empty() {
        true => None,
        false => Some(span_rows(table, def, entry, &columns, &span).await?),
    };
    let offset = (position - span.start) as usize;
    let key_types: Vec<_> = def.primary_key().map(|c| c.data_type).collect();
    let mut key_values = decode_key(key, &key_types)?.into_iter();
    let mut read = columns
        .iter()
        .zip(rows.as_ref().map(RecordBatch::columns).unwrap_or_default());
    let values = def
        .columns()
        .iter()
        .map(|c| {
            if c.primary_key {
                return key_values.next().ok_or_else(|| Error::Corrupt {
                    what: what(),
                    reason: format!("key {key:02x?} holds fewer values than the primary key"),
                });
            }
            match read.next() {
                Some((column, array)) => value_at(array.as_ref(), column.data_type, offset),
                None => Err(Error::Corrupt {
                    what: what(),
                    reason: format!("row {position} lacks column {}", c.name),
                }),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(FlushedRow {
        values,
        at,
        seq: None,
    }))
}

/// The non-key user `columns` of a file's rows `span` in the current schema, from the
/// metadata cache or decoded (every row, dead ones too: positions are of the whole file) and
/// kept.
async fn span_rows(
    table: &TableHandle,
    def: &Arc<TableDefinition>,
    entry: &FileEntry,
    columns: &[&ColumnDefinition],
    span: &Range<u64>,
) -> Result<RecordBatch> {
    let file = entry.meta.id;
    let version = def.schema.version;
    let wanted = (span.end - span.start) as usize;
    // A span kept from a one-row read (a file without page statistics) may start where a
    // page does: only a batch covering the whole span answers.
    if let Some(rows) = table.file_index.rows(file, span.start, version)
        && rows.num_rows() >= wanted
    {
        return Ok(rows);
    }
    let plan = FilePlan {
        columns: columns.iter().map(|&c| c.clone()).collect(),
        positions: Some(span.clone()),
        ..FilePlan::all(def.clone(), false, false)
    };
    let mut read = read_file(table, entry, &plan, Some(&DeletionVector::new())).await?;
    let rows = match read.len() {
        1 => read.remove(0),
        _ => arrow::compute::concat_batches(&plan.output_schema(), &read)
            .map_err(Error::arrow("joining a page's rows"))?,
    };
    // The decoder's buffers are sized for its batches, not for these rows: a kept page holds
    // only its own bytes.
    let (schema, mut columns, _) = rows.into_parts();
    columns.iter_mut().for_each(Array::shrink_to_fit);
    let rows =
        RecordBatch::try_new(schema, columns).map_err(Error::arrow("keeping a page's rows"))?;
    if rows.num_rows() != wanted {
        return Err(Error::Corrupt {
            what: table.data_file(&entry.meta).describe(),
            reason: format!(
                "rows {}..{} read as {} rows",
                span.start,
                span.end,
                rows.num_rows()
            ),
        });
    }
    table
        .file_index
        .keep_rows(file, span.start, version, rows.clone());
    Ok(rows)
}

/// The live row of `key` in a file without `_key` page statistics: its position by a
/// merge-join with the file's `_key` column (row groups pruned by statistics and bloom
/// filter), then that row.
async fn get_in_file_by_join(
    table: &TableHandle,
    def: &Arc<TableDefinition>,
    entry: &FileEntry,
    key: &[u8],
) -> Result<Option<FlushedRow>> {
    let mut join = FileKeyJoin::new(entry.clone());
    match join.position(table, key).await? {
        Some(position) => {
            read_row_at(table, def, entry, position..position + 1, position, key).await
        }
        None => Ok(None),
    }
}

/// The `_seq` of one row of a file read with the system columns (right after the user
/// columns).
fn seq_at(batch: &RecordBatch, def: &TableDefinition, row: usize, what: &str) -> Result<i64> {
    batch
        .column(def.columns().len())
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .map(|seqs| seqs.value(row))
        .ok_or_else(|| Error::Corrupt {
            what: what.to_owned(),
            reason: "its `_seq` column is not Int64".into(),
        })
}

/// The user-column values of one row of a file read, in column order.
fn row_of(batch: &RecordBatch, def: &TableDefinition, row: usize) -> Result<Vec<KalamValue>> {
    def.columns()
        .iter()
        .enumerate()
        .map(|(i, c)| value_at(batch.column(i).as_ref(), c.data_type, row))
        .collect()
}
