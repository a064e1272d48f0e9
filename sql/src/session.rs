//! A SQL session over a [`Store`] for one principal (a user, nobody, or an operator reading
//! every user): queries, `INSERT`, `EXPLAIN` through DataFusion; `UPDATE` and `DELETE`
//! planned here as a DataFusion query of the matching keys (so any WHERE DataFusion can
//! evaluate works, subqueries included) and written in one atomic batch.

use std::sync::Arc;

use arrow::array::Array;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::{Expr as LogicalExpr, ExprSchemable, LogicalPlan};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, Delete, Expr as SqlExpr, FromTable, Ident, Query, SelectItem, SetExpr,
    Statement, TableFactor, TableWithJoins, Update,
};
use futures::TryStreamExt;
use kalamstore_storage::codec::value_at;
use kalamstore_storage::{
    Filter, KalamValue, Mutation, Store, SubscribeOptions, TableDefinition, TableId,
};

use crate::catalog::{CATALOG, KalamCatalog};
use crate::changes::{ChangesSince, SubscribeRequest, subscription_batches};
use crate::error::{Result, SqlError};
use crate::filter::to_filter;
use crate::principal::Principal;

/// What a statement returned.
pub enum SqlOutput {
    /// Rows, streamed as they are read.
    Rows(SendableRecordBatchStream),
    /// Rows changed by `INSERT`, `UPDATE` or `DELETE`.
    Changed {
        /// `INSERT`, `UPDATE` or `DELETE`.
        verb: &'static str,
        /// How many rows.
        rows: u64,
    },
}

impl std::fmt::Debug for SqlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rows(s) => f.debug_tuple("Rows").field(&s.schema()).finish(),
            Self::Changed { verb, rows } => write!(f, "{verb} {rows}"),
        }
    }
}

/// What a statement takes and returns, from its plan.
#[derive(Debug, Clone, Default)]
pub struct SqlDescription {
    /// The type of each `$n` (`$1` first), where the plan fixes one.
    pub params: Vec<Option<DataType>>,
    /// The columns of its rows; `None` for INSERT, UPDATE and DELETE.
    pub columns: Option<SchemaRef>,
}

/// One statement parsed once to run many times (a server's prepared statement): its parsed
/// form and, where it has one, the direct path it takes (a key lookup, a one-row write).
#[derive(Debug, Clone)]
pub struct SqlStatement {
    statement: DfStatement,
    /// A read of one row by its key from `$1`.
    point: Option<crate::point::PointQuery>,
    /// A one-row INSERT of parameters.
    insert: Option<crate::insert_row::RowInsert>,
    /// An UPDATE of one row by its key from a parameter.
    update: Option<crate::update_row::RowUpdate>,
}

impl SqlStatement {
    /// Parses `sql`: one query, INSERT, UPDATE, DELETE or EXPLAIN.
    pub fn parse(sql: &str) -> Result<Self> {
        let mut statements = DFParser::parse_sql(sql)?;
        let statement = match (statements.pop_front(), statements.is_empty()) {
            (Some(s), true) => s,
            (None, _) => {
                return Err(SqlError::Unsupported {
                    what: "an empty statement".into(),
                    hint: "write one statement",
                });
            }
            (Some(_), false) => {
                return Err(SqlError::Unsupported {
                    what: "more than one statement in one call".into(),
                    hint: "run them one at a time",
                });
            }
        };
        let (mut point, mut insert, mut update) = (None, None, None);
        let statement = match statement {
            DfStatement::Statement(s) => match *s {
                Statement::Query(mut query) => {
                    point = crate::point::point_query(&query);
                    name_like_postgres(&mut query);
                    DfStatement::Statement(Box::new(Statement::Query(query)))
                }
                Statement::Insert(i) => {
                    insert = crate::insert_row::row_insert(&i);
                    DfStatement::Statement(Box::new(Statement::Insert(i)))
                }
                Statement::Update(u) => {
                    update = crate::update_row::row_update(&u);
                    DfStatement::Statement(Box::new(Statement::Update(u)))
                }
                s @ (Statement::Delete(_) | Statement::Explain { .. }) => {
                    DfStatement::Statement(Box::new(s))
                }
                other => {
                    return Err(SqlError::Unsupported {
                        what: format!("`{}`", first_words(&other.to_string())),
                        hint: "kalamstore runs queries, INSERT, UPDATE, DELETE and EXPLAIN \
                               through SQL; tables and storages have their own statements",
                    });
                }
            },
            explain @ DfStatement::Explain(_) => explain,
            other => {
                return Err(SqlError::Unsupported {
                    what: format!("`{}`", first_words(&other.to_string())),
                    hint: "kalamstore runs queries, INSERT, UPDATE, DELETE and EXPLAIN through SQL",
                });
            }
        };
        Ok(Self {
            statement,
            point,
            insert,
            update,
        })
    }
}

