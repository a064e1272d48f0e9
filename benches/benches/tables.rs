//! The table layer against the raw libraries, side by side in one run:
//! - flush of 1M rows vs plain arrow-rs `ArrowWriter` writing the same batches (the columns a
//!   flush writes: user columns, `_seq`, `_updated`, `_key`; same writer properties);
//! - full scan of 1M flushed rows with 10% deleted or updated after their flush (deletion
//!   vectors, hot tier empty), and with those 10% still hot, vs a plain
//!   `ParquetRecordBatchReader` over the same data files with no deletes applied;
//! - point get of a flushed row vs plain rust-rocksdb `get` of the same bytes;
//! - inserts vs plain rust-rocksdb `WriteBatch` puts of the same keys and row bytes;
//! - a storage move of 1M and of 10M flushed rows + 10k hot rows (RocksDB + local Parquet to
//!   another RocksDB + local directory, verified) vs a plain `object_store` get + put of the
//!   same files.
//!
//! Both sides of a pair run in this process, on the `kalamstore` binary's allocator (mimalloc).
//! The flush and insert ratios pair each timed run with a baseline run just before or after
//! it (alternately), so both sides of a ratio see the same machine.
//!
//! Each pair's mean times go to `$CARGO_TARGET_DIR/kalamstore-bench/tables.jsonl` for
//! `bench-report`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use criterion::{Criterion, criterion_group, criterion_main};
use kalamstore::codec::{Row, SystemColumns};
use kalamstore::{
    ColumnDefinition, KalamDataType, KalamValue, Mutation, NamespaceId, ScanOptions, Scope,
    StorageId, Store, StoreConfig, TableDefinition, TableId, TableOptions, TableType,
};
use kalamstore_benches::{RatioResult, tables_results_path};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The allocator the `kalamstore` binary ships with; both sides of every pair run on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: i64 = 1_000_000;
const INSERT_BATCH: i64 = 1000;
/// Rows of the insert bench.
const INSERTS: i64 = 100_000;

static TIMES: Mutex<Option<HashMap<String, (Duration, u64)>>> = Mutex::new(None);

fn record(label: &str, elapsed: Duration, iters: u64) {
    let mut times = TIMES.lock().unwrap();
    let entry = times
        .get_or_insert_with(HashMap::new)
        .entry(label.to_owned())
        .or_default();
    entry.0 += elapsed;
    entry.1 += iters;
}

fn mean(label: &str) -> f64 {
    let times = TIMES.lock().unwrap();
    times
        .as_ref()
        .and_then(|t| t.get(label))
        .map_or(f64::NAN, |(d, n)| d.as_secs_f64() / (*n).max(1) as f64)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn table_def() -> TableDefinition {
    TableDefinition::new(
        "bench.chat".parse().unwrap(),
        TableType::Shared,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("body", KalamDataType::Text),
            ColumnDefinition::new("n", KalamDataType::Int),
        ],
        StorageId::local(),
        TableOptions::default(),
        0,
    )
    .unwrap()
}

fn body(i: i64) -> String {
    format!(
        "message {i} from a chat history, long enough to look like one {}",
        i % 97
    )
}

fn row(i: i64) -> Vec<(String, KalamValue)> {
    vec![
        ("id".into(), KalamValue::BigInt(i)),
        ("body".into(), KalamValue::Text(body(i))),
        ("n".into(), KalamValue::Int((i % 1000) as i32)),
    ]
}

fn table() -> TableId {
    "bench.chat".parse().unwrap()
}

async fn fresh_store(dir: &std::path::Path) -> Store {
    let mut config = StoreConfig::new(dir, Arc::new(kalamstore::Engines::default()));
    config.background = false;
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("bench").unwrap(), true)
        .await
        .unwrap();
    store.create_table(table_def(), true).await.unwrap();
    store
}

