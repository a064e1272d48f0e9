//! Binary rows to an arrow `RecordBatch`, without a `KalamValue` per value: decoding appends
//! straight into arrow builders.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, FixedSizeListBuilder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, NullArray, RecordBatch, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::row::{ROW_HEADER_LEN, ROW_TRAILER_LEN, read_header, system_fields};
use super::value::{Reader, tag};
use crate::error::{DecodeError, Error, Result};
use crate::types::{KalamDataType, kalam_type_of_field};

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
    /// A column not asked for: its values are read past, its array is all NULL.
    Skip(KalamDataType, usize),
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
            Self::Null(n) | Self::Skip(_, n) => *n += 1,
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
            Self::Skip(data_type, n) => {
                skip_payload(*data_type, reader)?;
                *n += 1;
            }
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
            Self::Null(n) | Self::Skip(_, n) => Arc::new(NullArray::new(n)),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::SmallInt(mut b) => Arc::new(b.finish()),
            Self::Int(mut b) => Arc::new(b.finish()),
            Self::Date(mut b) => Arc::new(b.finish()),
            Self::BigInt(mut b) => Arc::new(b.finish()),
            Self::Timestamp(mut b) => Arc::new(b.finish()),
            Self::Time(mut b) => Arc::new(b.finish()),
            Self::Float(mut b) => Arc::new(b.finish()),
            Self::Double(mut b) => Arc::new(b.finish()),
            Self::Str(mut b) => trimmed(b.finish()),
            Self::Bin(mut b) => trimmed(b.finish()),
            Self::Uuid(mut b) => Arc::new(b.finish()),
            Self::Decimal(mut b) => Arc::new(b.finish()),
            Self::Embedding(mut b, _) => Arc::new(b.finish()),
        }
    }
}

/// Reads past the payload of a non-NULL value of `data_type`.
fn skip_payload(data_type: KalamDataType, reader: &mut Reader<'_>) -> Result<(), DecodeError> {
    use KalamDataType as T;
    match data_type {
        T::Null => unreachable!("only the NULL tag matches a NULL column"),
        T::Boolean => {
            reader.bool()?;
        }
        T::SmallInt => {
            reader.array::<2>()?;
        }
        T::Int | T::Date | T::Float => {
            reader.array::<4>()?;
        }
        T::BigInt | T::Timestamp | T::DateTime | T::Time | T::Double => {
            reader.array::<8>()?;
        }
        T::Text | T::Json | T::Bytes => {
            reader.len_prefixed()?;
        }
        T::Uuid => {
            reader.take(16)?;
        }
        T::Decimal { .. } => {
            reader.array::<16>()?;
        }
        T::Embedding { .. } => {
            reader.f32_vector()?;
        }
    }
    Ok(())
}

/// Unused reserve a variable-length column may keep: past it, the finished array is shrunk
/// (the reserve is a guess of 16 bytes a value, far too much for a column of short or null
/// values, and decoded batches can be kept, e.g. hot rows between reads).
const KEPT_SLACK: usize = 1 << 20;

/// `array` as an `ArrayRef`, shrunk to its contents when the reserve left over is more than
/// [`KEPT_SLACK`].
fn trimmed<T: arrow::datatypes::ByteArrayType>(
    mut array: arrow::array::GenericByteArray<T>,
) -> ArrayRef {
    let values = array.values();
    if values.capacity().saturating_sub(values.len()) > KEPT_SLACK {
        arrow::array::Array::shrink_to_fit(&mut array);
    }
    Arc::new(array)
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
    /// The user columns decoded: the asked-for schema, skipped columns typed `Null`.
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
        Self::projected(schema, with_system, capacity, data, None)
    }

    /// [`BatchDecoder::with_data_capacity`] that decodes only the user columns `keep` marks
    /// (all when `None`): the others are read past, and come out as all-NULL columns of type
    /// `Null` (a read that needs a few columns of wide rows holds only those).
    pub fn projected(
        schema: &SchemaRef,
        with_system: bool,
        capacity: usize,
        data: usize,
        keep: Option<&[bool]>,
    ) -> Result<Self> {
        let types = schema
            .fields()
            .iter()
            .map(|f| kalam_type_of_field(f))
            .collect::<Result<Vec<_>>>()?;
        let kept = |i: usize| keep.is_none_or(|k| k.get(i).copied().unwrap_or(true));
        let builders = types
            .iter()
            .enumerate()
            .map(|(i, t)| match kept(i) {
                true => Builder::new(*t, capacity, data),
                false => Ok(Builder::Skip(*t, 0)),
            })
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match kept(i) {
                true => f.clone(),
                false => Arc::new(Field::new(f.name(), DataType::Null, true)),
            })
            .collect();
        Ok(Self {
            schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
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
