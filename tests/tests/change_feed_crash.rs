//! Crash safety of the change log: a child process writes one change at a time (upserts and
//! deletes, with flushes in between) and reports each acknowledged one on stdout; the parent
//! SIGKILLs it at a different moment each round, reads its output to the end, reopens the
//! data dir and checks that the log holds every acknowledged change, in order, and nothing
//! else but the one write the kill may have caught between its commit and its report.

use std::time::Duration;

use kalamstore::{ChangeOp, KalamValue, Mutation, Scope, StorageId, TableId, TableType};
use kalamstore_tests::tables::{
    chat_row, chat_table, run_child_and_kill, runtime, store_with_storages,
};

const CHILD_DIR: &str = "KALAMSTORE_FEED_CRASH_DIR";
const CHILD_STORAGE: &str = "KALAMSTORE_FEED_CRASH_STORAGE";
const CHILD_FIRST: &str = "KALAMSTORE_FEED_CRASH_FIRST";

fn table() -> TableId {
    "app.feed".parse().unwrap()
}

/// What write `i` does: `(key, Some(body))` upserts, `(key, None)` deletes the key write
/// `i - 1` upserted.
fn write(i: u64) -> (i64, Option<String>) {
    if i % 5 == 4 {
        (((i - 1) % 50) as i64, None)
    } else {
        ((i % 50) as i64, Some(format!("v{i}")))
    }
}

/// The child: writes 0, 1, 2, ... from `first` until it is killed. Ignored, so a plain run
/// never counts it as a pass; the parent launches it with `--ignored`.
#[test]
#[ignore = "child process of the change-log crash test"]
fn feed_crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("started by the parent with a data dir");
    let storage = std::env::var(CHILD_STORAGE).expect("started with a storage");
    let first: u64 = std::env::var(CHILD_FIRST)
        .expect("started with the first write")
        .parse()
        .expect("a number");
    runtime().block_on(async move {
        let (store, _) = store_with_storages(std::path::Path::new(&dir)).await;
        let storage = StorageId::new(storage).unwrap();
        store
            .create_table(chat_table("feed", TableType::Shared, &storage), true)
            .await
            .unwrap();
        let t = table();
        for i in first.. {
            let mutation = match write(i) {
                (key, Some(body)) => Mutation::Upsert(chat_row(key, &body)),
                (key, None) => Mutation::Delete {
                    key: vec![KalamValue::BigInt(key)],
                },
            };
            store.write(&t, None, vec![mutation]).await.unwrap();
            println!("ACK {i}");
            if i % 100 == 99 {
                store.flush_table(&t, Scope::All).await.unwrap();
            }
        }
    });
}

/// Runs the child from write `first` on `storage`, kills it after `after`, and returns the
/// writes it acknowledged.
fn run_and_kill(dir: &str, storage: &str, first: u64, after: Duration) -> Vec<u64> {
    let stderr_path = std::path::Path::new(dir).join(format!("child-{first}.stderr"));
    let env = [
        (CHILD_DIR, dir.to_owned()),
        (CHILD_STORAGE, storage.to_owned()),
        (CHILD_FIRST, first.to_string()),
    ];
    run_child_and_kill("feed_crash_child", &env, after, &stderr_path)
        .iter()
        // libtest's `test ... ` has no newline: the first report shares its line.
        .filter_map(|l| {
            l.rsplit_once("ACK ")
                .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        })
        .collect()
}

/// `(key, Some(body))` of an insert or update, `(key, None)` of a delete.
fn as_write(change: &kalamstore::Change) -> (i64, Option<String>) {
    let key = match change.values[0] {
        KalamValue::BigInt(k) => k,
        ref other => panic!("key {other:?}"),
    };
    match (change.op, &change.values[1]) {
        (ChangeOp::Delete, _) => (key, None),
        (_, KalamValue::Text(body)) => (key, Some(body.clone())),
        (_, other) => panic!("body {other:?}"),
    }
}

fn killed_writers_lose_no_acknowledged_change(storage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_string_lossy().into_owned();
    let rt = runtime();
    let (mut next, mut cursor) = (0u64, 0i64);
    for (round, millis) in [900u64, 1500, 2100].into_iter().enumerate() {
        let acked = run_and_kill(&dir_text, storage, next, Duration::from_millis(millis));
        assert!(
            !acked.is_empty(),
            "round {round}: no write acknowledged in {millis} ms"
        );
        assert!(
            acked.iter().copied().eq(next..next + acked.len() as u64),
            "round {round}: reports from {next} are not consecutive: {:?}..",
            &acked[..acked.len().min(5)]
        );
        let last = *acked.last().unwrap();
        rt.block_on(async {
            let (store, _) = store_with_storages(dir.path()).await;
            let mut logged = Vec::new();
            loop {
                let page = store
                    .changes_since(&table(), None, false, cursor, 500)
                    .await
                    .unwrap();
                let done = page.changes.is_empty() && page.cursor >= page.committed;
                cursor = page.cursor;
                logged.extend(page.changes.iter().map(as_write));
                if done {
                    break;
                }
            }
            let expected: Vec<_> = acked.iter().map(|i| write(*i)).collect();
            let what = format!("{storage}, round {round}, killed after {millis} ms");
            // Every acknowledged write, in order; at most the one the kill caught after its
            // commit follows them.
            assert!(
                logged.len() == expected.len() || logged.len() == expected.len() + 1,
                "{what}: {} logged, {} acknowledged",
                logged.len(),
                expected.len()
            );
            if let Some(at) = (0..expected.len()).find(|i| logged[*i] != expected[*i]) {
                panic!(
                    "{what}: change {at} is {:?}, write {} was {:?}",
                    logged[at], acked[at], expected[at]
                );
            }
            if logged.len() > expected.len() {
                assert_eq!(logged[expected.len()], write(last + 1), "{what}");
            }
            store.close().await.unwrap();
        });
        // The next round starts past any write the kill may have committed unreported.
        next = last + 2;
        if next % 5 == 4 {
            // A delete needs its key upserted by the write before it in the same round.
            next += 1;
        }
    }
}

#[test]
fn a_killed_writer_loses_no_acknowledged_change_on_rocksdb() {
    killed_writers_lose_no_acknowledged_change("local");
}

#[test]
fn a_killed_writer_loses_no_acknowledged_change_on_the_object_store_engine() {
    killed_writers_lose_no_acknowledged_change("objects");
}
