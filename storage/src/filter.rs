//! Row filters: the predicates a scan pushes into files, row groups and the hot tier, evaluated
//! with arrow compute kernels.

use std::ops::Bound;

use arrow::array::{Array, ArrayRef, BooleanArray, Scalar, UInt64Array};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{is_not_null, is_null};
use arrow::record_batch::RecordBatch;

use crate::codec::{KalamValue, array_from_values};
use crate::error::{Error, Result};
use crate::schema::SchemaVersion;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

/// A predicate over a table's columns, with SQL NULL semantics (a comparison with NULL is not
/// true, so the row is not returned).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `column <op> value`.
    Compare {
        /// The column.
        column: String,
        /// The operator.
        op: CmpOp,
        /// The literal.
        value: KalamValue,
    },
    /// `column IS NULL`.
    IsNull(String),
    /// `column IS NOT NULL`.
    IsNotNull(String),
    /// `column [NOT] IN (values)`.
    In {
        /// The column.
        column: String,
        /// The literals.
        values: Vec<KalamValue>,
        /// `NOT IN`.
        negated: bool,
    },
    /// All of these.
    And(Vec<Filter>),
    /// Any of these.
    Or(Vec<Filter>),
    /// Not this.
    Not(Box<Filter>),
}

impl std::fmt::Display for CmpOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Eq => "=",
            Self::NotEq => "<>",
            Self::Lt => "<",
            Self::LtEq => "<=",
            Self::Gt => ">",
            Self::GtEq => ">=",
        })
    }
}

/// A literal as SQL shows it: strings quoted, NULL, numbers as digits.
fn literal_text(v: &KalamValue) -> String {
    match v {
        KalamValue::Null => "NULL".into(),
        KalamValue::Boolean(b) => b.to_string(),
        KalamValue::SmallInt(n) => n.to_string(),
        KalamValue::Int(n) => n.to_string(),
        KalamValue::BigInt(n) => n.to_string(),
        KalamValue::Float(n) => n.to_string(),
        KalamValue::Double(n) => n.to_string(),
        KalamValue::Text(s) | KalamValue::Json(s) => format!("'{}'", s.replace('\'', "''")),
        other => format!("{other:?}"),
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |f: &mut std::fmt::Formatter<'_>, all: &[Filter], op: &str| {
            let parts: Vec<String> = all.iter().map(|p| format!("({p})")).collect();
            f.write_str(&parts.join(op))
        };
        match self {
            Self::Compare { column, op, value } => {
                write!(f, "{column} {op} {}", literal_text(value))
            }
            Self::IsNull(c) => write!(f, "{c} IS NULL"),
            Self::IsNotNull(c) => write!(f, "{c} IS NOT NULL"),
            Self::In {
                column,
                values,
                negated,
            } => {
                let list: Vec<String> = values.iter().map(literal_text).collect();
                let not = if *negated { "NOT " } else { "" };
                write!(f, "{column} {not}IN ({})", list.join(", "))
            }
            Self::And(all) => join(f, all, " AND "),
            Self::Or(all) => join(f, all, " OR "),
            Self::Not(inner) => write!(f, "NOT ({inner})"),
        }
    }
}

impl Filter {
    /// `column = value`.
    pub fn eq(column: impl Into<String>, value: KalamValue) -> Self {
        Self::cmp(column, CmpOp::Eq, value)
    }

    /// `column <op> value`.
    pub fn cmp(column: impl Into<String>, op: CmpOp, value: KalamValue) -> Self {
        Self::Compare {
            column: column.into(),
            op,
            value,
        }
    }

    /// `self AND other`.
    pub fn and(self, other: Filter) -> Self {
        match self {
            Self::And(mut all) => {
                all.push(other);
                Self::And(all)
            }
            first => Self::And(vec![first, other]),
        }
    }

