//! Storage moves (`ALTER TABLE ... SET STORAGE`): a table's Parquet files, deletion vectors,
//! manifest, definition and buffered rows are copied to another storage and verified, the
//! catalog switches in one atomic write, and the source is removed.
//!
//! | step | what                                                    | writes | after a crash  |
//! |------|---------------------------------------------------------|--------|----------------|
//! | 1    | `sys.tasks` records the move (not switched)             | run    | rolled back    |
//! | 2    | remove leftovers of an earlier attempt from the target  | run    | rolled back    |
//! | 3    | copy + verify every Parquet file (size, CRC32, rows),   | run    | rolled back    |
//! |      | copy the Delta log                                      |        |                |
//! | 3b   | copy + verify the change log up to now                  | run    | rolled back    |
//! | 4    | copy + verify hot rows, the meta partition and the      | wait   | rolled back    |
//! |      | change log's tail                                       |        |                |
//! | 5    | one system batch: catalog -> target, task switched;     | wait   | finished       |
//! |      | the table opens on the target and publishes its log     |        |                |
//! | 6    | wait for readers of the old files, remove the source    | run    | finished       |
//! | 7    | delete the task record                                  | run    | (done)         |
//!
//! The move holds the table's maintenance lock throughout (no flush, compaction or ALTER
//! changes files or vectors meanwhile). Writes pause only during steps 4 and 5, which copy
//! the buffered rows (bounded by the flush policy); waiting writers then retry on the moved
//! table. Reads use the source until the switch and the target after it.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use tokio::io::AsyncWriteExt;

use super::probe::check_storage_handle;
use super::tasks::remove_table_data;
use super::{Store, TABLES, TASKS, sys};
use crate::backend::{KeyRange, Partition, ScanRequest, WriteBatch};
use crate::catalog::{JobKind, JobRecord, TableTask, TableTaskOp};
use crate::error::{Error, Result};
use crate::failpoint::crash_point;
use crate::format::{
    FileMeta, META_DEFINITION, META_DELTA_PENDING, MetaKey, ObjectFileReader, is_delta_log_file,
    log_key, table_dir,
};
use crate::ids::{StorageId, TableId};
use crate::job::JobContext;
use crate::job::JobOutcome;
use crate::schema::{DeltaPublishing, TableDefinition};
use crate::table::{READER_WAIT, StorageHandle, TableHandle};

/// Entries per batch when copying a partition.
const COPY_BATCH: usize = 1024;

/// Parquet files a move copies at once.
const COPY_CONCURRENCY: usize = 4;

impl Store {
    /// Moves a table with all its data to storage `to`, as a job (kind `move`). `Ok(None)`
    /// when the table already lives there. Fails before touching data when the target is
    /// unknown, cannot be opened, fails its write/read/list/delete check or shares a location
    /// with the source.
    pub async fn move_table(&self, table: &TableId, to: &StorageId) -> Result<Option<JobRecord>> {
        self.check_open()?;
        let handle = self.handle(table).await?;
        let from = handle.definition().storage_id.clone();
        if from == *to {
            return Ok(None);
        }
        let refuse = |reason: String| Error::MoveRefused {
            table: table.to_string(),
            storage: to.to_string(),
            reason,
        };
        let target = self.storage(to).await?;
        check_storage_handle(&target).await?;
        let source = handle.storage.clone();
        if Arc::ptr_eq(&source.hot, &target.hot) {
            return Err(refuse(format!(
                "it shares its hot engine with storage `{from}`"
            )));
        }
        if source.def.cold_url.trim_end_matches('/') == target.def.cold_url.trim_end_matches('/') {
            return Err(refuse(format!(
                "it shares its cold location {} with storage `{from}`",
                target.def.cold_url
            )));
        }
        let store = self.clone();
        let (table, to) = (table.clone(), to.clone());
        // The move takes the table's maintenance lock itself, after its checks.
        self.run_job(JobKind::Move, Some(table.clone()), None, None, move |job| {
            let (store, table, from, to) = (store.clone(), table.clone(), from.clone(), to.clone());
            let (source, target) = (source.clone(), target.clone());
            async move {
                store
                    .run_move(&table, &from, &to, &source, &target, &job)
                    .await
            }
        })
        .await
        .map(Some)
    }

