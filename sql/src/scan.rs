//! The leaf plan of a table read: the table's files through DataFusion's own Parquet scan
//! (`DataSourceExec` over a `ParquetSource`), unioned with its hot rows (a
//! `MemorySourceConfig`). The core's snapshot decides which rows are live: each file carries
//! its dead rows (deletion vector and rows newer hot entries hide) as a `ParquetAccessPlan`,
//! and exact per-file statistics (live rows, the footer's column statistics). DataFusion then
//! splits files by byte range across partitions, prunes row groups, pages and bloom filters,
//! pushes TopK's dynamic filters and reports all of it in `EXPLAIN ANALYZE`. Files are read
//! through the storage's own object store and metadata cache ([`FileAccess`]), and files of
//! an older schema version are mapped to the current columns by column id.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use bytes::Bytes;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Result as DfResult, ScalarValue, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileMetrics, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::logical_expr::Expr;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::union::UnionExec;
use futures::FutureExt;
use futures::future::BoxFuture;
use kalamstore_storage::codec::array_from_values;
use kalamstore_storage::format::{FileMeta, ObjectFileReader};
use kalamstore_storage::schema::SCHEMA_VERSION_METADATA;
use kalamstore_storage::{FileAccess, ScanFile, ScanSnapshot, TableDefinition};
use parking_lot::Mutex;

use crate::access::{cached_access_plan, pieces};
use crate::error::external;
use crate::views::by_name;

/// What a table read plans over.
pub(crate) struct ReadPlan<'a> {
    /// The table's current definition.
    pub(crate) def: Arc<TableDefinition>,
    /// The provider's schema (view types; `_seq`, `_updated` for `$meta`; `_user` last for
    /// an all-users read).
    pub(crate) schema: SchemaRef,
    /// Whether `_user` is the last column (an all-users read of a USER table).
    pub(crate) all_users: bool,
    /// The snapshot: files with their dead rows, hot rows in the storage's types.
    pub(crate) snapshot: ScanSnapshot,
    /// Reads of the files.
    pub(crate) access: FileAccess,
    /// Columns of `schema` to return.
    pub(crate) projection: Option<&'a Vec<usize>>,
    /// The filters DataFusion applies above the scan (its physical pushdown hands them to the
    /// Parquet source for pruning); with none and no column read, counts answer the read.
    pub(crate) filters: &'a [Expr],
    /// Rows to stop after, when no filter stands above.
    pub(crate) limit: Option<usize>,
}

/// Plans a table read (see the module doc).
pub(crate) async fn plan_read(
    state: &dyn Session,
    read: ReadPlan<'_>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let projection = read.projection.cloned();
    if projection.as_ref().is_some_and(Vec::is_empty) && read.filters.is_empty() {
        return Ok(count_only(&read));
    }
    // The hot rows hold the projected columns only (see `KalamTable::scan`).
    let hot_schema = match &projection {
        Some(p) => Arc::new(read.schema.project(p)?),
        None => read.schema.clone(),
    };
    let hot = read
        .snapshot
        .hot
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| by_name(b, &hot_schema))
        .collect::<DfResult<Vec<_>>>()?;
    // The hot rows come first: they are in memory, so a TopK above has seen them (and
    // tightened its dynamic filter) before the files are opened and pruned by it. With the
    // files first, a file whose footer is cached starts decoding before the hot rows' values
    // reach the filter.
    let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    if !hot.is_empty() {
        inputs.push(MemorySourceConfig::try_new_exec(&[hot], hot_schema, None)?);
    }
    if !read.snapshot.files.is_empty() {
        inputs.push(files_exec(state, &read).await?);
    }
    if inputs.is_empty() {
        let schema = match &projection {
            Some(p) => Arc::new(read.schema.project(p)?),
            None => read.schema.clone(),
        };
        return Ok(Arc::new(EmptyExec::new(schema)));
    }
    UnionExec::try_new(inputs)
}

/// A read that returns no column and has no filter (`COUNT(*)`) needs only the count, which
/// the snapshot holds exactly: each file's live rows and the hot rows. No file is opened and
/// no deletion vector turned into a row selection.
fn count_only(read: &ReadPlan<'_>) -> Arc<dyn ExecutionPlan> {
    let files: u64 = read.snapshot.files.iter().map(ScanFile::live_rows).sum();
    let hot: usize = read.snapshot.hot.iter().map(RecordBatch::num_rows).sum();
    count_exec(files.saturating_add(hot as u64))
}

