//! SQL through kalamstore's DataFusion provider next to what a user would run instead over the
//! same data, in one process and one run, both sides returning the same answer:
//!
//! - **clean**: `ROWS` rows flushed once, nothing hot, nothing deleted, against DataFusion's
//!   own Parquet `ListingTable` over the very same files;
//! - **10k hot**: the clean table with 10,000 of its rows updated and still hot: `COUNT(*)` and
//!   a point query, against the same queries on the clean table (per-query cost must follow
//!   what changed, not the table: compare the 1M and 10M rows of this pair);
//! - **changed**: then flushed, 10% deleted or updated and flushed again (deletion vectors),
//!   1% updated and left hot, against DataFusion's own Parquet scan over the same files given
//!   the same row selections (each file's deletion vector and hidden rows as a
//!   `ParquetAccessPlan`, the way delta-rs reads deletion vectors) with the same hot rows
//!   beside them: the same answer, what a user reading the files directly would run. For
//!   reference (no target), the same queries over a compacted copy: a `ListingTable` over one
//!   Parquet file of the table's current rows, written with the table's own writer
//!   properties.
//!
//! Queries: `COUNT(*)`, `GROUP BY` with `SUM`/`AVG`, a selective filter on a non-key column,
//! `ORDER BY ... LIMIT 10`, a point query by primary key. `KALAMSTORE_SQL_BENCH_ROWS` lists
//! the sizes (default `1000000`; `1000000,10000000` for both). Each timed iteration runs
//! both sides back to back, alternating which goes first, and the ratio divides the sums (this
//! VM's speed drifts minute to minute). After the groups, a streamed `SELECT *` through the
//! `kalamstore` binary reports its peak RSS next to the data size. Results go to
//! `$CARGO_TARGET_DIR/kalamstore-bench/sql.jsonl` for `bench-report`.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use kalamstore::{
    ColumnDefinition, KalamDataType, KalamValue, Mutation, NamespaceId, Scope, StorageId, Store,
    StoreConfig, TableDefinition, TableId, TableOptions, TableType,
};
use kalamstore_benches::{MemoryResult, RatioResult, sql_memory_path, sql_results_path};
use kalamstore_sql::{Principal, SqlOutput, SqlSession};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rows written per insert batch of the fixture.
const LOAD_BATCH: i64 = 50_000;

/// Hot rows of the "10k hot" fixture.
const HOT_ROWS: i64 = 10_000;

/// One measured pair: summed time of ours and of the baseline, and the iteration count.
type Times = HashMap<String, (Duration, Duration, u64)>;
static TIMES: Mutex<Option<Times>> = Mutex::new(None);

