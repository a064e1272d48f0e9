//! The columns of a table's data files and of the batches read from them: the user columns,
//! the system columns `_seq` and `_updated`, and the hidden `_key` (the encoded primary key,
//! the files' sort key); with bounds on `_key` and the mask they select.

use std::ops::Bound;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, BooleanArray, Scalar};
use arrow::compute::kernels::{boolean, cmp};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::codec::{SEQ_COLUMN, UPDATED_COLUMN};
use crate::error::{Error, Result};
use crate::schema::{ColumnDefinition, TableDefinition};

/// The hidden column holding each row's encoded primary key (sort key, bloom filter, pruning).
pub const KEY_COLUMN: &str = "_key";

/// Inclusive or exclusive bounds on encoded keys.
pub(crate) type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Bounds that admit every key.
pub(crate) const ALL_KEYS: KeyBounds = (Bound::Unbounded, Bound::Unbounded);

/// The arrow schema of a file read or a scan result: `columns`, then `_seq` and `_updated`
/// when `with_system`, then `_key` when `with_key`.
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

/// The arrow schema of a table file for `def`'s current version.
pub fn file_schema(def: &TableDefinition) -> SchemaRef {
    output_schema(def.columns(), true, true)
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
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(Error::arrow("projecting a batch"))
}

/// The `_key` column of a batch read from the file `what`; a batch without one means the file
/// is not a table file.
pub(crate) fn key_column<'b>(batch: &'b RecordBatch, what: &str) -> Result<&'b BinaryArray> {
    batch
        .column_by_name(KEY_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or_else(|| Error::Corrupt {
            what: what.to_owned(),
            reason: format!("no binary `{KEY_COLUMN}` column"),
        })
}

/// Whether `[min, max]` meets `keys`.
pub(crate) fn bounds_overlap(min: &[u8], max: &[u8], keys: &KeyBounds) -> bool {
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

/// The one key the bounds admit, if they admit exactly one.
pub(crate) fn point_key(keys: &KeyBounds) -> Option<&[u8]> {
    match keys {
        (Bound::Included(lo), Bound::Included(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

/// Whether the bounds admit every key.
pub(crate) fn is_unbounded(keys: &KeyBounds) -> bool {
    matches!(keys, (Bound::Unbounded, Bound::Unbounded))
}

/// Keeps rows whose key is within `bounds`.
pub(crate) fn key_mask(keys: &BinaryArray, bounds: &KeyBounds) -> Result<BooleanArray> {
    let mut mask = BooleanArray::from(vec![true; keys.len()]);
    let bound = |b: &Vec<u8>| Scalar::new(BinaryArray::from_vec(vec![b.as_slice()]));
    let err = Error::arrow("key bounds");
    let and = |m: BooleanArray, n| boolean::and(&m, &n).map_err(&err);
    match &bounds.0 {
        Bound::Included(lo) => mask = and(mask, cmp::gt_eq(keys, &bound(lo)).map_err(&err)?)?,
        Bound::Excluded(lo) => mask = and(mask, cmp::gt(keys, &bound(lo)).map_err(&err)?)?,
        Bound::Unbounded => {}
    }
    match &bounds.1 {
        Bound::Included(hi) => mask = and(mask, cmp::lt_eq(keys, &bound(hi)).map_err(&err)?)?,
        Bound::Excluded(hi) => mask = and(mask, cmp::lt(keys, &bound(hi)).map_err(&err)?)?,
        Bound::Unbounded => {}
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bounds_select_and_prune() {
        let keys = BinaryArray::from_vec(vec![b"a", b"b", b"c"]);
        let bounds: KeyBounds = (
            Bound::Excluded(b"a".to_vec()),
            Bound::Included(b"b".to_vec()),
        );
        let mask = key_mask(&keys, &bounds).unwrap();
        assert_eq!(mask, BooleanArray::from(vec![false, true, false]));
        assert!(bounds_overlap(b"b", b"z", &bounds));
        assert!(!bounds_overlap(b"c", b"z", &bounds));
        assert!(!bounds_overlap(b"0", b"a", &bounds));
        let point: KeyBounds = (
            Bound::Included(b"k".to_vec()),
            Bound::Included(b"k".to_vec()),
        );
        assert_eq!(point_key(&point), Some(&b"k"[..]));
        assert!(is_unbounded(&ALL_KEYS));
    }
}
