//! The object-store engine against the conformance suite (local directory and in-memory store),
//! plus its own guarantees: fencing and purging of dropped partitions.

use std::sync::Arc;

use async_trait::async_trait;
use kalamstore_storage::conformance::BackendFactory;
use kalamstore_storage::{Partition, Result, StorageBackend};

use super::*;

/// A local directory in a temp dir; reopening uses the same directory.
struct LocalFactory(tempfile::TempDir);

#[async_trait]
impl BackendFactory for LocalFactory {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        let url = self.0.path().to_string_lossy().into_owned();
        Ok(Arc::new(
            ObjectStoreBackend::open(ObjectStoreConfig::new(url)).await?,
        ))
    }
}

/// One `InMemory` store shared by every open, so reopening sees the same objects.
struct MemoryStoreFactory(OpenedStore);

#[async_trait]
impl BackendFactory for MemoryStoreFactory {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        let config = ObjectStoreConfig::new("memory://");
        Ok(Arc::new(
            ObjectStoreBackend::open_with_store(self.0.clone(), config).await?,
        ))
    }
}

mod local_dir {
    use super::*;
    kalamstore_storage::conformance_suite!(LocalFactory(tempfile::tempdir().expect("temp dir")));
}

mod memory_store {
    use super::*;
    kalamstore_storage::conformance_suite!(MemoryStoreFactory(
        open_store("memory://", &S3Options::default()).expect("in-memory store")
    ));
}

fn p(name: &str) -> Partition {
    Partition::new(name).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_opener_fences_the_first_without_corrupting_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_string_lossy().into_owned();
    let first = ObjectStoreBackend::open(ObjectStoreConfig::new(url.clone()))
        .await
        .unwrap();
    first.create_partition(&p("t")).await.unwrap();
    first
        .put(&p("t"), Bytes::from_static(b"a"), Bytes::from_static(b"1"))
        .await
        .unwrap();

    let second = ObjectStoreBackend::open(ObjectStoreConfig::new(url))
        .await
        .unwrap();
    let err = first
        .put(&p("t"), Bytes::from_static(b"b"), Bytes::from_static(b"2"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Closed { reason, .. } if reason.contains("fenced")),
        "{err:?}"
    );

    assert_eq!(
        second.get(&p("t"), b"a").await.unwrap(),
        Some(Bytes::from_static(b"1"))
    );
    assert_eq!(
        second.get(&p("t"), b"b").await.unwrap(),
        None,
        "the fenced write was not acknowledged"
    );
    second.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_partition_leaves_no_keys_behind() {
    let store = open_store("memory://", &S3Options::default()).unwrap();
    let backend = ObjectStoreBackend::open_with_store(store, ObjectStoreConfig::new("memory://"))
        .await
        .unwrap();
    backend.create_partition(&p("t")).await.unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..2500u32 {
        batch.put(
            &p("t"),
            Bytes::from(i.to_be_bytes().to_vec()),
            Bytes::from_static(b"v"),
        );
    }
    backend.batch(batch).await.unwrap();
    backend.drop_partition(&p("t")).await.unwrap();
    assert!(
        backend
            .scan_raw(&[DATA_TAG], usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        backend
            .scan_raw(DROPPED_PREFIX, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    backend.close().await.unwrap();
}

#[tokio::test]
async fn unsupported_urls_are_refused_by_name() {
    let err = ObjectStoreBackend::open(ObjectStoreConfig::new("ftp://example/x"))
        .await
        .unwrap_err();
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(text.contains("ftp"), "{text}");
}

/// WAL files in a store opened by `open_with_store` without a prefix.
async fn wal_files(store: &Arc<dyn object_store::ObjectStore>) -> usize {
    use futures::TryStreamExt;
    let wal = object_store::path::Path::from("kv/wal");
    store
        .list(Some(&wal))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_durable_writes_share_wal_flushes_without_waiting_for_the_timer() {
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    // Every PUT takes 50 ms, so writers arriving during one flush join the next.
    let throttle = ThrottleConfig {
        wait_put_per_call: Duration::from_millis(50),
        ..ThrottleConfig::default()
    };
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(ThrottledStore::new(
        object_store::memory::InMemory::new(),
        throttle,
    ));
    let opened = OpenedStore {
        store: store.clone(),
        prefix: String::new(),
        conditional_update: true,
        in_memory: true,
    };
    // SlateDB's own timer would not flush within the test: only shared flushes make the
    // writes durable.
    let mut config = ObjectStoreConfig::new("memory://");
    config.flush_interval = Duration::from_secs(3600);
    let first = Arc::new(
        ObjectStoreBackend::open_with_store(opened.clone(), config.clone())
            .await
            .unwrap(),
    );
    first.create_partition(&p("t")).await.unwrap();
    let before = wal_files(&store).await;
    const WRITERS: u32 = 16;
    const EACH: u32 = 4;
    let writers = (0..WRITERS).map(|w| {
        let first = first.clone();
        tokio::spawn(async move {
            for i in 0..EACH {
                let key = Bytes::from(format!("w{w}-{i}"));
                first.put(&p("t"), key.clone(), key).await.unwrap();
            }
        })
    });
    tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::try_join_all(writers),
    )
    .await
    .expect("durable writes waited for the flush timer")
    .unwrap();
    let flushes = wal_files(&store).await - before;
    assert!(
        flushes < (WRITERS * EACH / 2) as usize,
        "{flushes} WAL files for {} writes: flushes were not shared",
        WRITERS * EACH
    );
    // Acknowledged means durable: a second opener (which fences the first) reads them all.
    let second = ObjectStoreBackend::open_with_store(opened, config)
        .await
        .unwrap();
    for w in 0..WRITERS {
        for i in 0..EACH {
            let key = format!("w{w}-{i}");
            assert_eq!(
                second
                    .get(&p("t"), key.as_bytes())
                    .await
                    .unwrap()
                    .as_deref(),
                Some(key.as_bytes()),
                "{key}"
            );
        }
    }
    second.close().await.unwrap();
}
