//! Large batches on the in-memory engine: writes that look up many flushed keys at once (the
//! merge-join path), and scans big enough to decode row groups in parallel.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type};

use super::*;

/// `id -> (body, score)` of every row a full scan returns.
async fn contents(store: &Store) -> BTreeMap<i64, (Option<String>, i32)> {
    let mut out = BTreeMap::new();
    for b in store
        .scan(&t(), None, &ScanOptions::default())
        .await
        .unwrap()
    {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let bodies = b.column_by_name("body").unwrap().as_string::<i32>();
        let scores = b
            .column_by_name("score")
            .unwrap()
            .as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let body = bodies.is_valid(i).then(|| bodies.value(i).to_owned());
            let previous = out.insert(ids.value(i), (body, scores.value(i)));
            assert!(previous.is_none(), "id {} returned twice", ids.value(i));
        }
    }
    out
}

fn update(id: i64, score: i32) -> Mutation {
    Mutation::Update {
        key: vec![KalamValue::BigInt(id)],
        set: vec![("score".into(), KalamValue::Int(score))],
    }
}

fn delete(id: i64) -> Mutation {
    Mutation::Delete {
        key: vec![KalamValue::BigInt(id)],
    }
}

#[tokio::test]
async fn batches_over_many_flushed_keys_see_every_flushed_row() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let body = |id: i64| format!("m{id}");
    let mut model: BTreeMap<i64, (Option<String>, i32)> = BTreeMap::new();
    // Two files: 0..300, then 300..600 plus new versions of 0..100 (older rows marked dead).
    store
        .insert(&t(), None, (0..300).map(|i| row(i, &body(i))).collect())
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    let mut second: Vec<Mutation> = (300..600)
        .map(|i| Mutation::Insert(row(i, &body(i))))
        .collect();
    second.extend((0..100).map(|i| update(i, 1)));
    store.write(&t(), None, second).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    for i in 0..600 {
        model.insert(i, (Some(body(i)), i32::from(i < 100)));
    }
    assert_eq!(contents(&store).await, model);

    // One batch touching well over 32 flushed keys of each file, some twice.
    let mut batch = Vec::new();
    for i in (0..600).step_by(3) {
        batch.push(update(i, 7));
        model.get_mut(&i).unwrap().1 = 7;
    }
    for i in (1..600).step_by(3) {
        batch.push(delete(i));
        model.remove(&i);
    }
    batch.push(Mutation::Upsert(row(2, "again")));
    model.insert(2, (Some("again".into()), 0));
    batch.push(update(2, 9));
    model.get_mut(&2).unwrap().1 = 9;
    batch.push(update(5_000, 1));
    batch.push(delete(5_001));
    batch.push(Mutation::Insert(row(5_002, "new")));
    model.insert(5_002, (Some("new".into()), 0));
    let summary = store.write(&t(), None, batch).await.unwrap();
    assert_eq!(summary.deleted, 200);
    assert_eq!(summary.inserted, 1);
    assert_eq!(summary.updated, 200 + 2);
    assert_eq!(contents(&store).await, model);

    // An insert of a flushed key among many new ones fails the batch and writes nothing.
    let mut inserts: Vec<Mutation> = (10_000..10_100)
        .map(|i| Mutation::Insert(row(i, "x")))
        .collect();
    inserts.push(Mutation::Insert(row(599, "dup")));
    let err = store.write(&t(), None, inserts).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateKey { .. }), "{err}");
    assert_eq!(contents(&store).await, model);

    store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(contents(&store).await, model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_decoding_row_groups_in_parallel_keep_order_and_hide_changed_rows() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    const ROWS: i64 = 300_000;
    for start in (0..ROWS).step_by(20_000) {
        store
            .insert(
                &t(),
                None,
                (start..start + 20_000).map(|i| row(i, "b")).collect(),
            )
            .await
            .unwrap();
    }
    store.flush_table(&t(), Scope::All).await.unwrap();
    let files = store.manifest(&t()).await.unwrap();
    assert_eq!(files.len(), 1);
    assert!(
        files[0].1.meta.rows as usize > 2 * crate::format::ROW_GROUP_ROWS,
        "the file has at least three row groups"
    );
    // Changes still hot, then flushed as deletion vectors: both scans hide the same rows.
    let mut changes = Vec::new();
    for i in (0..ROWS).step_by(7) {
        changes.push(if i % 2 == 0 { delete(i) } else { update(i, 3) });
    }
    for chunk in changes.chunks(5_000) {
        store.write(&t(), None, chunk.to_vec()).await.unwrap();
    }
    let expected = |id: i64| -> Option<i32> {
        match (id % 7, id % 2) {
            (0, 0) => None,
            (0, _) => Some(3),
            _ => Some(0),
        }
    };
    for flushed in [false, true] {
        if flushed {
            store.flush_table(&t(), Scope::All).await.unwrap();
        }
        let batches = store
            .scan(&t(), None, &ScanOptions::default())
            .await
            .unwrap();
        let mut seen = 0i64;
        let mut last_flushed: Option<i64> = None;
        for b in &batches {
            let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            let scores = b
                .column_by_name("score")
                .unwrap()
                .as_primitive::<Int32Type>();
            for i in 0..b.num_rows() {
                let id = ids.value(i);
                assert_eq!(
                    Some(scores.value(i)),
                    expected(id),
                    "id {id} (flushed: {flushed})"
                );
                if scores.value(i) == 0 {
                    // Unchanged rows come from the file, in key order across the parts.
                    assert!(last_flushed.is_none_or(|l| l < id), "order at {id}");
                    last_flushed = Some(id);
                }
                seen += 1;
            }
        }
        let deleted = (0..ROWS).filter(|i| expected(*i).is_none()).count() as i64;
        assert_eq!(seen, ROWS - deleted, "flushed: {flushed}");
    }
}

