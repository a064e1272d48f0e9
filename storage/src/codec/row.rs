//! The binary row: one record of a table as stored in a hot engine.
//!
//! | offset     | size | field                                                      |
//! |------------|------|------------------------------------------------------------|
//! | 0          | 1    | row format version, currently 1                            |
//! | 1          | 4    | schema version the row was written with, u32 LE            |
//! | 5          | 2    | column count N, u16 LE                                     |
//! | 7          | ...  | N values `[tag][payload]` in column order (tag 0x00 = NULL) |
//! | len - 17   | 8    | `_seq`, i64 LE                                             |
//! | len - 9    | 8    | `_updated`, i64 LE nanoseconds since the epoch             |
//! | len - 1    | 1    | `_deleted`, 0 or 1                                         |
//!
//! The system columns are a fixed-width trailer, so [`read_system_columns`] finds `_seq` and
//! `_deleted` without walking the values. A row with fewer columns than its reader's schema was
//! written before columns were added; the missing columns read as NULL.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};

use super::value::{KalamValue, Reader};
use crate::error::DecodeError;

/// The row format version this build writes.
pub const ROW_FORMAT_VERSION: u8 = 1;
/// Bytes before the first value.
pub const ROW_HEADER_LEN: usize = 7;
/// Bytes of the system-column trailer.
pub const ROW_TRAILER_LEN: usize = 17;
/// Largest text, JSON or bytes value a row can hold (the u32 length prefix).
pub const MAX_VALUE_LEN: usize = u32::MAX as usize;
/// Most columns a row can hold (the u16 column count).
pub const MAX_COLUMNS: usize = u16::MAX as usize;

/// Name of the system column holding the write sequence.
pub const SEQ_COLUMN: &str = "_seq";
/// Name of the system column holding the last-write time (ns).
pub const UPDATED_COLUMN: &str = "_updated";
/// Name of the system column marking tombstones.
pub const DELETED_COLUMN: &str = "_deleted";

/// The arrow fields of the system columns, in row order.
pub fn system_fields() -> [Arc<Field>; 3] {
    [
        Arc::new(Field::new(SEQ_COLUMN, DataType::Int64, false)),
        Arc::new(Field::new(UPDATED_COLUMN, DataType::Int64, false)),
        Arc::new(Field::new(DELETED_COLUMN, DataType::Boolean, false)),
    ]
}

/// The system columns every row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemColumns {
    /// Monotonic write sequence (see `seq::SeqGenerator`).
    pub seq: i64,
    /// When the row was last written, nanoseconds since the epoch.
    pub updated: i64,
    /// Whether this row is a tombstone.
    pub deleted: bool,
}

impl SystemColumns {
    fn write(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..16].copy_from_slice(&self.updated.to_le_bytes());
        out[16] = u8::from(self.deleted);
    }
}

/// A decoded row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The schema version the row was written with.
    pub schema_version: u32,
    /// User column values in column order.
    pub values: Vec<KalamValue>,
    /// `_seq`, `_updated`, `_deleted`.
    pub system: SystemColumns,
}

/// The fixed part of a row header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowHeader {
    /// The schema version the row was written with.
    pub schema_version: u32,
    /// How many user columns it holds.
    pub columns: u16,
}

pub(crate) fn write_header(out: &mut [u8], schema_version: u32, columns: u16) {
    out[0] = ROW_FORMAT_VERSION;
    out[1..5].copy_from_slice(&schema_version.to_le_bytes());
    out[5..7].copy_from_slice(&columns.to_le_bytes());
}

pub(crate) fn write_trailer(out: &mut [u8], system: &SystemColumns) {
    system.write(out);
}

/// Overwrites the system columns of an encoded row (`row` is one whole row).
pub(crate) fn set_system_columns(row: &mut [u8], system: &SystemColumns) {
    let at = row.len() - ROW_TRAILER_LEN;
    write_trailer(&mut row[at..], system);
}

impl Row {
    /// Encodes the row. Values must have been checked against their columns (lengths below
    /// [`MAX_VALUE_LEN`], at most [`MAX_COLUMNS`] columns): the table layer does that on write.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// The length of [`Row::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        Self::encoded_len_of(&self.values)
    }

    /// The encoded length of a row of `values`.
    pub fn encoded_len_of(values: &[KalamValue]) -> usize {
        let body: usize = values.iter().map(KalamValue::encoded_len).sum();
        ROW_HEADER_LEN + body + ROW_TRAILER_LEN
    }

    /// Appends the encoded row to `out` (many rows can share one buffer).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        debug_assert!(
            self.values.len() <= MAX_COLUMNS,
            "column count checked by the schema"
        );
        let start = out.len();
        out.resize(start + ROW_HEADER_LEN, 0);
        write_header(
            &mut out[start..],
            self.schema_version,
            self.values.len() as u16,
        );
        for value in &self.values {
            value.encode(out);
        }
        let at = out.len();
        out.resize(at + ROW_TRAILER_LEN, 0);
        write_trailer(&mut out[at..], &self.system);
    }

    /// Decodes a row from untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let header = read_header(bytes)?;
        let system = read_system_columns(bytes)?;
        let body = &bytes[ROW_HEADER_LEN..bytes.len() - ROW_TRAILER_LEN];
        let mut reader = Reader::new(body);
        let mut values = Vec::with_capacity(header.columns as usize);
        for _ in 0..header.columns {
            values.push(KalamValue::decode(&mut reader)?);
        }
        reader.finish()?;
        Ok(Self {
            schema_version: header.schema_version,
            values,
            system,
        })
    }
}

