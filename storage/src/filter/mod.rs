//! Row filters: the predicates a scan pushes into files, row groups and the hot tier. A
//! [`Filter`] names columns and literals; bound to a schema it is evaluated on batches with
//! arrow compute kernels and against statistics ([`BoundFilter`], `bound.rs`), or row by row
//! for the change feed ([`RowFilter`], `row.rs`).

mod bound;
mod row;

use std::ops::Bound;

use arrow::array::ArrayRef;

use crate::codec::{KalamValue, array_from_values};
use crate::error::{Error, Result};
use crate::schema::SchemaVersion;

pub(crate) use bound::{BoundFilter, ColumnStats};
pub(crate) use row::RowFilter;

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

#[cfg(test)]
mod tests;
