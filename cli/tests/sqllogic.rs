//! SQL logic tests: every `tests/sql/*.slt` file of the workspace, in the `sqllogictest`
//! format, run through the CLI's session (kalamstore's own statements and SQL through
//! DataFusion) against tables on three storages: in memory, on RocksDB and on the
//! object-store engine (labels `memory`, `rocksdb`, `object_store` for `skipif`/`onlyif`).
//! Each file runs on a fresh data directory with two storages: `under_test` (where tables
//! go unless they name one) and `other` (RocksDB, a target for moves).
//!
//! Statements the runner itself understands: `RESTART` (close and reopen the data
//! directory), `SET USER '<id>'` and `RESET USER` (whose rows USER tables show). A
//! `SUBSCRIBE` returns the rows that arrive until it is quiet for half a second. A result
//! column named `_seq` is shown as `<seq>` (its values depend on the clock).
//!
//! Plans (`EXPLAIN`) print as DataFusion's own `.slt` files print them: a cell of several
//! lines starts on a line of its own, each line numbered and its indentation shown as `-`;
//! Parquet file names (random ids) print as `<file>.parquet`; DataFusion plans for two
//! partitions (`DATAFUSION_EXECUTION_TARGET_PARTITIONS=2`) on any machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use async_trait::async_trait;
use futures::TryStreamExt;
use kalamstore::{StorageId, Store, UserId};
use kalamstore_cli::output::text_rows;
use kalamstore_cli::{CliError, Outcome, Session, parse};
use sqllogictest::{DBOutput, DefaultColumnType};

/// DataFusion's setting of how many partitions it plans for, read by every session.
const PARTITIONS: &str = "DATAFUSION_EXECUTION_TARGET_PARTITIONS";

/// The storages every file runs against.
const KINDS: &[&str] = &["memory", "rocksdb", "object_store"];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DbError(String);

impl From<CliError> for DbError {
    fn from(e: CliError) -> Self {
        Self(e.to_string())
    }
}

struct Db {
    data: PathBuf,
    store: Option<Store>,
    user: Option<UserId>,
}

impl Db {
    fn store(&self) -> Result<&Store, DbError> {
        self.store
            .as_ref()
            .ok_or_else(|| DbError("the store is closed".into()))
    }

    fn session(&self) -> Result<Session, DbError> {
        Ok(Session::new(
            self.store()?.clone(),
            self.user.clone(),
            false,
            vec![],
            false,
        )?
        .with_default_storage(StorageId::system("under_test")))
    }

    async fn restart(&mut self) -> Result<(), DbError> {
        if let Some(store) = self.store.take() {
            store.close().await.map_err(CliError::from)?;
        }
        self.store = Some(kalamstore::open(&self.data).await.map_err(CliError::from)?);
        Ok(())
    }
}

