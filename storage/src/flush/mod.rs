//! Flush: a scope's buffered hot rows to a new sorted Parquet file, with deletion vectors for
//! the flushed rows they replace, committed in one atomic batch of the table's hot engine.
//!
//! 1. Under the write lock, take a sequence `s0` ([`SequenceCut`]): every write with
//!    `_seq <= s0` has committed, every later write gets a larger `_seq`.
//! 2. Visit the scope's hot entries in key order (`scan_with`: no copy of the entries),
//!    skipping those newer than `s0`. Live rows are decoded straight into arrow columns and go
//!    to the new file, encoded by a writer task (Parquet encoding of one chunk overlaps the
//!    scan and decode of the next); every entry (row or tombstone) is merge-joined against the
//!    older files' sorted `_key` columns (pruned by min/max and bloom filter) and the position
//!    it replaces is marked in that file's deletion vector. A tombstone of a key in no file
//!    just disappears.
//! 3. Commit in one batch: the file's manifest entry, the grown deletion vectors, the removal
//!    of the hot entries with `_seq <= s0` and the new row counter. A row written during the
//!    flush stays hot. When no write came in since the cut, the removal is one range delete
//!    over the flushed keys (on engines that have it; after the table's flush the engine is
//!    asked to reclaim them), else one delete per key. A crash before the commit leaves an
//!    unreferenced file (collected later) and every row still hot; after it, the rows are in
//!    the file.

pub(crate) mod compact;
mod pipeline;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::backend::{ScanRequest, WriteBatch, WriteOp};
use crate::codec::read_row_meta;
use crate::delta::mark_pending;
use crate::error::{Error, Result};
use crate::format::{
    DeletionVector, FileMeta, FileWriter, dv_key, file_schema, manifest_key, split_hot_key,
};
use crate::ids::KeyScope;
use crate::merge::FileKeyJoin;
use crate::schema::TableType;
use crate::seq::SeqGenerator;
use crate::table::{FileEntry, TableHandle};
use pipeline::{FileRows, KeyBuffer, PipelinedWriter};

/// Hot entries read per step of a flush.
const FLUSH_CHUNK: usize = 8192;

/// What a flush or compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Rows written to files.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files written.
    pub files: u64,
    /// Flushed rows newly marked deleted (replaced or deleted keys).
    pub deleted: u64,
}

impl FlushOutcome {
    pub(crate) fn add(&mut self, other: FlushOutcome) {
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.files += other.files;
        self.deleted += other.deleted;
    }
}

/// What the flush of one scope did, and how it removed its hot rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScopeFlush {
    /// Rows, bytes and files written.
    pub(crate) outcome: FlushOutcome,
    /// The flushed rows went with one range delete: the caller asks the engine to reclaim
    /// them once for all the scopes it flushes ([`StorageBackend::reclaim`]).
    ///
    /// [`StorageBackend::reclaim`]: crate::backend::StorageBackend::reclaim
    pub(crate) range_deleted: bool,
}

/// Fails with [`Error::JobCancelled`] once the job's cancel flag is set.
pub(crate) fn check_cancel(cancel: &AtomicBool, job: &str) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::JobCancelled {
            job: job.to_owned(),
        });
    }
    Ok(())
}

/// The sequence cut of a flush: hot entries with `_seq <= seq` go to the file.
#[derive(Debug, Clone, Copy)]
struct SequenceCut {
    seq: i64,
    /// The table's write generation at the cut: unchanged at the commit means no write came
    /// in since.
    generation: u64,
}

/// What step 2 produced: the new file (if any row was live), the keys it flushed and the rows
/// of older files those keys replace.
struct Written {
    file: Option<FileMeta>,
    keys: KeyBuffer,
    replaced: HashMap<i64, DeletionVector>,
    outcome: FlushOutcome,
}

