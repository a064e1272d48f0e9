//! ALTER TABLE on the in-memory engine: schema changes over hot rows and files, options,
//! storage moves and drops.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;

use super::*;
use crate::schema::SchemaChange;
use crate::testing::wait_until;

fn text_column(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = batch.column_by_name(name).unwrap().as_string::<i32>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_owned()))
        .collect()
}

/// `id -> (text, score, tag, body)` of every row, in key order.
type Rows = BTreeMap<i64, (Option<String>, i64, Option<String>, Option<String>)>;

async fn rows(store: &Store) -> Rows {
    let mut out = BTreeMap::new();
    for b in store
        .scan(&t(), None, &ScanOptions::default())
        .await
        .unwrap()
    {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let scores = b
            .column_by_name("score")
            .unwrap()
            .as_primitive::<Int64Type>();
        let (texts, tags, bodies) = (
            text_column(&b, "text"),
            text_column(&b, "tag"),
            text_column(&b, "body"),
        );
        for i in 0..b.num_rows() {
            out.insert(
                ids.value(i),
                (
                    texts[i].clone(),
                    scores.value(i),
                    tags[i].clone(),
                    bodies[i].clone(),
                ),
            );
        }
    }
    out
}

#[tokio::test]
async fn old_hot_rows_and_files_read_through_every_schema_change() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    // Version 1: rows 0..4 flushed, 4..6 hot.
    store
        .insert(
            &t(),
            None,
            (0..4).map(|i| row(i, &format!("f{i}"))).collect(),
        )
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .insert(
            &t(),
            None,
            (4..6).map(|i| row(i, &format!("h{i}"))).collect(),
        )
        .await
        .unwrap();

    let changes = [
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
            name: "score".into(),
            data_type: KalamDataType::BigInt,
        },
        // A new column with the old name: old rows must not show the renamed column's values.
        SchemaChange::AddColumn(ColumnDefinition::new("body", KalamDataType::Text)),
    ];
    for change in &changes {
        store.alter_table(&t(), change).await.unwrap();
    }
    let def = store.table(&t()).await.unwrap();
    assert_eq!(def.schema.version, 5);
    assert_eq!(def.history.len(), 4);

    let expected: Rows = (0..6)
        .map(|i| {
            let text = if i < 4 {
                format!("f{i}")
            } else {
                format!("h{i}")
            };
            (i, (Some(text), 0, Some("none".into()), None))
        })
        .collect();
    assert_eq!(rows(&store).await, expected);

    // Filters on the renamed column reach the old file and the old hot rows.
    let filter = Filter::cmp("text", CmpOp::Eq, KalamValue::Text("f2".into()));
    assert_eq!(ids(&store, None, Some(filter)).await, [2]);
    let filter = Filter::cmp("body", CmpOp::Eq, KalamValue::Text("f2".into()));
    assert_eq!(ids(&store, None, Some(filter)).await, Vec::<i64>::new());
    // An update through the new schema keeps the other columns of an old flushed row.
    store
        .write(
            &t(),
            None,
            vec![Mutation::Update {
                key: vec![KalamValue::BigInt(1)],
                set: vec![("score".into(), KalamValue::BigInt(1 << 40))],
            }],
        )
        .await
        .unwrap();

    // A flush (old hot rows) and a compaction write the current schema; nothing changes.
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .compact_table(&t(), Scope::All, CompactionPolicy::all())
        .await
        .unwrap();
    let files = store.manifest(&t()).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].1.meta.schema_version, 5);
    let mut after = expected.clone();
    after.get_mut(&1).unwrap().1 = 1 << 40;
    assert_eq!(rows(&store).await, after);

    // Dropping a column hides it; its values do not come back under the same name.
    store
        .alter_table(&t(), &SchemaChange::DropColumn("tag".into()))
        .await
        .unwrap();
    store
        .alter_table(
            &t(),
            &SchemaChange::AddColumn(ColumnDefinition::new("tag", KalamDataType::Text)),
        )
        .await
        .unwrap();
    assert!(rows(&store).await.values().all(|r| r.2.is_none()));
}

#[tokio::test]
async fn key_columns_and_narrowing_are_refused_and_change_nothing() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    for change in [
        SchemaChange::DropColumn("id".into()),
        SchemaChange::ModifyColumn {
            name: "score".into(),
            data_type: KalamDataType::SmallInt,
        },
    ] {
        let err = store.alter_table(&t(), &change).await.unwrap_err();
        assert!(matches!(err, Error::InvalidSchema { .. }), "{err}");
    }
    assert_eq!(store.table(&t()).await.unwrap().schema.version, 1);
}