    async fn run_move(
        &self,
        id: &TableId,
        from: &StorageId,
        to: &StorageId,
        source: &Arc<StorageHandle>,
        target: &Arc<StorageHandle>,
        job: &JobContext,
    ) -> Result<JobOutcome> {
        let handle = self.handle(id).await?;
        let _maintenance = handle.lock_files().await;
        handle.check_live()?;
        self.settle_task(id).await?;
        if !Arc::ptr_eq(&handle.storage, source) {
            return Err(Error::TableRetired {
                table: id.to_string(),
            });
        }
        let mut task = TableTask {
            job: job.id().to_owned(),
            table: id.clone(),
            op: TableTaskOp::Move {
                from: from.clone(),
                to: to.clone(),
                switched: false,
            },
        };
        self.put_task(&task).await?;
        crash_point("move.recorded");
        let copied = self
            .copy_and_switch(&handle, &mut task, source, target, job)
            .await;
        let outcome = match copied {
            Ok(outcome) => outcome,
            Err(e) => {
                // Nothing switched: the source is intact, the partial copy goes.
                remove_table_data(target, id).await?;
                self.delete_task(id).await?;
                return Err(e);
            }
        };
        crash_point("move.switched");
        // Opening the table on the target publishes its carried Delta log. The move is done
        // either way: a failed open is retried by the table's next use.
        if let Err(e) = self.handle(id).await {
            self.record_background_failure("delta publish", Some(id), &e);
        }
        // Readers that took a snapshot of the old handle finish before its data goes; ones
        // that outlive the wait leave the removal to the next cleanup or open (the task stays,
        // switched), as does a failed removal: the table already lives on the target.
        if !handle.pins.wait_for_readers(READER_WAIT).await
            || remove_table_data(source, id).await.is_err()
        {
            return Ok(outcome);
        }
        crash_point("move.source_removed");
        self.delete_task(id).await?;
        Ok(outcome)
    }