    /// Bounds on `column` implied by the filter's top-level conjunction (inclusive, so they
    /// only narrow; the filter itself still decides each row).
    pub fn bounds_of(&self, column: &str) -> (Bound<KalamValue>, Bound<KalamValue>) {
        let mut lower: Option<KalamValue> = None;
        let mut upper: Option<KalamValue> = None;
        let conjuncts: Vec<&Filter> = match self {
            Self::And(all) => all.iter().collect(),
            other => vec![other],
        };
        let tighten = |slot: &mut Option<KalamValue>, v: &KalamValue, keep_greater: bool| {
            let replace = match slot {
                None => true,
                Some(cur) => (v.total_cmp(cur).is_gt()) == keep_greater,
            };
            if replace {
                *slot = Some(v.clone());
            }
        };
        for f in conjuncts {
            if let Self::Compare {
                column: c,
                op,
                value,
            } = f
                && c == column
                && !value.is_null()
            {
                match op {
                    CmpOp::Eq => {
                        tighten(&mut lower, value, true);
                        tighten(&mut upper, value, false);
                    }
                    CmpOp::Gt | CmpOp::GtEq => tighten(&mut lower, value, true),
                    CmpOp::Lt | CmpOp::LtEq => tighten(&mut upper, value, false),
                    CmpOp::NotEq => {}
                }
            }
        }
        (
            lower.map_or(Bound::Unbounded, Bound::Included),
            upper.map_or(Bound::Unbounded, Bound::Included),
        )
    }

    /// Checks the filter against a schema and turns its literals into arrow scalars of the
    /// columns' types; errors name the table and the column.
    pub fn bind(&self, schema: &SchemaVersion, table: &str) -> Result<BoundFilter> {
        let column_type = |name: &str| {
            schema
                .column(name)
                .map(|c| c.data_type)
                .ok_or_else(|| Error::InvalidQuery {
                    table: table.to_owned(),
                    reason: format!("no column `{name}`"),
                })
        };
        let literal = |name: &str, value: &KalamValue| -> Result<ArrayRef> {
            let data_type = column_type(name)?;
            let value = value.coerce(data_type).ok_or_else(|| Error::InvalidQuery {
                table: table.to_owned(),
                reason: format!("column `{name}` is {data_type}, cannot compare with {value:?}"),
            })?;
            array_from_values(name, data_type, &[value])
        };
        Ok(match self {
            Self::Compare { column, op, value } => BoundFilter::Compare {
                column: column.clone(),
                op: *op,
                literal: literal(column, value)?,
            },
            Self::IsNull(c) => {
                column_type(c)?;
                BoundFilter::IsNull(c.clone())
            }
            Self::IsNotNull(c) => {
                column_type(c)?;
                BoundFilter::IsNotNull(c.clone())
            }
            Self::In {
                column,
                values,
                negated,
            } => BoundFilter::In {
                column: column.clone(),
                literals: values
                    .iter()
                    .map(|v| literal(column, v))
                    .collect::<Result<_>>()?,
                negated: *negated,
            },
            Self::And(all) => BoundFilter::And(
                all.iter()
                    .map(|f| f.bind(schema, table))
                    .collect::<Result<_>>()?,
            ),
            Self::Or(all) => BoundFilter::Or(
                all.iter()
                    .map(|f| f.bind(schema, table))
                    .collect::<Result<_>>()?,
            ),
            Self::Not(f) => BoundFilter::Not(Box::new(f.bind(schema, table)?)),
        })
    }
}

/// A filter checked against a schema for one row at a time (a change feed's rows): column
/// positions and literals of the columns' types.
#[derive(Debug, Clone)]
pub(crate) enum RowFilter {
    Compare(usize, CmpOp, KalamValue),
    IsNull(usize),
    IsNotNull(usize),
    In(usize, Vec<KalamValue>, bool),
    And(Vec<RowFilter>),
    Or(Vec<RowFilter>),
    Not(Box<RowFilter>),
}

impl Filter {
    /// This filter for rows of `schema`, one at a time; errors name the table and column.
    pub(crate) fn for_rows(&self, schema: &SchemaVersion, table: &str) -> Result<RowFilter> {
        let column = |name: &str| {
            schema
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| Error::InvalidQuery {
                    table: table.to_owned(),
                    reason: format!("no column `{name}`"),
                })
        };
        let literal = |at: usize, value: &KalamValue| {
            let c = &schema.columns[at];
            value
                .coerce(c.data_type)
                .ok_or_else(|| Error::InvalidQuery {
                    table: table.to_owned(),
                    reason: format!(
                        "column `{}` is {}, cannot compare with {value:?}",
                        c.name, c.data_type
                    ),
                })
        };
        let all = |fs: &[Filter]| -> Result<Vec<RowFilter>> {
            fs.iter().map(|f| f.for_rows(schema, table)).collect()
        };
        Ok(match self {
            Self::Compare {
                column: c,
                op,
                value,
            } => {
                let at = column(c)?;
                RowFilter::Compare(at, *op, literal(at, value)?)
            }
            Self::IsNull(c) => RowFilter::IsNull(column(c)?),
            Self::IsNotNull(c) => RowFilter::IsNotNull(column(c)?),
            Self::In {
                column: c,
                values,
                negated,
            } => {
                let at = column(c)?;
                let values = values
                    .iter()
                    .map(|v| literal(at, v))
                    .collect::<Result<_>>()?;
                RowFilter::In(at, values, *negated)
            }
            Self::And(fs) => RowFilter::And(all(fs)?),
            Self::Or(fs) => RowFilter::Or(all(fs)?),
            Self::Not(f) => RowFilter::Not(Box::new(f.for_rows(schema, table)?)),
        })
    }
}

