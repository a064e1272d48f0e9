//! Arrow `RecordBatch`es to binary rows, without a `KalamValue` per value: encoding works a
//! column at a time into one buffer.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, FixedSizeBinaryArray, FixedSizeListArray,
    RecordBatch, StringArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType,
};

use super::row::{
    MAX_COLUMNS, ROW_HEADER_LEN, ROW_TRAILER_LEN, SystemColumns, write_header, write_trailer,
};
use super::value::tag;
use crate::error::{Error, Result};
use crate::types::{KalamDataType, kalam_type_of_field};

/// Many encoded rows in one buffer.
#[derive(Debug, Clone, Default)]
pub struct EncodedRows {
    buf: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is row `i`; `len() + 1` entries.
    offsets: Vec<usize>,
}

impl EncodedRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        Some(&self.buf[*self.offsets.get(i)?..*self.offsets.get(i + 1)?])
    }

    /// Rows in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.offsets.windows(2).map(|w| &self.buf[w[0]..w[1]])
    }

    /// Total encoded bytes.
    pub fn total_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Starts a row of `columns` values of schema `schema_version`: its header is written and
    /// the returned buffer takes the values ([`KalamValue::encode`](super::KalamValue::encode),
    /// each checked by the caller); [`finish_row`](Self::finish_row) ends it.
    pub(crate) fn start_row(&mut self, schema_version: u32, columns: u16) -> &mut Vec<u8> {
        debug_assert!(usize::from(columns) <= MAX_COLUMNS, "checked by the schema");
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let start = self.buf.len();
        self.buf.resize(start + ROW_HEADER_LEN, 0);
        write_header(&mut self.buf[start..], schema_version, columns);
        &mut self.buf
    }

    /// Makes room for `rows` more rows of the average size of those so far (none yet: only
    /// their offsets).
    pub(crate) fn reserve_rows(&mut self, rows: usize) {
        let average = self.buf.len() / self.len().max(1);
        self.buf.reserve(rows.saturating_mul(average));
        self.offsets.reserve(rows);
    }

    /// Ends the row [`start_row`](Self::start_row) began, with placeholder system columns.
    pub(crate) fn finish_row(&mut self) {
        let at = self.buf.len();
        self.buf.resize(at + ROW_TRAILER_LEN, 0);
        write_trailer(&mut self.buf[at..], &SystemColumns::default());
        self.offsets.push(self.buf.len());
    }
}

