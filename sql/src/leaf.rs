//! The one shape of our own leaf plans: a plan with no children and one partition whose rows
//! are a batch built when it executes (the key lookup, the system tables, `changes_since`). A
//! source says what it is called, how EXPLAIN shows it and how it builds its batch; the
//! `ExecutionPlan` boilerplate lives here once, and so does the `TableProvider` of a table
//! whose rows are one such batch ([`BatchTable`]).

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result as DfResult, Statistics, project_schema};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::future::BoxFuture;
use futures::stream;

/// What a [`BatchExec`] reads.
pub(crate) trait BatchSource: fmt::Debug + Clone + Send + Sync + 'static {
    /// The plan's name, as EXPLAIN shows it.
    const NAME: &'static str;

    /// What EXPLAIN shows after the name.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;

    /// The rows, in the plan's schema.
    fn batch(self) -> BoxFuture<'static, DfResult<RecordBatch>>;

    /// About how many rows it returns, when known.
    fn rows_estimate(&self) -> Option<usize> {
        None
    }
}

/// A source that returns only some of its columns.
pub(crate) trait ProjectedSource: BatchSource {
    /// The same source, returning the columns at `projection` (all when `None`).
    fn projected(&self, projection: Option<Vec<usize>>) -> Self;
}

/// A table whose rows are the batch of a [`ProjectedSource`], built when a query runs.
#[derive(Debug)]
pub(crate) struct BatchTable<S> {
    schema: SchemaRef,
    table_type: TableType,
    source: S,
}

impl<S> BatchTable<S> {
    /// A table of `schema` over `source`.
    pub(crate) fn new(schema: SchemaRef, table_type: TableType, source: S) -> Self {
        Self {
            schema,
            table_type,
            source,
        }
    }
}

#[async_trait]
impl<S: ProjectedSource> TableProvider for BatchTable<S> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.table_type
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = project_schema(&self.schema, projection)?;
        let source = self.source.projected(projection.cloned());
        Ok(Arc::new(BatchExec::new(source, schema)))
    }
}

/// A leaf plan whose one partition is the batch its source builds when executed.
#[derive(Debug)]
pub(crate) struct BatchExec<S> {
    source: S,
    properties: Arc<PlanProperties>,
}

impl<S: BatchSource> BatchExec<S> {
    /// A plan returning `source`'s batch, of `schema`.
    pub(crate) fn new(source: S, schema: SchemaRef) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            source,
            properties: Arc::new(properties),
        }
    }
}

impl<S: BatchSource> DisplayAs for BatchExec<S> {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "{}: ", S::NAME)?;
                self.source.describe(f)
            }
            DisplayFormatType::TreeRender => {
                self.source.describe(f)?;
                writeln!(f)
            }
        }
    }
}

impl<S: BatchSource> ExecutionPlan for BatchExec<S> {
    fn name(&self) -> &str {
        S::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.properties.eq_properties.schema().clone();
        let batch = self.source.clone().batch();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream::once(batch),
        )))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        let mut stats = Statistics::new_unknown(self.properties.eq_properties.schema());
        if let Some(rows) = self.source.rows_estimate() {
            stats.num_rows = Precision::Inexact(rows);
        }
        Ok(Arc::new(stats))
    }
}
