//! The two stages of a flush: hot entries decoded straight into the columns of a data file as
//! the scan visits them, and a writer task that encodes those batches into Parquet while the
//! scan goes on; plus the buffer of the keys a flush wrote.

use std::sync::Arc;

use arrow::array::BinaryBuilder;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::codec::BatchDecoder;
use crate::error::{Error, Result};
use crate::format::{FileMeta, FileWriter};
use crate::schema::TableDefinition;
use crate::spawn::AbortOnDrop;
use crate::table::TableHandle;
use crate::table::upgrade_hot_row;

/// Chunks that may wait between a flush's scan and its file writer: enough to ride out the
/// writer's pauses at row-group ends, few enough to keep a flush's memory small.
const PIPELINE_CHUNKS: usize = 8;

/// Keys stored back to back in one buffer (a flush of millions of rows holds their keys, not
/// one allocation per key).
#[derive(Default)]
pub(super) struct KeyBuffer {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl KeyBuffer {
    pub(super) fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    /// Keys pushed so far.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Key number `i`.
    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The number of `key`, when the keys were pushed in increasing order and it is one of
    /// them.
    pub(super) fn find(&self, key: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The first and the last key pushed.
    pub(super) fn bounds(&self) -> Option<(&[u8], &[u8])> {
        let last_end = *self.ends.last()?;
        let first_end = self.ends[0];
        let last_start = match self.ends.len() {
            1 => 0,
            n => self.ends[n - 2],
        };
        Some((&self.bytes[..first_end], &self.bytes[last_start..last_end]))
    }

    pub(super) fn into_keys(self) -> impl Iterator<Item = Bytes> {
        let bytes = Bytes::from(self.bytes);
        let starts = std::iter::once(0).chain(self.ends.clone());
        starts
            .zip(self.ends)
            .map(move |(start, end)| bytes.slice(start..end))
    }
}

/// Live hot rows of one flush step, decoded into the columns of a table file as the scan
/// visits them (no copy of the entries in between).
pub(super) struct FileRows {
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
    pub(super) fn new(
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
    pub(super) fn push(
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

    pub(super) fn is_empty(&self) -> bool {
        self.decoder.is_empty()
    }

    /// The rows as a batch of the file's schema.
    pub(super) fn finish(mut self) -> Result<RecordBatch> {
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
pub(super) struct PipelinedWriter {
    chunks: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    /// The file's manifest entry.
    task: AbortOnDrop<Result<FileMeta>>,
}

impl PipelinedWriter {
    pub(super) fn start(mut file: FileWriter, table: &TableHandle) -> Self {
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

    pub(super) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
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

    pub(super) async fn finish(mut self) -> Result<FileMeta> {
        self.chunks = None;
        self.task.join().await?
    }
}
