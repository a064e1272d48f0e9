//! The conformance suite: one case per bullet of the `StorageBackend` contract, run against
//! every engine through [`conformance_suite!`](crate::conformance_suite).
//!
//! Cases panic on a broken guarantee (they are test code). Engines that differ declare it in
//! `capabilities()`, and the cases branch on that instead of being skipped.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{
    Direction, KeyRange, Partition, ScanRequest, StorageBackend, WriteBatch, scan_all,
};
use crate::error::{Error, Result};

/// Opens an engine at one fixed location; opening again after `close` must see the same data
/// when the engine is durable.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// Opens (or reopens) the backend.
    async fn open(&self) -> Result<Arc<dyn StorageBackend>>;
}

/// Stamps out one `#[tokio::test]` per conformance case for an engine.
///
/// `conformance_suite!(factory)` takes an expression building a fresh [`BackendFactory`] (with
/// its own temp dir) for each test; `conformance_suite!(optional: factory)` takes one building an
/// `Option` of it, for engines that need an external server, and runs the case only when it is
/// `Some`. The calling crate needs `tokio` (with `macros`) as a dev-dependency.
#[macro_export]
macro_rules! conformance_suite {
    (optional: $factory:expr) => {
        $crate::conformance_suite!(@list [optional $factory]);
    };
    ($factory:expr) => {
        $crate::conformance_suite!(@list [required $factory]);
    };
    (@list $mode:tt) => {
        $crate::conformance_suite!(@cases $mode;
            missing_key_reads_none,
            put_then_get_returns_the_value,
            get_many_answers_each_key_in_order,
            put_overwrites_the_previous_value,
            delete_removes_the_key_and_is_idempotent,
            empty_keys_and_values_are_valid,
            large_values_round_trip,
            batch_applies_every_op_across_partitions,
            batch_with_a_failing_op_applies_nothing,
            delete_range_removes_exactly_its_range,
            scan_returns_keys_in_byte_order,
            scan_respects_range_bounds,
            scan_prefix_stays_inside_the_prefix,
            scan_reverse_returns_descending_keys,
            scan_limit_and_chunks_visit_each_key_once,
            scan_with_visits_what_scan_returns,
            reclaim_changes_no_entry,
            partitions_are_isolated,
            partitions_whose_names_prefix_each_other_are_isolated,
            create_partition_is_idempotent_and_listed,
            drop_partition_removes_its_data,
            operations_on_a_missing_partition_fail,
            concurrent_writers_lose_nothing,
            reopen_after_close_keeps_data_when_durable,
            closed_backend_refuses_requests,
            stats_count_partitions,
            works_from_a_current_thread_runtime
        );
    };
    (@cases $mode:tt; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::conformance_suite!(@run $mode $case);
            }
        )*
    };
    (@run [required $factory:expr] $case:ident) => {
        let factory = $factory;
        $crate::conformance::$case(&factory).await;
    };
    (@run [optional $factory:expr] $case:ident) => {
        if let Some(factory) = $factory {
            $crate::conformance::$case(&factory).await;
        }
    };
}

