//! Conformance cases for point reads and writes: get, get_many, put, delete, batches and
//! range deletes.

use bytes::Bytes;

use super::{BackendFactory, b, keys, open_with, p, put_all};
use crate::backend::{ScanRequest, WriteBatch, scan_all};
use crate::error::Error;

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

/// Contract: a staged batch shows nothing before its commit and every part after it, across
/// partitions, with parts whose keys go back (another sorted run) and values that replace
/// stored ones; one dropped uncommitted leaves nothing; one whose partition was dropped
/// before the commit fails.
pub async fn staged_batch_commits_every_part_at_once(factory: &dyn BackendFactory) {
    let backend = open_with(factory, &["a", "b", "gone"]).await;
    backend.put(&p("a"), b(b"k005"), b(b"old")).await.unwrap();
    let mut staged = backend.staged_batch().await.unwrap();
    let mut expected = Vec::new();
    for part in 0..3u8 {
        let mut batch = WriteBatch::new();
        for i in 0..40u8 {
            let key = Bytes::from(format!("k{:03}", part * 40 + i));
            batch.put(&p("a"), key.clone(), Bytes::from(vec![part; 3]));
            expected.push((key, Bytes::from(vec![part; 3])));
        }
        // Behind the part's keys: another run in the same partition.
        batch.put(&p("b"), Bytes::from(format!("z{part}")), b(b"v"));
        batch.put(&p("b"), Bytes::from(format!("a{part}")), b(b"v"));
        staged.add(batch).await.unwrap();
    }
    assert_eq!(
        backend.get(&p("a"), b"k005").await.unwrap(),
        Some(b(b"old"))
    );
    assert_eq!(backend.get(&p("a"), b"k006").await.unwrap(), None);
    staged.commit().await.unwrap();
    let stored = scan_all(backend.as_ref(), &p("a"), ScanRequest::default())
        .await
        .unwrap();
    assert_eq!(stored, expected);
    assert_eq!(
        keys(backend.as_ref(), "b", ScanRequest::default()).await,
        ["a0", "a1", "a2", "z0", "z1", "z2"]
            .map(|k| Bytes::from(k.as_bytes()))
            .to_vec()
    );

    let mut abandoned = backend.staged_batch().await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put(&p("b"), b(b"never"), b(b"v"));
    abandoned.add(batch).await.unwrap();
    drop(abandoned);
    assert_eq!(backend.get(&p("b"), b"never").await.unwrap(), None);

    let mut late = backend.staged_batch().await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put(&p("gone"), b(b"k"), b(b"v"));
    late.add(batch).await.unwrap();
    backend.drop_partition(&p("gone")).await.unwrap();
    let err = late.commit().await.unwrap_err();
    assert!(
        matches!(err, crate::Error::PartitionNotFound { .. }),
        "{err}"
    );
    backend
        .staged_batch()
        .await
        .unwrap()
        .commit()
        .await
        .expect("an empty staged batch is a no-op");
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
