//! Flush: a scope's buffered hot rows to a new sorted Parquet file, with deletion vectors for
//! the flushed rows they replace, committed in one atomic batch of the table's hot engine.
//!
//! 1. Under the write lock, take a sequence `s0` ([`SequenceCut`]): every write with
//!    `_seq <= s0` has committed, every later write gets a larger `_seq`.
//! 2. Visit the scope's hot entries in key order (`scan_with`: no copy of the entries),
//!    skipping those newer than `s0`. Live rows are decoded straight into arrow columns and go
//!    to the new file, encoded by a writer task (Parquet encoding of one chunk overlaps the
//!    scan and decode of the next). A tombstone just leaves its key behind.
//! 3. Commit in one batch: the file's manifest entry; the older rows the flushed keys replace,
//!    moved from their `h` entries (recorded by the writes, see `format::partitions`) into
//!    their files' deletion vectors; the removal of the hot entries with `_seq <= s0`; the
//!    new row counter. A row written during the flush stays hot (and, when the file holds an
//!    older version of its key, gets an `h` entry for that row). When no write came in since
//!    the cut, the removal is one range delete over the flushed keys (on engines that have
//!    it; after the table's flush the engine is asked to reclaim them), else one delete per
//!    key. A crash before the commit leaves an unreferenced file (collected later) and every
//!    row still hot; after it, the rows are in the file.

pub(crate) mod compact;
mod pipeline;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use roaring::RoaringBitmap;

use crate::backend::{ScanRequest, WriteBatch, prefix_successor};
use crate::codec::read_row_meta;
use crate::delta::mark_pending;
use crate::error::{Error, Result};
use crate::format::{
    DeletionVector, FileMeta, FileWriter, Hidden, HotCount, dv_key, file_schema, hidden_key,
    hidden_prefix, manifest_key, split_hot_key,
};
use crate::ids::KeyScope;
use crate::job::JobContext;
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

/// The sequence cut of a flush: hot entries with `_seq <= seq` go to the file.
#[derive(Debug, Clone, Copy)]
struct SequenceCut {
    seq: i64,
    /// The table's write generation at the cut: unchanged at the commit means no write came
    /// in since.
    generation: u64,
}

/// What step 2 produced: the new file (if any row was live) and the keys it flushed (rows and
/// tombstones, in key order).
struct Written {
    file: Option<FileMeta>,
    keys: KeyBuffer,
    /// Which keys (by number) are rows of the file: a key's position in the file is its rank
    /// among them.
    rows: RoaringBitmap,
}

impl Written {
    /// The position in the new file of the flushed hot key `key`, if it went there as a row.
    fn position_of(&self, key: &[u8]) -> Option<u64> {
        let i = u32::try_from(self.keys.find(key)?).ok()?;
        self.rows.contains(i).then(|| self.rows.rank(i) - 1)
    }
}

/// Flushes one scope of a table. The caller holds `table.maintenance`.
pub(crate) async fn flush_scope(
    table: &TableHandle,
    scope: &KeyScope,
    seq: &SeqGenerator,
    job: &JobContext,
) -> Result<ScopeFlush> {
    if table.buffered(scope) == 0 {
        return Ok(ScopeFlush::default());
    }
    let cut = {
        let _writes = table.lock_rows().await;
        SequenceCut {
            seq: seq.next(),
            generation: table.write_generation.load(Ordering::Acquire),
        }
    };
    let written = write_file(table, scope, seq, cut, job).await?;
    job.check_cancel()?;
    table.storage.failpoints.hit("flush.before_commit").await?;
    let flushed = commit(table, scope, cut, written).await?;
    table.storage.failpoints.hit("flush.after_commit").await?;
    Ok(flushed)
}

/// Step 2: scans the scope's hot entries up to the cut and writes the live ones to a new file.
async fn write_file(
    table: &TableHandle,
    scope: &KeyScope,
    seq: &SeqGenerator,
    cut: SequenceCut,
    job: &JobContext,
) -> Result<Written> {
    let def = table.definition();
    let schema = file_schema(&def);
    let kind = def.table_type;
    let mut written = Written {
        file: None,
        keys: KeyBuffer::default(),
        rows: RoaringBitmap::new(),
    };
    let mut writer: Option<PipelinedWriter> = None;
    // Bytes of the live rows of the previous step: a bound for the next one's columns.
    let mut row_bytes = 0usize;
    let mut next = Some(ScanRequest::prefix(table.scope_prefix(scope)).chunk_size(FLUSH_CHUNK));
    while let Some(request) = next {
        job.check_cancel()?;
        let hint = row_bytes.max(FLUSH_CHUNK * 16);
        let mut rows = FileRows::new(&def, &schema, FLUSH_CHUNK, hint)?;
        row_bytes = 0;
        let (keys, live) = (&mut written.keys, &mut written.rows);
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
                if !system.deleted {
                    // Invariant: a flush holds far fewer than 2^32 keys (memory bounds it).
                    live.insert(u32::try_from(keys.len()).expect("fewer than 2^32 keys"));
                    row_bytes += value.len();
                    let pk = split_hot_key(kind, key).1;
                    rows.push(&def, pk, value, header.schema_version)?;
                }
                keys.push(key);
                Ok(())
            })
            .await?;
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

