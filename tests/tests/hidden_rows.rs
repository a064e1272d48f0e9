//! The flushed rows that hot entries hide (`h` entries, recorded by the writes so reads need no
//! key join) stay exact through everything that happens to a table: a restart, a SIGKILL
//! between a write and the next flush, a compaction, a storage move and a column rename. Each
//! test checks the visible rows, the hidden count and the exact row count a query plans with.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use kalamstore::{
    CompactionPolicy, KalamValue, Mutation, ScanOptions, SchemaChange, Scope, StorageId, Store,
    TableId, TableType,
};
use kalamstore_tests::tables::{
    chat_row, chat_table, contents, open_store, open_store_configured, runtime, storages,
    store_with_storages,
};

const CHILD_DIR: &str = "KALAMSTORE_HIDDEN_ROWS_DIR";
const CHILD_STORAGE: &str = "KALAMSTORE_HIDDEN_ROWS_STORAGE";

fn table() -> TableId {
    "app.chat".parse().unwrap()
}

/// Rows 0..100 flushed, then (hot) 7 deleted, 11 updated to `v2`, 120 inserted and 4 of those
/// deleted again: 18 flushed rows hidden, 100 - 7 + 116 = 209 rows visible.
async fn hide_some(store: &Store, storage: &StorageId) {
    let t = table();
    store
        .create_table(chat_table("chat", TableType::Shared, storage), false)
        .await
        .unwrap();
    store
        .insert(&t, None, (0..100).map(|i| chat_row(i, "v1")).collect())
        .await
        .unwrap();
    store.flush_table(&t, Scope::All).await.unwrap();
    let mut changes: Vec<Mutation> = (0..7)
        .map(|i| Mutation::Delete {
            key: vec![KalamValue::BigInt(i * 13)],
        })
        .collect();
    changes.extend((0..11).map(|i| Mutation::Update {
        key: vec![KalamValue::BigInt(i * 9 + 1)],
        set: vec![("body".into(), KalamValue::Text("v2".into()))],
    }));
    store.write(&t, None, changes).await.unwrap();
    store
        .insert(&t, None, (100..220).map(|i| chat_row(i, "v1")).collect())
        .await
        .unwrap();
    let deletes = (0..4)
        .map(|i| Mutation::Delete {
            key: vec![KalamValue::BigInt(200 + i)],
        })
        .collect();
    store.write(&t, None, deletes).await.unwrap();
}

/// The rows [`hide_some`] leaves, sorted by id.
fn expected() -> Vec<(i64, String)> {
    (0..220)
        .filter(|i| {
            let deleted = i % 13 == 0 && *i < 91;
            let dropped = (200..204).contains(i);
            !deleted && !dropped
        })
        .map(|i| {
            let updated = i < 100 && i % 9 == 1 && i <= 91;
            (i, if updated { "v2" } else { "v1" }.to_owned())
        })
        .collect()
}

/// Checks the visible rows, the hidden and deleted counts and the planned row count.
async fn check(store: &Store, hidden: u64, deleted: u64, when: &str) {
    let t = table();
    assert_eq!(contents(store, &t, None).await, expected(), "{when}");
    let stats = store.table_stats(&t).await.unwrap();
    let hidden_now: u64 = stats.iter().map(|s| s.hidden_rows).sum();
    let deleted_now: u64 = stats.iter().map(|s| s.deleted_rows).sum();
    assert_eq!(
        (hidden_now, deleted_now),
        (hidden, deleted),
        "{when}: {stats:?}"
    );
    let estimate = store
        .scan_stream(&t, None, &ScanOptions::all())
        .await
        .unwrap()
        .estimate();
    assert!(estimate.exact, "{when}");
    assert_eq!(estimate.rows, expected().len() as u64, "{when}");
}

/// Runs `test` on the RocksDB storage and on the object-store storage.
fn on_every_storage(test: impl AsyncFn(&Store, &StorageId, &std::path::Path)) {
    let rt = runtime();
    for at in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let (store, storages) = store_with_storages(dir.path()).await;
            test(&store, &storages[at], dir.path()).await;
        });
    }
}

#[test]
fn hidden_rows_survive_a_restart() {
    on_every_storage(async |store, storage, dir| {
        hide_some(store, storage).await;
        check(store, 18, 0, &format!("{storage} before the restart")).await;
        store.close().await.unwrap();
        let store = open_store(dir).await;
        check(&store, 18, 0, &format!("{storage} after the restart")).await;
        store.flush_table(&table(), Scope::All).await.unwrap();
        check(&store, 0, 18, &format!("{storage} after a flush")).await;
        store.close().await.unwrap();
    });
}

