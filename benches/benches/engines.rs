//! Every engine on the same workloads, with plain rust-rocksdb (no kalamstore layer) in the same
//! run as the baseline: a bulk load in batches, then YCSB-style A (50% read / 50% update),
//! B (95/5), C (100% read) and E (short range scans + 5% inserts) with Zipfian keys, from 16
//! concurrent tasks. Besides criterion's timings, each run appends ops/s and p50/p99 latency to
//! `$CARGO_TARGET_DIR/kalamstore-bench/engines.jsonl` for `bench-report`.

use std::io::Write;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use kalamstore_benches::{LatencyStore, WorkloadResult, percentiles, results_path};
use kalamstore_foyer::{FoyerBackend, FoyerConfig};
use kalamstore_object_store::{ObjectStoreBackend, ObjectStoreConfig, OpenedStore, open_store};
use kalamstore_rocksdb::{RocksDbBackend, RocksDbConfig};
use kalamstore_storage::{
    KeyRange, MemoryBackend, Partition, ScanRequest, StorageBackend, WriteBatch,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};

const TASKS: usize = 16;
const VALUE_LEN: usize = 100;
const LOAD_BATCH: usize = 1000;
/// Keys present before the YCSB workloads run.
const RECORDS: u64 = 200_000;
/// Latency the slow-store variants inject into every object-store request.
const STORE_LATENCY: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    PlainRocksDb,
    Memory,
    RocksDb,
    ObjectStoreLocal,
    FoyerOverRocksDb,
    ObjectStoreSlow,
    FoyerOverObjectStoreSlow,
}

impl Engine {
    const ALL: [Engine; 7] = [
        Engine::PlainRocksDb,
        Engine::RocksDb,
        Engine::Memory,
        Engine::FoyerOverRocksDb,
        Engine::ObjectStoreLocal,
        Engine::ObjectStoreSlow,
        Engine::FoyerOverObjectStoreSlow,
    ];

    fn label(self) -> &'static str {
        match self {
            Engine::PlainRocksDb => "plain rust-rocksdb",
            Engine::Memory => "memory",
            Engine::RocksDb => "rocksdb",
            Engine::ObjectStoreLocal => "object_store (local dir)",
            Engine::FoyerOverRocksDb => "foyer over rocksdb",
            Engine::ObjectStoreSlow => "object_store (+20 ms store)",
            Engine::FoyerOverObjectStoreSlow => "foyer over object_store (+20 ms store)",
        }
    }

    /// Rows of the bulk load: the slow-store variants load a tenth.
    fn load_rows(self) -> u64 {
        match self {
            Engine::ObjectStoreSlow | Engine::FoyerOverObjectStoreSlow => 100_000,
            _ => 1_000_000,
        }
    }

    /// Operations per task and measured iteration (the tasks draw them from one budget):
    /// durable object-store writes wait for a WAL upload, so those engines run fewer.
    fn ops_per_task(self) -> usize {
        match self {
            Engine::ObjectStoreLocal => 1000,
            Engine::ObjectStoreSlow | Engine::FoyerOverObjectStoreSlow => 100,
            _ => 2000,
        }
    }
}

/// What a workload drives: an engine through the trait, or RocksDB directly.
#[derive(Clone)]
enum Target {
    /// An engine and its partition (made once, as a table holds its partitions).
    Backend(Arc<dyn StorageBackend>, Partition),
    Plain(Arc<rocksdb::DB>),
}

fn partition() -> Partition {
    Partition::new("bench").expect("valid partition name")
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("user{i:012}"))
}

fn value(i: u64) -> Bytes {
    let mut v = format!("{i:020}").into_bytes();
    v.resize(VALUE_LEN, b'x');
    Bytes::from(v)
}

fn plain_rocksdb(dir: &std::path::Path) -> rocksdb::DB {
    // The same tuning RocksDbBackend applies, so the comparison isolates the layer.
    use rocksdb::DBCompressionType as C;
    let cache = rocksdb::Cache::new_lru_cache(64 << 20);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    table.set_block_size(16 << 10);
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(256 << 20);
    opts.set_max_write_buffer_number(4);
    opts.set_compression_per_level(&[C::None, C::None, C::Lz4, C::Lz4, C::Lz4, C::Lz4, C::Lz4]);
    opts.set_bottommost_compression_type(C::Zstd);
    opts.set_level_compaction_dynamic_level_bytes(true);
    opts.set_max_background_jobs(2);
    opts.set_db_write_buffer_size(256 << 20);
    opts.set_bytes_per_sync(1 << 20);
    opts.set_allow_mmap_reads(true);
    opts.set_enable_pipelined_write(true);
    rocksdb::DB::open(&opts, dir).expect("open plain rocksdb")
}

