//! Writing one data file of a table: the current user columns, `_seq`, `_updated` and the
//! encoded primary key `_key` (sorted, with a bloom filter), zstd-compressed, with page-level
//! statistics and the page index.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use std::sync::Arc;

use super::columns::{KEY_COLUMN, file_schema, key_column, project};
use super::manifest::FileMeta;
use super::paths::data_file_path;
use crate::codec::SEQ_COLUMN;
use crate::error::{Error, Result};
use crate::schema::{SCHEMA_VERSION_METADATA, TableDefinition};

/// Rows per row group: small enough for pruning and bounded flush memory.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Largest dictionary page per column chunk.
const DICTIONARY_PAGE_BYTES: usize = 16 * 1024;

/// Largest data page, uncompressed: a point read decompresses one page of each column it
/// returns, so wide columns get pages of a few hundred rows.
const DATA_PAGE_BYTES: usize = 16 * 1024;

/// Rows the writer encodes at a time; page sizes are checked between these, so this is how
/// closely [`DATA_PAGE_BYTES`] is kept.
const WRITE_BATCH_ROWS: usize = 128;

/// Rows per data page at most: the `_key` pages a point read searches.
const PAGE_ROWS: usize = 1024;

/// The writer properties of a file of table `def` (its current schema version).
pub fn writer_properties(def: &TableDefinition) -> WriterProperties {
    let key = ColumnPath::from(KEY_COLUMN);
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            // Invariant: zstd accepts levels 1 to 22.
            ZstdLevel::try_new(1).expect("1 is a valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Small pages keep a point read to a few kilobytes decompressed per column.
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_data_page_size_limit(DATA_PAGE_BYTES)
        .set_write_batch_size(WRITE_BATCH_ROWS)
        // Row-group statistics for every column (pruning by filter); page statistics for
        // `_key`, the page directory of point reads, and for the primary-key columns, which
        // files are sorted by, so a range of keys prunes pages (the page index of the other
        // columns would only grow the footer every read keeps in memory).
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_column_statistics_enabled(key.clone(), EnabledStatistics::Page)
        // Reading any row of a column chunk decodes its whole dictionary page: a small limit
        // keeps point reads cheap; high-cardinality columns fall back to plain pages early.
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        // Keys are unique: a dictionary would only grow until it spills, and a point read
        // would decode all of it.
        .set_column_dictionary_enabled(key.clone(), false)
        .set_column_bloom_filter_enabled(key.clone(), true)
        .set_column_bloom_filter_fpp(key.clone(), 0.01)
        .set_column_bloom_filter_max_ndv(key, ROW_GROUP_ROWS as u64)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            SCHEMA_VERSION_METADATA.to_owned(),
            def.schema.version.to_string(),
        )]));
    let pk: Vec<_> = def.primary_key().collect();
    for c in &pk {
        builder = builder.set_column_statistics_enabled(
            ColumnPath::from(c.name.as_str()),
            EnabledStatistics::Page,
        );
    }
    // A single-column primary key is unique within a file too.
    if let [pk] = pk.as_slice() {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(pk.name.as_str()), false);
    }
    builder.build()
}

/// An open file being written.
pub(crate) struct FileWriter {
    writer: AsyncArrowWriter<BufWriter>,
    schema: SchemaRef,
    path: String,
    id: i64,
    schema_version: u32,
    rows: u64,
    min_key: Option<Vec<u8>>,
    max_key: Vec<u8>,
    min_seq: i64,
    max_seq: i64,
}

impl FileWriter {
    /// Starts file `id` in directory `dir` of `store` (see [`data_file_path`]).
    pub(crate) fn create(
        store: &Arc<dyn ObjectStore>,
        dir: &str,
        def: &TableDefinition,
        id: i64,
    ) -> Result<Self> {
        let path = data_file_path(dir, id);
        let schema = file_schema(def);
        let sink = BufWriter::new(store.clone(), ObjectPath::from(path.as_str()));
        let writer = AsyncArrowWriter::try_new(sink, schema.clone(), Some(writer_properties(def)))
            .map_err(|source| Error::Parquet {
                op: format!("starting {path}"),
                source,
            })?;
        Ok(Self {
            writer,
            schema,
            path,
            id,
            schema_version: def.schema.version,
            rows: 0,
            min_key: None,
            max_key: Vec::new(),
            min_seq: i64::MAX,
            max_seq: i64::MIN,
        })
    }

    /// Appends rows, which must come in increasing `_key` order across calls.
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = project(batch, &self.schema)?;
        let keys = key_column(&batch, &self.path)?;
        if self.min_key.is_none() {
            self.min_key = Some(keys.value(0).to_vec());
        }
        self.max_key = keys.value(keys.len() - 1).to_vec();
        let seqs = batch
            .column_by_name(SEQ_COLUMN)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| Error::Corrupt {
                what: format!("rows written to {}", self.path),
                reason: format!("no `{SEQ_COLUMN}` column"),
            })?;
        if let (Some(lo), Some(hi)) = (arrow::compute::min(seqs), arrow::compute::max(seqs)) {
            self.min_seq = self.min_seq.min(lo);
            self.max_seq = self.max_seq.max(hi);
        }
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(&batch)
            .await
            .map_err(|source| Error::Parquet {
                op: format!("writing {}", self.path),
                source,
            })
    }

    /// Closes the file and returns its manifest entry (not yet committed).
    pub(crate) async fn finish(self, store: &dyn ObjectStore) -> Result<FileMeta> {
        let path = self.path;
        self.writer.close().await.map_err(|source| Error::Parquet {
            op: format!("closing {path}"),
            source,
        })?;
        let head = store
            .head(&ObjectPath::from(path.as_str()))
            .await
            .map_err(|source| Error::ObjectStore {
                op: format!("reading the size of {path}"),
                source,
            })?;
        Ok(FileMeta {
            id: self.id,
            path,
            rows: self.rows,
            size: head.size,
            min_key: self.min_key.unwrap_or_default(),
            max_key: self.max_key,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            schema_version: self.schema_version,
            created_at_ms: crate::seq::now_nanos() / 1_000_000,
        })
    }
}