/// The columns of `app.messages` for rows `ids`: body `b<id>` (NULL for id 3), score `id`.
fn columns_of(ids: &[i64], score: Option<i32>) -> RecordBatch {
    use arrow::array::{Int32Array, Int64Array, StringArray};
    let def = messages(TableType::Shared);
    let bodies: Vec<Option<String>> = ids
        .iter()
        .map(|i| (*i != 3).then(|| format!("b{i}")))
        .collect();
    let scores: Vec<Option<i32>> = ids.iter().map(|i| score.or(Some(*i as i32))).collect();
    let schema = Arc::new(arrow::datatypes::Schema::new(
        def.columns()
            .iter()
            .map(ColumnDefinition::arrow_field)
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(bodies)),
            Arc::new(Int32Array::from(scores)),
        ],
    )
    .unwrap()
}

/// A batch written column by column lands as the same rows written one mutation per row would,
/// with the same refusals: an existing key in INSERT mode (nothing written), a NULL in a NOT
/// NULL column, columns not in table order; UPSERT mode replaces.
#[tokio::test]
async fn a_batch_writes_its_rows_as_mutations_would() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let summary = store
        .write_batch(&t(), None, &columns_of(&[1, 2, 3], None), BatchMode::Insert)
        .await
        .unwrap();
    assert_eq!((summary.inserted, summary.updated), (3, 0));
    store.flush_table(&t(), Scope::All).await.unwrap();
    let expected: BTreeMap<i64, (Option<String>, i32)> = [
        (1, (Some("b1".to_owned()), 1)),
        (2, (Some("b2".to_owned()), 2)),
        (3, (None, 3)),
    ]
    .into();
    assert_eq!(contents(&store).await, expected);

    // Key 2 exists (flushed): the whole batch is refused.
    let err = store
        .write_batch(&t(), None, &columns_of(&[4, 2], None), BatchMode::Insert)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateKey { .. }), "{err:?}");
    assert_eq!(contents(&store).await, expected);

    // A client's batch whose schema allows what the table does not.
    let null_score = {
        let b = columns_of(&[5], None);
        let fields: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let scores = arrow::array::Int32Array::from(vec![None::<i32>]);
        RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            vec![b.column(0).clone(), b.column(1).clone(), Arc::new(scores)],
        )
        .unwrap()
    };
    let err = store
        .write_batch(&t(), None, &null_score, BatchMode::Insert)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("score"), "{err}");

    let reordered = columns_of(&[6], None).project(&[1, 0, 2]).unwrap();
    let err = store
        .write_batch(&t(), None, &reordered, BatchMode::Insert)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidQuery { .. }), "{err:?}");

    let summary = store
        .write_batch(
            &t(),
            None,
            &columns_of(&[2, 7], Some(70)),
            BatchMode::Upsert,
        )
        .await
        .unwrap();
    assert_eq!((summary.inserted, summary.updated), (1, 1));
    let mut expected = expected;
    expected.insert(2, (Some("b2".into()), 70));
    expected.insert(7, (Some("b7".into()), 70));
    assert_eq!(contents(&store).await, expected);
}

