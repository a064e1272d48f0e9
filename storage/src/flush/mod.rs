//! Flush: a scope's buffered hot rows to a new sorted Parquet file, with deletion vectors for
//! the flushed rows they replace, committed in one atomic batch of the table's hot engine.
//!
//! 1. Under the write lock, take a sequence `s0`: every write with `_seq <= s0` has committed,
//!    every later write gets a larger `_seq`.
//! 2. Stream the scope's hot entries in key order, skipping those newer than `s0`. Live rows go
//!    to the new file; every entry (row or tombstone) is merge-joined against the older files'
//!    sorted `_key` columns (pruned by min/max and bloom filter) and the position it replaces is
//!    marked in that file's deletion vector. A tombstone of a key in no file just disappears.
//! 3. Commit in one batch: the file's manifest entry, the grown deletion vectors, the removal
//!    of the hot entries with `_seq <= s0` and the new row counter. A row written during the
//!    flush stays hot. A crash before the commit leaves an unreferenced file (collected later)
//!    and every row still hot; after it, the rows are in the file.

pub mod compact;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{Array, AsArray, BinaryArray};
use arrow::compute::filter_record_batch;
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;

use crate::backend::{ScanRequest, WriteBatch, WriteOp};
use crate::error::{Error, Result};
use crate::merge::dv::DeletionVector;
use crate::merge::hot_batch;
use crate::merge::object_reader::ObjectFileReader;
use crate::merge::read::{KEY_COLUMN, file_metadata, key_bloom};
use crate::schema::DELETED_COLUMN;
use crate::seq::SeqGenerator;
use crate::table::{FileEntry, TableHandle, counter_key, dv_key, manifest_key};
use writer::FileWriter;

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

/// A cursor over the sorted `_key` column of one older file, for the merge-join.
struct KeyCursor {
    entry: FileEntry,
    meta: ArrowReaderMetadata,
    mins: Vec<Option<Vec<u8>>>,
    maxes: Vec<Option<Vec<u8>>>,
    starts: Vec<u64>,
    key_index: usize,
    rg: usize,
    loaded: Option<(usize, BinaryArray)>,
}

impl KeyCursor {
    async fn open(table: &TableHandle, entry: FileEntry) -> Result<Self> {
        let meta = file_metadata(table, &entry).await?;
        let schema = meta.schema().clone();
        let key_index = schema.index_of(KEY_COLUMN).map_err(|_| Error::Corrupt {
            what: format!("file {} of table {}", entry.meta.path, table.id),
            reason: "no `_key` column".into(),
        })?;
        let row_groups = meta.metadata().row_groups();
        let conv = StatisticsConverter::try_new(KEY_COLUMN, &schema, meta.parquet_schema())
            .map_err(|source| Error::Parquet {
                op: format!("reading key statistics of {}", entry.meta.path),
                source,
            })?;
        let to_vec = |a: arrow::array::ArrayRef| -> Vec<Option<Vec<u8>>> {
            a.as_binary::<i32>()
                .iter()
                .map(|v| v.map(<[u8]>::to_vec))
                .collect()
        };
        let stats_err = |source| Error::Parquet {
            op: format!("reading key statistics of {}", entry.meta.path),
            source,
        };
        let mins = to_vec(conv.row_group_mins(row_groups.iter()).map_err(stats_err)?);
        let maxes = to_vec(conv.row_group_maxes(row_groups.iter()).map_err(stats_err)?);
        let mut starts = Vec::with_capacity(row_groups.len());
        let mut at = 0u64;
        for rg in row_groups {
            starts.push(at);
            at += rg.num_rows() as u64;
        }
        Ok(Self {
            entry,
            meta,
            mins,
            maxes,
            starts,
            key_index,
            rg: 0,
            loaded: None,
        })
    }

    fn reader(&self, table: &TableHandle) -> ObjectFileReader {
        crate::merge::read::reader(table, &self.entry)
    }