fn p(name: &str) -> Partition {
    Partition::new(name).expect("test partition names are valid")
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

async fn open_with(factory: &dyn BackendFactory, partitions: &[&str]) -> Arc<dyn StorageBackend> {
    let backend = factory.open().await.expect("open backend");
    for name in partitions {
        backend
            .create_partition(&p(name))
            .await
            .expect("create partition");
    }
    backend
}

async fn keys(backend: &dyn StorageBackend, partition: &str, request: ScanRequest) -> Vec<Bytes> {
    scan_all(backend, &p(partition), request)
        .await
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

async fn put_all(backend: &dyn StorageBackend, partition: &str, keys: &[&'static [u8]]) {
    let mut batch = WriteBatch::new();
    for k in keys {
        batch.put(&p(partition), b(k), b(k));
    }
    backend.batch(batch).await.expect("batch");
}

/// Contract: a key never written reads as `None`.
pub async fn missing_key_reads_none(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    assert_eq!(backend.get(&p("t"), b"nope").await.unwrap(), None);
    backend.close().await.unwrap();
}

/// Contract: a put is visible to the next get.
pub async fn put_then_get_returns_the_value(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    backend.put(&p("t"), b(b"k"), b(b"v")).await.unwrap();
    assert_eq!(backend.get(&p("t"), b"k").await.unwrap(), Some(b(b"v")));
    backend.close().await.unwrap();
}

/// Contract: `get_many` answers each key as `get` would, in the order given: sorted or not,
/// present or absent, inside or outside the stored key range.
pub async fn get_many_answers_each_key_in_order(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["p", "q"]).await;
    let part = p("p");
    put_all(backend.as_ref(), "p", &[b"b", b"d", b"f"]).await;
    put_all(backend.as_ref(), "q", &[b"c", b"e"]).await;
    let cases: [&[&'static [u8]]; 5] = [
        &[],
        &[b"a", b"c", b"e", b"g"],
        &[b"b", b"c", b"d", b"e", b"f"],
        &[b"f", b"a", b"b"],
        &[b"x", b"y"],
    ];
    for keys in cases {
        let got = backend.get_many(&part, keys).await.unwrap();
        let mut expected = Vec::new();
        for key in keys {
            expected.push(backend.get(&part, key).await.unwrap());
        }
        assert_eq!(got, expected, "get_many of {keys:?}");
    }
    let got = backend.get_many(&part, &[b"a", b"b", b"c"]).await.unwrap();
    assert_eq!(got[0], None);
    assert!(got[1].is_some());
    assert_eq!(got[2], None, "a key of another partition is not visible");
    backend.close().await.unwrap();
}

/// Contract: the last acknowledged put wins.
pub async fn put_overwrites_the_previous_value(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    backend.put(&p("t"), b(b"k"), b(b"v1")).await.unwrap();
    backend.put(&p("t"), b(b"k"), b(b"v2")).await.unwrap();
    assert_eq!(backend.get(&p("t"), b"k").await.unwrap(), Some(b(b"v2")));
    backend.close().await.unwrap();
}

/// Contract: delete removes a key, and deleting a missing key succeeds.
pub async fn delete_removes_the_key_and_is_idempotent(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    backend.put(&p("t"), b(b"k"), b(b"v")).await.unwrap();
    backend.delete(&p("t"), b"k").await.unwrap();
    assert_eq!(backend.get(&p("t"), b"k").await.unwrap(), None);
    backend.delete(&p("t"), b"k").await.unwrap();
    backend.delete(&p("t"), b"never").await.unwrap();
    assert!(
        keys(backend.as_ref(), "t", ScanRequest::default())
            .await
            .is_empty()
    );
    backend.close().await.unwrap();
}

/// Contract: empty keys and empty values are ordinary data.
pub async fn empty_keys_and_values_are_valid(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    backend
        .put(&p("t"), Bytes::new(), b(b"empty-key"))
        .await
        .unwrap();
    backend.put(&p("t"), b(b"k"), Bytes::new()).await.unwrap();
    assert_eq!(
        backend.get(&p("t"), b"").await.unwrap(),
        Some(b(b"empty-key"))
    );
    assert_eq!(
        backend.get(&p("t"), b"k").await.unwrap(),
        Some(Bytes::new())
    );
    let all = scan_all(backend.as_ref(), &p("t"), ScanRequest::default())
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![(Bytes::new(), b(b"empty-key")), (b(b"k"), Bytes::new())]
    );
    backend.delete(&p("t"), b"").await.unwrap();
    assert_eq!(backend.get(&p("t"), b"").await.unwrap(), None);
    backend.close().await.unwrap();
}

/// Contract: values of 8 MiB round-trip byte for byte.
pub async fn large_values_round_trip(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    let big: Bytes = (0..8 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    backend.put(&p("t"), b(b"big"), big.clone()).await.unwrap();
    assert_eq!(
        backend.get(&p("t"), b"big").await.unwrap(),
        Some(big.clone())
    );
    let scanned = scan_all(backend.as_ref(), &p("t"), ScanRequest::default())
        .await
        .unwrap();
    assert_eq!(scanned, vec![(b(b"big"), big)]);
    backend.close().await.unwrap();
}

/// Contract: a batch applies puts and deletes across partitions, later ops winning.
pub async fn batch_applies_every_op_across_partitions(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["a", "b"]).await;
    backend.put(&p("a"), b(b"gone"), b(b"x")).await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put(&p("a"), b(b"k1"), b(b"1"));
    batch.put(&p("b"), b(b"k2"), b(b"2"));
    batch.delete(&p("a"), b(b"gone"));
    batch.put(&p("b"), b(b"k3"), b(b"first"));
    batch.put(&p("b"), b(b"k3"), b(b"second"));
    backend.batch(batch).await.unwrap();
    assert_eq!(backend.get(&p("a"), b"k1").await.unwrap(), Some(b(b"1")));
    assert_eq!(backend.get(&p("b"), b"k2").await.unwrap(), Some(b(b"2")));
    assert_eq!(backend.get(&p("a"), b"gone").await.unwrap(), None);
    assert_eq!(
        backend.get(&p("b"), b"k3").await.unwrap(),
        Some(b(b"second"))
    );
    backend
        .batch(WriteBatch::new())
        .await
        .expect("an empty batch is a no-op");
    backend.close().await.unwrap();
}

/// Contract: with `capabilities().delete_range`, a `DeleteRange` removes exactly the keys in
/// `[start, end)` of its partition, atomically with the rest of the batch; without it, a batch
/// holding one is refused whole with `Error::Unsupported`.
pub async fn delete_range_removes_exactly_its_range(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t", "u"]).await;
    put_all(backend.as_ref(), "t", &[b"a", b"b", b"ba", b"c", b"d"]).await;
    put_all(backend.as_ref(), "u", &[b"b", b"c"]).await;
    let mut batch = WriteBatch::new();
    batch.delete_range(&p("t"), b(b"b"), b(b"d"));
    batch.put(&p("t"), b(b"e"), b(b"e"));
    // An empty and an inverted range remove nothing.
    batch.delete_range(&p("t"), b(b"a"), b(b"a"));
    batch.delete_range(&p("t"), b(b"d"), b(b"a"));
    let result = backend.batch(batch).await;
    let everything = |names: &[&'static [u8]]| names.iter().map(|k| b(k)).collect::<Vec<_>>();
    if backend.capabilities().delete_range {
        result.unwrap();
        assert_eq!(
            keys(backend.as_ref(), "t", ScanRequest::default()).await,
            everything(&[b"a", b"d", b"e"])
        );
    } else {
        assert!(
            matches!(result, Err(Error::Unsupported { .. })),
            "{result:?}"
        );
        assert_eq!(
            keys(backend.as_ref(), "t", ScanRequest::default()).await,
            everything(&[b"a", b"b", b"ba", b"c", b"d"])
        );
    }
    assert_eq!(
        keys(backend.as_ref(), "u", ScanRequest::default()).await,
        everything(&[b"b", b"c"]),
        "other partitions keep their keys"
    );
    backend.close().await.unwrap();
}

/// Contract: a batch with one failing op (missing partition) applies nothing.
pub async fn batch_with_a_failing_op_applies_nothing(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["a"]).await;
    backend.put(&p("a"), b(b"keep"), b(b"old")).await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put(&p("a"), b(b"new"), b(b"1"));
    batch.delete(&p("a"), b(b"keep"));
    batch.put(&p("missing"), b(b"k"), b(b"v"));
    let err = backend.batch(batch).await.unwrap_err();
    assert!(matches!(err, Error::PartitionNotFound { .. }), "{err:?}");
    assert_eq!(backend.get(&p("a"), b"new").await.unwrap(), None);
    assert_eq!(
        backend.get(&p("a"), b"keep").await.unwrap(),
        Some(b(b"old"))
    );
    backend.close().await.unwrap();
}

/// Contract: scans are ordered by key bytes (0x00 and 0xFF included).
pub async fn scan_returns_keys_in_byte_order(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    let written: [&'static [u8]; 7] = [b"b", b"a\xff", b"a", b"\x00", b"\xff\xff", b"a\x00", b"ab"];
    put_all(backend.as_ref(), "t", &written).await;
    let mut expected: Vec<Bytes> = written.iter().map(|k| b(k)).collect();
    expected.sort();
    assert_eq!(
        keys(backend.as_ref(), "t", ScanRequest::default()).await,
        expected
    );
    backend.close().await.unwrap();
}

/// Contract: range bounds are honoured, inclusive and exclusive.
pub async fn scan_respects_range_bounds(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    put_all(backend.as_ref(), "t", &[b"a", b"b", b"c", b"d", b"e"]).await;
    let cases = [
        (
            Bound::Included(b(b"b")),
            Bound::Excluded(b(b"d")),
            vec![b(b"b"), b(b"c")],
        ),
        (
            Bound::Excluded(b(b"b")),
            Bound::Included(b(b"d")),
            vec![b(b"c"), b(b"d")],
        ),
        (Bound::Unbounded, Bound::Excluded(b(b"b")), vec![b(b"a")]),
        (
            Bound::Included(b(b"d")),
            Bound::Unbounded,
            vec![b(b"d"), b(b"e")],
        ),
        (Bound::Included(b(b"d")), Bound::Excluded(b(b"b")), vec![]),
        (Bound::Excluded(b(b"c")), Bound::Excluded(b(b"c")), vec![]),
    ];
    for (start, end, expected) in cases {
        let request = ScanRequest::new(KeyRange::Range(start.clone(), end.clone()));
        assert_eq!(
            keys(backend.as_ref(), "t", request.clone()).await,
            expected,
            "{start:?}..{end:?}"
        );
        let mut reversed = expected.clone();
        reversed.reverse();
        let request = request.direction(Direction::Reverse);
        assert_eq!(
            keys(backend.as_ref(), "t", request).await,
            reversed,
            "reverse {start:?}..{end:?}"
        );
    }
    backend.close().await.unwrap();
}

/// Contract: a prefix scan returns exactly the keys that start with the prefix.
pub async fn scan_prefix_stays_inside_the_prefix(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    put_all(
        backend.as_ref(),
        "t",
        &[
            b"a",
            b"a/1",
            b"a/2",
            b"a0",
            b"ab/1",
            b"b/1",
            b"\xff\xff",
            b"\xff\xff\x01",
        ],
    )
    .await;
    assert_eq!(
        keys(backend.as_ref(), "t", ScanRequest::prefix(b(b"a/"))).await,
        vec![b(b"a/1"), b(b"a/2")]
    );
    assert_eq!(
        keys(backend.as_ref(), "t", ScanRequest::prefix(b(b"\xff\xff"))).await,
        vec![b(b"\xff\xff"), b(b"\xff\xff\x01")]
    );
    assert_eq!(
        keys(backend.as_ref(), "t", ScanRequest::prefix(b(b"zz"))).await,
        Vec::<Bytes>::new()
    );
    assert_eq!(
        keys(backend.as_ref(), "t", ScanRequest::prefix(Bytes::new()))
            .await
            .len(),
        8
    );
    backend.close().await.unwrap();
}

/// Contract: reverse scans return descending keys within the same bounds.
pub async fn scan_reverse_returns_descending_keys(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    put_all(
        backend.as_ref(),
        "t",
        &[b"a/1", b"a/2", b"a/3", b"b/1", b"a"],
    )
    .await;
    let request = ScanRequest::prefix(b(b"a/")).direction(Direction::Reverse);
    assert_eq!(
        keys(backend.as_ref(), "t", request).await,
        vec![b(b"a/3"), b(b"a/2"), b(b"a/1")]
    );
    let all = keys(
        backend.as_ref(),
        "t",
        ScanRequest::default().direction(Direction::Reverse),
    )
    .await;
    assert_eq!(all.first(), Some(&b(b"b/1")));
    assert_eq!(all.last(), Some(&b(b"a")));
    backend.close().await.unwrap();
}

/// Contract: `limit` caps the total, chunks hold at most `chunk_size`, and resuming visits each
/// remaining key exactly once, in both directions.
pub async fn scan_limit_and_chunks_visit_each_key_once(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    let mut batch = WriteBatch::new();
    let all: Vec<Bytes> = (0..250u32)
        .map(|i| Bytes::from(format!("k{i:04}")))
        .collect();
    for k in &all {
        batch.put(&p("t"), k.clone(), k.clone());
    }
    backend.batch(batch).await.unwrap();

    let first = backend
        .scan(&p("t"), &ScanRequest::default().chunk_size(100))
        .await
        .unwrap();
    assert_eq!(first.entries.len(), 100);
    assert!(first.resume.is_some());

    assert_eq!(
        keys(backend.as_ref(), "t", ScanRequest::default().chunk_size(7)).await,
        all
    );
    let limited = keys(
        backend.as_ref(),
        "t",
        ScanRequest::default().chunk_size(7).limit(30),
    )
    .await;
    assert_eq!(limited, all[..30].to_vec());
    let mut reversed = all.clone();
    reversed.reverse();
    let request = ScanRequest::default()
        .chunk_size(9)
        .limit(40)
        .direction(Direction::Reverse);
    assert_eq!(
        keys(backend.as_ref(), "t", request).await,
        reversed[..40].to_vec()
    );
    assert!(
        keys(backend.as_ref(), "t", ScanRequest::default().limit(0))
            .await
            .is_empty()
    );
    backend.close().await.unwrap();
}

/// Contract: `scan_with` visits, chunk by chunk, exactly the entries `scan` returns (ranges,
/// limits, both directions), resumes where `scan` would, and stops at the first error of its
/// visitor.
pub async fn scan_with_visits_what_scan_returns(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["t"]).await;
    let mut batch = WriteBatch::new();
    for i in 0..120u32 {
        batch.put(
            &p("t"),
            Bytes::from(format!("k{i:04}")),
            Bytes::from(format!("value {i}")),
        );
    }
    backend.batch(batch).await.unwrap();
    let requests = [
        ScanRequest::default().chunk_size(16),
        ScanRequest::default().chunk_size(50).limit(73),
        ScanRequest::new(KeyRange::Range(
            Bound::Excluded(b(b"k0010")),
            Bound::Included(b(b"k0090")),
        ))
        .chunk_size(7)
        .direction(Direction::Reverse),
        ScanRequest::prefix(b(b"k01")).chunk_size(3),
        ScanRequest::prefix(b(b"none")),
        ScanRequest::default().limit(0),
    ];
    for request in requests {
        let mut expected = Vec::new();
        let mut next = Some(request.clone());
        while let Some(r) = next {
            let chunk = backend.scan(&p("t"), &r).await.unwrap();
            expected.push(chunk.entries);
            next = chunk.resume;
        }
        let mut visited = Vec::new();
        let mut next = Some(request.clone());
        while let Some(r) = next {
            let mut chunk = Vec::new();
            next = backend
                .scan_with(&p("t"), &r, &mut |k, v| {
                    chunk.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
                    Ok(())
                })
                .await
                .unwrap();
            visited.push(chunk);
        }
        assert_eq!(visited, expected, "{request:?}");
    }
    let mut seen = 0;
    let err = backend
        .scan_with(&p("t"), &ScanRequest::default(), &mut |_, _| {
            seen += 1;
            if seen == 5 {
                return Err(Error::Corrupt {
                    what: "a visitor".into(),
                    reason: "stops here".into(),
                });
            }
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(seen, 5);
    backend.close().await.unwrap();
}

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

/// A factory for [`MemoryBackend`](crate::MemoryBackend): every open is a fresh, empty engine.
#[derive(Debug, Default)]
pub struct MemoryFactory;

#[async_trait]
impl BackendFactory for MemoryFactory {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(crate::MemoryBackend::new()))
    }
}
