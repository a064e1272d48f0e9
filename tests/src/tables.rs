//! Fixtures for table tests: a store in a temp dir, storages on each engine, a chat table.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use kalamstore::{
    ColumnDefinition, HotEngine, KalamDataType, KalamValue, S3Options, ScanOptions,
    StorageDefinition, StorageId, Store, StoreConfig, TableDefinition, TableId, TableOptions,
    TableType, UserId,
};

pub use kalamstore_storage::testing::wait_until;

/// A two-thread runtime for tests that drive async code from sync test functions.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Opens a store in `dir` with every engine and no background work (tests drive jobs).
pub async fn open_store(dir: &std::path::Path) -> Store {
    open_store_with(dir, kalamstore::Failpoints::default()).await
}

/// [`open_store`] whose failure points are `failpoints` (a test arms or holds them).
pub async fn open_store_with(dir: &std::path::Path, failpoints: kalamstore::Failpoints) -> Store {
    open_store_configured(dir, |config| config.failpoints = failpoints).await
}

/// [`open_store`] after `configure` changed its settings.
pub async fn open_store_configured(
    dir: &std::path::Path,
    configure: impl FnOnce(&mut StoreConfig),
) -> Store {
    let mut config = StoreConfig::new(dir, Arc::new(kalamstore::Engines::default()));
    config.background = false;
    configure(&mut config);
    Store::open(config).await.expect("open store")
}

/// The storages a table test runs on: `local` (RocksDB) and an object-store engine storage
/// with its Parquet in a local directory under `dir`.
pub async fn storages(store: &Store, dir: &std::path::Path) -> Vec<StorageId> {
    let id = StorageId::new("objects").unwrap();
    if !store.storages().await.unwrap().iter().any(|s| s.id == id) {
        let hot = HotEngine::ObjectStore {
            url: dir.join("objects-hot").to_string_lossy().into_owned(),
        };
        store
            .create_storage(storage_definition(&id, hot, &dir.join("objects-cold")))
            .await
            .unwrap();
    }
    vec![StorageId::local(), id]
}

/// A storage `id` whose hot rows live in `hot` and whose Parquet files in the directory `cold`.
pub fn storage_definition(
    id: &StorageId,
    hot: HotEngine,
    cold: &std::path::Path,
) -> StorageDefinition {
    StorageDefinition {
        id: id.clone(),
        hot,
        cold_url: cold.to_string_lossy().into_owned(),
        s3: S3Options::default(),
        cache: None,
        metadata_cache_bytes: None,
        created_at_ms: 0,
    }
}

/// A store in `dir` with namespace `app` and the storages of [`storages`].
pub async fn store_with_storages(dir: &std::path::Path) -> (Store, Vec<StorageId>) {
    store_with_failpoints(dir, kalamstore::Failpoints::default()).await
}

/// [`store_with_storages`] whose failure points are `failpoints`.
pub async fn store_with_failpoints(
    dir: &std::path::Path,
    failpoints: kalamstore::Failpoints,
) -> (Store, Vec<StorageId>) {
    let store = open_store_with(dir, failpoints).await;
    store
        .create_namespace(&kalamstore::NamespaceId::new("app").unwrap(), true)
        .await
        .unwrap();
    let s = storages(&store, dir).await;
    (store, s)
}

/// Rows 0..1000 flushed, then row 10 deleted and row 20 updated to `v2` (still hot): the
/// state the crash tests start from.
pub async fn flushed_with_changes(store: &Store, t: &TableId) {
    store
        .insert(t, None, (0..1000).map(|i| chat_row(i, "v1")).collect())
        .await
        .unwrap();
    store.flush_table(t, kalamstore::Scope::All).await.unwrap();
    store
        .write(
            t,
            None,
            vec![
                kalamstore::Mutation::Delete {
                    key: vec![KalamValue::BigInt(10)],
                },
                kalamstore::Mutation::Update {
                    key: vec![KalamValue::BigInt(20)],
                    set: vec![("body".into(), KalamValue::Text("v2".into()))],
                },
            ],
        )
        .await
        .unwrap();
}

/// Checks the rows, in key order, are exactly those of [`flushed_with_changes`] plus rows
/// 1000..1100 inserted as `v1`.
pub fn assert_changed_rows(rows: &[(i64, String)], when: &str) {
    let expected: Vec<(i64, String)> = (0..1100)
        .filter(|id| *id != 10)
        .map(|id| (id, if id == 20 { "v2" } else { "v1" }.to_owned()))
        .collect();
    if rows != expected.as_slice() {
        let first = rows.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "{when}: {} rows, expected {}; first difference at position {first:?}: {:?} vs {:?}",
            rows.len(),
            expected.len(),
            first.and_then(|i| rows.get(i)),
            first.and_then(|i| expected.get(i)),
        );
    }
}

