//! A statement's write batch while its chunks are staged (`Commit`): encoded rows and
//! tombstones, change-log entries, hidden rows and the scope's counter, handed to the engine's
//! staged batch as they are made or kept for one batch, then committed and applied to the
//! table's state and feed.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{NewRow, Staged, Tombstones, decode_encoded, encoded_row};
use crate::backend::{StagedBatch, WriteBatch};
use crate::codec::{EncodedRows, KalamValue, Row, SystemColumns, set_system_columns};
use crate::error::Result;
use crate::format::{
    Change, ChangeOp, DeletionVector, EntryWriter, Hidden, Image, hidden_key, log_key,
};
use crate::ids::KeyScope;
use crate::schema::TableDefinition;
use crate::seq::SeqGenerator;
use crate::table::TableHandle;

/// One chunk's writes while they are staged: their `_seq`s, and their keys and encoded rows
/// in one buffer (`spans`: each write's key and row in it).
pub(super) struct Chunk {
    seqs: std::vec::IntoIter<i64>,
    buffer: Vec<u8>,
    spans: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

/// A statement's write batch while its chunks are staged: every chunk's rows and tombstones
/// encoded into a buffer of its own (the ops slice it), its change-log entries, the flushed
/// rows it hides and the scope's running counter; committed as one engine batch.
pub(super) struct Commit<'t, 'k> {
    table: &'t TableHandle,
    def: &'t TableDefinition,
    scope: &'t KeyScope,
    tombstones: Tombstones,
    updated: i64,
    count: crate::format::HotCount,
    batch: WriteBatch,
    log: Option<EntryWriter>,
    /// Whether inserts and updates log their new rows by reference (see `format::changelog`):
    /// not in STREAM tables, whose rows expire without a change.
    by_reference: bool,
    /// Every flushed row the statement hides, by file (for the table's state after the
    /// commit; a bitmap, so a million hidden rows take a few MB, not 16 bytes each).
    hidden: BTreeMap<i64, DeletionVector>,
    /// Hidden rows whose `h` entries are not yet in the batch or handed to `staged`.
    pending_hidden: Vec<(&'k [u8], Hidden)>,
    ring: Option<Vec<Change>>,
    last_seq: Option<i64>,
    /// The chunks' `_seq` ranges stay in flight until the commit (multi-table readers wait).
    in_flight: Vec<crate::seq::InFlight<'t>>,
    /// A statement of many keys in increasing order hands each chunk's ops to the engine as
    /// it is staged (RocksDB: sorted files ingested at the commit), so the encoded batch is
    /// not held in memory either.
    staged: Option<Box<dyn StagedBatch + 't>>,
    /// Whether some op was handed to `staged`.
    wrote: bool,
}

impl<'t, 'k> Commit<'t, 'k> {
    pub(super) fn new(
        table: &'t TableHandle,
        def: &'t TableDefinition,
        scope: &'t KeyScope,
    ) -> Self {
        let logging = def.options.change_retention.is_on();
        let updated = table.storage.clock.now_nanos();
        Self {
            table,
            def,
            scope,
            tombstones: Tombstones::new(def),
            updated,
            count: table.hot_count(scope),
            batch: WriteBatch::new(),
            log: logging.then(|| EntryWriter::new(scope.as_str(), updated)),
            by_reference: def.table_type != crate::schema::TableType::Stream,
            hidden: BTreeMap::new(),
            pending_hidden: Vec::new(),
            ring: table.feed.wants_changes().then(Vec::new),
            last_seq: None,
            in_flight: Vec::new(),
            staged: None,
            wrote: false,
        }
    }

    /// Hands every chunk to the engine's staged batch as it is encoded.
    pub(super) async fn stage_in_engine(&mut self) -> Result<()> {
        self.staged = Some(self.table.storage.hot.staged_batch().await?);
        Ok(())
    }

    /// Adds the `h` entries of the pending hidden rows to the batch.
    pub(super) fn batch_hidden(&mut self) {
        for (pk, at) in self.pending_hidden.drain(..) {
            self.batch
                .put(&self.table.meta, hidden_key(self.scope, pk), at.encode());
        }
    }

