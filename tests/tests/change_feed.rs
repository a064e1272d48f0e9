//! Property test of the change feed on the RocksDB, object-store and memory engines: random
//! batches of upserts, updates and deletes of two users, flushes, compactions, moves among the
//! three storages and reopens (skipped while the table is on the memory engine, which keeps
//! nothing across a restart). For every point the test passed, the changes after that point's
//! cursor replayed over the table's state there give the state now (all users, and one
//! user); a subscription cut and resumed from its last `upto` delivers exactly the log; and a
//! subscription with initial data, applied as upserts, equals the table at every step.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kalamstore::{
    Change, ChangeOp, CompactionPolicy, HotEngine, KalamValue, Mutation, NamespaceId, Scope,
    StartAt, StorageId, Store, SubscribeOptions, Subscription, SubscriptionEvent, TableId,
    TableType, UserId,
};
use kalamstore_tests::tables::{
    chat_row, chat_table, contents, runtime, storage_definition, store_with_storages,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Mut {
    Upsert(i64, u8),
    Update(i64, u8),
    Delete(i64),
}

#[derive(Debug, Clone)]
enum Op {
    Write(u8, Vec<Mut>),
    Flush,
    Compact,
    Move,
    Reopen,
    /// Drops the resumable subscription and starts it again from its last `upto`.
    Cut,
    /// Starts a subscription with initial data, checked against the table from then on.
    Snapshot,
}

fn mutation() -> impl Strategy<Value = Mut> {
    let key = 0i64..12;
    prop_oneof![
        3 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Mut::Upsert(k, v)),
        2 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Mut::Update(k, v)),
        2 => key.prop_map(Mut::Delete),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..2, proptest::collection::vec(mutation(), 1..4))
            .prop_map(|(u, m)| Op::Write(u, m)),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Move),
        1 => Just(Op::Reopen),
        1 => Just(Op::Cut),
        1 => Just(Op::Snapshot),
    ]
}

type State = BTreeMap<(String, i64), String>;

fn users() -> [UserId; 2] {
    [UserId::new("alice").unwrap(), UserId::new("bob").unwrap()]
}

fn body(values: &[KalamValue]) -> String {
    match &values[1] {
        KalamValue::Text(s) => s.clone(),
        other => panic!("body is {other:?}"),
    }
}

fn id(values: &[KalamValue]) -> i64 {
    match values[0] {
        KalamValue::BigInt(i) => i,
        ref other => panic!("id is {other:?}"),
    }
}

/// Applies changes as upserts and deletes.
fn replay(state: &mut State, changes: &[Change]) {
    for c in changes {
        let user = c.user.as_ref().map_or(String::new(), |u| u.to_string());
        let key = (user, id(&c.values));
        match c.op {
            ChangeOp::Insert | ChangeOp::Update => {
                state.insert(key, body(&c.values));
            }
            ChangeOp::Delete => {
                state.remove(&key);
            }
        }
    }
}

/// Every change after `after`, paged.
async fn changes_after(
    store: &Store,
    t: &TableId,
    user: Option<&UserId>,
    after: i64,
) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let page = store
            .changes_since(t, user, user.is_none(), cursor, 5)
            .await
            .unwrap();
        cursor = page.cursor;
        let done = page.changes.is_empty() && cursor >= page.committed;
        out.extend(page.changes);
        if done {
            return out;
        }
    }
}

async fn committed(store: &Store, t: &TableId) -> i64 {
    store
        .changes_since(t, None, true, 0, 1)
        .await
        .unwrap()
        .committed
}

/// Reads a subscription's events until it has delivered everything up to `target`.
async fn drain(sub: &mut Subscription, upto: &mut i64, target: i64, out: &mut Vec<Change>) {
    while *upto < target {
        let event = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("no error");
        match event {
            SubscriptionEvent::Changes { changes, upto: u } => {
                assert!(changes.iter().all(|c| c.seq > *upto && c.seq <= u));
                *upto = u;
                out.extend(changes);
            }
            SubscriptionEvent::Initial(rows) => out.extend(rows),
            SubscriptionEvent::Ready { seq } => *upto = (*upto).max(seq),
        }
    }
}

async fn subscribe(store: &Store, t: &TableId, start: StartAt) -> Subscription {
    let options = SubscribeOptions {
        all_users: true,
        start,
        batch_size: Some(3),
        ..SubscribeOptions::default()
    };
    store.subscribe(t, options).await.unwrap()
}

