//! Compaction: rewrites a scope's files into one new sorted file without the deleted rows,
//! swapping inputs for the output in one manifest commit; and collection of orphaned files.
//!
//! Flush and compaction of a table hold its maintenance lock, so deletion vectors never change
//! under a compaction. Hidden rows (live rows with a newer hot entry, see
//! `format::partitions`) do, as writes go on: the output keeps them, and the commit, holding
//! the write lock, points the `h` entries of the inputs' rows at their positions in the output.
//! Input files are deleted after the commit, once no reader still holds them (`table::pins`);
//! a crash in between, or a reader that outlives the wait, leaves orphans that
//! [`collect_orphans`] removes after a grace period.

use std::collections::HashSet;
use std::time::Duration;

use arrow::compute::{SortOptions, concat_batches, sort_to_indices, take_record_batch};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::FlushOutcome;
use crate::backend::{ScanRequest, WriteBatch, scan_all};
use crate::delta::mark_pending;
use crate::error::{Error, Result};
use crate::format::{
    DeletionVector, FileMeta, FileWriter, Hidden, ROW_GROUP_ROWS, dv_key, hidden_key,
    hidden_prefix, is_delta_log_file, key_column, manifest_key, table_dir,
};
use crate::ids::KeyScope;
use crate::job::JobContext;
use crate::merge::{FilePlan, find_live, read_file};
use crate::seq::SeqGenerator;
use crate::table::{FileEntry, READER_WAIT, TableHandle};

/// Which files a compaction rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CompactionPolicy {
    /// Rewrite files with at least this share of deleted rows.
    pub min_deleted_ratio: Option<f64>,
    /// Rewrite files smaller than this.
    pub small_file_bytes: Option<u64>,
}

impl CompactionPolicy {
    /// Every file of the scope.
    pub fn all() -> Self {
        Self::default()
    }

    fn selects(&self, entry: &FileEntry) -> bool {
        if self.min_deleted_ratio.is_none() && self.small_file_bytes.is_none() {
            return true;
        }
        let ratio = entry.dv.len() as f64 / entry.meta.rows.max(1) as f64;
        self.min_deleted_ratio.is_some_and(|r| ratio >= r)
            || self.small_file_bytes.is_some_and(|s| entry.meta.size < s)
    }
}

/// What a scope's compaction did: its counts, and the input files it took out of the
/// manifest (deleted by [`remove_replaced`] once the Delta log no longer names them).
#[derive(Debug, Default)]
pub(crate) struct Compacted {
    pub(crate) outcome: FlushOutcome,
    pub(crate) replaced: Vec<FileEntry>,
}

/// Compacts one scope. The caller holds `table.maintenance`, and after every scope of the
/// job publishes the table and calls [`remove_replaced`].
pub(crate) async fn compact_scope(
    table: &TableHandle,
    scope: &KeyScope,
    seq: &SeqGenerator,
    policy: CompactionPolicy,
    job: &JobContext,
) -> Result<Compacted> {
    let def = table.definition();
    let inputs: Vec<FileEntry> = table
        .files(scope)
        .into_iter()
        .filter(|f| policy.selects(f))
        .collect();
    let nothing_to_gain = inputs.len() == 1
        && inputs[0].dv.is_empty()
        && inputs[0].meta.schema_version == def.schema.version;
    if inputs.is_empty() || nothing_to_gain {
        return Ok(Compacted::default());
    }
    let output = rewrite(table, scope, seq, &inputs, job).await?;
    let mut outcome = FlushOutcome {
        deleted: inputs.iter().map(|f| f.dv.len()).sum(),
        ..FlushOutcome::default()
    };
    if let Some(meta) = &output {
        outcome.rows = meta.rows;
        outcome.bytes = meta.size;
        outcome.files = 1;
    }
    job.check_cancel()?;
    table
        .storage
        .failpoints
        .hit("compaction.before_commit")
        .await?;
    commit(table, scope, &inputs, output).await?;
    table
        .storage
        .failpoints
        .hit("compaction.after_commit")
        .await?;
    Ok(Compacted {
        outcome,
        replaced: inputs,
    })
}

/// Deletes files a compaction took out of the manifest, once no reader holds them. Readers
/// that outlive the wait leave them to the orphan collector (see `table::pins`).
pub(crate) async fn remove_replaced(table: &TableHandle, replaced: Vec<FileEntry>) -> Result<()> {
    if replaced.is_empty() || !table.pins.wait_for_readers(READER_WAIT).await {
        return Ok(());
    }
    for input in replaced {
        table.file_index.forget(input.meta.id);
        delete_object(table, &input.meta.path).await?;
    }
    Ok(())
}