#[test]
fn hidden_rows_follow_a_compaction() {
    on_every_storage(async |store, storage, _| {
        hide_some(store, storage).await;
        store
            .compact_table(&table(), Scope::All, CompactionPolicy::all())
            .await
            .unwrap();
        // The file was rewritten (its hidden rows kept): they now point into the new file.
        let files = store.manifest(&table()).await.unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].1.meta.rows, 100);
        check(store, 18, 0, &format!("{storage} after a compaction")).await;
        store.flush_table(&table(), Scope::All).await.unwrap();
        check(store, 0, 18, &format!("{storage} after a flush")).await;
        store
            .compact_table(&table(), Scope::All, CompactionPolicy::all())
            .await
            .unwrap();
        check(store, 0, 0, &format!("{storage} after a second compaction")).await;
        store.close().await.unwrap();
    });
}

#[test]
fn hidden_rows_travel_with_a_move() {
    on_every_storage(async |store, storage, _| {
        hide_some(store, storage).await;
        let other = if *storage == StorageId::local() {
            StorageId::new("objects").unwrap()
        } else {
            StorageId::local()
        };
        store.move_table(&table(), &other).await.unwrap();
        check(store, 18, 0, &format!("{storage} moved to {other}")).await;
        store.flush_table(&table(), Scope::All).await.unwrap();
        check(store, 0, 18, &format!("{storage} moved, then flushed")).await;
        store.close().await.unwrap();
    });
}

#[test]
fn hidden_rows_follow_a_column_rename() {
    on_every_storage(async |store, storage, _| {
        hide_some(store, storage).await;
        // A rename rewrites the files (the Delta log names columns as the files do).
        store
            .alter_table(
                &table(),
                &SchemaChange::RenameColumn {
                    from: "n".into(),
                    to: "number".into(),
                },
            )
            .await
            .unwrap();
        check(store, 18, 0, &format!("{storage} after a rename")).await;
        store.flush_table(&table(), Scope::All).await.unwrap();
        check(store, 0, 18, &format!("{storage} renamed, then flushed")).await;
        store.close().await.unwrap();
    });
}

/// The child of the SIGKILL test: makes the hidden rows, says so, and waits to be killed.
/// Ignored, so a plain run never counts it; the parent launches it with `--ignored`, and
/// without its parameters it fails.
#[test]
#[ignore = "child process of the SIGKILL test"]
fn hidden_rows_child() {
    let dir = std::env::var(CHILD_DIR).expect("started by the SIGKILL test, with a data dir");
    let storage = std::env::var(CHILD_STORAGE).expect("started with a storage");
    let rt = runtime();
    rt.block_on(async move {
        let (store, _) = store_with_storages(std::path::Path::new(&dir)).await;
        hide_some(&store, &StorageId::new(storage).unwrap()).await;
        println!("WRITTEN");
        std::future::pending::<()>().await;
    });
}

#[test]
fn a_sigkill_between_a_write_and_the_next_flush_keeps_the_hidden_rows() {
    for storage in ["local", "objects"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hidden_rows_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_STORAGE, storage)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut written = false;
        for line in stdout.lines() {
            // libtest prints the test's name on the same line first.
            if line.unwrap().ends_with("WRITTEN") {
                written = true;
                child.kill().unwrap(); // SIGKILL: no destructors, no flush.
                break;
            }
        }
        let status = child.wait().unwrap();
        assert!(written, "{storage}: the child stopped before its writes");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{storage}: {status:?}");
        runtime().block_on(async {
            let store = open_store(dir.path()).await;
            check(&store, 18, 0, &format!("{storage} after SIGKILL")).await;
            store.flush_table(&table(), Scope::All).await.unwrap();
            check(
                &store,
                0,
                18,
                &format!("{storage} after SIGKILL and a flush"),
            )
            .await;
            store.close().await.unwrap();
        });
    }
}

/// A table whose meta partition predates `h` entries (and counted no tombstones): no `o`
/// marker, no `h` entries, 8-byte counters. Opening it finds the hidden rows by a merge-join
/// of its hot keys with its files, once.
#[test]
fn a_table_stored_before_hidden_rows_were_kept_is_upgraded_at_open() {
    on_every_storage(async |store, storage, dir| {
        hide_some(store, storage).await;
        let engine = store.storage_engine(storage).await.unwrap();
        let meta = kalamstore::format::meta_partition(&table());
        let entries = kalamstore::backend::scan_all(engine.as_ref(), &meta, Default::default())
            .await
            .unwrap();
        let mut batch = kalamstore::backend::WriteBatch::new();
        for (key, value) in entries {
            match key.first() {
                Some(b'h') | Some(b'o') => batch.delete(&meta, key),
                Some(b'c') => batch.put(&meta, key, value.slice(..8)),
                _ => {}
            }
        }
        engine.batch(batch).await.unwrap();
        store.close().await.unwrap();
        let store = open_store(dir).await;
        check(&store, 18, 0, &format!("{storage} upgraded")).await;
        store.close().await.unwrap();
        // The upgrade was written: the next open finds the current form.
        let store = open_store(dir).await;
        check(&store, 18, 0, &format!("{storage} reopened")).await;
        store.flush_table(&table(), Scope::All).await.unwrap();
        check(&store, 0, 18, &format!("{storage} upgraded, then flushed")).await;
        store.close().await.unwrap();
    });
}

