//! Rows of the write path: a full row from named values (defaults, NOT NULL, lengths), its
//! primary key, the values a tombstone keeps (the key columns), and the duplicate-key error.

use crate::codec::{EncodedRows, KalamValue};
use crate::error::{Error, Result};
use crate::schema::{ColumnDefinition, TableDefinition};
use crate::table::TableHandle;

impl TableHandle {
    /// Appends the encoded primary key of a full row to `out`.
    pub(super) fn key_of_row(
        &self,
        def: &TableDefinition,
        values: &[KalamValue],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        for (c, v) in def
            .columns()
            .iter()
            .zip(values)
            .filter(|(c, _)| c.primary_key)
        {
            key_component(c, v, out)?;
        }
        Ok(())
    }

    /// The primary key of row `i` of `arrays` (one per table column, in table order, already
    /// checked by [`batch_columns`]), encoded onto `out` as [`key_of_row`](Self::key_of_row)
    /// does; the other columns are not read.
    pub(super) fn key_at(
        &self,
        def: &TableDefinition,
        arrays: &[arrow::array::ArrayRef],
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        for (c, array) in def
            .columns()
            .iter()
            .zip(arrays)
            .filter(|(c, _)| c.primary_key)
        {
            let value = crate::codec::value_at(array.as_ref(), c.data_type, i)?;
            key_component(c, &value, out)?;
        }
        Ok(())
    }

    /// Encodes the full row of named values onto `encoded` (checked as
    /// [`row_from_named`](Self::row_from_named) checks them, placeholder system columns) and
    /// appends its primary key to `key`. A row naming every column in table order (a client's
    /// or the SQL front's) is checked and encoded value by value, with no row of values built.
    pub(super) fn encode_named(
        &self,
        def: &TableDefinition,
        named: Vec<(String, KalamValue)>,
        encoded: &mut EncodedRows,
        key: &mut Vec<u8>,
    ) -> Result<()> {
        let columns = def.columns();
        let complete = named.len() == columns.len()
            && named.iter().zip(columns).all(|((n, _), c)| *n == c.name);
        let version = def.schema.version;
        // The schema holds at most `MAX_COLUMNS` (< 2^16) columns.
        let count = columns.len() as u16;
        if !complete {
            let row = self.row_from_named(def, named, None)?;
            self.key_of_row(def, &row, key)?;
            let out = encoded.start_row(version, count);
            row.iter().for_each(|v| v.encode(out));
            encoded.finish_row();
            return Ok(());
        }
        let out = encoded.start_row(version, count);
        // Read in place: a value of its column's type (the common case) is checked and encoded
        // where it lies; only one that needs converting is copied.
        for ((name, value), c) in named.iter().zip(columns) {
            let converted;
            let value = if value.fits(c.data_type) {
                check_length(&c.name, value)?;
                value
            } else {
                converted = column_value(c, name.clone(), value.clone())?;
                &converted
            };
            check_not_null(c, value)?;
            if c.primary_key {
                key_component(c, value, key)?;
            }
            value.encode(out);
        }
        encoded.finish_row();
        Ok(())
    }

    /// Builds a full row from named values: unknown columns, type mismatches, over-long values
    /// and missing NOT NULL values are errors naming the column. `base` is the current row of
    /// an update: columns not named keep its values.
    pub(super) fn row_from_named(
        &self,
        def: &TableDefinition,
        named: Vec<(String, KalamValue)>,
        base: Option<Vec<KalamValue>>,
    ) -> Result<Vec<KalamValue>> {
        let columns = def.columns();
        let complete = base.is_none()
            && named.len() == columns.len()
            && named.iter().zip(columns).all(|((n, _), c)| *n == c.name);
        if complete {
            // Every column named in table order (a full row from a client or the SQL front):
            // the values move into the row in place.
            return named
                .into_iter()
                .zip(columns)
                .map(|((name, value), c)| {
                    let value = column_value(c, name, value)?;
                    check_not_null(c, &value)?;
                    Ok(value)
                })
                .collect();
        }
        let given = self.given_values(def, named)?;
        let updating = base.is_some();
        let mut base = base.map(Vec::into_iter);
        let mut row = Vec::with_capacity(columns.len());
        for (c, given) in columns.iter().zip(given) {
            let old = base
                .as_mut()
                .and_then(Iterator::next)
                .unwrap_or(KalamValue::Null);
            if updating && c.primary_key && given.as_ref().is_some_and(|v| *v != old) {
                return Err(Error::InvalidValue {
                    column: c.name.clone(),
                    reason: "primary-key columns cannot be updated".into(),
                });
            }
            let value = match given {
                Some(v) => v,
                None if updating => old,
                None => c.default.clone().unwrap_or(KalamValue::Null),
            };
            check_not_null(c, &value)?;
            row.push(value);
        }
        Ok(row)
    }

    /// Named values placed at their columns' positions, checked; `None` where not given.
    fn given_values(
        &self,
        def: &TableDefinition,
        named: Vec<(String, KalamValue)>,
    ) -> Result<Vec<Option<KalamValue>>> {
        let columns = def.columns();
        let mut given: Vec<Option<KalamValue>> = vec![None; columns.len()];
        for (at, (name, value)) in named.into_iter().enumerate() {
            // Rows mostly name their columns in table order: try that position first.
            let i = match columns.get(at) {
                Some(c) if c.name == name => at,
                _ => columns.iter().position(|c| c.name == name).ok_or_else(|| {
                    Error::InvalidValue {
                        column: name.clone(),
                        reason: format!("table {} has no such column", self.id),
                    }
                })?,
            };
            if given[i].is_some() {
                return Err(Error::InvalidValue {
                    column: name,
                    reason: "given twice".into(),
                });
            }
            given[i] = Some(column_value(&columns[i], name, value)?);
        }
        Ok(given)
    }

