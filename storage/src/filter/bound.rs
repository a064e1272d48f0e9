//! [`BoundFilter`]: a filter bound to a schema, evaluated on record batches with arrow
//! compute kernels and against per-unit statistics (row groups, pages) to prune them.

use arrow::array::{Array, ArrayRef, BooleanArray, Scalar, UInt64Array};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{is_not_null, is_null};
use arrow::record_batch::RecordBatch;

use super::CmpOp;
use crate::error::{Error, Result};

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
