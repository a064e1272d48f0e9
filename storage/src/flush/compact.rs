//! Compaction: rewrites a scope's files into one new sorted file without the deleted rows,
//! swapping inputs for the output in one manifest commit; and collection of orphaned files.
//!
//! Flush and compaction of a table hold its maintenance lock, so deletion vectors never change
//! under a compaction: the output needs no remapping. Input files are deleted after the commit,
//! once no reader still holds them; a crash in between leaves orphans that
//! [`collect_orphans`] removes after a grace period.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use arrow::compute::{SortOptions, concat_batches, sort_to_indices, take_record_batch};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::writer::{FileWriter, ROW_GROUP_ROWS};
use super::{FlushOutcome, check_cancel, failpoint};
use crate::backend::{WriteBatch, WriteOp};
use crate::error::{Error, Result};
use crate::merge::read::{FilePlan, KEY_COLUMN, output_schema, read_file};
use crate::seq::SeqGenerator;
use crate::table::{FileEntry, TableHandle, dv_key, manifest_key};

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

/// How long a compaction waits for readers of its input files before leaving them to the
/// orphan collector.
const READER_WAIT: Duration = Duration::from_secs(30);

/// Compacts one scope. The caller holds `table.maintenance`.
pub(crate) async fn compact_scope(
    table: &TableHandle,
    scope: &str,
    seq: &SeqGenerator,
    policy: CompactionPolicy,
    job: &str,
    cancel: &AtomicBool,
) -> Result<FlushOutcome> {
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
        return Ok(FlushOutcome::default());
    }
    let unbounded = (Bound::Unbounded, Bound::Unbounded);
    let plan = FilePlan {
        columns: def.columns(),
        all_columns: def.columns(),
        with_system: true,
        with_key: true,
        filter: None,
        keys: &unbounded,
        dead: None,
        limit: None,
    };
    let mut batches = Vec::new();
    for input in &inputs {
        check_cancel(cancel, job)?;
        batches.extend(read_file(table, input, &plan).await?);
    }
    let schema = output_schema(def.columns(), true, true);
    let all = concat_batches(&schema, &batches).map_err(|source| Error::Arrow {
        op: "collecting rows to compact",
        source,
    })?;
    drop(batches);
    let mut outcome = FlushOutcome::default();
    let mut output = None;
    if all.num_rows() > 0 {
        let keys = all
            .column_by_name(KEY_COLUMN)
            .expect("plan asks for `_key`");
        let order =
            sort_to_indices(keys, Some(SortOptions::default()), None).map_err(|source| {
                Error::Arrow {
                    op: "sorting rows to compact",
                    source,
                }
            })?;
        let sorted = take_record_batch(&all, &order).map_err(|source| Error::Arrow {
            op: "sorting rows to compact",
            source,
        })?;
        let mut writer = FileWriter::create(table, scope, &def, seq.next())?;
        let mut at = 0;
        while at < sorted.num_rows() {
            check_cancel(cancel, job)?;
            let len = ROW_GROUP_ROWS.min(sorted.num_rows() - at);
            writer.write(&sorted.slice(at, len)).await?;
            at += len;
        }
        let meta = writer.finish(table.storage.cold.store.as_ref()).await?;
        outcome.rows = meta.rows;
        outcome.bytes = meta.size;
        outcome.files = 1;
        output = Some(meta);
    }
    outcome.deleted = inputs.iter().map(|f| f.dv.len()).sum();
    check_cancel(cancel, job)?;
    failpoint("compaction.before_commit");

    {
        let _commit = table.commit.write().await;
        let mut batch = WriteBatch::new();
        for input in &inputs {
            for key in [
                manifest_key(scope, input.meta.id),
                dv_key(scope, input.meta.id),
            ] {
                batch.ops.push(WriteOp::Delete {
                    partition: table.meta.clone(),
                    key,
                });
            }
        }
        if let Some(meta) = &output {
            batch.ops.push(WriteOp::Put {
                partition: table.meta.clone(),
                key: manifest_key(scope, meta.id),
                value: meta.encode().into(),
            });
        }
        table.storage.hot.batch(batch).await?;
        let mut state = table.state.write();
        let files = state.files.entry(scope.to_owned()).or_default();
        let gone: HashSet<i64> = inputs.iter().map(|f| f.meta.id).collect();
        files.retain(|f| !gone.contains(&f.meta.id));
        if let Some(meta) = output {
            files.push(FileEntry::new(meta, Default::default()));
            files.sort_by_key(|f| f.meta.id);
        }
    }
    failpoint("compaction.after_commit");

    // The inputs are out of the manifest; delete them once no reader holds them.
    let deadline = Instant::now() + READER_WAIT;
    for input in inputs {
        while Arc::strong_count(&input.pin) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if Arc::strong_count(&input.pin) > 1 {
            continue;
        }
        table.parquet_meta.lock().remove(&input.meta.id);
        delete_object(table, &input.meta.path).await?;
    }
    Ok(outcome)
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
    let dir = table.cold_dir("");
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
        if !path.ends_with(".parquet") || live.contains(&path) {
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
