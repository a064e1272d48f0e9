//! The change feed on the memory engines: pages after a cursor with their ops and images
//! (flushed rows too), user isolation, retention and the gap answer, subscriptions with
//! initial data, filters that rows enter and leave, slow readers, kills and ALTER TABLE.

use futures::StreamExt;

use super::*;
use crate::clock::ManualClock;
use crate::table::RING_CAPACITY;

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

fn bob() -> UserId {
    UserId::new("bob").unwrap()
}

/// `(op, id, body)` of each change.
fn ops(changes: &[Change]) -> Vec<(ChangeOp, i64, String)> {
    changes
        .iter()
        .map(|c| {
            let id = match c.values[0] {
                KalamValue::BigInt(id) => id,
                ref other => panic!("id {other:?}"),
            };
            let body = match &c.values[1] {
                KalamValue::Text(b) => b.clone(),
                other => format!("{other:?}"),
            };
            (c.op, id, body)
        })
        .collect()
}

async fn all_changes(store: &Store, user: Option<&UserId>, all: bool, after: i64) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let page = store
            .changes_since(&t(), user, all, cursor, 7)
            .await
            .unwrap();
        assert!(page.cursor >= cursor, "a cursor never goes back");
        cursor = page.cursor;
        let done = page.changes.is_empty() && cursor >= page.committed;
        out.extend(page.changes);
        if done {
            return out;
        }
    }
}

fn upd(id: i64, body: &str) -> Mutation {
    Mutation::Update {
        key: vec![KalamValue::BigInt(id)],
        set: vec![("body".into(), KalamValue::Text(body.into()))],
    }
}

fn del(id: i64) -> Mutation {
    Mutation::Delete {
        key: vec![KalamValue::BigInt(id)],
    }
}