    /// The absolute position of `key` in the file, if the file holds it. Keys must be sought
    /// in increasing order.
    async fn seek(&mut self, table: &TableHandle, key: &[u8]) -> Result<Option<u64>> {
        let what = || format!("merge-joining keys of {}", self.entry.meta.path);
        let n = self.starts.len();
        while self.rg < n && self.maxes[self.rg].as_deref().is_some_and(|max| max < key) {
            self.rg += 1;
        }
        if self.rg == n || self.mins[self.rg].as_deref().is_some_and(|min| min > key) {
            return Ok(None);
        }
        let rg = self.rg;
        if self.loaded.as_ref().is_none_or(|(at, _)| *at != rg) {
            if let Some(bloom) = key_bloom(table, &self.entry, &self.meta, rg).await?
                && !bloom.check(key)
            {
                return Ok(None);
            }
            let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
                self.reader(table),
                self.meta.clone(),
            )
            .with_projection(ProjectionMask::roots(
                self.meta.parquet_schema(),
                [self.key_index],
            ))
            .with_row_groups(vec![rg])
            .with_batch_size(usize::MAX >> 1)
            .build()
            .map_err(|source| Error::Parquet { op: what(), source })?;
            let batches: Vec<_> = stream
                .try_collect()
                .await
                .map_err(|source| Error::Parquet { op: what(), source })?;
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(0).as_ref()).collect();
            let keys = arrow::compute::concat(&arrays).map_err(|source| Error::Arrow {
                op: "collecting a row group's keys",
                source,
            })?;
            self.loaded = Some((rg, keys.as_binary::<i32>().clone()));
        }
        let (_, keys) = self.loaded.as_ref().expect("loaded just above");
        let (mut lo, mut hi) = (0usize, keys.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if keys.value(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok((lo < keys.len() && keys.value(lo) == key).then(|| self.starts[rg] + lo as u64))
    }
}

/// Flushes one scope of a table. The caller holds `table.maintenance`.
pub(crate) async fn flush_scope(
    table: &TableHandle,
    scope: &str,
    seq: &SeqGenerator,
    job: &str,
    cancel: &AtomicBool,
) -> Result<FlushOutcome> {
    if table.buffered(scope) == 0 {
        return Ok(FlushOutcome::default());
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
    let mut writer: Option<FileWriter> = None;
    let mut outcome = FlushOutcome::default();
    // The hot keys this flush writes; if no write happens before the commit they are exactly
    // the keys to remove, and the commit needs no second scan.
    let mut flushed_keys: Vec<Bytes> = Vec::new();

    let mut next = Some(ScanRequest::prefix(prefix.clone()).chunk_size(FLUSH_CHUNK));
    while let Some(request) = next {
        check_cancel(cancel, job)?;
        let chunk = table.storage.hot.scan(&table.hot, &request).await?;
        next = chunk.resume;
        let entries: Vec<(Bytes, Bytes)> = chunk
            .entries
            .into_iter()
            .map(|(k, v)| Ok((TableHandle::system_of(&v)?.seq <= s0).then_some((k, v))))
            .filter_map(Result::transpose)
            .collect::<Result<_>>()?;
        if entries.is_empty() {
            continue;
        }
        flushed_keys.extend(entries.iter().map(|(k, _)| k.clone()));
        // Merge-join: every flushed key replaces the live row with that key in older files.
        for (key, _) in &entries {
            let pk = table.split_hot_key(key).1;
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
        let batch = hot_batch(table, &entries)?;
        let live = arrow::compute::not(
            batch
                .column_by_name(DELETED_COLUMN)
                .expect("hot_batch has `_deleted`")
                .as_boolean(),
        )
        .map_err(|source| Error::Arrow {
            op: "selecting live rows",
            source,
        })?;
        let live = filter_record_batch(&batch, &live).map_err(|source| Error::Arrow {
            op: "selecting live rows",
            source,
        })?;
        if live.num_rows() > 0 {
            if writer.is_none() {
                writer = Some(FileWriter::create(table, scope, &def, seq.next())?);
            }
            writer
                .as_mut()
                .expect("created just above")
                .write(&live)
                .await?;
        }
    }
    check_cancel(cancel, job)?;
    let file = match writer {
        Some(w) => Some(w.finish(table).await?),
        None => None,
    };
    failpoint("flush.before_commit");

    // Commit: manifest entry, deletion vectors and hot-row removal in one batch.
    let _commit = table.commit.write().await;
    let _writes = table.write_lock.lock().await;
    let mut batch = WriteBatch::new();
    let mut remaining = 0u64;
    let unchanged = table.write_generation.load(Ordering::Acquire) == generation;
    if unchanged {
        for key in flushed_keys {
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
    Ok(outcome)
}
