//! What a statement's chunks are staged from: its keys, its plans (one per key, or a row index
//! per key of its batch), and the new values of a by-key update batch.

use std::borrow::Cow;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::record_batch::RecordBatch;

use super::{NewRow, Planned};
use crate::codec::{EncodedRows, KalamValue, SystemColumns, encode_arrays};
use crate::error::Result;
use crate::schema::TableDefinition;
use crate::types::KalamDataType;

/// A statement's plans, one per key, in the order of its keys.
pub(super) enum Plans<'b> {
    /// Mutations, each resolved on its own; the new rows of their inserts and upserts,
    /// encoded (`NewRow::Encoded(k)` is row `k` of the statement's).
    Each(Vec<Planned>, EncodedRows),
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
    Insert(BatchRows),
    /// Inserts or replaces the row.
    Upsert(BatchRows),
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
            Self::Each(plans, encoded) => {
                let mut pairs: Vec<(&[u8], Planned)> = asked.into_iter().zip(plans).collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let (asked, plans) = pairs.into_iter().unzip();
                (asked, Self::Each(plans, encoded))
            }
            Self::Rows { rows, source } => {
                let mut pairs: Vec<(&[u8], u32)> = asked.into_iter().zip(rows).collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let (asked, rows) = pairs.into_iter().unzip();
                (asked, Self::Rows { rows, source })
            }
        }
    }

    /// The plans of the next `n` keys, `done` of them already taken, and the encoded rows
    /// their new rows point into (the statement's, or a batch chunk's encoded here, a column
    /// at a time).
    pub(super) fn next_chunk(
        &mut self,
        done: usize,
        n: usize,
    ) -> Result<(Vec<Planned>, Cow<'_, EncodedRows>)> {
        let (rows, source) = match self {
            Self::Each(plans, encoded) => {
                let plans = match n >= plans.len() {
                    // The last (mostly the only) chunk takes the list itself.
                    true => std::mem::take(plans),
                    false => plans.drain(..n).collect(),
                };
                return Ok((plans, Cow::Borrowed(encoded)));
            }
            Self::Rows { rows, source } => (rows, source),
        };
        let chunk = &rows[done.min(rows.len())..(done + n).min(rows.len())];
        let (full, upsert) = match source {
            RowSource::Insert(full) => (full, false),
            RowSource::Upsert(full) => (full, true),
            RowSource::Update(values) => {
                let plans = chunk
                    .iter()
                    .map(|r| Ok(Planned::Update(values.at(*r as usize)?)))
                    .collect::<Result<_>>()?;
                return Ok((plans, Cow::Owned(EncodedRows::default())));
            }
            RowSource::Delete => {
                return Ok((
                    chunk.iter().map(|_| Planned::Delete).collect(),
                    Cow::Owned(EncodedRows::default()),
                ));
            }
        };
        let encoded = full.encode(chunk)?;
        let plans = (0..chunk.len())
            .map(|at| {
                let row = NewRow::Encoded(at);
                if upsert {
                    Planned::Upsert(row)
                } else {
                    Planned::Insert(row)
                }
            })
            .collect();
        Ok((plans, Cow::Owned(encoded)))
    }
}

/// The full rows of a batch statement: its columns, checked once for every row
/// ([`batch_columns`](super::rows::batch_columns)), encoded a chunk at a time.
pub(super) struct BatchRows {
    arrays: Vec<ArrayRef>,
    types: Vec<KalamDataType>,
    schema_version: u32,
}

impl BatchRows {
    pub(super) fn new(def: &TableDefinition, batch: &RecordBatch) -> Result<Self> {
        Ok(Self {
            arrays: super::rows::batch_columns(def, batch)?,
            types: def.columns().iter().map(|c| c.data_type).collect(),
            schema_version: def.schema.version,
        })
    }

    /// The checked columns, one per table column.
    pub(super) fn arrays(&self) -> &[ArrayRef] {
        &self.arrays
    }

    /// Encodes the rows `rows` (indices into the batch), in that order, with placeholder
    /// system columns (the commit writes each row's own).
    fn encode(&self, rows: &[u32]) -> Result<EncodedRows> {
        let Some(&first) = rows.first() else {
            return Ok(EncodedRows::default());
        };
        // Statements in key order come as runs of consecutive rows: those are slices.
        let consecutive = rows.windows(2).all(|w| w[1] == w[0] + 1);
        let arrays = if consecutive {
            self.arrays
                .iter()
                .map(|a| a.slice(first as usize, rows.len()))
                .collect::<Vec<_>>()
        } else {
            let indices = UInt32Array::from(rows.to_vec());
            self.arrays
                .iter()
                .map(|a| arrow::compute::take(a.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(crate::error::Error::arrow(
                    "gathering a chunk of a statement's rows",
                ))?
        };
        let system = vec![SystemColumns::default(); rows.len()];
        Ok(encode_arrays(
            &arrays,
            &self.types,
            self.schema_version,
            &system,
        ))
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

/// The hot keys of a batch's mutations (scope prefix + primary key), back to back in one
/// buffer, in mutation order.
pub(super) struct BatchKeys {
    pub(super) bytes: Vec<u8>,
    pub(super) ends: Vec<usize>,
    pub(super) prefix_len: usize,
}

impl BatchKeys {
    /// No key yet; room for `n` keys behind a scope prefix of `prefix_len` bytes.
    pub(super) fn with_capacity(prefix_len: usize, n: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(n * (prefix_len + 16)),
            ends: Vec::with_capacity(n),
            prefix_len,
        }
    }

    /// Whether some key appears more than once (asked of keys not in increasing order: those
    /// are distinct, see [`in_order`](Self::in_order)).
    pub(super) fn repeated(asked: &[&[u8]]) -> bool {
        let mut sorted = asked.to_vec();
        sorted.sort_unstable();
        sorted.windows(2).any(|w| w[0] == w[1])
    }

    /// Every hot key, in mutation order.
    pub(super) fn all(&self) -> Vec<&[u8]> {
        self.range(0, self.ends.len())
    }

    /// How many keys.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The `len` keys from the `start`th, in mutation order.
    pub(super) fn range(&self, start: usize, len: usize) -> Vec<&[u8]> {
        let mut out = Vec::with_capacity(len);
        let mut from = match start {
            0 => 0,
            _ => self.ends[start - 1],
        };
        for end in &self.ends[start..start + len] {
            out.push(&self.bytes[from..*end]);
            from = *end;
        }
        out
    }

    /// Whether the keys increase strictly, mutation by mutation.
    pub(super) fn in_order(&self) -> bool {
        let mut previous: Option<&[u8]> = None;
        let mut from = 0;
        for end in &self.ends {
            let key = &self.bytes[from..*end];
            if previous.is_some_and(|p| p >= key) {
                return false;
            }
            previous = Some(key);
            from = *end;
        }
        true
    }
}