/// A SQL session: one DataFusion context whose catalog is the store's namespaces (plus
/// `system` and `information_schema`), bound to one principal.
pub struct SqlSession {
    store: Store,
    principal: Principal,
    ctx: SessionContext,
    catalog: Arc<KalamCatalog>,
}

impl std::fmt::Debug for SqlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSession")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl SqlSession {
    /// A session of `principal` over `store`.
    pub async fn new(store: Store, principal: Principal) -> Result<Self> {
        let catalog = Arc::new(KalamCatalog::new(store.clone(), principal.clone()));
        catalog.refresh().await?;
        // Unqualified names resolve in schema `public`, which no namespace can be: tables
        // are always named `namespace.table`.
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        ctx.register_catalog(CATALOG, catalog.clone());
        crate::pg_catalog::register_functions(&ctx);
        ctx.register_udtf(
            "changes_since",
            Arc::new(ChangesSince {
                store: store.clone(),
                principal: principal.clone(),
                definitions: catalog.definitions.clone(),
            }),
        );
        Ok(Self {
            store,
            principal,
            ctx,
            catalog,
        })
    }

    /// Makes SQL `version()` return `text` (the product's version instead of DataFusion's).
    pub fn set_version(&self, text: &str) {
        let value = ScalarValue::Utf8(Some(text.to_owned()));
        self.ctx.register_udf(datafusion::logical_expr::create_udf(
            "version",
            vec![],
            DataType::Utf8,
            datafusion::logical_expr::Volatility::Immutable,
            Arc::new(move |_| {
                Ok(datafusion::logical_expr::ColumnarValue::Scalar(
                    value.clone(),
                ))
            }),
        ));
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Follows a table's changes as the session's principal (`SUBSCRIBE TO`): batches of
    /// [`changes_schema`](crate::changes_schema), initial data first when asked. The `WHERE`
    /// condition must be one the store evaluates (comparisons of columns with literals, `IN`,
    /// `IS NULL`, `BETWEEN`, `AND`/`OR`/`NOT`). `FOR ALL USERS` is refused to a user.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<SendableRecordBatchStream> {
        let id: TableId = request.table.parse()?;
        let def = self.store.table(&id).await?;
        let (user, all_users) = match (&self.principal, request.all_users) {
            (Principal::User(u), true) => {
                return Err(SqlError::Forbidden {
                    what: format!("user {u} may not subscribe to every user's rows of {id}"),
                });
            }
            (_, true) => (None, true),
            (p, false) => (p.user_for(&def).cloned(), p.reads_all_users(&def)),
        };
        let filter = match &request.condition {
            Some(condition) => Some(self.store_filter(&id, &def, condition).await?),
            None => None,
        };
        let options = SubscribeOptions {
            user,
            all_users,
            filter,
            start: request.start,
            batch_size: request.batch_size,
            principal: match &self.principal {
                Principal::User(u) => u.to_string(),
                Principal::AllUsers => "operator".into(),
                Principal::Anonymous => "anonymous".into(),
            },
        };
        let subscription = self.store.subscribe(&id, options).await?;
        Ok(subscription_batches(subscription, def, all_users))
    }

    /// The schema of what [`subscribe`](Self::subscribe) would stream for `request`, without
    /// subscribing.
    pub async fn subscribe_schema(&self, request: &SubscribeRequest) -> Result<SchemaRef> {
        let id: TableId = request.table.parse()?;
        let def = self.store.table(&id).await?;
        let all_users = request.all_users || self.principal.reads_all_users(&def);
        Ok(crate::changes_schema(&def, all_users))
    }

    /// What `sql` takes and returns, planned but not run: the type DataFusion infers for each
    /// `$n` (`None` where nothing fixes one) and the columns of a query (`None` for INSERT,
    /// UPDATE and DELETE, which return a count).
    pub async fn describe(&self, sql: &str) -> Result<SqlDescription> {
        self.describe_statement(&SqlStatement::parse(sql)?).await
    }

    /// [`describe`](Self::describe) of a parsed statement.
    pub async fn describe_statement(&self, statement: &SqlStatement) -> Result<SqlDescription> {
        let returns_rows = !matches!(
            &statement.statement,
            DfStatement::Statement(s)
                if matches!(**s, Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_))
        );
        let plan = self
            .ctx
            .state()
            .statement_to_plan(statement.statement.clone())
            .await?;
        let types = plan.get_parameter_types()?;
        let count = types
            .keys()
            .filter_map(|k| k.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()))
            .max()
            .unwrap_or(0);
        let params = (1..=count)
            .map(|i| types.get(&format!("${i}")).cloned().flatten())
            .collect();
        Ok(SqlDescription {
            params,
            columns: returns_rows.then(|| Arc::new(plan.schema().as_arrow().clone())),
        })
    }

    /// Inserts rows given as text (`COPY ... FROM`) into `columns` of `table` (all of them
    /// when empty), casting each value to its column's type, as one atomic batch; a value
    /// that does not fit fails the batch, naming its line and column.
    pub async fn insert_text(
        &self,
        table: &str,
        columns: &[String],
        rows: &[crate::text_rows::TextRow],
    ) -> Result<u64> {
        let id: TableId = table.parse()?;
        let def = self.store.table(&id).await?;
        let mutations = crate::text_rows::text_inserts(&def, columns, rows)?;
        if mutations.is_empty() {
            return Ok(0);
        }
        let summary = self
            .store
            .write(&id, self.principal.user_for(&def), mutations)
            .await?;
        Ok(summary.inserted)
    }

    /// Inserts the rows of `batch` (a file's, read by `COPY ... FROM`) into `table`, each column
    /// into the table's column of its name, as one atomic batch; `first_row` is the file's
    /// number of its first row, for errors.
    pub async fn insert_batch(
        &self,
        table: &str,
        batch: &RecordBatch,
        first_row: u64,
    ) -> Result<u64> {
        let id: TableId = table.parse()?;
        let def = self.store.table(&id).await?;
        let mutations = crate::text_rows::batch_inserts(&def, batch, first_row)?;
        if mutations.is_empty() {
            return Ok(0);
        }
        let summary = self
            .store
            .write(&id, self.principal.user_for(&def), mutations)
            .await?;
        Ok(summary.inserted)
    }

    /// A `WHERE` condition on `table` as the store's filter, or an error naming what the
    /// store cannot evaluate.
    async fn store_filter(
        &self,
        table: &TableId,
        def: &TableDefinition,
        condition: &str,
    ) -> Result<Filter> {
        let plan = self
            .ctx
            .sql(&format!("SELECT * FROM {table} WHERE {condition}"))
            .await?
            .into_optimized_plan()?;
        let mut predicates = Vec::new();
        plan.apply(|node| {
            match node {
                LogicalPlan::Filter(f) => predicates.push(f.predicate.clone()),
                LogicalPlan::TableScan(scan) => predicates.extend(scan.filters.iter().cloned()),
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut filters = Vec::with_capacity(predicates.len());
        for p in &predicates {
            filters.push(to_filter(p, def).ok_or_else(|| SqlError::Unsupported {
                what: format!("the subscription filter `{p}`"),
                hint: "compare columns with literals (=, <, >, IN, IS NULL, BETWEEN) joined by \
                       AND, OR, NOT",
            })?);
        }
        Ok(match filters.len() {
            1 => filters.remove(0),
            _ => Filter::And(filters),
        })
    }

    /// Re-reads the namespaces and tables the catalog lists (after DDL).
    pub async fn refresh(&self) -> Result<()> {
        self.catalog.refresh().await
    }

    /// Runs one statement; `params` are the values of `$1`, `$2`, ...
    pub async fn run(&self, sql: &str, params: &[ScalarValue]) -> Result<SqlOutput> {
        self.run_statement(&SqlStatement::parse(sql)?, params).await
    }

    /// [`run`](Self::run) of a parsed statement: what a prepared statement runs each time,
    /// without parsing it again.
    pub async fn run_statement(
        &self,
        statement: &SqlStatement,
        params: &[ScalarValue],
    ) -> Result<SqlOutput> {
        // A one-row INSERT of parameters is written directly, an UPDATE of one row by key reads
        // and writes it, and a read of one row by its key is one lookup: no plan (unless the
        // table turns out not to fit).
        if let Some(row) = &statement.insert
            && !params.is_empty()
            && let Some(rows) = row.run(&self.store, &self.principal, params).await?
        {
            return Ok(SqlOutput::Changed {
                verb: "INSERT",
                rows,
            });
        }
        if let Some(row) = &statement.update
            && let Some(rows) = row
                .run(&self.store, &self.ctx, &self.principal, params)
                .await?
        {
            return Ok(SqlOutput::Changed {
                verb: "UPDATE",
                rows,
            });
        }
        if let (Some(point), [param]) = (&statement.point, params)
            && let Some(rows) = point.run(&self.store, &self.principal, param).await?
        {
            return Ok(SqlOutput::Rows(rows));
        }
        let DfStatement::Statement(s) = &statement.statement else {
            return Ok(SqlOutput::Rows(
                self.execute(statement.statement.clone(), params).await?,
            ));
        };
        match s.as_ref() {
            Statement::Delete(delete) => self.delete(delete.clone(), params).await,
            Statement::Update(update) => self.update(update.clone(), params).await,
            Statement::Insert(insert) => {
                self.check_insert_literals(insert).await?;
                let mut stream = self
                    .execute_checked(statement.statement.clone(), params, check_insert)
                    .await?;
                let mut rows = 0u64;
                while let Some(batch) = stream.try_next().await? {
                    rows += count_of(&batch);
                }
                Ok(SqlOutput::Changed {
                    verb: "INSERT",
                    rows,
                })
            }
            _ => Ok(SqlOutput::Rows(
                self.execute(statement.statement.clone(), params).await?,
            )),
        }
    }

    /// Plans and starts one statement, refusing DataFusion's own DDL and `SET`.
    async fn execute(
        &self,
        statement: DfStatement,
        params: &[ScalarValue],
    ) -> Result<SendableRecordBatchStream> {
        self.execute_checked(statement, params, |_| Ok(())).await
    }

    /// [`execute`](Self::execute) with a check of the logical plan before it runs.
    async fn execute_checked(
        &self,
        statement: DfStatement,
        params: &[ScalarValue],
        check: impl Fn(&LogicalPlan) -> Result<()>,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.ctx.state();
        let plan = state.statement_to_plan(statement).await?;
        check(&plan)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        let mut frame = self.ctx.execute_logical_plan(plan).await?;
        if !params.is_empty() {
            frame = frame.with_param_values(params.to_vec())?;
        }
        Ok(frame.execute_stream().await?)
    }

    /// `DELETE FROM t [WHERE ...]`: the keys of the matching rows, found by a query, become
    /// tombstones in one batch.
    async fn delete(&self, delete: Delete, params: &[ScalarValue]) -> Result<SqlOutput> {
        let refuse = |what: &str| SqlError::Unsupported {
            what: format!("DELETE with {what}"),
            hint: "write DELETE FROM ns.table [WHERE ...]",
        };
        if delete.using.is_some() || delete.returning.is_some() || delete.output.is_some() {
            return Err(refuse("USING, RETURNING or OUTPUT"));
        }
        if !delete.order_by.is_empty() || delete.limit.is_some() || !delete.tables.is_empty() {
            return Err(refuse("ORDER BY, LIMIT or several tables"));
        }
        let tables = match &delete.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        let [table] = tables.as_slice() else {
            return Err(refuse("several tables"));
        };
        let (id, def) = self.target(table).await?;
        let _exclusive = self
            .store
            .lock_for_update(&id, self.principal.user_for(&def))
            .await;
        let keys = self
            .matching(&def, &[], delete.selection.as_ref(), params)
            .await?;
        let mutations = keys
            .into_iter()
            .map(|(key, _)| Mutation::Delete { key })
            .collect();
        let summary = self
            .store
            .write(&id, self.principal.user_for(&def), mutations)
            .await?;
        Ok(SqlOutput::Changed {
            verb: "DELETE",
            rows: summary.deleted,
        })
    }

    /// `UPDATE t SET c = expr, ... [WHERE ...]`: a query evaluates the new values for the
    /// keys of the matching rows; the changes go in one batch.
    async fn update(&self, update: Update, params: &[ScalarValue]) -> Result<SqlOutput> {
        if update.from.is_some() || update.returning.is_some() || update.output.is_some() {
            return Err(SqlError::Unsupported {
                what: "UPDATE with FROM, RETURNING or OUTPUT".into(),
                hint: "write UPDATE ns.table SET c = expr [WHERE ...]",
            });
        }
        if !update.order_by.is_empty() || update.limit.is_some() || update.or.is_some() {
            return Err(SqlError::Unsupported {
                what: "UPDATE with ORDER BY, LIMIT or OR".into(),
                hint: "write UPDATE ns.table SET c = expr [WHERE ...]",
            });
        }
        let (id, def) = self.target(&update.table).await?;
        // Concurrent UPDATEs of one row each read it, then write what they computed: one at a
        // time per scope, or an increment is lost.
        let _exclusive = self
            .store
            .lock_for_update(&id, self.principal.user_for(&def))
            .await;
        let mut set = Vec::with_capacity(update.assignments.len());
        for a in &update.assignments {
            let AssignmentTarget::ColumnName(name) = &a.target else {
                return Err(SqlError::Unsupported {
                    what: "UPDATE of a tuple of columns".into(),
                    hint: "assign one column at a time",
                });
            };
            let column = name.to_string().to_lowercase();
            if def.schema.column(&column).is_none() {
                return Err(kalamstore_storage::Error::InvalidValue {
                    column,
                    reason: format!("table {id} has no such column"),
                }
                .into());
            }
            set.push((column, a.value.clone()));
        }
        let rows = self
            .matching(&def, &set, update.selection.as_ref(), params)
            .await?;
        let mutations = rows
            .into_iter()
            .map(|(key, values)| Mutation::Update {
                key,
                set: set.iter().map(|(c, _)| c.clone()).zip(values).collect(),
            })
            .collect();
        let summary = self
            .store
            .write(&id, self.principal.user_for(&def), mutations)
            .await?;
        Ok(SqlOutput::Changed {
            verb: "UPDATE",
            rows: summary.updated,
        })
    }

    /// Checks the literals of `INSERT ... VALUES` against their columns' types (see
    /// [`check_assignment`]); other values are DataFusion's to convert.
    async fn check_insert_literals(&self, insert: &ast::Insert) -> Result<()> {
        let Some(source) = &insert.source else {
            return Ok(());
        };
        let SetExpr::Values(values) = source.body.as_ref() else {
            return Ok(());
        };
        let ast::TableObject::TableName(name) = &insert.table else {
            return Ok(());
        };
        let Ok(id) = name.to_string().to_lowercase().parse::<TableId>() else {
            return Ok(());
        };
        let Ok(def) = self.store.table(&id).await else {
            // DataFusion names the missing table.
            return Ok(());
        };
        let columns: Vec<&kalamstore_storage::ColumnDefinition> = if insert.columns.is_empty() {
            def.columns().iter().collect()
        } else {
            insert
                .columns
                .iter()
                .filter_map(|c| def.schema.column(&c.to_string().to_lowercase()))
                .collect()
        };
        for row in &values.rows {
            for (expr, column) in row.content.iter().zip(&columns) {
                if let Some(from) = literal_type(expr) {
                    check_assignment(&column.name, &from, &column.data_type.to_arrow())?;
                }
            }
        }
        Ok(())
    }

    /// The table a DML statement names, with its definition.
    async fn target(&self, table: &TableWithJoins) -> Result<(TableId, Arc<TableDefinition>)> {
        let TableFactor::Table { name, .. } = &table.relation else {
            return Err(SqlError::Unsupported {
                what: "a DML target that is not a table".into(),
                hint: "name the table as ns.table",
            });
        };
        if !table.joins.is_empty() {
            return Err(SqlError::Unsupported {
                what: "a DML target with joins".into(),
                hint: "use a subquery in WHERE",
            });
        }
        let id: TableId = name.to_string().to_lowercase().parse()?;
        let def = self.store.table(&id).await?;
        Ok((id, def))
    }

    /// The primary keys of `def`'s rows matching `selection`, each with the values of `set`'s
    /// expressions for that row, cast to the assigned columns' types.
    async fn matching(
        &self,
        def: &TableDefinition,
        set: &[(String, SqlExpr)],
        selection: Option<&SqlExpr>,
        params: &[ScalarValue],
    ) -> Result<Vec<(Vec<KalamValue>, Vec<KalamValue>)>> {
        let pk: Vec<_> = def.primary_key().collect();
        let mut items: Vec<String> = pk.iter().map(|c| quoted(&c.name)).collect();
        for (i, (_, expr)) in set.iter().enumerate() {
            items.push(format!("({expr}) AS \"__kalamstore_set_{i}\""));
        }
        let mut sql = format!(
            "SELECT {} FROM {}.{}",
            items.join(", "),
            quoted(def.id.namespace.as_str()),
            quoted(def.id.table.as_str())
        );
        if let Some(w) = selection {
            sql.push_str(&format!(" WHERE {w}"));
        }
        let mut statements = DFParser::parse_sql(&sql)?;
        let Some(statement) = statements.pop_front() else {
            return Ok(Vec::new());
        };
        let batches: Vec<RecordBatch> =
            self.execute(statement, params).await?.try_collect().await?;
        let strict = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut out = Vec::new();
        for batch in &batches {
            let mut assigned = Vec::with_capacity(set.len());
            for (i, (column, _)) in set.iter().enumerate() {
                let c = def.schema.column(column).ok_or_else(|| {
                    kalamstore_storage::Error::InvalidValue {
                        column: column.clone(),
                        reason: "no such column".into(),
                    }
                })?;
                let given = batch.column(pk.len() + i);
                check_assignment(column, given.data_type(), &c.data_type.to_arrow())?;
                let array =
                    cast_with_options(given, &c.data_type.to_arrow(), &strict).map_err(|e| {
                        kalamstore_storage::Error::InvalidValue {
                            column: column.clone(),
                            reason: format!("the new value is not a {}: {e}", c.data_type),
                        }
                    })?;
                assigned.push((c.data_type, array));
            }
            for row in 0..batch.num_rows() {
                let key = pk
                    .iter()
                    .enumerate()
                    .map(|(i, c)| value_at(batch.column(i).as_ref(), c.data_type, row))
                    .collect::<kalamstore_storage::Result<Vec<_>>>()?;
                let values = assigned
                    .iter()
                    .map(|(t, a)| value_at(a.as_ref(), *t, row))
                    .collect::<kalamstore_storage::Result<Vec<_>>>()?;
                out.push((key, values));
            }
        }
        Ok(out)
    }
}

/// Whether a value of type `from` may be assigned to a column of type `to`: DataFusion casts
/// between any types, but a number or a boolean stored into a text column (or text into a
/// number) is far more often a mistake than an intent, so it is refused.
pub(crate) fn check_assignment(column: &str, from: &DataType, to: &DataType) -> Result<()> {
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let number = |t: &DataType| t.is_numeric() || *t == DataType::Boolean;
    if (text(from) && number(to)) || (number(from) && text(to)) {
        let name = |t: &DataType| {
            kalamstore_storage::KalamDataType::from_arrow(t)
                .map_or_else(|_| t.to_string(), |k| k.to_string())
        };
        return Err(kalamstore_storage::Error::InvalidValue {
            column: column.to_owned(),
            reason: format!(
                "a {} value cannot be stored in a {} column; CAST it",
                name(from),
                name(to)
            ),
        }
        .into());
    }
    Ok(())
}

/// Checks the columns an `INSERT ... SELECT` stores: DataFusion plans it as a projection
/// onto the table's columns, casting each where the types differ; see [`check_assignment`].
/// (Literals of `VALUES` are checked on the statement, where an explicit `CAST` still shows.)
fn check_insert(plan: &LogicalPlan) -> Result<()> {
    let LogicalPlan::Dml(dml) = plan else {
        return Ok(());
    };
    let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
        return Ok(());
    };
    let input = projection.input.schema();
    for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
        if let LogicalExpr::Cast(cast) = expr.clone().unalias()
            && matches!(cast.expr.as_ref(), LogicalExpr::Column(_))
            && !matches!(projection.input.as_ref(), LogicalPlan::Values(_))
        {
            check_assignment(field.name(), &cast.expr.get_type(input)?, field.data_type())?;
        }
    }
    Ok(())
}