/// Reads the live rows of `inputs`, sorts them by key and writes them to one new file (none
/// when every row is deleted).
async fn rewrite(
    table: &TableHandle,
    scope: &KeyScope,
    seq: &SeqGenerator,
    inputs: &[FileEntry],
    job: &JobContext,
) -> Result<Option<FileMeta>> {
    let def = table.definition();
    let plan = FilePlan::all(def.clone(), true, true);
    let mut batches = Vec::new();
    for input in inputs {
        job.check_cancel()?;
        batches.extend(read_file(table, input, &plan, None).await?);
    }
    let all = concat_batches(&plan.output_schema(), &batches)
        .map_err(Error::arrow("collecting rows to compact"))?;
    drop(batches);
    if all.num_rows() == 0 {
        return Ok(None);
    }
    let keys = key_column(&all, "rows to compact")?;
    let order = sort_to_indices(keys, Some(SortOptions::default()), None)
        .map_err(Error::arrow("sorting rows to compact"))?;
    let sorted =
        take_record_batch(&all, &order).map_err(Error::arrow("sorting rows to compact"))?;
    let store = &table.storage.cold.store;
    let mut writer = FileWriter::create(store, &table.cold_dir(scope), &def, seq.next())?;
    let mut at = 0;
    while at < sorted.num_rows() {
        job.check_cancel()?;
        let len = ROW_GROUP_ROWS.min(sorted.num_rows() - at);
        writer.write(&sorted.slice(at, len)).await?;
        at += len;
    }
    writer.finish(store.as_ref()).await.map(Some)
}

/// Swaps the inputs for the output in the manifest, in one batch, with the `h` entries of the
/// inputs' rows pointed at the output.
async fn commit(
    table: &TableHandle,
    scope: &KeyScope,
    inputs: &[FileEntry],
    output: Option<FileMeta>,
) -> Result<()> {
    let _commit = table.lock_tiers().await;
    let _writes = table.lock_rows().await;
    let mut batch = WriteBatch::new();
    mark_pending(table, &mut batch);
    for input in inputs {
        batch.delete(&table.meta, manifest_key(scope, input.meta.id));
        batch.delete(&table.meta, dv_key(scope, input.meta.id));
    }
    let gone: HashSet<i64> = inputs.iter().map(|f| f.meta.id).collect();
    let moved = hidden_rows_of(table, scope, &gone).await?;
    let mut output_entry = output.map(|meta| FileEntry::new(meta, DeletionVector::new()));
    let mut found: Vec<(&[u8], Hidden)> = Vec::new();
    if let Some(entry) = &output_entry {
        let keys = moved.iter().map(Vec::as_slice);
        found = find_live(table, std::slice::from_ref(entry), keys).await?;
        batch.put(
            &table.meta,
            manifest_key(scope, entry.meta.id),
            entry.meta.encode(),
        );
    }
    // Every moved key is rewritten: to its row in the output, or (a row the output lacks,
    // which the invariant rules out) removed.
    for pk in &moved {
        batch.delete(&table.meta, hidden_key(scope, pk));
    }
    for (pk, at) in &found {
        batch.put(&table.meta, hidden_key(scope, pk), at.encode());
    }
    table.storage.hot.batch(batch).await?;
    if let Some(entry) = &mut output_entry {
        entry.hide(found.iter().map(|(_, at)| at.position));
    }
    let mut state = table.state.write();
    let files = state.files.entry(scope.clone()).or_default();
    files.retain(|f| !gone.contains(&f.meta.id));
    if let Some(entry) = output_entry {
        files.push(entry);
        files.sort_by_key(|f| f.meta.id);
    }
    Ok(())
}

/// The primary keys (sorted) of a scope's `h` entries that point into `files`.
async fn hidden_rows_of(
    table: &TableHandle,
    scope: &KeyScope,
    files: &HashSet<i64>,
) -> Result<Vec<Vec<u8>>> {
    let prefix = hidden_prefix(scope);
    let entries = scan_all(
        table.storage.hot.as_ref(),
        &table.meta,
        ScanRequest::prefix(prefix.clone()),
    )
    .await?;
    let mut keys = Vec::new();
    for (key, value) in entries {
        let at = Hidden::decode(&value).ok_or_else(|| Error::Corrupt {
            what: format!("hidden row of {scope} of table {}", table.id),
            reason: format!("{} bytes, not 16", value.len()),
        })?;
        if files.contains(&at.file) {
            keys.push(key[prefix.len()..].to_vec());
        }
    }
    Ok(keys)
}

async fn delete_object(table: &TableHandle, path: &str) -> Result<()> {
    match table
        .storage
        .cold
        .store
        .delete(&ObjectPath::from(path))
        .await
    {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(Error::ObjectStore {
            op: format!("deleting {path} of table {}", table.id),
            source,
        }),
    }
}

/// Deletes Parquet files under the table's cold directory that no manifest entry references
/// and that are older than `grace` (a flush in progress writes files before it commits them).
/// Returns how many were deleted.
pub(crate) async fn collect_orphans(table: &TableHandle, grace: Duration) -> Result<u64> {
    let live: HashSet<String> = {
        let state = table.state.read();
        state
            .files
            .values()
            .flatten()
            .map(|f| f.meta.path.clone())
            .collect()
    };
    let dir = table_dir(&table.storage.cold.prefix, &table.id);
    let listed: Vec<_> = table
        .storage
        .cold
        .store
        .list(Some(&ObjectPath::from(dir.as_str())))
        .try_collect()
        .await
        .map_err(|source| Error::ObjectStore {
            op: format!("listing {dir} of table {}", table.id),
            source,
        })?;
    let cutoff = chrono_cutoff(grace);
    let mut removed = 0;
    for object in listed {
        let path = object.location.to_string();
        if !path.ends_with(".parquet") || live.contains(&path) || is_delta_log_file(&path) {
            continue;
        }
        if object.last_modified.timestamp_millis() > cutoff {
            continue;
        }
        delete_object(table, &path).await?;
        removed += 1;
    }
    Ok(removed)
}

fn chrono_cutoff(grace: Duration) -> i64 {
    crate::seq::now_nanos() / 1_000_000 - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX)
}
