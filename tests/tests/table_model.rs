//! Property test: random inserts, upserts, updates, deletes, flushes, compactions and reopens
//! on one table, every read compared with a `BTreeMap` model.

use std::collections::BTreeMap;

use kalamstore::{
    CompactionPolicy, Error, KalamValue, Mutation, NamespaceId, Scope, StorageId, TableId,
    TableType,
};
use kalamstore_tests::tables::{chat_row, chat_table, contents, open_store, runtime};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(i64, u8),
    Upsert(i64, u8),
    Update(i64, u8),
    Delete(i64),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0i64..24;
    prop_oneof![
        4 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Upsert(k, v)),
        2 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Update(k, v)),
        3 => key.prop_map(Op::Delete),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn run(ops: Vec<Op>) {
    let rt = runtime();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_store(dir.path()).await;
        store
            .create_namespace(&NamespaceId::new("app").unwrap(), false)
            .await
            .unwrap();
        store
            .create_table(
                chat_table("model", TableType::Shared, &StorageId::local()),
                false,
            )
            .await
            .unwrap();
        let t: TableId = "app.model".parse().unwrap();
        let mut model: BTreeMap<i64, String> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    let body = format!("i{v}");
                    let result = store.insert(&t, None, vec![chat_row(k, &body)]).await;
                    match model.entry(k) {
                        std::collections::btree_map::Entry::Occupied(_) => assert!(
                            matches!(result, Err(Error::DuplicateKey { .. })),
                            "{result:?}"
                        ),
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            result.unwrap();
                            slot.insert(body);
                        }
                    }
                }
                Op::Upsert(k, v) => {
                    let body = format!("u{v}");
                    store
                        .write(&t, None, vec![Mutation::Upsert(chat_row(k, &body))])
                        .await
                        .unwrap();
                    model.insert(k, body);
                }
                Op::Update(k, v) => {
                    let body = format!("x{v}");
                    let summary = store
                        .write(
                            &t,
                            None,
                            vec![Mutation::Update {
                                key: vec![KalamValue::BigInt(k)],
                                set: vec![("body".into(), KalamValue::Text(body.clone()))],
                            }],
                        )
                        .await
                        .unwrap();
                    assert_eq!(summary.updated, u64::from(model.contains_key(&k)));
                    if let Some(v) = model.get_mut(&k) {
                        *v = body;
                    }
                }
                Op::Delete(k) => {
                    let summary = store
                        .write(
                            &t,
                            None,
                            vec![Mutation::Delete {
                                key: vec![KalamValue::BigInt(k)],
                            }],
                        )
                        .await
                        .unwrap();
                    assert_eq!(summary.deleted, u64::from(model.remove(&k).is_some()));
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
                Op::Reopen => {
                    store.close().await.unwrap();
                    store = open_store(dir.path()).await;
                }
            }
            let expected: Vec<(i64, String)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
            assert_eq!(contents(&store, &t, None).await, expected);
            for k in [0i64, 7, 13, 23] {
                let got = store.get(&t, None, &[KalamValue::BigInt(k)]).await.unwrap();
                let got = got.map(|values| match &values[1] {
                    KalamValue::Text(s) => s.clone(),
                    other => panic!("body is {other:?}"),
                });
                assert_eq!(got.as_ref(), model.get(&k), "get({k})");
            }
        }
        store.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn every_read_matches_a_btreemap_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