async fn load(store: &Store, range: std::ops::Range<i64>) {
    let mut at = range.start;
    while at < range.end {
        let end = (at + INSERT_BATCH).min(range.end);
        store
            .insert(&table(), None, (at..end).map(row).collect())
            .await
            .unwrap();
        at = end;
    }
}

/// The batches a flush of `0..ROWS` writes: flushed once, read back from the file, so the
/// baseline writes the very same columns (the user columns, `_seq`, `_updated` and `_key`).
fn flushed_batches(rt: &tokio::runtime::Runtime) -> Vec<RecordBatch> {
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let store = fresh_store(dir.path()).await;
        load(&store, 0..ROWS).await;
        store.flush_table(&table(), Scope::All).await.unwrap();
        let files = store.manifest(&table()).await.unwrap();
        store.close().await.unwrap();
        let mut out = Vec::new();
        for (_, f) in files {
            let file = std::fs::File::open(dir.path().join("cold").join(&f.meta.path)).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .with_batch_size(8192)
                .build()
                .unwrap();
            out.extend(reader.map(Result::unwrap));
        }
        assert_eq!(
            out.iter().map(RecordBatch::num_rows).sum::<usize>() as i64,
            ROWS
        );
        out
    })
}

/// Writes `data` to a new local file with a plain `ArrowWriter`; the time it took.
fn plain_write(
    data: &[RecordBatch],
    props: &parquet::file::properties::WriterProperties,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let file = std::fs::File::create(dir.path().join("plain.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, data[0].schema(), Some(props.clone())).unwrap();
    for batch in data {
        w.write(batch).unwrap();
    }
    w.close().unwrap();
    start.elapsed()
}

fn flush(c: &mut Criterion) {
    let rt = runtime();
    let data = flushed_batches(&rt);
    let props = kalamstore::format::writer_properties(&table_def());
    let mut group = c.benchmark_group("flush 1M rows");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    let mut pairs = 0u64;
    group.bench_function("kalamstore flush_table", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut paired = Duration::ZERO;
            for _ in 0..iters {
                // Each flush is paired with a baseline write of the same minute, alternately
                // right before and right after it: this VM's speed drifts by tens of percent
                // within a minute, and the moments after a load or a close run slower.
                pairs += 1;
                let baseline_first = pairs.is_multiple_of(2);
                let dir = tempfile::tempdir().unwrap();
                let (ours, before) = rt.block_on(async {
                    let store = fresh_store(dir.path()).await;
                    load(&store, 0..ROWS).await;
                    let before = baseline_first.then(|| plain_write(&data, &props));
                    let start = Instant::now();
                    store.flush_table(&table(), Scope::All).await.unwrap();
                    let elapsed = start.elapsed();
                    store.close().await.unwrap();
                    (elapsed, before)
                });
                total += ours;
                paired += before.unwrap_or_else(|| plain_write(&data, &props));
            }
            record("flush/ours", total, iters);
            record("flush/baseline", paired, iters);
            total
        })
    });
    group.bench_function("arrow-rs ArrowWriter", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| plain_write(&data, &props)).sum())
    });
    group.finish();
}

/// A store with 1M flushed rows, then 5% deleted and 5% updated; `flush_changes` decides
/// whether those changes are flushed (deletion vectors) or stay hot.
async fn scan_fixture(
    dir: &std::path::Path,
    flush_changes: bool,
) -> (Store, Vec<std::path::PathBuf>) {
    let store = fresh_store(dir).await;
    load(&store, 0..ROWS).await;
    store.flush_table(&table(), Scope::All).await.unwrap();
    let data_files: Vec<std::path::PathBuf> = store
        .manifest(&table())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, f)| dir.join("cold").join(&f.meta.path))
        .collect();
    let mut changes = Vec::new();
    for i in (0..ROWS).step_by(10) {
        changes.push(if (i / 10) % 2 == 0 {
            Mutation::Delete {
                key: vec![KalamValue::BigInt(i)],
            }
        } else {
            Mutation::Update {
                key: vec![KalamValue::BigInt(i)],
                set: vec![("n".into(), KalamValue::Int(-1))],
            }
        });
        if changes.len() == 1000 {
            store
                .write(&table(), None, std::mem::take(&mut changes))
                .await
                .unwrap();
        }
    }
    if !changes.is_empty() {
        store.write(&table(), None, changes).await.unwrap();
    }
    if flush_changes {
        store.flush_table(&table(), Scope::All).await.unwrap();
    }
    (store, data_files)
}

