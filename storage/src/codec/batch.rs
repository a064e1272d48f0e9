//! The columnar path: arrow `RecordBatch`es to binary rows and back, without a `KalamValue` per
//! value. Encoding works a column at a time into one buffer; decoding appends straight into
//! arrow builders.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder,
    Date32Builder, Decimal128Builder, FixedSizeBinaryArray, FixedSizeBinaryBuilder,
    FixedSizeListArray, FixedSizeListBuilder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, NullArray, RecordBatch, StringArray, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Schema,
    SchemaRef, Time64MicrosecondType, TimestampMicrosecondType,
};

use super::row::{
    MAX_COLUMNS, ROW_HEADER_LEN, ROW_TRAILER_LEN, SystemColumns, read_header, system_fields,
    write_header, write_trailer,
};
use super::value::{Reader, tag};
use crate::error::{DecodeError, Error, Result};
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
                    let start = i * *dim;
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
    let columns: Vec<Column<'_>> = batch
        .columns()
        .iter()
        .zip(&types)
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
        // Checked against MAX_COLUMNS above.
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
    Ok(EncodedRows { buf, offsets })
}

/// An arrow builder for one output column.
enum Builder {
    Null(usize),
    Bool(BooleanBuilder),
    SmallInt(Int16Builder),
    Int(Int32Builder),
    Date(Date32Builder),
    BigInt(Int64Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Float(Float32Builder),
    Double(Float64Builder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Decimal(Decimal128Builder),
    Embedding(FixedSizeListBuilder<Float32Builder>, usize),
}

impl Builder {
    /// A builder for `capacity` values; variable-length columns reserve `data` bytes.
    fn new(data_type: KalamDataType, capacity: usize, data: usize) -> Result<Self> {
        use KalamDataType as T;
        Ok(match data_type {
            T::Null => Self::Null(0),
            T::Boolean => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            T::SmallInt => Self::SmallInt(Int16Builder::with_capacity(capacity)),
            T::Int => Self::Int(Int32Builder::with_capacity(capacity)),
            T::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            T::BigInt => Self::BigInt(Int64Builder::with_capacity(capacity)),
            T::Timestamp => Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity)),
            T::DateTime => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            T::Time => Self::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            T::Float => Self::Float(Float32Builder::with_capacity(capacity)),
            T::Double => Self::Double(Float64Builder::with_capacity(capacity)),
            T::Text | T::Json => Self::Str(StringBuilder::with_capacity(capacity, data)),
            T::Bytes => Self::Bin(BinaryBuilder::with_capacity(capacity, data)),
            T::Uuid => Self::Uuid(FixedSizeBinaryBuilder::with_capacity(capacity, 16)),
            T::Decimal { precision, scale } => Self::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(precision, scale)
                    .map_err(|source| Error::Arrow {
                        op: "building a DECIMAL column",
                        source,
                    })?,
            ),
            T::Embedding { dim } => {
                let dim = dim as usize;
                let item = crate::types::embedding_item();
                let values = Float32Builder::with_capacity(capacity * dim);
                Self::Embedding(
                    FixedSizeListBuilder::with_capacity(values, dim as i32, capacity)
                        .with_field(item),
                    dim,
                )
            }
        })
    }

    fn append_null(&mut self) {
        match self {
            Self::Null(n) => *n += 1,
            Self::Bool(b) => b.append_null(),
            Self::SmallInt(b) => b.append_null(),
            Self::Int(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::BigInt(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Float(b) => b.append_null(),
            Self::Double(b) => b.append_null(),
            Self::Str(b) => b.append_null(),
            Self::Bin(b) => b.append_null(),
            Self::Uuid(b) => b.append_null(),
            Self::Decimal(b) => b.append_null(),
            Self::Embedding(b, dim) => {
                b.values().append_nulls(*dim);
                b.append(false);
            }
        }
    }

    /// Decodes the payload of a non-NULL value whose tag matched, appending it.
    fn append_payload(&mut self, reader: &mut Reader<'_>) -> Result<(), DecodeError> {
        match self {
            Self::Null(_) => unreachable!("only the NULL tag matches a NULL column"),
            Self::Bool(b) => b.append_value(reader.bool()?),
            Self::SmallInt(b) => b.append_value(i16::from_le_bytes(reader.array()?)),
            Self::Int(b) => b.append_value(reader.i32()?),
            Self::Date(b) => b.append_value(reader.i32()?),
            Self::BigInt(b) => b.append_value(reader.i64()?),
            Self::Timestamp(b) => b.append_value(reader.i64()?),
            Self::Time(b) => b.append_value(reader.i64()?),
            Self::Float(b) => b.append_value(f32::from_le_bytes(reader.array()?)),
            Self::Double(b) => b.append_value(f64::from_le_bytes(reader.array()?)),
            Self::Str(b) => b.append_value(reader.str()?),
            Self::Bin(b) => b.append_value(reader.len_prefixed()?),
            Self::Uuid(b) => {
                b.append_value(reader.take(16)?)
                    .map_err(|e| DecodeError::Invalid {
                        reason: e.to_string(),
                    })?
            }
            Self::Decimal(b) => b.append_value(i128::from_le_bytes(reader.array()?)),
            Self::Embedding(b, dim) => {
                let at = reader.pos();
                let raw = reader.f32_vector()?;
                if raw.len() != 4 * *dim {
                    return Err(DecodeError::Invalid {
                        reason: format!(
                            "embedding at byte {at} has {} components, the column has {dim}",
                            raw.len() / 4
                        ),
                    });
                }
                let values = b.values();
                for c in raw.chunks_exact(4) {
                    values.append_value(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                }
                b.append(true);
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Null(n) => Arc::new(NullArray::new(n)),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::SmallInt(mut b) => Arc::new(b.finish()),
            Self::Int(mut b) => Arc::new(b.finish()),
            Self::Date(mut b) => Arc::new(b.finish()),
            Self::BigInt(mut b) => Arc::new(b.finish()),
            Self::Timestamp(mut b) => Arc::new(b.finish()),
            Self::Time(mut b) => Arc::new(b.finish()),
            Self::Float(mut b) => Arc::new(b.finish()),
            Self::Double(mut b) => Arc::new(b.finish()),
            Self::Str(mut b) => Arc::new(b.finish()),
            Self::Bin(mut b) => Arc::new(b.finish()),
            Self::Uuid(mut b) => Arc::new(b.finish()),
            Self::Decimal(mut b) => Arc::new(b.finish()),
            Self::Embedding(mut b, _) => Arc::new(b.finish()),
        }
    }
}

/// Decodes rows into one `RecordBatch` with the user columns of `schema`, followed by `_seq`,
/// `_updated` and `_deleted` when `with_system` is set.
///
/// Rows with fewer columns than `schema` (written before columns were added) get NULLs; a value
/// whose tag does not match its column, or bytes that are not a row, give an error naming the row.
pub fn decode_batch<'r>(
    rows: impl IntoIterator<Item = &'r [u8]>,
    schema: &SchemaRef,
    with_system: bool,
) -> Result<RecordBatch> {
    let rows = rows.into_iter();
    let mut decoder = BatchDecoder::new(schema, with_system, rows.size_hint().0)?;
    for bytes in rows {
        decoder.push(bytes)?;
    }
    decoder.finish()
}

/// [`decode_batch`] a row at a time: for callers that decode rows while they visit them (a
/// flush decodes hot rows straight out of the engine's iterator).
pub struct BatchDecoder {
    schema: SchemaRef,
    tags: Vec<u8>,
    builders: Vec<Builder>,
    system: Option<(Int64Builder, Int64Builder, BooleanBuilder)>,
    rows: usize,
    /// Set by a failed `push`: the failed row may be half appended.
    failed: bool,
}

impl BatchDecoder {
    /// A decoder into `schema`'s user columns (plus the system columns when `with_system`),
    /// sized for `capacity` rows.
    pub fn new(schema: &SchemaRef, with_system: bool, capacity: usize) -> Result<Self> {
        Self::with_data_capacity(schema, with_system, capacity, capacity * 16)
    }

    /// [`BatchDecoder::new`] with `data` bytes reserved for each variable-length column (the
    /// size of the rows to come, when the caller knows it: their values cannot be longer).
    pub fn with_data_capacity(
        schema: &SchemaRef,
        with_system: bool,
        capacity: usize,
        data: usize,
    ) -> Result<Self> {
        let types = schema
            .fields()
            .iter()
            .map(|f| kalam_type_of_field(f))
            .collect::<Result<Vec<_>>>()?;
        let builders = types
            .iter()
            .map(|t| Builder::new(*t, capacity, data))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            schema: schema.clone(),
            tags: types.iter().map(|t| t.tag()).collect(),
            builders,
            system: with_system.then(|| {
                (
                    Int64Builder::with_capacity(capacity),
                    Int64Builder::with_capacity(capacity),
                    BooleanBuilder::with_capacity(capacity),
                )
            }),
            rows: 0,
            failed: false,
        })
    }

    /// Decodes one row. After an error the decoder refuses further rows and `finish` (the
    /// failed row may be half appended, which would misalign the columns).
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_usable()?;
        self.failed = true;
        let system = self
            .system
            .as_mut()
            .map(|(seq, updated, deleted)| (seq, updated, deleted));
        decode_one(bytes, &self.tags, &mut self.builders, system).map_err(|source| {
            Error::Decode {
                what: "row",
                source: with_row(source, self.rows),
            }
        })?;
        self.failed = false;
        self.rows += 1;
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::Decode {
                what: "row",
                source: DecodeError::Invalid {
                    reason: format!("row {} failed to decode before", self.rows),
                },
            });
        }
        Ok(())
    }

    /// Rows decoded so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was decoded.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The decoded rows as one batch.
    pub fn finish(self) -> Result<RecordBatch> {
        self.check_usable()?;
        let mut arrays: Vec<ArrayRef> = self.builders.into_iter().map(Builder::finish).collect();
        let out_schema = match self.system {
            Some((mut seq, mut updated, mut deleted)) => {
                arrays.push(Arc::new(seq.finish()));
                arrays.push(Arc::new(updated.finish()));
                arrays.push(Arc::new(deleted.finish()));
                let mut fields: Vec<_> = self.schema.fields().iter().cloned().collect();
                fields.extend(system_fields());
                Arc::new(Schema::new_with_metadata(
                    fields,
                    self.schema.metadata().clone(),
                ))
            }
            None => self.schema,
        };
        RecordBatch::try_new_with_options(
            out_schema,
            arrays,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .map_err(|source| Error::Arrow {
            op: "assembling decoded rows",
            source,
        })
    }
}

