//! Result formats: `table` (aligned, for people), `csv` (header, then rows) and `json` (one
//! object per row per line), printed as batches arrive: a table is printed in blocks of at
//! most [`TABLE_BLOCK_ROWS`] rows, so memory stays bounded for any result size.

use std::io::Write;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use kalamstore::KalamDataType;
use kalamstore::codec::value_at;
use kalamstore::types::kalam_type_of_field;
use kalamstore_sql::datafusion::execution::SendableRecordBatchStream;

use crate::error::CliError;
use crate::value::{to_json, to_text};

/// Rows per printed block of the `table` format.
pub const TABLE_BLOCK_ROWS: usize = 1000;

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// RFC 4180 CSV with a header.
    Csv,
    /// One JSON object per row, one per line.
    Json,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One column of a batch, read cell by cell in kalamstore's formats where the column has a
/// kalamstore type, else as arrow displays it.
struct Column<'a> {
    array: &'a ArrayRef,
    kalam: Option<KalamDataType>,
    arrow: Option<ArrayFormatter<'a>>,
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef, field: &Field, options: &'a FormatOptions<'a>) -> Self {
        let kalam = kalam_type_of_field(field)
            .ok()
            .filter(|t| &t.to_arrow() == array.data_type());
        let arrow = match kalam {
            Some(_) => None,
            None => ArrayFormatter::try_new(array.as_ref(), options).ok(),
        };
        Self {
            array,
            kalam,
            arrow,
        }
    }

    /// The cell as text; `None` for NULL.
    fn text(&self, row: usize) -> Option<String> {
        if self.array.is_null(row) {
            return None;
        }
        if let Some(t) = self.kalam
            && let Ok(v) = value_at(self.array.as_ref(), t, row)
        {
            return Some(to_text(&v, t));
        }
        Some(match &self.arrow {
            Some(f) => f.value(row).to_string(),
            None => "?".into(),
        })
    }

    fn json(&self, row: usize) -> serde_json::Value {
        if self.array.is_null(row) {
            return serde_json::Value::Null;
        }
        if let Some(t) = self.kalam
            && let Ok(v) = value_at(self.array.as_ref(), t, row)
        {
            return to_json(&v, t);
        }
        let text = self.text(row).unwrap_or_default();
        let numeric = self.array.data_type().is_numeric();
        match (numeric, self.array.data_type()) {
            (true, _) => text
                .parse::<serde_json::Number>()
                .map_or(serde_json::Value::String(text), serde_json::Value::Number),
            (_, DataType::Boolean) => serde_json::Value::Bool(text == "true"),
            _ => serde_json::Value::String(text),
        }
    }
}

/// The cells of a batch as they print (`None` for NULL), row by row.
pub fn text_rows(batch: &RecordBatch) -> Vec<Vec<Option<String>>> {
    let options = FormatOptions::default();
    let schema = batch.schema();
    let columns: Vec<Column<'_>> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| Column::new(a, f, &options))
        .collect();
    (0..batch.num_rows())
        .map(|row| columns.iter().map(|c| c.text(row)).collect())
        .collect()
}

/// When a live result (a subscription) stops printing.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveLimits {
    /// After this many rows (`--until-rows`).
    pub rows: Option<u64>,
    /// After this long (`--timeout`).
    pub time: Option<std::time::Duration>,
}

