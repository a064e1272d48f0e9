//! Streamed scans: partitions that together return each live row once, all-users reads, and
//! a lazy snapshot.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;

use super::*;

/// `id -> body` of the rows of some batches.
fn bodies(batches: &[RecordBatch]) -> Vec<(i64, Option<String>)> {
    let mut out = Vec::new();
    for b in batches {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let body = b.column_by_name("body").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((
                ids.value(i),
                body.is_valid(i).then(|| body.value(i).to_owned()),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn partitions_together_return_each_live_row_once() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    // Three files; then hot changes that replace or delete rows of each of them.
    for file in 0..3 {
        let rows = (0..10).map(|i| row(file * 10 + i, "flushed")).collect();
        store.insert(&t(), None, rows).await.unwrap();
        store.flush_table(&t(), Scope::All).await.unwrap();
    }
    let mut changes = Vec::new();
    for id in [1, 12, 25] {
        changes.push(Mutation::Upsert(row(id, "hot")));
    }
    for id in [3, 14, 29] {
        changes.push(Mutation::Delete {
            key: vec![KalamValue::BigInt(id)],
        });
    }
    changes.push(Mutation::Insert(row(100, "new")));
    store.write(&t(), None, changes).await.unwrap();

    let expected: Vec<(i64, Option<String>)> = (0..30)
        .filter(|id| ![3, 14, 29].contains(id))
        .map(|id| {
            let body = if [1, 12, 25].contains(&id) {
                "hot"
            } else {
                "flushed"
            };
            (id, Some(body.to_owned()))
        })
        .chain([(100, Some("new".to_owned()))])
        .collect();
    for count in 1..=4 {
        let scan = store
            .scan_stream(&t(), None, &ScanOptions::default())
            .await
            .unwrap();
        let mut all = Vec::new();
        for index in 0..count {
            let part: Vec<RecordBatch> = scan.partition(index, count).try_collect().await.unwrap();
            all.extend(part);
        }
        assert_eq!(bodies(&all), expected, "{count} partitions");
    }
}

#[tokio::test]
async fn an_all_users_read_adds_the_user_column_and_needs_no_user() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::User), false)
        .await
        .unwrap();
    for (user, ids) in [("alice", [1, 2]), ("bob", [1, 3])] {
        let u = UserId::new(user).unwrap();
        let rows = ids.iter().map(|id| row(*id, user)).collect();
        store.insert(&t(), Some(&u), rows).await.unwrap();
    }
    store
        .flush_table(&t(), Scope::User(UserId::new("bob").unwrap()))
        .await
        .unwrap();
    let all = ScanOptions {
        all_users: true,
        ..ScanOptions::default()
    };
    let batches = store.scan(&t(), None, &all).await.unwrap();
    let mut seen = BTreeMap::new();
    for b in &batches {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let users = b.column_by_name(USER_COLUMN).unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            seen.insert((users.value(i).to_owned(), ids.value(i)), ());
        }
    }
    let keys: Vec<(String, i64)> = seen.into_keys().collect();
    assert_eq!(
        keys,
        [("alice", 1), ("alice", 2), ("bob", 1), ("bob", 3)].map(|(u, i)| (u.to_owned(), i))
    );
    let alice = UserId::new("alice").unwrap();
    assert!(matches!(
        store.scan(&t(), Some(&alice), &all).await,
        Err(Error::Scope { .. })
    ));
}

#[tokio::test]
async fn a_scan_reads_nothing_until_polled_and_stops_at_its_limit() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let limited = ScanOptions {
        limit: Some(3),
        ..ScanOptions::default()
    };
    let scan = store.scan_stream(&t(), None, &limited).await.unwrap();
    // Rows written after the scan was planned but before it was polled are in its snapshot.
    store
        .insert(&t(), None, (1..=10).map(|i| row(i, "x")).collect())
        .await
        .unwrap();
    let batches: Vec<RecordBatch> = scan.stream().try_collect().await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
    assert_eq!(scan.estimate().rows, 10);
}
