//! Conformance cases for ordered scans: byte order, bounds, prefixes, direction, limits,
//! chunks and `scan_with`.

use std::ops::Bound;

use bytes::Bytes;

use super::{BackendFactory, b, keys, open_with, p, put_all};
use crate::backend::{Direction, KeyRange, ScanRequest, WriteBatch};
use crate::error::Error;

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
