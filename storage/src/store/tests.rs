//! Store behaviour on the in-memory engine with Parquet in a temp dir.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use arrow::record_batch::RecordBatch;

use super::*;
use crate::*;

async fn store() -> (tempfile::TempDir, Store) {
    store_with_clock(Arc::new(crate::clock::SystemClock)).await
}

/// A store on the memory engines whose time is `clock`.
async fn store_with_clock(clock: Arc<dyn crate::clock::Clock>) -> (tempfile::TempDir, Store) {
    store_with(|config| config.clock = clock).await
}

/// A store on the memory engines, without background work, with namespace `app`, after
/// `configure` changed its settings.
async fn store_with(configure: impl FnOnce(&mut StoreConfig)) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path(), Arc::new(MemoryEngines));
    config.background = false;
    configure(&mut config);
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    (dir, store)
}

fn messages(kind: TableType) -> TableDefinition {
    let options = TableOptions {
        ttl_seconds: (kind == TableType::Stream).then_some(3600),
        ..TableOptions::default()
    };
    TableDefinition::new(
        "app.messages".parse().unwrap(),
        kind,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("body", KalamDataType::Text),
            ColumnDefinition::new("score", KalamDataType::Int)
                .not_null()
                .with_default(KalamValue::Int(0)),
        ],
        StorageId::local(),
        options,
        0,
    )
    .unwrap()
}

fn row(id: i64, body: &str) -> Vec<(String, KalamValue)> {
    vec![
        ("id".into(), KalamValue::BigInt(id)),
        ("body".into(), KalamValue::Text(body.into())),
    ]
}

fn t() -> TableId {
    "app.messages".parse().unwrap()
}

async fn ids(store: &Store, user: Option<&UserId>, filter: Option<Filter>) -> Vec<i64> {
    let options = ScanOptions {
        filter,
        ..ScanOptions::default()
    };
    let mut out: Vec<i64> = store
        .scan(&t(), user, &options)
        .await
        .unwrap()
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    out.sort_unstable();
    out
}

/// A store with the SHARED messages table holding rows `0..n` (body `body`), flushed.
async fn flushed_shared(n: i64, body: &str) -> (tempfile::TempDir, Store) {
    let (dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store
        .insert(&t(), None, (0..n).map(|i| row(i, body)).collect())
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn insert_flush_delete_flush_returns_nothing_also_after_compaction() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store
        .insert(&t(), None, (0..10).map(|i| row(i, "hi")).collect())
        .await
        .unwrap();
    let job = store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(
        (job.status, job.rows, job.files),
        (JobStatus::Completed, 10, 1)
    );
    assert_eq!(ids(&store, None, None).await, (0..10).collect::<Vec<_>>());

    let deleted = store
        .write(
            &t(),
            None,
            vec![Mutation::Delete {
                key: vec![KalamValue::BigInt(3)],
            }],
        )
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 1);
    assert!(
        !ids(&store, None, None).await.contains(&3),
        "hot tombstone hides it"
    );
    store.flush_table(&t(), Scope::All).await.unwrap();
    let stats = store.table_stats(&t()).await.unwrap();
    assert_eq!((stats[0].hot_rows, stats[0].deleted_rows), (0, 1));
    assert!(
        !ids(&store, None, None).await.contains(&3),
        "deletion vector hides it"
    );
    assert_eq!(
        store
            .get(&t(), None, &[KalamValue::BigInt(3)])
            .await
            .unwrap(),
        None
    );

    store
        .write(
            &t(),
            None,
            vec![Mutation::Update {
                key: vec![KalamValue::BigInt(4)],
                set: vec![("body".into(), KalamValue::Text("new".into()))],
            }],
        )
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    let got = store
        .get(&t(), None, &[KalamValue::BigInt(4)])
        .await
        .unwrap();
    assert_eq!(got.unwrap()[1], KalamValue::Text("new".into()));
    assert_eq!(ids(&store, None, None).await.len(), 9);

    store
        .compact_table(&t(), Scope::All, CompactionPolicy::all())
        .await
        .unwrap();
    let stats = store.table_stats(&t()).await.unwrap();
    assert_eq!(
        (stats[0].files, stats[0].deleted_rows, stats[0].file_rows),
        (1, 0, 9)
    );
    assert_eq!(ids(&store, None, None).await.len(), 9);
    let got = store
        .get(&t(), None, &[KalamValue::BigInt(4)])
        .await
        .unwrap();
    assert_eq!(got.unwrap()[1], KalamValue::Text("new".into()));
    assert_eq!(
        store
            .get(&t(), None, &[KalamValue::BigInt(3)])
            .await
            .unwrap(),
        None
    );
}

