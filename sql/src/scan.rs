//! The leaf execution plan of a table read: a kalamstore [`TableScan`] split into partitions,
//! each streamed as DataFusion polls it; the filters and limit the store applies are shown by
//! `EXPLAIN`.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result as DfResult, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::StreamExt;
use kalamstore_storage::{Filter, TableId, TableScan};

use crate::error::external;

/// What a scan shows in `EXPLAIN`.
#[derive(Debug, Clone)]
pub(crate) struct ScanShown {
    /// The table.
    pub(crate) table: TableId,
    /// The filters the store applies to the merged rows.
    pub(crate) filters: Vec<Filter>,
    /// The limit the store stops at.
    pub(crate) limit: Option<usize>,
    /// Whose rows: a user id, `all users` or empty.
    pub(crate) reader: String,
}

/// Reads a kalamstore table.
#[derive(Debug)]
pub(crate) struct KalamScanExec {
    scan: TableScan,
    /// The batches DataFusion gets: the scan's columns, projected.
    schema: SchemaRef,
    shown: ScanShown,
    properties: Arc<PlanProperties>,
}

impl KalamScanExec {
    /// A plan over `scan` in `partitions` partitions, returning `schema` (columns of the
    /// scan's own schema, by name).
    pub(crate) fn new(
        scan: TableScan,
        schema: SchemaRef,
        partitions: usize,
        shown: ScanShown,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            scan,
            schema,
            shown,
            properties: Arc::new(properties),
        }
    }

    fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }
}

impl DisplayAs for KalamScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let filters: Vec<String> = self.shown.filters.iter().map(ToString::to_string).collect();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "KalamScanExec: table={}, projection=[{}]",
                    self.shown.table,
                    columns.join(", ")
                )?;
                if !self.shown.reader.is_empty() {
                    write!(f, ", rows_of={}", self.shown.reader)?;
                }
                if !filters.is_empty() {
                    write!(f, ", store_filters=[{}]", filters.join(", "))?;
                }
                if let Some(l) = self.shown.limit {
                    write!(f, ", store_limit={l}")?;
                }
                write!(f, ", partitions={}", self.partitions())
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "table={}", self.shown.table)?;
                if !filters.is_empty() {
                    writeln!(f, "store_filters=[{}]", filters.join(", "))?;
                }
                if let Some(l) = self.shown.limit {
                    writeln!(f, "store_limit={l}")?;
                }
                Ok(())
            }
        }
    }
}

impl ExecutionPlan for KalamScanExec {
    fn name(&self) -> &str {
        "KalamScanExec"
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
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let out = schema.clone();
        let batches = self
            .scan
            .partition(partition, self.partitions())
            .map(move |batch| batch.and_then(|b| select(&b, &out)).map_err(external));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        let mut stats = Statistics::new_unknown(&self.schema);
        if args.partition().is_none() {
            let estimate = self.scan.estimate();
            let rows = usize::try_from(estimate.rows).unwrap_or(usize::MAX);
            // With a limit every partition stops at it on its own: only a bound.
            stats.num_rows = match (estimate.exact, self.shown.limit) {
                (true, None) => Precision::Exact(rows),
                (_, Some(l)) => Precision::Inexact(rows.min(l)),
                (false, None) => Precision::Inexact(rows),
            };
        }
        Ok(Arc::new(stats))
    }
}

/// The columns of `schema` from `batch`, by name (a projection of the scan's columns).
fn select(batch: &RecordBatch, schema: &SchemaRef) -> kalamstore_storage::Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            batch.column_by_name(f.name()).cloned().ok_or_else(|| {
                kalamstore_storage::Error::Corrupt {
                    what: "a scan batch".into(),
                    reason: format!("no column `{}`", f.name()),
                }
            })
        })
        .collect::<kalamstore_storage::Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(kalamstore_storage::Error::arrow("projecting a scan batch"))
}
