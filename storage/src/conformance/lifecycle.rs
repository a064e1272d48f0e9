//! Conformance cases for partitions and the engine's life: isolation, create and drop,
//! missing partitions, reclaim, concurrency, durability, close, stats and runtimes.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{BackendFactory, b, keys, open_with, p, put_all};
use crate::backend::{Partition, ScanRequest, WriteBatch, scan_all};
use crate::error::Error;

/// Contract: a key in one partition is invisible in another.
pub async fn partitions_are_isolated(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["a", "b"]).await;
    backend.put(&p("a"), b(b"k"), b(b"in-a")).await.unwrap();
    assert_eq!(backend.get(&p("b"), b"k").await.unwrap(), None);
    assert!(
        keys(backend.as_ref(), "b", ScanRequest::default())
            .await
            .is_empty()
    );
    backend.put(&p("b"), b(b"k"), b(b"in-b")).await.unwrap();
    backend.delete(&p("a"), b"k").await.unwrap();
    assert_eq!(backend.get(&p("b"), b"k").await.unwrap(), Some(b(b"in-b")));
    backend.close().await.unwrap();
}

/// Contract: isolation holds even when one partition's name is a prefix of another's.
pub async fn partitions_whose_names_prefix_each_other_are_isolated(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t", "t1", "t.1", "t:"]).await;
    backend.put(&p("t"), b(b"1k"), b(b"t")).await.unwrap();
    backend.put(&p("t1"), b(b"k"), b(b"t1")).await.unwrap();
    backend.put(&p("t:"), Bytes::new(), b(b"t:")).await.unwrap();
    for (partition, expected) in [
        ("t", vec![b(b"1k")]),
        ("t1", vec![b(b"k")]),
        ("t.1", vec![]),
        ("t:", vec![Bytes::new()]),
    ] {
        assert_eq!(
            keys(backend.as_ref(), partition, ScanRequest::default()).await,
            expected,
            "{partition}"
        );
    }
    backend.drop_partition(&p("t")).await.unwrap();
    assert_eq!(backend.get(&p("t1"), b"k").await.unwrap(), Some(b(b"t1")));
    assert_eq!(backend.get(&p("t:"), b"").await.unwrap(), Some(b(b"t:")));
    backend.close().await.unwrap();
}

/// Contract: creating a partition twice is fine; the list is sorted.
pub async fn create_partition_is_idempotent_and_listed(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["zeta", "alpha"]).await;
    backend.put(&p("alpha"), b(b"k"), b(b"v")).await.unwrap();
    backend.create_partition(&p("alpha")).await.unwrap();
    assert_eq!(
        backend.get(&p("alpha"), b"k").await.unwrap(),
        Some(b(b"v")),
        "re-create keeps data"
    );
    let listed = backend.list_partitions().await.unwrap();
    let user: Vec<&str> = listed
        .iter()
        .map(Partition::as_str)
        .filter(|n| ["alpha", "zeta"].contains(n))
        .collect();
    assert_eq!(user, ["alpha", "zeta"]);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    assert!(backend.partition_exists(&p("zeta")).await.unwrap());
    assert!(!backend.partition_exists(&p("nope")).await.unwrap());
    backend.close().await.unwrap();
}

/// Contract: dropping a partition removes its data; a re-created one starts empty.
pub async fn drop_partition_removes_its_data(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t", "other"]).await;
    put_all(backend.as_ref(), "t", &[b"a", b"b"]).await;
    put_all(backend.as_ref(), "other", &[b"a"]).await;
    backend.drop_partition(&p("t")).await.unwrap();
    assert!(!backend.partition_exists(&p("t")).await.unwrap());
    backend
        .drop_partition(&p("t"))
        .await
        .expect("drop is idempotent");
    backend.create_partition(&p("t")).await.unwrap();
    assert_eq!(backend.get(&p("t"), b"a").await.unwrap(), None);
    assert!(
        keys(backend.as_ref(), "t", ScanRequest::default())
            .await
            .is_empty()
    );
    assert_eq!(backend.get(&p("other"), b"a").await.unwrap(), Some(b(b"a")));
    backend.close().await.unwrap();
}

/// Contract: get/put/delete/scan on a missing partition fail with `PartitionNotFound`.
pub async fn operations_on_a_missing_partition_fail(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &[]).await;
    let missing = p("missing");
    let results = [
        backend.get(&missing, b"k").await.map(|_| ()),
        backend.put(&missing, b(b"k"), b(b"v")).await,
        backend.delete(&missing, b"k").await,
        backend
            .scan(&missing, &ScanRequest::default())
            .await
            .map(|_| ()),
        backend.reclaim(&missing).await,
    ];
    for result in results {
        assert!(
            matches!(result, Err(Error::PartitionNotFound { .. })),
            "{result:?}"
        );
    }
    backend.close().await.unwrap();
}

