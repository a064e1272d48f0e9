//! Which rows of a file a SQL read takes: the access plan of a file with dead rows (runs or a
//! bitmap of live rows per row group, kept per dead set) and the pieces such a file is read in.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use arrow::array::BooleanBufferBuilder;
use datafusion::common::Result as DfResult;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::parquet::arrow::arrow_reader::RowSelection;
use datafusion::parquet::file::metadata::ParquetMetaData;
use kalamstore_storage::ScanFile;
use kalamstore_storage::format::DeletionVector;
use parking_lot::Mutex;

/// Access plans of files with dead rows, by path, with the dead set each was built from: a
/// file's dead set is the same `Arc` for every read until a write or flush changes it.
type AccessPlans = HashMap<String, (Arc<DeletionVector>, ParquetAccessPlan)>;
static ACCESS_PLANS: LazyLock<Mutex<AccessPlans>> = LazyLock::new(Mutex::default);

/// Files whose access plans are kept.
const KEPT_ACCESS_PLANS: usize = 256;

/// [`access_plan`], kept for the next read of the same dead set.
pub(crate) fn cached_access_plan(
    metadata: &ParquetMetaData,
    file: &ScanFile,
) -> DfResult<ParquetAccessPlan> {
    if let Some((dead, plan)) = ACCESS_PLANS.lock().get(&file.meta.path)
        && Arc::ptr_eq(dead, &file.dead)
    {
        return Ok(plan.clone());
    }
    let plan = access_plan(metadata, file)?;
    let mut kept = ACCESS_PLANS.lock();
    if kept.len() >= KEPT_ACCESS_PLANS {
        kept.clear();
    }
    kept.insert(file.meta.path.clone(), (file.dead.clone(), plan.clone()));
    Ok(plan)
}

/// The row groups and rows of a file to read: every row not in its dead set. A row group
/// with many scattered dead rows gets a bitmap (one bit a row) rather than runs (16 bytes
/// each, two per dead row when dead rows are apart): 1M deletes spread over a 10M-row file
/// would otherwise take 32 MB per plan, and the plan is kept and cloned per read.
fn access_plan(metadata: &ParquetMetaData, file: &ScanFile) -> DfResult<ParquetAccessPlan> {
    let mut plan = ParquetAccessPlan::new_all(metadata.num_row_groups());
    let mut dead = file.dead.iter().peekable();
    let mut start = 0u64;
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        let rows = u64::try_from(rg.num_rows()).unwrap_or(0);
        let end = start + rows;
        let mut dead_here: Vec<usize> = Vec::new();
        while let Some(d) = dead.next_if(|d| *d < end) {
            if d >= start {
                dead_here.push((d - start) as usize);
            }
        }
        start = end;
        let rows = rows as usize;
        if dead_here.is_empty() {
            continue;
        }
        if dead_here.len() >= rows {
            plan.skip(i);
            continue;
        }
        // Live runs: at most one more than the dead rows that end one.
        let runs = 1 + dead_here.windows(2).filter(|w| w[1] > w[0] + 1).count();
        let selection = if runs.saturating_mul(256) > rows {
            let mut live = BooleanBufferBuilder::new(rows);
            live.append_n(rows, true);
            for d in dead_here {
                live.set_bit(d, false);
            }
            RowSelection::from_boolean_buffer(live.finish())
        } else {
            let mut live: Vec<Range<usize>> = Vec::with_capacity(runs + 1);
            let mut run = 0;
            for d in dead_here {
                if d > run {
                    live.push(run..d);
                }
                run = d + 1;
            }
            if run < rows {
                live.push(run..rows);
            }
            RowSelection::from_consecutive_ranges(live.into_iter(), rows)
        };
        plan.set(i, RowGroupAccess::Selection(selection));
    }
    Ok(plan)
}

/// Rows of a piece of a file with dead rows (two row groups).
const PIECE_ROWS: i64 = 1 << 18;