/// A store with the SHARED messages table holding rows `ids`, each with body "a".
async fn shared_with(ids: std::ops::RangeInclusive<i64>) -> (tempfile::TempDir, Store) {
    let (dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store
        .insert(&t(), None, ids.map(|i| row(i, "a")).collect())
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn the_log_holds_every_change_with_its_seq_also_of_flushed_and_compacted_rows() {
    let (_dir, store) = shared_with(1..=4).await;
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .write(&t(), None, vec![upd(2, "b"), del(3)])
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .compact_table(&t(), Scope::All, CompactionPolicy::all())
        .await
        .unwrap();
    store
        .write(&t(), None, vec![del(1), upd(4, "c"), del(99)])
        .await
        .unwrap();
    // A key inserted and deleted within one batch never existed for a reader.
    store
        .write(&t(), None, vec![Mutation::Insert(row(7, "x")), del(7)])
        .await
        .unwrap();

    let changes = all_changes(&store, None, false, 0).await;
    use ChangeOp::*;
    assert_eq!(
        ops(&changes),
        vec![
            (Insert, 1, "a".into()),
            (Insert, 2, "a".into()),
            (Insert, 3, "a".into()),
            (Insert, 4, "a".into()),
            (Update, 2, "b".into()),
            (Delete, 3, "a".into()),
            (Delete, 1, "a".into()),
            (Update, 4, "c".into()),
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        changes[4].old.as_ref().map(|o| o[1].clone()),
        Some(KalamValue::Text("a".into())),
        "an update carries the row it replaced"
    );
    // Each change's seq is its row's `_seq` while the row lives.
    let page = store
        .changes_since(&t(), None, false, changes[6].seq, 100)
        .await
        .unwrap();
    assert_eq!(ops(&page.changes), vec![(Update, 4, "c".into())]);
    assert_eq!(page.cursor, page.committed);
}

/// Inserts and updates name their new rows by reference: each change still reads its own
/// image, from the next change of its key (in the same page or a later one), a hot row or a
/// flushed one.
#[tokio::test]
async fn each_change_reads_its_own_image_from_the_next_change_or_the_table() {
    let (_dir, store) = shared_with(1..=3).await;
    store.write(&t(), None, vec![upd(1, "b")]).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .write(&t(), None, vec![upd(1, "c"), upd(2, "b")])
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .write(&t(), None, vec![del(2), upd(3, "d")])
        .await
        .unwrap();
    use ChangeOp::*;
    let expected = vec![
        (Insert, 1, "a".to_owned()),
        (Insert, 2, "a".into()),
        (Insert, 3, "a".into()),
        (Update, 1, "b".into()),
        (Update, 1, "c".into()),
        (Update, 2, "b".into()),
        (Delete, 2, "b".into()),
        (Update, 3, "d".into()),
    ];
    for limit in [1, 3, 100] {
        let mut changes = Vec::new();
        let mut cursor = 0;
        while cursor
            < store
                .changes_since(&t(), None, false, cursor, 1)
                .await
                .unwrap()
                .committed
        {
            let page = store
                .changes_since(&t(), None, false, cursor, limit)
                .await
                .unwrap();
            cursor = page.cursor;
            changes.extend(page.changes);
        }
        assert_eq!(ops(&changes), expected, "pages of {limit}");
        let updated: Vec<i64> = changes.iter().map(|c| c.updated).collect();
        assert!(updated.iter().all(|u| *u > 0), "{updated:?}");
    }
}

#[tokio::test]
async fn a_user_reads_only_their_own_changes_and_all_users_carry_their_user() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::User), false)
        .await
        .unwrap();
    for (user, id) in [(alice(), 1), (bob(), 2), (alice(), 3)] {
        store
            .insert(&t(), Some(&user), vec![row(id, user.as_str())])
            .await
            .unwrap();
    }
    store.flush_table(&t(), Scope::All).await.unwrap();
    store.write(&t(), Some(&bob()), vec![del(2)]).await.unwrap();
    let mine = all_changes(&store, Some(&alice()), false, 0).await;
    assert_eq!(
        ops(&mine).iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert!(mine.iter().all(|c| c.user == Some(alice())));
    let every = all_changes(&store, None, true, 0).await;
    let users: Vec<_> = every.iter().map(|c| c.user.clone().unwrap()).collect();
    assert_eq!(users, vec![alice(), bob(), alice(), bob()]);
    assert_eq!(every[3].op, ChangeOp::Delete);
    assert!(matches!(
        store.changes_since(&t(), None, false, 0, 10).await,
        Err(Error::Scope { .. })
    ));
    assert!(matches!(
        store.changes_since(&t(), Some(&alice()), true, 0, 10).await,
        Err(Error::Scope { .. })
    ));
}

#[tokio::test]
async fn past_retention_a_cursor_gets_the_gap_answer_with_the_oldest_seq() {
    let clock = Arc::new(ManualClock::new());
    let (_dir, store) = store_with_clock(clock.clone()).await;
    let mut def = messages(TableType::Shared);
    def.options.change_retention = "1h".parse().unwrap();
    store.create_table(def, false).await.unwrap();
    store.insert(&t(), None, vec![row(1, "old")]).await.unwrap();
    let first = all_changes(&store, None, false, 0).await[0].seq;
    clock.advance(Duration::from_secs(2 * 3600));
    let done = store.maintain(Duration::from_secs(60)).await.unwrap();
    assert_eq!(done.log_trims, 1);
    let again = store.maintain(Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.log_trims, 0, "nothing more is past retention");
    match store.changes_since(&t(), None, false, 0, 10).await {
        Err(Error::ChangeGap { after, oldest, .. }) => {
            assert_eq!(after, 0);
            assert!(oldest > first);
        }
        other => panic!("{other:?}"),
    }
    // A cursor at the trimmed change itself is still whole: nothing after it was trimmed.
    let page = store
        .changes_since(&t(), None, false, first, 10)
        .await
        .unwrap();
    assert!(page.changes.is_empty());
    store.insert(&t(), None, vec![row(2, "new")]).await.unwrap();
    let page = store
        .changes_since(&t(), None, false, first, 10)
        .await
        .unwrap();
    assert_eq!(ops(&page.changes)[0].1, 2);
}

#[tokio::test]
async fn a_row_count_retention_keeps_the_newest_changes() {
    let (_dir, store) = store().await;
    let mut def = messages(TableType::Shared);
    def.options.change_retention = "3 rows".parse().unwrap();
    store.create_table(def, false).await.unwrap();
    for i in 0..5 {
        store.insert(&t(), None, vec![row(i, "x")]).await.unwrap();
    }
    let before = all_changes(&store, None, false, 0).await;
    store.maintain(Duration::from_secs(60)).await.unwrap();
    assert!(matches!(
        store.changes_since(&t(), None, false, 0, 10).await,
        Err(Error::ChangeGap { .. })
    ));
    let kept = all_changes(&store, None, false, before[1].seq).await;
    assert_eq!(kept, before[2..].to_vec());
}

#[tokio::test]
async fn a_table_without_a_change_log_says_so() {
    let (_dir, store) = store().await;
    let mut def = messages(TableType::Shared);
    def.options.change_retention = ChangeRetention::Off;
    store.create_table(def, false).await.unwrap();
    store.insert(&t(), None, vec![row(1, "x")]).await.unwrap();
    assert!(matches!(
        store.changes_since(&t(), None, false, 0, 10).await,
        Err(Error::NoChangeLog { .. })
    ));
    assert!(matches!(
        store.subscribe(&t(), SubscribeOptions::default()).await,
        Err(Error::NoChangeLog { .. })
    ));
    // Turned on, the log starts now: older cursors get the gap answer.
    let change = OptionsChange {
        change_retention: Some(ChangeRetention::DEFAULT),
        ..OptionsChange::default()
    };
    store.set_table_options(&t(), &change).await.unwrap();
    assert!(matches!(
        store.changes_since(&t(), None, false, 0, 10).await,
        Err(Error::ChangeGap { .. })
    ));
    store.insert(&t(), None, vec![row(2, "y")]).await.unwrap();
    let page = store.table(&t()).await.unwrap();
    assert!(page.options.change_retention.is_on());
}

/// What a subscription waiting for its next event yields once `action` has run.
async fn after_waiting(
    mut sub: Subscription,
    action: impl std::future::Future<Output = ()>,
) -> Option<Result<SubscriptionEvent>> {
    let waiting = tokio::spawn(async move { sub.next().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    action.await;
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the stream answers within 5 s")
        .expect("the waiting task")
}

/// The ids of a subscription's initial data, read up to its ready marker.
async fn initial_ids(sub: &mut Subscription) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        match next_event(sub).await {
            SubscriptionEvent::Initial(rows) => ids.extend(ops(&rows).iter().map(|r| r.1)),
            SubscriptionEvent::Ready { .. } => return ids,
            other => panic!("{other:?} before the ready marker"),
        }
    }
}

/// Creates the SHARED `app.messages` and subscribes to it from now, past its ready marker.
async fn live_on_new_table(store: &Store) -> Subscription {
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let mut sub = store
        .subscribe(&t(), SubscribeOptions::default())
        .await
        .unwrap();
    assert!(initial_ids(&mut sub).await.is_empty());
    sub
}

/// The next event, or a panic after 5 s.
async fn next_event(sub: &mut Subscription) -> SubscriptionEvent {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
        .expect("no error")
}

#[tokio::test]
async fn a_subscription_sends_initial_data_ready_then_changes_through_its_filter() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    store
        .insert(
            &t(),
            None,
            vec![row(1, "room1"), row(2, "room2"), row(3, "room1")],
        )
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    let options = SubscribeOptions {
        filter: Some(Filter::eq("body", KalamValue::Text("room1".into()))),
        start: StartAt::Snapshot,
        ..SubscribeOptions::default()
    };
    let mut sub = store.subscribe(&t(), options).await.unwrap();
    assert_eq!(initial_ids(&mut sub).await, vec![1, 3]);
    // 2 enters the filter (an insert), 3 leaves it (a delete of its old row), 1 changes in
    // it (an update), 4 stays out of it.
    store
        .write(
            &t(),
            None,
            vec![
                upd(2, "room1"),
                upd(3, "room9"),
                Mutation::Upsert(row(1, "room1")),
                Mutation::Insert(row(4, "room2")),
            ],
        )
        .await
        .unwrap();
    let SubscriptionEvent::Changes { changes, upto } = next_event(&mut sub).await else {
        panic!("changes")
    };
    use ChangeOp::*;
    assert_eq!(
        ops(&changes),
        vec![
            (Insert, 2, "room1".into()),
            (Delete, 3, "room1".into()),
            (Update, 1, "room1".into()),
        ]
    );
    assert!(upto >= changes[2].seq);
    let live = store.live_queries();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].state, live[0].delivered), ("live", 3));
    assert_eq!(live[0].filter, "body = 'room1'");
    drop(sub);
    assert!(
        store.live_queries().is_empty(),
        "a dropped subscription leaves"
    );
}