    /// Steps 2 to 5: copies and verifies everything, then switches the catalog.
    async fn copy_and_switch(
        &self,
        handle: &TableHandle,
        task: &mut TableTask,
        source: &StorageHandle,
        target: &StorageHandle,
        job: &JobContext,
    ) -> Result<JobOutcome> {
        let id = &handle.id;
        remove_table_data(target, id).await?;
        let mut outcome = JobOutcome::default();
        let files: Vec<FileMeta> = handle
            .state
            .read()
            .files
            .values()
            .flatten()
            .map(|f| f.meta.clone())
            .collect();
        let mut new_paths = HashMap::new();
        // Several files in flight at once: a copy is mostly waiting on the two stores.
        let copies: Vec<_> = files
            .iter()
            .map(|meta| copy_relocated(source, target, meta, id, job))
            .collect();
        let mut copies = futures::stream::iter(copies).buffer_unordered(COPY_CONCURRENCY);
        while let Some((meta, to_path)) = copies.try_next().await? {
            outcome.files += 1;
            outcome.bytes += meta.size;
            outcome.rows += meta.rows;
            new_paths.insert(meta.path.clone(), to_path);
            self.job_progress(job.id(), &outcome).await?;
        }
        drop(copies);
        copy_delta_log(source, target, id).await?;
        // The change log up to now while writes go on; its tail after they stop.
        let log_cut = Bytes::copy_from_slice(&log_key(handle.feed.committed()));
        let old_log = KeyRange::Range(Bound::Unbounded, Bound::Included(log_cut.clone()));
        copy_range(source, target, &handle.log, old_log, |k, v| Ok((k, v))).await?;
        self.inner
            .config
            .failpoints
            .hit("move.files_copied")
            .await?;

        // Writes wait from here to the switch.
        let _writes = handle.lock_rows().await;
        job.check_cancel()?;
        let def = TableDefinition {
            storage_id: target.def.id.clone(),
            ..(*handle.definition()).clone()
        };
        let hot_rows = copy_partition(source, target, &handle.hot, |k, v| Ok((k, v))).await?;
        let new_log = KeyRange::Range(Bound::Excluded(log_cut), Bound::Unbounded);
        copy_range(source, target, &handle.log, new_log, |k, v| Ok((k, v))).await?;
        let table = id.to_string();
        copy_partition(source, target, &handle.meta, |k, v| {
            if k.as_ref() == META_DEFINITION {
                return Ok((k, def.encode().into()));
            }
            if let MetaKey::File(..) = MetaKey::decode(&k, id)? {
                let mut meta = FileMeta::decode(&v, &table)?;
                meta.path = new_paths
                    .get(&meta.path)
                    .cloned()
                    .ok_or_else(|| Error::Corrupt {
                        what: format!("manifest of table {table}"),
                        reason: format!(
                            "file {} appeared during the move although flushes were held",
                            meta.path
                        ),
                    })?;
                return Ok((k, meta.encode().into()));
            }
            Ok((k, v))
        })
        .await?;
        if def.options.delta != DeltaPublishing::Off {
            // The target's log is brought up to date when the moved table is opened there.
            target
                .hot
                .put(
                    &handle.meta,
                    Bytes::from_static(META_DELTA_PENDING),
                    Bytes::new(),
                )
                .await?;
        }
        outcome.rows += hot_rows;
        self.inner.config.failpoints.hit("move.rows_copied").await?;

        // The switch: the catalog and the task flip together.
        if let TableTaskOp::Move { switched, .. } = &mut task.op {
            *switched = true;
        }
        let mut batch = WriteBatch::new();
        batch.put(&sys(TABLES), id.to_string(), def.encode());
        batch.put(&sys(TASKS), id.to_string(), task.encode());
        self.inner.system.batch(batch).await?;
        handle.retire();
        self.inner.tables.lock().await.remove(id);
        Ok(outcome)
    }
}

/// Copies the table's Delta log and deletion-vector files to the target: the moved table
/// keeps its log's history and table id. Paths inside the log are relative to the table's
/// directory, so they hold on the target as they are.
async fn copy_delta_log(
    source: &StorageHandle,
    target: &StorageHandle,
    id: &TableId,
) -> Result<()> {
    let dir = table_dir(&source.cold.prefix, id);
    let listed: Vec<_> = source
        .cold
        .store
        .list(Some(&ObjectPath::from(dir.as_str())))
        .try_collect()
        .await
        .map_err(os_err(format!("listing {dir}")))?;
    for object in listed {
        let from = object.location.to_string();
        if !is_delta_log_file(&from) {
            continue;
        }
        let to = relocate(source, target, &from, id)?;
        let what = format!("copying {from} of table {id} to {to}");
        let bytes = source
            .cold
            .store
            .get(&object.location)
            .await
            .map_err(os_err(what.clone()))?
            .bytes()
            .await
            .map_err(os_err(what.clone()))?;
        target
            .cold
            .store
            .put(&ObjectPath::from(to), bytes.into())
            .await
            .map_err(os_err(what))?;
    }
    Ok(())
}

/// The path of a source file under the target's cold prefix.
fn relocate(
    source: &StorageHandle,
    target: &StorageHandle,
    path: &str,
    id: &TableId,
) -> Result<String> {
    let relative = if source.cold.prefix.is_empty() {
        Some(path)
    } else {
        path.strip_prefix(source.cold.prefix.as_str())
            .and_then(|p| p.strip_prefix('/'))
    }
    .ok_or_else(|| Error::Corrupt {
        what: format!("manifest of table {id}"),
        reason: format!(
            "file {path} is outside the storage prefix {}",
            source.cold.prefix
        ),
    })?;
    Ok(if target.cold.prefix.is_empty() {
        relative.to_owned()
    } else {
        format!("{}/{relative}", target.cold.prefix)
    })
}

