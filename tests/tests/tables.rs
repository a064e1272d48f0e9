//! Tables end to end on a RocksDB storage and on an object-store storage: writes, flush with
//! deletion vectors, merge-on-read, compaction, restart, user isolation, jobs and cleanup.

use std::time::Duration;

use kalamstore::{
    CompactionPolicy, JobStatus, KalamValue, Mutation, NamespaceId, Scope, StorageId, Store,
    TableId, TableType, UserId,
};
use kalamstore_tests::tables::{
    chat_row, chat_table, contents, files_under, store_with_failpoints, store_with_storages,
    wait_until,
};

fn delete(id: i64) -> Mutation {
    Mutation::Delete {
        key: vec![KalamValue::BigInt(id)],
    }
}

fn update(id: i64, body: &str) -> Mutation {
    Mutation::Update {
        key: vec![KalamValue::BigInt(id)],
        set: vec![("body".into(), KalamValue::Text(body.into()))],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_update_of_flushed_rows_survive_flush_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    let mut tables = Vec::new();
    for (i, storage) in storages.iter().enumerate() {
        let def = chat_table(&format!("t{i}"), TableType::Shared, storage);
        let t = def.id.clone();
        store.create_table(def, false).await.unwrap();
        store
            .insert(&t, None, (0..100).map(|i| chat_row(i, "v1")).collect())
            .await
            .unwrap();
        store.flush_table(&t, Scope::All).await.unwrap();
        store
            .write(&t, None, vec![delete(10), update(20, "v2")])
            .await
            .unwrap();
        store.flush_table(&t, Scope::All).await.unwrap();
        let rows = contents(&store, &t, None).await;
        assert_eq!(rows.len(), 99, "{storage}");
        assert!(!rows.iter().any(|(id, _)| *id == 10));
        assert!(rows.contains(&(20, "v2".into())));
        tables.push(t);
    }
    store.close().await.unwrap();

    let (store, _) = store_with_storages(dir.path()).await;
    for t in &tables {
        let rows = contents(&store, t, None).await;
        assert_eq!(rows.len(), 99, "{t} after restart");
        assert!(rows.contains(&(20, "v2".into())));
        store
            .compact_table(t, Scope::All, CompactionPolicy::all())
            .await
            .unwrap();
        let stats = store.table_stats(t).await.unwrap();
        assert_eq!((stats[0].files, stats[0].deleted_rows), (1, 0), "{t}");
    }
    store.close().await.unwrap();

    let (store, _) = store_with_storages(dir.path()).await;
    for t in &tables {
        let rows = contents(&store, t, None).await;
        assert_eq!(rows.len(), 99, "{t} after compaction and restart");
        assert!(!rows.iter().any(|(id, _)| *id == 10));
        assert!(rows.contains(&(20, "v2".into())));
        assert_eq!(
            store.get(t, None, &[KalamValue::BigInt(10)]).await.unwrap(),
            None
        );
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_rows_stay_apart_on_every_storage() {
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    for (i, storage) in storages.iter().enumerate() {
        let def = chat_table(&format!("u{i}"), TableType::User, storage);
        let t = def.id.clone();
        store.create_table(def, false).await.unwrap();
        store
            .insert(
                &t,
                Some(&alice),
                vec![chat_row(1, "alice's"), chat_row(2, "x")],
            )
            .await
            .unwrap();
        store
            .insert(&t, Some(&bob), vec![chat_row(1, "bob's")])
            .await
            .unwrap();
        store
            .flush_table(&t, Scope::User(alice.clone()))
            .await
            .unwrap();
        store.write(&t, Some(&bob), vec![delete(1)]).await.unwrap();
        store.flush_table(&t, Scope::All).await.unwrap();
        assert_eq!(
            contents(&store, &t, Some(&alice)).await,
            [(1, "alice's".into()), (2, "x".into())]
        );
        assert_eq!(contents(&store, &t, Some(&bob)).await, []);
        assert!(matches!(
            store.scan(&t, None, &Default::default()).await,
            Err(kalamstore::Error::Scope { .. })
        ));
    }
    store.close().await.unwrap();
}

/// Writes made while a flush has read the hot rows and written its file, before it commits
/// (the flush held at `flush.before_commit`): updates of rows the file holds and new rows are
/// all there after that flush and the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_during_a_flush_are_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let failpoints = kalamstore::Failpoints::default();
    let (store, storages) = store_with_failpoints(dir.path(), failpoints.clone()).await;
    for (i, storage) in storages.iter().enumerate() {
        let def = chat_table(&format!("c{i}"), TableType::Shared, storage);
        let t = def.id.clone();
        store.create_table(def, false).await.unwrap();
        store
            .insert(&t, None, (0..20_000).map(|i| chat_row(i, "old")).collect())
            .await
            .unwrap();
        let mut pause = failpoints.pause_next("flush.before_commit");
        let flush = {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move { store.flush_table(&t, Scope::All).await })
        };
        pause.reached().await.unwrap();
        let mut latest = std::collections::HashMap::new();
        for round in 0..200i64 {
            let id = (round * 97) % 20_000;
            let body = format!("new{round}");
            store
                .write(&t, None, vec![update(id, &body)])
                .await
                .unwrap();
            latest.insert(id, body);
            store
                .insert(&t, None, vec![chat_row(100_000 + round, "fresh")])
                .await
                .unwrap();
        }
        pause.release();
        flush.await.unwrap().unwrap();
        let expected: Vec<(i64, String)> = (0..20_000)
            .map(|id| (id, latest.get(&id).cloned().unwrap_or_else(|| "old".into())))
            .chain((0..200).map(|r| (100_000 + r, "fresh".to_owned())))
            .collect();
        assert!(
            contents(&store, &t, None).await == expected,
            "{storage}: after the held flush"
        );
        store.flush_table(&t, Scope::All).await.unwrap();
        assert!(
            contents(&store, &t, None).await == expected,
            "{storage}: after the next flush"
        );
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rows_policy_flushes_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = kalamstore::StoreConfig::new(
        dir.path(),
        std::sync::Arc::new(kalamstore::Engines::default()),
    );
    config.scheduler_interval = Duration::from_millis(50);
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    let mut def = chat_table("policy", TableType::Shared, &StorageId::local());
    def.options.flush_policy = "rows:10".parse().unwrap();
    let t = def.id.clone();
    store.create_table(def, false).await.unwrap();
    store
        .insert(&t, None, (0..15).map(|i| chat_row(i, "x")).collect())
        .await
        .unwrap();
    // The table's state changes at the flush's commit; its job record completes just after.
    wait_until("a background flush completed", || async {
        let stats = store.table_stats(&t).await.unwrap();
        let jobs = store.jobs().await.unwrap();
        stats
            .first()
            .is_some_and(|s| s.files == 1 && s.hot_rows == 0)
            && jobs
                .iter()
                .any(|j| j.status == JobStatus::Completed && j.rows == 15)
    })
    .await;
    assert_eq!(contents(&store, &t, None).await.len(), 15);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_table_leaves_no_files_and_orphans_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = kalamstore::StoreConfig::new(
        dir.path(),
        std::sync::Arc::new(kalamstore::Engines::default()),
    );
    config.background = false;
    config.orphan_grace = Duration::ZERO;
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    let def = chat_table("gone", TableType::Shared, &StorageId::local());
    let t: TableId = def.id.clone();
    store.create_table(def, false).await.unwrap();
    store
        .insert(&t, None, vec![chat_row(1, "x")])
        .await
        .unwrap();
    store.flush_table(&t, Scope::All).await.unwrap();
    let table_dir = dir.path().join("cold/app/gone");
    let orphan = table_dir.join("00000000000000ff.parquet");
    std::fs::write(&orphan, b"not referenced").unwrap();
    let job = store.cleanup().await.unwrap();
    assert_eq!(job.files, 1);
    assert!(!orphan.exists());
    assert_eq!(contents(&store, &t, None).await.len(), 1);
    store.drop_table(&t, false).await.unwrap();
    let left: Vec<_> = files_under(&table_dir);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(matches!(
        store.scan(&t, None, &Default::default()).await,
        Err(kalamstore::Error::TableNotFound { .. })
    ));
    store.close().await.unwrap();
}

/// A cleanup looks for orphaned files only in the tables a job worked on since the previous
/// cleanup (and in open or non-idle ones): a data dir of many idle tables costs it one seek
/// per table, and an orphan, which only a job leaves, is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanup_looks_only_at_the_tables_jobs_worked_on_since_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        let mut config = kalamstore::StoreConfig::new(
            dir.path(),
            std::sync::Arc::new(kalamstore::Engines::default()),
        );
        config.background = false;
        config.orphan_grace = Duration::ZERO;
        Store::open(config).await.unwrap()
    };
    let store = open().await;
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    let mut tables: Vec<TableId> = Vec::new();
    for name in ["busy", "idle"] {
        let def = chat_table(name, TableType::Shared, &StorageId::local());
        tables.push(def.id.clone());
        store.create_table(def, false).await.unwrap();
    }
    for t in &tables {
        store.insert(t, None, vec![chat_row(1, "x")]).await.unwrap();
        store.flush_table(t, Scope::All).await.unwrap();
    }
    // Job times are in milliseconds: the flushes end before the first cleanup starts.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.cleanup().await.unwrap().files, 0);
    store.close().await.unwrap();
    drop(store);

    // Reopened: no table handle is open. An orphan in each table's directory; a job on one.
    let store = open().await;
    let orphan = |name: &str| {
        dir.path()
            .join(format!("cold/app/{name}/00000000000000ff.parquet"))
    };
    for name in ["busy", "idle"] {
        std::fs::write(orphan(name), b"not referenced").unwrap();
    }
    store
        .insert(&tables[0], None, vec![chat_row(2, "y")])
        .await
        .unwrap();
    store.flush_table(&tables[0], Scope::All).await.unwrap();
    assert_eq!(store.cleanup().await.unwrap().files, 1);
    assert!(!orphan("busy").exists());
    assert!(orphan("idle").exists(), "no job touched the idle table");
    // Once a job works on it, the next cleanup finds its orphan.
    store
        .insert(&tables[1], None, vec![chat_row(2, "y")])
        .await
        .unwrap();
    store.flush_table(&tables[1], Scope::All).await.unwrap();
    assert_eq!(store.cleanup().await.unwrap().files, 1);
    assert!(!orphan("idle").exists());
    for t in &tables {
        assert_eq!(contents(&store, t, None).await.len(), 2);
    }
    store.close().await.unwrap();
}