/// A literal's type family: a number or boolean, a string, or anything else.
fn literal_type(expr: &SqlExpr) -> Option<DataType> {
    use datafusion::sql::sqlparser::ast::{UnaryOperator, Value};
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(..) => Some(DataType::Int64),
            Value::Boolean(_) => Some(DataType::Boolean),
            Value::SingleQuotedString(_) | Value::DoubleQuotedString(_) => Some(DataType::Utf8),
            _ => None,
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => literal_type(expr).filter(|t| *t == DataType::Int64),
        SqlExpr::Nested(inner) => literal_type(inner),
        _ => None,
    }
}

/// The row count in the one-row `count` batch a DataFusion `INSERT` returns.
fn count_of(batch: &RecordBatch) -> u64 {
    batch
        .column_by_name("count")
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
        .filter(|c| !c.is_empty())
        .map_or(0, |c| c.value(0))
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Names unaliased function calls of a query's select list after the function, as
/// PostgreSQL does (`SELECT count(*)` returns a column `count`), where that name is unique
/// in the list.
fn name_like_postgres(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let name_of = |item: &SelectItem| -> Option<String> {
        match item {
            SelectItem::UnnamedExpr(SqlExpr::Function(f)) => {
                f.name.0.last().map(|p| p.to_string().to_lowercase())
            }
            SelectItem::UnnamedExpr(SqlExpr::Identifier(i)) => Some(i.value.to_lowercase()),
            SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(i)) => {
                i.last().map(|p| p.value.to_lowercase())
            }
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
            _ => None,
        }
    };
    let names: Vec<Option<String>> = select.projection.iter().map(name_of).collect();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let SelectItem::UnnamedExpr(expr @ SqlExpr::Function(_)) = item else {
            continue;
        };
        let Some(name) = &names[i] else { continue };
        if names.iter().filter(|n| n.as_ref() == Some(name)).count() == 1 {
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::new(name.clone()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaliased_function_calls_are_named_after_the_function_when_unique() {
        let mut statements =
            DFParser::parse_sql("SELECT count(*), max(a), max(b), lower(c) AS l, a FROM t")
                .unwrap();
        let Some(DfStatement::Statement(s)) = statements.pop_front() else {
            panic!("a statement")
        };
        let Statement::Query(mut q) = *s else {
            panic!("a query")
        };
        name_like_postgres(&mut q);
        assert_eq!(
            q.to_string(),
            "SELECT count(*) AS count, max(a), max(b), lower(c) AS l, a FROM t"
        );
    }
}
