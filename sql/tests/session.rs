//! SQL sessions over a store on the in-memory engine with Parquet in a temp dir: queries over
//! hot and flushed rows, DML, pushdown shown by EXPLAIN, user isolation, all-users reads.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
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

#[tokio::test]
async fn explain_shows_what_reached_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let alice = session(&store, user("alice")).await;
    let plan = rows(
        &alice,
        "EXPLAIN SELECT id FROM app.notes WHERE id > 5 LIMIT 3",
    )
    .await;
    assert!(plan.contains("KalamScanExec"), "{plan}");
    assert!(plan.contains("store_filters"), "{plan}");
    assert!(plan.contains("store_limit=3"), "{plan}");
    let plan = rows(
        &alice,
        "EXPLAIN SELECT id FROM app.notes WHERE kind LIKE 'a%'",
    )
    .await;
    assert!(!plan.contains("store_filters"), "{plan}");
}
