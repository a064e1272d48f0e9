//! RocksDB against the conformance suite (in both key layouts), plus reopening with many
//! partitions, a second opener of the same directory, partitions past the one-byte prefixes,
//! and the migration out of the family-per-partition layout.

use std::sync::Arc;

use async_trait::async_trait;
use kalamstore_storage::conformance::BackendFactory;
use kalamstore_storage::{Partition, Result, StorageBackend};

use super::*;

/// Opens RocksDB in its own temp dir; reopening uses the same dir.
pub(crate) struct Factory(tempfile::TempDir);

impl Factory {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }
}

#[async_trait]
impl BackendFactory for Factory {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(RocksDbBackend::open(RocksDbConfig::new(
            self.0.path(),
        ))?))
    }
}

kalamstore_storage::conformance_suite!(Factory::new());

/// The conformance suite on a database of the `Wide` layout (the one databases created before
/// the compact layout keep).
mod wide {
    use super::*;

    /// Opens RocksDB in its own temp dir, made `Wide` before the first open: an existing
    /// database without the compact layout's `registry` family.
    pub(crate) struct WideFactory(tempfile::TempDir);

    impl WideFactory {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            drop(Db::open_default(dir.path()).expect("create a plain database"));
            Self(dir)
        }
    }

    #[async_trait]
    impl BackendFactory for WideFactory {
        async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
            let backend = RocksDbBackend::open(RocksDbConfig::new(self.0.path()))?;
            assert_eq!(backend.layout, Layout::Wide);
            Ok(Arc::new(backend))
        }
    }

    kalamstore_storage::conformance_suite!(WideFactory::new());
}

#[tokio::test]
async fn partitions_past_the_one_byte_prefixes_keep_to_their_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    assert_eq!(backend.layout, Layout::Compact);
    // Generations 1..=300 cross from one-byte prefixes to a marker and one byte, then two.
    let keys: [&[u8]; 4] = [b"", b"\x00", b"k", &[0xff; 12]];
    let partitions: Vec<Partition> = (0..300)
        .map(|i| Partition::new(format!("t{i:03}")).unwrap())
        .collect();
    for (i, p) in partitions.iter().enumerate() {
        backend.create_partition(p).await.unwrap();
        let mut batch = WriteBatch::new();
        for k in keys {
            batch.put(p, Bytes::copy_from_slice(k), Bytes::from(format!("{i}")));
        }
        backend.batch(batch).await.unwrap();
    }
    for (i, p) in partitions.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        backend.drop_partition(p).await.unwrap();
        assert!(backend.get(p, b"k").await.is_err(), "{i}");
    }
    backend.close().await.unwrap();
    drop(backend);
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    for (i, p) in partitions.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        let all = kalamstore_storage::backend::scan_all(&backend, p, ScanRequest::default())
            .await
            .unwrap();
        let expected: Vec<(Bytes, Bytes)> = keys
            .iter()
            .map(|k| (Bytes::copy_from_slice(k), Bytes::from(format!("{i}"))))
            .collect();
        assert_eq!(all, expected, "partition {p}");
        let reverse = ScanRequest {
            direction: Direction::Reverse,
            ..ScanRequest::default()
        };
        let back = kalamstore_storage::backend::scan_all(&backend, p, reverse)
            .await
            .unwrap();
        assert_eq!(back.len(), keys.len(), "partition {p} reversed");
    }
    backend.close().await.unwrap();
}

#[tokio::test]
async fn a_database_with_500_partitions_reopens_with_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    for i in 0..500 {
        let p = Partition::new(format!("p{i:03}")).unwrap();
        backend.create_partition(&p).await.unwrap();
        backend
            .put(&p, Bytes::from_static(b"k"), Bytes::from(format!("{i}")))
            .await
            .unwrap();
    }
    backend.close().await.unwrap();
    drop(backend);
    let reopened = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    assert_eq!(reopened.list_partitions().await.unwrap().len(), 500);
    let p = Partition::new("p499").unwrap();
    assert_eq!(
        reopened.get(&p, b"k").await.unwrap(),
        Some(Bytes::from_static(b"499"))
    );
}

