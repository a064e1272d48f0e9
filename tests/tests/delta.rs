//! Every table's flushed state read by Delta readers no one here wrote: delta-rs's Python
//! `deltalake` (through its DataFusion `QueryBuilder`, the path that honours deletion vectors)
//! and Polars' `read_delta`, after inserts, flushes, deletes and updates of flushed rows, a
//! compaction, a column rename and a storage move; for a SHARED table and for a USER table
//! with two users. Each reader's rows must equal a kalamstore scan of the table after a flush.

use arrow::util::display::{ArrayFormatter, FormatOptions};
use kalamstore::{
    ColumnDefinition, CompactionPolicy, KalamDataType, KalamValue, Mutation, ScanOptions,
    SchemaChange, Scope, StorageId, Store, TableId, TableType, UserId,
};
use kalamstore_tests::tables::{chat_row, chat_table, cold_dir, read_delta, store_with_storages};

/// Every row of a table as the readers print them: columns as text, `|`-joined, sorted.
async fn kalamstore_rows(store: &Store, t: &TableId, user: Option<&UserId>) -> Vec<String> {
    let batches = store.scan(t, user, &ScanOptions::all()).await.unwrap();
    let options = FormatOptions::default().with_null("null");
    let mut rows = Vec::new();
    for b in &batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(i).to_string()).collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

/// Flushes, then checks that both readers see exactly kalamstore's rows (of `user`).
async fn assert_readers_agree(
    store: &Store,
    t: &TableId,
    dir: &std::path::Path,
    storage: &StorageId,
    user: Option<&UserId>,
    when: &str,
) {
    store.flush_table(t, Scope::All).await.unwrap();
    let expected = kalamstore_rows(store, t, user).await;
    assert!(!expected.is_empty(), "{when}: nothing to compare");
    let table_dir = cold_dir(dir, storage).join("app").join(t.table.to_string());
    let mut args = vec!["rows"];
    let name = user.map(ToString::to_string);
    if let Some(u) = &name {
        args.push(u);
    }
    let lines = read_delta(&table_dir, &args);
    assert_eq!(lines.len(), 2, "{when}: {lines:?}");
    for line in lines {
        let out: serde_json::Value = serde_json::from_str(&line).unwrap();
        let reader = out["reader"].as_str().unwrap_or("?");
        let got: Vec<String> = out["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got.len(), expected.len(), "{when}, {reader}");
        assert_eq!(got, expected, "{when}, {reader}");
    }
}

fn delete(id: i64) -> Mutation {
    Mutation::Delete {
        key: vec![KalamValue::BigInt(id)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_readers_see_a_shared_table_through_changes_compaction_rename_and_move() {
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    let local = &storages[0];
    store
        .create_table(chat_table("docs", TableType::Shared, local), false)
        .await
        .unwrap();
    let t: TableId = "app.docs".parse().unwrap();

    store
        .insert(&t, None, (0..500).map(|i| chat_row(i, "v1")).collect())
        .await
        .unwrap();
    assert_readers_agree(&store, &t, dir.path(), local, None, "inserted").await;

    // Deletes and updates of flushed rows: deletion vectors, small (inline) and large (file).
    let mut changes: Vec<Mutation> = (0..5).map(|i| delete(i * 7)).collect();
    changes.extend((100..110).map(|i| Mutation::Upsert(chat_row(i, "v2"))));
    store.write(&t, None, changes).await.unwrap();
    assert_readers_agree(&store, &t, dir.path(), local, None, "small vectors").await;
    store
        .write(&t, None, (200..400).step_by(2).map(delete).collect())
        .await
        .unwrap();
    store
        .insert(&t, None, (500..600).map(|i| chat_row(i, "late")).collect())
        .await
        .unwrap();
    assert_readers_agree(&store, &t, dir.path(), local, None, "large vector").await;

    store
        .compact_table(&t, Scope::All, CompactionPolicy::all())
        .await
        .unwrap();
    assert_readers_agree(&store, &t, dir.path(), local, None, "compacted").await;

    let rename = SchemaChange::RenameColumn {
        from: "body".into(),
        to: "text".into(),
    };
    store.alter_table(&t, &rename).await.unwrap();
    let add = SchemaChange::AddColumn(ColumnDefinition::new("tag", KalamDataType::Text));
    store.alter_table(&t, &add).await.unwrap();
    let renamed = vec![
        ("id".to_owned(), KalamValue::BigInt(1)),
        ("text".to_owned(), KalamValue::Text("renamed".into())),
        ("tag".to_owned(), KalamValue::Text("new".into())),
    ];
    store
        .write(&t, None, vec![Mutation::Upsert(renamed)])
        .await
        .unwrap();
    assert_readers_agree(&store, &t, dir.path(), local, None, "renamed").await;

    let objects = &storages[1];
    store.move_table(&t, objects).await.unwrap();
    assert!(
        !cold_dir(dir.path(), local).join("app/docs").exists(),
        "the source keeps no log"
    );
    assert_readers_agree(&store, &t, dir.path(), objects, None, "moved").await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_readers_see_each_user_of_a_user_table_by_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (store, storages) = store_with_storages(dir.path()).await;
    let objects = &storages[1];
    store
        .create_table(chat_table("inbox", TableType::User, objects), false)
        .await
        .unwrap();
    let t: TableId = "app.inbox".parse().unwrap();
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    for (user, body) in [(&alice, "from alice"), (&bob, "from bob")] {
        store
            .insert(
                &t,
                Some(user),
                (0..300).map(|i| chat_row(i, body)).collect(),
            )
            .await
            .unwrap();
    }
    store.flush_table(&t, Scope::All).await.unwrap();
    store
        .write(&t, Some(&alice), (0..300).step_by(3).map(delete).collect())
        .await
        .unwrap();
    store
        .write(
            &t,
            Some(&bob),
            vec![Mutation::Upsert(chat_row(7, "bob again")), delete(8)],
        )
        .await
        .unwrap();
    for user in [&alice, &bob] {
        let when = format!("user {user}");
        assert_readers_agree(&store, &t, dir.path(), objects, Some(user), &when).await;
    }
    // Twelve more commits: the readers start from the checkpoint written at version 10.
    for round in 0..12 {
        let row = chat_row(1000 + round, "one more");
        store.insert(&t, Some(&bob), vec![row]).await.unwrap();
        store.flush_table(&t, Scope::All).await.unwrap();
    }
    let log = cold_dir(dir.path(), objects).join("app/inbox/_delta_log");
    assert!(log.join("_last_checkpoint").exists());
    assert_readers_agree(&store, &t, dir.path(), objects, Some(&bob), "checkpointed").await;
    store
        .compact_table(&t, Scope::All, CompactionPolicy::all())
        .await
        .unwrap();
    for user in [&alice, &bob] {
        let when = format!("user {user} compacted");
        assert_readers_agree(&store, &t, dir.path(), objects, Some(user), &when).await;
    }
    store.close().await.unwrap();
}