fn os_err(op: String) -> impl FnOnce(object_store::Error) -> Error {
    move |source| Error::ObjectStore { op, source }
}

/// Streams one object to `to` in the target, then verifies the copy: the same size, the same
/// CRC32 read back, and a Parquet footer with the manifest's row count.
/// Copies one file of table `id` to its place on `target`; returns it and its new path.
async fn copy_relocated<'a>(
    source: &StorageHandle,
    target: &StorageHandle,
    meta: &'a FileMeta,
    id: &TableId,
    job: &JobContext,
) -> Result<(&'a FileMeta, String)> {
    job.check_cancel()?;
    let to_path = relocate(source, target, &meta.path, id)?;
    copy_file(source, target, meta, &to_path, id).await?;
    Ok((meta, to_path))
}

async fn copy_file(
    source: &StorageHandle,
    target: &StorageHandle,
    meta: &FileMeta,
    to: &str,
    id: &TableId,
) -> Result<()> {
    let from = ObjectPath::from(meta.path.as_str());
    let to_path = ObjectPath::from(to);
    let what = format!("copying {} of table {id} to {to}", meta.path);
    let mut stream = std::pin::pin!(read_ranges(
        source.cold.store.clone(),
        from,
        meta.size,
        what.clone()
    ));
    let mut sink = object_store::buffered::BufWriter::new(target.cold.store.clone(), to_path);
    let mut crc = crc32fast::Hasher::new();
    let mut written = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        crc.update(&chunk);
        written += chunk.len() as u64;
        sink.write_all(&chunk).await.map_err(|source| Error::Io {
            op: what.clone(),
            source,
        })?;
    }
    sink.shutdown().await.map_err(|source| Error::Io {
        op: what.clone(),
        source,
    })?;
    let expected = crc.finalize();
    let corrupt = |reason: String| Error::Corrupt {
        what: format!("copy {to} of {} (table {id})", meta.path),
        reason,
    };
    if written != meta.size {
        return Err(corrupt(format!(
            "read {written} bytes, the manifest says {}",
            meta.size
        )));
    }
    let (read_back, crc_back) = checksum(&target.cold.store, to, meta.size).await?;
    if read_back != meta.size || crc_back != expected {
        return Err(corrupt(format!(
            "read back {read_back} bytes with CRC32 {crc_back:08x}, wrote {written} with \
             {expected:08x}"
        )));
    }
    let mut reader = ObjectFileReader::new(target.cold.store.clone(), to, meta.size);
    let footer = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|source| Error::Parquet {
            op: format!("reading the footer of {to} (table {id})"),
            source,
        })?;
    let rows = footer.metadata().file_metadata().num_rows();
    if u64::try_from(rows).ok() != Some(meta.rows) {
        return Err(corrupt(format!(
            "{rows} rows in the copy, {} in the manifest",
            meta.rows
        )));
    }
    Ok(())
}

/// Size and CRC32 of an object expected to hold `size` bytes, streamed.
async fn checksum(store: &Arc<dyn ObjectStore>, path: &str, size: u64) -> Result<(u64, u32)> {
    let what = format!("verifying {path}");
    let mut stream = std::pin::pin!(read_ranges(
        store.clone(),
        ObjectPath::from(path),
        size,
        what
    ));
    let mut crc = crc32fast::Hasher::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        crc.update(&chunk);
        n += chunk.len() as u64;
    }
    Ok((n, crc.finalize()))
}