fn plain_scan(files: &[std::path::PathBuf]) -> usize {
    let mut rows = 0;
    for path in files {
        let file = std::fs::File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .with_batch_size(8192)
            .build()
            .unwrap();
        for batch in reader {
            rows += batch.unwrap().num_rows();
        }
    }
    rows
}

fn scan(c: &mut Criterion) {
    let rt = runtime();
    for (flushed, label) in [(true, "deletion vectors"), (false, "hot tombstones")] {
        let dir = tempfile::tempdir().unwrap();
        let (store, files) = rt.block_on(scan_fixture(dir.path(), flushed));
        let mut group = c.benchmark_group(format!("scan 1M rows, 10% changed ({label})"));
        group.sample_size(10);
        let key = format!("scan-{flushed}");
        group.bench_function("kalamstore scan", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let rows: usize = rt
                        .block_on(store.scan(&table(), None, &ScanOptions::all()))
                        .unwrap()
                        .iter()
                        .map(RecordBatch::num_rows)
                        .sum();
                    assert_eq!(rows as i64, ROWS - ROWS / 20);
                }
                let total = start.elapsed();
                record(&format!("{key}/ours"), total, iters);
                total
            })
        });
        group.bench_function("ParquetRecordBatchReader, no deletes", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    assert_eq!(plain_scan(&files) as i64, ROWS);
                }
                let total = start.elapsed();
                record(&format!("{key}/baseline"), total, iters);
                total
            })
        });
        group.finish();
        rt.block_on(store.close()).unwrap();
    }
}

fn point_get(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let store = fresh_store(dir.path()).await;
        load(&store, 0..ROWS).await;
        store.flush_table(&table(), Scope::All).await.unwrap();
        store
    });
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = rocksdb::DB::open_default(plain_dir.path()).unwrap();
    for i in 0..ROWS {
        let (k, v) = encoded(i);
        plain.put(k, v).unwrap();
    }
    plain.flush().unwrap();
    drop(plain);
    // The first get after an open, both sides: ours loads the file's footer, `_key` page
    // directory, bloom filter and one key page; RocksDB its index and data blocks.
    let (store, cold) = rt.block_on(async {
        store.close().await.unwrap();
        let store = fresh_store(dir.path()).await;
        let start = Instant::now();
        let got = store
            .get(&table(), None, &[KalamValue::BigInt(ROWS / 3)])
            .await
            .unwrap();
        assert!(got.is_some());
        (store, start.elapsed())
    });
    record("get-cold/ours", cold, 1);
    let plain = rocksdb::DB::open_default(plain_dir.path()).unwrap();
    let start = Instant::now();
    assert!(plain.get((ROWS / 3).to_be_bytes()).unwrap().is_some());
    record("get-cold/baseline", start.elapsed(), 1);
    let mut group = c.benchmark_group("point get of a flushed row");
    let mut n = 0i64;
    group.bench_function("kalamstore get", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                n = (n + 7919) % ROWS;
                let got = rt
                    .block_on(store.get(&table(), None, &[KalamValue::BigInt(n)]))
                    .unwrap();
                assert!(got.is_some());
            }
            let total = start.elapsed();
            record("get/ours", total, iters);
            total
        })
    });
    group.bench_function("rust-rocksdb get", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                n = (n + 7919) % ROWS;
                assert!(plain.get(n.to_be_bytes()).unwrap().is_some());
            }
            let total = start.elapsed();
            record("get/baseline", total, iters);
            total
        })
    });
    group.finish();
    rt.block_on(store.close()).unwrap();
}

