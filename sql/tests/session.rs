//! SQL sessions over a store on the in-memory engine with Parquet in a temp dir: queries over
//! hot and flushed rows, DML, pushdown shown by EXPLAIN, user isolation, all-users reads.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use kalamstore_sql::datafusion::common::ScalarValue;
use kalamstore_sql::{Principal, SqlOutput, SqlSession};
use kalamstore_storage::{
    ColumnDefinition, KalamDataType, MemoryEngines, NamespaceId, Scope, StorageId, Store,
    StoreConfig, TableDefinition, TableOptions, TableType, UserId,
};

async fn store(dir: &std::path::Path) -> Store {
    let mut config = StoreConfig::new(dir, Arc::new(MemoryEngines));
    config.background = false;
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    for (name, kind) in [("notes", TableType::User), ("kinds", TableType::Shared)] {
        let columns = match kind {
            TableType::User => vec![
                ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
                ColumnDefinition::new("kind", KalamDataType::Text).not_null(),
                ColumnDefinition::new("score", KalamDataType::Int),
            ],
            _ => vec![
                ColumnDefinition::new("kind", KalamDataType::Text).primary_key(),
                ColumnDefinition::new("label", KalamDataType::Text),
            ],
        };
        let def = TableDefinition::new(
            format!("app.{name}").parse().unwrap(),
            kind,
            columns,
            StorageId::local(),
            TableOptions::default(),
            0,
        )
        .unwrap();
        store.create_table(def, false).await.unwrap();
    }
    store
}

async fn session(store: &Store, principal: Principal) -> SqlSession {
    SqlSession::new(store.clone(), principal).await.unwrap()
}

fn user(name: &str) -> Principal {
    Principal::User(UserId::new(name).unwrap())
}

async fn rows(s: &SqlSession, sql: &str) -> String {
    match s.run(sql, &[]).await.unwrap() {
        SqlOutput::Rows(stream) => {
            let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
            pretty_format_batches(&batches).unwrap().to_string()
        }
        SqlOutput::Changed { verb, rows } => format!("{verb} {rows}"),
    }
}

#[tokio::test]
async fn queries_see_hot_flushed_updated_and_deleted_rows_merged() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let alice = session(&store, user("alice")).await;
    let anon = session(&store, Principal::Anonymous).await;
    assert_eq!(
        rows(
            &alice,
            "INSERT INTO app.notes VALUES (1, 'a', 10), (2, 'b', 20), (3, 'a', 30), (4, 'c', NULL)"
        )
        .await,
        "INSERT 4"
    );
    rows(
        &anon,
        "INSERT INTO app.kinds VALUES ('a', 'first'), ('b', 'second')",
    )
    .await;
    store
        .flush_table(&"app.notes".parse().unwrap(), Scope::All)
        .await
        .unwrap();
    assert_eq!(
        rows(
            &alice,
            "UPDATE app.notes SET score = score + 1 WHERE kind = 'a'"
        )
        .await,
        "UPDATE 2"
    );
    assert_eq!(
        rows(
            &alice,
            "DELETE FROM app.notes WHERE kind IN (SELECT kind FROM app.kinds WHERE label = 'second')"
        )
        .await,
        "DELETE 1"
    );
    let grouped = rows(
        &alice,
        "SELECT n.kind, k.label, count(*), sum(score) FROM app.notes n \
         LEFT JOIN app.kinds k ON n.kind = k.kind GROUP BY n.kind, k.label ORDER BY n.kind",
    )
    .await;
    assert_eq!(
        grouped,
        "+------+-------+-------+-----+\n\
         | kind | label | count | sum |\n\
         +------+-------+-------+-----+\n\
         | a    | first | 2     | 42  |\n\
         | c    |       | 1     |     |\n\
         +------+-------+-------+-----+"
    );
    // Bob sees none of it.
    let bob = session(&store, user("bob")).await;
    assert!(
        rows(&bob, "SELECT count(*) FROM app.notes")
            .await
            .contains("| 0     |")
    );
    // An operator reads every user, with `_user`.
    let ops = session(&store, Principal::AllUsers).await;
    assert!(
        rows(&ops, "SELECT _user, id FROM app.notes ORDER BY id")
            .await
            .contains("| alice | 4  |")
    );
}

/// Inserts rows `ids` for alice (`kind` the id mod 3 as text, `score` the id mod 100) through
/// the Rust API, in batches, and flushes them to one file.
async fn load_flushed(store: &Store, ids: std::ops::Range<i64>) {
    use kalamstore_storage::{KalamValue, Mutation};
    let alice = UserId::new("alice").unwrap();
    let table = "app.notes".parse().unwrap();
    let ids: Vec<i64> = ids.collect();
    for chunk in ids.chunks(10_000) {
        let batch = chunk
            .iter()
            .map(|i| {
                Mutation::Insert(vec![
                    ("id".into(), KalamValue::BigInt(*i)),
                    ("kind".into(), KalamValue::Text((i % 3).to_string())),
                    ("score".into(), KalamValue::Int((i % 100) as i32)),
                ])
            })
            .collect();
        store.write(&table, Some(&alice), batch).await.unwrap();
    }
    store.flush_table(&table, Scope::All).await.unwrap();
}