/// The table sizes to run.
fn sizes() -> Vec<i64> {
    std::env::var("KALAMSTORE_SQL_BENCH_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .filter(|v: &Vec<i64>| !v.is_empty())
        .unwrap_or_else(|| vec![1_000_000])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn table() -> TableId {
    "bench.events".parse().expect("a table id")
}

fn row(i: i64, amount: f64) -> Vec<(String, KalamValue)> {
    vec![
        ("id".into(), KalamValue::BigInt(i)),
        ("kind".into(), KalamValue::Text(format!("kind-{}", i % 8))),
        ("score".into(), KalamValue::BigInt(i % 100_000)),
        ("amount".into(), KalamValue::Double(amount)),
        (
            "note".into(),
            KalamValue::Text(format!("event {i} of the bench")),
        ),
    ]
}

/// Writes `change(i)` for every `i` of `range` that has one, in batches.
async fn write(
    store: &Store,
    range: std::ops::Range<i64>,
    change: impl Fn(i64) -> Option<Mutation>,
) {
    let mut at = range.start;
    while at < range.end {
        let end = (at + LOAD_BATCH).min(range.end);
        let batch: Vec<Mutation> = (at..end).filter_map(&change).collect();
        if !batch.is_empty() {
            store.write(&table(), None, batch).await.expect("write");
        }
        at = end;
    }
}

async fn flush(store: &Store) {
    store
        .flush_table(&table(), Scope::All)
        .await
        .expect("flush");
}

/// A data directory with `rows` rows flushed once.
async fn clean_fixture(dir: &Path, rows: i64) -> Store {
    let mut config = StoreConfig::new(dir, Arc::new(kalamstore::Engines::default()));
    config.background = false;
    let store = Store::open(config).await.expect("store");
    store
        .create_namespace(&NamespaceId::new("bench").expect("ns"), true)
        .await
        .expect("namespace");
    let def = TableDefinition::new(
        table(),
        TableType::Shared,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("kind", KalamDataType::Text).not_null(),
            ColumnDefinition::new("score", KalamDataType::BigInt).not_null(),
            ColumnDefinition::new("amount", KalamDataType::Double).not_null(),
            ColumnDefinition::new("note", KalamDataType::Text),
        ],
        StorageId::local(),
        TableOptions::default(),
        0,
    )
    .expect("definition");
    store.create_table(def, true).await.expect("table");
    write(&store, 0..rows, |i| {
        Some(Mutation::Insert(row(i, (i % 1000) as f64 / 10.0)))
    })
    .await;
    flush(&store).await;
    store
}

/// `HOT_ROWS` rows of the table, spread over it, updated and left hot.
async fn add_hot_rows(store: &Store, rows: i64) {
    let step = (rows / HOT_ROWS).max(1);
    write(store, 0..rows, |i| {
        (i % step == 3).then(|| Mutation::Upsert(row(i, 750.0)))
    })
    .await;
}

/// The changed fixture from the 10k-hot one: flushed, 10% deleted or updated and flushed
/// (deletion vectors), 1% updated and left hot.
async fn change(store: &Store, rows: i64) {
    flush(store).await;
    write(store, 0..rows, |i| match i % 20 {
        0 => Some(Mutation::Delete {
            key: vec![KalamValue::BigInt(i)],
        }),
        10 => Some(Mutation::Upsert(row(i, 500.0))),
        _ => None,
    })
    .await;
    flush(store).await;
    write(store, 0..rows, |i| {
        (i % 100 == 5).then(|| Mutation::Upsert(row(i, 250.0)))
    })
    .await;
}

/// The table's current rows as Parquet in `dir`, written with the table's own writer
/// properties: the files a user would keep instead (a compacted copy).
async fn parquet_copy(store: &Store, session: &SqlSession, dir: &Path) {
    let def = store.table(&table()).await.expect("definition");
    let props = kalamstore::format::writer_properties(&def);
    let SqlOutput::Rows(mut rows) = session
        .run("SELECT * FROM bench.events ORDER BY id", &[])
        .await
        .expect("select")
    else {
        panic!("a query returns rows");
    };
    let mut writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    while let Some(batch) = rows.try_next().await.expect("rows") {
        // The storage's types (the provider reads text as views).
        let schema = def.arrow_schema(false);
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()).expect("cast"))
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        let w = writer.get_or_insert_with(|| {
            let file = std::fs::File::create(dir.join("copy.parquet")).expect("file");
            parquet::arrow::ArrowWriter::try_new(file, schema, Some(props.clone())).expect("writer")
        });
        w.write(&batch).expect("write");
    }
    if let Some(w) = writer {
        w.close().expect("close");
    }
}

/// The changed fixture as a user would read its files without kalamstore: DataFusion's own
/// Parquet scan (its default reader over the local file system, footer statistics) over the
/// table's files, each with its dead rows as a `ParquetAccessPlan`, and the hot rows in memory
/// beside them.
#[derive(Debug)]
struct SameFiles {
    schema: arrow::datatypes::SchemaRef,
    files: Vec<datafusion::datasource::listing::PartitionedFile>,
    hot: Vec<RecordBatch>,
}