/// A plan of one batch without columns holding `rows` rows.
pub(crate) fn count_exec(rows: u64) -> Arc<dyn ExecutionPlan> {
    let rows = usize::try_from(rows).unwrap_or(usize::MAX);
    let schema = Arc::new(Schema::empty());
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    // Invariant: a batch without columns takes any row count.
    let batch = RecordBatch::try_new_with_options(schema.clone(), Vec::new(), &options)
        .expect("a batch without columns");
    // Invariant: the batch matches the empty schema it was built with.
    MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None)
        .expect("the batch has the schema")
}

/// The files of a read as one `DataSourceExec`.
async fn files_exec(state: &dyn Session, read: &ReadPlan<'_>) -> DfResult<Arc<dyn ExecutionPlan>> {
    let (file_schema, partition_cols) = match read.all_users {
        true => {
            let n = read.schema.fields().len() - 1;
            let fields: Vec<Field> = (0..n).map(|i| read.schema.field(i).clone()).collect();
            let file_schema = Arc::new(Schema::new_with_metadata(
                fields,
                read.schema.metadata().clone(),
            ));
            (file_schema, vec![Arc::new(read.schema.field(n).clone())])
        }
        false => (read.schema.clone(), Vec::new()),
    };
    let mut files = Vec::with_capacity(read.snapshot.files.len());
    let mut statistics = Vec::with_capacity(read.snapshot.files.len());
    for file in &read.snapshot.files {
        let metadata = read.access.metadata(&file.meta).await.map_err(external)?;
        let whole = partitioned_file(
            &read.def,
            &file_schema,
            file,
            metadata.metadata(),
            read.all_users,
        )?;
        statistics.extend(whole.statistics.clone());
        match file.dead.is_empty() {
            true => files.push(whole),
            false => files.extend(pieces(whole, metadata.metadata())),
        }
    }
    // The scan's statistics are the whole files' (exact row counts); a piece's are inexact.
    let statistics = Statistics::try_merge_iter(statistics.iter().map(Arc::as_ref), &read.schema)?;
    let target = state.config().target_partitions().max(1);
    let groups = split_files(files, target)
        .into_iter()
        .map(|group| {
            let stats = group.iter().filter_map(|f| f.statistics.as_deref());
            let merged = Statistics::try_merge_iter(stats, &read.schema)?;
            Ok(group.with_statistics(Arc::new(merged)))
        })
        .collect::<DfResult<Vec<_>>>()?;
    let table_schema = TableSchema::builder(file_schema.clone())
        .with_table_partition_cols(partition_cols)
        .build();
    let options = TableParquetOptions {
        global: state.config_options().execution.parquet.clone(),
        ..TableParquetOptions::default()
    };
    // No predicate of our own: the filters stay in a `FilterExec` above (they are Inexact),
    // and DataFusion's physical filter pushdown hands them to the Parquet source, where a
    // predicate set here too was applied twice.
    let source = ParquetSource::new(table_schema)
        .with_table_parquet_options(options)
        .with_parquet_file_reader_factory(Arc::new(KalamReaderFactory {
            access: read.access.clone(),
        }));
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_groups(groups)
        .with_statistics(statistics)
        .with_projection_indices(read.projection.cloned())?
        .with_limit(read.limit)
        .with_expr_adapter(Some(Arc::new(SchemaVersions {
            def: read.def.clone(),
        })))
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// Files in up to `target` groups of about equal bytes, in the snapshot's (the manifest's)
/// order, each group a run of consecutive files; DataFusion splits large files further by
/// byte range. The order is the one a listing of the table's files gives, so a TopK query
/// meets the files' rows in the order DataFusion's own scan of them would.
fn split_files(files: Vec<PartitionedFile>, target: usize) -> Vec<FileGroup> {
    let total: u64 = files.iter().map(|f| f.object_meta.size).sum();
    let per_group = total.div_ceil(target.max(1) as u64).max(1);
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new()];
    let mut bytes = 0u64;
    for file in files {
        if bytes >= per_group && groups.len() < target {
            groups.push(Vec::new());
            bytes = 0;
        }
        bytes += file.object_meta.size;
        // Invariant: `groups` starts with one group and only grows.
        groups.last_mut().expect("a group").push(file);
    }
    groups
        .into_iter()
        .filter(|files| !files.is_empty())
        .map(FileGroup::new)
        .collect()
}

