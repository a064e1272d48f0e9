//! What a read of a table's files asks for: columns, system columns, `_key`, filter, key
//! bounds, limit, positions.

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::filter::BoundFilter;
use crate::format::{KeyBounds, is_unbounded, output_schema};
use crate::schema::{ColumnDefinition, TableDefinition};

/// What to read from a table's files.
#[derive(Debug, Clone)]
pub(crate) struct FilePlan {
    /// The table's current definition (the filter's columns, the schema history).
    pub(crate) def: Arc<TableDefinition>,
    /// User columns to return, in the current schema.
    pub(crate) columns: Vec<ColumnDefinition>,
    /// Also return `_seq` and `_updated`.
    pub(crate) with_system: bool,
    /// Also return `_key`.
    pub(crate) with_key: bool,
    /// Rows must match this.
    pub(crate) filter: Option<BoundFilter>,
    /// Rows must have keys within these bounds.
    pub(crate) keys: KeyBounds,
    /// Stop after this many rows.
    pub(crate) limit: Option<usize>,
    /// Only rows at these positions of the file (a point read that found its row by the
    /// file's `_key` page directory); row groups are then not pruned by statistics.
    pub(crate) positions: Option<Range<u64>>,
}

impl FilePlan {
    /// Every current column of every row, with `_key` when `with_key` (and the system columns
    /// when `with_system`).
    pub(crate) fn all(def: Arc<TableDefinition>, with_system: bool, with_key: bool) -> Self {
        Self {
            columns: def.columns().to_vec(),
            def,
            with_system,
            with_key,
            filter: None,
            keys: crate::format::ALL_KEYS,
            limit: None,
            positions: None,
        }
    }

    /// The schema of the batches a read returns.
    pub(crate) fn output_schema(&self) -> SchemaRef {
        output_schema(&self.columns, self.with_system, self.with_key)
    }

    /// Whether the read must decode `_key` (asked for, or bounded).
    pub(super) fn needs_key(&self) -> bool {
        self.with_key || !is_unbounded(&self.keys)
    }
}