#[tokio::test]
async fn last_rows_sends_the_newest_rows_and_a_user_subscription_sees_only_its_user() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::User), false)
        .await
        .unwrap();
    for id in 1..=5 {
        store
            .insert(&t(), Some(&alice()), vec![row(id, "a")])
            .await
            .unwrap();
    }
    let options = SubscribeOptions {
        user: Some(alice()),
        start: StartAt::LastRows(2),
        ..SubscribeOptions::default()
    };
    let mut sub = store.subscribe(&t(), options).await.unwrap();
    assert_eq!(initial_ids(&mut sub).await, vec![4, 5]);
    store
        .insert(&t(), Some(&bob()), vec![row(6, "b")])
        .await
        .unwrap();
    store
        .insert(&t(), Some(&alice()), vec![row(7, "a")])
        .await
        .unwrap();
    let SubscriptionEvent::Changes { changes, .. } = next_event(&mut sub).await else {
        panic!("changes")
    };
    assert_eq!(
        ops(&changes).iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![7]
    );
    // An all-users feed is refused with a user, and on a shared table.
    let both = SubscribeOptions {
        user: Some(alice()),
        all_users: true,
        ..SubscribeOptions::default()
    };
    assert!(matches!(
        store.subscribe(&t(), both).await,
        Err(Error::Scope { .. })
    ));
}

