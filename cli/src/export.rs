//! `EXPORT USER DATA`: one user's rows of every USER table, resolved (no deleted or superseded
//! rows), as Parquet files in a zip, with each table's definition.

use std::io::Write as _;
use std::path::Path;

use arrow::array::RecordBatch;
use kalamstore::{ScanOptions, Store, TableType, UserId};
use parquet::arrow::ArrowWriter;

use crate::error::CliError;

/// Writes the zip; returns (tables, rows).
pub async fn export_user(
    store: &Store,
    user: &UserId,
    path: &Path,
) -> Result<(usize, u64), CliError> {
    let io = |op: String| move |source| CliError::Io { op, source };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rows = 0u64;
    let mut tables = 0;
    for def in store.tables(None).await? {
        if def.table_type != TableType::User {
            continue;
        }
        let batches = store.scan(&def.id, Some(user), &ScanOptions::all()).await?;
        let schema = def.arrow_schema(false);
        let mut parquet = Vec::new();
        {
            let mut w = ArrowWriter::try_new(&mut parquet, schema, None)
                .map_err(|e| CliError::Invalid(format!("writing {}: {e}", def.id)))?;
            for b in &batches {
                w.write(b)
                    .map_err(|e| CliError::Invalid(format!("writing {}: {e}", def.id)))?;
            }
            w.close()
                .map_err(|e| CliError::Invalid(format!("writing {}: {e}", def.id)))?;
        }
        rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
        tables += 1;
        let base = format!("{}/{}", def.id.namespace, def.id.table);
        files.push((format!("{base}.parquet"), parquet));
        files.push((format!("{base}.definition.pb"), def.encode()));
    }
    let file = std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        zip.start_file(name.as_str(), options)
            .map_err(|e| CliError::Invalid(format!("writing {}: {e}", path.display())))?;
        zip.write_all(&bytes)
            .map_err(io(format!("writing {}", path.display())))?;
    }
    zip.finish()
        .map_err(|e| CliError::Invalid(format!("writing {}: {e}", path.display())))?;
    Ok((tables, rows))
}
