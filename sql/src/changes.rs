//! The change feed in SQL: `changes_since('ns.t', <seq> [, <limit>])`, a table function
//! scoped to the session's principal, and subscriptions as streams of batches. Both return
//! `_seq`, `_op` (`insert` / `update` / `delete`), `_user` (an all-users feed), then the
//! table's columns: the new row of an insert or update, the removed row of a delete.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use futures::future::BoxFuture;
use kalamstore_storage::codec::array_from_values;
use kalamstore_storage::{
    Change, KalamValue, StartAt, Store, Subscription, SubscriptionEvent, TableDefinition, TableId,
    TableType as Kind, UserId,
};

use crate::error::external;
use crate::leaf::{BatchSource, BatchTable, ProjectedSource};
use crate::principal::Principal;

/// Rows `changes_since` returns unless given a limit.
pub const DEFAULT_CHANGES_LIMIT: usize = 10_000;

/// The largest limit `changes_since` takes: its rows are one batch in memory (page through
/// larger ranges with the cursor).
pub const MAX_CHANGES_LIMIT: usize = 1_000_000;

/// Table definitions by id, as the session's catalog last read them (a table function plans
/// synchronously).
pub(crate) type Definitions = Arc<parking_lot::RwLock<BTreeMap<TableId, TableDefinition>>>;

/// The schema of a feed of `def`: `_seq`, `_op`, `_user` when `with_user`, then its columns.
pub fn changes_schema(def: &TableDefinition, with_user: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("_seq", DataType::Int64, false),
        Field::new("_op", DataType::Utf8, false),
    ];
    if with_user {
        fields.push(Field::new("_user", DataType::Utf8, false));
    }
    let table = kalamstore_storage::read_schema(def, false, false);
    // Every column is nullable here: a delete of a row written before a column was added
    // carries NULL for it.
    fields.extend(
        table
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true)),
    );
    Arc::new(Schema::new(fields))
}

/// Changes as one batch of [`changes_schema`].
pub fn changes_batch(
    def: &TableDefinition,
    changes: &[Change],
    with_user: bool,
) -> kalamstore_storage::Result<RecordBatch> {
    let schema = changes_schema(def, with_user);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(changes.iter().map(|c| c.seq))),
        Arc::new(StringArray::from_iter_values(
            changes.iter().map(|c| c.op.as_str()),
        )),
    ];
    if with_user {
        columns.push(Arc::new(StringArray::from_iter_values(
            changes
                .iter()
                .map(|c| c.user.as_ref().map_or("", |u| u.as_str()).to_owned()),
        )));
    }
    for (i, c) in def.columns().iter().enumerate() {
        let values: Vec<_> = changes
            .iter()
            .map(|ch| ch.values.get(i).cloned().unwrap_or(KalamValue::Null))
            .collect();
        columns.push(array_from_values(&c.name, c.data_type, &values)?);
    }
    RecordBatch::try_new(schema, columns).map_err(kalamstore_storage::Error::arrow(
        "building a batch of changes",
    ))
}

/// Whose changes `principal` reads of `def`: `(user, all_users)`.
fn feed_of<'p>(principal: &'p Principal, def: &TableDefinition) -> (Option<&'p UserId>, bool) {
    (principal.user_for(def), principal.reads_all_users(def))
}

/// `changes_since('ns.t', <seq> [, <limit>])`.
#[derive(Debug)]
pub(crate) struct ChangesSince {
    pub(crate) store: Store,
    pub(crate) principal: Principal,
    pub(crate) definitions: Definitions,
}

