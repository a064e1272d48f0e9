//! What may be stored in a column: the one rule INSERT, UPDATE and COPY share beyond a cast.

use arrow::datatypes::DataType;

use crate::error::{Result, SqlError};

/// Whether a value of type `from` may be assigned to a column of type `to`: DataFusion casts
/// between any types, but a number or a boolean stored into a text column (or text into a
/// number) is far more often a mistake than an intent, so it is refused.
pub(crate) fn check_assignment(column: &str, from: &DataType, to: &DataType) -> Result<()> {
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let number = |t: &DataType| t.is_numeric() || *t == DataType::Boolean;
    if (text(from) && number(to)) || (number(from) && text(to)) {
        let name = |t: &DataType| {
            kalamstore_storage::KalamDataType::from_arrow(t)
                .map_or_else(|_| t.to_string(), |k| k.to_string())
        };
        return Err(kalamstore_storage::Error::InvalidValue {
            column: column.to_owned(),
            reason: format!(
                "a {} value cannot be stored in a {} column; CAST it",
                name(from),
                name(to)
            ),
        }
        .into());
    }
    Ok(())
}

/// The error for a NULL given to NOT NULL column `column` (the store's own words), before
/// DataFusion would report it under a position's name (`column2`).
pub(crate) fn null_in_not_null(column: &str) -> SqlError {
    kalamstore_storage::Error::InvalidValue {
        column: column.to_owned(),
        reason: "NOT NULL column needs a value".into(),
    }
    .into()
}