/// Prints a live result's batches as each arrives (a table block per batch) until the stream
/// ends, a limit is reached or Ctrl-C; returns how many rows were printed.
pub async fn print_live(
    mut rows: SendableRecordBatchStream,
    format: Format,
    out: &mut dyn Write,
    limits: LiveLimits,
) -> Result<String, CliError> {
    let schema = rows.schema();
    let io = |source| CliError::Io {
        op: "writing results".into(),
        source,
    };
    if format == Format::Csv {
        print_csv_header(&schema, out).map_err(io)?;
        out.flush().map_err(io)?;
    }
    let deadline = limits.time.map(|t| tokio::time::Instant::now() + t);
    let mut printed = 0u64;
    loop {
        if limits.rows.is_some_and(|n| printed >= n) {
            break;
        }
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let batch = tokio::select! {
            next = rows.try_next() => match next.map_err(kalamstore_sql::SqlError::from)? {
                Some(batch) => batch,
                None => break,
            },
            () = until => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let room = limits.rows.map_or(u64::MAX, |n| n - printed);
        let take = (batch.num_rows() as u64).min(room) as usize;
        if take == 0 {
            continue;
        }
        let batch = batch.slice(0, take);
        printed += take as u64;
        match format {
            Format::Table => print_table(&schema, std::slice::from_ref(&batch), out).map_err(io)?,
            Format::Csv => print_csv(&batch, out).map_err(io)?,
            Format::Json => print_json(&batch, out).map_err(io)?,
        }
        out.flush().map_err(io)?;
    }
    Ok(rows_summary(printed))
}

/// `1 row`, `3 rows`.
fn rows_summary(n: u64) -> String {
    format!("{n} row{}", if n == 1 { "" } else { "s" })
}

/// Prints result batches as they come; returns how many rows were printed. (Generic over the
/// writer, so the future is `Send` when the writer is: the server writes COPY files with it.)
pub async fn print<W: Write>(
    mut rows: SendableRecordBatchStream,
    format: Format,
    out: &mut W,
) -> Result<String, CliError> {
    let schema = rows.schema();
    let io = |source| CliError::Io {
        op: "writing results".into(),
        source,
    };
    let mut printed = 0u64;
    let mut block: Vec<RecordBatch> = Vec::new();
    let mut block_rows = 0usize;
    if format == Format::Csv {
        print_csv_header(&schema, out).map_err(io)?;
    }
    while let Some(batch) = rows
        .try_next()
        .await
        .map_err(kalamstore_sql::SqlError::from)?
    {
        printed += batch.num_rows() as u64;
        match format {
            Format::Table => {
                block_rows += batch.num_rows();
                block.push(batch);
                if block_rows >= TABLE_BLOCK_ROWS {
                    print_table(&schema, &block, out).map_err(io)?;
                    block.clear();
                    block_rows = 0;
                }
            }
            Format::Csv => print_csv(&batch, out).map_err(io)?,
            Format::Json => print_json(&batch, out).map_err(io)?,
        }
        out.flush().map_err(io)?;
    }
    if format == Format::Table && (block_rows > 0 || printed == 0) {
        print_table(&schema, &block, out).map_err(io)?;
    }
    Ok(rows_summary(printed))
}

fn print_table(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let options = FormatOptions::default();
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header(schema.fields().iter().map(|f| f.name().clone()));
    for batch in batches {
        let columns: Vec<Column<'_>> = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(a, f)| Column::new(a, f, &options))
            .collect();
        for row in 0..batch.num_rows() {
            table.add_row(
                columns
                    .iter()
                    .map(|c| c.text(row).unwrap_or_else(|| "NULL".into())),
            );
        }
    }
    writeln!(out, "{table}")
}

fn print_csv_header(schema: &SchemaRef, out: &mut dyn Write) -> std::io::Result<()> {
    let header: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect();
    writeln!(out, "{}", header.join(","))
}

fn print_csv(batch: &RecordBatch, out: &mut dyn Write) -> std::io::Result<()> {
    let options = FormatOptions::default();
    let schema = batch.schema();
    let columns: Vec<Column<'_>> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| Column::new(a, f, &options))
        .collect();
    for row in 0..batch.num_rows() {
        let fields: Vec<String> = columns
            .iter()
            .map(|c| c.text(row).map(|t| csv_field(&t)).unwrap_or_default())
            .collect();
        writeln!(out, "{}", fields.join(","))?;
    }
    Ok(())
}

fn print_json(batch: &RecordBatch, out: &mut dyn Write) -> std::io::Result<()> {
    let options = FormatOptions::default();
    let schema = batch.schema();
    let columns: Vec<Column<'_>> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| Column::new(a, f, &options))
        .collect();
    for row in 0..batch.num_rows() {
        let obj: serde_json::Map<String, serde_json::Value> = schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| (f.name().clone(), c.json(row)))
            .collect();
        writeln!(out, "{}", serde_json::Value::Object(obj))?;
    }
    Ok(())
}