#[tokio::test]
async fn explain_shows_the_parquet_scan_and_the_key_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    load_flushed(&store, 0..2000).await;
    let alice = session(&store, user("alice")).await;
    assert_eq!(
        rows(&alice, "DELETE FROM app.notes WHERE id = 7").await,
        "DELETE 1"
    );
    assert_eq!(
        rows(&alice, "INSERT INTO app.notes VALUES (5000, 'x', 1)").await,
        "INSERT 1"
    );
    // Files through DataFusion's Parquet scan with the filter as its pruning predicate, hot
    // rows beside them, the filter applied above both.
    let plan = rows(
        &alice,
        "EXPLAIN SELECT id FROM app.notes WHERE id > 5 AND score < 3",
    )
    .await;
    assert!(
        plan.contains("FilterExec: id@0 > 5 AND score@1 < 3"),
        "{plan}"
    );
    assert!(plan.contains("UnionExec"), "{plan}");
    assert!(plan.contains("file_type=parquet"), "{plan}");
    assert!(
        plan.contains("predicate=id@0 > 5 AND score@2 < 3"),
        "{plan}"
    );
    assert!(
        plan.contains("MemoryExec") || plan.contains("partitions=1, partition_sizes=[1]"),
        "{plan}"
    );
    // A query that pins the primary key is a lookup of those keys, not a scan.
    let plan = rows(
        &alice,
        "EXPLAIN SELECT * FROM app.notes WHERE id IN (3, 4, 9)",
    )
    .await;
    assert!(
        plan.contains("KalamLookupExec: table=app.notes, keys=3"),
        "{plan}"
    );
    assert!(!plan.contains("file_type=parquet"), "{plan}");
    assert_eq!(
        rows(
            &alice,
            "SELECT id, kind FROM app.notes WHERE id IN (3, 7, 5000) ORDER BY id"
        )
        .await,
        "+------+------+\n\
         | id   | kind |\n\
         +------+------+\n\
         | 3    | 0    |\n\
         | 5000 | x    |\n\
         +------+------+"
    );
    // A key lookup keeps the other conditions.
    assert_eq!(
        rows(
            &alice,
            "SELECT count(*) FROM app.notes WHERE id = 3 AND score > 50"
        )
        .await,
        "+-------+\n\
         | count |\n\
         +-------+\n\
         | 0     |\n\
         +-------+"
    );
}

#[tokio::test]
async fn explain_analyze_shows_files_row_groups_and_pages_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    // Two row groups of 128 Ki rows in the first file, a second file far above it.
    load_flushed(&store, 0..140_000).await;
    load_flushed(&store, 1_000_000..1_001_000).await;
    let alice = session(&store, user("alice")).await;
    let plan = rows(
        &alice,
        "EXPLAIN ANALYZE SELECT id FROM app.notes WHERE id >= 132000 AND id < 132010",
    )
    .await;
    // The second file by its statistics, the first file's first row group by its own, and
    // all but one page of the second row group by the page index; ten rows come out.
    assert!(
        plan.contains("files_ranges_pruned_statistics=2 total \u{2192} 1 matched"),
        "{plan}"
    );
    assert!(
        plan.contains("row_groups_pruned_statistics=2 total \u{2192} 1 matched"),
        "{plan}"
    );
    assert!(plan.contains("page_index_rows_pruned="), "{plan}");
    let pruned = plan
        .split("page_index_rows_pruned=")
        .nth(1)
        .and_then(|s| s.split(" total").next())
        .unwrap_or_default()
        .to_owned();
    assert_ne!(pruned, "0", "{plan}");
    assert!(
        plan.contains("FilterExec: id@0 >= 132000 AND id@0 < 132010, metrics=[output_rows=10"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_of_one_row_lose_no_increment_and_deletes_stay_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let setup = session(&store, user("u1")).await;
    setup
        .run("INSERT INTO app.notes VALUES (1, 'k', 0), (2, 'k', 0)", &[])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    // Half the tasks plan their UPDATE, half take the by-key path (`id = $1`): both hold the
    // same statement lock.
    for t in 0..8 {
        let s = session(&store, user("u1")).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                for id in [1i64, 2] {
                    // Updates of a row another task deletes never bring it back.
                    if t % 2 == 0 {
                        let sql = format!("UPDATE app.notes SET score = score + 1 WHERE id = {id}");
                        s.run(&sql, &[]).await.unwrap();
                    } else {
                        let sql = "UPDATE app.notes SET score = score + 1 WHERE id = $1";
                        s.run(sql, &[ScalarValue::Int64(Some(id))]).await.unwrap();
                    }
                }
            }
        }));
    }
    let deleter = session(&store, user("u1")).await;
    tokio::task::yield_now().await;
    deleter
        .run("DELETE FROM app.notes WHERE id = 2", &[])
        .await
        .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        rows(&setup, "SELECT id, score FROM app.notes ORDER BY id").await,
        "+----+-------+\n| id | score |\n+----+-------+\n| 1  | 200   |\n+----+-------+"
    );
}

