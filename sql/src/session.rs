//! A SQL session over a [`Store`] for one principal (a user, nobody, or an operator reading
//! every user): runs [`SqlStatement`]s (queries, `INSERT`, `EXPLAIN` through DataFusion, the
//! direct paths of a statement that has one; `UPDATE` and `DELETE` in `dml`), describes them,
//! and inserts COPY rows and subscribes.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use futures::TryStreamExt;
use kalamstore_storage::{Filter, Store, SubscribeOptions, TableDefinition, TableId};

use crate::catalog::{CATALOG, KalamCatalog};
use crate::changes::{ChangesSince, SubscribeRequest, subscription_batches};
use crate::error::{Result, SqlError};
use crate::filter::to_filter;
use crate::principal::Principal;
use crate::statement::SqlStatement;

mod dml;

use dml::{check_insert, count_of, name_null_column};

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
        // are always named `namespace.table`. DataFusion's own settings come from its
        // `DATAFUSION_*` environment variables (`DATAFUSION_EXECUTION_TARGET_PARTITIONS=4`).
        let config = SessionConfig::from_env()?
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
        let state = self.ctx.state();
        self.catalog
            .check_tables(&state, &statement.statement)
            .await?;
        let plan = state.statement_to_plan(statement.statement.clone()).await?;
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
        self.insert_rows(table, |def| {
            crate::text_rows::text_inserts(def, columns, rows)
        })
        .await
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
        self.insert_rows(table, |def| {
            crate::text_rows::batch_inserts(def, batch, first_row)
        })
        .await
    }

    /// Writes the inserts `make` builds for `table`'s definition, as one atomic batch.
    async fn insert_rows(
        &self,
        table: &str,
        make: impl FnOnce(&TableDefinition) -> Result<Vec<kalamstore_storage::Mutation>>,
    ) -> Result<u64> {
        let id: TableId = table.parse()?;
        let def = self.store.table(&id).await?;
        let mutations = make(&def)?;
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
                let def = self.check_insert_literals(insert).await?;
                let named = |e: SqlError| name_null_column(e, def.as_deref());
                let mut stream = self
                    .execute_checked(statement.statement.clone(), params, check_insert)
                    .await
                    .map_err(named)?;
                let mut rows = 0u64;
                while let Some(batch) = stream.try_next().await.map_err(|e| named(e.into()))? {
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
        self.catalog.check_tables(&state, &statement).await?;
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
}