#[tokio::test]
async fn options_change_and_a_shorter_ttl_expires_rows_already_stored() {
    let clock = Arc::new(crate::clock::ManualClock::new());
    let (_dir, store) = store_with_clock(clock.clone()).await;
    let mut def = messages(TableType::Stream);
    def.options.ttl_seconds = Some(3600);
    store.create_table(def, false).await.unwrap();
    store
        .insert(&t(), None, (0..100).map(|i| row(i, "x")).collect())
        .await
        .unwrap();
    assert_eq!(ids(&store, None, None).await.len(), 100);
    let bad = OptionsChange {
        flush_policy: Some("rows:10".parse().unwrap()),
        ..OptionsChange::default()
    };
    assert!(matches!(
        store.set_table_options(&t(), &bad).await,
        Err(Error::InvalidSchema { .. })
    ));
    let zero = OptionsChange {
        ttl_seconds: Some(0),
        ..OptionsChange::default()
    };
    assert!(matches!(
        store.set_table_options(&t(), &zero).await,
        Err(Error::InvalidSchema { .. })
    ));
    let short = OptionsChange {
        ttl_seconds: Some(1),
        access_level: Some(crate::schema::AccessLevel::Public),
        ..OptionsChange::default()
    };
    let def = store.set_table_options(&t(), &short).await.unwrap();
    assert_eq!(def.options.ttl_seconds, Some(1));
    assert_eq!(ids(&store, None, None).await.len(), 100);
    clock.advance(Duration::from_millis(1001));
    assert!(ids(&store, None, None).await.is_empty());
    store.cleanup().await.unwrap();
    let handle = store.handle(&t()).await.unwrap();
    let left = crate::backend::scan_all(
        handle.storage.hot.as_ref(),
        &handle.hot,
        ScanRequest::default(),
    )
    .await
    .unwrap();
    assert!(left.is_empty(), "{} expired rows left", left.len());
}

/// Registers storage `id` on the memory engine with its Parquet in `cold`.
async fn memory_storage(store: &Store, id: &str, cold: &std::path::Path) -> StorageId {
    let id = StorageId::new(id).unwrap();
    store
        .create_storage(StorageDefinition {
            id: id.clone(),
            hot: HotEngine::Memory,
            cold_url: cold.to_string_lossy().into_owned(),
            s3: S3Options::default(),
            cache: None,
            metadata_cache_bytes: None,
            created_at_ms: 0,
        })
        .await
        .unwrap();
    id
}

async fn second_storage(store: &Store, dir: &std::path::Path) -> StorageId {
    memory_storage(store, "second", &dir.join("second")).await
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

async fn table_partitions(store: &Store) -> Vec<String> {
    store
        .inner
        .system
        .list_partitions()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.to_string())
        .filter(|p| p.starts_with("t."))
        .collect()
}

#[tokio::test]
async fn a_move_takes_files_vectors_and_hot_rows_and_leaves_nothing_behind() {
    let (dir, store) = store().await;
    let second = second_storage(&store, dir.path()).await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store
        .insert(&t(), None, (0..50).map(|i| row(i, "a")).collect())
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .write(
            &t(),
            None,
            (0..10)
                .map(|i| Mutation::Delete {
                    key: vec![KalamValue::BigInt(i)],
                })
                .collect(),
        )
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .insert(&t(), None, (50..60).map(|i| row(i, "hot")).collect())
        .await
        .unwrap();
    let before = ids(&store, None, None).await;
    assert_eq!(before, (10..60).collect::<Vec<_>>());
    let log_before = store
        .changes_since(&t(), None, false, 0, 1000)
        .await
        .unwrap()
        .changes;
    assert_eq!(log_before.len(), 70);

    assert!(
        store
            .move_table(&t(), &StorageId::local())
            .await
            .unwrap()
            .is_none()
    );
    let job = store.move_table(&t(), &second).await.unwrap().unwrap();
    assert_eq!(
        (job.kind, job.status),
        (JobKind::Move, JobStatus::Completed)
    );
    assert!(job.files >= 1 && job.bytes > 0);
    assert_eq!(store.table(&t()).await.unwrap().storage_id, second);
    assert_eq!(ids(&store, None, None).await, before);
    let log_moved = store.changes_since(&t(), None, false, 0, 1000).await;
    assert_eq!(
        log_moved.unwrap().changes,
        log_before,
        "the log moves along"
    );
    assert_eq!(store.table_stats(&t()).await.unwrap()[0].deleted_rows, 10);
    let local_cold = dir.path().join("cold");
    assert!(
        files_under(&local_cold).is_empty(),
        "{:?}",
        files_under(&local_cold)
    );
    assert!(table_partitions(&store).await.is_empty());
    assert!(store.table_tasks().await.unwrap().is_empty());

    // Writes go to the new storage; deletes of rows flushed before the move still hold.
    store
        .insert(&t(), None, vec![row(100, "new")])
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .compact_table(&t(), Scope::All, CompactionPolicy::all())
        .await
        .unwrap();
    let mut expected = before.clone();
    expected.push(100);
    assert_eq!(ids(&store, None, None).await, expected);

    // And back.
    store.move_table(&t(), &StorageId::local()).await.unwrap();
    assert_eq!(ids(&store, None, None).await, expected);
    assert!(files_under(&dir.path().join("second")).is_empty());
    assert_eq!(
        table_partitions(&store).await,
        [
            "t.app.messages.hot",
            "t.app.messages.log",
            "t.app.messages.meta"
        ]
    );
}