    /// The error for an insert of a key that exists (`key`: its encoded primary key), naming
    /// the key.
    pub(super) fn duplicate(&self, def: &TableDefinition, key: &[u8]) -> Error {
        let types: Vec<_> = def.primary_key().map(|c| c.data_type).collect();
        let key = match crate::codec::decode_key(key, &types) {
            Ok(values) => values
                .iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            // The key was encoded from these columns a moment ago; show its bytes otherwise.
            Err(_) => format!("{key:02x?}"),
        };
        Error::DuplicateKey {
            table: self.id.to_string(),
            key,
        }
    }
}

/// The columns of a batch of full rows (one per table column, in table order), checked once
/// for every row the way a named row's values are: a column of another arrow type and a NULL
/// in a NOT NULL column are errors naming the column (arrow's 32-bit offsets keep every value
/// under [`MAX_VALUE_LEN`](crate::codec::MAX_VALUE_LEN)). Text and bytes read as views
/// (DataFusion's Parquet strings) come back as the columns' own arrow types.
pub(super) fn batch_columns(
    def: &TableDefinition,
    batch: &arrow::record_batch::RecordBatch,
) -> Result<Vec<arrow::array::ArrayRef>> {
    use crate::types::KalamDataType as T;
    use arrow::array::Array;
    use arrow::datatypes::DataType;
    def.columns()
        .iter()
        .zip(batch.columns())
        .map(|(c, array)| {
            let expected = c.data_type.to_arrow();
            let view = matches!(
                (c.data_type, array.data_type()),
                (T::Text | T::Json, DataType::Utf8View) | (T::Bytes, DataType::BinaryView)
            );
            let array = if array.data_type() == &expected {
                array.clone()
            } else if view {
                arrow::compute::cast(array, &expected).map_err(|e| Error::InvalidValue {
                    column: c.name.clone(),
                    reason: format!(
                        "reading {} values as {}: {e}",
                        array.data_type(),
                        c.data_type
                    ),
                })?
            } else {
                return Err(Error::InvalidValue {
                    column: c.name.clone(),
                    reason: format!(
                        "a column of {} values given for a {} column",
                        array.data_type(),
                        c.data_type
                    ),
                });
            };
            if !c.nullable && array.logical_null_count() > 0 {
                return Err(Error::InvalidValue {
                    column: c.name.clone(),
                    reason: "NOT NULL column needs a value".into(),
                });
            }
            Ok(array)
        })
        .collect()
}

/// Builds tombstone values for one table: the key columns decoded from a key, NULL elsewhere.
pub(super) struct Tombstones {
    /// Positions of the primary-key columns.
    pk: Vec<usize>,
    types: Vec<crate::types::KalamDataType>,
    columns: usize,
}

impl Tombstones {
    pub(super) fn new(def: &TableDefinition) -> Self {
        let pk: Vec<usize> = def
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.primary_key)
            .map(|(i, _)| i)
            .collect();
        let types = pk.iter().map(|i| def.columns()[*i].data_type).collect();
        Self {
            pk,
            types,
            columns: def.columns().len(),
        }
    }

    pub(super) fn values(&self, key: &[u8]) -> Result<Vec<KalamValue>> {
        let mut values = vec![KalamValue::Null; self.columns];
        for (i, v) in self
            .pk
            .iter()
            .zip(crate::codec::decode_key(key, &self.types)?)
        {
            values[*i] = v;
        }
        Ok(values)
    }
}

/// Appends `value`, the value of key column `c`, to an encoded primary key; a value a key
/// cannot hold is an error naming the column.
pub(super) fn key_component(
    c: &ColumnDefinition,
    value: &KalamValue,
    out: &mut Vec<u8>,
) -> Result<()> {
    crate::codec::encode_component(value, out).map_err(|reason| Error::InvalidValue {
        column: c.name.clone(),
        reason: reason.to_owned(),
    })
}

/// A value given for column `c` (named `name` by the caller), converted to the column's type
/// and checked against the length limit.
fn column_value(c: &ColumnDefinition, name: String, value: KalamValue) -> Result<KalamValue> {
    let value = value
        .coerce_into(c.data_type)
        .map_err(|value| Error::InvalidValue {
            column: name,
            reason: format!("{value:?} is not a {}", c.data_type),
        })?;
    check_length(&c.name, &value)?;
    Ok(value)
}

fn check_not_null(c: &ColumnDefinition, value: &KalamValue) -> Result<()> {
    if value.is_null() && !c.nullable {
        return Err(Error::InvalidValue {
            column: c.name.clone(),
            reason: "NOT NULL column needs a value".into(),
        });
    }
    Ok(())
}

fn check_length(column: &str, value: &KalamValue) -> Result<()> {
    let len = match value {
        KalamValue::Text(s) | KalamValue::Json(s) => s.len(),
        KalamValue::Bytes(b) => b.len(),
        _ => 0,
    };
    if len > crate::codec::MAX_VALUE_LEN {
        return Err(Error::InvalidValue {
            column: column.to_owned(),
            reason: format!(
                "{len} bytes exceed the limit of {}",
                crate::codec::MAX_VALUE_LEN
            ),
        });
    }
    Ok(())
}
