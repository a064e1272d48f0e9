//! Unit tests of filters: SQL semantics on batches, binding errors, statistics pruning, key
//! bounds, and batch evaluation against row-by-row evaluation (property test).

use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::*;
use crate::schema::ColumnDefinition;
use crate::types::KalamDataType;

fn schema() -> SchemaVersion {
    SchemaVersion {
        version: 1,
        columns: vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("body", KalamDataType::Text),
        ],
        created_at_ms: 0,
        change: String::new(),
    }
}

fn batch() -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("body", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                None,
                Some("c"),
                Some("d"),
            ])),
        ],
    )
    .unwrap()
}

fn eval(f: Filter) -> Vec<bool> {
    let bound = f.bind(&schema(), "app.t").unwrap();
    let result = bound.evaluate(&batch()).unwrap();
    (0..result.len())
        .map(|i| result.is_valid(i) && result.value(i))
        .collect()
}

#[test]
fn predicates_follow_sql_semantics() {
    use KalamValue as V;
    assert_eq!(
        eval(Filter::eq("id", V::Int(2))),
        [false, true, false, false]
    );
    assert_eq!(
        eval(Filter::cmp("id", CmpOp::GtEq, V::BigInt(3))),
        [false, false, true, true]
    );
    assert_eq!(
        eval(Filter::cmp("body", CmpOp::NotEq, V::Text("a".into()))),
        [false, false, true, true],
        "NULL <> 'a' is not true"
    );
    assert_eq!(
        eval(Filter::IsNull("body".into())),
        [false, true, false, false]
    );
    assert_eq!(
        eval(Filter::In {
            column: "id".into(),
            values: vec![V::BigInt(1), V::BigInt(4)],
            negated: true
        }),
        [false, true, true, false]
    );
    assert_eq!(
        eval(Filter::Or(vec![
            Filter::eq("id", V::BigInt(1)),
            Filter::Not(Box::new(Filter::IsNotNull("body".into())))
        ])),
        [true, true, false, false]
    );
}

#[test]
fn unknown_columns_and_mistyped_literals_are_errors() {
    let err = Filter::eq("nope", KalamValue::Int(1))
        .bind(&schema(), "app.t")
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = Filter::eq("id", KalamValue::Text("x".into()))
        .bind(&schema(), "app.t")
        .unwrap_err();
    assert!(err.to_string().contains("`id`"), "{err}");
}

#[test]
fn statistics_prune_only_units_that_cannot_match() {
    let f = Filter::eq("id", KalamValue::BigInt(15))
        .bind(&schema(), "app.t")
        .unwrap();
    let stats = |c: &str| {
        (c == "id").then(|| ColumnStats {
            mins: Arc::new(Int64Array::from(vec![Some(0), Some(10), None])),
            maxes: Arc::new(Int64Array::from(vec![Some(9), Some(19), None])),
            null_counts: None,
            row_counts: None,
        })
    };
    assert_eq!(f.may_match(3, &stats), [false, true, true]);
    let not = Filter::Not(Box::new(Filter::eq("id", KalamValue::BigInt(15))))
        .bind(&schema(), "app.t")
        .unwrap();
    assert_eq!(not.may_match(3, &stats), [true, true, true]);
}

#[test]
fn bounds_come_from_the_top_level_conjunction() {
    let f = Filter::cmp("id", CmpOp::Gt, KalamValue::BigInt(3))
        .and(Filter::cmp("id", CmpOp::LtEq, KalamValue::BigInt(9)))
        .and(Filter::cmp("id", CmpOp::Gt, KalamValue::BigInt(5)));
    assert_eq!(
        f.bounds_of("id"),
        (
            Bound::Included(KalamValue::BigInt(5)),
            Bound::Included(KalamValue::BigInt(9))
        )
    );
}

/// A filter over `id` (BIGINT) and `body` (TEXT) with NULL literals and values in play.
fn arb_filter() -> impl proptest::strategy::Strategy<Value = Filter> {
    use proptest::prelude::*;
    let op = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::NotEq),
        Just(CmpOp::Lt),
        Just(CmpOp::LtEq),
        Just(CmpOp::Gt),
        Just(CmpOp::GtEq),
    ];
    let id = prop_oneof![
        4 => (0i64..6).prop_map(KalamValue::BigInt),
        1 => Just(KalamValue::Null),
    ];
    let body = prop_oneof![
        4 => "[ab]{0,2}".prop_map(KalamValue::Text),
        1 => Just(KalamValue::Null),
    ];
    let column = prop_oneof![Just("id"), Just("body")];
    let leaf = prop_oneof![
        (op.clone(), id.clone()).prop_map(|(op, v)| Filter::cmp("id", op, v)),
        (op, body.clone()).prop_map(|(op, v)| Filter::cmp("body", op, v)),
        column.clone().prop_map(|c| Filter::IsNull(c.into())),
        column.prop_map(|c| Filter::IsNotNull(c.into())),
        (proptest::collection::vec(id, 0..3), any::<bool>()).prop_map(|(values, negated)| {
            Filter::In {
                column: "id".into(),
                values,
                negated,
            }
        }),
        (proptest::collection::vec(body, 0..3), any::<bool>()).prop_map(|(values, negated)| {
            Filter::In {
                column: "body".into(),
                values,
                negated,
            }
        }),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..3).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

proptest::proptest! {
    /// The row evaluator of change feeds agrees with the batch evaluator of scans on every
    /// row, NULLs included.
    #[test]
    fn rows_and_batches_are_filtered_alike(
        filter in arb_filter(),
        rows in proptest::collection::vec(
            (proptest::option::of(0i64..6), proptest::option::of("[ab]{0,2}")),
            1..8,
        ),
    ) {
        let arrow_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("body", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            arrow_schema,
            vec![
                Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let Ok(bound) = filter.bind(&schema(), "t") else {
            return Ok(());
        };
        let by_batch = bound.evaluate(&batch).unwrap();
        let by_row = filter.for_rows(&schema(), "t").unwrap();
        for (i, (id, body)) in rows.iter().enumerate() {
            let row = [
                id.map_or(KalamValue::Null, KalamValue::BigInt),
                body.clone().map_or(KalamValue::Null, KalamValue::Text),
            ];
            let batch_says = by_batch.is_valid(i) && by_batch.value(i);
            proptest::prop_assert_eq!(by_row.matches(&row), batch_says, "{} on {:?}", filter, row);
        }
    }
}
