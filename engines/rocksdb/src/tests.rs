//! RocksDB against the conformance suite, plus reopening with many partitions and a second
//! opener of the same directory.

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

#[tokio::test]
async fn reclaim_after_a_range_delete_empties_the_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbBackend::open(RocksDbConfig::new(dir.path())).unwrap();
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
    batch.delete_range(&p, Bytes::new(), Bytes::from_static(&[0xff; 5]));
    backend.batch(batch).await.unwrap();
    let memtable_entries = || {
        let db = backend.db().unwrap();
        let cf = family(&db, &p).unwrap();
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
