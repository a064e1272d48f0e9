//! Result formats: `table` (aligned, for people), `csv` (header, then rows) and `json` (one
//! object per row per line).

use std::io::Write;

use crate::exec::ResultSet;
use crate::value::{to_json, to_text};

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

/// Prints rows to `out`.
pub fn print(rows: &ResultSet, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        Format::Table => {
            let mut table = comfy_table::Table::new();
            table.load_style(comfy_table::presets::ASCII_MARKDOWN);
            table.set_header(rows.columns.iter().map(|(n, _)| n.clone()));
            for r in &rows.rows {
                table.add_row(
                    r.iter()
                        .zip(&rows.columns)
                        .map(|(v, (_, t))| to_text(v, *t)),
                );
            }
            writeln!(out, "{table}")
        }
        Format::Csv => {
            let header: Vec<String> = rows.columns.iter().map(|(n, _)| csv_field(n)).collect();
            writeln!(out, "{}", header.join(","))?;
            for r in &rows.rows {
                let fields: Vec<String> = r
                    .iter()
                    .zip(&rows.columns)
                    .map(|(v, (_, t))| {
                        if v.is_null() {
                            String::new()
                        } else {
                            csv_field(&to_text(v, *t))
                        }
                    })
                    .collect();
                writeln!(out, "{}", fields.join(","))?;
            }
            Ok(())
        }
        Format::Json => {
            for r in &rows.rows {
                let obj: serde_json::Map<String, serde_json::Value> = rows
                    .columns
                    .iter()
                    .zip(r)
                    .map(|((n, t), v)| (n.clone(), to_json(v, *t)))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(obj))?;
            }
            Ok(())
        }
    }
}