impl SameFiles {
    async fn new(store: &Store, cold: &Path) -> Self {
        use datafusion::common::stats::Precision;
        use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
        use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
        use parquet::arrow::arrow_reader::RowSelection;
        let scan = store
            .scan_stream(&table(), None, &kalamstore::ScanOptions::all())
            .await
            .expect("scan");
        let snapshot = scan.snapshot_files().await.expect("snapshot");
        let stored = scan.definition().arrow_schema(false);
        let fields: Vec<arrow::datatypes::Field> = stored
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                arrow::datatypes::DataType::Utf8 => f
                    .as_ref()
                    .clone()
                    .with_data_type(arrow::datatypes::DataType::Utf8View),
                _ => f.as_ref().clone(),
            })
            .collect();
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let mut files = Vec::new();
        for f in &snapshot.files {
            let path = cold.join(&f.meta.path);
            let bytes = std::fs::read(&path).expect("file");
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .parse_and_finish(&bytes::Bytes::from(bytes))
                .expect("footer");
            let mut stats = DFParquetMetadata::statistics_from_parquet_metadata(&metadata, &schema)
                .expect("statistics");
            let mut plan = ParquetAccessPlan::new_all(metadata.num_row_groups());
            if !f.dead.is_empty() {
                stats = stats.to_inexact();
                let mut start = 0u64;
                for (i, rg) in metadata.row_groups().iter().enumerate() {
                    let rows = rg.num_rows() as u64;
                    // Runs of live rows between the dead ones.
                    let mut live: Vec<std::ops::Range<usize>> = Vec::new();
                    let mut run = 0usize;
                    for d in f.dead.iter().filter(|d| (start..start + rows).contains(d)) {
                        let d = (d - start) as usize;
                        if d > run {
                            live.push(run..d);
                        }
                        run = d + 1;
                    }
                    if run < rows as usize {
                        live.push(run..rows as usize);
                    }
                    let selection =
                        RowSelection::from_consecutive_ranges(live.into_iter(), rows as usize);
                    plan.set(i, RowGroupAccess::Selection(selection));
                    start += rows;
                }
            }
            stats.num_rows = Precision::Exact(f.live_rows() as usize);
            let mut file = datafusion::datasource::listing::PartitionedFile::new(
                path.to_string_lossy().into_owned(),
                f.meta.size,
            )
            .with_statistics(Arc::new(stats));
            if !f.dead.is_empty() {
                file = file.with_extension(plan);
            }
            files.push(file);
        }
        let hot = snapshot
            .hot
            .iter()
            .map(|b| {
                let columns = b
                    .columns()
                    .iter()
                    .zip(schema.fields())
                    .map(|(c, f)| arrow::compute::cast(c, f.data_type()).expect("cast"))
                    .collect();
                RecordBatch::try_new(schema.clone(), columns).expect("batch")
            })
            .collect();
        Self { schema, files, hot }
    }
}

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for SameFiles {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::logical_expr::Expr],
    ) -> datafusion::common::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>>
    {
        Ok(vec![
            datafusion::logical_expr::TableProviderFilterPushDown::Inexact;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::datasource::physical_plan::{
            FileGroup, FileScanConfigBuilder, ParquetSource,
        };
        let mut source = ParquetSource::new(self.schema.clone());
        if let Some(predicate) = datafusion::logical_expr::utils::conjunction(filters.to_vec()) {
            let df_schema = datafusion::common::DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let groups: Vec<FileGroup> = self
            .files
            .chunks(self.files.len().div_ceil(2).max(1))
            .map(|c| FileGroup::new(c.to_vec()))
            .collect();
        let stats = datafusion::common::Statistics::try_merge_iter(
            self.files.iter().filter_map(|f| f.statistics.as_deref()),
            &self.schema,
        )?;
        let config = FileScanConfigBuilder::new(
            datafusion::datasource::object_store::ObjectStoreUrl::local_filesystem(),
            Arc::new(source),
        )
        .with_file_groups(groups)
        .with_statistics(stats)
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .build();
        let files: Arc<dyn datafusion::physical_plan::ExecutionPlan> =
            datafusion::datasource::source::DataSourceExec::from_data_source(config);
        let hot = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
            std::slice::from_ref(&self.hot),
            self.schema.clone(),
            projection.cloned(),
        )?;
        datafusion::physical_plan::union::UnionExec::try_new(vec![files, hot])
    }
}

async fn ours(session: &SqlSession, sql: &str) -> usize {
    match session.run(sql, &[]).await.expect("query") {
        SqlOutput::Rows(stream) => {
            let batches: Vec<RecordBatch> = stream.try_collect().await.expect("rows");
            batches.iter().map(RecordBatch::num_rows).sum()
        }
        SqlOutput::Changed { .. } => 0,
    }
}

async fn listing(ctx: &SessionContext, sql: &str) -> usize {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("rows");
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// One query: label, ours, the baseline's SQL, target.
struct Query {
    label: &'static str,
    sql: String,
    baseline: String,
    target: &'static str,
}

/// The queries of one fixture, `(the target of the four scans, of the point query)`.
fn queries(rows: i64, targets: (&'static str, &'static str)) -> Vec<Query> {
    let q = |label, sql: &str, target| Query {
        label,
        sql: sql.replace("{t}", "bench.events"),
        baseline: sql.replace("{t}", "events"),
        target,
    };
    vec![
        q("(a) COUNT(*)", "SELECT count(*) FROM {t}", targets.0),
        q(
            "(b) GROUP BY kind, SUM, AVG",
            "SELECT kind, sum(amount), avg(amount) FROM {t} GROUP BY kind",
            targets.0,
        ),
        q(
            "(c) selective filter on a non-key column",
            "SELECT id, amount FROM {t} WHERE score = 4242",
            targets.0,
        ),
        q(
            "(d) ORDER BY amount DESC LIMIT 10",
            "SELECT id, amount FROM {t} ORDER BY amount DESC, id LIMIT 10",
            targets.0,
        ),
        q(
            "(e) point query by primary key",
            &format!("SELECT * FROM {{t}} WHERE id = {}", rows / 2 + 1),
            targets.1,
        ),
    ]
}

/// Times `mine` (through `session`) against `theirs` (through `their`), paired, under
/// `key`, after checking that both return the same number of rows.
#[allow(clippy::too_many_arguments)]
fn pair(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    key: &str,
    session: &SqlSession,
    mine: &str,
    their: impl Fn() -> Duration,
    check: usize,
) {
    assert_eq!(rt.block_on(ours(session, mine)), check, "{key}: {mine}");
    let mut group = c.benchmark_group(key);
    group.sample_size(10);
    let mut flip = false;
    group.bench_function("kalamstore, then the baseline (paired)", |b| {
        b.iter_custom(|iters| {
            let (mut a, mut z) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..iters {
                flip = !flip;
                let time_ours = || {
                    let start = Instant::now();
                    rt.block_on(ours(session, mine));
                    start.elapsed()
                };
                if flip {
                    a += time_ours();
                    z += their();
                } else {
                    z += their();
                    a += time_ours();
                }
            }
            let mut times = TIMES.lock().expect("times");
            let entry = times
                .get_or_insert_with(HashMap::new)
                .entry(key.to_owned())
                .or_default();
            entry.0 += a;
            entry.1 += z;
            entry.2 += iters;
            a + z
        })
    });
    group.finish();
}

/// A recorded pair: what `key` names, and its description.
struct Recorded {
    key: String,
    ours: String,
    baseline: String,
    target: String,
}

fn sql(c: &mut Criterion) {
    let rt = runtime();
    let mut recorded = Vec::new();
    let mut last_dir = None;
    for rows in sizes() {
        let millions = format!("{}M", rows as f64 / 1e6);
        let dir = tempfile::tempdir().expect("temp dir");
        let store = rt.block_on(clean_fixture(dir.path(), rows));
        let session = rt
            .block_on(SqlSession::new(store.clone(), Principal::Anonymous))
            .expect("session");

        // (i) Clean: the very same files through DataFusion's ListingTable.
        let ctx = SessionContext::new();
        let files = dir.path().join("cold/bench/events/");
        rt.block_on(ctx.register_parquet(
            "events",
            files.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        ))
        .expect("listing table");
        for q in queries(rows, ("<= 1.10x time", "<= 0.5x time")) {
            let key = format!("{millions} rows, clean: {}", q.label);
            let check = rt.block_on(listing(&ctx, &q.baseline));
            let their = || {
                let start = Instant::now();
                rt.block_on(listing(&ctx, &q.baseline));
                start.elapsed()
            };
            pair(c, &rt, &key, &session, &q.sql, their, check);
            recorded.push(Recorded {
                key,
                ours: "kalamstore".into(),
                baseline: "DataFusion ListingTable, same files".into(),
                target: q.target.into(),
            });
        }

        // 10k hot rows: what the same two queries cost once 10,000 rows changed.
        let clean = rt
            .block_on(SqlSession::new(store.clone(), Principal::Anonymous))
            .expect("session");
        let point = format!("SELECT * FROM bench.events WHERE id = {}", rows / 2 + 1);
        let hot_queries = [
            ("COUNT(*)", "SELECT count(*) FROM bench.events".to_owned()),
            ("point query by primary key", point),
        ];
        // The clean timings first, then the same queries over the hot rows.
        let mut clean_times = Vec::new();
        for (_, sql) in &hot_queries {
            let start = Instant::now();
            let n = 50;
            for _ in 0..n {
                rt.block_on(ours(&clean, sql));
            }
            clean_times.push(start.elapsed() / n);
        }
        rt.block_on(add_hot_rows(&store, rows));
        for ((label, sql), clean_time) in hot_queries.iter().zip(clean_times) {
            let key = format!("{millions} rows + 10k hot: {label}");
            let check = rt.block_on(ours(&session, sql));
            pair(c, &rt, &key, &session, sql, || clean_time, check);
            recorded.push(Recorded {
                key,
                ours: "kalamstore, 10k rows hot".into(),
                baseline: "kalamstore, nothing hot (same table before)".into(),
                target: "10M / 1M <= 1.5x".into(),
            });
        }

        // (ii) Changed: against DataFusion's scan of the same files with the same selections,
        // then (for reference) a compacted copy of the same rows.
        rt.block_on(change(&store, rows));
        let same = rt.block_on(SameFiles::new(&store, &dir.path().join("cold")));
        let ctx = SessionContext::new();
        ctx.register_table("events", Arc::new(same))
            .expect("same-files table");
        let copy = tempfile::tempdir().expect("temp dir");
        rt.block_on(parquet_copy(&store, &session, copy.path()));
        let compacted = SessionContext::new();
        rt.block_on(compacted.register_parquet(
            "events",
            copy.path().to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        ))
        .expect("listing table");
        for (ctx, baseline, fixture) in [
            (
                &ctx,
                "DataFusion's Parquet scan, same files and selections, same hot rows",
                "changed",
            ),
            (
                &compacted,
                "ListingTable over a compacted copy of the rows",
                "changed vs compacted",
            ),
        ] {
            for q in queries(rows, ("<= 1.3x time", "<= 1.3x time")) {
                let target = match (fixture, q.label) {
                    ("changed", "(a) COUNT(*)") => "<= 1.1x time",
                    ("changed", _) => q.target,
                    _ => "(reference)",
                };
                let key = format!("{millions} rows, {fixture}: {}", q.label);
                let check = rt.block_on(listing(ctx, &q.baseline));
                let their = || {
                    let start = Instant::now();
                    rt.block_on(listing(ctx, &q.baseline));
                    start.elapsed()
                };
                pair(c, &rt, &key, &session, &q.sql, their, check);
                recorded.push(Recorded {
                    key,
                    ours: "kalamstore".into(),
                    baseline: baseline.into(),
                    target: target.into(),
                });
            }
        }
        rt.block_on(store.close()).expect("close");
        last_dir = Some((dir, rows));
    }
    let rss =
        last_dir.and_then(|(dir, rows)| streamed_select_rss(dir.path(), rows).map(|r| (r, rows)));
    report(&recorded, rss);
}

/// Bytes under a directory.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => du(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    })
}

/// Peak RSS of the `kalamstore` binary streaming `SELECT *` of the table to `/dev/null`, and
/// the data size; `None` when the binary is not built.
fn streamed_select_rss(dir: &Path, rows: i64) -> Option<(u64, u64, Duration)> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let binary = ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("kalamstore"))
        .find(|p| p.exists())?;
    let (elapsed, peak) = kalamstore_benches::run_with_peak_rss(
        std::process::Command::new(&binary)
            .arg("--data-dir")
            .arg(dir)
            .args(["--format", "csv", "-c", "SELECT * FROM bench.events"]),
        Duration::from_millis(20),
    )?;
    eprintln!(
        "streamed SELECT * of {rows} rows: peak RSS {} MiB, data {} MiB, {elapsed:?}",
        peak >> 20,
        du(dir) >> 20
    );
    Some((peak, du(dir), elapsed))
}

