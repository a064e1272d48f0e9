//! Each table's Delta log follows its manifest: files and deletion vectors after flushes,
//! compaction, schema changes, the `DELTA` option and a rebuild. (Real Delta readers check
//! the same tables in `tests/tests/delta.rs`.)

use std::collections::BTreeMap;

use super::*;
use crate::delta::log_state;

/// `file name -> deleted rows` as the manifest says.
async fn manifest_files(store: &Store) -> BTreeMap<String, u64> {
    store
        .manifest(&t())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, f)| {
            let name = f.meta.path.rsplit('/').next().unwrap().to_owned();
            (name, f.dv.len())
        })
        .collect()
}

/// `file name -> deleted rows` as the Delta log says, with the log's version.
async fn published(store: &Store) -> (Option<u64>, BTreeMap<String, u64>) {
    let handle = store.handle(&t()).await.unwrap();
    let state = log_state(&handle).await.unwrap();
    let files = state
        .files
        .values()
        .map(|a| {
            let name = a.path.rsplit('/').next().unwrap().to_owned();
            let deleted = a.deletion_vector.as_ref().map_or(0, |d| d.cardinality);
            (name, deleted)
        })
        .collect();
    (state.version, files)
}

fn delete(id: i64) -> Mutation {
    Mutation::Delete {
        key: vec![KalamValue::BigInt(id)],
    }
}

#[tokio::test]
async fn the_log_follows_flushes_deletes_and_compaction() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let (version, files) = published(&store).await;
    assert_eq!(
        (version, files.len()),
        (Some(0), 0),
        "created: protocol and schema"
    );

    store
        .insert(&t(), None, (0..100).map(|i| row(i, "v1")).collect())
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(published(&store).await.1, manifest_files(&store).await);

    // 3 deletes + 2 updates of flushed rows: one vector of 5 on the first file.
    let mut changes: Vec<Mutation> = [3, 40, 77].into_iter().map(delete).collect();
    changes.push(Mutation::Upsert(row(5, "v2")));
    changes.push(Mutation::Upsert(row(6, "v2")));
    store.write(&t(), None, changes).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    let (version, files) = published(&store).await;
    assert_eq!(files, manifest_files(&store).await);
    assert_eq!(files.values().copied().max(), Some(5), "{files:?}");
    assert_eq!(version, Some(2));

    // A large vector goes to a deletion-vector file.
    let many: Vec<Mutation> = (10..60).map(delete).collect();
    store.write(&t(), None, many).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(published(&store).await.1, manifest_files(&store).await);

    // A flush that changes nothing does not commit.
    store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(published(&store).await.0, Some(3));

    store
        .compact_table(&t(), Scope::All, CompactionPolicy::all())
        .await
        .unwrap();
    let (version, files) = published(&store).await;
    assert_eq!(version, Some(4));
    assert_eq!(files, manifest_files(&store).await);
    assert_eq!(files.values().sum::<u64>(), 0, "compacted: no vectors left");
}

#[tokio::test]
async fn schema_changes_rewrite_what_delta_would_misread_and_options_turn_it_off_and_on() {
    let (dir, store) = flushed_shared(10, "v1").await;
    let before = manifest_files(&store).await;

    // Adding a column needs no rewrite: Delta readers give old files NULLs for it.
    let add = SchemaChange::AddColumn(ColumnDefinition::new("tag", KalamDataType::Text));
    store.alter_table(&t(), &add).await.unwrap();
    assert_eq!(manifest_files(&store).await, before);
    let handle = store.handle(&t()).await.unwrap();
    let schema = log_state(&handle)
        .await
        .unwrap()
        .metadata
        .unwrap()
        .schema_string;
    assert!(schema.contains("\"tag\""), "{schema}");

    // A rename would read as NULLs by name: the files are rewritten under the new name.
    let rename = SchemaChange::RenameColumn {
        from: "body".into(),
        to: "text".into(),
    };
    store.alter_table(&t(), &rename).await.unwrap();
    let after = manifest_files(&store).await;
    assert_ne!(after, before, "rewritten");
    assert_eq!(published(&store).await.1, after);
    let handle = store.handle(&t()).await.unwrap();
    let version = handle.definition().schema.version;
    assert!(
        handle
            .state
            .read()
            .files
            .values()
            .flatten()
            .all(|f| f.meta.schema_version == version)
    );
    let schema = log_state(&handle)
        .await
        .unwrap()
        .metadata
        .unwrap()
        .schema_string;
    assert!(
        schema.contains("\"text\"") && !schema.contains("\"body\""),
        "{schema}"
    );

    let log_dir = dir.path().join("cold/app/messages/_delta_log");
    let off = OptionsChange {
        delta: Some(DeltaPublishing::Off),
        ..OptionsChange::default()
    };
    store.set_table_options(&t(), &off).await.unwrap();
    assert!(!log_dir.exists() || std::fs::read_dir(&log_dir).unwrap().next().is_none());
    let on = OptionsChange {
        delta: Some(DeltaPublishing::On),
        ..OptionsChange::default()
    };
    store.set_table_options(&t(), &on).await.unwrap();
    assert_eq!(published(&store).await, (Some(0), after.clone()));

    // A rebuilt log reads the same.
    let job = store.republish_table(&t()).await.unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(published(&store).await, (Some(0), after));
}
