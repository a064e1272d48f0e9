//! Postgres types on the wire: result columns from Arrow fields (JSON columns as `json`), and
//! the values of `$n` parameters, text or binary, as DataFusion scalars.

use std::sync::Arc;

use arrow_pg::datatypes::field_into_pg_type;
use kalamstore_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};
use kalamstore_sql::datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::FieldInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// Arrow's extension-type key and the JSON extension kalamstore's columns carry.
const EXTENSION_NAME: &str = "ARROW:extension:name";
const JSON_EXTENSION: &str = "arrow.json";

/// The Postgres type of a result column.
pub fn pg_type(field: &Arc<Field>) -> PgWireResult<Type> {
    if field.metadata().get(EXTENSION_NAME).map(String::as_str) == Some(JSON_EXTENSION) {
        return Ok(Type::JSON);
    }
    field_into_pg_type(field)
}

/// Whether two schemas have the same columns as a client sees them: as many, of the same
/// Postgres types (what a prepared statement's Describe promised).
pub fn same_types(described: &Schema, actual: &Schema) -> bool {
    described.fields().len() == actual.fields().len()
        && described
            .fields()
            .iter()
            .zip(actual.fields())
            .all(|(a, b)| match (pg_type(a), pg_type(b)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            })
}

/// The row description of `schema`, each column in the format the client asked for.
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Ok(FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f)?,
                format.format_for(i),
            ))
        })
        .collect()
}

/// The Postgres type a `$n` of `data_type` is described as.
pub fn param_type(data_type: Option<&DataType>) -> Type {
    match data_type {
        Some(DataType::Boolean) => Type::BOOL,
        Some(DataType::Int8 | DataType::Int16) => Type::INT2,
        Some(DataType::Int32) => Type::INT4,
        Some(DataType::Int64) => Type::INT8,
        Some(DataType::Float32) => Type::FLOAT4,
        Some(DataType::Float64) => Type::FLOAT8,
        Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => Type::TEXT,
        Some(DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => Type::BYTEA,
        Some(DataType::Timestamp(_, None)) => Type::TIMESTAMP,
        Some(DataType::Timestamp(_, Some(_))) => Type::TIMESTAMPTZ,
        Some(DataType::Date32 | DataType::Date64) => Type::DATE,
        Some(DataType::Decimal128(..)) => Type::NUMERIC,
        // Anything else is sent as text and converted by the statement.
        _ => Type::UNKNOWN,
    }
}

fn bad_param(idx: usize, ty: &Type, e: impl std::fmt::Display) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "22P02".into(),
        format!("parameter ${}: invalid {} value: {e}", idx + 1, ty.name()),
    )))
}

/// The value of parameter `idx` of `portal`, decoded as `ty`.
pub fn param<S: Clone>(portal: &Portal<S>, idx: usize, ty: &Type) -> PgWireResult<ScalarValue> {
    fn get<'a, T, S: Clone>(portal: &'a Portal<S>, idx: usize, ty: &Type) -> PgWireResult<Option<T>>
    where
        T: postgres_types::FromSqlOwned + pgwire::types::FromSqlText<'a>,
    {
        portal
            .parameter::<T>(idx, ty)
            .map_err(|e| bad_param(idx, ty, e))
    }
    Ok(match ty {
        t if *t == Type::BOOL => ScalarValue::Boolean(get::<bool, S>(portal, idx, t)?),
        t if *t == Type::INT2 => ScalarValue::Int16(get::<i16, S>(portal, idx, t)?),
        t if *t == Type::INT4 => ScalarValue::Int32(get::<i32, S>(portal, idx, t)?),
        t if *t == Type::INT8 => ScalarValue::Int64(get::<i64, S>(portal, idx, t)?),
        t if *t == Type::FLOAT4 => ScalarValue::Float32(get::<f32, S>(portal, idx, t)?),
        t if *t == Type::FLOAT8 => ScalarValue::Float64(get::<f64, S>(portal, idx, t)?),
        t if *t == Type::BYTEA => ScalarValue::Binary(get::<Vec<u8>, S>(portal, idx, t)?),
        t if *t == Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            get::<chrono::NaiveDateTime, S>(portal, idx, t)?
                .map(|v| v.and_utc().timestamp_micros()),
            None,
        ),
        t if *t == Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            get::<chrono::DateTime<chrono::FixedOffset>, S>(portal, idx, t)?
                .map(|v| v.timestamp_micros()),
            Some("UTC".into()),
        ),
        t if *t == Type::DATE => {
            ScalarValue::Date32(get::<chrono::NaiveDate, S>(portal, idx, t)?.map(|d| {
                // Days since 1970-01-01; dates a Postgres client sends fit in an i32.
                (d - chrono::NaiveDate::default()).num_days() as i32
            }))
        }
        t if *t == Type::NUMERIC => ScalarValue::Utf8(
            get::<rust_decimal::Decimal, S>(portal, idx, t)?.map(|d| d.to_string()),
        ),
        t if *t == Type::JSON || *t == Type::JSONB => {
            ScalarValue::Utf8(get::<serde_json::Value, S>(portal, idx, t)?.map(|v| v.to_string()))
        }
        // TEXT, VARCHAR, UNKNOWN and the rest: the text as sent.
        t => match portal.parameters.get(idx) {
            None => return Err(PgWireError::ParameterIndexOutOfBound(idx)),
            Some(None) => ScalarValue::Utf8(None),
            Some(Some(bytes)) if !portal.parameter_format.is_binary(idx) || is_text(t) => {
                ScalarValue::Utf8(Some(
                    std::str::from_utf8(bytes)
                        .map_err(|e| bad_param(idx, t, e))?
                        .to_owned(),
                ))
            }
            Some(Some(_)) => {
                return Err(bad_param(
                    idx,
                    t,
                    "binary values of this type are not supported",
                ));
            }
        },
    })
}

fn is_text(t: &Type) -> bool {
    [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
    ]
    .contains(t)
}
