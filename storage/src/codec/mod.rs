//! Value, row, key and batch codecs: how kalamstore turns records into bytes and back.

mod batch;
mod batch_decode;
mod key;
mod row;
mod value;

pub(crate) use batch::encode_arrays;
pub use batch::{EncodedRows, encode_batch};
pub use batch_decode::{BatchDecoder, decode_batch};
pub use key::{decode_key, encode_component, encode_key};
pub(crate) use row::set_system_columns;
pub use row::{
    DELETED_COLUMN, MAX_COLUMNS, MAX_VALUE_LEN, ROW_FORMAT_VERSION, ROW_HEADER_LEN,
    ROW_TRAILER_LEN, Row, RowHeader, SEQ_COLUMN, SystemColumns, UPDATED_COLUMN, read_header,
    read_row_meta, read_system_columns, system_fields,
};
pub use value::KalamValue;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    FixedSizeBinaryArray, FixedSizeListArray, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, NullArray, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Time64MicrosecondType, TimestampMicrosecondType,
};

use crate::error::{Error, Result};
use crate::types::KalamDataType;

/// Builds an arrow array of `data_type` from values (the slow, per-value path, for literals and
/// tests). A value that does not fit the type is an error naming `column`.
pub fn array_from_values(
    column: &str,
    data_type: KalamDataType,
    values: &[KalamValue],
) -> Result<ArrayRef> {
    use KalamDataType as T;
    use KalamValue as V;
    let mismatch = |v: &KalamValue| Error::InvalidValue {
        column: column.to_owned(),
        reason: format!("value {v:?} is not a {data_type}"),
    };
    macro_rules! collect {
        ($pattern:pat => $out:expr) => {
            values
                .iter()
                .map(|v| match v {
                    V::Null => Ok(None),
                    $pattern => Ok(Some($out)),
                    other => Err(mismatch(other)),
                })
                .collect::<Result<Vec<_>>>()?
        };
    }
    let array: ArrayRef = match data_type {
        T::Null => {
            if let Some(v) = values.iter().find(|v| !v.is_null()) {
                return Err(mismatch(v));
            }
            Arc::new(NullArray::new(values.len()))
        }
        T::Boolean => Arc::new(BooleanArray::from(collect!(V::Boolean(b) => *b))),
        T::SmallInt => Arc::new(Int16Array::from(collect!(V::SmallInt(x) => *x))),
        T::Int => Arc::new(Int32Array::from(collect!(V::Int(x) => *x))),
        T::BigInt => Arc::new(Int64Array::from(collect!(V::BigInt(x) => *x))),
        T::Float => Arc::new(Float32Array::from(collect!(V::Float(x) => *x))),
        T::Double => Arc::new(Float64Array::from(collect!(V::Double(x) => *x))),
        T::Text => Arc::new(StringArray::from(collect!(V::Text(s) => s.as_str()))),
        T::Json => Arc::new(StringArray::from(collect!(V::Json(s) => s.as_str()))),
        T::Timestamp => Arc::new(TimestampMicrosecondArray::from(
            collect!(V::Timestamp(x) => *x),
        )),
        T::DateTime => Arc::new(
            TimestampMicrosecondArray::from(collect!(V::DateTime(x) => *x)).with_timezone("UTC"),
        ),
        T::Date => Arc::new(Date32Array::from(collect!(V::Date(x) => *x))),
        T::Time => Arc::new(Time64MicrosecondArray::from(collect!(V::Time(x) => *x))),
        T::Bytes => Arc::new(BinaryArray::from(collect!(V::Bytes(b) => b.as_slice()))),
        T::Uuid => {
            let items = collect!(V::Uuid(u) => u.as_slice());
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(items.into_iter(), 16)
                    .map_err(|source| Error::Arrow {
                        op: "building a UUID column",
                        source,
                    })?,
            )
        }
        T::Decimal { precision, scale } => {
            let items = collect!(V::Decimal(x) => *x);
            if let Some(v) = values.iter().find(|v| !v.fits(data_type)) {
                return Err(mismatch(v));
            }
            Arc::new(
                Decimal128Array::from(items)
                    .with_precision_and_scale(precision, scale)
                    .map_err(|source| Error::Arrow {
                        op: "building a DECIMAL column",
                        source,
                    })?,
            )
        }
        T::Embedding { dim } => {
            let dim = dim as usize;
            let mut flat = Vec::with_capacity(values.len() * dim);
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    V::Null => {
                        flat.extend(std::iter::repeat_n(0.0, dim));
                        valid.push(false);
                    }
                    V::Embedding(x) if x.len() == dim => {
                        flat.extend_from_slice(x);
                        valid.push(true);
                    }
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(
                FixedSizeListArray::try_new(
                    crate::types::embedding_item(),
                    dim as i32,
                    Arc::new(Float32Array::from(flat)),
                    Some(NullBuffer::from(valid)),
                )
                .map_err(|source| Error::Arrow {
                    op: "building an EMBEDDING column",
                    source,
                })?,
            )
        }
    };
    Ok(array)
}

