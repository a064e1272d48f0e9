//! The change feed's cost, side by side in one run:
//! - write throughput of 1000-row insert batches into a table with its change log on vs the
//!   same table with `CHANGE_RETENTION = 'off'` (RocksDB, the default storage), each in a store
//!   of its own with a neighbour table; each timed batch of one side is paired with one of the
//!   other, alternately first;
//! - end-to-end latency from a single-row write to its subscriber's event with 1, 100 and
//!   1,000 in-process subscribers on one table, each filtered to its own conversation
//!   (`room = 'r<i>'`); each write goes to one random conversation. p50/p99 are printed and
//!   go to `$CARGO_TARGET_DIR/kalamstore-bench/feed.jsonl`;
//! - a catch-up read: every change of 100k inserts through `changes_since` pages of 1000, with
//!   the rows hot and after a flush (the log names each insert's row by reference, so the
//!   images come from the hot engine or the files), next to a scan of the same rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use kalamstore::{
    ChangeRetention, ColumnDefinition, Filter, KalamDataType, KalamValue, NamespaceId, StartAt,
    StorageId, Store, StoreConfig, SubscribeOptions, SubscriptionEvent, TableDefinition, TableId,
    TableOptions, TableType,
};

/// The allocator the `kalamstore` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: i64 = 1000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn def(name: &str, retention: ChangeRetention) -> TableDefinition {
    TableDefinition::new(
        format!("bench.{name}").parse().unwrap(),
        TableType::Shared,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("room", KalamDataType::Text),
            ColumnDefinition::new("body", KalamDataType::Text),
        ],
        StorageId::local(),
        TableOptions {
            change_retention: retention,
            ..TableOptions::default()
        },
        0,
    )
    .unwrap()
}

fn row(i: i64, room: i64) -> Vec<(String, KalamValue)> {
    vec![
        ("id".into(), KalamValue::BigInt(i)),
        ("room".into(), KalamValue::Text(format!("r{room}"))),
        (
            "body".into(),
            KalamValue::Text(format!(
                "message {i} of a chat, long enough to look like one"
            )),
        ),
    ]
}

async fn store(dir: &std::path::Path) -> Store {
    let mut config = StoreConfig::new(dir, Arc::new(kalamstore::Engines::default()));
    config.background = false;
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("bench").unwrap(), true)
        .await
        .unwrap();
    store
}

fn results(line: serde_json::Value) {
    kalamstore_benches::append_result("feed.jsonl", &line);
}

fn write_throughput(c: &mut Criterion) {
    let rt = runtime();
    // Each side in its own store, with a neighbour table created after it that gets a row per
    // batch (untimed), as a store with more than one table has. Without one, the table created
    // last has the highest keys and its new keys miss every table file's key range: in one
    // store the later of two tables with their logs off ran 1.6x faster than the earlier.
    let (dir_on, dir_off) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (store_on, store_off) = rt.block_on(async {
        let (on, off) = (store(dir_on.path()).await, store(dir_off.path()).await);
        on.create_table(def("logged", ChangeRetention::DEFAULT), false)
            .await
            .unwrap();
        off.create_table(def("unlogged", ChangeRetention::Off), false)
            .await
            .unwrap();
        for s in [&on, &off] {
            s.create_table(def("neighbour", ChangeRetention::Off), false)
                .await
                .unwrap();
        }
        (on, off)
    });
    let logged: TableId = "bench.logged".parse().unwrap();
    let unlogged: TableId = "bench.unlogged".parse().unwrap();
    let neighbour: TableId = "bench.neighbour".parse().unwrap();
    let mut next = 0i64;
    let (mut on, mut off) = (Duration::ZERO, Duration::ZERO);
    let mut group = c.benchmark_group("feed");
    group.throughput(criterion::Throughput::Elements(BATCH as u64));
    group.bench_function("insert 1000 rows, change log on vs off", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for i in 0..iters {
                let rows: Vec<_> = (next..next + BATCH).map(|k| row(k, k % 100)).collect();
                next += BATCH;
                for s in [&store_on, &store_off] {
                    rt.block_on(s.insert(&neighbour, None, vec![row(next, 0)]))
                        .unwrap();
                }
                let timed = |(store, t): (&Store, &TableId), rows| {
                    let start = Instant::now();
                    rt.block_on(store.insert(t, None, rows)).unwrap();
                    start.elapsed()
                };
                // Alternately first, so both sides see the same machine.
                let (a, b) = if i % 2 == 0 {
                    let a = timed((&store_on, &logged), rows.clone());
                    (a, timed((&store_off, &unlogged), rows))
                } else {
                    let b = timed((&store_off, &unlogged), rows.clone());
                    (timed((&store_on, &logged), rows), b)
                };
                on += a;
                off += b;
                measured += a;
            }
            measured
        });
    });
    group.finish();
    let ratio = off.as_secs_f64() / on.as_secs_f64();
    // NaN when filtered out (`cargo bench -- <filter>`).
    if !ratio.is_nan() {
        println!(
            "feed: inserts with the change log on run at {ratio:.2}x the throughput of the \
             same table with it off (target >= 0.8x)"
        );
        results(serde_json::json!({"bench": "write_log_on_vs_off", "ratio": ratio}));
    }
    rt.block_on(async {
        store_on.close().await.unwrap();
        store_off.close().await.unwrap();
    });
}

