//! Property test of the filter path: random rows with NULLs (hot, flushed, updated and deleted
//! after a flush), random DataFusion predicates (comparisons either way round, IN lists with
//! NULLs, BETWEEN, IS [NOT] NULL, AND/OR/NOT); the store's scan with the translated filter
//! (applied to hot rows, to files through their statistics and null counts, and to the rows
//! they keep) returns exactly the rows for which DataFusion's evaluation of the predicate is
//! true over an unfiltered scan. The oracle evaluates the physical expression, not a planned
//! query: DataFusion 55's logical simplifier drops NULLs on the way (it plans
//! `NOT (b IN (false) AND b IN (NULL))` as no filter at all, keeping rows whose `b` is NULL,
//! which three-valued logic and PostgreSQL do not).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, col, lit};
use datafusion::prelude::SessionContext;
use kalamstore_storage::{
    ColumnDefinition, KalamDataType, KalamValue, MemoryEngines, Mutation, NamespaceId, ScanOptions,
    Scope, StorageId, Store, StoreConfig, TableDefinition, TableId, TableOptions, TableType,
};
use proptest::prelude::*;
use proptest::sample::select;

use super::to_filter;

const TEXTS: &[&str] = &["", "a", "ab", "b", "é", "Z"];
const FLOATS: &[f64] = &[-1.5, 0.0, 0.5, 2.0, 1e10];

/// A literal of one of the table's columns (`None`: a typed NULL).
#[derive(Debug, Clone)]
enum Lit {
    Int(Option<i64>),
    Text(Option<&'static str>),
    Float(Option<f64>),
    Bool(Option<bool>),
}

impl Lit {
    fn expr(&self) -> Expr {
        lit(match self {
            Self::Int(v) => ScalarValue::Int64(*v),
            Self::Text(v) => ScalarValue::Utf8(v.map(str::to_owned)),
            Self::Float(v) => ScalarValue::Float64(*v),
            Self::Bool(v) => ScalarValue::Boolean(*v),
        })
    }
}

/// A predicate, kept in this form so a failure prints readably.
#[derive(Debug, Clone)]
enum Pred {
    /// `column op literal`, or `literal op column` when the flag is set.
    Cmp(&'static str, Operator, Lit, bool),
    /// `column IS NULL`, or `IS NOT NULL` when the flag is set.
    Null(&'static str, bool),
    /// `column [NOT] IN (...)`.
    In(&'static str, Vec<Lit>, bool),
    /// `column [NOT] BETWEEN low AND high`.
    Between(&'static str, Lit, Lit, bool),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
}

impl Pred {
    fn expr(&self) -> Expr {
        match self {
            Self::Cmp(c, op, l, flipped) => {
                let (left, right) = match flipped {
                    false => (col(*c), l.expr()),
                    true => (l.expr(), col(*c)),
                };
                Expr::BinaryExpr(BinaryExpr::new(Box::new(left), *op, Box::new(right)))
            }
            Self::Null(c, false) => col(*c).is_null(),
            Self::Null(c, true) => col(*c).is_not_null(),
            Self::In(c, list, negated) => {
                col(*c).in_list(list.iter().map(Lit::expr).collect(), *negated)
            }
            Self::Between(c, low, high, false) => col(*c).between(low.expr(), high.expr()),
            Self::Between(c, low, high, true) => col(*c).not_between(low.expr(), high.expr()),
            Self::And(a, b) => a.expr().and(b.expr()),
            Self::Or(a, b) => a.expr().or(b.expr()),
            Self::Not(a) => Expr::Not(Box::new(a.expr())),
        }
    }
}

fn maybe<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![1 => Just(None), 4 => s.prop_map(Some)].boxed()
}

/// A column and a strategy for its literals.
fn column() -> impl Strategy<Value = (&'static str, BoxedStrategy<Lit>)> {
    select(vec!["id", "n", "s", "f", "b"]).prop_map(|c| {
        let lits = match c {
            "id" => (0i64..40).prop_map(|v| Lit::Int(Some(v))).boxed(),
            "n" => maybe(-3i64..4).prop_map(Lit::Int).boxed(),
            "s" => maybe(select(TEXTS)).prop_map(Lit::Text).boxed(),
            "f" => maybe(select(FLOATS)).prop_map(Lit::Float).boxed(),
            _ => maybe(any::<bool>()).prop_map(Lit::Bool).boxed(),
        };
        (c, lits)
    })
}

fn leaf() -> impl Strategy<Value = Pred> {
    let ops = select(vec![
        Operator::Eq,
        Operator::NotEq,
        Operator::Lt,
        Operator::LtEq,
        Operator::Gt,
        Operator::GtEq,
    ]);
    (column(), ops, 0..4u8, any::<bool>(), any::<bool>()).prop_flat_map(
        |((c, lits), op, kind, flag, negated)| match kind {
            0 => lits.prop_map(move |l| Pred::Cmp(c, op, l, flag)).boxed(),
            1 => Just(Pred::Null(c, flag)).boxed(),
            2 => proptest::collection::vec(lits, 1..4)
                .prop_map(move |l| Pred::In(c, l, negated))
                .boxed(),
            _ => (lits.clone(), lits)
                .prop_map(move |(low, high)| Pred::Between(c, low, high, negated))
                .boxed(),
        },
    )
}

fn predicate() -> impl Strategy<Value = Pred> {
    leaf().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Pred::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Pred::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Pred::Not(Box::new(a))),
        ]
    })
}

