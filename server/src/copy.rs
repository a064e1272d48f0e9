//! `COPY` over the wire: which statements are `COPY ... FROM STDIN` / `TO STDOUT`, the text and
//! CSV formats Postgres uses (parsed incrementally as CopyData arrives, one record at a time),
//! and the rows of a result as COPY lines.

use std::sync::Arc;

use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use arrow_pg::encoder::encode_value;
use futures::{Stream, StreamExt};
use kalamstore_sql::datafusion::execution::SendableRecordBatchStream;
use kalamstore_sql::datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use kalamstore_sql::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use kalamstore_sql::datafusion::sql::sqlparser::parser::Parser;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;

use crate::StatementError;

/// Rows per atomic batch of a `COPY ... FROM STDIN`.
pub const BATCH_ROWS: usize = 10_000;

/// The text or CSV format of a COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    /// CSV (else Postgres' text format).
    pub csv: bool,
    /// A header line (CSV only).
    pub header: bool,
    /// The field delimiter (tab for text, `,` for CSV).
    pub delimiter: char,
    /// What a NULL looks like (`\N` for text, an unquoted empty field for CSV).
    pub null: String,
}

impl CopyFormat {
    /// Postgres' text format.
    pub fn text() -> Self {
        Self {
            csv: false,
            header: false,
            delimiter: '\t',
            null: "\\N".into(),
        }
    }

    /// CSV.
    pub fn csv(header: bool) -> Self {
        Self {
            csv: true,
            header,
            delimiter: ',',
            null: String::new(),
        }
    }
}

/// A COPY the server runs itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyStatement {
    /// `COPY ns.t [(cols)] FROM STDIN`.
    In {
        /// `ns.t`.
        table: String,
        /// The columns given, in order (empty: all of the table's).
        columns: Vec<String>,
        /// How rows are written.
        format: CopyFormat,
    },
    /// `COPY ns.t | (query) TO STDOUT`.
    Out {
        /// The query whose rows are sent.
        query: String,
        /// How rows are written.
        format: CopyFormat,
    },
}

fn syntax(msg: impl Into<String>) -> StatementError {
    StatementError::new("42601", msg)
}

/// The COPY `sql` is when it reads STDIN or writes STDOUT; `None` for any other statement
/// (a COPY of a file is the statement layer's).
pub fn parse_copy(sql: &str) -> Option<Result<CopyStatement, StatementError>> {
    let first = sql.split_whitespace().next()?;
    if !first.eq_ignore_ascii_case("COPY") {
        return None;
    }
    match parse_any(sql) {
        Ok((statement, CopyTarget::Stdin | CopyTarget::Stdout)) => Some(Ok(statement)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }
}

/// A COPY of a file: the statement and the file's path; `None` for `STDIN`/`STDOUT`.
pub fn parse_copy_file(sql: &str) -> Result<Option<(CopyStatement, String)>, StatementError> {
    Ok(match parse_any(sql)? {
        (statement, CopyTarget::File { filename }) => Some((statement, filename)),
        _ => None,
    })
}

/// One COPY statement and where it reads or writes.
fn parse_any(sql: &str) -> Result<(CopyStatement, CopyTarget), StatementError> {
    // `COPY (statement) TO ...`: the statement in parentheses is any of the dialect's
    // (`SUBSCRIBE`, `SHOW`, ...), which the SQL parser does not know; it parses the rest
    // around a stand-in query.
    let inner = statement_in_parentheses(sql)?;
    let parsed = match &inner {
        Some((_, rest)) => {
            Parser::parse_sql(&PostgreSqlDialect {}, &format!("COPY (SELECT 1) {rest}"))
        }
        None => Parser::parse_sql(&PostgreSqlDialect {}, sql),
    };
    let statements = parsed.map_err(|e| syntax(format!("syntax error: {e}")))?;
    let [
        Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        },
    ] = statements.as_slice()
    else {
        return Err(syntax("expected one COPY statement"));
    };
    let mut statement = copy_statement(source, *to, options, legacy_options)?;
    if let (CopyStatement::Out { query, .. }, Some((text, _))) = (&mut statement, inner) {
        *query = text;
    }
    Ok((statement, target.clone()))
}

