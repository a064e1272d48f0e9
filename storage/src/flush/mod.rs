//! Flush: a scope's buffered hot rows to a new sorted Parquet file, with deletion vectors for
//! the flushed rows they replace, committed in one atomic batch of the table's hot engine.
//!
//! 1. Under the write lock, take a sequence `s0`: every write with `_seq <= s0` has committed,
//!    every later write gets a larger `_seq`.
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

pub mod compact;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::BinaryBuilder;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::backend::{ScanRequest, WriteBatch, WriteOp};
use crate::codec::{BatchDecoder, read_row_meta};
use crate::error::{Error, Result};
use crate::merge::dv::DeletionVector;
use crate::merge::keys::KeyCursor;
use crate::merge::upgrade_hot_row;
use crate::schema::TableDefinition;
use crate::seq::SeqGenerator;
use crate::spawn::AbortOnDrop;
use crate::table::manifest::FileMeta;
use crate::table::{FileEntry, TableHandle, counter_key, dv_key, manifest_key, split_hot_key};
use writer::FileWriter;

/// Hot entries read per step of a flush.
const FLUSH_CHUNK: usize = 8192;

/// Chunks that may wait between a flush's scan and its file writer: enough to ride out the
/// writer's pauses at row-group ends, few enough to keep a flush's memory small.
const PIPELINE_CHUNKS: usize = 8;

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

/// Aborts the process at a named point when `KALAMSTORE_FAILPOINT` names it (crash tests);
/// `KALAMSTORE_FAILPOINT_SKIP=n` lets the first `n` hits pass.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    use std::sync::atomic::AtomicUsize;
    static HITS: AtomicUsize = AtomicUsize::new(0);
    if std::env::var("KALAMSTORE_FAILPOINT").is_ok_and(|v| v == name) {
        let skip: usize = std::env::var("KALAMSTORE_FAILPOINT_SKIP")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if HITS.fetch_add(1, Ordering::SeqCst) >= skip {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}

/// Aborts the process at a named point when `KALAMSTORE_FAILPOINT` names it (crash tests).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}

pub(crate) fn check_cancel(cancel: &AtomicBool, job: &str) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::JobCancelled {
            job: job.to_owned(),
        });
    }
    Ok(())
}

/// After flushes that removed their rows with range deletes: the flushed entries are still in
/// the hot engine under the range tombstones, and scans of the table step over them until the
/// engine drops them, so ask it to now. The rows are committed: a hint that fails only leaves
/// that to the engine's own schedule.
pub(crate) async fn reclaim_flushed(table: &TableHandle) {
    let _ = table.storage.hot.reclaim(&table.hot).await;
}

/// Keys stored back to back in one buffer (a flush of millions of rows holds their keys, not
/// one allocation per key).
#[derive(Default)]
struct KeyBuffer {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl KeyBuffer {
    fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    /// Keys pushed so far.
    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The keys pushed after the first `first`, in order.
    fn keys_from(&self, first: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = match first {
            0 => 0,
            n => self.ends[n - 1],
        };
        self.ends[first..].iter().map(move |&end| {
            let key = &self.bytes[start..end];
            start = end;
            key
        })
    }

    /// The first and the last key pushed.
    fn bounds(&self) -> Option<(&[u8], &[u8])> {
        let last_end = *self.ends.last()?;
        let first_end = self.ends[0];
        let last_start = match self.ends.len() {
            1 => 0,
            n => self.ends[n - 2],
        };
        Some((&self.bytes[..first_end], &self.bytes[last_start..last_end]))
    }

    fn into_keys(self) -> impl Iterator<Item = Bytes> {
        let bytes = Bytes::from(self.bytes);
        let starts = std::iter::once(0).chain(self.ends.clone());
        starts
            .zip(self.ends)
            .map(move |(start, end)| bytes.slice(start..end))
    }
}

/// Live hot rows of one flush step, decoded into the columns of a table file as the scan
/// visits them (no copy of the entries in between).
struct FileRows {
    decoder: BatchDecoder,
    keys: BinaryBuilder,
    /// The file's arrow schema: user columns, `_seq`, `_updated`, `_key`.
    schema: SchemaRef,
    /// User columns in the decoder's output.
    columns: usize,
}

impl FileRows {
    /// Rows for `capacity` entries; `data` bytes (the previous step's row bytes) are reserved
    /// for each variable-length column, so its buffer does not grow by doubling.
    fn new(
        def: &TableDefinition,
        schema: &SchemaRef,
        capacity: usize,
        data: usize,
    ) -> Result<Self> {
        Ok(Self {
            decoder: BatchDecoder::with_data_capacity(
                &def.arrow_schema(false),
                true,
                capacity,
                data,
            )?,
            keys: BinaryBuilder::with_capacity(capacity, capacity * 16),
            schema: schema.clone(),
            columns: def.columns().len(),
        })
    }