    /// Moves what is ready (the batch's ops, closed log entries, new hidden rows) into the
    /// engine's staged batch, when there is one.
    pub(super) async fn hand_over(&mut self) -> Result<()> {
        if self.staged.is_none() {
            return Ok(());
        }
        let table = self.table;
        if let Some(log) = &mut self.log {
            for (first, value) in log.take_closed() {
                self.batch
                    .put_bytes(&table.log, log_key(first), value.into());
            }
        }
        self.batch_hidden();
        self.wrote |= !self.batch.is_empty();
        let part = std::mem::take(&mut self.batch);
        match &mut self.staged {
            Some(staged) => staged.add(part).await,
            None => Ok(()),
        }
    }

    /// Starts a chunk of at most `n` writes whose keys and rows take about `bytes`: each
    /// write's `_seq` is taken now, in order, and stays in flight until the commit.
    pub(super) fn start_chunk(&mut self, seq: &'t SeqGenerator, n: usize, bytes: usize) -> Chunk {
        let (seqs, in_flight) = seq.take_tracked(n);
        self.in_flight.push(in_flight);
        Chunk {
            seqs: seqs.into_iter(),
            buffer: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(n),
        }
    }

    /// Hands a chunk's rows and tombstones to the batch (and what is ready to the engine's
    /// staged batch).
    pub(super) async fn end_chunk(&mut self, chunk: Chunk) -> Result<()> {
        if chunk.spans.is_empty() {
            return Ok(());
        }
        self.batch
            .put_slices(&self.table.hot, Bytes::from(chunk.buffer), chunk.spans);
        self.hand_over().await
    }

    /// The chunk's next `_seq`.
    fn next_seq(&self, chunk: &mut Chunk) -> Result<i64> {
        chunk
            .seqs
            .next()
            .ok_or_else(|| crate::error::Error::Corrupt {
                what: format!("the write batch of table {}", self.def.id),
                reason: "a chunk staged more writes than it has keys".into(),
            })
    }

    /// Puts a new row (`row`, encoded when planned) of key `key`, which had no row before,
    /// into `chunk` with the chunk's next `_seq`, and logs its insert: the common write,
    /// without the bookkeeping of [`put`](Self::put).
    pub(super) fn put_new(
        &mut self,
        chunk: &mut Chunk,
        key: &'k [u8],
        prefix_len: usize,
        row: &[u8],
    ) -> Result<()> {
        let seq = self.next_seq(chunk)?;
        self.count.entries += 1;
        let system = SystemColumns {
            seq,
            updated: self.updated,
            deleted: false,
        };
        let Chunk { buffer, spans, .. } = chunk;
        let at = buffer.len();
        buffer.extend_from_slice(key);
        let key_end = buffer.len();
        buffer.extend_from_slice(row);
        set_system_columns(&mut buffer[key_end..], &system);
        spans.push((at..key_end, key_end..buffer.len()));
        let pk = &key[prefix_len..];
        self.log_change(ChangeOp::Insert, pk, system, &buffer[key_end..], None, None)
    }