/// For `COPY ( ... ) rest`: the text between the parentheses and what follows them.
fn statement_in_parentheses(sql: &str) -> Result<Option<(String, String)>, StatementError> {
    let text = sql.trim_start();
    let Some(after_copy) = text
        .get(..4)
        .filter(|w| w.eq_ignore_ascii_case("COPY"))
        .and_then(|_| text.get(4..))
        .map(str::trim_start)
        .filter(|rest| rest.starts_with('('))
    else {
        return Ok(None);
    };
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in after_copy.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    let text = after_copy[1..i].trim().to_owned();
                    return Ok(Some((text, after_copy[i + 1..].to_owned())));
                }
            }
            _ => {}
        }
    }
    Err(syntax("COPY (...): the parenthesis is not closed"))
}

fn copy_statement(
    source: &CopySource,
    to: bool,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyStatement, StatementError> {
    let mut format = CopyFormat::text();
    let mut header = false;
    let mut delimiter = None;
    let mut null = None;
    for o in options {
        match o {
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("csv") => {
                format = CopyFormat::csv(false)
            }
            CopyOption::Format(f) if f.value.eq_ignore_ascii_case("text") => {}
            CopyOption::Header(h) => header = *h,
            CopyOption::Delimiter(d) => delimiter = Some(*d),
            CopyOption::Null(n) => null = Some(n.clone()),
            other => return Err(syntax(format!("COPY option {other} is not supported"))),
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(csv) => {
                format = CopyFormat::csv(false);
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        other => {
                            return Err(syntax(format!("COPY option {other} is not supported")));
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(d) => delimiter = Some(*d),
            CopyLegacyOption::Null(n) => null = Some(n.clone()),
            other => return Err(syntax(format!("COPY option {other} is not supported"))),
        }
    }
    if header && !format.csv {
        return Err(syntax("COPY HEADER needs FORMAT csv"));
    }
    format.header = header;
    if let Some(d) = delimiter {
        format.delimiter = d;
    }
    if let Some(n) = null {
        format.null = n;
    }
    match (source, to) {
        (
            CopySource::Table {
                table_name,
                columns,
            },
            false,
        ) => Ok(CopyStatement::In {
            table: table_name.to_string(),
            columns: columns.iter().map(|c| c.value.clone()).collect(),
            format,
        }),
        (
            CopySource::Table {
                table_name,
                columns,
            },
            true,
        ) => {
            let list = if columns.is_empty() {
                "*".to_owned()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Ok(CopyStatement::Out {
                query: format!("SELECT {list} FROM {table_name}"),
                format,
            })
        }
        (CopySource::Query(q), true) => Ok(CopyStatement::Out {
            query: q.to_string(),
            format,
        }),
        (CopySource::Query(_), false) => Err(syntax("COPY (query) FROM is not valid")),
    }
}

/// Splits COPY input into records as its bytes arrive: complete records come out, a record
/// cut by a message boundary waits for the rest.
#[derive(Debug)]
pub struct RecordReader {
    format: CopyFormat,
    pending: Vec<u8>,
    /// The 1-based line of the next record.
    line: u64,
    header_left: bool,
    ended: bool,
}

/// One input record: its first line and its fields (`None` is NULL).
pub type Record = (u64, Vec<Option<String>>);

impl RecordReader {
    /// A reader of `format`.
    pub fn new(format: CopyFormat) -> Self {
        let header_left = format.header;
        Self {
            format,
            pending: Vec::new(),
            line: 1,
            header_left,
            ended: false,
        }
    }

    /// Adds `bytes` and returns the records they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Record>, StatementError> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        let mut quoted = false;
        let mut i = 0;
        while i < self.pending.len() {
            let b = self.pending[i];
            if self.format.csv && b == b'"' {
                quoted = !quoted;
            } else if b == b'\n' && !quoted {
                let record = self.pending[start..i].to_vec();
                self.record(&record, &mut out)?;
                start = i + 1;
            }
            i += 1;
        }
        self.pending.drain(..start);
        Ok(out)
    }

    /// The last record, when the input does not end with a newline.
    pub fn finish(&mut self) -> Result<Vec<Record>, StatementError> {
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            let record = std::mem::take(&mut self.pending);
            self.record(&record, &mut out)?;
        }
        Ok(out)
    }

    fn record(&mut self, bytes: &[u8], out: &mut Vec<Record>) -> Result<(), StatementError> {
        let line = self.line;
        self.line += 1 + bytes.iter().filter(|b| **b == b'\n').count() as u64;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| StatementError::new("22021", format!("line {line}: not UTF-8")))?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if self.ended || text == "\\." {
            self.ended = true;
            return Ok(());
        }
        if self.header_left {
            self.header_left = false;
            return Ok(());
        }
        let fields = if self.format.csv {
            csv_fields(text, &self.format)
        } else {
            text_fields(text, &self.format)
        }
        .map_err(|e| StatementError::new("22P04", format!("line {line}: {e}")))?;
        out.push((line, fields));
        Ok(())
    }
}

/// The fields of a text-format line: delimiter-separated, backslash escapes, `\N` for NULL.
fn text_fields(line: &str, format: &CopyFormat) -> Result<Vec<Option<String>>, String> {
    line.split(format.delimiter)
        .map(|raw| {
            if raw == format.null {
                return Ok(None);
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                out.push(match chars.next() {
                    Some('t') => '\t',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('b') => '\u{8}',
                    Some('f') => '\u{c}',
                    Some('v') => '\u{b}',
                    Some(other) => other,
                    None => return Err("a backslash ends the line".to_owned()),
                });
            }
            Ok(Some(out))
        })
        .collect()
}

/// The fields of a CSV record: quotes with `""` for a quote inside; an unquoted field equal to
/// the NULL string (empty by default) is NULL, a quoted one is text.
fn csv_fields(record: &str, format: &CopyFormat) -> Result<Vec<Option<String>>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut was_quoted = false;
    let mut in_quotes = false;
    let mut chars = record.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' {
            in_quotes = true;
            was_quoted = true;
        } else if c == format.delimiter {
            fields.push(csv_value(std::mem::take(&mut field), was_quoted, format));
            was_quoted = false;
        } else {
            field.push(c);
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".to_owned());
    }
    fields.push(csv_value(field, was_quoted, format));
    Ok(fields)
}