impl RowFilter {
    /// Whether `row` matches (NULL, SQL's unknown, does not).
    pub(crate) fn matches(&self, row: &[KalamValue]) -> bool {
        self.eval(row) == Some(true)
    }

    /// SQL's three-valued result: `None` is unknown.
    fn eval(&self, row: &[KalamValue]) -> Option<bool> {
        let value = |at: &usize| row.get(*at).filter(|v| !v.is_null());
        match self {
            Self::Compare(_, _, literal) if literal.is_null() => None,
            Self::Compare(at, op, literal) => {
                let order = value(at)?.total_cmp(literal);
                Some(match op {
                    CmpOp::Eq => order.is_eq(),
                    CmpOp::NotEq => order.is_ne(),
                    CmpOp::Lt => order.is_lt(),
                    CmpOp::LtEq => order.is_le(),
                    CmpOp::Gt => order.is_gt(),
                    CmpOp::GtEq => order.is_ge(),
                })
            }
            Self::IsNull(at) => Some(value(at).is_none()),
            Self::IsNotNull(at) => Some(value(at).is_some()),
            // An empty list matches nothing, NULL included (as the scans' kernels do).
            Self::In(_, values, negated) if values.is_empty() => Some(*negated),
            Self::In(at, values, negated) => {
                let v = value(at)?;
                let hit = values.iter().any(|l| v.total_cmp(l).is_eq());
                // `x IN (..)` without a hit is unknown when a literal is NULL.
                let unknown = !hit && values.iter().any(KalamValue::is_null);
                (!unknown).then_some(hit != *negated)
            }
            Self::And(fs) => fs
                .iter()
                .try_fold(Some(true), |acc, f| match f.eval(row) {
                    Some(false) => Err(()),
                    None => Ok(None),
                    Some(true) => Ok(acc),
                })
                .unwrap_or(Some(false)),
            Self::Or(fs) => fs
                .iter()
                .try_fold(Some(false), |acc, f| match f.eval(row) {
                    Some(true) => Err(()),
                    None => Ok(None),
                    Some(false) => Ok(acc),
                })
                .map_or(Some(true), |r| r),
            Self::Not(f) => f.eval(row).map(|b| !b),
        }
    }
}

/// A filter checked against a schema, ready to evaluate.
#[derive(Debug, Clone)]
pub enum BoundFilter {
    /// `column <op> literal`.
    Compare {
        /// The column.
        column: String,
        /// The operator.
        op: CmpOp,
        /// A one-element array of the column's type.
        literal: ArrayRef,
    },
    /// `column IS NULL`.
    IsNull(String),
    /// `column IS NOT NULL`.
    IsNotNull(String),
    /// `column [NOT] IN (...)`.
    In {
        /// The column.
        column: String,
        /// One-element arrays of the column's type.
        literals: Vec<ArrayRef>,
        /// `NOT IN`.
        negated: bool,
    },
    /// All of these.
    And(Vec<BoundFilter>),
    /// Any of these.
    Or(Vec<BoundFilter>),
    /// Not this.
    Not(Box<BoundFilter>),
}

/// Min/max statistics of one column over `n` units (row groups or pages).
pub struct ColumnStats {
    /// Minimum per unit (NULL: unknown).
    pub mins: ArrayRef,
    /// Maximum per unit (NULL: unknown).
    pub maxes: ArrayRef,
    /// NULL count per unit, when known.
    pub null_counts: Option<UInt64Array>,
    /// Row count per unit, when known.
    pub row_counts: Option<UInt64Array>,
}