/// A statement over more keys than the write path stages at a time (`write_chunk_rows`) commits as
/// one batch: the same rows, counts, hidden flushed rows and change log as a small one, with a
/// `_seq` per change in order; a statement writing a key twice across chunk boundaries still
/// builds the second write on the first.
#[tokio::test]
async fn a_statement_larger_than_a_chunk_commits_as_one_batch() {
    const CHUNK_ROWS: usize = 4_096;
    let (_dir, store) = store_with(|c| c.write_chunk_rows = CHUNK_ROWS).await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let chunk = CHUNK_ROWS as i64;
    let flushed = 2 * chunk;
    store
        .insert(&t(), None, (0..flushed).map(|i| row(i, "f")).collect())
        .await
        .unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    let hot_end = flushed + chunk / 4;
    store
        .insert(
            &t(),
            None,
            (flushed..hot_end).map(|i| row(i, "h")).collect(),
        )
        .await
        .unwrap();
    let before = store
        .changes_since(&t(), None, false, 0, usize::MAX)
        .await
        .unwrap()
        .cursor;
    let mut model: BTreeMap<i64, (Option<String>, i32)> = (0..flushed)
        .map(|i| (i, (Some("f".into()), 0)))
        .chain((flushed..hot_end).map(|i| (i, (Some("h".into()), 0))))
        .collect();
    // Out of key order, no key twice: staged chunk by chunk.
    let mut statement = Vec::new();
    let mut expected = BTreeMap::new();
    for i in (0..hot_end / 2).rev().map(|h| 2 * h) {
        statement.push(delete(i));
        model.remove(&i);
        expected.insert(i, ChangeOp::Delete);
    }
    for i in (1..hot_end).step_by(4) {
        statement.push(update(i, 4));
        model.get_mut(&i).unwrap().1 = 4;
        expected.insert(i, ChangeOp::Update);
    }
    for i in hot_end..hot_end + chunk {
        statement.push(Mutation::Insert(row(i, "n")));
        model.insert(i, (Some("n".into()), 0));
        expected.insert(i, ChangeOp::Insert);
    }
    assert!(statement.len() as i64 > 2 * chunk, "three chunks");
    let summary = store.write(&t(), None, statement).await.unwrap();
    let count = |op| expected.values().filter(|o| **o == op).count() as u64;
    assert_eq!(
        (summary.deleted, summary.updated, summary.inserted),
        (
            count(ChangeOp::Delete),
            count(ChangeOp::Update),
            count(ChangeOp::Insert)
        )
    );
    assert_eq!(contents(&store).await, model);
    // The scope's counter and hidden rows: every chunk's, once.
    let stats = &store.table_stats(&t()).await.unwrap()[0];
    let hot = expected.keys().filter(|i| **i < flushed).count() as i64 + hot_end - flushed + chunk;
    assert_eq!(stats.hot_rows, hot as u64, "{stats:?}");
    let hidden = expected.keys().filter(|i| **i < flushed).count() as u64;
    assert_eq!(stats.hidden_rows, hidden, "{stats:?}");

    let page = store
        .changes_since(&t(), None, false, before, usize::MAX)
        .await
        .unwrap();
    assert!(page.changes.windows(2).all(|w| w[0].seq < w[1].seq));
    let logged: BTreeMap<i64, ChangeOp> = page
        .changes
        .iter()
        .map(|c| match c.values[0] {
            KalamValue::BigInt(id) => (id, c.op),
            ref v => panic!("key {v:?}"),
        })
        .collect();
    assert_eq!(page.changes.len(), expected.len(), "one change per key");
    assert_eq!(logged, expected);

    // One key written at the start and the end of a statement of several chunks.
    let mut statement = vec![update(1, 10)];
    statement.extend((0..2 * chunk).map(|i| Mutation::Upsert(row(1_000_000 + i, "u"))));
    statement.push(update(1, 11));
    statement.push(delete(1_000_000));
    let summary = store.write(&t(), None, statement).await.unwrap();
    assert_eq!(
        (summary.deleted, summary.updated, summary.inserted),
        (1, 2, 2 * chunk as u64)
    );
    model.get_mut(&1).unwrap().1 = 11;
    model.extend((1..2 * chunk).map(|i| (1_000_000 + i, (Some("u".into()), 0))));
    assert_eq!(contents(&store).await, model);

    store.flush_table(&t(), Scope::All).await.unwrap();
    assert_eq!(contents(&store).await, model);
}