fn csv_value(field: String, quoted: bool, format: &CopyFormat) -> Option<String> {
    (quoted || field != format.null).then_some(field)
}

/// The rows of `stream` as COPY data lines (a CSV header line first when asked).
pub fn copy_lines(
    stream: SendableRecordBatchStream,
    format: &CopyFormat,
) -> PgWireResult<impl Stream<Item = PgWireResult<CopyData>> + Send + use<>> {
    let schema = stream.schema();
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &schema,
        &Format::UnifiedText,
        None,
    )?);
    let header = (format.csv && format.header).then(|| {
        let names: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| csv_quote(f.name()))
            .collect();
        CopyData::new(format!("{}\n", names.join(&format.delimiter.to_string())).into())
    });
    let mut encoder = if format.csv {
        CopyEncoder::new_csv(
            fields.clone(),
            CopyCsvOptions {
                delimiter: format.delimiter.to_string().into(),
                null_string: format.null.as_str().into(),
                ..CopyCsvOptions::default()
            },
        )
    } else {
        CopyEncoder::new_text(
            fields.clone(),
            CopyTextOptions {
                delimiter: format.delimiter.to_string().into(),
                null_string: format.null.as_str().into(),
            },
        )
    };
    let rows = stream
        .map(move |batch| {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    return futures::stream::iter(vec![Err(PgWireError::UserError(Box::new(
                        ErrorInfo::new("ERROR".into(), "XX000".into(), e.to_string()),
                    )))]);
                }
            };
            let schema = batch.schema();
            let mut lines = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                let mut line = Ok(());
                for (col, array) in batch.columns().iter().enumerate() {
                    line = encode_value(&mut encoder, array, row, schema.field(col), &fields[col]);
                    if line.is_err() {
                        break;
                    }
                }
                lines.push(line.map(|()| arrow_pg::encoder::Encoder::take_row(&mut encoder)));
            }
            futures::stream::iter(lines)
        })
        .flatten();
    Ok(futures::stream::iter(header.map(Ok)).chain(rows))
}