/// Bytes of write-ahead log in a database directory.
fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[tokio::test]
async fn a_clean_close_leaves_no_log_to_replay_and_every_row_readable() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    let p = Partition::new("rows").unwrap();
    backend.create_partition(&p).await.unwrap();
    let value = Bytes::from(vec![7u8; 100]);
    for i in 0..10_000u32 {
        backend
            .put(&p, Bytes::copy_from_slice(&i.to_be_bytes()), value.clone())
            .await
            .unwrap();
    }
    // The rows are in the log and the memtable until the close writes them out.
    assert!(wal_bytes(dir.path()) > 10_000 * 100);
    backend.close().await.unwrap();
    drop(backend);
    assert_eq!(wal_bytes(dir.path()), 0, "a reopen would replay the log");
    let reopened = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    for i in [0u32, 4_999, 9_999] {
        assert_eq!(
            reopened.get(&p, &i.to_be_bytes()).await.unwrap(),
            Some(value.clone())
        );
    }
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    let err = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap_err();
    assert!(
        err.to_string().contains("rocksdb failed while opening"),
        "{err}"
    );
}

/// A backend on `config` with a partition `t` of 10k entries of 100 bytes.
async fn ten_thousand_entries(config: RocksDbConfig) -> (RocksDbBackend, Partition) {
    let backend = RocksDbBackend::open(config).unwrap();
    let p = Partition::new("t").unwrap();
    backend.create_partition(&p).await.unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..10_000u32 {
        batch.put(
            &p,
            Bytes::from(i.to_be_bytes().to_vec()),
            Bytes::from(vec![7u8; 100]),
        );
    }
    backend.batch(batch).await.unwrap();
    (backend, p)
}

#[tokio::test]
async fn reclaim_after_a_range_delete_empties_the_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let config = RocksDbConfig {
        reclaim_min_memtable_bytes: 0,
        ..RocksDbConfig::new(dir.path())
    };
    let (backend, p) = ten_thousand_entries(config).await;
    let mut batch = WriteBatch::new();
    batch.delete_range(&p, Bytes::new(), Bytes::from_static(&[0xff; 5]));
    backend.batch(batch).await.unwrap();
    let memtable_entries = || {
        let db = backend.db().unwrap();
        let cf = backend.layout.rows_family(&db).unwrap();
        let int = |name: &str| db.property_int_value_cf(&cf, name).unwrap().unwrap();
        int("rocksdb.num-entries-active-mem-table") + int("rocksdb.num-entries-imm-mem-tables")
    };
    assert!(memtable_entries() >= 10_000);
    backend.reclaim(&p).await.unwrap();
    // The memtable flush runs in the background.
    kalamstore_storage::testing::wait_until("the memtable is flushed", || async {
        memtable_entries() == 0
    })
    .await;
    let all = kalamstore_storage::backend::scan_all(&backend, &p, ScanRequest::default())
        .await
        .unwrap();
    assert!(all.is_empty());
    backend.close().await.unwrap();
}

#[tokio::test]
async fn reclaim_compacts_range_deleted_entries_out_of_table_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = RocksDbConfig {
        reclaim_min_file_bytes: 0,
        ..RocksDbConfig::new(dir.path())
    };
    let (backend, p) = ten_thousand_entries(config).await;
    let sst_bytes = || {
        let db = backend.db().unwrap();
        let cf = backend.layout.rows_family(&db).unwrap();
        db.property_int_value_cf(&cf, "rocksdb.total-sst-files-size")
            .unwrap()
            .unwrap()
    };
    {
        let db = backend.db().unwrap();
        db.flush_cf(backend.layout.rows_family(&db).unwrap())
            .unwrap();
    }
    assert!(sst_bytes() > 500_000, "{}", sst_bytes());
    let mut batch = WriteBatch::new();
    batch.delete_range(&p, Bytes::new(), Bytes::from_static(&[0xff; 5]));
    backend.batch(batch).await.unwrap();
    backend.reclaim(&p).await.unwrap();
    // The covered entries are gone from the files, not only hidden by the range delete.
    assert!(sst_bytes() < 50_000, "{}", sst_bytes());
    let all = kalamstore_storage::backend::scan_all(&backend, &p, ScanRequest::default())
        .await
        .unwrap();
    assert!(all.is_empty());
    backend.close().await.unwrap();
}