/// Changes by key from columns: keys without a row are skipped, the new values are checked
/// like named ones, and a batch of the wrong shape or with a NULL key is refused whole.
#[tokio::test]
async fn updates_and_deletes_by_key_columns() {
    use arrow::array::{ArrayRef, Int32Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let (_dir, store) = flushed_shared(10, "b").await;
    let batch = |ids: Vec<Option<i64>>, scores: Option<Vec<Option<i32>>>| {
        let mut fields = vec![Field::new("id", DataType::Int64, true)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids))];
        if let Some(scores) = scores {
            fields.push(Field::new("score", DataType::Int32, true));
            columns.push(Arc::new(Int32Array::from(scores)));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    };
    let set = ["score".to_owned()];
    let summary = store
        .update_keys(
            &t(),
            None,
            &batch(
                vec![Some(1), Some(2), Some(99)],
                Some(vec![Some(5), Some(6), Some(7)]),
            ),
            &set,
        )
        .await
        .unwrap();
    assert_eq!((summary.updated, summary.inserted), (2, 0));
    let summary = store
        .delete_keys(&t(), None, &batch(vec![Some(3), Some(98)], None))
        .await
        .unwrap();
    assert_eq!(summary.deleted, 1);
    let all = contents(&store).await;
    assert_eq!(all.len(), 9);
    assert_eq!((all[&1].1, all[&2].1, all[&4].1), (5, 6, 0));
    assert!(!all.contains_key(&3));

    // Refused whole: a NULL key, a NULL for the NOT NULL `score`, a missing value column,
    // an unknown column.
    let err = store
        .delete_keys(&t(), None, &batch(vec![Some(4), None], None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidValue { column, .. } if column == "id"),
        "{err}"
    );
    let err = store
        .update_keys(
            &t(),
            None,
            &batch(vec![Some(4), Some(5)], Some(vec![Some(1), None])),
            &set,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidValue { column, .. } if column == "score"),
        "{err}"
    );
    let err = store
        .update_keys(&t(), None, &batch(vec![Some(4)], None), &set)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidQuery { .. }), "{err}");
    let err = store
        .update_keys(
            &t(),
            None,
            &batch(vec![Some(4)], Some(vec![Some(1)])),
            &["nope".to_owned()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidValue { column, .. } if column == "nope"),
        "{err}"
    );
    assert_eq!(contents(&store).await, all);
}

/// `app.messages` rows `ids` with body `b<id>` as a `Utf8View` column (DataFusion's Parquet
/// strings) and score `score`.
fn view_columns_of(ids: &[i64], score: i32) -> RecordBatch {
    use arrow::array::{Int32Array, Int64Array, StringViewArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let bodies: StringViewArray = ids.iter().map(|i| Some(format!("b{i}"))).collect();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("body", DataType::Utf8View, true),
        Field::new("score", DataType::Int32, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(bodies),
            Arc::new(Int32Array::from(vec![score; ids.len()])),
        ],
    )
    .unwrap()
}