fn compare(op: CmpOp, left: &dyn Array, literal: &ArrayRef) -> Result<BooleanArray> {
    let right = Scalar::new(literal.clone());
    let result = match op {
        CmpOp::Eq => cmp::eq(&left, &right),
        CmpOp::NotEq => cmp::neq(&left, &right),
        CmpOp::Lt => cmp::lt(&left, &right),
        CmpOp::LtEq => cmp::lt_eq(&left, &right),
        CmpOp::Gt => cmp::gt(&left, &right),
        CmpOp::GtEq => cmp::gt_eq(&left, &right),
    };
    result.map_err(Error::arrow("comparing a column with a literal"))
}

impl BoundFilter {
    /// The columns the filter reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Compare { column, .. } | Self::In { column, .. } => out.push(column),
            Self::IsNull(c) | Self::IsNotNull(c) => out.push(c),
            Self::And(all) | Self::Or(all) => all.iter().for_each(|f| f.collect_columns(out)),
            Self::Not(f) => f.collect_columns(out),
        }
    }

    /// Evaluates the filter on every row of `batch` (NULL: not selected). Every column the
    /// filter reads must be in the batch.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::InvalidQuery {
                    table: String::new(),
                    reason: format!("column `{name}` missing from a filtered batch"),
                })
        };
        Ok(match self {
            Self::Compare {
                column: c,
                op,
                literal,
            } => compare(*op, column(c)?.as_ref(), literal)?,
            Self::IsNull(c) => is_null(column(c)?.as_ref()).map_err(Error::arrow("IS NULL"))?,
            Self::IsNotNull(c) => {
                is_not_null(column(c)?.as_ref()).map_err(Error::arrow("IS NOT NULL"))?
            }
            Self::In {
                column: c,
                literals,
                negated,
            } => {
                let values = column(c)?;
                let mut any = BooleanArray::from(vec![false; batch.num_rows()]);
                for literal in literals {
                    let hit = compare(CmpOp::Eq, values.as_ref(), literal)?;
                    any = boolean::or_kleene(&any, &hit).map_err(Error::arrow("IN"))?;
                }
                if *negated {
                    boolean::not(&any).map_err(Error::arrow("NOT IN"))?
                } else {
                    any
                }
            }
            Self::And(all) => {
                let mut acc = BooleanArray::from(vec![true; batch.num_rows()]);
                for f in all {
                    acc = boolean::and_kleene(&acc, &f.evaluate(batch)?)
                        .map_err(Error::arrow("AND"))?;
                }
                acc
            }
            Self::Or(all) => {
                let mut acc = BooleanArray::from(vec![false; batch.num_rows()]);
                for f in all {
                    acc = boolean::or_kleene(&acc, &f.evaluate(batch)?)
                        .map_err(Error::arrow("OR"))?;
                }
                acc
            }
            Self::Not(f) => boolean::not(&f.evaluate(batch)?).map_err(Error::arrow("NOT"))?,
        })
    }

    /// For each of `n` units (row groups or pages), whether it may hold a matching row, from
    /// min/max statistics. `stats(column)` returns `None` when a column has none; unknown is
    /// always "may match", so pruning never drops a matching row.
    pub fn may_match(&self, n: usize, stats: &dyn Fn(&str) -> Option<ColumnStats>) -> Vec<bool> {
        let verdict = self.may_match_inner(n, stats);
        (0..n)
            .map(|i| verdict.as_ref().is_none_or(|v| v.is_null(i) || v.value(i)))
            .collect()
    }

    fn may_match_inner(
        &self,
        n: usize,
        stats: &dyn Fn(&str) -> Option<ColumnStats>,
    ) -> Option<BooleanArray> {
        let all_true = || BooleanArray::from(vec![true; n]);
        match self {
            Self::Compare {
                column,
                op,
                literal,
            } => {
                let s = stats(column)?;
                let cmp_on = |side: &ArrayRef, op| compare(op, side.as_ref(), literal).ok();
                match op {
                    CmpOp::Eq => {
                        let lo = cmp_on(&s.mins, CmpOp::LtEq)?;
                        let hi = cmp_on(&s.maxes, CmpOp::GtEq)?;
                        boolean::and_kleene(&lo, &hi).ok()
                    }
                    CmpOp::NotEq => {
                        let lo = cmp_on(&s.mins, CmpOp::Eq)?;
                        let hi = cmp_on(&s.maxes, CmpOp::Eq)?;
                        boolean::not(&boolean::and_kleene(&lo, &hi).ok()?).ok()
                    }
                    CmpOp::Lt | CmpOp::LtEq => cmp_on(&s.mins, *op),
                    CmpOp::Gt | CmpOp::GtEq => cmp_on(&s.maxes, *op),
                }
            }
            Self::IsNull(column) => {
                let counts = stats(column)?.null_counts?;
                Some(counts.iter().map(|c| c.map(|c| c > 0)).collect())
            }
            Self::IsNotNull(column) => {
                let s = stats(column)?;
                let (nulls, rows) = (s.null_counts?, s.row_counts?);
                Some(
                    nulls
                        .iter()
                        .zip(rows.iter())
                        .map(|(n, r)| Some(n? < r?))
                        .collect(),
                )
            }
            Self::In {
                column,
                literals,
                negated: false,
            } => {
                let mut acc = BooleanArray::from(vec![false; n]);
                for literal in literals {
                    let one = Self::Compare {
                        column: column.clone(),
                        op: CmpOp::Eq,
                        literal: literal.clone(),
                    }
                    .may_match_inner(n, stats)
                    .unwrap_or_else(all_true);
                    acc = boolean::or_kleene(&acc, &one).ok()?;
                }
                Some(acc)
            }
            Self::And(all) => {
                let mut acc = all_true();
                for f in all {
                    if let Some(v) = f.may_match_inner(n, stats) {
                        acc = boolean::and_kleene(&acc, &v).ok()?;
                    }
                }
                Some(acc)
            }
            Self::Or(all) => {
                let mut acc = BooleanArray::from(vec![false; n]);
                for f in all {
                    let v = f.may_match_inner(n, stats).unwrap_or_else(all_true);
                    acc = boolean::or_kleene(&acc, &v).ok()?;
                }
                Some(acc)
            }
            Self::In { negated: true, .. } | Self::Not(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::schema::ColumnDefinition;
    use crate::types::KalamDataType;

    fn schema() -> SchemaVersion {
        SchemaVersion {
            version: 1,
            columns: vec![
                ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
                ColumnDefinition::new("body", KalamDataType::Text),
            ],
            created_at_ms: 0,
            change: String::new(),
        }
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("body", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    None,
                    Some("c"),
                    Some("d"),
                ])),
            ],
        )
        .unwrap()
    }

    fn eval(f: Filter) -> Vec<bool> {
        let bound = f.bind(&schema(), "app.t").unwrap();
        let result = bound.evaluate(&batch()).unwrap();
        (0..result.len())
            .map(|i| result.is_valid(i) && result.value(i))
            .collect()
    }

    #[test]
    fn predicates_follow_sql_semantics() {
        use KalamValue as V;
        assert_eq!(
            eval(Filter::eq("id", V::Int(2))),
            [false, true, false, false]
        );
        assert_eq!(
            eval(Filter::cmp("id", CmpOp::GtEq, V::BigInt(3))),
            [false, false, true, true]
        );
        assert_eq!(
            eval(Filter::cmp("body", CmpOp::NotEq, V::Text("a".into()))),
            [false, false, true, true],
            "NULL <> 'a' is not true"
        );
        assert_eq!(
            eval(Filter::IsNull("body".into())),
            [false, true, false, false]
        );
        assert_eq!(
            eval(Filter::In {
                column: "id".into(),
                values: vec![V::BigInt(1), V::BigInt(4)],
                negated: true
            }),
            [false, true, true, false]
        );
        assert_eq!(
            eval(Filter::Or(vec![
                Filter::eq("id", V::BigInt(1)),
                Filter::Not(Box::new(Filter::IsNotNull("body".into())))
            ])),
            [true, true, false, false]
        );
    }

    #[test]
    fn unknown_columns_and_mistyped_literals_are_errors() {
        let err = Filter::eq("nope", KalamValue::Int(1))
            .bind(&schema(), "app.t")
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = Filter::eq("id", KalamValue::Text("x".into()))
            .bind(&schema(), "app.t")
            .unwrap_err();
        assert!(err.to_string().contains("`id`"), "{err}");
    }

    #[test]
    fn statistics_prune_only_units_that_cannot_match() {
        let f = Filter::eq("id", KalamValue::BigInt(15))
            .bind(&schema(), "app.t")
            .unwrap();
        let stats = |c: &str| {
            (c == "id").then(|| ColumnStats {
                mins: Arc::new(Int64Array::from(vec![Some(0), Some(10), None])),
                maxes: Arc::new(Int64Array::from(vec![Some(9), Some(19), None])),
                null_counts: None,
                row_counts: None,
            })
        };
        assert_eq!(f.may_match(3, &stats), [false, true, true]);
        let not = Filter::Not(Box::new(Filter::eq("id", KalamValue::BigInt(15))))
            .bind(&schema(), "app.t")
            .unwrap();
        assert_eq!(not.may_match(3, &stats), [true, true, true]);
    }

    #[test]
    fn bounds_come_from_the_top_level_conjunction() {
        let f = Filter::cmp("id", CmpOp::Gt, KalamValue::BigInt(3))
            .and(Filter::cmp("id", CmpOp::LtEq, KalamValue::BigInt(9)))
            .and(Filter::cmp("id", CmpOp::Gt, KalamValue::BigInt(5)));
        assert_eq!(
            f.bounds_of("id"),
            (
                Bound::Included(KalamValue::BigInt(5)),
                Bound::Included(KalamValue::BigInt(9))
            )
        );
    }

    /// A filter over `id` (BIGINT) and `body` (TEXT) with NULL literals and values in play.
    fn arb_filter() -> impl proptest::strategy::Strategy<Value = Filter> {
        use proptest::prelude::*;
        let op = prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::NotEq),
            Just(CmpOp::Lt),
            Just(CmpOp::LtEq),
            Just(CmpOp::Gt),
            Just(CmpOp::GtEq),
        ];
        let id = prop_oneof![
            4 => (0i64..6).prop_map(KalamValue::BigInt),
            1 => Just(KalamValue::Null),
        ];
        let body = prop_oneof![
            4 => "[ab]{0,2}".prop_map(KalamValue::Text),
            1 => Just(KalamValue::Null),
        ];
        let column = prop_oneof![Just("id"), Just("body")];
        let leaf = prop_oneof![
            (op.clone(), id.clone()).prop_map(|(op, v)| Filter::cmp("id", op, v)),
            (op, body.clone()).prop_map(|(op, v)| Filter::cmp("body", op, v)),
            column.clone().prop_map(|c| Filter::IsNull(c.into())),
            column.prop_map(|c| Filter::IsNotNull(c.into())),
            (proptest::collection::vec(id, 0..3), any::<bool>()).prop_map(|(values, negated)| {
                Filter::In {
                    column: "id".into(),
                    values,
                    negated,
                }
            }),
            (proptest::collection::vec(body, 0..3), any::<bool>()).prop_map(|(values, negated)| {
                Filter::In {
                    column: "body".into(),
                    values,
                    negated,
                }
            }),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..3).prop_map(Filter::And),
                proptest::collection::vec(inner.clone(), 1..3).prop_map(Filter::Or),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    proptest::proptest! {
        /// The row evaluator of change feeds agrees with the batch evaluator of scans on every
        /// row, NULLs included.
        #[test]
        fn rows_and_batches_are_filtered_alike(
            filter in arb_filter(),
            rows in proptest::collection::vec(
                (proptest::option::of(0i64..6), proptest::option::of("[ab]{0,2}")),
                1..8,
            ),
        ) {
            let arrow_schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("body", DataType::Utf8, true),
            ]));
            let batch = RecordBatch::try_new(
                arrow_schema,
                vec![
                    Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                    Arc::new(StringArray::from(
                        rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
                    )),
                ],
            )
            .unwrap();
            let Ok(bound) = filter.bind(&schema(), "t") else {
                return Ok(());
            };
            let by_batch = bound.evaluate(&batch).unwrap();
            let by_row = filter.for_rows(&schema(), "t").unwrap();
            for (i, (id, body)) in rows.iter().enumerate() {
                let row = [
                    id.map_or(KalamValue::Null, KalamValue::BigInt),
                    body.clone().map_or(KalamValue::Null, KalamValue::Text),
                ];
                let batch_says = by_batch.is_valid(i) && by_batch.value(i);
                proptest::prop_assert_eq!(by_row.matches(&row), batch_says, "{} on {:?}", filter, row);
            }
        }
    }
}
