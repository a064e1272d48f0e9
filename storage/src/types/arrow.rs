//! The one mapping between `KalamDataType` and arrow's `DataType` / `Field`, both directions.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};

use super::KalamDataType;
use crate::error::{Error, Result};

/// Arrow's canonical extension-type metadata key.
const EXTENSION_NAME: &str = "ARROW:extension:name";
const JSON_EXTENSION: &str = "arrow.json";
const UUID_EXTENSION: &str = "arrow.uuid";
const UTC: &str = "UTC";

/// The element field of every `EMBEDDING` list, built once.
static EMBEDDING_ITEM: LazyLock<FieldRef> =
    LazyLock::new(|| Arc::new(Field::new("item", DataType::Float32, false)));

/// The element field of `EMBEDDING` lists (`item`, non-null f32).
pub(crate) fn embedding_item() -> FieldRef {
    EMBEDDING_ITEM.clone()
}

impl KalamDataType {
    /// The arrow type that holds values of this type.
    ///
    /// JSON and UUID share their storage type with TEXT and BYTES-of-16; [`arrow_field`] adds the
    /// extension metadata that tells them apart.
    pub fn to_arrow(self) -> DataType {
        match self {
            Self::Null => DataType::Null,
            Self::Boolean => DataType::Boolean,
            Self::SmallInt => DataType::Int16,
            Self::Int => DataType::Int32,
            Self::BigInt => DataType::Int64,
            Self::Float => DataType::Float32,
            Self::Double => DataType::Float64,
            Self::Text | Self::Json => DataType::Utf8,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::DateTime => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            Self::Date => DataType::Date32,
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Bytes => DataType::Binary,
            Self::Uuid => DataType::FixedSizeBinary(16),
            Self::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Self::Embedding { dim } => {
                // `dim` is validated to be <= MAX_EMBEDDING_DIM, far below i32::MAX.
                DataType::FixedSizeList(EMBEDDING_ITEM.clone(), dim as i32)
            }
        }
    }

    /// The kalamstore type of an arrow type, for the arrow types kalamstore produces.
    ///
    /// Plain `Utf8` maps to TEXT and `FixedSizeBinary(16)` to UUID; use [`kalam_type_of_field`]
    /// to honour JSON / UUID extension metadata.
    pub fn from_arrow(data_type: &DataType) -> Result<Self> {
        let t = match data_type {
            DataType::Null => Self::Null,
            DataType::Boolean => Self::Boolean,
            DataType::Int16 => Self::SmallInt,
            DataType::Int32 => Self::Int,
            DataType::Int64 => Self::BigInt,
            DataType::Float32 => Self::Float,
            DataType::Float64 => Self::Double,
            DataType::Utf8 => Self::Text,
            DataType::Timestamp(TimeUnit::Microsecond, None) => Self::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == UTC => {
                Self::DateTime
            }
            DataType::Date32 => Self::Date,
            DataType::Time64(TimeUnit::Microsecond) => Self::Time,
            DataType::Binary => Self::Bytes,
            DataType::FixedSizeBinary(16) => Self::Uuid,
            DataType::Decimal128(precision, scale) => Self::Decimal {
                precision: *precision,
                scale: *scale,
            },
            DataType::FixedSizeList(item, dim)
                if item.data_type() == &DataType::Float32 && *dim > 0 =>
            {
                Self::Embedding { dim: *dim as u32 }
            }
            other => {
                return Err(Error::UnsupportedArrowType {
                    data_type: other.to_string(),
                });
            }
        };
        t.validate().map_err(|reason| Error::InvalidType { reason })
    }
}

/// The arrow field for a column: its type plus the extension metadata of JSON and UUID.
pub fn arrow_field(name: &str, data_type: KalamDataType, nullable: bool) -> Field {
    let field = Field::new(name, data_type.to_arrow(), nullable);
    let extension = match data_type {
        KalamDataType::Json => JSON_EXTENSION,
        KalamDataType::Uuid => UUID_EXTENSION,
        _ => return field,
    };
    field.with_metadata(HashMap::from([(
        EXTENSION_NAME.to_owned(),
        extension.to_owned(),
    )]))
}

/// The kalamstore type of an arrow field, honouring the JSON extension metadata.
pub fn kalam_type_of_field(field: &Field) -> Result<KalamDataType> {
    let base = KalamDataType::from_arrow(field.data_type())?;
    let is_json = field.metadata().get(EXTENSION_NAME).map(String::as_str) == Some(JSON_EXTENSION);
    Ok(if is_json && base == KalamDataType::Text {
        KalamDataType::Json
    } else {
        base
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_an_arrow_field() {
        for t in KalamDataType::examples() {
            let field = arrow_field("c", t, true);
            assert_eq!(kalam_type_of_field(&field).unwrap(), t, "{t}");
        }
    }

    #[test]
    fn unsupported_arrow_types_are_refused_by_name() {
        let err = KalamDataType::from_arrow(&DataType::UInt64).unwrap_err();
        assert!(err.to_string().contains("UInt64"), "{err}");
    }
}
