//! [`RowFilter`]: a filter bound to a schema's column positions, checked one row at a time
//! (the change feed's rows), with SQL's three-valued logic.

use super::{CmpOp, Filter};
use crate::codec::KalamValue;
use crate::error::{Error, Result};
use crate::schema::SchemaVersion;

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
