//! `COPY ns.t FROM '<file>'` and `COPY ns.t | (query) TO '<file>'`: the file's format by its
//! extension (Parquet, JSON lines) or the COPY options (text, CSV).

use super::{Command, bad, table_id};
use crate::error::CliError;

/// How a COPY file is read or written.
#[derive(Debug, Clone, PartialEq)]
pub enum FileFormat {
    /// Text or CSV lines, as the COPY options say (CSV for a `.csv` file without FORMAT).
    Delimited(kalamstore_server::copy::CopyFormat),
    /// Apache Parquet (a `.parquet` file): columns by name, typed.
    Parquet,
    /// One JSON object per line (a `.json`, `.jsonl` or `.ndjson` file): fields by name.
    Json,
}

impl FileFormat {
    /// The format of `path`: by its extension, else the COPY options'.
    fn of(path: &str, options: kalamstore_server::copy::CopyFormat) -> Self {
        use kalamstore_server::copy::CopyFormat;
        let lower = path.to_ascii_lowercase();
        let extension = lower.rsplit_once('.').map_or("", |(_, e)| e);
        match extension {
            "parquet" => Self::Parquet,
            "json" | "jsonl" | "ndjson" => Self::Json,
            "csv" if options == CopyFormat::text() => Self::Delimited(CopyFormat::csv(false)),
            _ => Self::Delimited(options),
        }
    }
}

/// `COPY ... FROM|TO '<file>'`; the STDIN/STDOUT forms belong to a client connection.
pub(super) fn copy(sql: &str) -> Result<Command, CliError> {
    use kalamstore_server::copy::{CopyStatement, parse_copy_file};
    match parse_copy_file(sql).map_err(|e| CliError::Parse(e.message))? {
        Some((
            CopyStatement::In {
                table,
                columns,
                format,
            },
            path,
        )) => Ok(Command::CopyFrom {
            table: table_id(&table)?,
            columns,
            format: FileFormat::of(&path, format),
            path,
        }),
        Some((CopyStatement::Out { query, format }, path)) => Ok(Command::CopyTo {
            query,
            format: FileFormat::of(&path, format),
            path,
        }),
        None => Err(bad(
            "COPY ... FROM STDIN / TO STDOUT needs a client connection (psql's \\copy, or the \
             server); here, COPY a file",
        )),
    }
}
