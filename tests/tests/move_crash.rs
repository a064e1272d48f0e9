//! Crash safety of storage moves and drops: a child process moves (or drops) a table and
//! aborts at a failpoint between two steps; the parent reopens the data directory and checks
//! that the table is whole on exactly one storage (or gone, for a drop), that the other
//! storage holds nothing of it, and that no task or running job is left. The same copy steps
//! also fail in-process (armed failure points), where the move rolls back without a restart.

use kalamstore::{Error, Failpoints, JobStatus, Scope, StorageId, TableId, TableType};
use kalamstore_tests::tables::{
    assert_changed_rows, chat_row, chat_table, cold_dir, contents, files_under,
    flushed_with_changes, run_child_to_failpoint, runtime, store_with_failpoints,
    store_with_storages, table_partitions,
};

const CHILD_DIR: &str = "KALAMSTORE_MOVE_CRASH_DIR";
const CHILD_OP: &str = "KALAMSTORE_MOVE_CRASH_OP";

fn table() -> TableId {
    "app.chat".parse().unwrap()
}

/// The child: builds a table on `local` (flushed files, a deletion vector, hot rows), then
/// moves it to `objects` or drops it, until its failpoint aborts it. Ignored, so a plain run
/// never counts it as a pass; the parent launches it with `--ignored`.
#[test]
#[ignore = "child process of the crash tests"]
fn move_crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("started by the parent with a data dir");
    let op = std::env::var(CHILD_OP).expect("started by the parent with an operation");
    runtime().block_on(async move {
        let dir = std::path::Path::new(&dir);
        let (store, _) = store_with_storages(dir).await;
        let t = table();
        store
            .create_table(
                chat_table("chat", TableType::Shared, &StorageId::local()),
                false,
            )
            .await
            .unwrap();
        flushed_with_changes(&store, &t).await;
        store.flush_table(&t, Scope::All).await.unwrap();
        store
            .insert(&t, None, (1000..1100).map(|i| chat_row(i, "v1")).collect())
            .await
            .unwrap();
        assert_changed_rows(&contents(&store, &t, None).await, "before");
        match op.as_str() {
            "move" => {
                store
                    .move_table(&t, &StorageId::new("objects").unwrap())
                    .await
                    .unwrap();
            }
            _ => {
                store.drop_table(&t, false).await.unwrap();
            }
        }
        println!("COMPLETED");
    });
}

fn run_child(dir: &std::path::Path, op: &str, failpoint: &str) {
    let dir = dir.to_string_lossy().into_owned();
    run_child_to_failpoint(
        "move_crash_child",
        &[(CHILD_DIR, &dir), (CHILD_OP, op)],
        failpoint,
        0,
    );
}

/// Kills a move at `failpoint`; after reopening, the table lives on `expected` only.
fn crash_move_at(failpoint: &str, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    run_child(dir.path(), "move", failpoint);
    runtime().block_on(async move {
        let (store, _) = store_with_storages(dir.path()).await;
        let t = table();
        let (local, objects) = (StorageId::local(), StorageId::new("objects").unwrap());
        let on = store.table(&t).await.unwrap().storage_id.clone();
        assert_eq!(on.as_str(), expected, "{failpoint}");
        assert_changed_rows(&contents(&store, &t, None).await, failpoint);
        let other = if on == local { &objects } else { &local };
        let left = files_under(&cold_dir(dir.path(), other).join("app/chat"));
        assert!(left.is_empty(), "{failpoint}: {other} kept {left:?}");
        assert!(
            table_partitions(&store, other).await.is_empty(),
            "{failpoint}: {other} kept partitions"
        );
        assert!(store.table_tasks().await.unwrap().is_empty());
        let jobs = store.jobs().await.unwrap();
        assert!(jobs.iter().all(|j| j.status.is_final()), "{jobs:?}");

        // The table keeps working, and can move again.
        store
            .insert(&t, None, vec![chat_row(5000, "after")])
            .await
            .unwrap();
        store.move_table(&t, other).await.unwrap();
        let mut rows = contents(&store, &t, None).await;
        assert_eq!(rows.pop(), Some((5000, "after".into())), "{failpoint}");
        assert_changed_rows(&rows, &format!("{failpoint}: after moving again"));
        store.close().await.unwrap();
    });
}

