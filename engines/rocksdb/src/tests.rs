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