#[tokio::test]
async fn a_move_to_an_unknown_or_shared_location_fails_before_touching_data() {
    let (dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store.insert(&t(), None, vec![row(1, "a")]).await.unwrap();
    let err = store
        .move_table(&t(), &StorageId::new("nowhere").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StorageNotFound { .. }), "{err}");
    let twin = memory_storage(&store, "twin", &dir.path().join("cold")).await;
    let err = store.move_table(&t(), &twin).await.unwrap_err();
    assert!(matches!(err, Error::MoveRefused { .. }), "{err}");
    // A storage that stopped accepting writes after it was registered.
    let second = second_storage(&store, dir.path()).await;
    let _ = std::fs::remove_dir_all(dir.path().join("second"));
    std::fs::write(dir.path().join("second"), b"in the way").unwrap();
    let err = store.move_table(&t(), &second).await.unwrap_err();
    assert!(matches!(err, Error::StorageCheck { .. }), "{err}");
    assert_eq!(ids(&store, None, None).await, [1]);
    assert!(store.jobs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_and_reads_during_a_move_lose_nothing() {
    let (dir, store) = store().await;
    let second = second_storage(&store, dir.path()).await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    for chunk in 0..4 {
        store
            .insert(
                &t(),
                None,
                (chunk * 500..(chunk + 1) * 500)
                    .map(|i| row(i, "old"))
                    .collect(),
            )
            .await
            .unwrap();
        store.flush_table(&t(), Scope::All).await.unwrap();
    }
    let acked = Arc::new(AtomicU64::new(2000));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, acked, stop) = (store.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = 2000;
            while !stop.load(Ordering::Relaxed) {
                store
                    .insert(&t(), None, vec![row(next, "new")])
                    .await
                    .unwrap();
                next += 1;
                acked.store(next as u64, Ordering::Release);
            }
        })
    };
    let reader = {
        let (store, acked, stop) = (store.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut scans = 0;
            while !stop.load(Ordering::Relaxed) {
                let floor = acked.load(Ordering::Acquire) as usize;
                let seen = ids(&store, None, None).await;
                assert!(
                    seen.len() >= floor,
                    "a scan saw {} of {floor} rows",
                    seen.len()
                );
                scans += 1;
            }
            scans
        })
    };
    // The move runs while the writer is writing: wait for its writes before and after.
    let written_past = |n: u64| {
        let acked = acked.clone();
        move || {
            let acked = acked.clone();
            async move { acked.load(Ordering::Acquire) >= n }
        }
    };
    wait_until("the writer is writing", written_past(2050)).await;
    let job = store.move_table(&t(), &second).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    let after = acked.load(Ordering::Acquire) + 50;
    wait_until("the writer writes after the move", written_past(after)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(reader.await.unwrap() > 0);
    let n = acked.load(Ordering::Acquire) as i64;
    assert_eq!(ids(&store, None, None).await, (0..n).collect::<Vec<_>>());
}

#[tokio::test]
async fn drop_table_removes_rows_files_and_manifest_from_its_storage() {
    let (dir, store) = store().await;
    let second = second_storage(&store, dir.path()).await;
    let mut def = messages(TableType::User);
    def.storage_id = second.clone();
    store.create_table(def, false).await.unwrap();
    let alice = UserId::new("alice").unwrap();
    store
        .insert(&t(), Some(&alice), vec![row(1, "a"), row(2, "b")])
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .insert(&t(), Some(&alice), vec![row(3, "c")])
        .await
        .unwrap();
    assert!(!files_under(&dir.path().join("second")).is_empty());
    store.drop_table(&t(), false).await.unwrap();
    assert!(files_under(&dir.path().join("second")).is_empty());
    let hot = store.storage(&second).await.unwrap().hot.clone();
    let left: Vec<_> = hot
        .list_partitions()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.as_str().starts_with("t."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let job = store.jobs().await.unwrap().pop().unwrap();
    assert_eq!(
        (job.kind, job.status),
        (JobKind::Drop, JobStatus::Completed)
    );
    // The same name can be created again, empty.
    store
        .create_table(messages(TableType::User), false)
        .await
        .unwrap();
    assert!(ids(&store, Some(&alice), None).await.is_empty());
}