    /// Encodes one staged write of key `key` (whose first `prefix_len` bytes are the
    /// scope's; a row encoded from the statement points into `encoded`) into `chunk`, with
    /// the chunk's next `_seq`, and its change-log entry.
    pub(super) fn put(
        &mut self,
        chunk: &mut Chunk,
        key: &'k [u8],
        prefix_len: usize,
        write: Staged,
        encoded: &EncodedRows,
    ) -> Result<()> {
        let def = self.def;
        let seq = self.next_seq(chunk)?;
        let Chunk { buffer, spans, .. } = chunk;
        let deleted = write.row.is_none();
        let count = &mut self.count;
        count.entries += u64::from(!write.was_hot);
        count.tombstones += u64::from(deleted);
        count.tombstones = count
            .tombstones
            .saturating_sub(u64::from(write.was_hot && write.was_tombstone));
        if let Some(at) = write.hides {
            self.hidden.entry(at.file).or_default().insert(at.position);
            self.pending_hidden.push((&key[prefix_len..], at));
        }
        let change = match (self.log.is_some(), deleted, write.existed) {
            (false, ..) | (true, true, false) => None,
            (true, true, true) => Some(ChangeOp::Delete),
            (true, false, true) => Some(ChangeOp::Update),
            (true, false, false) => Some(ChangeOp::Insert),
        };
        let system = SystemColumns {
            seq,
            updated: self.updated,
            deleted,
        };
        let logged = change.map(|op| (op, write.old));
        let at = buffer.len();
        buffer.extend_from_slice(key);
        let key_end = buffer.len();
        let row = match write.row {
            Some(NewRow::Values(values)) => Some(values),
            Some(NewRow::Encoded(row)) => {
                buffer.extend_from_slice(encoded_row(encoded, row)?);
                set_system_columns(&mut buffer[key_end..], &system);
                None
            }
            // A tombstone keeps the key columns, so a flush can still read its key.
            None => Some(self.tombstones.values(&key[prefix_len..])?),
        };
        let new_values = match row {
            Some(values) => {
                let row = Row {
                    schema_version: def.schema.version,
                    values,
                    system,
                };
                row.encode_into(buffer);
                Some(row.values)
            }
            None => None,
        };
        spans.push((at..key_end, key_end..buffer.len()));
        let Some((op, old)) = logged else {
            return Ok(());
        };
        let old_row = old.map(|values| Row {
            schema_version: def.schema.version,
            values,
            system,
        });
        let pk = &key[prefix_len..];
        self.log_change(op, pk, system, &buffer[key_end..], old_row, new_values)
    }

    /// Logs change `op` of key `pk` (its new row `row` as written, with `system`; `old_row`
    /// the row it replaced or removed; `new_values` the new row's values when at hand) and
    /// hands it to the feed's ring. No-op when the change log is off.
    fn log_change(
        &mut self,
        op: ChangeOp,
        pk: &[u8],
        system: SystemColumns,
        row: &[u8],
        old_row: Option<Row>,
        new_values: Option<Vec<KalamValue>>,
    ) -> Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        // A delete logs the row it removed; an update the row it replaced. Their new rows
        // are the table's (by reference) unless rows can vanish without a change.
        match (op, &old_row) {
            (ChangeOp::Delete, Some(removed)) => {
                log.push(system.seq, op, pk, Image::Row(removed), None)
            }
            _ if self.by_reference && op != ChangeOp::Delete => {
                log.push(system.seq, op, pk, Image::Reference, old_row.as_ref())
            }
            _ => log.push(system.seq, op, pk, Image::Encoded(row), old_row.as_ref()),
        }
        self.last_seq = Some(system.seq);
        if let Some(ring) = &mut self.ring {
            // Rows encoded from a batch are decoded for the feed's ring only.
            let new_values = match new_values {
                Some(values) => values,
                None => decode_encoded(row)?,
            };
            let (values, old) = match op {
                ChangeOp::Delete => (old_row.map(|r| r.values).unwrap_or(new_values), None),
                _ => (new_values, old_row.map(|r| r.values)),
            };
            ring.push(Change {
                seq: system.seq,
                op,
                user: self.scope.user().cloned(),
                values,
                old,
                updated: self.updated,
            });
        }
        Ok(())
    }

    /// Commits the batch with its log entries (each keyed by its first seq), hidden rows and
    /// the scope's counter, then applies them to the table's state and feed.
    pub(super) async fn finish(mut self) -> Result<()> {
        if self.batch.is_empty() && !self.wrote {
            return Ok(());
        }
        let table = self.table;
        for (first, value) in self.log.take().map(EntryWriter::finish).unwrap_or_default() {
            self.batch
                .put_bytes(&table.log, log_key(first), value.into());
        }
        self.batch_hidden();
        table.put_counter(&mut self.batch, self.scope, self.count);
        let batch = std::mem::take(&mut self.batch);
        match self.staged.take() {
            Some(mut staged) => {
                staged.add(batch).await?;
                staged.commit().await?;
            }
            None => table.storage.hot.batch(batch).await?,
        }
        table
            .write_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        {
            let mut state = table.state.write();
            state.set_count(self.scope, self.count);
            state.hide_by_file(self.scope, &self.hidden);
        }
        if let Some(last) = self.last_seq {
            table.feed.publish(last, self.ring);
        }
        drop(self.in_flight);
        Ok(())
    }
}