/// A statement over more keys than the write path stages at a time, in key order: on RocksDB
/// its parts go to sorted files ingested at the commit, elsewhere to one batch. Either way
/// every row, hidden row and logged change is there, also after a restart, and no staged file
/// is left behind.
#[test]
fn a_statement_staged_in_parts_keeps_every_row_through_a_restart() {
    const FLUSHED: i64 = 40_000;
    const ALL: i64 = 45_000;
    let expected: Vec<(i64, String)> = (0..ALL)
        .filter(|i| *i >= FLUSHED || i % 3 != 0)
        .map(|i| {
            (
                i,
                if i < FLUSHED && i % 3 == 1 {
                    "v2"
                } else {
                    "v1"
                }
                .to_owned(),
            )
        })
        .collect();
    let changed = (0..FLUSHED).filter(|i| i % 3 != 2).count() as u64;
    // Chunks of 4096 keys: the statement below is eleven of them.
    let open = async |dir: &std::path::Path| {
        open_store_configured(dir, |c| c.write_chunk_rows = 4_096).await
    };
    let rt = runtime();
    for at in 0..2 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        rt.block_on(async {
            let store = &open(dir).await;
            store
                .create_namespace(&kalamstore::NamespaceId::new("app").unwrap(), true)
                .await
                .unwrap();
            let storage = &storages(store, dir).await[at];
            let t = table();
            store
                .create_table(chat_table("chat", TableType::Shared, storage), false)
                .await
                .unwrap();
            // The load itself is one large ordered statement.
            store
                .insert(&t, None, (0..FLUSHED).map(|i| chat_row(i, "v1")).collect())
                .await
                .unwrap();
            store.flush_table(&t, Scope::All).await.unwrap();
            let before = store
                .changes_since(&t, None, false, 0, usize::MAX)
                .await
                .unwrap()
                .cursor;
            let statement = (0..ALL)
                .filter_map(|i| match (i < FLUSHED, i % 3) {
                    (true, 0) => Some(Mutation::Delete {
                        key: vec![KalamValue::BigInt(i)],
                    }),
                    (true, 1) => Some(Mutation::Update {
                        key: vec![KalamValue::BigInt(i)],
                        set: vec![("body".into(), KalamValue::Text("v2".into()))],
                    }),
                    (true, _) => None,
                    (false, _) => Some(Mutation::Insert(chat_row(i, "v1"))),
                })
                .collect();
            let summary = store.write(&t, None, statement).await.unwrap();
            assert_eq!(summary.inserted, (ALL - FLUSHED) as u64);
            assert_eq!(summary.deleted + summary.updated, changed);
            let check = async |store: &Store, when: &str| {
                assert_eq!(
                    contents(store, &t, None).await,
                    expected,
                    "{storage} {when}"
                );
                let stats = store.table_stats(&t).await.unwrap();
                let hidden: u64 = stats.iter().map(|s| s.hidden_rows).sum();
                assert_eq!(hidden, changed, "{storage} {when}");
                let page = store
                    .changes_since(&t, None, false, before, usize::MAX)
                    .await
                    .unwrap();
                assert_eq!(
                    page.changes.len() as u64,
                    changed + (ALL - FLUSHED) as u64,
                    "{storage} {when}"
                );
                assert!(page.changes.windows(2).all(|w| w[0].seq < w[1].seq));
            };
            check(store, "after the write").await;
            store.close().await.unwrap();
            let staged = dir.join("hot").join("staged");
            let left = std::fs::read_dir(&staged).map_or(0, |d| d.count());
            assert_eq!(left, 0, "files left in {}", staged.display());
            let store = open(dir).await;
            check(&store, "after a restart").await;
            store.flush_table(&t, Scope::All).await.unwrap();
            assert_eq!(
                contents(&store, &t, None).await,
                expected,
                "{storage} after a flush"
            );
            store.close().await.unwrap();
        });
    }
}