/// The bytes a row of `row(i)` is stored as, and its key: what the plain baseline writes.
fn encoded(i: i64) -> (Vec<u8>, Vec<u8>) {
    let values = row(i).into_iter().map(|(_, v)| v).collect();
    let bytes = Row {
        schema_version: 1,
        values,
        system: SystemColumns::default(),
    }
    .encode();
    (i.to_be_bytes().to_vec(), bytes)
}

/// `INSERTS` rows of `encoded` in batches of `INSERT_BATCH` into a fresh plain rust-rocksdb
/// database; the time the writes took.
fn plain_insert() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let db = rocksdb::DB::open_default(dir.path()).unwrap();
    let start = Instant::now();
    for chunk in (0..INSERTS)
        .collect::<Vec<_>>()
        .chunks(INSERT_BATCH as usize)
    {
        let mut batch = rocksdb::WriteBatch::default();
        for i in chunk {
            let (k, v) = encoded(*i);
            batch.put(k, v);
        }
        db.write(batch).unwrap();
    }
    start.elapsed()
}

/// Runs in its own function so the point-get fixtures (and the plain database's background
/// compactions) are gone before either side is timed. Paired like the flush: each timed
/// insert run next to a plain one, alternately before and after it.
fn insert(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("insert 100k rows");
    group.sample_size(10);
    let mut pairs = 0u64;
    group.bench_function("kalamstore insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut paired = Duration::ZERO;
            for _ in 0..iters {
                pairs += 1;
                let baseline_first = pairs.is_multiple_of(2);
                if baseline_first {
                    paired += plain_insert();
                }
                let dir = tempfile::tempdir().unwrap();
                total += rt.block_on(async {
                    let store = fresh_store(dir.path()).await;
                    let start = Instant::now();
                    load(&store, 0..INSERTS).await;
                    let elapsed = start.elapsed();
                    store.close().await.unwrap();
                    elapsed
                });
                if !baseline_first {
                    paired += plain_insert();
                }
            }
            record("insert/ours", total, iters);
            record("insert/baseline", paired, iters);
            total
        })
    });
    group.bench_function("rust-rocksdb WriteBatch put", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| plain_insert()).sum())
    });
    group.finish();
}

/// Bytes of the flushed files each move bench moved, by its key.
static MOVED_BYTES: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn move_1m(c: &mut Criterion) {
    move_table(c, ROWS, "move", "move 1M flushed + 10k hot rows");
}

fn move_10m(c: &mut Criterion) {
    move_table(c, 10 * ROWS, "move-10m", "move 10M flushed + 10k hot rows");
}