/// Writes a database of the earlier layout: one column family `p:<name>` per partition.
fn write_old_layout(path: &std::path::Path, partitions: &[(&str, u32)]) {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    let names: Vec<String> = partitions.iter().map(|(n, _)| format!("p:{n}")).collect();
    let db = Db::open_cf(&options, path, &names).unwrap();
    for (name, keys) in partitions {
        let cf = db.cf_handle(&format!("p:{name}")).unwrap();
        for i in 0..*keys {
            db.put_cf(&cf, format!("k{i:05}"), format!("{name} {i}"))
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_database_of_the_family_per_partition_layout_is_migrated_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    write_old_layout(dir.path(), &[("a", 10_000), ("b", 3), ("empty", 0)]);
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    assert_eq!(
        backend.migrated,
        migrate::Migrated {
            partitions: 3,
            keys: 10_003
        }
    );
    let names: Vec<String> = backend
        .list_partitions()
        .await
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(names, ["a", "b", "empty"]);
    let a = kalamstore_storage::backend::scan_all(
        &backend,
        &Partition::new("a").unwrap(),
        ScanRequest::default(),
    )
    .await
    .unwrap();
    assert_eq!(a.len(), 10_000);
    assert_eq!(a[17], (Bytes::from("k00017"), Bytes::from("a 17")));
    let b = Partition::new("b").unwrap();
    assert_eq!(
        backend.get(&b, b"k00002").await.unwrap(),
        Some(Bytes::from("b 2"))
    );
    // A new partition takes a generation after the migrated ones.
    let c = Partition::new("c").unwrap();
    backend.create_partition(&c).await.unwrap();
    assert!(backend.get(&c, b"k00002").await.unwrap().is_none());
    backend.close().await.unwrap();
    drop(backend);

    // The old families are gone; a second open migrates nothing and keeps every key.
    let families = Db::list_cf(&Options::default(), dir.path()).unwrap();
    assert!(
        families.iter().all(|f| !f.starts_with("p:")),
        "{families:?}"
    );
    let reopened = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    assert_eq!(reopened.migrated, migrate::Migrated::default());
    assert_eq!(reopened.list_partitions().await.unwrap().len(), 4);
    assert_eq!(
        reopened.get(&b, b"k00000").await.unwrap(),
        Some(Bytes::from("b 0"))
    );
    reopened.close().await.unwrap();
}

#[tokio::test]
async fn a_family_the_registry_already_names_is_dropped_not_copied_again() {
    // The state a crash leaves between registering a migrated partition and dropping its old
    // family: the registry's copy is the truth, even where the old family differs.
    let dir = tempfile::tempdir().unwrap();
    write_old_layout(dir.path(), &[("a", 5)]);
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    let a = Partition::new("a").unwrap();
    backend.delete(&a, b"k00001").await.unwrap();
    backend.close().await.unwrap();
    drop(backend);
    {
        let mut options = Options::default();
        options.create_missing_column_families(true);
        let families = Db::list_cf(&options, dir.path()).unwrap();
        let mut db = Db::open_cf(&options, dir.path(), &families).unwrap();
        db.create_cf("p:a", &Options::default()).unwrap();
        let cf = db.cf_handle("p:a").unwrap();
        db.put_cf(cf, "k00001", "stale").unwrap();
    }
    let reopened = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    assert_eq!(reopened.migrated.partitions, 0);
    assert_eq!(reopened.get(&a, b"k00001").await.unwrap(), None);
    assert_eq!(
        reopened.get(&a, b"k00002").await.unwrap(),
        Some(Bytes::from("a 2"))
    );
    reopened.close().await.unwrap();
}

#[tokio::test]
async fn creating_and_dropping_partitions_leaves_no_column_family_behind() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    for i in 0..200 {
        let p = Partition::new(format!("t{i}")).unwrap();
        backend.create_partition(&p).await.unwrap();
        backend
            .put(&p, Bytes::from("k"), Bytes::from("v"))
            .await
            .unwrap();
        if i % 2 == 0 {
            backend.drop_partition(&p).await.unwrap();
        }
    }
    assert_eq!(backend.list_partitions().await.unwrap().len(), 100);
    backend.close().await.unwrap();
    drop(backend);
    let families = Db::list_cf(&Options::default(), dir.path()).unwrap();
    assert_eq!(families, ["default", "registry"]);
}

#[tokio::test]
async fn a_thread_never_reads_through_the_prefix_of_a_dropped_partition() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    let p = Partition::new("t").unwrap();
    backend.create_partition(&p).await.unwrap();
    backend
        .put(&p, Bytes::from_static(b"k"), Bytes::from_static(b"old"))
        .await
        .unwrap();
    // This thread's last prefix is now `t`'s.
    assert!(backend.get(&p, b"k").await.unwrap().is_some());
    backend.drop_partition(&p).await.unwrap();
    assert!(matches!(
        backend.get(&p, b"k").await,
        Err(Error::PartitionNotFound { .. })
    ));
    backend.create_partition(&p).await.unwrap();
    assert_eq!(backend.get(&p, b"k").await.unwrap(), None);
    backend
        .put(&p, Bytes::from_static(b"k"), Bytes::from_static(b"new"))
        .await
        .unwrap();
    backend.close().await.unwrap();
    drop(backend);
    // The write went to the new generation: a fresh process reads it.
    let reopened = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
    assert_eq!(
        reopened.get(&p, b"k").await.unwrap(),
        Some(Bytes::from_static(b"new"))
    );
    reopened.close().await.unwrap();
}
