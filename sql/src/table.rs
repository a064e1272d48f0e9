//! A kalamstore table as a DataFusion [`TableProvider`]: its current columns (plus `_seq` and
//! `_updated` for the `<table>$meta` name, plus `_user` for an all-users reader), a lazy
//! streamed scan with projection, filter and limit pushdown and row-count statistics, and
//! `INSERT` through a sink that writes each statement in one atomic batch.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue, not_impl_err};
use datafusion::datasource::TableType;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, lit};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;
use kalamstore_storage::codec::{array_from_values, value_at};
use kalamstore_storage::{
    Filter, KalamValue, Mutation, ScanOptions, Store, TableDefinition, TableId, USER_COLUMN,
    read_schema,
};

use crate::error::external;
use crate::filter::to_filter;
use crate::scan::{KalamScanExec, ScanShown};
use crate::session::Principal;

/// One table as a session's principal sees it.
pub(crate) struct KalamTable {
    store: Store,
    def: Arc<TableDefinition>,
    principal: Principal,
    with_system: bool,
    schema: SchemaRef,
    defaults: HashMap<String, Expr>,
}

impl fmt::Debug for KalamTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KalamTable")
            .field("table", &self.def.id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl KalamTable {
    /// The leaf plan reading `schema`'s columns with `filters` applied by the store.
    async fn scan_exec(
        &self,
        state: &dyn Session,
        schema: SchemaRef,
        filters: Vec<Filter>,
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| self.def.schema.column(n).is_some())
            .collect();
        let with_system = self.with_system
            && schema
                .fields()
                .iter()
                .any(|f| self.def.schema.column(f.name()).is_none() && f.name() != USER_COLUMN);
        let options = ScanOptions {
            columns: Some(columns),
            filter: match filters.len() {
                0 => None,
                1 => filters.first().cloned(),
                _ => Some(Filter::And(filters.clone())),
            },
            limit,
            with_system,
            all_users: self.principal.reads_all_users(&self.def),
        };
        let scan = self
            .store
            .scan_stream(self.id(), self.principal.user_for(&self.def), &options)
            .await
            .map_err(external)?;
        let target = state.config().target_partitions();
        let partitions = scan.file_count().clamp(1, target.max(1));
        let shown = ScanShown {
            table: self.id().clone(),
            filters,
            limit,
            reader: self.principal.describe(),
        };
        Ok(Arc::new(KalamScanExec::new(
            scan, schema, partitions, shown,
        )))
    }

    /// The table `def` for `principal`; `with_system` adds `_seq` and `_updated`.
    pub(crate) fn new(
        store: Store,
        def: Arc<TableDefinition>,
        principal: Principal,
        with_system: bool,
    ) -> Self {
        let all_users = principal.reads_all_users(&def);
        let schema = read_schema(&def, with_system, all_users);
        let defaults = def
            .columns()
            .iter()
            .filter_map(|c| {
                let value = c.default.as_ref().filter(|v| !v.is_null())?;
                let array =
                    array_from_values(&c.name, c.data_type, std::slice::from_ref(value)).ok()?;
                let scalar = ScalarValue::try_from_array(&array, 0).ok()?;
                Some((c.name.clone(), lit(scalar)))
            })
            .collect();
        Self {
            store,
            def,
            principal,
            with_system,
            schema,
            defaults,
        }
    }

    fn id(&self) -> &TableId {
        &self.def.id
    }
}

#[async_trait]
impl TableProvider for KalamTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match to_filter(f, &self.def) {
                // The store applies it to the merged (latest) rows, hot and flushed alike.
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Filters reach the scan after further simplification than the ones this provider
        // accepted: any that no longer translates is applied here, by DataFusion, on the
        // scan's rows, never dropped.
        let mut pushed: Vec<Filter> = Vec::new();
        let mut residual: Vec<Expr> = Vec::new();
        for f in filters {
            match to_filter(f, &self.def) {
                Some(filter) => pushed.push(filter),
                None => residual.push(f.clone()),
            }
        }
        let wanted: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let mut read: Vec<usize> = wanted.clone();
        for expr in &residual {
            for column in expr.column_refs() {
                if let Ok(i) = self.schema.index_of(&column.name)
                    && !read.contains(&i)
                {
                    read.push(i);
                }
            }
        }
        read.sort_unstable();
        let schema = Arc::new(self.schema.project(&read)?);
        let limit = if residual.is_empty() { limit } else { None };
        let scan = self.scan_exec(state, schema.clone(), pushed, limit).await?;
        if residual.is_empty() && read == wanted {
            return Ok(scan);
        }
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let mut plan: Arc<dyn ExecutionPlan> = scan;
        if let Some(predicate) = conjunction(residual) {
            let predicate = state.create_physical_expr(predicate, &df_schema)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        let columns = wanted
            .iter()
            .map(|i| {
                let name = self.schema.field(*i).name();
                let at = schema.index_of(name)?;
                Ok(ProjectionExpr {
                    expr: Arc::new(PhysicalColumn::new(name, at)) as _,
                    alias: name.clone(),
                })
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(columns, plan)?))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let upsert = match op {
            InsertOp::Append => false,
            InsertOp::Replace => true,
            InsertOp::Overwrite => {
                return not_impl_err!("INSERT OVERWRITE of a kalamstore table");
            }
        };
        if self.with_system {
            return not_impl_err!("writes to `{}$meta`; write to `{}`", self.id(), self.id());
        }
        let sink = InsertSink {
            store: self.store.clone(),
            def: self.def.clone(),
            principal: self.principal.clone(),
            schema: read_schema(&self.def, false, false),
            upsert,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        _state: &dyn Session,
        _filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // DataFusion 55 hands this hook only the filters it extracted, and loses a WHERE with
        // a subquery: the session plans DELETE itself.
        not_impl_err!("DELETE through DataFusion's hook; run it through a kalamstore SqlSession")
    }

    async fn update(
        &self,
        _state: &dyn Session,
        _assignments: Vec<(String, Expr)>,
        _filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        not_impl_err!("UPDATE through DataFusion's hook; run it through a kalamstore SqlSession")
    }
}

/// Writes the rows of one `INSERT` in one atomic batch.
struct InsertSink {
    store: Store,
    def: Arc<TableDefinition>,
    principal: Principal,
    schema: SchemaRef,
    upsert: bool,
}

impl fmt::Debug for InsertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InsertSink")
            .field("table", &self.def.id)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KalamInsert: table={}", self.def.id)
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let batches: Vec<_> = data.try_collect().await?;
        let columns = self.def.columns();
        let mut mutations = Vec::new();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                // DataFusion casts the input to the table's columns, in table order.
                let named = columns
                    .iter()
                    .zip(batch.columns())
                    .map(|(c, a)| Ok((c.name.clone(), value_at(a.as_ref(), c.data_type, row)?)))
                    .collect::<kalamstore_storage::Result<Vec<(String, KalamValue)>>>()
                    .map_err(external)?;
                mutations.push(match self.upsert {
                    true => Mutation::Upsert(named),
                    false => Mutation::Insert(named),
                });
            }
        }
        if mutations.is_empty() {
            return Ok(0);
        }
        let summary = self
            .store
            .write(&self.def.id, self.principal.user_for(&self.def), mutations)
            .await
            .map_err(external)?;
        Ok(summary.inserted + summary.updated)
    }
}
