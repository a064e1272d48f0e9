//! Schema mapping of one file: how the current columns map onto the file's (by column id:
//! renamed, widened, added since the file was written), and decoded batches turned into a
//! read's output: columns adapted, the filter applied where the decoder could not, key bounds
//! applied, projected.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, new_null_array};
use arrow::compute::kernels::boolean;
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use super::plan::FilePlan;
use crate::codec::{SEQ_COLUMN, UPDATED_COLUMN, array_from_values};
use crate::error::{Error, Result};
use crate::format::{KEY_COLUMN, key_column, key_mask, project};
use crate::schema::ColumnDefinition;

/// How the plan's current columns map onto one file's columns.
pub(super) struct FileColumns {
    /// Current columns the read decodes: the output columns and those the filter reads.
    pub(super) needed: Vec<ColumnDefinition>,
    /// For each needed column, its name in the file (`None`: the file predates it).
    pub(super) sources: Vec<Option<String>>,
    /// Parquet leaf indices to decode.
    pub(super) indices: Vec<usize>,
    /// Current columns the file holds under that name and in that type.
    unchanged: Vec<String>,
    /// Whether the filter runs inside the decoder (the file has every column it reads,
    /// unchanged) rather than on adapted batches.
    pub(super) pushed: bool,
}

impl FileColumns {
    pub(super) fn new(plan: &FilePlan, schema_version: u32, footer: &ArrowReaderMetadata) -> Self {
        let file_schema = footer.schema();
        // Current columns map to the file's by id: the file may predate a rename, a widening,
        // an added or a dropped-and-re-added column.
        let file_version = plan.def.version(schema_version);
        let source = |c: &ColumnDefinition| -> Option<String> {
            match file_version {
                Some(v) => v.column_by_id(c.id).map(|o| o.name.clone()),
                None => Some(c.name.clone()),
            }
        };
        let unchanged: Vec<String> = plan
            .def
            .columns()
            .iter()
            .filter(|c| {
                source(c).as_deref() == Some(c.name.as_str())
                    && file_schema
                        .field_with_name(&c.name)
                        .is_ok_and(|f| f.data_type() == &c.data_type.to_arrow())
            })
            .map(|c| c.name.clone())
            .collect();
        let filter_columns: Vec<&str> = plan
            .filter
            .as_ref()
            .map(|f| f.columns())
            .unwrap_or_default();
        let needed: Vec<ColumnDefinition> = plan
            .def
            .columns()
            .iter()
            .filter(|c| {
                plan.columns.iter().any(|o| o.name == c.name)
                    || filter_columns.contains(&c.name.as_str())
            })
            .cloned()
            .collect();
        let sources: Vec<Option<String>> = needed.iter().map(source).collect();
        let mut wanted: Vec<&str> = sources.iter().flatten().map(String::as_str).collect();
        if plan.with_system {
            wanted.extend([SEQ_COLUMN, UPDATED_COLUMN]);
        }
        if plan.needs_key() {
            wanted.push(KEY_COLUMN);
        }
        let indices = wanted
            .iter()
            .filter_map(|name| file_schema.index_of(name).ok())
            .collect();
        let pushed = filter_columns
            .iter()
            .all(|name| unchanged.iter().any(|u| u == name));
        Self {
            needed,
            sources,
            indices,
            unchanged,
            pushed,
        }
    }

    /// Whether the file holds the current column `name` under that name and in its type.
    pub(super) fn is_unchanged(&self, name: &str) -> bool {
        self.unchanged.iter().any(|u| u == name)
    }
}

/// Turns decoded batches into the plan's output: adapted to the current schema, filtered
/// where the decoder could not, key bounds applied, projected.
pub(super) struct Finisher {
    pub(super) plan: FilePlan,
    pub(super) columns: Arc<FileColumns>,
    pub(super) schema: SchemaRef,
    pub(super) what: String,
}

impl Finisher {
    pub(super) fn batch(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let adapted = adapt(&batch, &self.columns, &self.plan, &self.what)?;
        let mut mask: Option<BooleanArray> = None;
        let mut and = |m: BooleanArray| -> Result<()> {
            mask = Some(match mask.take() {
                None => m,
                Some(prev) => boolean::and_kleene(&prev, &m).map_err(Error::arrow("masking"))?,
            });
            Ok(())
        };
        if !self.columns.pushed
            && let Some(filter) = &self.plan.filter
        {
            and(filter.evaluate(&adapted)?)?;
        }
        if self.plan.needs_key() {
            and(key_mask(
                key_column(&adapted, &self.what)?,
                &self.plan.keys,
            )?)?;
        }
        let filtered = match mask {
            Some(m) => filter_record_batch(&adapted, &m).map_err(Error::arrow("filtering"))?,
            None => adapted,
        };
        project(&filtered, &self.schema)
    }
}

/// Builds a batch with the needed columns under their current names and types (read from the
/// file's column, cast from an older type, or filled with the default / NULL when the file
/// predates them), plus system and key columns.
fn adapt(
    batch: &RecordBatch,
    columns: &FileColumns,
    plan: &FilePlan,
    what: &str,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (c, source) in columns.needed.iter().zip(&columns.sources) {
        let field = c.arrow_field();
        let target = field.data_type().clone();
        let array = match source.as_deref().and_then(|s| batch.column_by_name(s)) {
            Some(a) if a.data_type() == &target => a.clone(),
            Some(a) => cast(a, &target).map_err(Error::arrow("casting an old column"))?,
            None => fill(c, rows)?,
        };
        fields.push(field.with_nullable(true));
        arrays.push(array);
    }
    let mut take = |name: &str, data_type: DataType| -> Result<()> {
        let array = batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::Corrupt {
                what: what.to_owned(),
                reason: format!("column `{name}` missing"),
            })?;
        fields.push(Field::new(name, data_type, false));
        arrays.push(array);
        Ok(())
    };
    if plan.with_system {
        take(SEQ_COLUMN, DataType::Int64)?;
        take(UPDATED_COLUMN, DataType::Int64)?;
    }
    if plan.needs_key() {
        take(KEY_COLUMN, DataType::Binary)?;
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(Error::arrow("adapting a batch to the current schema"))
}

/// A column that a file predates: its default, or NULL.
fn fill(c: &ColumnDefinition, rows: usize) -> Result<ArrayRef> {
    match &c.default {
        Some(v) if !v.is_null() => array_from_values(&c.name, c.data_type, &vec![v.clone(); rows]),
        _ => Ok(new_null_array(&c.data_type.to_arrow(), rows)),
    }
}