/// Contract: `reclaim` changes no entry, after a range delete (where the engine has one) or
/// point deletes, with keys written again over the deleted range.
pub async fn reclaim_changes_no_entry(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t", "u"]).await;
    let key = |i: u32| Bytes::from(format!("k{i:04}"));
    let mut model = BTreeMap::new();
    for partition in ["t", "u"] {
        let mut batch = WriteBatch::new();
        for i in 0..300 {
            batch.put(
                &p(partition),
                key(i),
                Bytes::from(format!("{partition} {i}")),
            );
        }
        backend.batch(batch).await.unwrap();
    }
    for i in 0..300 {
        model.insert(key(i), Bytes::from(format!("t {i}")));
    }
    let mut batch = WriteBatch::new();
    if backend.capabilities().delete_range {
        batch.delete_range(&p("t"), key(20), key(250));
    } else {
        for i in 20..250 {
            batch.delete(&p("t"), key(i));
        }
    }
    backend.batch(batch).await.unwrap();
    model.retain(|k, _| k < &key(20) || k >= &key(250));
    for i in [20, 100, 249] {
        backend
            .put(&p("t"), key(i), Bytes::from_static(b"again"))
            .await
            .unwrap();
        model.insert(key(i), Bytes::from_static(b"again"));
    }
    backend.reclaim(&p("t")).await.unwrap();
    let expected: Vec<(Bytes, Bytes)> = model.into_iter().collect();
    let all = scan_all(
        backend.as_ref(),
        &p("t"),
        ScanRequest::default().chunk_size(64),
    )
    .await
    .unwrap();
    assert_eq!(all, expected);
    assert_eq!(backend.get(&p("t"), &key(50)).await.unwrap(), None);
    assert_eq!(
        backend.get(&p("t"), &key(100)).await.unwrap(),
        Some(Bytes::from_static(b"again"))
    );
    assert_eq!(
        keys(backend.as_ref(), "u", ScanRequest::default())
            .await
            .len(),
        300
    );
    backend.reclaim(&p("u")).await.unwrap();
    assert_eq!(
        keys(backend.as_ref(), "u", ScanRequest::default())
            .await
            .len(),
        300
    );
    backend.close().await.unwrap();
}

/// Contract: many tasks writing at once lose nothing.
pub async fn concurrent_writers_lose_nothing(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    let tasks = 16;
    let per_task = 100;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let backend = backend.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let key = Bytes::from(format!("t{t:02}-{i:04}"));
                    if i % 10 == 0 {
                        let mut batch = WriteBatch::new();
                        batch.put(&p("t"), key.clone(), key.clone());
                        backend.batch(batch).await.unwrap();
                    } else {
                        backend.put(&p("t"), key.clone(), key).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("writer task");
    }
    let all = scan_all(backend.as_ref(), &p("t"), ScanRequest::default())
        .await
        .unwrap();
    assert_eq!(all.len(), tasks * per_task);
    assert!(all.iter().all(|(k, v)| k == v));
    backend.close().await.unwrap();
}

/// Contract: after `flush` and `close`, reopening keeps everything (durable engines) or starts
/// empty (non-durable engines).
pub async fn reopen_after_close_keeps_data_when_durable(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t", "u"]).await;
    let durable = backend.capabilities().durable;
    let mut model = BTreeMap::new();
    for i in 0..300u32 {
        let key = Bytes::from(format!("k{i:05}"));
        let value = Bytes::from(vec![i as u8; (i % 50) as usize]);
        backend
            .put(&p("t"), key.clone(), value.clone())
            .await
            .unwrap();
        model.insert(key, value);
    }
    for i in (0..300u32).step_by(7) {
        let key = Bytes::from(format!("k{i:05}"));
        backend.delete(&p("t"), &key).await.unwrap();
        model.remove(&key);
    }
    backend.put(&p("u"), b(b"x"), b(b"y")).await.unwrap();
    backend.drop_partition(&p("u")).await.unwrap();
    backend.flush().await.unwrap();
    backend.close().await.unwrap();
    drop(backend);

    let reopened = factory.open().await.expect("reopen");
    if durable {
        assert!(reopened.partition_exists(&p("t")).await.unwrap());
        assert!(
            !reopened.partition_exists(&p("u")).await.unwrap(),
            "a dropped partition stays dropped"
        );
        let all = scan_all(reopened.as_ref(), &p("t"), ScanRequest::default())
            .await
            .unwrap();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    } else {
        assert!(!reopened.partition_exists(&p("t")).await.unwrap());
    }
    reopened.close().await.unwrap();
}

/// Contract: after `close`, every call fails with `Closed`; `close` is idempotent.
pub async fn closed_backend_refuses_requests(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    backend.close().await.unwrap();
    backend.close().await.expect("close is idempotent");
    let results = [
        backend.get(&p("t"), b"k").await.map(|_| ()),
        backend.put(&p("t"), b(b"k"), b(b"v")).await,
        backend
            .scan(&p("t"), &ScanRequest::default())
            .await
            .map(|_| ()),
        backend.create_partition(&p("n")).await,
        backend.batch(WriteBatch::new()).await,
    ];
    for result in results {
        assert!(matches!(result, Err(Error::Closed { .. })), "{result:?}");
    }
}

/// Contract: `stats` reports the engine name and the partitions.
pub async fn stats_count_partitions(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["a", "b", "c"]).await;
    let stats = backend.stats().await.unwrap();
    assert_eq!(stats.engine, backend.name());
    assert_eq!(
        stats.partitions,
        backend.list_partitions().await.unwrap().len()
    );
    assert!(stats.partitions >= 3);
    backend.close().await.unwrap();
}

/// Contract: methods work from any async context, here a current-thread runtime on another
/// thread.
pub async fn works_from_a_current_thread_runtime(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    let inner = backend.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("current-thread runtime");
        rt.block_on(async move {
            for i in 0..50u32 {
                let key = Bytes::from(format!("k{i}"));
                inner.put(&p("t"), key.clone(), key.clone()).await.unwrap();
                assert_eq!(inner.get(&p("t"), &key).await.unwrap(), Some(key));
            }
        });
    })
    .join()
    .expect("thread with its own runtime");
    assert_eq!(
        keys(backend.as_ref(), "t", ScanRequest::default())
            .await
            .len(),
        50
    );
    backend.close().await.unwrap();
}