/// Step 3: the manifest entry, the replaced rows moved into deletion vectors and the removal
/// of the flushed hot entries, in one batch.
async fn commit(
    table: &TableHandle,
    scope: &KeyScope,
    cut: SequenceCut,
    mut written: Written,
) -> Result<ScopeFlush> {
    let _commit = table.lock_tiers().await;
    let _writes = table.lock_rows().await;
    let older = table.files(scope);
    let mut batch = WriteBatch::new();
    let unchanged = table.write_generation.load(Ordering::Acquire) == cut.generation;
    let range_deleted = unchanged && table.storage.hot.capabilities().delete_range;
    let prefix = table.scope_prefix(scope);
    // The flushed keys' `h` entries: their rows are replaced by the new file (or deleted by
    // a flushed tombstone), so they move into their files' deletion vectors.
    let mut replaced: HashMap<i64, Vec<u64>> = HashMap::new();
    let hidden_range = hidden_prefix(scope);
    let mut next = Some(ScanRequest::prefix(hidden_range.clone()).chunk_size(FLUSH_CHUNK));
    let mut hot_key = prefix.clone();
    while let Some(request) = next {
        let chunk = table.storage.hot.scan(&table.meta, &request).await?;
        next = chunk.resume;
        for (key, value) in chunk.entries {
            hot_key.truncate(prefix.len());
            hot_key.extend_from_slice(&key[hidden_range.len()..]);
            if !unchanged && written.keys.find(&hot_key).is_none() {
                // A key first written after the cut: its entry stays.
                continue;
            }
            let at = Hidden::decode(&value).ok_or_else(|| Error::Corrupt {
                what: format!("hidden row of {scope} of table {}", table.id),
                reason: format!("{} bytes, not 16", value.len()),
            })?;
            replaced.entry(at.file).or_default().push(at.position);
            if !range_deleted {
                batch.delete(&table.meta, key);
            }
        }
    }
    // Every hot entry was flushed, so were all keys with `h` entries: one range delete.
    if range_deleted
        && !replaced.is_empty()
        && let Some(end) = prefix_successor(&hidden_range)
    {
        batch.delete_range(&table.meta, hidden_range.clone(), end);
    }
    let (remaining, rehidden) = if unchanged {
        let keys = std::mem::take(&mut written.keys);
        remove_flushed_keys(table, keys, range_deleted, &mut batch);
        (HotCount::default(), Vec::new())
    } else {
        remove_up_to_cut(table, scope, cut, &written, &mut batch).await?
    };
    let new_file = written.file.as_ref().map(|m| m.id);
    for (pk, position) in &rehidden {
        let at = Hidden {
            // Invariant: only keys flushed as rows are rehidden, so the file exists.
            file: new_file.expect("a key flushed as a row has a file"),
            position: *position,
        };
        batch.put(&table.meta, hidden_key(scope, pk), at.encode());
    }
    let mut outcome = FlushOutcome::default();
    let mut grown: Vec<FileEntry> = Vec::new();
    for entry in &older {
        let Some(positions) = replaced.get_mut(&entry.meta.id) else {
            continue;
        };
        positions.sort_unstable();
        let mut dv = (*entry.dv).clone();
        dv.extend_sorted(positions);
        outcome.deleted += dv.len() - entry.dv.len();
        batch.put(&table.meta, dv_key(scope, entry.meta.id), dv.encode());
        let mut hidden = (*entry.hidden).clone();
        for p in positions.iter() {
            hidden.remove(*p);
        }
        grown.push(FileEntry::with_hidden(
            entry.meta.clone(),
            Arc::new(dv),
            Arc::new(hidden),
        ));
    }
    if let Some(meta) = &written.file {
        batch.put(&table.meta, manifest_key(scope, meta.id), meta.encode());
        outcome.rows = meta.rows;
        outcome.bytes = meta.size;
        outcome.files = 1;
    }
    if written.file.is_some() || !grown.is_empty() {
        mark_pending(table, &mut batch);
    }
    table.put_counter(&mut batch, scope, remaining);
    table.storage.hot.batch(batch).await?;
    let mut state = table.state.write();
    state.set_count(scope, remaining);
    let files = state.files.entry(scope.clone()).or_default();
    for g in grown {
        if let Some(f) = files.iter_mut().find(|f| f.meta.id == g.meta.id) {
            *f = g;
        }
    }
    if let Some(meta) = written.file {
        let mut entry = FileEntry::new(meta, DeletionVector::new());
        entry.hide(rehidden.iter().map(|(_, p)| *p));
        files.push(entry);
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

/// Writes came in since the cut: removes the scope's entries up to the cut one by one. Returns
/// the count of the entries that stay, and the keys among them that the new file holds as a
/// row (an older version, flushed before the key was written again), with its position there:
/// the hot entry hides that row.
async fn remove_up_to_cut(
    table: &TableHandle,
    scope: &KeyScope,
    cut: SequenceCut,
    written: &Written,
    batch: &mut WriteBatch,
) -> Result<(HotCount, Vec<(Vec<u8>, u64)>)> {
    let kind = table.definition().table_type;
    let mut remaining = HotCount::default();
    let mut rehidden = Vec::new();
    let mut next = Some(ScanRequest::prefix(table.scope_prefix(scope)).chunk_size(FLUSH_CHUNK));
    while let Some(request) = next {
        let chunk = table.storage.hot.scan(&table.hot, &request).await?;
        next = chunk.resume;
        for (key, value) in chunk.entries {
            let system = TableHandle::system_of(&value)?;
            if system.seq <= cut.seq {
                batch.delete(&table.hot, key);
                continue;
            }
            remaining.entries += 1;
            remaining.tombstones += u64::from(system.deleted);
            if let Some(position) = written.position_of(&key) {
                rehidden.push((split_hot_key(kind, &key).1.to_vec(), position));
            }
        }
    }
    Ok((remaining, rehidden))
}
