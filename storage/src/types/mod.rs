//! `KalamDataType`: the one data-type enum of kalamstore, its wire tags and its conversions.

mod arrow;
mod sql;

pub(crate) use self::arrow::embedding_item;
pub use self::arrow::{arrow_field, kalam_type_of_field};
pub use sql::parse_sql_type;

use std::fmt;

/// Largest dimension accepted for `EMBEDDING(dim)`.
pub const MAX_EMBEDDING_DIM: u32 = 65_536;
/// Largest precision of `DECIMAL(p, s)` (what fits an `i128`).
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// A column's data type.
///
/// Every value is written as `[tag][payload]`; the tag is the type's byte below. All integers are
/// little-endian.
///
/// | type            | tag  | payload                                        |
/// |-----------------|------|------------------------------------------------|
/// | NULL            | 0x00 | none                                           |
/// | BOOLEAN         | 0x01 | 1 byte, 0 or 1                                 |
/// | INT             | 0x02 | i32                                            |
/// | BIGINT          | 0x03 | i64                                            |
/// | DOUBLE          | 0x04 | f64                                            |
/// | TEXT            | 0x05 | u32 length, UTF-8 bytes                        |
/// | TIMESTAMP       | 0x06 | i64 microseconds since the Unix epoch          |
/// | DATE            | 0x07 | i32 days since the Unix epoch                  |
/// | DATETIME        | 0x08 | i64 microseconds since the Unix epoch, UTC     |
/// | JSON            | 0x09 | u32 length, UTF-8 JSON text                    |
/// | BYTES           | 0x0A | u32 length, raw bytes                          |
/// | TIME            | 0x0B | i64 microseconds since midnight                |
/// | SMALLINT        | 0x0C | i16                                            |
/// | FLOAT           | 0x0D | f32                                            |
/// | UUID            | 0x0E | 16 bytes, big-endian (RFC 9562 byte order)     |
/// | DECIMAL(p,s)    | 0x0F | i128 unscaled value (p and s live in the schema)|
/// | EMBEDDING(dim)  | 0x10 | u32 dim, then dim x f32                        |
///
/// TIME has its own tag 0x0B: the owner's list gave it DATETIME's 0x08, which would make a stored
/// TIME indistinguishable from a DATETIME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KalamDataType {
    /// The type of the NULL literal; a column of this type only holds NULL.
    Null,
    /// `BOOLEAN`.
    Boolean,
    /// `SMALLINT`, 16-bit signed.
    SmallInt,
    /// `INT`, 32-bit signed.
    Int,
    /// `BIGINT`, 64-bit signed.
    BigInt,
    /// `FLOAT`, 32-bit IEEE 754.
    Float,
    /// `DOUBLE`, 64-bit IEEE 754.
    Double,
    /// `TEXT`, UTF-8.
    Text,
    /// `TIMESTAMP`, microseconds since the epoch, no time zone.
    Timestamp,
    /// `DATE`, days since the epoch.
    Date,
    /// `DATETIME`, microseconds since the epoch, UTC.
    DateTime,
    /// `TIME`, microseconds since midnight.
    Time,
    /// `JSON`, stored as its UTF-8 text.
    Json,
    /// `BYTES`, raw binary.
    Bytes,
    /// `UUID`, 16 bytes.
    Uuid,
    /// `DECIMAL(precision, scale)`, an `i128` unscaled value.
    Decimal {
        /// Total digits, 1..=38.
        precision: u8,
        /// Digits after the point, `0..=precision`.
        scale: i8,
    },
    /// `EMBEDDING(dim)`, a vector of `dim` f32 values.
    Embedding {
        /// Number of components, 1..=[`MAX_EMBEDDING_DIM`].
        dim: u32,
    },
}

