//! Scale bench (issue 32): a data dir with many tables. Creates `KALAMSTORE_SCALE_TABLES`
//! (default 10,000) USER tables in 100 namespaces, writes one row from each of 5 users into
//! every table, flushes them all and runs the cleanup job, then has a new `kalamstore` process
//! open the dir and answer a query on one table (wall time and peak RSS), and drops every table.
//!
//! Reported, per step: mean time per table; the 10th and the 1000th create (mean of the 10
//! creates up to each); disk per empty table. Not criterion: each step runs once, at a size
//! where one run is minutes. Prints a markdown table (README's scale row) and appends it as
//! JSON to `$CARGO_TARGET_DIR/kalamstore-bench/scale.jsonl`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalamstore::{
    ColumnDefinition, KalamDataType, KalamValue, Mutation, NamespaceId, Scope, StorageId, Store,
    StoreConfig, TableDefinition, TableId, TableOptions, TableType, UserId,
};

/// The allocator the `kalamstore` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACES: usize = 100;
const USERS: usize = 5;

fn table_id(i: usize) -> TableId {
    format!("tenant{:03}.t{i:05}", i % NAMESPACES)
        .parse()
        .expect("valid table id")
}

fn definition(i: usize) -> TableDefinition {
    TableDefinition::new(
        table_id(i),
        TableType::User,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("body", KalamDataType::Text),
        ],
        StorageId::local(),
        TableOptions::default(),
        0,
    )
    .expect("valid definition")
}

fn du(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs the release `kalamstore` binary on `dir` with one query; its wall time and peak RSS.
fn open_and_query(dir: &Path, table: &TableId) -> Option<(Duration, u64)> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let binary = target.join("release").join("kalamstore");
    if !binary.exists() {
        eprintln!(
            "no {}: `cargo build --release -p kalamstore-cli` first",
            binary.display()
        );
        return None;
    }
    kalamstore_benches::run_with_peak_rss(
        std::process::Command::new(&binary)
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--user",
                "u0",
                "-c",
                &format!("SELECT count(*) FROM {table}"),
            ]),
        Duration::from_millis(5),
    )
}

fn main() {
    let tables: usize = std::env::var("KALAMSTORE_SCALE_TABLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    // `KALAMSTORE_SCALE_KEEP=<dir>`: stop before the drops and keep the data dir there (to
    // profile an open of it).
    let keep = std::env::var_os("KALAMSTORE_SCALE_KEEP").map(PathBuf::from);
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut record = |step: &str, value: String, target: &str| {
        eprintln!("{step}: {value}");
        rows.push((step.into(), value, target.into()));
    };
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);

    let store = rt.block_on(async {
        let mut config = StoreConfig::new(dir.path(), Arc::new(kalamstore::Engines::default()));
        config.background = false;
        let store = Store::open(config).await.expect("open");
        for n in 0..NAMESPACES {
            let ns = NamespaceId::new(format!("tenant{n:03}")).expect("namespace");
            store.create_namespace(&ns, true).await.expect("namespace");
        }
        store
    });

    // Creates, timed one by one.
    let mut creates = Vec::with_capacity(tables);
    let start = Instant::now();
    for i in 0..tables {
        let t = Instant::now();
        rt.block_on(store.create_table(definition(i), false))
            .expect("create");
        creates.push(t.elapsed());
    }
    let total = start.elapsed();
    let window = |end: usize| -> Duration {
        let from = end.saturating_sub(10);
        creates[from..end].iter().sum::<Duration>() / (end - from).max(1) as u32
    };
    record(
        &format!("CREATE TABLE, mean of {tables}"),
        ms(total / tables as u32),
        "<= 10 ms",
    );
    if tables >= 1000 {
        let (tenth, thousandth) = (window(10), window(1000));
        record(
            "CREATE TABLE, 10th vs 1000th (mean of 10)",
            format!(
                "{} vs {} ({:.2}x)",
                ms(tenth),
                ms(thousandth),
                thousandth.as_secs_f64() / tenth.as_secs_f64()
            ),
            "<= 1.5x",
        );
        record(
            &format!("CREATE TABLE, the last 10 of {tables}"),
            ms(window(tables)),
            "reported",
        );
    }
    let empty = du(dir.path());
    record(
        "disk per empty table",
        format!("{:.1} KB", empty as f64 / tables as f64 / 1e3),
        "< 20 KB",
    );

    // One row from each of five users into every table, then a flush of every table.
    let start = Instant::now();
    for i in 0..tables {
        for u in 0..USERS {
            let user = UserId::new(format!("u{u}")).expect("user");
            let row = vec![
                ("id".to_owned(), KalamValue::BigInt(i as i64)),
                (
                    "body".to_owned(),
                    KalamValue::Text(format!("hello from u{u}")),
                ),
            ];
            rt.block_on(store.write(&table_id(i), Some(&user), vec![Mutation::Insert(row)]))
                .expect("insert");
        }
    }
    record(
        &format!("INSERT, one row, mean of {}", tables * USERS),
        ms(start.elapsed() / (tables * USERS) as u32),
        "reported",
    );
    let start = Instant::now();
    for i in 0..tables {
        rt.block_on(store.flush_table(&table_id(i), Scope::All))
            .expect("flush");
    }
    record(
        "flush of every table (5 users' rows each), mean per table",
        ms(start.elapsed() / tables as u32),
        "reported",
    );
    // The cleanup a running store does every minute (the first one looks at every table;
    // later ones only at the tables jobs worked on since).
    let start = Instant::now();
    rt.block_on(store.cleanup()).expect("cleanup");
    record(
        "first cleanup job (every table's files)",
        ms(start.elapsed()),
        "reported",
    );
    rt.block_on(store.close()).expect("close");
    drop(store);

    let probe = table_id(tables / 2);
    if let Some((took, rss)) = open_and_query(dir.path(), &probe) {
        record(
            "new process: open the dir, answer a query on one table",
            format!("{} ms, peak RSS {} MiB", took.as_millis(), rss >> 20),
            "< 1 s",
        );
    }

    if let Some(keep) = keep {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(dir.path())
            .arg(&keep)
            .status()
            .expect("cp");
        assert!(
            status.success(),
            "copying the data dir to {}",
            keep.display()
        );
        return;
    }
    let store = rt.block_on(async {
        let mut config = StoreConfig::new(dir.path(), Arc::new(kalamstore::Engines::default()));
        config.background = false;
        Store::open(config).await.expect("reopen")
    });
    let start = Instant::now();
    for i in 0..tables {
        rt.block_on(store.drop_table(&table_id(i), false))
            .expect("drop");
    }
    record(
        &format!("DROP TABLE (5 users' flushed files each), mean of {tables}"),
        ms(start.elapsed() / tables as u32),
        "<= 10 ms",
    );
    rt.block_on(store.close()).expect("close");

    println!("| step | kalamstore | target |\n|---|---|---|");
    for (step, value, target) in &rows {
        println!("| {step} | {value} | {target} |");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let out = target.join("kalamstore-bench");
    std::fs::create_dir_all(&out).expect("results dir");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("scale.jsonl"))
        .expect("results file");
    for (step, value, target) in &rows {
        let line =
            serde_json::json!({"tables": tables, "step": step, "value": value, "target": target});
        writeln!(file, "{line}").expect("write");
    }
}
