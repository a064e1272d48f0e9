//! `COPY` to and from files: text or CSV lines, Apache Parquet, JSON lines. Files are read as
//! they go and written as rows come, in atomic batches of [`BATCH_ROWS`] rows: a bad record
//! fails its batch naming its line or row (earlier batches stay written).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use kalamstore::TableDefinition;
use kalamstore_server::copy::{BATCH_ROWS, CopyFormat, RecordReader};
use kalamstore_sql::SqlSession;
use kalamstore_sql::datafusion::execution::SendableRecordBatchStream;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{CliError, invalid};
use crate::parse::FileFormat;

fn io(op: &str, path: &str) -> impl FnOnce(std::io::Error) -> CliError {
    let op = format!("{op} {path}");
    move |source| CliError::Io { op, source }
}

/// `COPY table [(columns)] FROM 'path'`: the rows of the file inserted into `def` as
/// `session`'s principal; how many.
pub(crate) async fn copy_from(
    session: &SqlSession,
    def: &TableDefinition,
    columns: &[String],
    path: &str,
    format: FileFormat,
) -> Result<u64, CliError> {
    let file = File::open(path).map_err(io("opening", path))?;
    let table = def.id.to_string();
    match format {
        FileFormat::Delimited(format) => {
            delimited_from(session, &table, columns, path, file, format).await
        }
        FileFormat::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
                .map_err(|e| invalid(format!("{path}: not a Parquet file we can read: {e}")))?;
            let mut inserted = 0;
            let mut row = 1;
            for batch in reader {
                let batch = batch.map_err(|e| invalid(format!("{path}: after row {row}: {e}")))?;
                let batch = pick(batch, columns, path)?;
                inserted += session.insert_batch(&table, &batch, row).await?;
                row += batch.num_rows() as u64;
            }
            Ok(inserted)
        }
        FileFormat::Json => {
            // Each line's fields by the table's column names and types; other fields are
            // ignored.
            let fields: Vec<Field> = def
                .columns()
                .iter()
                .filter(|c| columns.is_empty() || columns.contains(&c.name))
                .map(|c| Field::new(&c.name, c.data_type.to_arrow(), true))
                .collect();
            if let Some(missing) = columns
                .iter()
                .find(|name| !fields.iter().any(|f| f.name() == *name))
            {
                return Err(invalid(format!("table {table} has no column `{missing}`")));
            }
            let reader = arrow::json::ReaderBuilder::new(Arc::new(Schema::new(fields)))
                .with_batch_size(BATCH_ROWS)
                .build(BufReader::new(file))
                .map_err(|e| invalid(format!("{path}: {e}")))?;
            let mut inserted = 0;
            let mut line = 1;
            for batch in reader {
                let batch =
                    batch.map_err(|e| invalid(format!("{path}: at or after line {line}: {e}")))?;
                inserted += session.insert_batch(&table, &batch, line).await?;
                line += batch.num_rows() as u64;
            }
            Ok(inserted)
        }
    }
}

/// The columns of a file's `batch` that COPY names (all of them when none).
fn pick(batch: RecordBatch, columns: &[String], path: &str) -> Result<RecordBatch, CliError> {
    if columns.is_empty() {
        return Ok(batch);
    }
    let schema = batch.schema();
    let indices = columns
        .iter()
        .map(|c| {
            schema
                .index_of(c)
                .map_err(|_| invalid(format!("{path} has no column `{c}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    batch
        .project(&indices)
        .map_err(|e| invalid(format!("{path}: {e}")))
}

/// Text or CSV lines, split into records as the bytes are read.
async fn delimited_from(
    session: &SqlSession,
    table: &str,
    columns: &[String],
    path: &str,
    mut file: File,
    format: CopyFormat,
) -> Result<u64, CliError> {
    let mut reader = RecordReader::new(format);
    let mut rows = Vec::new();
    let mut inserted = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io("reading", path))?;
        let last = n == 0;
        let records = if last {
            reader.finish()
        } else {
            reader.push(&buf[..n])
        }
        .map_err(|e| invalid(format!("{path}: {}", e.message)))?;
        rows.extend(records);
        while rows.len() >= BATCH_ROWS || (last && !rows.is_empty()) {
            let batch: Vec<_> = rows.drain(..rows.len().min(BATCH_ROWS)).collect();
            inserted += session.insert_text(table, columns, &batch).await?;
        }
        if last {
            return Ok(inserted);
        }
    }
}

/// `COPY (query) TO 'path'`: the rows written as they come; how many.
pub(crate) async fn copy_to(
    mut rows: SendableRecordBatchStream,
    path: &str,
    format: &FileFormat,
) -> Result<u64, CliError> {
    let file = File::create(path).map_err(io("creating", path))?;
    match format {
        FileFormat::Parquet => {
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut writer = ArrowWriter::try_new(file, rows.schema(), Some(properties))
                .map_err(|e| invalid(format!("{path}: {e}")))?;
            let mut written = 0;
            while let Some(batch) = rows
                .try_next()
                .await
                .map_err(kalamstore_sql::SqlError::from)?
            {
                writer
                    .write(&batch)
                    .map_err(|e| invalid(format!("{path}: {e}")))?;
                written += batch.num_rows() as u64;
            }
            writer
                .close()
                .map_err(|e| invalid(format!("{path}: {e}")))?;
            Ok(written)
        }
        FileFormat::Json | FileFormat::Delimited(_) => {
            let as_json = matches!(format, FileFormat::Json);
            let mut out = BufWriter::new(file);
            let shape = if as_json {
                crate::Format::Json
            } else {
                crate::Format::Csv
            };
            let summary = crate::output::print(rows, shape, &mut out).await?;
            out.flush().map_err(io("writing", path))?;
            // The summary is `N row(s)`.
            Ok(summary
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0))
        }
    }
}