fn slow_store(dir: &std::path::Path) -> OpenedStore {
    let local = open_store(&dir.to_string_lossy(), &Default::default()).expect("local store");
    OpenedStore {
        store: Arc::new(LatencyStore::new(local.store, STORE_LATENCY)),
        ..local
    }
}

/// `inner` behind a foyer hybrid cache (64 MiB memory, 256 MiB disk under `dir`).
async fn with_cache<B: StorageBackend + 'static>(
    inner: Arc<B>,
    dir: &std::path::Path,
) -> Arc<dyn StorageBackend> {
    let config = FoyerConfig::hybrid(64 << 20, dir.join("cache"), 256 << 20);
    Arc::new(FoyerBackend::new(inner, config).await.expect("cache"))
}

async fn open(engine: Engine, dir: &std::path::Path) -> Target {
    let backend: Arc<dyn StorageBackend> = match engine {
        Engine::PlainRocksDb => return Target::Plain(Arc::new(plain_rocksdb(dir))),
        Engine::Memory => Arc::new(MemoryBackend::new()),
        Engine::RocksDb => {
            Arc::new(RocksDbBackend::open(RocksDbConfig::new(dir)).expect("open rocksdb"))
        }
        Engine::ObjectStoreLocal => Arc::new(
            ObjectStoreBackend::open(ObjectStoreConfig::new(dir.to_string_lossy().into_owned()))
                .await
                .expect("open object store"),
        ),
        Engine::FoyerOverRocksDb => {
            let inner = Arc::new(
                RocksDbBackend::open(RocksDbConfig::new(dir.join("db"))).expect("open rocksdb"),
            );
            with_cache(inner, dir).await
        }
        Engine::ObjectStoreSlow => Arc::new(
            ObjectStoreBackend::open_with_store(slow_store(dir), ObjectStoreConfig::new("slow"))
                .await
                .expect("open object store"),
        ),
        Engine::FoyerOverObjectStoreSlow => {
            let inner = Arc::new(
                ObjectStoreBackend::open_with_store(
                    slow_store(&dir.join("db")),
                    ObjectStoreConfig::new("slow"),
                )
                .await
                .expect("open object store"),
            );
            with_cache(inner, dir).await
        }
    };
    let partition = partition();
    backend
        .create_partition(&partition)
        .await
        .expect("create partition");
    Target::Backend(backend, partition)
}

impl Target {
    async fn get(&self, k: &[u8]) {
        match self {
            Target::Backend(b, p) => {
                b.get(p, k).await.expect("get");
            }
            Target::Plain(db) => {
                db.get_pinned(k).expect("get");
            }
        }
    }

    async fn put(&self, k: Bytes, v: Bytes) {
        match self {
            Target::Backend(b, p) => b.put(p, k, v).await.expect("put"),
            Target::Plain(db) => db.put(k, v).expect("put"),
        }
    }

    async fn load(&self, range: std::ops::Range<u64>) {
        match self {
            Target::Backend(b, p) => {
                let mut batch = WriteBatch::new();
                for i in range {
                    batch.put(p, key(i), value(i));
                }
                b.batch(batch).await.expect("batch");
            }
            Target::Plain(db) => {
                let mut batch = rocksdb::WriteBatch::default();
                for i in range {
                    batch.put(key(i), value(i));
                }
                db.write(batch).expect("batch");
            }
        }
    }

    async fn scan(&self, start: u64, len: usize) {
        match self {
            Target::Backend(b, p) => {
                let request = ScanRequest::new(KeyRange::Range(
                    Bound::Included(key(start)),
                    Bound::Unbounded,
                ))
                .limit(len)
                .chunk_size(len);
                b.scan(p, &request).await.expect("scan");
            }
            Target::Plain(db) => {
                let start = key(start);
                let iter = db.iterator(rocksdb::IteratorMode::From(
                    &start,
                    rocksdb::Direction::Forward,
                ));
                for item in iter.take(len) {
                    item.expect("scan");
                }
            }
        }
    }

    async fn close(self) {
        if let Target::Backend(b, _) = self {
            b.close().await.expect("close");
        }
    }
}

/// Loads `rows` rows from TASKS concurrent tasks in batches; returns per-batch latencies.
async fn bulk_load(target: &Target, rows: u64) -> Vec<Duration> {
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let target = target.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let start = next.fetch_add(LOAD_BATCH as u64, Ordering::Relaxed);
                    if start >= rows {
                        return latencies;
                    }
                    let t = Instant::now();
                    target
                        .load(start..(start + LOAD_BATCH as u64).min(rows))
                        .await;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("load task"));
    }
    all
}

#[derive(Clone, Copy)]
enum Workload {
    A,
    B,
    C,
    E,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::A => "ycsb-a",
            Workload::B => "ycsb-b",
            Workload::C => "ycsb-c",
            Workload::E => "ycsb-e",
        }
    }
}