/// Flushes one scope of a table. The caller holds `table.maintenance`.
pub(crate) async fn flush_scope(
    table: &TableHandle,
    scope: &KeyScope,
    seq: &SeqGenerator,
    job: &str,
    cancel: &AtomicBool,
) -> Result<ScopeFlush> {
    if table.buffered(scope) == 0 {
        return Ok(ScopeFlush::default());
    }
    let cut = {
        let _writes = table.write_lock.lock().await;
        SequenceCut {
            seq: seq.next(),
            generation: table.write_generation.load(Ordering::Acquire),
        }
    };
    let older = table.files(scope);
    let written = write_file(table, scope, seq, cut, &older, job, cancel).await?;
    check_cancel(cancel, job)?;
    table.storage.failpoints.hit("flush.before_commit")?;
    let flushed = commit(table, scope, cut, &older, written).await?;
    table.storage.failpoints.hit("flush.after_commit")?;
    Ok(flushed)
}

/// Step 2: scans the scope's hot entries up to the cut, writes the live ones to a new file and
/// marks the rows they replace in older files.
async fn write_file(
    table: &TableHandle,
    scope: &KeyScope,
    seq: &SeqGenerator,
    cut: SequenceCut,
    older: &[FileEntry],
    job: &str,
    cancel: &AtomicBool,
) -> Result<Written> {
    let def = table.definition();
    let schema = file_schema(&def);
    let kind = def.table_type;
    let mut joins: Vec<FileKeyJoin> = older.iter().cloned().map(FileKeyJoin::new).collect();
    let mut written = Written {
        file: None,
        keys: KeyBuffer::default(),
        replaced: HashMap::new(),
        outcome: FlushOutcome::default(),
    };
    let mut writer: Option<PipelinedWriter> = None;
    // Bytes of the live rows of the previous step: a bound for the next one's columns.
    let mut row_bytes = 0usize;
    let mut next = Some(ScanRequest::prefix(table.scope_prefix(scope)).chunk_size(FLUSH_CHUNK));
    while let Some(request) = next {
        check_cancel(cancel, job)?;
        let first = written.keys.len();
        let hint = row_bytes.max(FLUSH_CHUNK * 16);
        let mut rows = FileRows::new(&def, &schema, FLUSH_CHUNK, hint)?;
        row_bytes = 0;
        let keys = &mut written.keys;
        next = table
            .storage
            .hot
            .scan_with(&table.hot, &request, &mut |key, value| {
                let (header, system) =
                    read_row_meta(value).map_err(|e| Error::decode("hot row", e))?;
                if system.seq > cut.seq {
                    // Written after the cut: stays hot for the next flush.
                    return Ok(());
                }
                keys.push(key);
                if !system.deleted {
                    row_bytes += value.len();
                    let pk = split_hot_key(kind, key).1;
                    rows.push(&def, pk, value, header.schema_version)?;
                }
                Ok(())
            })
            .await?;
        mark_replaced(table, kind, &mut joins, &mut written, first).await?;
        if rows.is_empty() {
            // Only tombstones (or nothing before the cut): no rows for the file.
            continue;
        }
        let writer = match &mut writer {
            Some(w) => w,
            None => {
                let store = &table.storage.cold.store;
                let file = FileWriter::create(store, &table.cold_dir(scope), &def, seq.next())?;
                writer.insert(PipelinedWriter::start(file, table))
            }
        };
        writer.write(rows.finish()?).await?;
    }
    if let Some(w) = writer {
        written.file = Some(w.finish().await?);
    }
    Ok(written)
}

/// Merge-join: every key flushed since key number `first` replaces the live row with that key
/// in older files; marks those rows.
async fn mark_replaced(
    table: &TableHandle,
    kind: TableType,
    joins: &mut [FileKeyJoin],
    written: &mut Written,
    first: usize,
) -> Result<()> {
    for key in written.keys.keys_from(first) {
        let pk = split_hot_key(kind, key).1;
        for join in joins.iter_mut() {
            if let Some(pos) = join.position(table, pk).await?
                && !join.entry().dv.contains(pos)
                && written
                    .replaced
                    .entry(join.entry().meta.id)
                    .or_default()
                    .insert(pos)
            {
                written.outcome.deleted += 1;
            }
        }
    }
    Ok(())
}

