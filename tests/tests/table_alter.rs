//! ALTER TABLE end to end on a RocksDB storage and an object-store storage (and S3 when the
//! test server runs): schema changes across restarts, storage moves between engines and object
//! stores with concurrent writes, STREAM TTL reclaimed in the background, drops that leave the
//! storage empty.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use kalamstore::{
    ColumnDefinition, CompactionPolicy, HotEngine, JobKind, JobStatus, KalamDataType, KalamValue,
    Mutation, NamespaceId, OptionsChange, ScanOptions, SchemaChange, Scope, StorageDefinition,
    StorageId, Store, StoreConfig, TableId, TableType, UserId,
};
use kalamstore_tests::tables::{
    chat_row, chat_table, cold_dir, contents, files_under, open_store, storages,
    store_with_storages, table_partitions, wait_until,
};
use kalamstore_tests::{s3_server, unique_prefix};

/// Flushed rows 0..200 with 10..20 deleted and 20 updated, then hot rows 200..230, for
/// `users` (or the shared keyspace when empty).
async fn fill(store: &Store, t: &TableId, users: &[UserId]) {
    let scopes: Vec<Option<&UserId>> = if users.is_empty() {
        vec![None]
    } else {
        users.iter().map(Some).collect()
    };
    for user in scopes {
        store
            .insert(t, user, (0..200).map(|i| chat_row(i, "v1")).collect())
            .await
            .unwrap();
        store.flush_table(t, Scope::All).await.unwrap();
        let mut changes: Vec<Mutation> = (10..20)
            .map(|i| Mutation::Delete {
                key: vec![KalamValue::BigInt(i)],
            })
            .collect();
        changes.push(Mutation::Update {
            key: vec![KalamValue::BigInt(20)],
            set: vec![("body".into(), KalamValue::Text("v2".into()))],
        });
        store.write(t, user, changes).await.unwrap();
        store.flush_table(t, Scope::All).await.unwrap();
        store
            .insert(t, user, (200..230).map(|i| chat_row(i, "hot")).collect())
            .await
            .unwrap();
    }
}

