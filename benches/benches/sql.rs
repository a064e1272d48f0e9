//! SQL through kalamstore's DataFusion provider next to DataFusion's own Parquet
//! `ListingTable` over the very same data files (no deletes applied), in one process and one
//! run: `COUNT(*)`, `GROUP BY` with `SUM`/`AVG`, a selective filter on a non-key column,
//! `ORDER BY ... LIMIT 10` and a point query by primary key. The table holds `ROWS` rows
//! (default 1M; `KALAMSTORE_SQL_BENCH_ROWS=10000000` for 10M), all flushed, 10% of them then
//! deleted or updated and flushed again (deletion vectors), and 1% changed but still hot.
//!
//! Each timed iteration runs both sides back to back, alternating which goes first, and the
//! ratio divides the sums (this VM's speed drifts minute to minute). After the groups, a
//! streamed `SELECT *` through the `kalamstore` binary reports its peak RSS next to the data
//! size. Results go to `$CARGO_TARGET_DIR/kalamstore-bench/sql.jsonl` for `bench-report`.

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

/// Summed time per side and query, and the iteration count.
type Times = HashMap<String, (Duration, Duration, u64)>;
static TIMES: Mutex<Option<Times>> = Mutex::new(None);

fn rows() -> i64 {
    std::env::var("KALAMSTORE_SQL_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000)
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

/// The data directory: `rows` rows flushed, 10% deleted or updated and flushed (deletion
/// vectors), 1% changed and left hot.
async fn fixture(dir: &Path, rows: i64) -> Store {
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
    let write = |range: std::ops::Range<i64>, change: fn(i64) -> Option<Mutation>| {
        let store = store.clone();
        async move {
            let mut at = range.start;
            while at < range.end {
                let end = (at + LOAD_BATCH).min(range.end);
                let batch: Vec<Mutation> = (at..end).filter_map(change).collect();
                if !batch.is_empty() {
                    store.write(&table(), None, batch).await.expect("write");
                }
                at = end;
            }
        }
    };
    write(0..rows, |i| {
        Some(Mutation::Insert(row(i, (i % 1000) as f64 / 10.0)))
    })
    .await;
    store
        .flush_table(&table(), Scope::All)
        .await
        .expect("flush");
    write(0..rows, |i| match i % 20 {
        0 => Some(Mutation::Delete {
            key: vec![KalamValue::BigInt(i)],
        }),
        10 => Some(Mutation::Upsert(row(i, 500.0))),
        _ => None,
    })
    .await;
    store
        .flush_table(&table(), Scope::All)
        .await
        .expect("flush");
    write(0..rows, |i| {
        (i % 100 == 5).then(|| Mutation::Upsert(row(i, 250.0)))
    })
    .await;
    store
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

async fn baseline(ctx: &SessionContext, sql: &str) -> usize {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("rows");
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// The queries: label, ours, baseline, target.
fn queries(rows: i64) -> Vec<(&'static str, String, String, &'static str)> {
    let q = |sql: &str| {
        (
            sql.replace("{t}", "bench.events"),
            sql.replace("{t}", "events"),
        )
    };
    let mut out = Vec::new();
    for (label, sql, target) in [
        ("(a) COUNT(*)", "SELECT count(*) FROM {t}", "<= 1.25x time"),
        (
            "(b) GROUP BY kind, SUM, AVG",
            "SELECT kind, sum(amount), avg(amount) FROM {t} GROUP BY kind",
            "<= 1.25x time",
        ),
        (
            "(c) selective filter on a non-key column",
            "SELECT id, amount FROM {t} WHERE score = 4242",
            "<= 1.25x time",
        ),
        (
            "(d) ORDER BY amount DESC LIMIT 10",
            "SELECT id, amount FROM {t} ORDER BY amount DESC, id LIMIT 10",
            "<= 1.25x time",
        ),
    ] {
        let (a, b) = q(sql);
        out.push((label, a, b, target));
    }
    let point = format!("SELECT * FROM {{t}} WHERE id = {}", rows / 2 + 1);
    let (a, b) = q(&point);
    out.push(("(e) point query by primary key", a, b, "<= 1.0x time"));
    out
}

fn sql(c: &mut Criterion) {
    let rt = runtime();
    let rows = rows();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = rt.block_on(fixture(dir.path(), rows));
    let session = rt
        .block_on(SqlSession::new(store.clone(), Principal::Anonymous))
        .expect("session");
    let ctx = SessionContext::new();
    let files = dir.path().join("cold/bench/events/");
    rt.block_on(ctx.register_parquet(
        "events",
        files.to_string_lossy().as_ref(),
        ParquetReadOptions::default(),
    ))
    .expect("listing table");
    let millions = format!("{}M", rows as f64 / 1e6);
    for (label, mine, theirs, _) in queries(rows) {
        let mut group = c.benchmark_group(format!("sql {millions}: {label}"));
        group.sample_size(10);
        let mut flip = false;
        group.bench_function("kalamstore provider, then ListingTable (paired)", |b| {
            b.iter_custom(|iters| {
                let (mut a, mut z) = (Duration::ZERO, Duration::ZERO);
                for _ in 0..iters {
                    flip = !flip;
                    let time_ours = || {
                        let start = Instant::now();
                        rt.block_on(ours(&session, &mine));
                        start.elapsed()
                    };
                    let time_theirs = || {
                        let start = Instant::now();
                        rt.block_on(baseline(&ctx, &theirs));
                        start.elapsed()
                    };
                    if flip {
                        a += time_ours();
                        z += time_theirs();
                    } else {
                        z += time_theirs();
                        a += time_ours();
                    }
                }
                let mut times = TIMES.lock().expect("times");
                let entry = times
                    .get_or_insert_with(HashMap::new)
                    .entry(label.to_owned())
                    .or_default();
                entry.0 += a;
                entry.1 += z;
                entry.2 += iters;
                a + z
            })
        });
        group.finish();
    }
    rt.block_on(store.close()).expect("close");
    let rss = streamed_select_rss(dir.path(), rows);
    report(rows, rss);
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
    let start = Instant::now();
    let mut child = std::process::Command::new(&binary)
        .arg("--data-dir")
        .arg(dir)
        .args(["--format", "csv", "-c", "SELECT * FROM bench.events"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let elapsed = start.elapsed();
    eprintln!(
        "streamed SELECT * of {rows} rows: peak RSS {} MiB, data {} MiB, {elapsed:?}",
        peak_kib / 1024,
        du(dir) >> 20
    );
    Some((peak_kib * 1024, du(dir), elapsed))
}

fn report(rows: i64, rss: Option<(u64, u64, Duration)>) {
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
    let millions = format!("{}M", rows as f64 / 1e6);
    for (label, _, _, target) in queries(rows) {
        let Some((a, z, n)) = times.get(label) else {
            continue;
        };
        let n = (*n).max(1) as f64;
        let r = RatioResult {
            bench: format!("{millions} rows: {label}"),
            ours: "kalamstore provider".into(),
            baseline: "DataFusion ListingTable, no deletes".into(),
            ours_secs: a.as_secs_f64() / n,
            baseline_secs: z.as_secs_f64() / n,
            target: target.into(),
            bytes: None,
        };
        writeln!(out, "{}", serde_json::to_string(&r).expect("json")).expect("write");
    }
    if let Some((peak, data, elapsed)) = rss {
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