    /// Adds a live row: its encoded primary key and its hot value, written in schema version
    /// `version`.
    fn push(
        &mut self,
        def: &TableDefinition,
        key: &[u8],
        value: &[u8],
        version: u32,
    ) -> Result<()> {
        if version == def.schema.version {
            self.decoder.push(value)?;
        } else {
            self.decoder.push(&upgrade_hot_row(def, value)?)?;
        }
        self.keys.append_value(key);
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.decoder.is_empty()
    }

    /// The rows as a batch of the file's schema.
    fn finish(mut self) -> Result<RecordBatch> {
        let decoded = self.decoder.finish()?;
        // The decoder's output: the user columns, then `_seq`, `_updated`, `_deleted`.
        let mut columns = decoded.columns()[..self.columns + 2].to_vec();
        columns.push(Arc::new(self.keys.finish()));
        RecordBatch::try_new(self.schema, columns).map_err(|source| Error::Arrow {
            op: "assembling flushed rows",
            source,
        })
    }
}

/// The second stage of a flush, running as its own task: encodes batches of live rows into
/// the Parquet file while the first stage scans, decodes and merge-joins the next ones. At
/// most `PIPELINE_CHUNKS` batches wait between them.
struct PipelinedWriter {
    chunks: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    /// The file's manifest entry.
    task: AbortOnDrop<Result<FileMeta>>,
}

impl PipelinedWriter {
    fn start(mut file: FileWriter, table: &TableHandle) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(PIPELINE_CHUNKS);
        let store = table.storage.cold.store.clone();
        let task = AbortOnDrop::spawn(async move {
            while let Some(batch) = rx.recv().await {
                file.write(&batch).await?;
            }
            file.finish(store.as_ref()).await
        });
        Self {
            chunks: Some(tx),
            task,
        }
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let sent = match &self.chunks {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The task stopped early: its error says why.
        self.chunks = None;
        match self.task.join().await? {
            Err(e) => Err(e),
            Ok(_) => Err(Error::Corrupt {
                what: "a flush's file writer".into(),
                reason: "stopped before its last batch".into(),
            }),
        }
    }