/// Batches encoded column by column, chunk by chunk: out of key order (rows gathered), in key
/// order (rows sliced) and writing a key twice, each row landing with its own `_seq` in the
/// table and in the change log (read back from the log and, with a subscriber, from the
/// feed's ring); a column of the wrong type is refused naming the column.
#[tokio::test]
async fn batch_rows_are_encoded_a_chunk_at_a_time_with_their_own_seq() {
    for subscribed in [false, true] {
        let (_dir, store) = store_with(|c| c.write_chunk_rows = 1_000).await;
        store
            .create_table(messages(TableType::Shared), false)
            .await
            .unwrap();
        let _sub = match subscribed {
            true => Some(
                store
                    .subscribe(&t(), SubscribeOptions::default())
                    .await
                    .unwrap(),
            ),
            false => None,
        };
        let descending: Vec<i64> = (0..2_500).rev().collect();
        let ascending: Vec<i64> = (2_500..5_000).collect();
        for ids in [&descending, &ascending] {
            let s = store
                .write_batch(&t(), None, &view_columns_of(ids, 1), BatchMode::Insert)
                .await
                .unwrap();
            assert_eq!(s.inserted, ids.len() as u64);
        }
        let s = store
            .write_batch(
                &t(),
                None,
                &view_columns_of(&[5_000, 1, 5_000], 2),
                BatchMode::Upsert,
            )
            .await
            .unwrap();
        assert_eq!((s.inserted, s.updated), (1, 2));

        let mut model: BTreeMap<i64, (Option<String>, i32)> = (0..5_001)
            .map(|i| (i, (Some(format!("b{i}")), 1)))
            .collect();
        model.insert(1, (Some("b1".into()), 2));
        model.insert(5_000, (Some("b5000".into()), 2));
        assert_eq!(contents(&store).await, model, "subscribed: {subscribed}");

        // Every row's `_seq` is its own and is the seq of its last change in the log.
        let options = ScanOptions {
            with_system: true,
            ..ScanOptions::default()
        };
        let mut seqs = BTreeMap::new();
        for b in store.scan(&t(), None, &options).await.unwrap() {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let seq = b
                .column_by_name("_seq")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                seqs.insert(ids.value(i), seq.value(i));
            }
        }
        let page = store
            .changes_since(&t(), None, false, 0, usize::MAX)
            .await
            .unwrap();
        let mut logged = BTreeMap::new();
        for c in &page.changes {
            let KalamValue::BigInt(id) = c.values[0] else {
                panic!("key {:?}", c.values[0]);
            };
            let body = c.values[1].clone();
            assert_eq!(body, KalamValue::Text(format!("b{id}")), "change {c:?}");
            logged.insert(id, c.seq);
        }
        let wrong: Vec<_> = seqs
            .iter()
            .filter(|(id, seq)| logged.get(id) != Some(seq))
            .take(3)
            .collect();
        assert!(
            wrong.is_empty() && logged.len() == seqs.len(),
            "subscribed: {subscribed}: rows whose `_seq` is not their change's: {wrong:?}"
        );
        let distinct: std::collections::BTreeSet<i64> = seqs.values().copied().collect();
        assert_eq!(distinct.len(), seqs.len(), "one seq per row");
    }

    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let wrong_type = {
        let b = view_columns_of(&[1], 1);
        let ids = arrow::array::Int32Array::from(vec![1]);
        let mut fields: Vec<_> = b.schema().fields().iter().cloned().collect();
        fields[0] = Arc::new(arrow::datatypes::Field::new(
            "id",
            arrow::datatypes::DataType::Int32,
            false,
        ));
        RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(fields)),
            vec![Arc::new(ids), b.column(1).clone(), b.column(2).clone()],
        )
        .unwrap()
    };
    let err = store
        .write_batch(&t(), None, &wrong_type, BatchMode::Insert)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidValue { column, .. } if column == "id"),
        "{err:?}"
    );
    assert!(contents(&store).await.is_empty(), "nothing written");
}