/// Reads and checks the header of an encoded row.
pub fn read_header(bytes: &[u8]) -> Result<RowHeader, DecodeError> {
    if bytes.len() < ROW_HEADER_LEN + ROW_TRAILER_LEN {
        return Err(DecodeError::Truncated {
            at: bytes.len(),
            needed: ROW_HEADER_LEN + ROW_TRAILER_LEN - bytes.len(),
        });
    }
    let mut reader = Reader::new(bytes);
    let version = reader.u8()?;
    if version != ROW_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            version: u32::from(version),
        });
    }
    Ok(RowHeader {
        schema_version: reader.u32()?,
        columns: reader.u16()?,
    })
}

/// Reads `_seq`, `_updated` and `_deleted` from the trailer without decoding any value.
pub fn read_system_columns(bytes: &[u8]) -> Result<SystemColumns, DecodeError> {
    read_row_meta(bytes).map(|(_, system)| system)
}

/// The header and the system columns of a row, without decoding any value.
pub fn read_row_meta(bytes: &[u8]) -> Result<(RowHeader, SystemColumns), DecodeError> {
    let header = read_header(bytes)?;
    let mut reader = Reader::new(&bytes[bytes.len() - ROW_TRAILER_LEN..]);
    let system = SystemColumns {
        seq: reader.i64()?,
        updated: reader.i64()?,
        deleted: reader.bool()?,
    };
    Ok((header, system))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn any_value() -> impl Strategy<Value = KalamValue> {
        prop_oneof![
            Just(KalamValue::Null),
            any::<bool>().prop_map(KalamValue::Boolean),
            any::<i16>().prop_map(KalamValue::SmallInt),
            any::<i32>().prop_map(KalamValue::Int),
            any::<i64>().prop_map(KalamValue::BigInt),
            any::<f32>().prop_map(KalamValue::Float),
            any::<f64>().prop_map(KalamValue::Double),
            ".{0,20}".prop_map(KalamValue::Text),
            any::<i64>().prop_map(KalamValue::Timestamp),
            any::<i32>().prop_map(KalamValue::Date),
            any::<i64>().prop_map(KalamValue::DateTime),
            any::<i64>().prop_map(KalamValue::Time),
            ".{0,20}".prop_map(KalamValue::Json),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(KalamValue::Bytes),
            any::<[u8; 16]>().prop_map(KalamValue::Uuid),
            any::<i128>().prop_map(KalamValue::Decimal),
            proptest::collection::vec(any::<f32>(), 0..8).prop_map(KalamValue::Embedding),
        ]
    }

    fn same(a: &[KalamValue], b: &[KalamValue]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.total_cmp(y).is_eq() && x.tag() == y.tag())
    }

    proptest! {
        #[test]
        fn every_value_round_trips(v in any_value()) {
            let mut bytes = Vec::new();
            v.encode(&mut bytes);
            prop_assert_eq!(bytes.len(), v.encoded_len());
            let back = KalamValue::decode_from(&bytes).unwrap();
            prop_assert!(same(&[v], &[back]));
        }

        #[test]
        fn rows_round_trip(
            values in proptest::collection::vec(any_value(), 0..12),
            schema_version in any::<u32>(),
            seq in any::<i64>(), updated in any::<i64>(), deleted in any::<bool>(),
        ) {
            let row = Row { schema_version, values, system: SystemColumns { seq, updated, deleted } };
            let bytes = row.encode();
            let back = Row::decode(&bytes).unwrap();
            prop_assert_eq!(back.schema_version, schema_version);
            prop_assert_eq!(back.system, row.system);
            prop_assert!(same(&back.values, &row.values));
            prop_assert_eq!(read_system_columns(&bytes).unwrap(), row.system);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Row::decode(&bytes);
            let _ = KalamValue::decode_from(&bytes);
        }

        #[test]
        fn every_truncation_of_a_row_is_an_error(values in proptest::collection::vec(any_value(), 1..6)) {
            let bytes = Row { schema_version: 1, values, system: SystemColumns::default() }.encode();
            for cut in 0..bytes.len() {
                prop_assert!(Row::decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn oversized_lengths_and_unknown_tags_are_typed_errors() {
        let mut huge = vec![0x05];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(b"abc");
        assert!(matches!(
            KalamValue::decode_from(&huge),
            Err(DecodeError::LengthTooLarge { len, .. }) if len == u32::MAX as usize
        ));
        assert!(matches!(
            KalamValue::decode_from(&[0x7f]),
            Err(DecodeError::UnknownTag { tag: 0x7f, .. })
        ));
        let mut emb = vec![0x10];
        emb.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            KalamValue::decode_from(&emb),
            Err(DecodeError::LengthTooLarge { .. })
        ));
        assert!(matches!(
            KalamValue::decode_from(&[0x01, 2]),
            Err(DecodeError::InvalidBool { .. })
        ));
        let mut bad_text = vec![0x05, 2, 0, 0, 0];
        bad_text.extend_from_slice(&[0xff, 0xfe]);
        assert!(matches!(
            KalamValue::decode_from(&bad_text),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn a_row_from_a_future_format_is_refused() {
        let mut bytes = Row {
            schema_version: 1,
            values: vec![],
            system: SystemColumns::default(),
        }
        .encode();
        bytes[0] = 9;
        assert_eq!(
            Row::decode(&bytes),
            Err(DecodeError::UnsupportedVersion { version: 9 })
        );
    }
}