fn run(start_on: usize, ops: Vec<Op>) {
    runtime().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut storages) = store_with_storages(dir.path()).await;
        let memory = StorageId::new("memory").unwrap();
        let cold = dir.path().join("memory-cold");
        store
            .create_storage(storage_definition(&memory, HotEngine::Memory, &cold))
            .await
            .unwrap();
        storages.push(memory.clone());
        let mut on = start_on;
        store
            .create_namespace(&NamespaceId::new("app").unwrap(), true)
            .await
            .unwrap();
        store
            .create_table(chat_table("feed", TableType::User, &storages[on]), false)
            .await
            .unwrap();
        let t: TableId = "app.feed".parse().unwrap();
        let mut model = State::new();
        let mut points: Vec<(i64, State)> = vec![(0, State::new())];
        // The resumable subscription: what it delivered and where it is.
        let mut delivered = Vec::new();
        let mut upto = 0;
        let mut resumable = Some(subscribe(&store, &t, StartAt::After(0)).await);
        // The subscription with initial data: its view of the table.
        let mut snapshot: Option<(Subscription, i64, State)> = None;

        for op in ops {
            match op {
                Op::Write(u, muts) => {
                    let user = &users()[usize::from(u)];
                    let mut batch = Vec::new();
                    for m in muts {
                        let key = (user.to_string(), 0);
                        match m {
                            Mut::Upsert(k, v) => {
                                let b = format!("u{v}");
                                model.insert((key.0, k), b.clone());
                                batch.push(Mutation::Upsert(chat_row(k, &b)));
                            }
                            Mut::Update(k, v) => {
                                let b = format!("x{v}");
                                if let Some(row) = model.get_mut(&(key.0, k)) {
                                    *row = b.clone();
                                }
                                batch.push(Mutation::Update {
                                    key: vec![KalamValue::BigInt(k)],
                                    set: vec![("body".into(), KalamValue::Text(b))],
                                });
                            }
                            Mut::Delete(k) => {
                                model.remove(&(key.0, k));
                                batch.push(Mutation::Delete {
                                    key: vec![KalamValue::BigInt(k)],
                                });
                            }
                        }
                    }
                    store.write(&t, Some(user), batch).await.unwrap();
                }
                Op::Flush => {
                    store.flush_table(&t, Scope::All).await.unwrap();
                }
                Op::Compact => {
                    store
                        .compact_table(&t, Scope::All, CompactionPolicy::all())
                        .await
                        .unwrap();
                }
                Op::Move => {
                    on = (on + 1) % storages.len();
                    store.move_table(&t, &storages[on]).await.unwrap();
                }
                // A restart empties the memory engine: its hot rows and log are gone by design.
                Op::Reopen if storages[on] == memory => {}
                Op::Reopen => {
                    // Subscriptions end with the store that serves them.
                    drop((resumable.take(), snapshot.take()));
                    store.close().await.unwrap();
                    store = kalamstore_tests::tables::open_store(dir.path()).await;
                    resumable = Some(subscribe(&store, &t, StartAt::After(upto)).await);
                }
                Op::Cut => {
                    resumable = Some(subscribe(&store, &t, StartAt::After(upto)).await);
                }
                Op::Snapshot => {
                    let sub = subscribe(&store, &t, StartAt::Snapshot).await;
                    snapshot = Some((sub, 0, State::new()));
                }
            }
            let now = committed(&store, &t).await;
            points.push((now, model.clone()));
            if let Some(sub) = &mut resumable {
                drain(sub, &mut upto, now, &mut delivered).await;
            }
            if let Some((sub, seen, state)) = &mut snapshot {
                let mut got = Vec::new();
                drain(sub, seen, now, &mut got).await;
                replay(state, &got);
                assert_eq!(state, &model, "initial data + changes = the table");
            }
            // The table itself matches the model.
            let mut read = State::new();
            for user in users() {
                for (k, b) in contents(&store, &t, Some(&user)).await {
                    read.insert((user.to_string(), k), b);
                }
            }
            assert_eq!(read, model);
        }

        let log = changes_after(&store, &t, None, 0).await;
        let seqs = |c: &[Change]| c.iter().map(|c| (c.seq, c.op)).collect::<Vec<_>>();
        assert_eq!(
            seqs(&delivered),
            seqs(&log),
            "a resumed subscription delivers the log exactly"
        );
        for (cursor, then) in &points {
            let mut state = then.clone();
            replay(&mut state, &changes_after(&store, &t, None, *cursor).await);
            assert_eq!(state, model, "replay from {cursor}");
            let alice = &users()[0];
            let mut mine: State = then
                .iter()
                .filter(|((u, _), _)| u == alice.as_str())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            replay(
                &mut mine,
                &changes_after(&store, &t, Some(alice), *cursor).await,
            );
            let expected: State = model
                .iter()
                .filter(|((u, _), _)| u == alice.as_str())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(mine, expected, "alice's replay from {cursor}");
        }
        drop((resumable, snapshot));
        store.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn replayed_changes_rebuild_the_table_and_subscriptions_resume_exactly(
        start_on in 0usize..3,
        ops in proptest::collection::vec(op(), 1..30),
    ) {
        run(start_on, ops);
    }
}
