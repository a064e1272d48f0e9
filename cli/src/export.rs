//! `EXPORT USER DATA` and `IMPORT USER DATA`: one user's rows of every USER table, resolved (no
//! deleted or superseded rows), as Parquet files in a zip with each table's definition, and
//! back. Both stream: an export writes each table's rows into its zip entry as the scan yields
//! them, an import reads one row group at a time, so memory stays bounded for any data size.

use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use kalamstore::{
    Error, JobKind, JobOutcome, JobProgress, JobRecord, KalamValue, Mutation, Result, ScanOptions,
    Store, TableDefinition, TableId, TableType, UserId,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Rows per Parquet row group of an export: what an export holds in memory per table.
const EXPORT_ROW_GROUP: usize = 16 * 1024;

/// Rows per write batch of an import.
const IMPORT_BATCH: usize = 4096;

fn zip_error(path: &Path) -> impl Fn(zip::result::ZipError) -> Error + '_ {
    move |e| Error::Io {
        op: format!("reading or writing the zip {}", path.display()),
        source: std::io::Error::other(e),
    }
}

fn io_error(op: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { op, source }
}

fn parquet_error(op: String) -> impl Fn(parquet::errors::ParquetError) -> Error {
    move |source| Error::Parquet {
        op: op.clone(),
        source,
    }
}

/// The zip entries of a table: its rows and its definition.
fn entry_names(table: &TableId) -> (String, String) {
    let base = format!("{}/{}", table.namespace, table.table);
    (format!("{base}.parquet"), format!("{base}.definition.pb"))
}

/// Writes the zip as an `export` job; its record counts tables (files) and rows.
pub async fn export_user(store: &Store, user: &UserId, path: &Path) -> Result<JobRecord> {
    let (store2, user2, path) = (store.clone(), user.clone(), path.to_owned());
    store
        .run_app_job(JobKind::Export, Some(user.clone()), |progress| async move {
            write_export(&store2, &user2, &path, &progress).await
        })
        .await
}

async fn write_export(
    store: &Store,
    user: &UserId,
    path: &Path,
    progress: &JobProgress,
) -> Result<JobOutcome> {
    let file =
        std::fs::File::create(path).map_err(io_error(format!("creating {}", path.display())))?;
    let mut zip = zip::ZipWriter::new(file);
    // The Parquet inside is compressed already.
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(EXPORT_ROW_GROUP))
        .build();
    let (mut rows, mut tables) = (0u64, 0u64);
    for def in store.tables(None).await? {
        if def.table_type != TableType::User {
            continue;
        }
        let (data, definition) = entry_names(&def.id);
        zip.start_file(data.as_str(), stored)
            .map_err(zip_error(path))?;
        let what = format!("writing {data} of {}", path.display());
        let mut writer =
            ArrowWriter::try_new(&mut zip, def.arrow_schema(false), Some(props.clone()))
                .map_err(parquet_error(what.clone()))?;
        let scan = store
            .scan_stream(&def.id, Some(user), &ScanOptions::all())
            .await?;
        let mut batches = scan.stream();
        while let Some(batch) = batches.try_next().await? {
            progress.check_cancelled()?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(parquet_error(what.clone()))?;
        }
        writer.close().map_err(parquet_error(what))?;
        zip.start_file(definition.as_str(), stored)
            .map_err(zip_error(path))?;
        std::io::Write::write_all(&mut zip, &def.encode()).map_err(io_error(format!(
            "writing {definition} of {}",
            path.display()
        )))?;
        tables += 1;
        progress.report(&outcome(tables, rows)).await?;
    }
    zip.finish().map_err(zip_error(path))?;
    Ok(outcome(tables, rows))
}

/// A job outcome of `tables` tables (files) and `rows` rows.
fn outcome(tables: u64, rows: u64) -> JobOutcome {
    JobOutcome {
        rows,
        files: tables,
        ..JobOutcome::default()
    }
}

/// Restores an export into the same tables for `user`, as an `import` job: rows replace rows
/// with the same key, columns are matched to the table's current schema by column id (a
/// column renamed since the export takes its values, one dropped since is left out).
pub async fn import_user(store: &Store, user: &UserId, path: &Path) -> Result<JobRecord> {
    let (store2, user2, path) = (store.clone(), user.clone(), path.to_owned());
    store
        .run_app_job(JobKind::Import, Some(user.clone()), |progress| async move {
            read_import(&store2, &user2, &path, &progress).await
        })
        .await
}

async fn read_import(
    store: &Store,
    user: &UserId,
    path: &Path,
    progress: &JobProgress,
) -> Result<JobOutcome> {
    let file =
        std::fs::File::open(path).map_err(io_error(format!("opening {}", path.display())))?;
    let mut zip = zip::ZipArchive::new(file).map_err(zip_error(path))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|name| name.map(std::borrow::Cow::into_owned))
        .collect::<Result<_, _>>()
        .map_err(zip_error(path))?;
    let (mut rows, mut tables) = (0u64, 0u64);
    for data in names.iter().filter(|n| n.ends_with(".parquet")) {
        let base = data.trim_end_matches(".parquet");
        let id: TableId = base.replace('/', ".").parse()?;
        let exported = {
            let mut entry = zip
                .by_name(&format!("{base}.definition.pb"))
                .map_err(zip_error(path))?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(io_error(format!(
                "reading the definition of {id} in {}",
                path.display()
            )))?;
            TableDefinition::decode(&bytes)?
        };
        let current = store.table(&id).await?;
        let names = column_names(&exported, &current);
        // Parquet needs to seek: the entry goes to a temporary file first.
        let mut parquet =
            tempfile::tempfile().map_err(io_error("creating a temporary file".into()))?;
        let mut entry = zip.by_name(data).map_err(zip_error(path))?;
        std::io::copy(&mut entry, &mut parquet)
            .and_then(|_| parquet.seek(SeekFrom::Start(0)))
            .map_err(io_error(format!("extracting {data} of {}", path.display())))?;
        drop(entry);
        let what = format!("reading {data} of {}", path.display());
        let reader = ParquetRecordBatchReaderBuilder::try_new(parquet)
            .map_err(parquet_error(what.clone()))?
            .with_batch_size(IMPORT_BATCH)
            .build()
            .map_err(parquet_error(what.clone()))?;
        for batch in reader {
            progress.check_cancelled()?;
            let batch = batch.map_err(|source| Error::Arrow {
                op: "reading an exported table",
                source,
            })?;
            let mut mutations = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                let values = kalamstore::codec::row_values(&batch, row)?;
                let named = names
                    .iter()
                    .zip(values)
                    .filter_map(|(name, v)| Some((name.clone()?, v)))
                    .collect::<Vec<(String, KalamValue)>>();
                mutations.push(Mutation::Upsert(named));
            }
            rows += mutations.len() as u64;
            store.write(&id, Some(user), mutations).await?;
        }
        tables += 1;
        progress.report(&outcome(tables, rows)).await?;
    }
    Ok(outcome(tables, rows))
}

/// For each column of the exported definition, in order: the name of the same column (by id)
/// in the current definition, or `None` when it was dropped since.
fn column_names(exported: &TableDefinition, current: &Arc<TableDefinition>) -> Vec<Option<String>> {
    exported
        .columns()
        .iter()
        .map(|c| {
            current
                .columns()
                .iter()
                .find(|now| now.id == c.id)
                .map(|now| now.name.clone())
        })
        .collect()
}