impl TableFunctionImpl for ChangesSince {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs<'_, '_>,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let literal = |i: usize| match exprs.get(i) {
            Some(Expr::Literal(v, _)) => Some(v.clone()),
            _ => None,
        };
        let table = match literal(0) {
            Some(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t))) => t,
            _ => return plan_err!("changes_since('namespace.table', <seq> [, <limit>])"),
        };
        let number = |i: usize, what: &str| -> DfResult<Option<i64>> {
            match literal(i) {
                None if exprs.len() <= i => Ok(None),
                Some(v) => match v.cast_to(&DataType::Int64)? {
                    ScalarValue::Int64(Some(n)) if n >= 0 => Ok(Some(n)),
                    _ => plan_err!("changes_since: {what} must be a whole number >= 0"),
                },
                None => plan_err!("changes_since: {what} must be a literal"),
            }
        };
        let after = number(1, "the cursor")?.unwrap_or(0);
        let limit = number(2, "the limit")?
            .map_or(DEFAULT_CHANGES_LIMIT, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            })
            .max(1);
        if limit > MAX_CHANGES_LIMIT {
            return plan_err!(
                "changes_since: the limit is at most {MAX_CHANGES_LIMIT} rows; page with the \
                 last _seq as the cursor"
            );
        }
        let id: TableId = table.parse().map_err(external)?;
        let Some(def) = self.definitions.read().get(&id).cloned() else {
            return plan_err!("table `{id}` not found");
        };
        let (user, all_users) = feed_of(&self.principal, &def);
        if def.table_type == Kind::User && user.is_none() && !all_users {
            return plan_err!(
                "table {id} is a USER table: its changes are read as a user (--user or \
                 EXECUTE AS USER) or by an operator (--all-users)"
            );
        }
        let rows = ChangesRows {
            store: self.store.clone(),
            user: user.cloned(),
            all_users,
            after,
            limit,
            projection: None,
            def: Arc::new(def),
        };
        Ok(Arc::new(BatchTable::new(
            changes_schema(&rows.def, all_users),
            TableType::Temporary,
            rows,
        )))
    }
}

/// Reads the pages of a `changes_since` call when executed.
#[derive(Debug, Clone)]
struct ChangesRows {
    store: Store,
    def: Arc<TableDefinition>,
    user: Option<UserId>,
    all_users: bool,
    after: i64,
    limit: usize,
    projection: Option<Vec<usize>>,
}

impl ProjectedSource for ChangesRows {
    fn projected(&self, projection: Option<Vec<usize>>) -> Self {
        Self {
            projection,
            ..self.clone()
        }
    }
}

impl BatchSource for ChangesRows {
    const NAME: &'static str = "ChangesExec";

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table={}, after={}, limit={}",
            self.def.id, self.after, self.limit
        )
    }

    fn batch(self) -> BoxFuture<'static, DfResult<RecordBatch>> {
        Box::pin(async move {
            let mut changes = Vec::new();
            let mut cursor = self.after;
            while changes.len() < self.limit {
                let page = self
                    .store
                    .changes_since(
                        &self.def.id,
                        self.user.as_ref(),
                        self.all_users,
                        cursor,
                        self.limit - changes.len(),
                    )
                    .await
                    .map_err(external)?;
                let done = page.cursor >= page.committed;
                cursor = page.cursor;
                changes.extend(page.changes);
                if done {
                    break;
                }
            }
            let batch = changes_batch(&self.def, &changes, self.all_users).map_err(external)?;
            match self.projection {
                Some(p) => Ok(batch.project(&p)?),
                None => Ok(batch),
            }
        })
    }
}

/// What `SUBSCRIBE TO` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeRequest {
    /// `namespace.table`.
    pub table: String,
    /// The `WHERE` condition, as SQL over the table's columns.
    pub condition: Option<String>,
    /// `FOR ALL USERS`: every user's changes (operators only).
    pub all_users: bool,
    /// Where it starts (`OPTIONS (last_rows = N)`, `from_seq_id = S`, or initial data).
    pub start: StartAt,
    /// `OPTIONS (batch_size = B)`.
    pub batch_size: Option<usize>,
}

/// A subscription as a stream of batches of [`changes_schema`] (initial rows as inserts;
/// the ready marker carries no rows). It ends only with an error or when dropped.
pub fn subscription_batches(
    subscription: Subscription,
    def: Arc<TableDefinition>,
    with_user: bool,
) -> SendableRecordBatchStream {
    let schema = changes_schema(&def, with_user);
    let batches = subscription.filter_map(move |event| {
        let def = def.clone();
        async move {
            let changes = match event {
                Ok(SubscriptionEvent::Initial(rows)) => rows,
                Ok(SubscriptionEvent::Changes { changes, .. }) => changes,
                Ok(SubscriptionEvent::Ready { .. }) => return None,
                Err(e) => return Some(Err(external(e))),
            };
            Some(changes_batch(&def, &changes, with_user).map_err(external))
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}