/// A typed view of one input column, resolved once per batch.
enum Column<'a> {
    Null,
    Bool(&'a BooleanArray),
    Fixed2(&'a [i16], Option<&'a NullBuffer>, u8),
    Fixed4(&'a [i32], Option<&'a NullBuffer>, u8),
    Fixed8(&'a [i64], Option<&'a NullBuffer>, u8),
    F32(&'a [f32], Option<&'a NullBuffer>),
    F64(&'a [f64], Option<&'a NullBuffer>),
    Decimal(&'a [i128], Option<&'a NullBuffer>),
    Uuid(&'a FixedSizeBinaryArray),
    Str(&'a StringArray, u8),
    Bin(&'a BinaryArray),
    Embedding(&'a FixedSizeListArray, &'a [f32], usize),
}

impl<'a> Column<'a> {
    fn resolve(array: &'a ArrayRef, data_type: KalamDataType) -> Self {
        use KalamDataType as T;
        match data_type {
            T::Null => Self::Null,
            T::Boolean => Self::Bool(array.as_boolean()),
            T::SmallInt => {
                let a = array.as_primitive::<Int16Type>();
                Self::Fixed2(a.values(), a.nulls(), tag::SMALLINT)
            }
            T::Int => {
                let a = array.as_primitive::<Int32Type>();
                Self::Fixed4(a.values(), a.nulls(), tag::INT)
            }
            T::Date => {
                let a = array.as_primitive::<Date32Type>();
                Self::Fixed4(a.values(), a.nulls(), tag::DATE)
            }
            T::BigInt => {
                let a = array.as_primitive::<Int64Type>();
                Self::Fixed8(a.values(), a.nulls(), tag::BIGINT)
            }
            T::Timestamp | T::DateTime => {
                let a = array.as_primitive::<TimestampMicrosecondType>();
                Self::Fixed8(a.values(), a.nulls(), data_type.tag())
            }
            T::Time => {
                let a = array.as_primitive::<Time64MicrosecondType>();
                Self::Fixed8(a.values(), a.nulls(), tag::TIME)
            }
            T::Float => {
                let a = array.as_primitive::<Float32Type>();
                Self::F32(a.values(), a.nulls())
            }
            T::Double => {
                let a = array.as_primitive::<Float64Type>();
                Self::F64(a.values(), a.nulls())
            }
            T::Decimal { .. } => {
                let a = array.as_primitive::<Decimal128Type>();
                Self::Decimal(a.values(), a.nulls())
            }
            T::Uuid => Self::Uuid(array.as_fixed_size_binary()),
            T::Text | T::Json => Self::Str(array.as_string::<i32>(), data_type.tag()),
            T::Bytes => Self::Bin(array.as_binary::<i32>()),
            T::Embedding { dim } => {
                let list = array.as_fixed_size_list();
                let values = list.values().as_primitive::<Float32Type>().values();
                Self::Embedding(list, values, dim as usize)
            }
        }
    }

    /// Adds each row's encoded size of this column to `lens`.
    fn add_lens(&self, lens: &mut [usize]) {
        fn fixed(lens: &mut [usize], nulls: Option<&NullBuffer>, width: usize) {
            match nulls {
                None => lens.iter_mut().for_each(|l| *l += 1 + width),
                Some(n) => {
                    for (i, l) in lens.iter_mut().enumerate() {
                        *l += if n.is_null(i) { 1 } else { 1 + width };
                    }
                }
            }
        }
        match self {
            Self::Null => lens.iter_mut().for_each(|l| *l += 1),
            Self::Bool(a) => fixed(lens, a.nulls(), 1),
            Self::Fixed2(_, n, _) => fixed(lens, *n, 2),
            Self::Fixed4(_, n, _) | Self::F32(_, n) => fixed(lens, *n, 4),
            Self::Fixed8(_, n, _) | Self::F64(_, n) => fixed(lens, *n, 8),
            Self::Decimal(_, n) => fixed(lens, *n, 16),
            Self::Uuid(a) => fixed(lens, a.nulls(), 16),
            Self::Embedding(a, _, dim) => fixed(lens, a.nulls(), 4 + 4 * dim),
            Self::Str(a, _) => {
                let offsets = a.value_offsets();
                for (i, l) in lens.iter_mut().enumerate() {
                    *l += if a.is_null(i) {
                        1
                    } else {
                        5 + (offsets[i + 1] - offsets[i]) as usize
                    };
                }
            }
            Self::Bin(a) => {
                let offsets = a.value_offsets();
                for (i, l) in lens.iter_mut().enumerate() {
                    *l += if a.is_null(i) {
                        1
                    } else {
                        5 + (offsets[i + 1] - offsets[i]) as usize
                    };
                }
            }
        }
    }

    /// Writes this column's value of every row at `cursors[i]`, advancing the cursors.
    fn write(&self, buf: &mut [u8], cursors: &mut [usize]) {
        fn fixed<const W: usize, V: Copy>(
            buf: &mut [u8],
            cursors: &mut [usize],
            values: &[V],
            nulls: Option<&NullBuffer>,
            tag: u8,
            le: impl Fn(V) -> [u8; W],
        ) {
            for (i, (c, v)) in cursors.iter_mut().zip(values).enumerate() {
                if nulls.is_some_and(|n| n.is_null(i)) {
                    buf[*c] = tag::NULL;
                    *c += 1;
                } else {
                    buf[*c] = tag;
                    buf[*c + 1..*c + 1 + W].copy_from_slice(&le(*v));
                    *c += 1 + W;
                }
            }
        }
        fn var(buf: &mut [u8], c: &mut usize, tag: u8, bytes: &[u8]) {
            buf[*c] = tag;
            // Arrow's i32 offsets bound every value below 2 GiB, so the u32 prefix holds it.
            buf[*c + 1..*c + 5].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf[*c + 5..*c + 5 + bytes.len()].copy_from_slice(bytes);
            *c += 5 + bytes.len();
        }
        fn null(buf: &mut [u8], c: &mut usize) {
            buf[*c] = tag::NULL;
            *c += 1;
        }
        match self {
            Self::Null => cursors.iter_mut().for_each(|c| null(buf, c)),
            Self::Bool(a) => {
                for (i, c) in cursors.iter_mut().enumerate() {
                    if a.is_null(i) {
                        null(buf, c);
                    } else {
                        buf[*c] = tag::BOOLEAN;
                        buf[*c + 1] = u8::from(a.value(i));
                        *c += 2;
                    }
                }
            }
            Self::Fixed2(v, n, t) => fixed(buf, cursors, v, *n, *t, i16::to_le_bytes),
            Self::Fixed4(v, n, t) => fixed(buf, cursors, v, *n, *t, i32::to_le_bytes),
            Self::Fixed8(v, n, t) => fixed(buf, cursors, v, *n, *t, i64::to_le_bytes),
            Self::F32(v, n) => fixed(buf, cursors, v, *n, tag::FLOAT, f32::to_le_bytes),
            Self::F64(v, n) => fixed(buf, cursors, v, *n, tag::DOUBLE, f64::to_le_bytes),
            Self::Decimal(v, n) => fixed(buf, cursors, v, *n, tag::DECIMAL, i128::to_le_bytes),
            Self::Uuid(a) => {
                for (i, c) in cursors.iter_mut().enumerate() {
                    if a.is_null(i) {
                        null(buf, c);
                    } else {
                        buf[*c] = tag::UUID;
                        buf[*c + 1..*c + 17].copy_from_slice(a.value(i));
                        *c += 17;
                    }
                }
            }
            Self::Str(a, t) => {
                for (i, c) in cursors.iter_mut().enumerate() {
                    if a.is_null(i) {
                        null(buf, c);
                    } else {
                        var(buf, c, *t, a.value(i).as_bytes());
                    }
                }
            }
            Self::Bin(a) => {
                for (i, c) in cursors.iter_mut().enumerate() {
                    if a.is_null(i) {
                        null(buf, c);
                    } else {
                        var(buf, c, tag::BYTES, a.value(i));
                    }
                }
            }
            Self::Embedding(a, values, dim) => {
                for (i, c) in cursors.iter_mut().enumerate() {
                    if a.is_null(i) {
                        null(buf, c);
                        continue;
                    }
                    buf[*c] = tag::EMBEDDING;
                    buf[*c + 1..*c + 5].copy_from_slice(&(*dim as u32).to_le_bytes());
                    *c += 5;
                    // Where row i's floats start in the (sliced with the list) child values.
                    let start = a.value_offset(i) as usize;
                    for x in &values[start..start + dim] {
                        buf[*c..*c + 4].copy_from_slice(&x.to_le_bytes());
                        *c += 4;
                    }
                }
            }
        }
    }
}

/// Encodes every row of `batch` (user columns in table order) with its system columns.
///
/// `system[i]` supplies `_seq`, `_updated` and `_deleted` of row `i`.
pub fn encode_batch(
    batch: &RecordBatch,
    schema_version: u32,
    system: &[SystemColumns],
) -> Result<EncodedRows> {
    let n = batch.num_rows();
    if system.len() != n {
        return Err(Error::InvalidValue {
            column: "_seq".into(),
            reason: format!("{} system entries for {n} rows", system.len()),
        });
    }
    if batch.num_columns() > MAX_COLUMNS {
        return Err(Error::InvalidValue {
            column: "*".into(),
            reason: format!(
                "{} columns exceed the limit of {MAX_COLUMNS}",
                batch.num_columns()
            ),
        });
    }
    let schema = batch.schema();
    let types = schema
        .fields()
        .iter()
        .map(|f| kalam_type_of_field(f))
        .collect::<Result<Vec<_>>>()?;
    Ok(encode_arrays(
        batch.columns(),
        &types,
        schema_version,
        system,
    ))
}

/// Encodes `system.len()` rows from `arrays` (user columns in table order), each array of
/// exactly the arrow type of its entry in `types` (the caller checked it: a `RecordBatch`'s
/// own field types, or the write path's column checks), at most [`MAX_COLUMNS`] of them.
pub(crate) fn encode_arrays(
    arrays: &[ArrayRef],
    types: &[KalamDataType],
    schema_version: u32,
    system: &[SystemColumns],
) -> EncodedRows {
    let n = system.len();
    let columns: Vec<Column<'_>> = arrays
        .iter()
        .zip(types)
        .map(|(array, t)| Column::resolve(array, *t))
        .collect();

    let mut lens = vec![ROW_HEADER_LEN + ROW_TRAILER_LEN; n];
    for column in &columns {
        column.add_lens(&mut lens);
    }
    let mut offsets = Vec::with_capacity(n + 1);
    let mut total = 0;
    offsets.push(0);
    for len in &lens {
        total += len;
        offsets.push(total);
    }
    let mut buf = vec![0u8; total];
    let mut cursors = Vec::with_capacity(n);
    for &start in &offsets[..n] {
        // At most MAX_COLUMNS columns (the caller's contract), so the count fits a u16.
        write_header(&mut buf[start..], schema_version, columns.len() as u16);
        cursors.push(start + ROW_HEADER_LEN);
    }
    for column in &columns {
        column.write(&mut buf, &mut cursors);
    }
    for (i, meta) in system.iter().enumerate() {
        let end = offsets[i + 1];
        debug_assert_eq!(
            cursors[i],
            end - ROW_TRAILER_LEN,
            "size pass and write pass agree"
        );
        write_trailer(&mut buf[end - ROW_TRAILER_LEN..end], meta);
    }
    EncodedRows { buf, offsets }
}
