//! SQL inserts against the Rust API, side by side in one run: `INSERT INTO t SELECT * FROM src`
//! of 1M rows through a SQL session (DataFusion reads the flushed source, the sink writes one
//! atomic batch) vs `Store::insert` of the same 1M rows, already built as `(column, value)`
//! pairs by the caller, into an identical empty table. Each timed SQL insert is paired with an
//! API insert, alternately first. The ratio is printed and appended to
//! `$CARGO_TARGET_DIR/kalamstore-bench/insert.jsonl`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::TryStreamExt;
use kalamstore::{
    ColumnDefinition, KalamDataType, KalamValue, NamespaceId, Scope, StorageId, Store, StoreConfig,
    TableDefinition, TableId, TableOptions, TableType,
};
use kalamstore_sql::{Principal, SqlOutput, SqlSession};

/// The allocator the `kalamstore` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: i64 = 1_000_000;

fn def(name: &str) -> TableDefinition {
    TableDefinition::new(
        format!("bench.{name}").parse().unwrap(),
        TableType::Shared,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("kind", KalamDataType::Text).not_null(),
            ColumnDefinition::new("amount", KalamDataType::Double).not_null(),
            ColumnDefinition::new("note", KalamDataType::Text),
        ],
        StorageId::local(),
        TableOptions::default(),
        0,
    )
    .unwrap()
}

fn row(i: i64) -> Vec<(String, KalamValue)> {
    vec![
        ("id".into(), KalamValue::BigInt(i)),
        ("kind".into(), KalamValue::Text(format!("kind-{}", i % 8))),
        ("amount".into(), KalamValue::Double(i as f64 * 0.5)),
        (
            "note".into(),
            KalamValue::Text(format!("event {i} of the bench")),
        ),
    ]
}

fn rows() -> Vec<Vec<(String, KalamValue)>> {
    (0..ROWS).map(row).collect()
}

fn insert_select(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let mut config = StoreConfig::new(dir.path(), Arc::new(kalamstore::Engines::default()));
        config.background = false;
        let store = Store::open(config).await.unwrap();
        store
            .create_namespace(&NamespaceId::new("bench").unwrap(), true)
            .await
            .unwrap();
        store.create_table(def("src"), false).await.unwrap();
        let src: TableId = "bench.src".parse().unwrap();
        store.insert(&src, None, rows()).await.unwrap();
        store.flush_table(&src, Scope::All).await.unwrap();
        store
    });
    let mut round = 0u32;
    let (mut sql_total, mut api_total) = (Duration::ZERO, Duration::ZERO);
    let mut group = c.benchmark_group("insert 1M rows");
    group.sample_size(10);
    group.bench_function("INSERT ... SELECT through SQL vs Store::insert", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for i in 0..iters {
                round += 1;
                let (sql_name, api_name) = (format!("sql{round}"), format!("api{round}"));
                let timed_sql = || {
                    rt.block_on(async {
                        store.create_table(def(&sql_name), false).await.unwrap();
                        // Refresh the session's view of the catalog.
                        let session = SqlSession::new(store.clone(), Principal::Anonymous)
                            .await
                            .unwrap();
                        let start = Instant::now();
                        let sql = format!("INSERT INTO bench.{sql_name} SELECT * FROM bench.src");
                        let written = match session.run(&sql, &[]).await.unwrap() {
                            SqlOutput::Changed { rows, .. } => rows,
                            SqlOutput::Rows(s) => {
                                let batches: Vec<_> = s.try_collect().await.unwrap();
                                batches.iter().map(|b| b.num_rows() as u64).sum()
                            }
                        };
                        let elapsed = start.elapsed();
                        assert_eq!(written, ROWS as u64, "{sql}");
                        elapsed
                    })
                };
                let rows = rows();
                let timed_api = |rows| {
                    rt.block_on(async {
                        store.create_table(def(&api_name), false).await.unwrap();
                        let t: TableId = format!("bench.{api_name}").parse().unwrap();
                        let start = Instant::now();
                        store.insert(&t, None, rows).await.unwrap();
                        start.elapsed()
                    })
                };
                let (s, a) = if i % 2 == 0 {
                    let s = timed_sql();
                    (s, timed_api(rows))
                } else {
                    let a = timed_api(rows);
                    (timed_sql(), a)
                };
                sql_total += s;
                api_total += a;
                measured += s;
                rt.block_on(async {
                    for name in [&sql_name, &api_name] {
                        let t: TableId = format!("bench.{name}").parse().unwrap();
                        store.drop_table(&t, false).await.unwrap();
                    }
                });
            }
            measured
        })
    });
    group.finish();
    let ratio = api_total.as_secs_f64() / sql_total.as_secs_f64();
    println!(
        "insert: INSERT ... SELECT of 1M rows through SQL runs at {ratio:.2}x the speed of \
         Store::insert of the same rows (target >= 0.8x)"
    );
    kalamstore_benches::append_result(
        "insert.jsonl",
        &serde_json::json!({"bench": "insert_select_vs_api", "ratio": ratio}),
    );
    rt.block_on(store.close()).unwrap();
}

criterion_group!(benches, insert_select);
criterion_main!(benches);