/// A read leaves hot tombstones out (the flushed rows they delete are hidden in their files),
/// so a large DELETE left hot is not decoded by every read: a scope of only tombstones has no
/// hot rows, a live row among tombstones is the only one decoded, and the deleted rows stay
/// hidden.
#[tokio::test]
async fn reads_decode_no_hot_tombstones_and_still_hide_the_deleted_rows() {
    let (_dir, store) = flushed_shared(100, "hi").await;
    let deletes = (0..50)
        .map(|i| Mutation::Delete {
            key: vec![KalamValue::BigInt(i)],
        })
        .collect();
    store.write(&t(), None, deletes).await.unwrap();
    let handle = store.handle(&t()).await.unwrap();
    let scope = crate::merge::Scopes::One(handle.scope(None).unwrap());
    let whole = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    let hot_rows = || async {
        let snapshot = crate::merge::snapshot(&handle, &scope, &whole, None)
            .await
            .unwrap();
        snapshot.scopes[0].hot.as_ref().map(|h| h.batch.num_rows())
    };
    assert_eq!(hot_rows().await, None, "50 tombstones, no hot row");
    assert_eq!(ids(&store, None, None).await, (50..100).collect::<Vec<_>>());
    store
        .insert(&t(), None, vec![row(7, "back")])
        .await
        .unwrap();
    assert_eq!(hot_rows().await, Some(1), "the re-inserted row only");
    let mut expected: Vec<i64> = (50..100).collect();
    expected.insert(0, 7);
    assert_eq!(ids(&store, None, None).await, expected);
}

/// A read of a few columns decodes only those of the hot rows (and its filter's), and does
/// not leave them in the table's cache of decoded rows: a read of every column after it still
/// gets every value.
#[tokio::test]
async fn a_read_of_some_columns_decodes_only_those_and_keeps_nothing_partial() {
    let (_dir, store) = flushed_shared(10, "cold").await;
    store
        .insert(&t(), None, (10..20).map(|i| row(i, "hot")).collect())
        .await
        .unwrap();
    let handle = store.handle(&t()).await.unwrap();
    let scope = crate::merge::Scopes::One(handle.scope(None).unwrap());
    let whole = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    let ids_only = [true, false, false];
    let snapshot = crate::merge::snapshot(&handle, &scope, &whole, Some(&ids_only))
        .await
        .unwrap();
    let hot = snapshot.scopes[0].hot.as_ref().unwrap();
    assert_eq!(hot.batch.num_rows(), 10);
    assert_eq!(
        hot.batch.column(1).data_type(),
        &arrow::datatypes::DataType::Null
    );
    drop(snapshot);
    // Filtered on a column the read does not return: the filter's column is decoded too.
    let options = ScanOptions {
        columns: Some(vec!["id".into()]),
        filter: Some(Filter::eq("body", KalamValue::Text("hot".into()))),
        ..ScanOptions::default()
    };
    let batches = store.scan(&t(), None, &options).await.unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 10);
    let bodies: Vec<KalamValue> = store
        .get_many(&t(), None, &[vec![KalamValue::BigInt(15)]])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap()[1].clone())
        .collect();
    assert_eq!(bodies, vec![KalamValue::Text("hot".into())]);
    let all = store
        .scan(&t(), None, &ScanOptions::default())
        .await
        .unwrap();
    let body = all
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("body").unwrap().as_string::<i32>();
            (0..b.num_rows())
                .map(|i| column.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|b| b == "hot")
        .count();
    assert_eq!(body, 10, "every hot row's body, after the partial read");
}

#[tokio::test]
async fn insert_of_an_existing_key_fails_and_changes_nothing() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store.insert(&t(), None, vec![row(1, "a")]).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    let err = store
        .insert(&t(), None, vec![row(2, "b"), row(1, "again")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateKey { .. }), "{err}");
    assert_eq!(
        ids(&store, None, None).await,
        [1],
        "the batch is all-or-nothing"
    );
    let up = store
        .write(&t(), None, vec![Mutation::Upsert(row(1, "again"))])
        .await
        .unwrap();
    assert_eq!(up.updated, 1);
}