#[tokio::test]
async fn an_update_by_key_reads_hot_and_flushed_rows_and_refuses_what_the_planned_path_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let s = session(&store, user("u1")).await;
    s.run(
        "INSERT INTO app.notes VALUES (1, 'a', 10), (2, 'b', NULL), (3, 'c', 30)",
        &[],
    )
    .await
    .unwrap();
    store
        .flush_table(
            &"app.notes".parse().unwrap(),
            kalamstore_storage::Scope::All,
        )
        .await
        .unwrap();
    s.run("INSERT INTO app.notes VALUES (4, 'd', 40)", &[])
        .await
        .unwrap();
    let by_key = "UPDATE app.notes SET score = score * $2 + 1, kind = upper(kind) WHERE id = $1";
    let run = |id: i64, factor: i32| {
        let s = &s;
        async move {
            s.run(
                by_key,
                &[
                    ScalarValue::Int64(Some(id)),
                    ScalarValue::Int32(Some(factor)),
                ],
            )
            .await
        }
    };
    let changed = |out: SqlOutput| match out {
        SqlOutput::Changed { verb, rows } => format!("{verb} {rows}"),
        SqlOutput::Rows(_) => "rows".into(),
    };
    // A flushed row, a hot one, a NULL score (stays NULL), a key that is not there.
    assert_eq!(changed(run(1, 2).await.unwrap()), "UPDATE 1");
    assert_eq!(changed(run(4, 3).await.unwrap()), "UPDATE 1");
    assert_eq!(changed(run(2, 2).await.unwrap()), "UPDATE 1");
    assert_eq!(changed(run(9, 2).await.unwrap()), "UPDATE 0");
    // Another user sees none of u1's rows.
    let other = session(&store, user("u2")).await;
    let out = other
        .run(
            by_key,
            &[ScalarValue::Int64(Some(3)), ScalarValue::Int32(Some(2))],
        )
        .await
        .unwrap();
    assert_eq!(changed(out), "UPDATE 0");
    assert_eq!(
        rows(&s, "SELECT id, kind, score FROM app.notes ORDER BY id").await,
        "+----+------+-------+\n\
         | id | kind | score |\n\
         +----+------+-------+\n\
         | 1  | A    | 21    |\n\
         | 2  | B    |       |\n\
         | 3  | c    | 30    |\n\
         | 4  | D    | 121   |\n\
         +----+------+-------+"
    );
    // Text into a number and NULL into a NOT NULL column fail as on the planned path.
    let e = s
        .run(
            "UPDATE app.notes SET score = $2 WHERE id = $1",
            &[
                ScalarValue::Int64(Some(1)),
                ScalarValue::Utf8(Some("many".into())),
            ],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("score"), "{e}");
    let e = s
        .run(
            "UPDATE app.notes SET kind = NULL WHERE id = $1",
            &[ScalarValue::Int64(Some(1))],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("kind"), "{e}");
    assert_eq!(
        rows(&s, "SELECT kind, score FROM app.notes WHERE id = 1").await,
        "+------+-------+\n| kind | score |\n+------+-------+\n| A    | 21    |\n+------+-------+"
    );
}

#[tokio::test]
async fn a_null_for_a_not_null_column_is_refused_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let s = session(&store, user("u1")).await;
    let refused = |e: kalamstore_sql::SqlError| {
        let text = e.to_string();
        assert!(
            text.contains("kind") && text.contains("NOT NULL") && !text.contains("column2"),
            "{text}"
        );
    };
    // A literal, in the second row of several, and a parameter of a prepared INSERT.
    refused(
        s.run("INSERT INTO app.notes (id, kind) VALUES (1, NULL)", &[])
            .await
            .unwrap_err(),
    );
    refused(
        s.run(
            "INSERT INTO app.notes VALUES (1, 'a', 1), (2, NULL, 2)",
            &[],
        )
        .await
        .unwrap_err(),
    );
    refused(
        s.run(
            "INSERT INTO app.notes VALUES ($1, $2, 1)",
            &[ScalarValue::Int64(Some(3)), ScalarValue::Utf8(None)],
        )
        .await
        .unwrap_err(),
    );
    // Nothing of the refused statements landed.
    assert_eq!(
        rows(&s, "SELECT count(*) AS c FROM app.notes").await,
        "+---+\n| c |\n+---+\n| 0 |\n+---+"
    );
}