/// Bytes per request when a move streams a file: a local store reads such a range in one call,
/// where its own streams come in 8 KiB pieces, each a blocking task of its own (most of a large
/// move's time).
const READ_CHUNK: u64 = 8 << 20;

/// The `size` bytes of `path` in ranged reads of [`READ_CHUNK`]; an object of another size is
/// an error.
fn read_ranges(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
    what: String,
) -> impl futures::Stream<Item = Result<Bytes>> {
    futures::stream::try_unfold(0u64, move |at| {
        let (store, path, what) = (store.clone(), path.clone(), what.clone());
        async move {
            if at >= size {
                return Ok(None);
            }
            let end = (at + READ_CHUNK).min(size);
            let options = GetOptions {
                range: Some(GetRange::Bounded(at..end)),
                ..GetOptions::default()
            };
            let got = store
                .get_opts(&path, options)
                .await
                .map_err(os_err(what.clone()))?;
            if got.meta.size != size {
                return Err(Error::Corrupt {
                    what: format!("{what}: {path}"),
                    reason: format!("{} bytes, the manifest says {size}", got.meta.size),
                });
            }
            let bytes = got.bytes().await.map_err(os_err(what))?;
            Ok(Some((bytes, end)))
        }
    })
}

/// Copies a partition entry by entry (`map` may rewrite an entry), then verifies the target
/// holds exactly the mapped entries (count and CRC32 over keys and values). Returns the count.
async fn copy_partition(
    source: &StorageHandle,
    target: &StorageHandle,
    partition: &Partition,
    map: impl Fn(Bytes, Bytes) -> Result<(Bytes, Bytes)>,
) -> Result<u64> {
    copy_range(source, target, partition, KeyRange::All, map).await
}

/// [`copy_partition`] of the keys in `range` only.
async fn copy_range(
    source: &StorageHandle,
    target: &StorageHandle,
    partition: &Partition,
    range: KeyRange,
    map: impl Fn(Bytes, Bytes) -> Result<(Bytes, Bytes)>,
) -> Result<u64> {
    target.hot.create_partition(partition).await?;
    let mut expected = EntryDigest::default();
    let mut next = Some(ScanRequest::new(range.clone()).chunk_size(COPY_BATCH));
    while let Some(request) = next {
        let chunk = source.hot.scan(partition, &request).await?;
        next = chunk.resume;
        let mut batch = WriteBatch::new();
        for (k, v) in chunk.entries {
            let (k, v) = map(k, v)?;
            expected.add(&k, &v);
            batch.put(partition, k, v);
        }
        if !batch.is_empty() {
            target.hot.batch(batch).await?;
        }
    }
    let mut actual = EntryDigest::default();
    let mut next = Some(ScanRequest::new(range).chunk_size(COPY_BATCH));
    while let Some(request) = next {
        let chunk = target.hot.scan(partition, &request).await?;
        next = chunk.resume;
        for (k, v) in &chunk.entries {
            actual.add(k, v);
        }
    }
    if actual != expected {
        return Err(Error::Corrupt {
            what: format!(
                "copy of partition {partition} in storage `{}`",
                target.def.id
            ),
            reason: format!(
                "{} entries with CRC32 {:08x} read back, {} with {:08x} written",
                actual.entries,
                actual.crc.clone().finalize(),
                expected.entries,
                expected.crc.clone().finalize()
            ),
        });
    }
    Ok(expected.entries)
}

/// Count and CRC32 of a sequence of entries, each as key length, key, value length, value.
#[derive(Default, Clone)]
struct EntryDigest {
    entries: u64,
    crc: crc32fast::Hasher,
}

impl EntryDigest {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.entries += 1;
        self.crc.update(&(key.len() as u64).to_le_bytes());
        self.crc.update(key);
        self.crc.update(&(value.len() as u64).to_le_bytes());
        self.crc.update(value);
    }
}

impl PartialEq for EntryDigest {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.crc.clone().finalize() == other.crc.clone().finalize()
    }
}