#[tokio::test]
async fn type_and_null_errors_name_the_column() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let err = store
        .insert(
            &t(),
            None,
            vec![vec![
                ("id".into(), KalamValue::BigInt(1)),
                ("score".into(), KalamValue::Text("x".into())),
            ]],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("score"), "{err}");
    let err = store
        .insert(
            &t(),
            None,
            vec![vec![("body".into(), KalamValue::Text("x".into()))]],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`id`"), "{err}");
    let err = store
        .insert(&t(), None, vec![vec![("nope".into(), KalamValue::Int(1))]])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn user_tables_keep_users_apart() {
    let (dir, store) = store().await;
    store
        .create_table(messages(TableType::User), false)
        .await
        .unwrap();
    let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    store
        .insert(&t(), Some(&alice), vec![row(1, "a1"), row(2, "a2")])
        .await
        .unwrap();
    store
        .insert(&t(), Some(&bob), vec![row(1, "b1")])
        .await
        .unwrap();
    assert!(matches!(
        store.scan(&t(), None, &ScanOptions::all()).await,
        Err(Error::Scope { .. })
    ));
    store
        .flush_table(&t(), Scope::User(alice.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&store, Some(&alice), None).await, [1, 2]);
    assert_eq!(ids(&store, Some(&bob), None).await, [1]);
    let b = store
        .get(&t(), Some(&bob), &[KalamValue::BigInt(1)])
        .await
        .unwrap();
    assert_eq!(b.unwrap()[1], KalamValue::Text("b1".into()));
    store.flush_table(&t(), Scope::All).await.unwrap();
    assert!(dir.path().join("cold/app/messages/_user=alice").is_dir());
    assert!(dir.path().join("cold/app/messages/_user=bob").is_dir());
    assert_eq!(ids(&store, Some(&bob), None).await, [1]);
    assert_eq!(
        ids(&store, Some(&UserId::new("carol").unwrap()), None).await,
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn filters_apply_to_hot_and_flushed_rows() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store
        .insert(
            &t(),
            None,
            (0..50)
                .map(|i| row(i, if i % 2 == 0 { "even" } else { "odd" }))
                .collect(),
        )
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .insert(&t(), None, (50..60).map(|i| row(i, "hot")).collect())
        .await
        .unwrap();
    let f = Filter::cmp("id", CmpOp::GtEq, KalamValue::BigInt(45)).and(Filter::cmp(
        "id",
        CmpOp::Lt,
        KalamValue::BigInt(55),
    ));
    assert_eq!(
        ids(&store, None, Some(f)).await,
        (45..55).collect::<Vec<_>>()
    );
    let f = Filter::eq("body", KalamValue::Text("odd".into()));
    assert_eq!(ids(&store, None, Some(f)).await.len(), 25);
    let f = Filter::In {
        column: "id".into(),
        values: vec![
            KalamValue::BigInt(3),
            KalamValue::BigInt(57),
            KalamValue::BigInt(99),
        ],
        negated: false,
    };
    assert_eq!(ids(&store, None, Some(f)).await, [3, 57]);
    let limited = store
        .scan(
            &t(),
            None,
            &ScanOptions {
                limit: Some(7),
                ..ScanOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limited.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
}

#[tokio::test]
async fn stream_rows_are_not_flushed_and_expire() {
    let clock = Arc::new(crate::clock::ManualClock::new());
    let (_dir, store) = store_with_clock(clock.clone()).await;
    let mut def = messages(TableType::Stream);
    def.options.ttl_seconds = Some(1);
    store.create_table(def, false).await.unwrap();
    store.insert(&t(), None, vec![row(1, "x")]).await.unwrap();
    assert_eq!(ids(&store, None, None).await, [1]);
    assert!(matches!(
        store.flush_table(&t(), Scope::All).await,
        Err(Error::InvalidQuery { .. })
    ));
    clock.advance(Duration::from_millis(999));
    assert_eq!(ids(&store, None, None).await, [1], "not yet expired");
    clock.advance(Duration::from_millis(2));
    assert_eq!(ids(&store, None, None).await, Vec::<i64>::new());
    let job = store.cleanup().await.unwrap();
    assert_eq!(job.rows, 1);
    assert_eq!(store.table_stats(&t()).await.unwrap()[0].hot_rows, 0);
}

/// One maintenance pass runs what the clock says is due: an `interval` flush counted from the
/// table's creation, STREAM expiry, and the cleanup job at its cadence with job retention by
/// count.
#[tokio::test]
async fn maintain_runs_due_flushes_expiry_and_cleanup_by_the_clock() {
    let clock = Arc::new(crate::clock::ManualClock::new());
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path(), Arc::new(MemoryEngines));
    config.background = false;
    config.clock = clock.clone();
    config.job_retention_count = 2;
    config.cleanup_interval = Duration::from_secs(60);
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    let mut def = messages(TableType::Shared);
    def.options.flush_policy = "interval:30".parse().unwrap();
    def.schema.created_at_ms = clock.now_ms();
    store.create_table(def, false).await.unwrap();
    let mut stream = messages(TableType::Stream);
    stream.id = "app.typing".parse().unwrap();
    stream.options.ttl_seconds = Some(10);
    store.create_table(stream, false).await.unwrap();
    let typing: TableId = "app.typing".parse().unwrap();
    store
        .insert(&t(), None, (0..5).map(|i| row(i, "x")).collect())
        .await
        .unwrap();
    store
        .insert(&typing, None, vec![row(1, "ann")])
        .await
        .unwrap();
    let budget = Duration::from_secs(60);

    let first = store.maintain(budget).await.unwrap();
    assert_eq!((first.flushes, first.stream_rows_expired), (0, 0));
    assert!(
        first.cleanup.is_some(),
        "no cleanup ran before: due at once"
    );

    clock.advance(Duration::from_secs(31));
    let second = store.maintain(budget).await.unwrap();
    assert_eq!((second.flushes, second.rows_flushed), (1, 5));
    assert_eq!(second.stream_rows_expired, 1, "the STREAM row is 31 s old");
    let expiry: Vec<_> = store
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == JobKind::Expiry)
        .collect();
    assert_eq!(expiry.len(), 1, "one expiry job, none for the first pass");
    assert_eq!(
        (expiry[0].status, expiry[0].rows, expiry[0].table.as_ref()),
        (JobStatus::Completed, 1, Some(&typing))
    );
    assert!(second.cleanup.is_none(), "the last cleanup ran 31 s ago");
    let stats = store.table_stats(&t()).await.unwrap();
    assert_eq!((stats[0].files, stats[0].hot_rows), (1, 0));
    assert_eq!(store.table_stats(&typing).await.unwrap()[0].hot_rows, 0);

    store
        .insert(&t(), None, (5..8).map(|i| row(i, "x")).collect())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(31));
    let third = store.maintain(budget).await.unwrap();
    assert_eq!((third.flushes, third.rows_flushed), (1, 3));
    let cleanup = third.cleanup.expect("62 s since the first cleanup");
    // Finished before it: cleanup, flush, expiry, flush; the oldest beyond two went.
    let jobs = store.jobs().await.unwrap();
    let kinds: Vec<_> = jobs.iter().map(|j| j.kind).collect();
    assert_eq!(kinds, [JobKind::Expiry, JobKind::Flush, JobKind::Cleanup]);
    assert_eq!(jobs[2].id, cleanup.id);
    assert_eq!(ids(&store, None, None).await, (0..8).collect::<Vec<_>>());
}

/// A job record pruned (past `job_retention_count`) while the files its job may have orphaned
/// are within the orphan grace leaves its table on the watch list: later cleanups look at the
/// table until a cleanup starts a grace period after the job ended.
#[tokio::test]
async fn pruned_recent_jobs_keep_their_table_on_the_orphan_watch_list() {
    let clock = Arc::new(crate::clock::ManualClock::new());
    let (_dir, store) = store_with(|config| {
        config.clock = clock.clone();
        config.job_retention_count = 1;
        config.orphan_grace = Duration::from_secs(600);
    })
    .await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    for i in 0..2 {
        store.insert(&t(), None, vec![row(i, "x")]).await.unwrap();
        store.flush_table(&t(), Scope::All).await.unwrap();
    }
    let watched = || async {
        store
            .catalog(ORPHAN_WATCH, |k, _| {
                Ok(String::from_utf8_lossy(k).into_owned())
            })
            .await
            .unwrap()
    };
    // The first cleanup looks at every table and prunes the older flush's record.
    clock.advance(Duration::from_secs(1));
    store.cleanup().await.unwrap();
    assert_eq!(watched().await, ["app.messages"]);
    // No job since that cleanup: the table is looked at for the watch list alone.
    clock.advance(Duration::from_secs(1));
    let touched = store.tables_touched_since_last_cleanup().await.unwrap();
    assert_eq!(touched, Some(std::iter::once(t()).collect()));
    store.cleanup().await.unwrap();
    assert_eq!(watched().await, ["app.messages"], "still within the grace");
    // A cleanup a grace period later takes its orphans and the table off the list.
    clock.advance(Duration::from_secs(601));
    store.cleanup().await.unwrap();
    assert!(watched().await.is_empty());
    store.close().await.unwrap();
}

#[tokio::test]
async fn catalog_refuses_bad_requests_clearly() {
    let (_dir, store) = store().await;
    let mut def = messages(TableType::Shared);
    def.storage_id = StorageId::new("nowhere").unwrap();
    assert!(matches!(
        store.create_table(def, false).await,
        Err(Error::StorageNotFound { .. })
    ));
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    assert!(matches!(
        store.create_table(messages(TableType::Shared), false).await,
        Err(Error::TableExists { .. })
    ));
    assert!(
        !store
            .create_table(messages(TableType::Shared), true)
            .await
            .unwrap()
    );
    let app = NamespaceId::new("app").unwrap();
    assert!(matches!(
        store.drop_namespace(&app, false).await,
        Err(Error::NamespaceNotEmpty { .. })
    ));
    assert!(matches!(
        store.drop_storage(&StorageId::local(), false).await,
        Err(Error::StorageInUse { .. })
    ));
    store.drop_namespace(&app, true).await.unwrap();
    assert!(store.tables(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_storage_that_cannot_write_is_refused_with_the_failing_step() {
    let (dir, store) = store().await;
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = store
        .create_storage(StorageDefinition {
            id: StorageId::new("bad").unwrap(),
            hot: HotEngine::Memory,
            cold_url: blocker.join("sub").to_string_lossy().into_owned(),
            s3: S3Options::default(),
            cache: None,
            metadata_cache_bytes: None,
            created_at_ms: 0,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StorageCheck { .. }), "{err}");
    store
        .create_storage(StorageDefinition {
            id: StorageId::new("mem").unwrap(),
            hot: HotEngine::Memory,
            cold_url: "memory://".into(),
            s3: S3Options::default(),
            cache: None,
            metadata_cache_bytes: None,
            created_at_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(store.storages().await.unwrap().len(), 2);
}

#[tokio::test]
async fn jobs_record_their_life() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store.insert(&t(), None, vec![row(1, "a")]).await.unwrap();
    let job = store.flush_table(&t(), Scope::All).await.unwrap();
    let jobs = store.jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0], job);
    assert!(job.started_at_ms.is_some() && job.ended_at_ms.is_some());
    assert!(matches!(
        store.cancel_job("j-nope").await,
        Err(Error::JobNotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_vectors_stay_aligned_when_row_groups_are_pruned() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    // More rows than one row group holds, so pruning skips whole groups.
    let n = crate::format::ROW_GROUP_ROWS as i64 + 20_000;
    for start in (0..n).step_by(10_000) {
        let rows = (start..(start + 10_000).min(n))
            .map(|i| row(i, "v1"))
            .collect();
        store.insert(&t(), None, rows).await.unwrap();
    }
    store.flush_table(&t(), Scope::All).await.unwrap();
    // Every point delete of a flushed row reads its key page; a sparse pattern keeps the
    // debug-build test quick while still hitting every row group.
    let deletes: Vec<Mutation> = (0..n)
        .filter(|i| i % 97 == 0)
        .map(|i| Mutation::Delete {
            key: vec![KalamValue::BigInt(i)],
        })
        .collect();
    store.write(&t(), None, deletes).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    let stats = store.table_stats(&t()).await.unwrap();
    assert_eq!(stats[0].deleted_rows as i64, (n + 96) / 97);

    // The file's two row groups: the filter reads only the second.
    let handle = store.handle(&t()).await.unwrap();
    let before = handle.reads.row_groups();
    let tail = n - 15_000;
    let f = Filter::cmp("id", CmpOp::GtEq, KalamValue::BigInt(tail));
    let expected: Vec<i64> = (tail..n).filter(|i| i % 97 != 0).collect();
    assert_eq!(ids(&store, None, Some(f)).await, expected);
    let after = handle.reads.row_groups();
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 1),
        "(pruned, read)"
    );
    let f = Filter::In {
        column: "id".into(),
        values: vec![
            KalamValue::BigInt(97),
            KalamValue::BigInt(98),
            KalamValue::BigInt(n - 1),
        ],
        negated: false,
    };
    let mut expected = vec![98];
    if (n - 1) % 97 != 0 {
        expected.push(n - 1);
    }
    assert_eq!(ids(&store, None, Some(f)).await, expected);
    assert_eq!(
        ids(&store, None, None).await.len() as i64,
        n - (n + 96) / 97
    );
    for probe in [0, 1, 97 * 1400, n - 1, n / 2] {
        let got = store
            .get(&t(), None, &[KalamValue::BigInt(probe)])
            .await
            .unwrap();
        assert_eq!(got.is_some(), probe % 97 != 0, "get({probe})");
    }
}

/// The memory engine behind a [`FailAfter`] that fails writes to table partitions on cue.
#[derive(Debug)]
struct FailingEngines(Arc<crate::testing::FailAfter<MemoryBackend>>);

#[async_trait::async_trait]
impl EngineProvider for FailingEngines {
    fn default_engine(&self, _dir: &std::path::Path) -> HotEngine {
        HotEngine::Memory
    }

    async fn open(
        &self,
        _engine: &HotEngine,
        _s3: &S3Options,
        _cache: Option<crate::cache::CacheRequest<'_>>,
    ) -> Result<Arc<dyn StorageBackend>> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn a_flush_whose_commit_fails_keeps_every_row_hot_and_readable() {
    let failing = Arc::new(
        crate::testing::FailAfter::new(Arc::new(MemoryBackend::new()), usize::MAX)
            .only_partitions("t."),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path(), Arc::new(FailingEngines(failing.clone())));
    config.background = false;
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store
        .insert(&t(), None, (1..=3).map(|i| row(i, "x")).collect())
        .await
        .unwrap();

    failing.fail_from_now();
    let err = store.flush_table(&t(), Scope::All).await.unwrap_err();
    assert!(
        err.report().contains("injected failure"),
        "{}",
        err.report()
    );
    let job = store.jobs().await.unwrap().pop().unwrap();
    assert_eq!(job.status, JobStatus::Failed);

    assert_eq!(ids(&store, None, None).await, vec![1, 2, 3]);
    let stats = store.table_stats(&t()).await.unwrap();
    assert_eq!((stats[0].hot_rows, stats[0].files), (3, 0));
    assert!(store.manifest(&t()).await.unwrap().is_empty());
}

mod alter;
mod batches;
mod delta;
mod feed;
mod jobs;
mod point;
mod stream;

#[tokio::test]
async fn logins_are_kept_listed_changed_and_dropped() {
    let (_dir, store) = store().await;
    store
        .create_user("alice", Role::User, b"v1".to_vec())
        .await
        .unwrap();
    assert!(matches!(
        store.create_user("alice", Role::Operator, b"v2".to_vec()).await,
        Err(Error::UserExists { name }) if name == "alice"
    ));
    assert!(matches!(
        store
            .create_user("bad name", Role::User, b"v".to_vec())
            .await,
        Err(Error::InvalidId { .. })
    ));
    let changed = store
        .alter_user("alice", Some(Role::Operator), Some(b"v3".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        (changed.role, changed.verifier.as_slice()),
        (Role::Operator, &b"v3"[..])
    );
    assert_eq!(store.users().await.unwrap(), vec![changed]);
    store.drop_user("alice", false).await.unwrap();
    assert!(matches!(
        store.drop_user("alice", false).await,
        Err(Error::UserNotFound { .. })
    ));
    store.drop_user("alice", true).await.unwrap();
    assert!(store.find_user("alice").await.unwrap().is_none());
}

#[tokio::test]
async fn a_second_open_of_a_data_dir_names_the_holder_until_the_first_closes() {
    let (dir, store) = store().await;
    let config = || {
        let mut c = StoreConfig::new(dir.path(), Arc::new(MemoryEngines));
        c.background = false;
        c
    };
    match Store::open(config()).await {
        Err(Error::DataDirInUse { holder, .. }) => {
            assert_eq!(holder, format!("pid {}", std::process::id()));
        }
        other => panic!("a second open: {other:?}"),
    }
    store.close().await.unwrap();
    Store::open(config()).await.unwrap().close().await.unwrap();
}
