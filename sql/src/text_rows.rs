//! Rows given from outside (a `COPY ... FROM` of text, CSV, Parquet or JSON): each column's
//! values cast from text or the file's type to the column's type, a value that does not fit
//! named by its line or row and its column.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use kalamstore_storage::codec::value_at;
use kalamstore_storage::{ColumnDefinition, Error, KalamValue, Mutation, TableDefinition};

use crate::error::Result;

/// One row of text: its input line and its fields (`None` is NULL).
pub type TextRow = (u64, Vec<Option<String>>);

/// The columns of `def` named by `columns` (all of them when empty).
fn targets<'d>(def: &'d TableDefinition, columns: &[String]) -> Result<Vec<&'d ColumnDefinition>> {
    if columns.is_empty() {
        return Ok(def.columns().iter().collect());
    }
    Ok(columns
        .iter()
        .map(|name| {
            def.columns()
                .iter()
                .find(|c| c.name == *name)
                .ok_or_else(|| Error::InvalidValue {
                    column: name.clone(),
                    reason: format!("table {} has no column `{name}`", def.id),
                })
        })
        .collect::<std::result::Result<_, _>>()?)
}

/// The inserts of `rows` into `columns` of `def` (all its columns when empty).
pub(crate) fn text_inserts(
    def: &TableDefinition,
    columns: &[String],
    rows: &[TextRow],
) -> Result<Vec<Mutation>> {
    let targets = targets(def, columns)?;
    for (line, fields) in rows {
        if fields.len() != targets.len() {
            return Err(Error::InvalidValue {
                column: targets.first().map(|c| c.name.clone()).unwrap_or_default(),
                reason: format!(
                    "line {line}: {} fields where table {} takes {}",
                    fields.len(),
                    def.id,
                    targets.len()
                ),
            }
            .into());
        }
    }
    let arrays: Vec<ArrayRef> = (0..targets.len())
        .map(|j| {
            Arc::new(StringArray::from_iter(
                rows.iter().map(|(_, f)| f[j].as_deref()),
            )) as ArrayRef
        })
        .collect();
    array_inserts(&targets, &arrays, &|i| format!("line {}", rows[i].0))
}

/// The inserts of the rows of `batch` (a file's: Parquet, JSON) into `def`: each column of the
/// batch into the table's column of its name, cast to that column's type. `first_row` is the
/// file's number of the batch's first row, for errors.
pub(crate) fn batch_inserts(
    def: &TableDefinition,
    batch: &RecordBatch,
    first_row: u64,
) -> Result<Vec<Mutation>> {
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let targets = targets(def, &names)?;
    array_inserts(&targets, batch.columns(), &|i| {
        format!("row {}", first_row + i as u64)
    })
}

/// The inserts of rows given as one array per target column, each cast to its column's type;
/// a value that does not fit fails them all, named by `position` of its row.
fn array_inserts(
    targets: &[&ColumnDefinition],
    arrays: &[ArrayRef],
    position: &dyn Fn(usize) -> String,
) -> Result<Vec<Mutation>> {
    let rows = arrays.first().map_or(0, |a| a.len());
    let mut named: Vec<Vec<(String, KalamValue)>> = (0..rows)
        .map(|_| Vec::with_capacity(targets.len()))
        .collect();
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    for (column, given) in targets.iter().zip(arrays) {
        let cast =
            cast_with_options(given, &column.data_type.to_arrow(), &options).map_err(|e| {
                Error::InvalidValue {
                    column: column.name.clone(),
                    reason: format!(
                        "{} cannot become {}: {e}",
                        given.data_type(),
                        column.data_type
                    ),
                }
            })?;
        for (i, row) in named.iter_mut().enumerate() {
            if cast.is_null(i) && !given.is_null(i) {
                let shown = ArrayFormatter::try_new(given.as_ref(), &FormatOptions::default())
                    .map(|f| f.value(i).to_string())
                    .unwrap_or_default();
                return Err(Error::InvalidValue {
                    column: column.name.clone(),
                    reason: format!(
                        "{}: `{shown}` is not a valid {}",
                        position(i),
                        column.data_type
                    ),
                }
                .into());
            }
            row.push((
                column.name.clone(),
                value_at(cast.as_ref(), column.data_type, i)?,
            ));
        }
    }
    Ok(named.into_iter().map(Mutation::Insert).collect())
}
