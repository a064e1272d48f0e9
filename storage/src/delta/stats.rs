//! Per-file statistics of an `add` action, from the data file's footer: the row count (deleted
//! rows included, as Delta wants), null counts of every published column, and minimum and
//! maximum values of numeric, date and short text columns.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use serde_json::{Map, Value, json};

use crate::schema::TableDefinition;

/// Longest text kept as a min/max bound (a truncated max would not be an upper bound).
const MAX_TEXT_BOUND: usize = 32;

/// One bound of a column over all row groups, as JSON, when its type has one we publish.
fn bound(values: &ArrayRef, max: bool) -> Option<Value> {
    let pick = |n: Option<f64>| n.filter(|v| v.is_finite()).map(Value::from);
    Some(match values.data_type() {
        DataType::Int16 => {
            let a = values.as_primitive::<Int16Type>();
            let v = if max {
                arrow::compute::max(a)
            } else {
                arrow::compute::min(a)
            };
            Value::from(v?)
        }
        DataType::Int32 => {
            let a = values.as_primitive::<Int32Type>();
            let v = if max {
                arrow::compute::max(a)
            } else {
                arrow::compute::min(a)
            };
            Value::from(v?)
        }
        DataType::Int64 => {
            let a = values.as_primitive::<Int64Type>();
            let v = if max {
                arrow::compute::max(a)
            } else {
                arrow::compute::min(a)
            };
            Value::from(v?)
        }
        DataType::Float32 => {
            let a = values.as_primitive::<Float32Type>();
            let v = if max {
                arrow::compute::max(a)
            } else {
                arrow::compute::min(a)
            };
            pick(v.map(f64::from))?
        }
        DataType::Float64 => {
            let a = values.as_primitive::<Float64Type>();
            let v = if max {
                arrow::compute::max(a)
            } else {
                arrow::compute::min(a)
            };
            pick(v)?
        }
        DataType::Utf8 => {
            let a = values.as_string::<i32>();
            let v = if max {
                arrow::compute::max_string(a)
            } else {
                arrow::compute::min_string(a)
            }?;
            if v.chars().count() > MAX_TEXT_BOUND {
                return None;
            }
            Value::from(v)
        }
        DataType::Date32 => {
            let a = values.as_primitive::<arrow::datatypes::Date32Type>();
            let v = if max {
                arrow::compute::max(a)
            } else {
                arrow::compute::min(a)
            }?;
            let one = arrow::array::Date32Array::from(vec![v]);
            let f = ArrayFormatter::try_new(&one, &FormatOptions::default()).ok()?;
            Value::from(f.value(0).to_string())
        }
        _ => return None,
    })
}

/// The `stats` string of a file of `rows` rows with footer `footer`.
pub(crate) fn file_stats(
    def: &TableDefinition,
    footer: &ArrowReaderMetadata,
    rows: u64,
    has_dv: bool,
    published: &[String],
) -> String {
    let row_groups = footer.metadata().row_groups();
    let (mut mins, mut maxes, mut nulls) = (Map::new(), Map::new(), Map::new());
    for c in def.columns().iter().filter(|c| published.contains(&c.name)) {
        let Ok(conv) =
            StatisticsConverter::try_new(&c.name, footer.schema(), footer.parquet_schema())
        else {
            continue;
        };
        if let Ok(counts) = conv.row_group_null_counts(row_groups.iter())
            && counts.null_count() == 0
        {
            let total: u64 = counts.values().iter().sum();
            nulls.insert(c.name.clone(), Value::from(total));
        }
        if let Ok(m) = conv.row_group_mins(row_groups.iter())
            && m.null_count() == 0
            && let Some(v) = bound(&m, false)
        {
            mins.insert(c.name.clone(), v);
        }
        if let Ok(m) = conv.row_group_maxes(row_groups.iter())
            && m.null_count() == 0
            && let Some(v) = bound(&m, true)
        {
            maxes.insert(c.name.clone(), v);
        }
    }
    json!({
        "numRecords": rows,
        "minValues": mins,
        "maxValues": maxes,
        "nullCount": nulls,
        "tightBounds": !has_dv,
    })
    .to_string()
}
