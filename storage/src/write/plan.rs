//! What a statement's chunks are staged from: its plans (one per key, or a row index per key
//! of its batch), and the new values of a by-key update batch.

use super::Planned;
use crate::codec::KalamValue;
use crate::error::Result;
use crate::schema::TableDefinition;

/// A statement's plans, one per key, in the order of its keys.
pub(super) enum Plans {
    /// Mutations, each resolved on its own.
    Each(Vec<Planned>),
    /// Rows of the statement's batch (`rows[k]` for key `k`), all with one change: four
    /// bytes per key, not a plan each.
    Rows {
        rows: Vec<u32>,
        change: fn(usize) -> Planned,
    },
}

impl Plans {
    /// One plan per row `0..n` of a batch, each made by `change`.
    pub(super) fn rows(
        n: usize,
        change: fn(usize) -> Planned,
        table: &TableDefinition,
    ) -> Result<Self> {
        let n = u32::try_from(n).map_err(|_| crate::error::Error::InvalidQuery {
            table: table.id.to_string(),
            reason: format!("a statement of {n} rows (at most {} at once)", u32::MAX),
        })?;
        Ok(Self::Rows {
            rows: (0..n).collect(),
            change,
        })
    }

    /// Puts the plans in the order of their keys (`asked`, sorted with them).
    pub(super) fn sort_by_key(self, asked: Vec<&[u8]>) -> (Vec<&[u8]>, Self) {
        match self {
            Self::Each(plans) => {
                let mut pairs: Vec<(&[u8], Planned)> = asked.into_iter().zip(plans).collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let (asked, plans) = pairs.into_iter().unzip();
                (asked, Self::Each(plans))
            }
            Self::Rows { rows, change } => {
                let mut pairs: Vec<(&[u8], u32)> = asked.into_iter().zip(rows).collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let (asked, rows) = pairs.into_iter().unzip();
                (asked, Self::Rows { rows, change })
            }
        }
    }

    /// The plans of the next `n` keys, `done` of them already taken.
    pub(super) fn next_chunk(&mut self, done: usize, n: usize) -> Vec<Planned> {
        match self {
            Self::Each(plans) => plans.drain(..n.min(plans.len())).collect(),
            Self::Rows { rows, change } => rows
                .iter()
                .skip(done)
                .take(n)
                .map(|r| change(*r as usize))
                .collect(),
        }
    }
}

/// What every chunk of a statement is staged with.
pub(super) struct Statement<'b> {
    /// Whether some key is written twice (then the statement is one chunk).
    pub(super) repeated: bool,
    /// The new values of a [`Keyed::Update`](super::Keyed::Update) batch.
    pub(super) values_of: Option<KeyedValues<'b>>,
    /// The rows of a [`Rows::Batch`](super::Rows::Batch) batch.
    pub(super) rows_of: Option<&'b arrow::record_batch::RecordBatch>,
}

/// The new values of a [`Keyed::Update`](super::Keyed::Update) batch: the columns after its key columns, each with
/// the table column it sets.
pub(super) struct KeyedValues<'b> {
    columns: Vec<(
        &'b String,
        crate::types::KalamDataType,
        &'b arrow::array::ArrayRef,
    )>,
}

impl<'b> KeyedValues<'b> {
    pub(super) fn new(
        def: &TableDefinition,
        batch: &'b arrow::record_batch::RecordBatch,
        set: &'b [String],
    ) -> Result<Self> {
        let first = def.primary_key().count();
        let mut columns = Vec::with_capacity(set.len());
        for (name, array) in set.iter().zip(batch.columns().iter().skip(first)) {
            let column =
                def.schema
                    .column(name)
                    .ok_or_else(|| crate::error::Error::InvalidValue {
                        column: name.clone(),
                        reason: format!("table {} has no such column", def.id),
                    })?;
            columns.push((name, column.data_type, array));
        }
        Ok(Self { columns })
    }

    /// The named values of row `row`.
    pub(super) fn at(&self, row: usize) -> Result<Vec<(String, KalamValue)>> {
        self.columns
            .iter()
            .map(|(name, data_type, array)| {
                let value = crate::codec::value_at(array.as_ref(), *data_type, row)?;
                Ok(((*name).clone(), value))
            })
            .collect()
    }
}