fn expected_rows() -> Vec<(i64, String)> {
    (0..230)
        .filter(|i| !(10..20).contains(i))
        .map(|i| {
            let body = match i {
                20 => "v2",
                200.. => "hot",
                _ => "v1",
            };
            (i, body.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_read_old_rows_and_files_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    let tables: Vec<TableId> = (0..storages.len())
        .map(|i| format!("app.s{i}").parse().unwrap())
        .collect();
    for (t, storage) in tables.iter().zip(&storages) {
        let name = t.table.to_string();
        store
            .create_table(chat_table(&name, TableType::Shared, storage), false)
            .await
            .unwrap();
        fill(&store, t, &[]).await;
        for change in [
            SchemaChange::AddColumn(
                ColumnDefinition::new("tag", KalamDataType::Text)
                    .not_null()
                    .with_default(KalamValue::Text("none".into())),
            ),
            SchemaChange::RenameColumn {
                from: "body".into(),
                to: "text".into(),
            },
            SchemaChange::ModifyColumn {
                name: "n".into(),
                data_type: KalamDataType::BigInt,
            },
        ] {
            store.alter_table(t, &change).await.unwrap();
        }
    }
    store.close().await.unwrap();

    let store = open_store(dir.path()).await;
    for (t, storage) in tables.iter().zip(&storages) {
        let def = store.table(t).await.unwrap();
        assert_eq!((def.schema.version, def.history.len()), (4, 3));
        let check = |batches: Vec<arrow::array::RecordBatch>, when: &str| {
            let mut rows = Vec::new();
            for b in &batches {
                let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
                let texts = b.column_by_name("text").unwrap().as_string::<i32>();
                let ns = b.column_by_name("n").unwrap().as_primitive::<Int64Type>();
                let tags = b.column_by_name("tag").unwrap().as_string::<i32>();
                for i in 0..b.num_rows() {
                    assert_eq!(ns.value(i), ids.value(i), "{storage} {when}: n widened");
                    assert_eq!(tags.value(i), "none", "{storage} {when}: default");
                    assert!(texts.is_valid(i));
                    rows.push((ids.value(i), texts.value(i).to_owned()));
                }
            }
            rows.sort();
            assert_eq!(rows, expected_rows(), "{storage} {when}");
        };
        let all = ScanOptions::default();
        check(store.scan(t, None, &all).await.unwrap(), "after restart");
        store.flush_table(t, Scope::All).await.unwrap();
        store
            .compact_table(t, Scope::All, CompactionPolicy::all())
            .await
            .unwrap();
        let files = store.manifest(t).await.unwrap();
        assert!(files.iter().all(|(_, f)| f.meta.schema_version == 4));
        check(store.scan(t, None, &all).await.unwrap(), "after compaction");
        let err = store
            .alter_table(t, &SchemaChange::DropColumn("id".into()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("primary-key"), "{err}");
    }
    store.close().await.unwrap();
}

/// Moves a USER table of two users around `path` (storage ids), checking every row, the
/// catalog and that the storage it left holds nothing of it.
async fn move_around(store: &Store, dir: &std::path::Path, t: &TableId, path: &[StorageId]) {
    let users = [UserId::new("alice").unwrap(), UserId::new("bob").unwrap()];
    let mut from = store.table(t).await.unwrap().storage_id.clone();
    for to in path {
        let job = store.move_table(t, to).await.unwrap().unwrap();
        assert_eq!(
            (job.kind, job.status),
            (JobKind::Move, JobStatus::Completed)
        );
        assert!(job.files >= 4 && job.bytes > 0, "{job:?}");
        assert_eq!(store.table(t).await.unwrap().storage_id, *to);
        for u in &users {
            assert_eq!(
                contents(store, t, Some(u)).await,
                expected_rows(),
                "{from} -> {to}"
            );
        }
        if from == StorageId::local() || from.as_str() == "objects" {
            let left = files_under(&cold_dir(dir, &from).join("app").join(t.table.as_str()));
            assert!(left.is_empty(), "{from} kept {left:?}");
        }
        assert!(table_partitions(store, &from).await.is_empty(), "{from}");
        from = to.clone();
    }
    assert!(store.table_tasks().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_moves_between_rocksdb_and_object_store_storages_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    let t: TableId = "app.moving".parse().unwrap();
    store
        .create_table(chat_table("moving", TableType::User, &storages[0]), false)
        .await
        .unwrap();
    let users = [UserId::new("alice").unwrap(), UserId::new("bob").unwrap()];
    fill(&store, &t, &users).await;
    move_around(
        &store,
        dir.path(),
        &t,
        &[storages[1].clone(), storages[0].clone()],
    )
    .await;
    assert!(store.move_table(&t, &storages[0]).await.unwrap().is_none());

    // Unknown or unreachable targets fail before touching data.
    let err = store
        .move_table(&t, &StorageId::new("nowhere").unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    store.close().await.unwrap();

    // Everything survives a restart on the final storage.
    let store = open_store(dir.path()).await;
    for u in &users {
        assert_eq!(contents(&store, &t, Some(u)).await, expected_rows());
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_moves_from_rocksdb_to_s3_and_back() {
    let Some(server) = s3_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    let prefix = unique_prefix();
    let s3 = StorageId::new("s3").unwrap();
    store
        .create_storage(StorageDefinition {
            id: s3.clone(),
            hot: HotEngine::ObjectStore {
                url: format!("s3://{}/{prefix}/hot", server.bucket),
            },
            cold_url: format!("s3://{}/{prefix}/cold", server.bucket),
            s3: server.options.clone(),
            cache: None,
            metadata_cache_bytes: None,
            created_at_ms: 0,
        })
        .await
        .unwrap();
    let t: TableId = "app.remote".parse().unwrap();
    store
        .create_table(chat_table("remote", TableType::User, &storages[0]), false)
        .await
        .unwrap();
    let users = [UserId::new("alice").unwrap(), UserId::new("bob").unwrap()];
    fill(&store, &t, &users).await;
    move_around(&store, dir.path(), &t, &[s3.clone(), storages[0].clone()]).await;
    // Nothing of the table is left in the bucket's cold tier.
    let cold = kalamstore::location::open_store(
        &format!("s3://{}/{prefix}/cold", server.bucket),
        &server.options,
    )
    .unwrap();
    let listed = {
        use futures::TryStreamExt;
        cold.store
            .list(Some(&object_store::path::Path::from(format!(
                "{prefix}/cold/app/remote"
            ))))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    };
    assert!(listed.is_empty(), "left in S3: {listed:?}");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_and_reads_during_a_move_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    let t: TableId = "app.busy".parse().unwrap();
    store
        .create_table(chat_table("busy", TableType::Shared, &storages[0]), false)
        .await
        .unwrap();
    for chunk in 0..4i64 {
        store
            .insert(
                &t,
                None,
                (chunk * 1000..(chunk + 1) * 1000)
                    .map(|i| chat_row(i, "old"))
                    .collect(),
            )
            .await
            .unwrap();
        store.flush_table(&t, Scope::All).await.unwrap();
    }
    let acked = Arc::new(AtomicI64::new(4000));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, acked, stop, t) = (store.clone(), acked.clone(), stop.clone(), t.clone());
        tokio::spawn(async move {
            let mut next = 4000;
            while !stop.load(Ordering::Relaxed) {
                store
                    .insert(&t, None, vec![chat_row(next, "new")])
                    .await
                    .unwrap();
                next += 1;
                acked.store(next, Ordering::Release);
            }
        })
    };
    let reader = {
        let (store, acked, stop, t) = (store.clone(), acked.clone(), stop.clone(), t.clone());
        tokio::spawn(async move {
            let mut scans = 0;
            while !stop.load(Ordering::Relaxed) {
                let floor = acked.load(Ordering::Acquire) as usize;
                let seen = contents(&store, &t, None).await.len();
                assert!(
                    seen >= floor,
                    "a scan saw {seen} of {floor} acknowledged rows"
                );
                scans += 1;
            }
            scans
        })
    };
    // Both moves run while the writer is writing: wait for its writes before and after.
    let written_past = |n: i64| {
        let acked = acked.clone();
        move || {
            let acked = acked.clone();
            async move { acked.load(Ordering::Acquire) >= n }
        }
    };
    wait_until("the writer is writing", written_past(4050)).await;
    for to in [&storages[1], &storages[0]] {
        store.move_table(&t, to).await.unwrap();
    }
    let after = acked.load(Ordering::Acquire) + 50;
    wait_until("the writer writes after the moves", written_past(after)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(reader.await.unwrap() > 0);
    let n = acked.load(Ordering::Acquire);
    let rows = contents(&store, &t, None).await;
    assert_eq!(
        rows.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_stream_rows_are_reclaimed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path(), Arc::new(kalamstore::Engines::default()));
    config.scheduler_interval = Duration::from_millis(100);
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    let storages = storages(&store, dir.path()).await;
    for (i, storage) in storages.iter().enumerate() {
        let mut def = chat_table(&format!("events{i}"), TableType::Shared, storage);
        def.table_type = TableType::Stream;
        def.options.ttl_seconds = Some(3600);
        let t = def.id.clone();
        store.create_table(def, false).await.unwrap();
        store
            .insert(&t, None, (0..5000).map(|i| chat_row(i, "burst")).collect())
            .await
            .unwrap();
        let engine = store.storage_engine(storage).await.unwrap();
        let hot = kalamstore::format::hot_partition(&t);
        let entries = || async {
            kalamstore::backend::scan_all(engine.as_ref(), &hot, Default::default())
                .await
                .unwrap()
                .len()
        };
        assert_eq!(entries().await, 5000);
        // A shorter TTL applies to the rows already there.
        store
            .set_table_options(
                &t,
                &OptionsChange {
                    ttl_seconds: Some(1),
                    ..OptionsChange::default()
                },
            )
            .await
            .unwrap();
        wait_until("expired rows are reclaimed", || async {
            entries().await == 0
        })
        .await;
        assert!(contents(&store, &t, None).await.is_empty());
        // Unknown and type-inappropriate options are refused.
        let flush = OptionsChange {
            flush_policy: Some("rows:5".parse().unwrap()),
            ..OptionsChange::default()
        };
        assert!(matches!(
            store.set_table_options(&t, &flush).await,
            Err(kalamstore::Error::InvalidSchema { .. })
        ));
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_leave_the_storage_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    for storage in &storages {
        let t: TableId = "app.doomed".parse().unwrap();
        store
            .create_table(chat_table("doomed", TableType::User, storage), false)
            .await
            .unwrap();
        let other: TableId = "app.other".parse().unwrap();
        store
            .create_table(chat_table("other", TableType::Shared, storage), false)
            .await
            .unwrap();
        fill(&store, &t, &[UserId::new("alice").unwrap()]).await;
        fill(&store, &other, &[]).await;
        assert!(!files_under(&cold_dir(dir.path(), storage)).is_empty());

        store.drop_table(&t, false).await.unwrap();
        let left = files_under(&cold_dir(dir.path(), storage).join("app/doomed"));
        assert!(left.is_empty(), "{storage}: {left:?}");
        assert_eq!(
            table_partitions(&store, storage).await,
            ["t.app.other.hot", "t.app.other.log", "t.app.other.meta"]
        );
        let drop_job = store.jobs().await.unwrap().pop().unwrap();
        assert_eq!(
            (drop_job.kind, drop_job.status),
            (JobKind::Drop, JobStatus::Completed)
        );

        store
            .drop_namespace(&NamespaceId::new("app").unwrap(), true)
            .await
            .unwrap();
        let left = files_under(&cold_dir(dir.path(), storage));
        assert!(left.is_empty(), "{storage}: {left:?}");
        assert!(table_partitions(&store, storage).await.is_empty());
        store
            .create_namespace(&NamespaceId::new("app").unwrap(), false)
            .await
            .unwrap();
    }
    store.close().await.unwrap();
}
