//! What a statement's chunks are staged from: its plans (one per key, or a row index per key
//! of its batch), and the new values of a by-key update batch.

use arrow::record_batch::RecordBatch;

use super::Planned;
use crate::codec::KalamValue;
use crate::error::Result;
use crate::schema::TableDefinition;
use crate::table::TableHandle;

/// A statement's plans, one per key, in the order of its keys.
pub(super) enum Plans<'b> {
    /// Mutations, each resolved on its own.
    Each(Vec<Planned>),
    /// Rows of the statement's batch (`rows[k]` for key `k`), all with one change: four
    /// bytes per key, each row read when its chunk is staged.
    Rows {
        rows: Vec<u32>,
        source: RowSource<'b>,
    },
}

/// What each row of a batch statement does, with what it reads the row from.
pub(super) enum RowSource<'b> {
    /// Inserts the row (every table column, in table order).
    Insert(&'b RecordBatch),
    /// Inserts or replaces the row.
    Upsert(&'b RecordBatch),
    /// Sets columns of the key's row to the row's values.
    Update(KeyedValues<'b>),
    /// Deletes the key's row.
    Delete,
}

impl<'b> Plans<'b> {
    /// One plan per row `0..n` of a batch, each made from `source`.
    pub(super) fn rows(n: usize, source: RowSource<'b>, table: &TableDefinition) -> Result<Self> {
        let n = u32::try_from(n).map_err(|_| crate::error::Error::InvalidQuery {
            table: table.id.to_string(),
            reason: format!("a statement of {n} rows (at most {} at once)", u32::MAX),
        })?;
        Ok(Self::Rows {
            rows: (0..n).collect(),
            source,
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
            Self::Rows { rows, source } => {
                let mut pairs: Vec<(&[u8], u32)> = asked.into_iter().zip(rows).collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let (asked, rows) = pairs.into_iter().unzip();
                (asked, Self::Rows { rows, source })
            }
        }
    }

    /// The plans of the next `n` keys, `done` of them already taken; batch rows are read
    /// (and checked like named rows) here.
    pub(super) fn next_chunk(
        &mut self,
        table: &TableHandle,
        def: &TableDefinition,
        done: usize,
        n: usize,
    ) -> Result<Vec<Planned>> {
        let (rows, source) = match self {
            Self::Each(plans) => return Ok(plans.drain(..n.min(plans.len())).collect()),
            Self::Rows { rows, source } => (rows, source),
        };
        rows.iter()
            .skip(done)
            .take(n)
            .map(|r| {
                let r = *r as usize;
                Ok(match source {
                    RowSource::Insert(batch) => {
                        Planned::Insert(table.row_at(def, batch.columns(), r)?)
                    }
                    RowSource::Upsert(batch) => {
                        Planned::Upsert(table.row_at(def, batch.columns(), r)?)
                    }
                    RowSource::Update(values) => Planned::Update(values.at(r)?),
                    RowSource::Delete => Planned::Delete,
                })
            })
            .collect()
    }
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