/// A figure of the RocksDB engine's statistics under `local`.
async fn rocksdb_figure(store: &Store, name: &str) -> u64 {
    let stats = store
        .storage_engine(&StorageId::local())
        .await
        .unwrap()
        .stats()
        .await
        .unwrap();
    let value = stats.details.iter().find(|(n, _)| n == name);
    value.and_then(|(_, v)| v.parse().ok()).unwrap()
}

/// A table flush removes each scope's rows with one range delete, then asks RocksDB to drop
/// them from its shared memtable at most once for the whole table (none while the memtable is
/// too small to matter, see `RocksDbConfig::reclaim_min_memtable_bytes`), not once per user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_flush_has_rocksdb_drop_the_flushed_rows_at_most_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_storages(dir.path()).await;
    let def = chat_table("inbox", TableType::User, &StorageId::local());
    let t = def.id.clone();
    store.create_table(def, false).await.unwrap();
    let users: Vec<UserId> = ["ann", "bob", "cy"]
        .iter()
        .map(|u| UserId::new(*u).unwrap())
        .collect();
    for user in &users {
        store
            .insert(
                &t,
                Some(user),
                (0..200).map(|i| chat_row(i, "v1")).collect(),
            )
            .await
            .unwrap();
    }
    let before = rocksdb_figure(&store, "table_files").await;
    store.flush_table(&t, Scope::All).await.unwrap();
    // The memtable flush runs in the background: wait until RocksDB has none left to do.
    wait_until("RocksDB finished its memtable flushes", || async {
        rocksdb_figure(&store, "flushes_pending").await == 0
    })
    .await;
    assert!(rocksdb_figure(&store, "table_files").await <= before + 1);
    for user in &users {
        assert_eq!(contents(&store, &t, Some(user)).await.len(), 200, "{user}");
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_moved_elsewhere_reads_its_own_flushed_files() {
    let parent = tempfile::tempdir().unwrap();
    let (before, after) = (parent.path().join("before"), parent.path().join("after"));
    let store = kalamstore_tests::tables::open_store(&before).await;
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), true)
        .await
        .unwrap();
    let def = chat_table("moved", TableType::Shared, &StorageId::local());
    let t = def.id.clone();
    store.create_table(def, false).await.unwrap();
    store
        .insert(&t, None, (0..10).map(|i| chat_row(i, "flushed")).collect())
        .await
        .unwrap();
    store.flush_table(&t, Scope::All).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    std::fs::rename(&before, &after).unwrap();

    let store = kalamstore_tests::tables::open_store(&after).await;
    let rows = contents(&store, &t, None).await;
    assert_eq!(rows.len(), 10, "the moved dir's rows: {rows:?}");
    let local = store
        .storages()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == StorageId::local())
        .unwrap();
    assert_eq!(
        std::path::Path::new(&local.cold_url),
        after.join("cold"),
        "the local storage's files are the moved dir's"
    );
    store.close().await.unwrap();
}