/// Reads row `i` of an arrow array of `data_type` as a value (the slow, per-value path).
/// TEXT and JSON read from `Utf8` or `Utf8View`, BYTES from `Binary` or `BinaryView` (the
/// view types DataFusion reads Parquet strings as).
///
/// An array whose arrow type is not `data_type`'s, or an index past its end, is an error.
pub fn value_at(array: &dyn Array, data_type: KalamDataType, i: usize) -> Result<KalamValue> {
    use KalamDataType as T;
    use KalamValue as V;
    let view = matches!(
        (data_type, array.data_type()),
        (T::Text | T::Json, DataType::Utf8View) | (T::Bytes, DataType::BinaryView)
    );
    if (!view && array.data_type() != &data_type.to_arrow()) || i >= array.len() {
        return Err(Error::InvalidValue {
            column: "?".into(),
            reason: format!(
                "cannot read row {i} of a {} array of length {} as {data_type}",
                array.data_type(),
                array.len()
            ),
        });
    }
    if array.is_null(i) {
        return Ok(V::Null);
    }
    Ok(match data_type {
        T::Null => V::Null,
        T::Boolean => V::Boolean(array.as_boolean().value(i)),
        T::SmallInt => V::SmallInt(array.as_primitive::<Int16Type>().value(i)),
        T::Int => V::Int(array.as_primitive::<Int32Type>().value(i)),
        T::BigInt => V::BigInt(array.as_primitive::<Int64Type>().value(i)),
        T::Float => V::Float(array.as_primitive::<Float32Type>().value(i)),
        T::Double => V::Double(array.as_primitive::<Float64Type>().value(i)),
        T::Text | T::Json => {
            let text = match view {
                true => array.as_string_view().value(i).to_owned(),
                false => array.as_string::<i32>().value(i).to_owned(),
            };
            match data_type {
                T::Json => V::Json(text),
                _ => V::Text(text),
            }
        }
        T::Timestamp => V::Timestamp(array.as_primitive::<TimestampMicrosecondType>().value(i)),
        T::DateTime => V::DateTime(array.as_primitive::<TimestampMicrosecondType>().value(i)),
        T::Date => V::Date(array.as_primitive::<Date32Type>().value(i)),
        T::Time => V::Time(array.as_primitive::<Time64MicrosecondType>().value(i)),
        T::Bytes if view => V::Bytes(array.as_binary_view().value(i).to_vec()),
        T::Bytes => V::Bytes(array.as_binary::<i32>().value(i).to_vec()),
        T::Uuid => {
            let mut u = [0u8; 16];
            u.copy_from_slice(array.as_fixed_size_binary().value(i));
            V::Uuid(u)
        }
        T::Decimal { .. } => V::Decimal(array.as_primitive::<Decimal128Type>().value(i)),
        T::Embedding { .. } => {
            let list = array.as_fixed_size_list().value(i);
            V::Embedding(list.as_primitive::<Float32Type>().values().to_vec())
        }
    })
}

/// The values of row `row` of a batch, in column order (each column's type from its arrow
/// field).
pub fn row_values(batch: &arrow::record_batch::RecordBatch, row: usize) -> Result<Vec<KalamValue>> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| value_at(a.as_ref(), crate::types::kalam_type_of_field(f)?, row))
        .collect()
}

#[cfg(test)]
mod tests;