/// Moves a table of `rows` flushed rows and 10k hot rows between two storages, against a plain
/// get + put of its files; records under `key`.
fn move_table(c: &mut Criterion, rows: i64, key: &str, title: &str) {
    use object_store::{ObjectStore, ObjectStoreExt};

    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (store, bytes) = rt.block_on(async {
        let store = fresh_store(dir.path()).await;
        load(&store, 0..rows).await;
        store.flush_table(&table(), Scope::All).await.unwrap();
        load(&store, rows..rows + 10_000).await;
        store
            .create_storage(kalamstore::StorageDefinition {
                id: StorageId::new("second").unwrap(),
                hot: kalamstore::HotEngine::RocksDb {
                    path: dir.path().join("second-hot").to_string_lossy().into_owned(),
                },
                cold_url: dir
                    .path()
                    .join("second-cold")
                    .to_string_lossy()
                    .into_owned(),
                s3: kalamstore::S3Options::default(),
                cache: None,
                metadata_cache_bytes: None,
                created_at_ms: 0,
            })
            .await
            .unwrap();
        let bytes: u64 = store
            .manifest(&table())
            .await
            .unwrap()
            .iter()
            .map(|(_, f)| f.meta.size)
            .sum();
        (store, bytes)
    });
    MOVED_BYTES
        .lock()
        .unwrap()
        .get_or_insert_default()
        .insert(key.to_owned(), bytes);
    let mut group = c.benchmark_group(title);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    let storages = [StorageId::new("second").unwrap(), StorageId::local()];
    let mut next = 0;
    group.bench_function("kalamstore move_table", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let to = &storages[next % 2];
                next += 1;
                let start = Instant::now();
                rt.block_on(store.move_table(&table(), to)).unwrap();
                total += start.elapsed();
            }
            record(&format!("{key}/ours"), total, iters);
            total
        })
    });
    // The baseline copies the same files from wherever the moves left them.
    let holder = rt
        .block_on(store.table(&table()))
        .unwrap()
        .storage_id
        .clone();
    let holder_dir = if holder == StorageId::local() {
        dir.path().join("cold")
    } else {
        dir.path().join("second-cold")
    };
    let source: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(holder_dir).unwrap());
    let plain_files: Vec<String> = rt
        .block_on(store.manifest(&table()))
        .unwrap()
        .into_iter()
        .map(|(_, f)| f.meta.path.clone())
        .collect();
    group.bench_function("object_store get + put", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let target_dir = tempfile::tempdir().unwrap();
                let target =
                    object_store::local::LocalFileSystem::new_with_prefix(target_dir.path())
                        .unwrap();
                let start = Instant::now();
                rt.block_on(async {
                    for path in &plain_files {
                        let path = object_store::path::Path::from(path.as_str());
                        let data = source.get(&path).await.unwrap().bytes().await.unwrap();
                        target.put(&path, data.into()).await.unwrap();
                    }
                });
                total += start.elapsed();
            }
            record(&format!("{key}/baseline"), total, iters);
            total
        })
    });
    group.finish();
    rt.block_on(store.close()).unwrap();
}

fn report(_: &mut Criterion) {
    let results = [
        (
            "flush 1M rows",
            "flush",
            "flush_table",
            "ArrowWriter, same batches",
            ">= 0.7x speed",
        ),
        (
            "scan 1M rows, 10% changed (deletion vectors)",
            "scan-true",
            "scan",
            "ParquetRecordBatchReader, no deletes",
            "<= 1.10x time",
        ),
        (
            "scan 1M rows, 10% changed (hot tombstones)",
            "scan-false",
            "scan",
            "ParquetRecordBatchReader, no deletes",
            "<= 1.3x time",
        ),
        (
            "point get of a flushed row (warm)",
            "get",
            "get",
            "rust-rocksdb get",
            "<= 10x time",
        ),
        (
            "first point get after an open (cold caches)",
            "get-cold",
            "get",
            "rust-rocksdb get",
            "reported",
        ),
        (
            "insert 100k rows",
            "insert",
            "insert",
            "rust-rocksdb WriteBatch put",
            ">= 0.7x speed",
        ),
        (
            "move 1M flushed + 10k hot rows",
            "move",
            "move_table (copy + verify + switch)",
            "object_store get + put",
            "MB/s reported",
        ),
        (
            "move 10M flushed + 10k hot rows",
            "move-10m",
            "move_table (copy + verify + switch)",
            "object_store get + put",
            ">= 0.33x speed",
        ),
    ];
    let path = tables_results_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    for (bench, key, ours, baseline, target) in results {
        let r = RatioResult {
            bench: bench.into(),
            ours: ours.into(),
            baseline: baseline.into(),
            ours_secs: mean(&format!("{key}/ours")),
            baseline_secs: mean(&format!("{key}/baseline")),
            target: target.into(),
            bytes: MOVED_BYTES
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|moved| moved.get(key).copied()),
        };
        if r.ours_secs.is_finite() && r.baseline_secs.is_finite() {
            writeln!(out, "{}", serde_json::to_string(&r).unwrap()).unwrap();
        }
    }
}

criterion_group!(
    benches, flush, scan, point_get, insert, move_1m, move_10m, report
);
criterion_main!(benches);
