//! A kalamstore table as a DataFusion [`TableProvider`]: its current columns (text as
//! `Utf8View`; plus `_seq` and `_updated` for the `<table>$meta` name, plus `_user` for an
//! all-users reader), read by DataFusion's Parquet scan over the table's snapshot (`scan`) or,
//! when the filters pin the primary key, by point reads (`lookup`); and `INSERT` through a
//! sink that writes each statement in one atomic batch.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue, not_impl_err};
use datafusion::datasource::TableType;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, lit};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::TryStreamExt;
use kalamstore_storage::codec::array_from_values;
use kalamstore_storage::{BatchMode, ScanOptions, Store, TableDefinition, TableId, read_schema};

use crate::error::external;
use crate::lookup::{lookup_exec, pinned_keys};
use crate::principal::Principal;
use crate::scan::{ReadPlan, count_exec, plan_read};
use crate::views::view_schema;

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
    /// The table `def` for `principal`; `with_system` adds `_seq` and `_updated`.
    pub(crate) fn new(
        store: Store,
        def: Arc<TableDefinition>,
        principal: Principal,
        with_system: bool,
    ) -> Self {
        let all_users = principal.reads_all_users(&def);
        let schema = view_schema(&read_schema(&def, with_system, all_users));
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
        // Every filter prunes files, row groups and pages (and picks the keys of a lookup);
        // DataFusion applies it to the rows above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // DataFusion may hand the same conjunct twice.
        let mut unique: Vec<Expr> = Vec::with_capacity(filters.len());
        for f in filters {
            if !unique.contains(f) {
                unique.push(f.clone());
            }
        }
        let filters = unique.as_slice();
        let all_users = self.principal.reads_all_users(&self.def);
        let user = self.principal.user_for(&self.def);
        if !self.with_system
            && !all_users
            && let Some(keys) = pinned_keys(filters, &self.def)
        {
            return Ok(Arc::new(lookup_exec(
                self.store.clone(),
                self.def.clone(),
                user.cloned(),
                keys,
                self.schema.clone(),
                projection.cloned(),
            )?));
        }
        // The hot rows are decoded only for the columns the plan reads (its projection covers
        // the filters DataFusion applies above the scan).
        let columns = projection.map(|p| {
            p.iter()
                .map(|&i| self.schema.field(i).name())
                .filter(|name| self.def.schema.column(name).is_some())
                .cloned()
                .collect()
        });
        let options = ScanOptions {
            columns,
            with_system: self.with_system,
            all_users,
            ..ScanOptions::default()
        };
        let scan = self
            .store
            .scan_stream(self.id(), user, &options)
            .await
            .map_err(external)?;
        let def = scan.definition();
        if def.schema.version != self.def.schema.version {
            return Err(DataFusionError::Plan(format!(
                "table {} changed while the statement was planned; run it again",
                self.def.id
            )));
        }
        // `COUNT(*)`: the table's counters hold the exact count (each file's live rows and the
        // hot entries that are not tombstones, read together), so no hot row is decoded.
        if projection.is_some_and(Vec::is_empty) && filters.is_empty() && !self.with_system {
            let estimate = scan.estimate();
            if estimate.exact {
                return Ok(count_exec(estimate.rows));
            }
        }
        let snapshot = scan.snapshot_files().await.map_err(external)?;
        let read = ReadPlan {
            def,
            schema: self.schema.clone(),
            all_users,
            snapshot,
            access: scan.file_access(),
            projection,
            filters,
            limit,
        };
        plan_read(state, read).await
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
            schema: view_schema(&read_schema(&self.def, false, false)),
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
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(0);
        }
        // DataFusion casts the input to the table's columns, in table order; the statement is
        // one atomic write of all its rows.
        let Some(first) = batches.first() else {
            return Ok(0);
        };
        let fields: Vec<_> = first
            .schema()
            .fields()
            .iter()
            .zip(self.def.columns())
            .map(|(f, c)| f.as_ref().clone().with_name(c.name.clone()))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let columns = batches.iter().map(|b| b.columns().to_vec());
        let parts = columns
            .map(|c| RecordBatch::try_new(schema.clone(), c))
            .collect::<Result<Vec<_>, _>>()?;
        let all = concat_batches(&schema, &parts)?;
        let mode = match self.upsert {
            true => BatchMode::Upsert,
            false => BatchMode::Insert,
        };
        let user = self.principal.user_for(&self.def);
        // A REPLACE overwrites rows an UPDATE may be reading: it waits for the scope's
        // read-modify-write statements, or the UPDATE would write back over it.
        let _exclusive = match self.upsert {
            true => Some(self.store.lock_for_update(&self.def.id, user).await),
            false => None,
        };
        let summary = self
            .store
            .write_batch(&self.def.id, user, &all, mode)
            .await
            .map_err(external)?;
        Ok(summary.inserted + summary.updated)
    }
}
