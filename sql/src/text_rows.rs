//! Rows given as text (a `COPY ... FROM` of text or CSV): each column's values cast from text to
//! the column's type, a value that does not fit named by its line and column.

use arrow::array::{Array, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use kalamstore_storage::codec::value_at;
use kalamstore_storage::{ColumnDefinition, Error, KalamValue, Mutation, TableDefinition};

use crate::error::Result;

/// One row of text: its input line and its fields (`None` is NULL).
pub type TextRow = (u64, Vec<Option<String>>);

/// The inserts of `rows` into `columns` of `def` (all its columns when empty).
pub(crate) fn text_inserts(
    def: &TableDefinition,
    columns: &[String],
    rows: &[TextRow],
) -> Result<Vec<Mutation>> {
    let targets: Vec<&ColumnDefinition> = if columns.is_empty() {
        def.columns().iter().collect()
    } else {
        columns
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
            .collect::<std::result::Result<_, _>>()?
    };
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
    let mut named: Vec<Vec<(String, KalamValue)>> = (0..rows.len())
        .map(|_| Vec::with_capacity(targets.len()))
        .collect();
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    for (j, column) in targets.iter().enumerate() {
        let text = StringArray::from_iter(rows.iter().map(|(_, f)| f[j].as_deref()));
        let cast =
            cast_with_options(&text, &column.data_type.to_arrow(), &options).map_err(|e| {
                Error::InvalidValue {
                    column: column.name.clone(),
                    reason: format!("text cannot become {}: {e}", column.data_type),
                }
            })?;
        for (i, (line, fields)) in rows.iter().enumerate() {
            if cast.is_null(i)
                && let Some(value) = &fields[j]
            {
                return Err(Error::InvalidValue {
                    column: column.name.clone(),
                    reason: format!("line {line}: `{value}` is not a valid {}", column.data_type),
                }
                .into());
            }
            named[i].push((
                column.name.clone(),
                value_at(cast.as_ref(), column.data_type, i)?,
            ));
        }
    }
    Ok(named.into_iter().map(Mutation::Insert).collect())
}
