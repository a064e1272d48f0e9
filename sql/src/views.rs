//! The provider's types: a table's schema with text and binary columns as view types, and the
//! core's batches (hot rows, looked-up rows) converted to it.

use std::sync::Arc;

use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::Result as DfResult;
use kalamstore_storage::USER_COLUMN;

/// The provider's view of a table's schema: the storage's arrow types with text and binary
/// columns as their view types (`Utf8View`, `BinaryView`), the types DataFusion reads
/// Parquet strings as and computes on fastest.
pub(crate) fn view_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 if f.name() != USER_COLUMN => {
                f.as_ref().clone().with_data_type(DataType::Utf8View)
            }
            DataType::Binary => f.as_ref().clone().with_data_type(DataType::BinaryView),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch`'s columns cast to `schema`'s types (the storage's types to the view types).
pub(crate) fn to_schema(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| match c.data_type() == f.data_type() {
            true => Ok(c.clone()),
            false => cast(c, f.data_type()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `batch`'s columns named by `schema`'s fields, in its order and types.
pub(crate) fn by_name(batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch.column_by_name(f.name()).ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!(
                    "hot rows without column {}",
                    f.name()
                ))
            })?;
            match c.data_type() == f.data_type() {
                true => Ok(c.clone()),
                false => Ok(cast(c, f.data_type())?),
            }
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}
