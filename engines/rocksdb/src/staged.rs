//! Staged batches: a large atomic write handed over in parts goes to sorted table files (one
//! `SstFileWriter` per partition, under `staged/` in the database directory) instead of a
//! `WriteBatch` in memory, and the commit ingests every file in one call, which RocksDB applies
//! atomically. Memory stays one block per partition, however many rows the write has. Files
//! of a write that never commits are removed when it is dropped, or at the next open after a
//! crash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use kalamstore_storage::backend::{Partition, StagedBatch, WriteBatch, WriteOp};
use kalamstore_storage::{Error, Result};
use rocksdb::{IngestExternalFileOptions, SstFileWriter};

use crate::RocksDbBackend;
use crate::error::{RocksDbError, rocks};
use crate::registry::KeyPrefix;

/// The directory of staged files, inside the database directory.
pub(crate) const STAGED_DIR: &str = "staged";

/// Removes what crashed writes left in `staged/` (called at open, before any write).
pub(crate) fn clear_staged(db_path: &Path) -> Result<()> {
    let dir = db_path.join(STAGED_DIR);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RocksDbError::CreateDir { path: dir, source }
            .during("removing the staged files of interrupted writes")),
    }
}

/// The file being written for one partition.
struct Open<'a> {
    writer: SstFileWriter<'a>,
    /// The last stored key written: a smaller one starts another file.
    last: Vec<u8>,
}

/// A [`StagedBatch`] of the RocksDB engine.
pub(crate) struct SstBatch<'a> {
    backend: &'a RocksDbBackend,
    open: HashMap<Partition, Open<'a>>,
    /// Every file written, finished or open.
    files: Vec<PathBuf>,
    /// The generation each staged partition had.
    generations: HashMap<Partition, u64>,
    key: Vec<u8>,
}

impl<'a> SstBatch<'a> {
    pub(crate) fn new(backend: &'a RocksDbBackend) -> Self {
        Self {
            backend,
            open: HashMap::new(),
            files: Vec::new(),
            generations: HashMap::new(),
            key: Vec::new(),
        }
    }

    /// A new file for `partition`, opened under `staged/`.
    fn start(&mut self, partition: &Partition) -> Result<Open<'a>> {
        let dir = self.backend.config.path.join(STAGED_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| {
            RocksDbError::CreateDir {
                path: dir.clone(),
                source,
            }
            .during("staging a large write")
        })?;
        let n = self.backend.staged_files.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}.sst", std::process::id()));
        let writer = SstFileWriter::create(&self.backend.sst_options);
        writer.open(&path).map_err(rocks(|| {
            format!("creating {} for {partition}", path.display())
        }))?;
        self.files.push(path);
        Ok(Open {
            writer,
            last: Vec::new(),
        })
    }

    /// The open file of `partition` that can take `key` next (stored form in `self.key`).
    fn file_for(&mut self, partition: &Partition, key: &[u8]) -> Result<&mut Open<'a>> {
        let prefix = self.prefix_of(partition)?;
        prefix.key_into(&mut self.key, key);
        let open = match self.open.remove(partition) {
            Some(open) if open.last.as_slice() < self.key.as_slice() => open,
            behind => {
                if let Some(mut done) = behind {
                    done.writer
                        .finish()
                        .map_err(rocks(|| format!("finishing a staged file of {partition}")))?;
                }
                self.start(partition)?
            }
        };
        let open = self.open.entry(partition.clone()).or_insert(open);
        open.last.clear();
        open.last.extend_from_slice(&self.key);
        Ok(open)
    }

    /// The key prefix of the generation `partition` had when this batch first wrote to it.
    fn prefix_of(&mut self, partition: &Partition) -> Result<KeyPrefix> {
        let generation = match self.generations.get(partition) {
            Some(g) => *g,
            None => {
                let g = self.backend.generation(partition)?;
                self.generations.insert(partition.clone(), g);
                g
            }
        };
        Ok(self.backend.layout.prefix(generation))
    }

    fn remove_files(&self) {
        for path in &self.files {
            // Already moved into the database, or never created: nothing to remove.
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait]
impl StagedBatch for SstBatch<'_> {
    async fn add(&mut self, part: WriteBatch) -> Result<()> {
        for op in part.ops() {
            match op {
                WriteOp::Put {
                    partition,
                    key,
                    value,
                } => {
                    let open = self.file_for(partition, key)?;
                    let stored = &open.last;
                    open.writer
                        .put(stored, value)
                        .map_err(rocks(|| format!("staging a put into {partition}")))?;
                }
                WriteOp::Delete { partition, key } => {
                    let open = self.file_for(partition, key)?;
                    let stored = &open.last;
                    open.writer
                        .delete(stored)
                        .map_err(rocks(|| format!("staging a delete in {partition}")))?;
                }
                WriteOp::DeleteRange {
                    partition,
                    start,
                    end,
                } if start < end => {
                    let stored_end = self.prefix_of(partition)?.key(end);
                    let open = self.file_for(partition, start)?;
                    open.writer
                        .delete_range(&open.last, &stored_end)
                        .map_err(rocks(|| format!("staging a range delete in {partition}")))?;
                }
                WriteOp::DeleteRange { .. } => {}
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        for (partition, mut open) in std::mem::take(&mut self.open) {
            open.writer
                .finish()
                .map_err(rocks(|| format!("finishing a staged file of {partition}")))?;
        }
        if self.files.is_empty() {
            return Ok(());
        }
        let db = self.backend.db()?;
        let cf = self.backend.layout.rows_family(&db)?;
        let mut options = IngestExternalFileOptions::default();
        options.set_move_files(true);
        // A drop between staging and now would leave the rows under a dead generation: hold
        // the registry while the files go in, and check it still names what was staged.
        let _registry = self.backend.registry_writes.lock();
        for (partition, generation) in &self.generations {
            if self.backend.generation(partition).ok() != Some(*generation) {
                return Err(Error::PartitionNotFound {
                    partition: partition.to_string(),
                });
            }
        }
        let files = self.files.clone();
        db.ingest_external_file_cf_opts(cf, &options, files)
            .map_err(rocks(|| {
                format!("ingesting {} staged files of a write", self.files.len())
            }))
    }
}

impl Drop for SstBatch<'_> {
    fn drop(&mut self) {
        self.remove_files();
    }
}