/// The sqllogictest column type of an arrow type.
fn column_type(t: &arrow::datatypes::DataType) -> DefaultColumnType {
    use arrow::datatypes::DataType as A;
    match t {
        A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64 => {
            DefaultColumnType::Integer
        }
        A::Float16 | A::Float32 | A::Float64 | A::Decimal128(..) => {
            DefaultColumnType::FloatingPoint
        }
        A::Utf8 | A::LargeUtf8 | A::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let text = sql.trim().trim_end_matches(';').trim();
        if text.eq_ignore_ascii_case("RESTART") {
            self.restart().await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if text.eq_ignore_ascii_case("RESET USER") {
            self.user = None;
            return Ok(DBOutput::StatementComplete(0));
        }
        if let Some(user) = text.strip_prefix("SET USER ") {
            let user = user.trim().trim_matches('\'');
            self.user = Some(UserId::new(user).map_err(CliError::from)?);
            return Ok(DBOutput::StatementComplete(0));
        }
        let session = self.session()?;
        let (mut stream, live) = match session.execute(parse::parse(text)?).await? {
            Outcome::Done(summary) => {
                let n = summary
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                return Ok(DBOutput::StatementComplete(n));
            }
            Outcome::Rows(stream) => (stream, false),
            Outcome::Live(stream) => (stream, true),
        };
        let types = stream
            .schema()
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        // `_seq` values depend on the clock: a column of them is shown as `<seq>`.
        let seq_at = stream.schema().index_of("_seq").ok();
        let sql_error = |e| DbError(kalamstore_sql::SqlError::from(e).to_string());
        let batches: Vec<_> = if live {
            // A subscription never ends: its rows are what arrives until it is quiet
            // for half a second.
            let mut out = Vec::new();
            let quiet = std::time::Duration::from_millis(500);
            while let Ok(next) = tokio::time::timeout(quiet, stream.try_next()).await {
                match next.map_err(sql_error)? {
                    Some(batch) => out.push(batch),
                    None => break,
                }
            }
            out
        } else {
            stream.try_collect().await.map_err(sql_error)?
        };
        let rows = batches
            .iter()
            .flat_map(text_rows)
            .map(|row| {
                row.into_iter()
                    .enumerate()
                    .map(|(i, cell)| match cell {
                        _ if Some(i) == seq_at => "<seq>".to_owned(),
                        None => "NULL".to_owned(),
                        Some(s) if s.is_empty() => "(empty)".to_owned(),
                        Some(s) if s.contains('\n') => plan_lines(&s),
                        Some(s) => s,
                    })
                    .collect()
            })
            .collect();
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {
        if let Some(store) = self.store.take() {
            let _ = store.close().await;
        }
    }

    fn engine_name(&self) -> &str {
        "kalamstore"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// Whether a result matches its expected lines, each compared with runs of whitespace as one
/// space: a row whose cell holds several lines (a plan) is that many lines.
fn lines_match(
    _normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let norm = |s: &str| s.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
    let actual = actual.iter().flat_map(|row| {
        let row = row.join(" ");
        row.lines().map(norm).collect::<Vec<_>>()
    });
    actual.eq(expected.iter().map(|l| norm(l)))
}

/// A multi-line cell (a plan) as numbered lines, indentation as `-`, file names hidden.
fn plan_lines(cell: &str) -> String {
    let mut out = String::new();
    for (n, line) in cell.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        out.push_str(&format!(
            "\n{:02}){}{}",
            n + 1,
            "-".repeat(indent),
            hide_files(body)
        ));
    }
    out
}

/// `<16 hex digits>.parquet` as `<file>.parquet`.
fn hide_files(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(".parquet") {
        let (before, after) = rest.split_at(at);
        let id_at = before.len().saturating_sub(16);
        let is_id = before.len() >= 16
            && before.is_char_boundary(id_at)
            && before[id_at..].bytes().all(|b| b.is_ascii_hexdigit());
        match is_id {
            true => {
                out.push_str(&before[..id_at]);
                out.push_str("<file>");
            }
            false => out.push_str(before),
        }
        out.push_str(".parquet");
        rest = &after[".parquet".len()..];
    }
    out.push_str(rest);
    out
}

/// A fresh data directory with the two storages, `under_test` of `kind`.
async fn prepare(dir: &Path, kind: &str) -> Result<Db, DbError> {
    let mut db = Db {
        data: dir.join("data"),
        store: None,
        user: None,
    };
    db.restart().await?;
    let under_test = match kind {
        "memory" => "CREATE STORAGE under_test TYPE memory".to_owned(),
        engine => format!(
            "CREATE STORAGE under_test TYPE filesystem ENGINE {engine} PATH '{}'",
            dir.join("under_test").display()
        ),
    };
    let other = format!(
        "CREATE STORAGE other TYPE filesystem ENGINE rocksdb PATH '{}'",
        dir.join("other").display()
    );
    let session = db.session()?;
    for sql in [under_test, other] {
        session.execute(parse::parse(&sql)?).await?;
    }
    Ok(db)
}

async fn run_file(file: &Path, kind: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = prepare(dir.path(), kind).await.map_err(|e| e.to_string())?;
    let mut db = Some(db);
    let mut runner = sqllogictest::Runner::new(move || {
        let next = db.take();
        async move { next.ok_or_else(|| DbError("one connection per file".into())) }
    });
    runner.add_label(kind);
    // The type letters of each `query` (I, R, T, ? for the rest) must match the result's.
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner.with_validator(lines_match);
    let result = runner.run_file_async(file).await.map_err(|e| e.to_string());
    runner.shutdown_async().await;
    result
}

fn main() -> ExitCode {
    // Read when the test runs: a path compiled in names the checkout that built the binary,
    // and cargo reuses a binary from a shared target directory for another checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets it");
    let root = Path::new(&manifest).join("../tests/sql");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&root) {
        Ok(d) => d
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "slt"))
            .collect(),
        Err(e) => {
            eprintln!("cannot read {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
    };
    files.sort();
    // Plans for two partitions on any machine: run again with the setting in the environment
    // (setting it in this process would need `unsafe`).
    if std::env::var_os(PARTITIONS).is_none() {
        let status = std::process::Command::new(std::env::current_exe().expect("our own path"))
            .args(std::env::args_os().skip(1))
            .env(PARTITIONS, "2")
            .status();
        return match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("cannot run the SQL logic tests again with {PARTITIONS}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the tests");
    let mut failed = 0;
    let mut ran = 0;
    for file in &files {
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        for kind in KINDS {
            ran += 1;
            match runtime.block_on(run_file(file, kind)) {
                Ok(()) => println!("ok     {name} on {kind}"),
                Err(e) => {
                    failed += 1;
                    println!("FAILED {name} on {kind}:\n{e}");
                }
            }
        }
    }
    println!("{ran} runs, {failed} failed");
    if failed > 0 || (ran == 0 && filter.is_none()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