fn report(recorded: &[Recorded], rss: Option<((u64, u64, Duration), i64)>) {
    let times = TIMES.lock().expect("times").take().unwrap_or_default();
    let path = sql_results_path();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("results dir");
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("results file");
    for r in recorded {
        let Some((a, z, n)) = times.get(&r.key) else {
            continue;
        };
        let n = (*n).max(1) as f64;
        let result = RatioResult {
            bench: r.key.clone(),
            ours: r.ours.clone(),
            baseline: r.baseline.clone(),
            ours_secs: a.as_secs_f64() / n,
            baseline_secs: z.as_secs_f64() / n,
            target: r.target.clone(),
            bytes: None,
        };
        writeln!(out, "{}", serde_json::to_string(&result).expect("json")).expect("write");
    }
    if let Some(((peak, data, elapsed), rows)) = rss {
        let millions = format!("{}M", rows as f64 / 1e6);
        let r = MemoryResult {
            bench: format!("{millions} rows: streamed SELECT * through the CLI"),
            peak_rss_bytes: peak,
            data_bytes: data,
            secs: elapsed.as_secs_f64(),
            target: "peak RSS < 300 MiB".into(),
        };
        let mut memory = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sql_memory_path())
            .expect("results file");
        writeln!(memory, "{}", serde_json::to_string(&r).expect("json")).expect("write");
    }
}

criterion_group!(benches, sql);
criterion_main!(benches);
