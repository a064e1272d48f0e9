//! The merge-on-read scan of one scope: hot rows first (they are the newest), then each file
//! with its deletion vector grown by the rows the hot keys hide.

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::boolean;
use arrow::record_batch::RecordBatch;

use super::ScanOptions;
use super::file::{FilePlan, read_file};
use super::hot::{HotRows, Snapshot, snapshot};
use super::join::hide_keys;
use crate::error::{Error, Result};
use crate::filter::BoundFilter;
use crate::format::{key_mask, project};
use crate::ids::KeyScope;
use crate::table::TableHandle;

/// Merge-on-read scan of one scope.
pub(crate) async fn scan(
    table: &TableHandle,
    scope: &KeyScope,
    options: &ScanOptions,
) -> Result<Vec<RecordBatch>> {
    let plan = super::plan(table, options)?;
    let snap = snapshot(table, scope, &plan.keys).await?;
    let mut out = Vec::new();
    let mut returned = 0usize;
    let left = |returned: usize| plan.limit.map(|l| l.saturating_sub(returned));

    let hot = scan_hot(table, &snap, &plan)?;
    let hidden = hot.as_ref().map(|(rows, _)| rows.keys.clone());
    if let Some((_, batch)) = hot {
        let batch = match left(returned) {
            Some(l) if batch.num_rows() > l => batch.slice(0, l),
            _ => batch,
        };
        returned += batch.num_rows();
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    for entry in &snap.files.files {
        if left(returned) == Some(0) {
            break;
        }
        // Flushed rows under a hot key (hot keys come sorted, like the file's) join the
        // file's deletion vector for this read, so the decoder skips them like flushed deletes.
        let dead = match &hidden {
            Some(keys) => Some(hide_keys(table, entry, keys.iter().flatten()).await?),
            None => None,
        };
        let plan = FilePlan {
            limit: left(returned),
            ..plan.clone()
        };
        for batch in read_file(table, entry, &plan, dead.as_ref()).await? {
            returned += batch.num_rows();
            out.push(batch);
        }
    }
    Ok(out)
}

/// The snapshot's live hot rows that match the plan, projected; with the decoded entries
/// (whose keys hide flushed rows, tombstones included). `None` when no entry is hot.
fn scan_hot(
    table: &TableHandle,
    snap: &Snapshot,
    plan: &FilePlan,
) -> Result<Option<(HotRows, RecordBatch)>> {
    if snap.hot.is_empty() {
        return Ok(None);
    }
    let rows = HotRows::decode(table, &snap.hot)?;
    let mask = hot_mask(table, &rows, plan.filter.as_ref(), plan)?;
    let filtered =
        filter_record_batch(&rows.batch, &mask).map_err(Error::arrow("filtering hot rows"))?;
    let projected = project(&filtered, &plan.output_schema())?;
    Ok(Some((rows, projected)))
}

/// Which hot entries a read returns: live, within the key bounds, matching the filter.
fn hot_mask(
    table: &TableHandle,
    rows: &HotRows,
    filter: Option<&BoundFilter>,
    plan: &FilePlan,
) -> Result<BooleanArray> {
    let mut mask = boolean::and(&rows.alive(table), &key_mask(&rows.keys, &plan.keys)?)
        .map_err(Error::arrow("masking hot rows"))?;
    if let Some(f) = filter {
        mask = boolean::and_kleene(&mask, &f.evaluate(&rows.batch)?)
            .map_err(Error::arrow("filtering hot rows"))?;
    }
    Ok(mask)
}