#[tokio::test]
async fn a_slow_subscriber_reads_on_from_the_log_after_the_ring_moved_past_it() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let options = SubscribeOptions {
        batch_size: Some(500),
        ..SubscribeOptions::default()
    };
    let mut sub = store.subscribe(&t(), options).await.unwrap();
    assert!(initial_ids(&mut sub).await.is_empty());
    // More changes than the ring keeps, while the subscriber does not read.
    let n = RING_CAPACITY as i64 + 1500;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let rows = chunk.iter().map(|i| row(*i, "x")).collect();
        store.insert(&t(), None, rows).await.unwrap();
    }
    let mut seen = Vec::new();
    while (seen.len() as i64) < n {
        let SubscriptionEvent::Changes { changes, .. } = next_event(&mut sub).await else {
            panic!("changes")
        };
        assert!(changes.len() <= 500, "one event holds at most a batch");
        seen.extend(ops(&changes).into_iter().map(|c| c.1));
    }
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_killed_live_query_ends_with_an_error() {
    let (_dir, store) = store().await;
    let sub = live_on_new_table(&store).await;
    let id = sub.id().to_owned();
    let ended = after_waiting(sub, async {
        store.kill_live_query(&id).await.unwrap();
    })
    .await;
    assert!(
        matches!(ended, Some(Err(Error::LiveQueryKilled { .. }))),
        "{ended:?}"
    );
    assert!(matches!(
        store.kill_live_query("nope").await,
        Err(Error::LiveQueryNotFound { .. })
    ));
}