/// A file with dead rows as byte ranges of whole row groups of about [`PIECE_ROWS`] rows
/// each. DataFusion turns a range's dead rows into one row selection when it opens the
/// range (16 bytes per run of live rows, two runs per scattered dead row): a whole 10M-row
/// file with 1M scattered dead rows would take 32 MB per partition at once, a piece 1/40 of
/// that. And a TopK's dynamic filter, once tight, prunes every piece opened after it (a whole
/// file opened before is decoded). A range holds the row groups whose first page starts in
/// it (DataFusion's rule).
pub(crate) fn pieces(file: PartitionedFile, metadata: &ParquetMetaData) -> Vec<PartitionedFile> {
    pieces_of(file, metadata, PIECE_ROWS)
}

fn pieces_of(
    file: PartitionedFile,
    metadata: &ParquetMetaData,
    piece_rows: i64,
) -> Vec<PartitionedFile> {
    let groups = metadata.row_groups();
    let total: i64 = groups.iter().map(|g| g.num_rows()).sum();
    if total <= piece_rows {
        return vec![file];
    }
    let first_page = |i: usize| -> i64 {
        let chunk = groups[i].column(0);
        chunk
            .dictionary_page_offset()
            .unwrap_or_else(|| chunk.data_page_offset())
    };
    let size = i64::try_from(file.object_meta.size).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let (mut first, mut rows) = (0usize, 0i64);
    for i in 0..groups.len() {
        rows += groups[i].num_rows();
        let last = i + 1 == groups.len();
        if rows < piece_rows && !last {
            continue;
        }
        let start = if first == 0 { 0 } else { first_page(first) };
        let end = if last { size } else { first_page(i + 1) };
        let mut piece = file.clone().with_range(start, end);
        if let Some(stats) = &file.statistics {
            // Column bounds of the file hold for a piece; its row count is a share.
            let mut stats = stats.as_ref().clone().to_inexact();
            stats.num_rows = stats
                .num_rows
                .map(|n| usize::try_from(rows as i128 * n as i128 / total as i128).unwrap_or(n));
            piece = piece.with_statistics(Arc::new(stats));
        }
        out.push(piece);
        (first, rows) = (i + 1, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::Statistics;
    use datafusion::common::stats::Precision;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;

    use super::*;

    /// A Parquet file of 10 row groups of 100 rows, and its metadata.
    fn ten_row_groups() -> (Vec<u8>, ParquetMetaData) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(100))
            .build();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(props)).unwrap();
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..1000))],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        let metadata = writer.close().unwrap();
        (bytes, metadata)
    }

    #[test]
    fn pieces_cover_every_row_group_once_with_a_share_of_the_rows() {
        let (bytes, metadata) = ten_row_groups();
        assert_eq!(metadata.num_row_groups(), 10);
        let mut stats = Statistics::new_unknown(&Schema::empty());
        stats.num_rows = Precision::Exact(900);
        let file = PartitionedFile::new("t/f.parquet", bytes.len() as u64)
            .with_statistics(Arc::new(stats));
        let pieces = pieces_of(file.clone(), &metadata, 250);
        // 300, 300, 300 and the last 100 rows.
        assert_eq!(pieces.len(), 4);
        for (i, rg) in metadata.row_groups().iter().enumerate() {
            let chunk = rg.column(0);
            let at = chunk
                .dictionary_page_offset()
                .unwrap_or_else(|| chunk.data_page_offset());
            let holding = pieces
                .iter()
                .filter(|p| p.range.as_ref().is_some_and(|r| r.contains(at)))
                .count();
            assert_eq!(holding, 1, "row group {i} at byte {at}");
        }
        let ends: Vec<_> = pieces.iter().map(|p| p.range.clone().unwrap()).collect();
        assert_eq!(ends[0].start, 0);
        assert_eq!(ends[3].end, bytes.len() as i64);
        assert!(ends.windows(2).all(|w| w[0].end == w[1].start));
        let rows: Vec<_> = pieces
            .iter()
            .map(|p| p.statistics.as_ref().unwrap().num_rows)
            .collect();
        let expected = [270, 270, 270, 90].map(Precision::Inexact);
        assert_eq!(rows, expected);
        // A file of at most one piece is read whole.
        let whole = pieces_of(file, &metadata, 1000);
        assert_eq!(whole.len(), 1);
        assert!(whole[0].range.is_none());
    }
}