/// Step 3: the manifest entry, the grown deletion vectors and the removal of the flushed hot
/// entries, in one batch.
async fn commit(
    table: &TableHandle,
    scope: &KeyScope,
    cut: SequenceCut,
    older: &[FileEntry],
    written: Written,
) -> Result<ScopeFlush> {
    let _commit = table.commit.write().await;
    let _writes = table.write_lock.lock().await;
    let mut batch = WriteBatch::new();
    let unchanged = table.write_generation.load(Ordering::Acquire) == cut.generation;
    let range_deleted = unchanged && table.storage.hot.capabilities().delete_range;
    let remaining = if unchanged {
        remove_flushed_keys(table, written.keys, range_deleted, &mut batch);
        0
    } else {
        remove_up_to_cut(table, scope, cut, &mut batch).await?
    };
    let mut grown: Vec<FileEntry> = Vec::new();
    for entry in older {
        if let Some(added) = written.replaced.get(&entry.meta.id) {
            let mut dv = (*entry.dv).clone();
            dv.union_with(added);
            batch.ops.push(WriteOp::Put {
                partition: table.meta.clone(),
                key: dv_key(scope, entry.meta.id),
                value: dv.encode().into(),
            });
            grown.push(FileEntry::new(entry.meta.clone(), dv));
        }
    }
    let mut outcome = written.outcome;
    if let Some(meta) = &written.file {
        batch.ops.push(WriteOp::Put {
            partition: table.meta.clone(),
            key: manifest_key(scope, meta.id),
            value: meta.encode().into(),
        });
        outcome.rows = meta.rows;
        outcome.bytes = meta.size;
        outcome.files = 1;
    }
    if written.file.is_some() || !grown.is_empty() {
        mark_pending(table, &mut batch);
    }
    batch.ops.push(table.counter_op(scope, remaining));
    table.storage.hot.batch(batch).await?;
    let mut state = table.state.write();
    state.counters.insert(scope.clone(), remaining);
    let files = state.files.entry(scope.clone()).or_default();
    for g in grown {
        if let Some(f) = files.iter_mut().find(|f| f.meta.id == g.meta.id) {
            *f = g;
        }
    }
    if let Some(meta) = written.file {
        files.push(FileEntry::new(meta, DeletionVector::new()));
    }
    Ok(ScopeFlush {
        outcome,
        range_deleted,
    })
}

/// Nothing was written since the cut: the scope's hot entries are exactly the flushed ones.
/// One range tombstone over them removes them (and spares later scans from stepping over a
/// million point tombstones) where the engine has it, else one delete per key.
fn remove_flushed_keys(
    table: &TableHandle,
    keys: KeyBuffer,
    range_delete: bool,
    batch: &mut WriteBatch,
) {
    if !range_delete {
        for key in keys.into_keys() {
            batch.delete(&table.hot, key);
        }
        return;
    }
    if let Some((first, last)) = keys.bounds() {
        let mut end = Vec::with_capacity(last.len() + 1);
        end.extend_from_slice(last);
        end.push(0);
        batch.delete_range(&table.hot, Bytes::copy_from_slice(first), end);
    }
}

/// Writes came in since the cut: removes the scope's entries up to the cut one by one and
/// returns how many newer ones stay.
async fn remove_up_to_cut(
    table: &TableHandle,
    scope: &KeyScope,
    cut: SequenceCut,
    batch: &mut WriteBatch,
) -> Result<u64> {
    let mut remaining = 0u64;
    let mut next = Some(ScanRequest::prefix(table.scope_prefix(scope)).chunk_size(FLUSH_CHUNK));
    while let Some(request) = next {
        let chunk = table.storage.hot.scan(&table.hot, &request).await?;
        next = chunk.resume;
        for (key, value) in chunk.entries {
            if TableHandle::system_of(&value)?.seq <= cut.seq {
                batch.delete(&table.hot, key);
            } else {
                remaining += 1;
            }
        }
    }
    Ok(remaining)
}
