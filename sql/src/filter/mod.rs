//! DataFusion filter expressions as kalamstore [`Filter`]s: comparisons of a column with a
//! literal, `IS [NOT] NULL`, `[NOT] IN`, `BETWEEN`, `AND`, `OR`, `NOT`. A literal converts
//! only to its column's own type (the optimizer has already moved casts onto literals), and a
//! filter is offered to the store only when it binds to the table's schema; anything else
//! stays with DataFusion.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, expr::InList};
use kalamstore_storage::{CmpOp, Filter, KalamDataType, KalamValue, TableDefinition};

/// The filter `expr` expresses on `def`'s current columns, or `None` when the store cannot
/// apply it exactly as DataFusion would.
pub(crate) fn to_filter(expr: &Expr, def: &TableDefinition) -> Option<Filter> {
    let filter = translate(expr, def)?;
    // Binding checks every column and literal against the schema, as the scan will.
    filter.bind(&def.schema, &def.id.to_string()).ok()?;
    Some(filter)
}

fn translate(expr: &Expr, def: &TableDefinition) -> Option<Filter> {
    match expr {
        Expr::Alias(a) => translate(&a.expr, def),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => Some(Filter::And(vec![
                translate(left, def)?,
                translate(right, def)?,
            ])),
            Operator::Or => Some(Filter::Or(vec![
                translate(left, def)?,
                translate(right, def)?,
            ])),
            _ => compare(left, *op, right, def),
        },
        Expr::Not(e) => Some(Filter::Not(Box::new(translate(e, def)?))),
        Expr::IsNull(e) => Some(Filter::IsNull(column(e, def)?.0)),
        Expr::IsNotNull(e) => Some(Filter::IsNotNull(column(e, def)?.0)),
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let (name, data_type) = column(expr, def)?;
            let values = list
                .iter()
                .map(|e| literal(e, data_type))
                .collect::<Option<Vec<_>>>()?;
            Some(Filter::In {
                column: name,
                values,
                negated: *negated,
            })
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let (name, data_type) = column(expr, def)?;
            let range = Filter::And(vec![
                Filter::cmp(name.clone(), CmpOp::GtEq, literal(low, data_type)?),
                Filter::cmp(name, CmpOp::LtEq, literal(high, data_type)?),
            ]);
            Some(match negated {
                true => Filter::Not(Box::new(range)),
                false => range,
            })
        }
        _ => None,
    }
}

/// `column <op> literal` or `literal <op> column`.
fn compare(left: &Expr, op: Operator, right: &Expr, def: &TableDefinition) -> Option<Filter> {
    let op = cmp_op(op)?;
    if let Some((name, data_type)) = column(left, def) {
        return Some(Filter::cmp(name, op, literal(right, data_type)?));
    }
    let (name, data_type) = column(right, def)?;
    Some(Filter::cmp(name, flip(op), literal(left, data_type)?))
}

fn cmp_op(op: Operator) -> Option<CmpOp> {
    Some(match op {
        Operator::Eq => CmpOp::Eq,
        Operator::NotEq => CmpOp::NotEq,
        Operator::Lt => CmpOp::Lt,
        Operator::LtEq => CmpOp::LtEq,
        Operator::Gt => CmpOp::Gt,
        Operator::GtEq => CmpOp::GtEq,
        _ => return None,
    })
}

/// The operator with its sides swapped (`5 < c` is `c > 5`).
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        same => same,
    }
}

/// A plain reference to a current user column, with its type.
fn column(expr: &Expr, def: &TableDefinition) -> Option<(String, KalamDataType)> {
    match expr {
        Expr::Alias(a) => column(&a.expr, def),
        Expr::Column(c) => def
            .schema
            .column(&c.name)
            .map(|c| (c.name.clone(), c.data_type)),
        _ => None,
    }
}