fn with_row(e: DecodeError, index: usize) -> DecodeError {
    DecodeError::Invalid {
        reason: format!("row {index}: {e}"),
    }
}

type SystemBuilders<'b> = (
    &'b mut Int64Builder,
    &'b mut Int64Builder,
    &'b mut BooleanBuilder,
);

fn decode_one(
    bytes: &[u8],
    tags: &[u8],
    builders: &mut [Builder],
    system: Option<SystemBuilders<'_>>,
) -> Result<(), DecodeError> {
    let header = read_header(bytes)?;
    let count = header.columns as usize;
    if count > tags.len() {
        return Err(DecodeError::TooManyColumns {
            expected: tags.len(),
            found: count,
        });
    }
    let body_end = bytes.len() - ROW_TRAILER_LEN;
    let mut reader = Reader::new(&bytes[ROW_HEADER_LEN..body_end]);
    for (column, builder) in builders.iter_mut().enumerate().take(count) {
        let found = reader.u8()?;
        if found == tag::NULL {
            builder.append_null();
        } else if found == tags[column] {
            builder.append_payload(&mut reader)?;
        } else {
            return Err(DecodeError::TagMismatch {
                column,
                expected: tags[column],
                found,
            });
        }
    }
    reader.finish()?;
    for builder in &mut builders[count..] {
        builder.append_null();
    }
    if let Some((seq, updated, deleted)) = system {
        let mut trailer = Reader::new(&bytes[body_end..]);
        seq.append_value(trailer.i64()?);
        updated.append_value(trailer.i64()?);
        deleted.append_value(trailer.bool()?);
    }
    Ok(())
}
