//! A table's hot rows decoded into arrow columns (with their keys and write times; tombstones
//! are left out), and the cache that keeps them decoded while no commit changes them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, BinaryBuilder, BooleanArray, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::{TableHandle, upgrade_row};
use crate::codec::{BatchDecoder, Row, UPDATED_COLUMN, read_header, read_system_columns};
use crate::error::{Error, Result};
use crate::format::{KEY_COLUMN, split_hot_key};
use crate::ids::KeyScope;
use crate::schema::TableDefinition;

/// Decoded hot rows of the scopes last read, valid for one hot version and schema version of
/// the table (any commit that changes hot entries moves the version, and the next read that
/// misses drops what was kept), so a read decodes the hot rows only after they changed.
#[derive(Default)]
pub(crate) struct HotCache {
    /// Hot version and schema version the rows are current for.
    at: (u64, u32),
    scopes: HashMap<KeyScope, Arc<HotRows>>,
}

impl HotCache {
    /// The decoded hot rows of `scope`, if kept for `version` (hot, schema).
    pub(crate) fn get(&self, scope: &KeyScope, version: (u64, u32)) -> Option<Arc<HotRows>> {
        (self.at == version)
            .then(|| self.scopes.get(scope).cloned())
            .flatten()
    }

    /// Keeps the decoded hot rows of `scope`, current at `version`.
    pub(crate) fn keep(&mut self, scope: KeyScope, version: (u64, u32), rows: Arc<HotRows>) {
        if self.at != version {
            self.scopes.clear();
            self.at = version;
        }
        self.scopes.insert(scope, rows);
    }

    /// Drops every kept scope: a statement about to change hot entries makes them stale, and
    /// holding them through it would add the last read's decoded rows to its memory.
    pub(crate) fn forget(&mut self) {
        self.scopes = HashMap::new();
    }
}

/// Hot rows decoded (tombstones left out, see [`HotDecoder::push`]): a batch of the current
/// user columns, then `_seq`, `_updated`, `_deleted` and `_key` (the encoded primary key after
/// the scope prefix), every column nullable.
pub(crate) struct HotRows {
    /// The decoded rows.
    pub(crate) batch: RecordBatch,
    /// Their encoded primary keys, in key order.
    pub(crate) keys: BinaryArray,
    /// When each was written, ns since the epoch.
    pub(crate) updated: Int64Array,
}

impl HotRows {
    /// Assembles the hot rows from a finished decoder's batch (user and system columns) and
    /// their keys.
    fn assemble(table: &TableHandle, decoded: RecordBatch, keys: BinaryArray) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            what: format!("hot rows of table {}", table.id),
            reason,
        };
        let column = |name: &str| {
            decoded
                .column_by_name(name)
                .ok_or_else(|| corrupt(format!("decoded without `{name}`")))
        };
        let Some(updated) = column(UPDATED_COLUMN)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
        else {
            return Err(corrupt(format!("`{UPDATED_COLUMN}` of the wrong type")));
        };
        let mut fields: Vec<Field> = decoded
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(KEY_COLUMN, DataType::Binary, false));
        let mut columns = decoded.columns().to_vec();
        columns.push(Arc::new(keys.clone()));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(Error::arrow("adding keys to hot rows"))?;
        Ok(Self {
            batch,
            keys,
            updated,
        })
    }

    /// Which rows are live: not past a STREAM table's TTL.
    pub(crate) fn alive(&self, table: &TableHandle) -> BooleanArray {
        let cutoff = table.expiry_cutoff();
        (0..self.batch.num_rows())
            .map(|i| Some(cutoff.is_none_or(|c| self.updated.value(i) >= c)))
            .collect()
    }
}

/// Decodes a scope's hot entries into [`HotRows`] as a read visits them, a chunk at a time:
/// straight into the columns (sized by the scope's entry count), so neither the entries as
/// the engine returned them nor partial batches are held alongside the result.
pub(crate) struct HotDecoder<'t> {
    table: &'t TableHandle,
    def: Arc<TableDefinition>,
    rows: BatchDecoder,
    keys: BinaryBuilder,
}

impl<'t> HotDecoder<'t> {
    /// A decoder for about `capacity` entries of `table`, of the user columns `keep` marks
    /// (all when `None`; the others come out all NULL, typed `Null`).
    pub(crate) fn new(
        table: &'t TableHandle,
        capacity: usize,
        keep: Option<&[bool]>,
    ) -> Result<Self> {
        let def = table.definition();
        let schema = def.arrow_schema(false);
        let nullable = Arc::new(Schema::new_with_metadata(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        ));
        Ok(Self {
            table,
            rows: BatchDecoder::projected(
                &nullable,
                true,
                capacity,
                capacity.saturating_mul(16),
                keep,
            )?,
            keys: BinaryBuilder::with_capacity(capacity, capacity.saturating_mul(8)),
            def,
        })
    }

    /// Decodes one entry (its full hot key and value); entries come in key order. Tombstones
    /// are left out: the flushed rows they delete are already hidden in their files (the
    /// write recorded their positions), so a read has nothing to take from them, and a large
    /// DELETE left hot would otherwise be decoded by every read.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let system = read_system_columns(value).map_err(|e| Error::decode("hot row", e))?;
        if system.deleted {
            return Ok(());
        }
        let current = self.def.schema.version;
        match read_header(value).map_or(true, |h| h.schema_version != current) {
            true => self.rows.push(&upgrade_hot_row(&self.def, value)?)?,
            false => self.rows.push(value)?,
        }
        self.keys
            .append_value(split_hot_key(self.def.table_type, key).1);
        Ok(())
    }

    /// The decoded rows, `None` when no entry was pushed.
    pub(crate) fn finish(mut self) -> Result<Option<HotRows>> {
        let mut keys = self.keys.finish();
        if keys.is_empty() {
            return Ok(None);
        }
        keys.shrink_to_fit();
        let decoded = self.rows.finish()?;
        HotRows::assemble(self.table, decoded, keys).map(Some)
    }
}

/// A hot row written in an older schema version, re-encoded in `def`'s current one (added
/// columns filled, dropped ones gone).
pub(crate) fn upgrade_hot_row(def: &TableDefinition, bytes: &[u8]) -> Result<Vec<u8>> {
    let row = Row::decode(bytes).map_err(|e| Error::decode("hot row", e))?;
    let system = row.system;
    let values = upgrade_row(def, row)?;
    Ok(Row {
        schema_version: def.schema.version,
        values,
        system,
    }
    .encode())
}