    async fn finish(mut self) -> Result<FileMeta> {
        self.chunks = None;
        self.task.join().await?
    }
}

/// Flushes one scope of a table. The caller holds `table.maintenance`. Also says whether the
/// flushed rows were removed by one range delete: the caller then asks the engine to reclaim
/// them, once for all the scopes it flushes (see [`reclaim_flushed`]).
pub(crate) async fn flush_scope(
    table: &TableHandle,
    scope: &str,
    seq: &SeqGenerator,
    job: &str,
    cancel: &AtomicBool,
) -> Result<(FlushOutcome, bool)> {
    if table.buffered(scope) == 0 {
        return Ok((FlushOutcome::default(), false));
    }
    let (s0, generation) = {
        let _writes = table.write_lock.lock().await;
        (seq.next(), table.write_generation.load(Ordering::Acquire))
    };
    let def = table.definition();
    let prefix = table.scope_prefix(scope);
    let older = table.files(scope);
    let mut cursors: Vec<Option<KeyCursor>> = older.iter().map(|_| None).collect();
    let mut new_dvs: HashMap<i64, DeletionVector> = HashMap::new();
    let mut writer: Option<PipelinedWriter> = None;
    let mut outcome = FlushOutcome::default();
    // The hot keys this flush writes, back to back in one buffer; if no write happens before
    // the commit they are exactly the keys to remove, and the commit needs no second scan.
    let mut flushed_keys = KeyBuffer::default();

    let file_schema = writer::file_schema(&def);
    let kind = def.table_type;
    // Bytes of the live rows of the previous step: a bound for the next one's columns.
    let mut row_bytes = 0usize;
    let mut next = Some(ScanRequest::prefix(prefix.clone()).chunk_size(FLUSH_CHUNK));
    while let Some(request) = next {
        check_cancel(cancel, job)?;
        let first = flushed_keys.len();
        let hint = row_bytes.max(FLUSH_CHUNK * 16);
        let mut rows = FileRows::new(&def, &file_schema, FLUSH_CHUNK, hint)?;
        row_bytes = 0;
        next = table
            .storage
            .hot
            .scan_with(&table.hot, &request, &mut |key, value| {
                let (header, system) =
                    read_row_meta(value).map_err(|e| Error::decode("hot row", e))?;
                if system.seq > s0 {
                    // Written after the cut: stays hot for the next flush.
                    return Ok(());
                }
                flushed_keys.push(key);
                if !system.deleted {
                    row_bytes += value.len();
                    rows.push(
                        &def,
                        split_hot_key(kind, key).1,
                        value,
                        header.schema_version,
                    )?;
                }
                Ok(())
            })
            .await?;
        // Merge-join: every flushed key replaces the live row with that key in older files.
        for key in flushed_keys.keys_from(first) {
            let pk = split_hot_key(kind, key).1;
            for (i, file) in older.iter().enumerate() {
                if !file.meta.may_hold(pk) {
                    continue;
                }
                if cursors[i].is_none() {
                    cursors[i] = Some(KeyCursor::open(table, file.clone()).await?);
                }
                let cursor = cursors[i].as_mut().expect("opened just above");
                if let Some(pos) = cursor.seek(table, pk).await?
                    && !file.dv.contains(pos)
                    && new_dvs.entry(file.meta.id).or_default().insert(pos)
                {
                    outcome.deleted += 1;
                }
            }
        }
        if rows.is_empty() {
            // Only tombstones (or nothing before the cut): no rows for the file.
            continue;
        }
        if writer.is_none() {
            let file = FileWriter::create(table, scope, &def, seq.next())?;
            writer = Some(PipelinedWriter::start(file, table));
        }
        writer
            .as_mut()
            .expect("created just above")
            .write(rows.finish()?)
            .await?;
    }
    check_cancel(cancel, job)?;
    let file = match writer {
        Some(w) => Some(w.finish().await?),
        None => None,
    };
    failpoint("flush.before_commit");

    // Commit: manifest entry, deletion vectors and hot-row removal in one batch.
    let _commit = table.commit.write().await;
    let _writes = table.write_lock.lock().await;
    let mut batch = WriteBatch::new();
    let mut remaining = 0u64;
    let unchanged = table.write_generation.load(Ordering::Acquire) == generation;
    let ranged = unchanged && table.storage.hot.capabilities().delete_range;
    if ranged {
        // Nothing was written since the cut: the scope's hot entries are exactly the flushed
        // ones, so one range tombstone over them removes them (and spares later scans from
        // stepping over a million point tombstones).
        if let Some((first, last)) = flushed_keys.bounds() {
            let mut end = Vec::with_capacity(last.len() + 1);
            end.extend_from_slice(last);
            end.push(0);
            batch.delete_range(&table.hot, Bytes::copy_from_slice(first), end);
        }
    } else if unchanged {
        for key in flushed_keys.into_keys() {
            batch.delete(&table.hot, key);
        }
    }
    let mut next =
        (!unchanged).then(|| ScanRequest::prefix(prefix.clone()).chunk_size(FLUSH_CHUNK));
    while let Some(request) = next {
        let chunk = table.storage.hot.scan(&table.hot, &request).await?;
        next = chunk.resume;
        for (key, value) in chunk.entries {
            if TableHandle::system_of(&value)?.seq <= s0 {
                batch.ops.push(WriteOp::Delete {
                    partition: table.hot.clone(),
                    key,
                });
            } else {
                remaining += 1;
            }
        }
    }
    let mut grown: Vec<FileEntry> = Vec::new();
    for entry in &older {
        if let Some(added) = new_dvs.get(&entry.meta.id) {
            let mut dv = (*entry.dv).clone();
            dv.union_with(added);
            batch.ops.push(WriteOp::Put {
                partition: table.meta.clone(),
                key: dv_key(scope, entry.meta.id),
                value: dv.encode().into(),
            });
            grown.push(FileEntry {
                meta: entry.meta.clone(),
                dv: Arc::new(dv),
                pin: entry.pin.clone(),
            });
        }
    }
    if let Some(meta) = &file {
        batch.ops.push(WriteOp::Put {
            partition: table.meta.clone(),
            key: manifest_key(scope, meta.id),
            value: meta.encode().into(),
        });
        outcome.rows = meta.rows;
        outcome.bytes = meta.size;
        outcome.files = 1;
    }
    batch.ops.push(WriteOp::Put {
        partition: table.meta.clone(),
        key: counter_key(scope),
        value: Bytes::copy_from_slice(&remaining.to_le_bytes()),
    });
    table.storage.hot.batch(batch).await?;
    {
        let mut state = table.state.write();
        state.counters.insert(scope.to_owned(), remaining);
        let files = state.files.entry(scope.to_owned()).or_default();
        for g in grown {
            if let Some(f) = files.iter_mut().find(|f| f.meta.id == g.meta.id) {
                *f = g;
            }
        }
        if let Some(meta) = file {
            files.push(FileEntry::new(meta, DeletionVector::new()));
        }
    }
    failpoint("flush.after_commit");
    Ok((outcome, ranged))
}