/// Reads every change after 0 in pages of 1000; how many it read.
async fn catch_up(store: &Store, t: &TableId) -> usize {
    let (mut cursor, mut read) = (0, 0);
    loop {
        let page = store
            .changes_since(t, None, false, cursor, 1000)
            .await
            .unwrap();
        read += page.changes.len();
        cursor = page.cursor;
        if page.changes.is_empty() && cursor >= page.committed {
            return read;
        }
    }
}

fn catch_up_reads(c: &mut Criterion) {
    const ROWS: i64 = 100_000;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(store(dir.path()));
    let t: TableId = "bench.history".parse().unwrap();
    rt.block_on(async {
        store
            .create_table(def("history", ChangeRetention::DEFAULT), false)
            .await
            .unwrap();
        for at in (0..ROWS).step_by(BATCH as usize) {
            let rows = (at..at + BATCH).map(|k| row(k, k % 100)).collect();
            store.insert(&t, None, rows).await.unwrap();
        }
    });
    for tier in ["hot", "flushed"] {
        if tier == "flushed" {
            rt.block_on(store.flush_table(&t, kalamstore::Scope::All))
                .unwrap();
        }
        let (mut ours, mut scans, mut runs) = (Duration::ZERO, Duration::ZERO, 0u32);
        c.bench_function(&format!("feed/catch-up read of 100k {tier} inserts"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    assert_eq!(rt.block_on(catch_up(&store, &t)), ROWS as usize);
                    let took = start.elapsed();
                    let start = Instant::now();
                    let scanned = rt
                        .block_on(store.scan(&t, None, &kalamstore::ScanOptions::default()))
                        .unwrap();
                    assert_eq!(scanned.iter().map(|b| b.num_rows()).sum::<usize>(), 100_000);
                    scans += start.elapsed();
                    ours += took;
                    runs += 1;
                    total += took;
                }
                total
            })
        });
        if runs > 0 {
            let (ours, scan) = (ours / runs, scans / runs);
            println!(
                "feed: catch-up read of 100k {tier} inserts {:.1} ms ({:.0} changes/s), a scan \
                 of the same rows {:.1} ms",
                ours.as_secs_f64() * 1e3,
                ROWS as f64 / ours.as_secs_f64(),
                scan.as_secs_f64() * 1e3
            );
            results(serde_json::json!({
                "bench": "catch_up_read",
                "tier": tier,
                "ms": ours.as_secs_f64() * 1e3,
                "scan_ms": scan.as_secs_f64() * 1e3,
            }));
        }
    }
    rt.block_on(store.close()).unwrap();
}

fn latency(c: &mut Criterion) {
    let rt = runtime();
    for subscribers in [1usize, 100, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let store = rt.block_on(store(dir.path()));
        let name = format!("rooms{subscribers}");
        rt.block_on(store.create_table(def(&name, ChangeRetention::DEFAULT), false))
            .unwrap();
        let t: TableId = format!("bench.{name}").parse().unwrap();
        // Each subscriber reports the id of every row it receives.
        let (seen_tx, seen_rx) = std::sync::mpsc::channel::<(i64, Instant)>();
        let tasks: Vec<_> = (0..subscribers)
            .map(|room| {
                let options = SubscribeOptions {
                    filter: Some(Filter::eq("room", KalamValue::Text(format!("r{room}")))),
                    start: StartAt::Now,
                    ..SubscribeOptions::default()
                };
                let mut sub = rt.block_on(store.subscribe(&t, options)).unwrap();
                let seen = seen_tx.clone();
                rt.spawn(async move {
                    while let Some(Ok(event)) = sub.next().await {
                        if let SubscriptionEvent::Changes { changes, .. } = event {
                            let at = Instant::now();
                            for c in changes {
                                if let KalamValue::BigInt(id) = c.values[0] {
                                    let _ = seen.send((id, at));
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        // Let every subscriber reach its first wait.
        std::thread::sleep(Duration::from_millis(200));
        let mut samples: Vec<Duration> = Vec::new();
        let mut id = 0i64;
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        c.bench_function(
            &format!("feed/commit to event, {subscribers} subscribers"),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let room = (rng % subscribers as u64) as i64;
                        id += 1;
                        let start = Instant::now();
                        rt.block_on(store.insert(&t, None, vec![row(id, room)]))
                            .unwrap();
                        let arrived = loop {
                            let (got, at) = seen_rx
                                .recv_timeout(Duration::from_secs(10))
                                .expect("the subscriber's event within 10 s");
                            if got == id {
                                break at;
                            }
                        };
                        let took = arrived.saturating_duration_since(start);
                        samples.push(took);
                        total += took;
                    }
                    total
                });
            },
        );
        samples.sort_unstable();
        // Empty when filtered out (`cargo bench -- <filter>`).
        if !samples.is_empty() {
            let pct =
                |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
            let (p50, p99) = (pct(0.50), pct(0.99));
            println!(
                "feed: {subscribers} subscribers, commit to event p50 {:.3} ms, p99 {:.3} ms \
                 ({} writes; target p99 <= 5 ms at 1,000)",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                samples.len()
            );
            results(serde_json::json!({
                "bench": "commit_to_event",
                "subscribers": subscribers,
                "p50_ms": p50.as_secs_f64() * 1e3,
                "p99_ms": p99.as_secs_f64() * 1e3,
                "writes": samples.len(),
            }));
        }
        for task in tasks {
            task.abort();
        }
        rt.block_on(store.close()).unwrap();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = write_throughput, catch_up_reads, latency
}
criterion_main!(benches);