/// Runs `ops_per_task` operations per task on TASKS tasks, drawn from one shared budget so
/// that the tasks finish together (an iteration then measures the engine, not the task that
/// happened to draw the most writes); returns every op's latency.
async fn run_workload(
    target: &Target,
    workload: Workload,
    ops_per_task: usize,
    inserted: &Arc<AtomicU64>,
) -> Vec<Duration> {
    let budget = Arc::new(AtomicU64::new((TASKS * ops_per_task) as u64));
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let target = target.clone();
            let inserted = inserted.clone();
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(t as u64 * 7919 + 1);
                let zipf = Zipf::new(RECORDS as f64, 0.99).expect("valid zipf parameters");
                let mut latencies = Vec::with_capacity(ops_per_task);
                while budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                        left.checked_sub(1)
                    })
                    .is_ok()
                {
                    let k = zipf.sample(&mut rng) as u64 - 1;
                    let roll: u32 = rng.random_range(0..100);
                    let started = Instant::now();
                    match workload {
                        Workload::A if roll < 50 => target.put(key(k), value(k + 1)).await,
                        Workload::B if roll < 5 => target.put(key(k), value(k + 1)).await,
                        Workload::A | Workload::B | Workload::C => target.get(&key(k)).await,
                        Workload::E if roll < 5 => {
                            let i = inserted.fetch_add(1, Ordering::Relaxed);
                            target.put(key(i), value(i)).await;
                        }
                        Workload::E => target.scan(k, rng.random_range(1..=100)).await,
                    }
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(TASKS * ops_per_task);
    for h in handles {
        all.extend(h.await.expect("workload task"));
    }
    all
}

fn record(
    results: &mut Vec<WorkloadResult>,
    engine: Engine,
    workload: &str,
    ops: u64,
    elapsed: Duration,
    latencies: &mut [Duration],
) {
    // A workload left out by a criterion filter (`--bench load`) ran nothing: no record, or a
    // report would show it at zero.
    if ops == 0 {
        return;
    }
    let (p50_us, p99_us) = percentiles(latencies);
    let (series, round) = kalamstore_benches::bench_round();
    results.push(WorkloadResult {
        engine: engine.label().to_owned(),
        workload: workload.to_owned(),
        ops_per_sec: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us,
        p99_us,
        series,
        round,
    });
}

fn engines(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let only = std::env::var("KALAMSTORE_BENCH_ENGINES").ok();
    let mut results = Vec::new();
    for engine in Engine::ALL {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|e| e.trim() == engine.label()))
        {
            continue;
        }
        let mut group = c.benchmark_group(format!("engines/{}", engine.label()));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(1));

        let mut load_latencies = Vec::new();
        let mut load_time = Duration::ZERO;
        let mut loads = 0u64;
        group.bench_function("load", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("temp dir");
                    rt.block_on(async {
                        let target = open(engine, dir.path()).await;
                        let started = Instant::now();
                        load_latencies.extend(bulk_load(&target, engine.load_rows()).await);
                        total += started.elapsed();
                        target.close().await;
                    });
                    loads += engine.load_rows();
                }
                load_time += total;
                total
            })
        });
        record(
            &mut results,
            engine,
            "load",
            loads,
            load_time,
            &mut load_latencies,
        );

        let dir = tempfile::tempdir().expect("temp dir");
        let target = rt.block_on(async {
            let target = open(engine, dir.path()).await;
            bulk_load(&target, RECORDS).await;
            target
        });
        let inserted = Arc::new(AtomicU64::new(RECORDS));
        for workload in [Workload::A, Workload::B, Workload::C, Workload::E] {
            let mut latencies = Vec::new();
            let mut elapsed = Duration::ZERO;
            let mut ops = 0u64;
            group.bench_function(workload.label(), |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    for _ in 0..iters {
                        latencies.extend(rt.block_on(run_workload(
                            &target,
                            workload,
                            engine.ops_per_task(),
                            &inserted,
                        )));
                        ops += (TASKS * engine.ops_per_task()) as u64;
                    }
                    let spent = started.elapsed();
                    elapsed += spent;
                    spent
                })
            });
            record(
                &mut results,
                engine,
                workload.label(),
                ops,
                elapsed,
                &mut latencies,
            );
        }
        rt.block_on(target.close());
        group.finish();
    }

    let path = results_path();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("results directory");
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("results file");
    for r in &results {
        writeln!(
            file,
            "{}",
            serde_json::to_string(r).expect("serialisable result")
        )
        .expect("write result");
    }
    eprintln!("results appended to {}", path.display());
}

criterion_group!(benches, engines);
criterion_main!(benches);