#[tokio::test]
async fn changes_after_alter_table_come_in_the_new_columns() {
    let (_dir, store) = store().await;
    let mut sub = live_on_new_table(&store).await;
    store.insert(&t(), None, vec![row(1, "x")]).await.unwrap();
    next_event(&mut sub).await;
    store
        .alter_table(
            &t(),
            &SchemaChange::AddColumn(ColumnDefinition::new("tag", KalamDataType::Text)),
        )
        .await
        .unwrap();
    store.insert(&t(), None, vec![row(2, "y")]).await.unwrap();
    let SubscriptionEvent::Changes { changes, .. } = next_event(&mut sub).await else {
        panic!("changes")
    };
    assert_eq!(changes[0].values.len(), 4);
    // The first change, read again from the log, comes in the new columns too.
    let all = all_changes(&store, None, false, 0).await;
    assert_eq!(all[0].values.len(), 4);
    assert_eq!(all[0].values[3], KalamValue::Null);
}

#[tokio::test]
async fn a_consumer_gets_changes_again_until_it_acknowledges_them() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::User), false)
        .await
        .unwrap();
    for (user, id) in [(alice(), 1), (bob(), 2)] {
        store
            .insert(&t(), Some(&user), vec![row(id, "x")])
            .await
            .unwrap();
    }
    let agent = store
        .create_consumer("agent", &t(), None, true, ConsumerStart::Earliest)
        .await
        .unwrap();
    assert_eq!(agent.acked, 0);
    let late = store
        .create_consumer("late", &t(), Some(&alice()), false, ConsumerStart::Now)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_consumer("agent", &t(), None, true, ConsumerStart::Now)
            .await,
        Err(Error::ConsumerExists { .. })
    ));
    assert!(matches!(
        store
            .create_consumer("Bad-Name", &t(), None, true, ConsumerStart::Now)
            .await,
        Err(Error::InvalidId { .. })
    ));
    let first = store.consume("agent", 10).await.unwrap();
    assert_eq!(first.changes.len(), 2);
    // Not acknowledged: the same changes again.
    assert_eq!(store.consume("agent", 10).await.unwrap(), first);
    store.ack("agent", first.changes[0].seq).await.unwrap();
    let rest = store.consume("agent", 10).await.unwrap();
    assert_eq!(rest.changes, first.changes[1..].to_vec());
    // A cursor never moves back, nor past what committed.
    store.ack("agent", 0).await.unwrap();
    assert_eq!(store.consume("agent", 10).await.unwrap().changes.len(), 1);
    assert!(matches!(
        store.ack("agent", i64::MAX).await,
        Err(Error::InvalidValue { .. })
    ));
    // The late one starts after what committed before it, and sees only alice's rows.
    assert!(store.consume("late", 10).await.unwrap().changes.is_empty());
    store
        .insert(&t(), Some(&bob()), vec![row(3, "y")])
        .await
        .unwrap();
    store
        .insert(&t(), Some(&alice()), vec![row(4, "y")])
        .await
        .unwrap();
    let mine = store.consume("late", 10).await.unwrap();
    assert_eq!(
        ops(&mine.changes).iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(late.acked > 0);
    let names: Vec<String> = store
        .consumers()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["agent", "late"]);
    store.drop_consumer("late", false).await.unwrap();
    store.drop_consumer("late", true).await.unwrap();
    assert!(matches!(
        store.consume("late", 1).await,
        Err(Error::ConsumerNotFound { .. })
    ));
}