/// `app.<name>`: `id BIGINT PRIMARY KEY, body TEXT, n INT`.
pub fn chat_table(name: &str, kind: TableType, storage: &StorageId) -> TableDefinition {
    TableDefinition::new(
        format!("app.{name}").parse().unwrap(),
        kind,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("body", KalamDataType::Text),
            ColumnDefinition::new("n", KalamDataType::Int),
        ],
        storage.clone(),
        TableOptions::default(),
        0,
    )
    .unwrap()
}

/// A row of the chat table.
pub fn chat_row(id: i64, body: &str) -> Vec<(String, KalamValue)> {
    vec![
        ("id".into(), KalamValue::BigInt(id)),
        ("body".into(), KalamValue::Text(body.into())),
        ("n".into(), KalamValue::Int(id as i32)),
    ]
}

/// `(id, body)` of every visible row, sorted by id.
pub async fn contents(store: &Store, table: &TableId, user: Option<&UserId>) -> Vec<(i64, String)> {
    let options = ScanOptions {
        columns: Some(vec!["id".into(), "body".into()]),
        ..ScanOptions::default()
    };
    let mut out: Vec<(i64, String)> = store
        .scan(table, user, &options)
        .await
        .expect("scan")
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>().clone();
            let bodies = b.column(1).as_string::<i32>().clone();
            (0..b.num_rows())
                .map(|i| (ids.value(i), bodies.value(i).to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    let before = out.len();
    out.dedup_by_key(|(id, _)| *id);
    assert_eq!(before, out.len(), "a key was returned twice");
    out
}

/// Every file below `dir` (none when it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                files_under(&e.path())
            } else {
                vec![e.path()]
            }
        })
        .collect()
}

/// The table partitions (`t.*`) of a storage's hot engine.
pub async fn table_partitions(store: &Store, storage: &StorageId) -> Vec<String> {
    store
        .storage_engine(storage)
        .await
        .expect("storage engine")
        .list_partitions()
        .await
        .expect("list partitions")
        .into_iter()
        .map(|p| p.as_str().to_owned())
        .filter(|p| p.starts_with("t."))
        .collect()
}

/// Where a storage made by [`storages`] keeps its Parquet files under `dir`.
pub fn cold_dir(dir: &std::path::Path, storage: &StorageId) -> std::path::PathBuf {
    if *storage == StorageId::local() {
        dir.join("cold")
    } else {
        dir.join(format!("{storage}-cold"))
    }
}

/// Runs test `child` of the current test binary with `env` and the failpoint set, and checks
/// that it aborted there (crash tests: the child does the work, the parent checks the data).
pub fn run_child_to_failpoint(child: &str, env: &[(&str, &str)], failpoint: &str, skip: usize) {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            child,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .env("KALAMSTORE_FAILPOINT", failpoint)
        .env("KALAMSTORE_FAILPOINT_SKIP", skip.to_string())
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains(&format!("failpoint {failpoint}")),
        "the child did not stop at {failpoint}: {}\n{stderr}",
        output.status
    );
}

/// Runs test `child` of the current test binary with `env`, SIGKILLs it after `after`, checks
/// that it died of the signal, and returns every line it wrote to stdout before it died (read
/// to the end of the pipe). Its stderr goes to `stderr_path`, shown when it died otherwise.
pub fn run_child_and_kill(
    child: &str,
    env: &[(&str, String)],
    after: std::time::Duration,
    stderr_path: &std::path::Path,
) -> Vec<String> {
    use std::io::BufRead;
    let mut process = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            child,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(
            std::fs::File::create(stderr_path).expect("child stderr file"),
        ))
        .spawn()
        .expect("start the child");
    let stdout = process.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(after);
    process.kill().expect("SIGKILL the child");
    let status = process.wait().expect("reap the child");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the child died of SIGKILL: {status}\n{}",
            std::fs::read_to_string(stderr_path).unwrap_or_default()
        );
    }
    reader.join().expect("reader thread")
}

/// The Python interpreter of the venv with delta-rs's `deltalake` and Polars that `make test`
/// installs (`scripts/delta-readers`): `KALAMSTORE_DELTA_PYTHON`, else the Makefile's default
/// place. A missing reader fails the test: it never passes without one.
pub fn delta_python() -> std::path::PathBuf {
    let path = std::env::var_os("KALAMSTORE_DELTA_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            std::path::Path::new(&home).join(".cache/kalamstore/delta-venv/bin/python")
        });
    assert!(
        path.exists(),
        "no Delta readers at {}: run `make test` (or scripts/delta-readers) to install them",
        path.display()
    );
    path
}

/// Runs `tests/delta/read_delta.py` on a table directory and returns its JSON lines.
pub fn read_delta(table_dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    // Read when the test runs: a path compiled in names the checkout that built the binary,
    // and cargo reuses a binary from a shared target directory for another checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets it");
    let script = std::path::Path::new(&manifest).join("delta/read_delta.py");
    let output = std::process::Command::new(delta_python())
        .arg(script)
        .arg(table_dir)
        .args(args)
        .output()
        .expect("run the Delta readers");
    assert!(
        output.status.success(),
        "Delta readers failed on {}: {}",
        table_dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
