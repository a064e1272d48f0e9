//! The leaf plan of a query whose filters pin every primary-key column (`=`, or `IN` of up to
//! [`MAX_LOOKUP_KEYS`] keys in all): a batched point read of those keys (hot entries, then each
//! file's `_key` page directory, bloom filter and one page per returned column), not a scan.
//! The filters stay above it in DataFusion, so a key that exists but fails another condition
//! is still dropped.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::Expr;
use futures::future::BoxFuture;
use kalamstore_storage::codec::array_from_values;
use kalamstore_storage::{CmpOp, Filter, KalamValue, Store, TableDefinition, UserId};

use crate::error::external;
use crate::filter::to_filter;
use crate::leaf::{BatchExec, BatchSource};
use crate::views::to_schema;

/// Most keys a query may pin and still be answered by point reads.
pub(crate) const MAX_LOOKUP_KEYS: usize = 4096;

/// The primary keys `filters` pin (each key column by `=` or a non-negated `IN` of one of
/// the conjuncts), every combination of them, when there are at most [`MAX_LOOKUP_KEYS`].
pub(crate) fn pinned_keys(filters: &[Expr], def: &TableDefinition) -> Option<Vec<Vec<KalamValue>>> {
    let pk: Vec<&str> = def.primary_key().map(|c| c.name.as_str()).collect();
    let mut choices: Vec<Option<Vec<KalamValue>>> = vec![None; pk.len()];
    let mut conjuncts = Vec::new();
    for f in filters {
        match to_filter(f, def) {
            Some(Filter::And(parts)) => conjuncts.extend(parts),
            Some(other) => conjuncts.push(other),
            None => {}
        }
    }
    for f in conjuncts {
        let Some((column, values)) = equalities(f) else {
            continue;
        };
        let Some(i) = pk.iter().position(|c| *c == column) else {
            continue;
        };
        let values: Vec<KalamValue> = values.into_iter().filter(|v| !v.is_null()).collect();
        // Two conditions on one key column: the keys both allow.
        choices[i] = Some(match choices[i].take() {
            Some(earlier) => earlier.into_iter().filter(|v| values.contains(v)).collect(),
            None => values,
        });
    }
    let choices: Vec<Vec<KalamValue>> = choices.into_iter().collect::<Option<_>>()?;
    let combinations = choices
        .iter()
        .try_fold(1usize, |n, c| n.checked_mul(c.len()))?;
    if combinations > MAX_LOOKUP_KEYS {
        return None;
    }
    let mut keys: Vec<Vec<KalamValue>> = vec![Vec::new()];
    for column in &choices {
        let mut distinct: Vec<&KalamValue> = Vec::new();
        for v in column {
            if !distinct.contains(&v) {
                distinct.push(v);
            }
        }
        keys = keys
            .into_iter()
            .flat_map(|k| {
                distinct.iter().map(move |v| {
                    let mut k = k.clone();
                    k.push((*v).clone());
                    k
                })
            })
            .collect();
    }
    Some(keys)
}

/// The column and values a filter pins it to: `c = v`, `c IN (..)`, or an `OR` of those on
/// one column (DataFusion turns a short `IN` list into one).
fn equalities(filter: Filter) -> Option<(String, Vec<KalamValue>)> {
    match filter {
        Filter::Compare {
            column,
            op: CmpOp::Eq,
            value,
        } => Some((column, vec![value])),
        Filter::In {
            column,
            values,
            negated: false,
        } => Some((column, values)),
        Filter::Or(branches) => {
            let mut out: Option<(String, Vec<KalamValue>)> = None;
            for branch in branches {
                let (column, values) = equalities(branch)?;
                match &mut out {
                    Some((c, all)) if *c == column => all.extend(values),
                    Some(_) => return None,
                    None => out = Some((column, values)),
                }
            }
            out
        }
        _ => None,
    }
}

/// Reads the rows of given primary keys: the source of the lookup's plan, shown by EXPLAIN as
/// `KalamLookupExec`.
#[derive(Clone)]
pub(crate) struct Lookup {
    store: Store,
    def: Arc<TableDefinition>,
    user: Option<UserId>,
    keys: Arc<Vec<Vec<KalamValue>>>,
    /// The provider's schema (every column, view types).
    table_schema: SchemaRef,
    projection: Option<Vec<usize>>,
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lookup")
            .field("table", &self.def.id)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// The plan of a key lookup.
pub(crate) type KalamLookupExec = BatchExec<Lookup>;

/// A lookup of `keys` in `def`'s table for `user`, returning `projection` of `table_schema`.
pub(crate) fn lookup_exec(
    store: Store,
    def: Arc<TableDefinition>,
    user: Option<UserId>,
    keys: Vec<Vec<KalamValue>>,
    table_schema: SchemaRef,
    projection: Option<Vec<usize>>,
) -> DfResult<KalamLookupExec> {
    let schema = match &projection {
        Some(p) => Arc::new(table_schema.project(p)?),
        None => table_schema.clone(),
    };
    let lookup = Lookup {
        store,
        def,
        user,
        keys: Arc::new(keys),
        table_schema,
        projection,
    };
    Ok(BatchExec::new(lookup, schema))
}

impl Lookup {
    /// The found rows as one batch of the projected schema.
    async fn rows(self) -> DfResult<RecordBatch> {
        let found = self
            .store
            .get_many(&self.def.id, self.user.as_ref(), &self.keys)
            .await
            .map_err(external)?;
        let rows: Vec<Vec<KalamValue>> = found.into_iter().flatten().collect();
        let columns = self
            .def
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let values: Vec<KalamValue> = rows
                    .iter()
                    .map(|r| r.get(i).cloned().unwrap_or(KalamValue::Null))
                    .collect();
                array_from_values(&c.name, c.data_type, &values)
            })
            .collect::<kalamstore_storage::Result<Vec<_>>>()
            .map_err(external)?;
        let stored = self.def.arrow_schema(false);
        let batch = RecordBatch::try_new(stored, columns)?;
        let batch = to_schema(&batch, &self.table_schema)?;
        Ok(match &self.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        })
    }
}

impl BatchSource for Lookup {
    const NAME: &'static str = "KalamLookupExec";

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "table={}, keys={}", self.def.id, self.keys.len())
    }

    fn batch(self) -> BoxFuture<'static, DfResult<RecordBatch>> {
        Box::pin(self.rows())
    }

    fn rows_estimate(&self) -> Option<usize> {
        Some(self.keys.len())
    }
}