fn csv_quote(name: &str) -> String {
    if name.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_statements_are_recognised_with_their_options() {
        assert_eq!(parse_copy("SELECT 1"), None);
        assert_eq!(
            parse_copy("COPY app.t FROM '/tmp/x.csv'"),
            None,
            "files are not ours"
        );
        assert_eq!(
            parse_copy("COPY app.t (id, body) FROM STDIN WITH (FORMAT csv, HEADER true)"),
            Some(Ok(CopyStatement::In {
                table: "app.t".into(),
                columns: vec!["id".into(), "body".into()],
                format: CopyFormat::csv(true),
            }))
        );
        assert_eq!(
            parse_copy("COPY (SELECT id FROM app.t) TO STDOUT"),
            Some(Ok(CopyStatement::Out {
                query: "SELECT id FROM app.t".into(),
                format: CopyFormat::text(),
            }))
        );
        assert_eq!(
            parse_copy(
                "COPY (SUBSCRIBE TO app.t OPTIONS (last_rows = 1)) TO STDOUT WITH (FORMAT csv)"
            ),
            Some(Ok(CopyStatement::Out {
                query: "SUBSCRIBE TO app.t OPTIONS (last_rows = 1)".into(),
                format: CopyFormat::csv(false),
            }))
        );
        assert_eq!(
            parse_copy("copy (SELECT ')' AS p, \"a)\" FROM app.t) to stdout"),
            Some(Ok(CopyStatement::Out {
                query: "SELECT ')' AS p, \"a)\" FROM app.t".into(),
                format: CopyFormat::text(),
            }))
        );
        assert_eq!(
            parse_copy("COPY (SELECT (1) TO STDOUT").map(|r| r.unwrap_err().code),
            Some("42601")
        );
        assert!(matches!(
            parse_copy("COPY app.t FROM STDIN WITH (FORMAT binary)"),
            Some(Err(_))
        ));
    }

    #[test]
    fn records_split_across_messages_come_out_whole() {
        let mut r = RecordReader::new(CopyFormat::csv(true));
        let mut got = r.push(b"id,body\n1,\"a, \"\"quoted\"\"\n").unwrap();
        assert!(got.is_empty(), "the quoted field is still open");
        got.extend(r.push(b"line\"\n2,\n3,\"\"").unwrap());
        got.extend(r.finish().unwrap());
        assert_eq!(
            got,
            vec![
                (
                    2,
                    vec![Some("1".into()), Some("a, \"quoted\"\nline".into())]
                ),
                (4, vec![Some("2".into()), None]),
                (5, vec![Some("3".into()), Some(String::new())]),
            ]
        );
        let mut t = RecordReader::new(CopyFormat::text());
        let got = t.push(b"1\ta\\tb\\\\\t\\N\n\\.\nignored\n").unwrap();
        assert_eq!(
            got,
            vec![(1, vec![Some("1".into()), Some("a\tb\\".into()), None])]
        );
        let mut bad = RecordReader::new(CopyFormat::csv(false));
        bad.push(b"1,\"open").unwrap();
        assert_eq!(bad.finish().unwrap_err().code, "22P04");
    }
}