#[tokio::test]
async fn a_subscription_ends_when_its_table_is_dropped_or_the_store_closes() {
    let (_dir, store) = store().await;
    let first = live_on_new_table(&store).await;
    let ended = after_waiting(first, async {
        store.drop_table(&t(), false).await.unwrap();
    })
    .await;
    assert!(
        matches!(ended, Some(Err(Error::TableNotFound { .. }))),
        "{ended:?}"
    );

    let second = live_on_new_table(&store).await;
    let ended = after_waiting(second, async {
        store.close().await.unwrap();
    })
    .await;
    assert!(
        matches!(ended, Some(Err(Error::Closed { .. }))),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_subscriber_left_behind_past_retention_gets_the_gap_answer() {
    let (_dir, store) = store().await;
    let mut def = messages(TableType::Shared);
    def.options.change_retention = "2 rows".parse().unwrap();
    store.create_table(def, false).await.unwrap();
    store.insert(&t(), None, vec![row(0, "x")]).await.unwrap();
    let options = SubscribeOptions {
        start: StartAt::After(0),
        batch_size: Some(1),
        ..SubscribeOptions::default()
    };
    let mut sub = store.subscribe(&t(), options).await.unwrap();
    assert!(initial_ids(&mut sub).await.is_empty());
    // It reads one change, then falls behind while the log is trimmed past it.
    assert!(matches!(
        next_event(&mut sub).await,
        SubscriptionEvent::Changes { .. }
    ));
    for i in 1..6 {
        store.insert(&t(), None, vec![row(i, "x")]).await.unwrap();
    }
    store.maintain(Duration::from_secs(60)).await.unwrap();
    let gap = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap();
    assert!(matches!(gap, Some(Err(Error::ChangeGap { .. }))), "{gap:?}");
    assert!(sub.next().await.is_none(), "the stream ends after the gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_namespace_feed_never_delivers_an_older_seq_after_a_newer_one() {
    let (_dir, store) = store().await;
    let tables: Vec<TableId> = (0..3)
        .map(|i| format!("app.t{i}").parse().unwrap())
        .collect();
    for t in &tables {
        let mut def = messages(TableType::Shared);
        def.id = t.clone();
        store.create_table(def, false).await.unwrap();
    }
    // A USER table: read only with a user, or by an operator.
    let mut private = messages(TableType::User);
    private.id = "app.private".parse().unwrap();
    store.create_table(private, false).await.unwrap();
    const WRITES: i64 = 150;
    let writers: Vec<_> = tables
        .iter()
        .map(|t| {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move {
                for i in 0..WRITES {
                    store.insert(&t, None, vec![row(i, "x")]).await.unwrap();
                }
            })
        })
        .collect();
    let ns = NamespaceId::new("app").unwrap();
    let (mut cursor, mut seen) = (0i64, Vec::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < tables.len() * WRITES as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{} changes seen in 20 s; the cursor passed the others",
            seen.len()
        );
        let page = store
            .namespace_changes_since(&ns, None, false, cursor, 7)
            .await
            .unwrap();
        assert!(page.cursor >= cursor);
        for (_, c) in &page.changes {
            assert!(
                c.seq > cursor && c.seq <= page.cursor,
                "{} after {cursor}",
                c.seq
            );
            assert!(seen.last().is_none_or(|last| *last < c.seq), "out of order");
            seen.push(c.seq);
        }
        cursor = page.cursor;
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut all: Vec<i64> = Vec::new();
    for t in &tables {
        all.extend(all_changes_of(&store, t).await.iter().map(|c| c.seq));
    }
    all.sort_unstable();
    assert_eq!(seen, all, "every change once, in _seq order");
    // The USER table joins with a user, and every user's with an operator.
    store
        .insert(
            &"app.private".parse().unwrap(),
            Some(&alice()),
            vec![row(1, "a")],
        )
        .await
        .unwrap();
    let mine = store
        .namespace_changes_since(&ns, Some(&alice()), false, cursor, 10)
        .await
        .unwrap();
    assert_eq!(mine.changes.len(), 1);
    assert_eq!(mine.changes[0].0.to_string(), "app.private");
    let anonymous = store
        .namespace_changes_since(&ns, None, false, cursor, 10)
        .await
        .unwrap();
    assert!(anonymous.changes.is_empty());
}

async fn all_changes_of(store: &Store, table: &TableId) -> Vec<Change> {
    store
        .changes_since(table, None, false, 0, 100_000)
        .await
        .unwrap()
        .changes
}