/// One row: id, then the nullable columns.
type Row = (
    i64,
    Option<i64>,
    Option<&'static str>,
    Option<f64>,
    Option<bool>,
);

#[derive(Debug, Clone)]
enum Step {
    Upsert(Vec<Row>),
    Delete(Vec<i64>),
    Flush,
}

fn row() -> impl Strategy<Value = Row> {
    (
        0i64..40,
        maybe(-3i64..4),
        maybe(select(TEXTS)),
        maybe(select(FLOATS)),
        maybe(any::<bool>()),
    )
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => proptest::collection::vec(row(), 1..15).prop_map(Step::Upsert),
        1 => proptest::collection::vec(0i64..40, 1..6).prop_map(Step::Delete),
        2 => Just(Step::Flush),
    ];
    proptest::collection::vec(step, 2..9)
}

fn value<T>(v: Option<T>, f: impl FnOnce(T) -> KalamValue) -> KalamValue {
    v.map_or(KalamValue::Null, f)
}

fn mutation((id, n, s, f, b): Row) -> Mutation {
    Mutation::Upsert(vec![
        ("id".into(), KalamValue::BigInt(id)),
        ("n".into(), value(n, KalamValue::BigInt)),
        ("s".into(), value(s, |s| KalamValue::Text(s.into()))),
        ("f".into(), value(f, KalamValue::Double)),
        ("b".into(), value(b, KalamValue::Boolean)),
    ])
}

async fn table_after(dir: &std::path::Path, steps: &[Step]) -> (Store, TableId) {
    let mut config = StoreConfig::new(dir, Arc::new(MemoryEngines));
    config.background = false;
    let store = Store::open(config).await.unwrap();
    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    let def = TableDefinition::new(
        "app.t".parse().unwrap(),
        TableType::Shared,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("n", KalamDataType::BigInt),
            ColumnDefinition::new("s", KalamDataType::Text),
            ColumnDefinition::new("f", KalamDataType::Double),
            ColumnDefinition::new("b", KalamDataType::Boolean),
        ],
        StorageId::local(),
        TableOptions::default(),
        0,
    )
    .unwrap();
    let t = def.id.clone();
    store.create_table(def, false).await.unwrap();
    for step in steps {
        match step {
            Step::Upsert(rows) => {
                let writes = rows.iter().copied().map(mutation).collect();
                store.write(&t, None, writes).await.unwrap();
            }
            Step::Delete(ids) => {
                let writes = ids
                    .iter()
                    .map(|id| Mutation::Delete {
                        key: vec![KalamValue::BigInt(*id)],
                    })
                    .collect();
                store.write(&t, None, writes).await.unwrap();
            }
            Step::Flush => {
                store.flush_table(&t, Scope::All).await.unwrap();
            }
        }
    }
    (store, t)
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("id").expect("every read has the key");
            let ids = column
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("BIGINT reads as Int64");
            (0..ids.len()).map(|i| ids.value(i)).collect::<Vec<_>>()
        })
        .collect();
    out.sort_unstable();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_store_keeps_the_rows_datafusion_keeps(
        steps in steps(),
        predicates in proptest::collection::vec(predicate(), 12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let (store, t) = table_after(dir.path(), &steps).await;
            let def = store.table(&t).await.unwrap();
            let all = store.scan(&t, None, &ScanOptions::all()).await.unwrap();
            let ctx = SessionContext::new();
            for p in &predicates {
                let expr = p.expr();
                let Some(filter) = to_filter(&expr, &def) else {
                    // Left to DataFusion: correct by construction.
                    continue;
                };
                let mut want = Vec::new();
                for batch in &all {
                    let schema = DFSchema::try_from(batch.schema().as_ref().clone()).unwrap();
                    let predicate = ctx.create_physical_expr(expr.clone(), &schema).unwrap();
                    let verdict = predicate
                        .evaluate(batch)
                        .and_then(|v| v.into_array(batch.num_rows()))
                        .unwrap();
                    let verdict = verdict.as_boolean();
                    let ids = batch.column_by_name("id").unwrap().as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                    want.extend((0..batch.num_rows()).filter(|i| verdict.is_valid(*i) && verdict.value(*i)).map(|i| ids.value(i)));
                }
                want.sort_unstable();
                let got = store
                    .scan(&t, None, &ScanOptions::filtered(filter.clone()))
                    .await
                    .unwrap();
                prop_assert_eq!(ids(&got), want, "predicate {} as {:?}", expr, filter);
            }
            store.close().await.unwrap();
            Ok(())
        })?;
    }
}