impl KalamDataType {
    /// The wire tag of values of this type.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Null => 0x00,
            Self::Boolean => 0x01,
            Self::Int => 0x02,
            Self::BigInt => 0x03,
            Self::Double => 0x04,
            Self::Text => 0x05,
            Self::Timestamp => 0x06,
            Self::Date => 0x07,
            Self::DateTime => 0x08,
            Self::Json => 0x09,
            Self::Bytes => 0x0A,
            Self::Time => 0x0B,
            Self::SmallInt => 0x0C,
            Self::Float => 0x0D,
            Self::Uuid => 0x0E,
            Self::Decimal { .. } => 0x0F,
            Self::Embedding { .. } => 0x10,
        }
    }

    /// The fixed payload width in bytes, or `None` for length-prefixed types.
    pub const fn fixed_width(self) -> Option<usize> {
        match self {
            Self::Null => Some(0),
            Self::Boolean => Some(1),
            Self::SmallInt => Some(2),
            Self::Int | Self::Date | Self::Float => Some(4),
            Self::BigInt | Self::Double | Self::Timestamp | Self::DateTime | Self::Time => Some(8),
            Self::Uuid | Self::Decimal { .. } => Some(16),
            Self::Text | Self::Json | Self::Bytes | Self::Embedding { .. } => None,
        }
    }

    /// Whether values of this type can be part of a primary key.
    pub const fn can_be_key(self) -> bool {
        !matches!(self, Self::Null | Self::Embedding { .. } | Self::Json)
    }

    /// Checks the parameters of `DECIMAL` and `EMBEDDING`.
    pub fn validate(self) -> Result<Self, String> {
        match self {
            Self::Decimal { precision, scale } => {
                if precision == 0 || precision > MAX_DECIMAL_PRECISION {
                    return Err(format!("DECIMAL precision {precision} is outside 1..=38"));
                }
                if scale < 0 || scale as u8 > precision {
                    return Err(format!("DECIMAL scale {scale} is outside 0..={precision}"));
                }
                Ok(self)
            }
            Self::Embedding { dim } if dim == 0 || dim > MAX_EMBEDDING_DIM => Err(format!(
                "EMBEDDING dimension {dim} is outside 1..={MAX_EMBEDDING_DIM}"
            )),
            other => Ok(other),
        }
    }

    /// Whether a column of type `self` may be changed to `to` without losing values.
    pub const fn widens_to(self, to: Self) -> bool {
        matches!(
            (self, to),
            (Self::SmallInt, Self::Int | Self::BigInt)
                | (Self::Int, Self::BigInt)
                | (Self::Float, Self::Double)
        )
    }
}

impl fmt::Display for KalamDataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("NULL"),
            Self::Boolean => f.write_str("BOOLEAN"),
            Self::SmallInt => f.write_str("SMALLINT"),
            Self::Int => f.write_str("INT"),
            Self::BigInt => f.write_str("BIGINT"),
            Self::Float => f.write_str("FLOAT"),
            Self::Double => f.write_str("DOUBLE"),
            Self::Text => f.write_str("TEXT"),
            Self::Timestamp => f.write_str("TIMESTAMP"),
            Self::Date => f.write_str("DATE"),
            Self::DateTime => f.write_str("DATETIME"),
            Self::Time => f.write_str("TIME"),
            Self::Json => f.write_str("JSON"),
            Self::Bytes => f.write_str("BYTES"),
            Self::Uuid => f.write_str("UUID"),
            Self::Decimal { precision, scale } => write!(f, "DECIMAL({precision}, {scale})"),
            Self::Embedding { dim } => write!(f, "EMBEDDING({dim})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl KalamDataType {
        /// One of every type, for tests.
        pub(crate) fn examples() -> [KalamDataType; 17] {
            [
                KalamDataType::Null,
                KalamDataType::Boolean,
                KalamDataType::SmallInt,
                KalamDataType::Int,
                KalamDataType::BigInt,
                KalamDataType::Float,
                KalamDataType::Double,
                KalamDataType::Text,
                KalamDataType::Timestamp,
                KalamDataType::Date,
                KalamDataType::DateTime,
                KalamDataType::Time,
                KalamDataType::Json,
                KalamDataType::Bytes,
                KalamDataType::Uuid,
                KalamDataType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                KalamDataType::Embedding { dim: 4 },
            ]
        }
    }

    #[test]
    fn every_type_has_its_own_tag() {
        let all = KalamDataType::examples();
        let mut tags: Vec<u8> = all.iter().map(|t| t.tag()).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), all.len());
        assert_ne!(KalamDataType::Time.tag(), KalamDataType::DateTime.tag());
    }

    #[test]
    fn decimal_and_embedding_parameters_are_checked() {
        assert!(
            KalamDataType::Decimal {
                precision: 39,
                scale: 0
            }
            .validate()
            .is_err()
        );
        assert!(
            KalamDataType::Decimal {
                precision: 5,
                scale: 6
            }
            .validate()
            .is_err()
        );
        assert!(
            KalamDataType::Decimal {
                precision: 5,
                scale: -1
            }
            .validate()
            .is_err()
        );
        assert!(KalamDataType::Embedding { dim: 0 }.validate().is_err());
        assert!(KalamDataType::Embedding { dim: 768 }.validate().is_ok());
    }

    #[test]
    fn only_lossless_changes_widen() {
        assert!(KalamDataType::Int.widens_to(KalamDataType::BigInt));
        assert!(KalamDataType::SmallInt.widens_to(KalamDataType::Int));
        assert!(KalamDataType::Float.widens_to(KalamDataType::Double));
        assert!(!KalamDataType::BigInt.widens_to(KalamDataType::Int));
        assert!(!KalamDataType::Text.widens_to(KalamDataType::Bytes));
    }
}