/// The file of the manifest behind a `PartitionedFile`.
#[derive(Debug, Clone)]
struct KalamFile(FileMeta);

/// One file of a read for DataFusion: its path and size, which rows to read (an access plan
/// when some are dead), its statistics, its user (an all-users read's partition value).
fn partitioned_file(
    def: &TableDefinition,
    file_schema: &SchemaRef,
    file: &ScanFile,
    metadata: &ParquetMetaData,
    all_users: bool,
) -> DfResult<PartitionedFile> {
    let live = usize::try_from(file.live_rows()).unwrap_or(usize::MAX);
    let mut statistics = footer_statistics(def, file_schema, &file.meta, metadata)?;
    if !file.dead.is_empty() {
        // Column bounds still hold for the live rows; counts of nulls and values may not.
        statistics = statistics.to_inexact();
    }
    statistics.num_rows = Precision::Exact(live);
    let mut partitioned = PartitionedFile::new(file.meta.path.clone(), file.meta.size)
        .with_extension(KalamFile(file.meta.clone()));
    if all_users {
        let user = file.user.as_ref().map(|u| u.as_str().to_owned());
        partitioned = partitioned.with_partition_values(vec![ScalarValue::Utf8(user)]);
    }
    if !file.dead.is_empty() {
        partitioned = partitioned.with_extension(cached_access_plan(metadata, file)?);
    }
    Ok(partitioned.with_statistics(Arc::new(statistics)))
}

/// Footer statistics of files, by path and size, for the schema version and column count they
/// were computed for (files never change).
type FooterStatistics = HashMap<(String, u64), ((u32, usize), Statistics)>;
static FOOTER_STATISTICS: LazyLock<Mutex<FooterStatistics>> = LazyLock::new(Mutex::default);

/// Files whose footer statistics are kept.
const KEPT_STATISTICS: usize = 4096;

/// The column statistics of a file's footer for a read of `file_schema` (all rows, before any
/// deletes), kept for the next read.
fn footer_statistics(
    def: &TableDefinition,
    file_schema: &SchemaRef,
    meta: &FileMeta,
    metadata: &ParquetMetaData,
) -> DfResult<Statistics> {
    let key = (def.schema.version, file_schema.fields().len());
    let file = (meta.path.clone(), meta.size);
    if let Some((at, stats)) = FOOTER_STATISTICS.lock().get(&file)
        && *at == key
    {
        return Ok(stats.clone());
    }
    let stats = match meta.schema_version == def.schema.version {
        true => DFParquetMetadata::statistics_from_parquet_metadata(metadata, file_schema)?,
        // Column names and types of older versions differ: only the row count holds.
        false => Statistics::new_unknown(file_schema),
    };
    let mut kept = FOOTER_STATISTICS.lock();
    if kept.len() >= KEPT_STATISTICS {
        kept.clear();
    }
    kept.insert(file, (key, stats.clone()));
    Ok(stats)
}

/// Readers of a table's files for DataFusion's Parquet scan: bytes through the storage's
/// cold store, footers (with page index) from its metadata cache.
#[derive(Debug)]
struct KalamReaderFactory {
    access: FileAccess,
}

impl ParquetFileReaderFactory for KalamReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        let Some(KalamFile(meta)) = file.extension::<KalamFile>().cloned() else {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "file {} of a kalamstore scan has no manifest entry",
                file.object_meta.location
            )));
        };
        let metrics = ParquetFileMetrics::new(partition_index, &meta.path, metrics);
        Ok(Box::new(KalamFileReader {
            inner: self.access.reader(&meta),
            access: self.access.clone(),
            meta,
            metrics,
        }))
    }
}

/// One file read for DataFusion (see [`KalamReaderFactory`]).
struct KalamFileReader {
    inner: ObjectFileReader,
    access: FileAccess,
    meta: FileMeta,
    metrics: ParquetFileMetrics,
}