/// A literal as a value of `data_type`, when it has exactly that type (integers of any width
/// and strings of any encoding convert; the filter's binding checks ranges).
fn literal(expr: &Expr, data_type: KalamDataType) -> Option<KalamValue> {
    use KalamDataType as T;
    use KalamValue as V;
    use ScalarValue as S;
    let value = match expr {
        Expr::Alias(a) => return literal(&a.expr, data_type),
        Expr::Literal(v, _) => v,
        _ => return None,
    };
    if value.is_null() {
        return Some(V::Null);
    }
    let int = || -> Option<i64> {
        Some(match value {
            S::Int8(Some(v)) => i64::from(*v),
            S::Int16(Some(v)) => i64::from(*v),
            S::Int32(Some(v)) => i64::from(*v),
            S::Int64(Some(v)) => *v,
            S::UInt8(Some(v)) => i64::from(*v),
            S::UInt16(Some(v)) => i64::from(*v),
            S::UInt32(Some(v)) => i64::from(*v),
            S::UInt64(Some(v)) => i64::try_from(*v).ok()?,
            _ => return None,
        })
    };
    let text = || -> Option<String> {
        match value {
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => Some(s.clone()),
            _ => None,
        }
    };
    Some(match (data_type, value) {
        (T::Boolean, S::Boolean(Some(b))) => V::Boolean(*b),
        (T::SmallInt | T::Int | T::BigInt, _) => V::BigInt(int()?),
        (T::Float, S::Float32(Some(f))) => V::Float(*f),
        (T::Double, S::Float64(Some(f))) => V::Double(*f),
        (T::Text, _) => V::Text(text()?),
        (T::Json, _) => V::Json(text()?),
        (T::Bytes, S::Binary(Some(b)) | S::LargeBinary(Some(b)) | S::BinaryView(Some(b))) => {
            V::Bytes(b.clone())
        }
        (T::Timestamp, S::TimestampMicrosecond(Some(t), None)) => V::Timestamp(*t),
        (T::DateTime, S::TimestampMicrosecond(Some(t), Some(tz)))
            if matches!(tz.as_ref(), "UTC" | "+00:00" | "Z") =>
        {
            V::DateTime(*t)
        }
        (T::Date, S::Date32(Some(d))) => V::Date(*d),
        (T::Time, S::Time64Microsecond(Some(t))) => V::Time(*t),
        (T::Uuid, S::FixedSizeBinary(16, Some(b))) => V::Uuid(b.as_slice().try_into().ok()?),
        (T::Decimal { scale, .. }, S::Decimal128(Some(v), _, s)) if *s == scale => V::Decimal(*v),
        _ => return None,
    })
}

#[cfg(test)]
mod property;

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};
    use kalamstore_storage::{ColumnDefinition, StorageId, TableOptions, TableType};

    use super::*;

    fn def() -> TableDefinition {
        TableDefinition::new(
            "app.t".parse().unwrap(),
            TableType::Shared,
            vec![
                ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
                ColumnDefinition::new("body", KalamDataType::Text),
                ColumnDefinition::new("score", KalamDataType::Double),
            ],
            StorageId::local(),
            TableOptions::default(),
            0,
        )
        .unwrap()
    }

    #[test]
    fn comparisons_lists_and_ranges_translate() {
        let d = def();
        assert_eq!(
            to_filter(&col("id").eq(lit(5i64)), &d),
            Some(Filter::eq("id", KalamValue::BigInt(5)))
        );
        assert_eq!(
            to_filter(&lit(5i32).lt(col("id")), &d),
            Some(Filter::cmp("id", CmpOp::Gt, KalamValue::BigInt(5)))
        );
        let both = col("body")
            .is_null()
            .or(col("id").between(lit(1i64), lit(3i64)));
        assert_eq!(
            to_filter(&both, &d),
            Some(Filter::Or(vec![
                Filter::IsNull("body".into()),
                Filter::And(vec![
                    Filter::cmp("id", CmpOp::GtEq, KalamValue::BigInt(1)),
                    Filter::cmp("id", CmpOp::LtEq, KalamValue::BigInt(3)),
                ]),
            ]))
        );
        let outside = col("id").not_between(lit(1i64), lit(3i64));
        assert_eq!(
            to_filter(&outside, &d),
            Some(Filter::Not(Box::new(Filter::And(vec![
                Filter::cmp("id", CmpOp::GtEq, KalamValue::BigInt(1)),
                Filter::cmp("id", CmpOp::LtEq, KalamValue::BigInt(3)),
            ]))))
        );
        let listed = col("body").in_list(vec![lit("a"), lit("b")], true);
        assert_eq!(
            to_filter(&listed, &d),
            Some(Filter::In {
                column: "body".into(),
                values: vec![KalamValue::Text("a".into()), KalamValue::Text("b".into())],
                negated: true,
            })
        );
        // A NULL in a list stays in it: `x NOT IN (1, NULL)` is never true, in SQL and here.
        let with_null =
            col("score").in_list(vec![lit(1.5f64), lit(ScalarValue::Float64(None))], false);
        assert_eq!(
            to_filter(&with_null, &d),
            Some(Filter::In {
                column: "score".into(),
                values: vec![KalamValue::Double(1.5), KalamValue::Null],
                negated: false,
            })
        );
        let negated = !(col("body")
            .is_not_null()
            .and(col("score").gt_eq(lit(2.0f64))));
        assert_eq!(
            to_filter(&negated, &d),
            Some(Filter::Not(Box::new(Filter::And(vec![
                Filter::IsNotNull("body".into()),
                Filter::cmp("score", CmpOp::GtEq, KalamValue::Double(2.0)),
            ]))))
        );
    }

    #[test]
    fn what_the_store_cannot_apply_exactly_is_left_to_datafusion() {
        let d = def();
        // A function, a literal of another type, an unknown column, an expression of columns.
        assert_eq!(to_filter(&col("body").like(lit("a%")), &d), None);
        assert_eq!(to_filter(&col("score").eq(lit(1i64)), &d), None);
        assert_eq!(to_filter(&col("nope").eq(lit(1i64)), &d), None);
        assert_eq!(to_filter(&col("id").eq(col("score")), &d), None);
        // Out of the column's range: the binding refuses it.
        assert_eq!(to_filter(&col("id").eq(lit(u64::MAX)), &d), None);
    }
}
