//! Crash safety of flush and compaction: a child process runs a table workload and aborts at a
//! failpoint (`KALAMSTORE_FAILPOINT`); the parent reopens the data directory and checks that no
//! acknowledged row is lost, none is duplicated, no deleted row is back, no job is left
//! `running`, the orphaned file is collected, and the table's Delta log, behind when the
//! crash came between the commit and its publication, is repaired at open.

use kalamstore::{CompactionPolicy, JobStatus, Scope, StorageId, TableId, TableType};
use kalamstore_tests::tables::{
    assert_changed_rows, chat_row, chat_table, cold_dir, contents, flushed_with_changes,
    read_delta, run_child_to_failpoint, runtime, store_with_storages,
};

const CHILD_DIR: &str = "KALAMSTORE_TABLE_CRASH_DIR";
const CHILD_STORAGE: &str = "KALAMSTORE_TABLE_CRASH_STORAGE";

fn table() -> TableId {
    "app.chat".parse().unwrap()
}

/// The child: when started by a parent below, runs the workload until its failpoint aborts
/// it. Ignored, so a plain run never counts it as a pass; the parent launches it with
/// `--ignored`.
#[test]
#[ignore = "child process of the crash tests"]
fn table_crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("started by the parent with a data dir");
    let storage = std::env::var(CHILD_STORAGE).expect("started by the parent with a storage");
    let rt = runtime();
    rt.block_on(async move {
        let dir = std::path::Path::new(&dir);
        let (store, _) = store_with_storages(dir).await;
        let storage = StorageId::new(storage).unwrap();
        store
            .create_table(chat_table("chat", TableType::Shared, &storage), false)
            .await
            .unwrap();
        let t = table();
        flushed_with_changes(&store, &t).await;
        store
            .insert(&t, None, (1000..1100).map(|i| chat_row(i, "v1")).collect())
            .await
            .unwrap();
        store.flush_table(&t, Scope::All).await.unwrap();
        store
            .compact_table(&t, Scope::All, CompactionPolicy::all())
            .await
            .unwrap();
        println!("COMPLETED");
    });
}

fn crash_at(storage: &str, failpoint: &str, skip: usize) {
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_string_lossy().into_owned();
    run_child_to_failpoint(
        "table_crash_child",
        &[(CHILD_DIR, &dir_text), (CHILD_STORAGE, storage)],
        failpoint,
        skip,
    );

    let rt = runtime();
    rt.block_on(async move {
        let mut config = kalamstore::StoreConfig::new(
            dir.path(),
            std::sync::Arc::new(kalamstore::Engines::default()),
        );
        config.background = false;
        config.orphan_grace = std::time::Duration::ZERO;
        let store = kalamstore::Store::open(config).await.unwrap();
        let t = table();
        assert_changed_rows(
            &contents(&store, &t, None).await,
            &format!("{storage} {failpoint} after reopen"),
        );
        // The Delta log was repaired at open: it lists the manifest's files, and a real
        // reader sees the flushed rows the manifest's deletion vectors leave.
        let manifest = store.manifest(&t).await.unwrap();
        let mut files: Vec<String> = manifest
            .iter()
            .map(|(_, f)| f.meta.path.rsplit('/').next().unwrap().to_owned())
            .collect();
        files.sort();
        let live: u64 = manifest.iter().map(|(_, f)| f.meta.rows - f.dv.len()).sum();
        let table_dir = cold_dir(dir.path(), &StorageId::new(storage).unwrap()).join("app/chat");
        let log = read_delta(&table_dir, &["files"]);
        let log: serde_json::Value = serde_json::from_str(&log[0]).unwrap();
        assert_eq!(
            log["files"],
            serde_json::json!(files),
            "{storage} {failpoint}"
        );
        assert_eq!(
            log["live_rows"],
            serde_json::json!(live),
            "{storage} {failpoint}"
        );

        // The killed job is queued again and finishes at the next maintenance pass, under
        // its own record; the rows are the same after it.
        let jobs = store.jobs().await.unwrap();
        let interrupted: Vec<String> = jobs
            .iter()
            .filter(|j| !j.status.is_final())
            .map(|j| j.id.clone())
            .collect();
        assert!(!interrupted.is_empty(), "{jobs:?}");
        assert!(
            jobs.iter()
                .all(|j| j.status.is_final() || j.status == JobStatus::Queued),
            "{jobs:?}"
        );
        let done = store
            .maintain(std::time::Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(done.resumed as usize, interrupted.len(), "{done:?}");
        let jobs = store.jobs().await.unwrap();
        for id in &interrupted {
            let job = jobs.iter().find(|j| &j.id == id).unwrap();
            assert_eq!(job.status, JobStatus::Completed, "{job:?}");
        }
        assert_changed_rows(
            &contents(&store, &t, None).await,
            &format!("{storage} {failpoint} after the interrupted job ran again"),
        );

        // Orphans go; what the manifest references stays.
        store.cleanup().await.unwrap();
        let referenced: std::collections::HashSet<String> = store
            .manifest(&t)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, f)| f.meta.path.rsplit('/').next().unwrap().to_owned())
            .collect();
        let cold = if storage == "local" {
            "cold"
        } else {
            "objects-cold"
        };
        let on_disk: std::collections::HashSet<String> =
            std::fs::read_dir(dir.path().join(cold).join("app/chat"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".parquet"))
                .collect();
        assert_eq!(on_disk, referenced, "{storage} {failpoint}");

        store.flush_table(&t, Scope::All).await.unwrap();
        store
            .compact_table(&t, Scope::All, CompactionPolicy::all())
            .await
            .unwrap();
        assert_changed_rows(
            &contents(&store, &t, None).await,
            &format!("{storage} {failpoint} after flush + compaction"),
        );
        store.close().await.unwrap();
    });
}

/// Crashes at each failpoint on the RocksDB storage and on the object-store storage.
fn crash_on_every_storage(failpoint: &str, skip: usize) {
    for storage in ["local", "objects"] {
        crash_at(storage, failpoint, skip);
    }
}

#[test]
fn crash_before_a_flush_commits_loses_nothing() {
    crash_on_every_storage("flush.before_commit", 1);
}

#[test]
fn crash_after_a_flush_commits_loses_nothing() {
    crash_on_every_storage("flush.after_commit", 1);
}

#[test]
fn crash_before_a_compaction_commits_loses_nothing() {
    crash_on_every_storage("compaction.before_commit", 0);
}

#[test]
fn crash_after_a_compaction_commits_loses_nothing() {
    crash_on_every_storage("compaction.after_commit", 0);
}
