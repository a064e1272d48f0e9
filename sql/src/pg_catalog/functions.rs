//! The catalog functions Postgres clients' catalog queries call (`pg_get_userbyid`,
//! `format_type`, `pg_table_is_visible`, ...), registered on every session.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use super::TYPES;

/// A function of the catalog queries: `name(args) -> ret`, each row mapped by `f`.
fn udf(
    name: &str,
    args: Vec<DataType>,
    ret: DataType,
    f: impl Fn(&[ScalarValue]) -> ScalarValue + Send + Sync + 'static,
) -> ScalarUDF {
    let f = Arc::new(f);
    create_udf(
        name,
        args,
        ret,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = args.iter().find_map(|a| match a {
                ColumnarValue::Array(a) => Some(a.len()),
                ColumnarValue::Scalar(_) => None,
            });
            let Some(rows) = rows else {
                let values: Vec<ScalarValue> = args
                    .iter()
                    .map(|a| match a {
                        ColumnarValue::Scalar(s) => s.clone(),
                        ColumnarValue::Array(_) => ScalarValue::Null,
                    })
                    .collect();
                return Ok(ColumnarValue::Scalar(f(&values)));
            };
            let arrays = args
                .iter()
                .map(|a| a.clone().into_array(rows))
                .collect::<DfResult<Vec<_>>>()?;
            let mut out = Vec::with_capacity(rows);
            for i in 0..rows {
                let values = arrays
                    .iter()
                    .map(|a| ScalarValue::try_from_array(a, i))
                    .collect::<DfResult<Vec<_>>>()?;
                out.push(f(&values));
            }
            Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
        }),
    )
}

fn int(v: &ScalarValue) -> Option<i64> {
    match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(v) => v,
        _ => None,
    }
}

/// Registers the catalog functions psql and drivers call.
pub(crate) fn register_functions(ctx: &SessionContext) {
    ctx.register_udf(udf(
        "pg_get_userbyid",
        vec![DataType::Int64],
        DataType::Utf8,
        |_| ScalarValue::Utf8(Some("kalamstore".into())),
    ));
    ctx.register_udf(udf(
        "pg_table_is_visible",
        vec![DataType::Int64],
        DataType::Boolean,
        |_| ScalarValue::Boolean(Some(true)),
    ));
    ctx.register_udf(udf(
        "format_type",
        vec![DataType::Int64, DataType::Int64],
        DataType::Utf8,
        |args| {
            let oid = args.first().and_then(int);
            let typmod = args.get(1).and_then(int).unwrap_or(-1);
            let name = TYPES.iter().find(|t| Some(t.0) == oid).map(|t| t.2);
            ScalarValue::Utf8(name.map(|n| match (n, typmod) {
                ("numeric", m) if m >= 4 => {
                    format!("numeric({},{})", (m - 4) >> 16, (m - 4) & 0xffff)
                }
                (n, _) => n.to_owned(),
            }))
        },
    ));
    ctx.register_udf(udf(
        "pg_get_expr",
        vec![DataType::Utf8, DataType::Int64, DataType::Boolean],
        DataType::Utf8,
        |args| args.first().cloned().unwrap_or(ScalarValue::Utf8(None)),
    ));
    ctx.register_udf(udf(
        "pg_get_indexdef",
        vec![DataType::Int64, DataType::Int64, DataType::Boolean],
        DataType::Utf8,
        |_| ScalarValue::Utf8(Some("PRIMARY KEY".into())),
    ));
    ctx.register_udf(udf(
        "pg_get_constraintdef",
        vec![DataType::Int64, DataType::Boolean],
        DataType::Utf8,
        |_| ScalarValue::Utf8(None),
    ));
    ctx.register_udf(udf(
        "obj_description",
        vec![DataType::Int64, DataType::Utf8],
        DataType::Utf8,
        |_| ScalarValue::Utf8(None),
    ));
    ctx.register_udf(udf(
        "col_description",
        vec![DataType::Int64, DataType::Int64],
        DataType::Utf8,
        |_| ScalarValue::Utf8(None),
    ));
}