/// A move that fails in-process at a copy step (every attempt of its job) rolls back: the
/// table stays on its storage with every row, the target keeps no file and no partition of
/// it, no task is left; disarmed, the same move succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_failing_at_a_copy_step_rolls_back_and_cleans_its_target() {
    for failpoint in ["move.files_copied", "move.rows_copied"] {
        let dir = tempfile::tempdir().unwrap();
        let failpoints = Failpoints::default();
        let (store, _) = store_with_failpoints(dir.path(), failpoints.clone()).await;
        let t = table();
        let (local, objects) = (StorageId::local(), StorageId::new("objects").unwrap());
        store
            .create_table(chat_table("chat", TableType::Shared, &local), false)
            .await
            .unwrap();
        flushed_with_changes(&store, &t).await;
        store
            .insert(&t, None, (1000..1100).map(|i| chat_row(i, "v1")).collect())
            .await
            .unwrap();
        failpoints.fail_next(failpoint, 1000);
        let failed = store.move_table(&t, &objects).await;
        assert!(
            failpoints.remaining(failpoint) < 1000,
            "{failpoint}: never reached"
        );
        match failed {
            Err(Error::Injected { point }) => assert_eq!(point, failpoint),
            other => panic!("{failpoint}: expected the injected failure, got {other:?}"),
        }
        assert_eq!(
            store.table(&t).await.unwrap().storage_id,
            local,
            "{failpoint}"
        );
        assert_changed_rows(&contents(&store, &t, None).await, failpoint);
        let left = files_under(&cold_dir(dir.path(), &objects).join("app/chat"));
        assert!(left.is_empty(), "{failpoint}: the target kept {left:?}");
        assert_eq!(
            table_partitions(&store, &objects).await,
            Vec::<String>::new()
        );
        assert!(store.table_tasks().await.unwrap().is_empty(), "{failpoint}");

        failpoints.fail_next(failpoint, 0);
        store.move_table(&t, &objects).await.unwrap();
        assert_eq!(store.table(&t).await.unwrap().storage_id, objects);
        assert_changed_rows(&contents(&store, &t, None).await, failpoint);
        assert_eq!(table_partitions(&store, &local).await, Vec::<String>::new());
        store.close().await.unwrap();
    }
}

#[test]
fn a_move_killed_before_its_switch_rolls_back() {
    for failpoint in ["move.recorded", "move.files_copied", "move.rows_copied"] {
        crash_move_at(failpoint, "local");
    }
}

#[test]
fn a_move_killed_after_its_switch_finishes() {
    for failpoint in ["move.switched", "move.source_removed"] {
        crash_move_at(failpoint, "objects");
    }
}

#[test]
fn a_drop_killed_midway_finishes_on_reopen() {
    for failpoint in ["drop.recorded", "drop.data_removed"] {
        let dir = tempfile::tempdir().unwrap();
        run_child(dir.path(), "drop", failpoint);
        runtime().block_on(async {
            let (store, _) = store_with_storages(dir.path()).await;
            assert!(
                matches!(
                    store.table(&table()).await,
                    Err(Error::TableNotFound { .. })
                ),
                "{failpoint}"
            );
            let left = files_under(&cold_dir(dir.path(), &StorageId::local()).join("app/chat"));
            assert!(left.is_empty(), "{failpoint}: {left:?}");
            assert!(
                table_partitions(&store, &StorageId::local())
                    .await
                    .is_empty()
            );
            assert!(store.table_tasks().await.unwrap().is_empty());
            let drop = store.jobs().await.unwrap().pop().unwrap();
            assert_eq!(drop.status, JobStatus::Completed, "{drop:?}");
            store.close().await.unwrap();
        });
    }
}