impl AsyncFileReader for KalamFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        self.metrics
            .bytes_scanned
            .add(usize::try_from(range.end - range.start).unwrap_or(usize::MAX));
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, ParquetError>> {
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        self.metrics
            .bytes_scanned
            .add(usize::try_from(total).unwrap_or(usize::MAX));
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>, ParquetError>> {
        async move {
            let footer = self
                .access
                .metadata(&self.meta)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            Ok(footer.metadata().clone())
        }
        .boxed()
    }
}

/// Maps a file written under an older schema version onto the current columns by column id
/// (the version is in the file's key-value metadata): a renamed column is read under its old
/// name, a column the file predates (or a dropped one added again under its name) is its
/// default, a widened one is cast. Files of the current version need none of it.
#[derive(Debug)]
struct SchemaVersions {
    def: Arc<TableDefinition>,
}

impl PhysicalExprAdapterFactory for SchemaVersions {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> DfResult<Arc<dyn PhysicalExprAdapter>> {
        let inner = DefaultPhysicalExprAdapterFactory
            .create(logical_file_schema.clone(), physical_file_schema.clone())?;
        let version = physical_file_schema
            .metadata()
            .get(SCHEMA_VERSION_METADATA)
            .and_then(|v| v.parse::<u32>().ok());
        let old = version
            .filter(|v| *v != self.def.schema.version)
            .and_then(|v| self.def.version(v));
        let Some(old) = old else {
            return Ok(inner);
        };
        let mut columns = HashMap::new();
        for c in self.def.columns() {
            let Ok(logical) = logical_file_schema.field_with_name(&c.name) else {
                continue;
            };
            let source = match old.column_by_id(c.id) {
                Some(o) => match physical_file_schema.index_of(&o.name) {
                    Ok(at) => Source::File(o.name.clone(), at),
                    Err(_) => Source::Value(default_of(c, logical.data_type())?),
                },
                None => Source::Value(default_of(c, logical.data_type())?),
            };
            columns.insert(c.name.clone(), (source, logical.data_type().clone()));
        }
        Ok(Arc::new(VersionAdapter { columns, inner }))
    }
}

/// Where a current column's values come from in one file.
#[derive(Debug)]
enum Source {
    /// The file's column of this name, at this index.
    File(String, usize),
    /// A constant: the column's default (or NULL).
    Value(ScalarValue),
}

/// The default of a column the file predates, as a scalar of the read's type.
fn default_of(
    c: &kalamstore_storage::ColumnDefinition,
    data_type: &DataType,
) -> DfResult<ScalarValue> {
    let value = c
        .default
        .clone()
        .unwrap_or(kalamstore_storage::KalamValue::Null);
    if value.is_null() {
        return ScalarValue::try_from(data_type);
    }
    let array =
        array_from_values(&c.name, c.data_type, std::slice::from_ref(&value)).map_err(external)?;
    let array = cast(&array, data_type)?;
    ScalarValue::try_from_array(&array, 0)
}

#[derive(Debug)]
struct VersionAdapter {
    columns: HashMap<String, (Source, DataType)>,
    inner: Arc<dyn PhysicalExprAdapter>,
}

impl PhysicalExprAdapter for VersionAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> DfResult<Arc<dyn PhysicalExpr>> {
        let mapped = expr
            .transform(|e| {
                let Some(column) = e.downcast_ref::<Column>() else {
                    return Ok(Transformed::no(e));
                };
                let Some((source, data_type)) = self.columns.get(column.name()) else {
                    return Ok(Transformed::no(e));
                };
                let out: Arc<dyn PhysicalExpr> = match source {
                    Source::File(name, at) => Arc::new(CastExpr::new(
                        Arc::new(Column::new(name, *at)),
                        data_type.clone(),
                        None,
                    )),
                    Source::Value(v) => Arc::new(Literal::new(v.clone())),
                };
                Ok(Transformed::yes(out))
            })
            .data()?;
        self.inner.rewrite(mapped)
    }
}

impl fmt::Debug for KalamFileReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KalamFileReader")
            .field("path", &self.meta.path)
            .finish_non_exhaustive()
    }
}
