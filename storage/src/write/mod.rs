//! The write path: resolves a batch of mutations to keys, reads the current rows of all of them
//! at once (hot engine, then flushed files), and commits the new rows, tombstones, the flushed
//! rows they hide (`h` entries: reads then skip those rows without looking at hot keys) and
//! the scope's buffered-entry count and the change-log entry of its changes in one atomic
//! batch.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::MutexGuard;

use crate::backend::{WriteBatch, WriteOp};
use crate::codec::{KalamValue, Row, SystemColumns};
use crate::error::Result;
use crate::format::{Change, ChangeOp, EntryWriter, Hidden, Image, hidden_key, log_key};
use crate::ids::{KeyScope, UserId};
use crate::merge::{FlushedRow, get_flushed_many};
use crate::schema::TableDefinition;
use crate::seq::SeqGenerator;
use crate::table::TableHandle;

mod rows;

use rows::Tombstones;

/// One change to a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Adds a row; an existing key is an error. Omitted columns take their default or NULL.
    Insert(Vec<(String, KalamValue)>),
    /// Adds or replaces a row.
    Upsert(Vec<(String, KalamValue)>),
    /// Changes columns of the row with this primary key, if it exists.
    Update {
        /// Primary-key values, in key column order.
        key: Vec<KalamValue>,
        /// New values.
        set: Vec<(String, KalamValue)>,
    },
    /// Deletes the row with this primary key, if it exists.
    Delete {
        /// Primary-key values, in key column order.
        key: Vec<KalamValue>,
    },
}

/// How [`Store::write_batch`](crate::Store::write_batch) treats a row whose key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// An existing key is an error (`INSERT`).
    Insert,
    /// An existing key's row is replaced (`REPLACE`, upsert).
    Upsert,
}

/// What a write applies: mutations, or the rows of a batch (a column per table column, in
/// table order, of the columns' arrow types), read straight from the columns: no column names
/// per value, no matching.
#[derive(Debug)]
pub(crate) enum Rows<'a> {
    Mutations(Vec<Mutation>),
    Batch(&'a arrow::record_batch::RecordBatch, BatchMode),
}

/// What a write changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Rows inserted (incl. upserts of new keys).
    pub inserted: u64,
    /// Rows replaced or changed.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
}

/// A mutation resolved to its row (inserts and upserts) or its change.
enum Planned {
    Insert(Vec<KalamValue>),
    Upsert(Vec<KalamValue>),
    Update(Vec<(String, KalamValue)>),
    Delete,
}

/// The hot keys of a batch's mutations (scope prefix + primary key), back to back in one
/// buffer, in mutation order.
struct BatchKeys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    prefix_len: usize,
}

impl BatchKeys {
    /// Every hot key, in mutation order.
    fn all(&self) -> Vec<&[u8]> {
        let mut out = Vec::with_capacity(self.ends.len());
        let mut start = 0;
        for end in &self.ends {
            out.push(&self.bytes[start..*end]);
            start = *end;
        }
        out
    }
}

/// What the keys of a batch hold before it: the hot entry of each mutation's key, and the
/// live flushed rows of the keys that are not hot.
struct CurrentRows {
    hot: Vec<Option<Bytes>>,
    flushed: HashMap<Vec<u8>, FlushedRow>,
    /// Whether some key appears in more than one mutation.
    repeated: bool,
}

/// One write the batch makes.
struct Staged {
    /// The mutation whose hot key it writes.
    mutation: usize,
    /// The new row; `None` for a tombstone.
    row: Option<Vec<KalamValue>>,
    /// Whether the key was hot before the batch (the scope's counter does not grow then).
    was_hot: bool,
    /// Whether that hot entry was a tombstone.
    was_tombstone: bool,
    /// The live flushed row of the key, when it was not hot: the write hides it.
    hides: Option<Hidden>,
    /// Whether the key had a live row before the batch (the change log's insert/update).
    existed: bool,
    /// The row an update or delete replaced, for the change log (`None` when it is off).
    old: Option<Vec<KalamValue>>,
}

impl TableHandle {
    /// Takes the table's write lock; fails with [`Error::TableRetired`] when the table left
    /// this handle's storage (the caller retries on the table's new handle).
    pub(crate) async fn lock_writes(&self) -> Result<MutexGuard<'_, ()>> {
        let guard = self.lock_rows().await;
        self.check_live()?;
        Ok(guard)
    }

    /// Applies mutations atomically: all of them or none. Each write gets its own `_seq`.
    /// `_writes` is this table's write lock (see [`TableHandle::lock_writes`]), so neither a
    /// move nor an ALTER can swap the table away underneath.
    pub(crate) async fn write(
        &self,
        _writes: MutexGuard<'_, ()>,
        seq: &SeqGenerator,
        user: Option<&UserId>,
        rows: Rows<'_>,
    ) -> Result<WriteSummary> {
        let scope = self.scope(user)?;
        // Read under the lock: ALTER TABLE swaps the definition while holding it.
        let def = self.definition();
        let (keys, planned) = match rows {
            Rows::Mutations(mutations) => self.plan_mutations(&def, &scope, mutations)?,
            Rows::Batch(batch, mode) => self.plan_batch(&def, &scope, batch, mode)?,
        };
        let current = self.read_current(&scope, &keys).await?;
        let (staged, summary) = self.stage(&def, &keys, planned, &current)?;
        if !staged.is_empty() {
            self.commit_staged(&def, &scope, seq, &keys, staged).await?;
        }
        Ok(summary)
    }

    /// Resolves every row of `batch` to its hot key and its values, checking them as
    /// [`plan_mutations`](Self::plan_mutations) checks named rows.
    fn plan_batch(
        &self,
        def: &TableDefinition,
        scope: &KeyScope,
        batch: &arrow::record_batch::RecordBatch,
        mode: BatchMode,
    ) -> Result<(BatchKeys, Vec<Planned>)> {
        let columns = def.columns();
        let schema = batch.schema();
        let matches = schema.fields().len() == columns.len()
            && schema
                .fields()
                .iter()
                .zip(columns)
                .all(|(f, c)| *f.name() == c.name);
        if !matches {
            let given: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(crate::error::Error::InvalidQuery {
                table: def.id.to_string(),
                reason: format!(
                    "a batch of columns ({}) is not a row of every column in table order ({})",
                    given.join(", "),
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let prefix = self.scope_prefix(scope);
        let n = batch.num_rows();
        let mut keys = BatchKeys {
            bytes: Vec::with_capacity(n * (prefix.len() + 16)),
            ends: Vec::with_capacity(n),
            prefix_len: prefix.len(),
        };
        let mut planned = Vec::with_capacity(n);
        for i in 0..n {
            let row = self.row_at(def, batch.columns(), i)?;
            keys.bytes.extend_from_slice(&prefix);
            self.key_of_row(def, &row, &mut keys.bytes)?;
            keys.ends.push(keys.bytes.len());
            planned.push(match mode {
                BatchMode::Insert => Planned::Insert(row),
                BatchMode::Upsert => Planned::Upsert(row),
            });
        }
        Ok((keys, planned))
    }

    /// Resolves every mutation to its hot key, checking rows as it goes.
    fn plan_mutations(
        &self,
        def: &TableDefinition,
        scope: &KeyScope,
        mutations: Vec<Mutation>,
    ) -> Result<(BatchKeys, Vec<Planned>)> {
        let prefix = self.scope_prefix(scope);
        let mut keys = BatchKeys {
            bytes: Vec::with_capacity(mutations.len() * (prefix.len() + 16)),
            ends: Vec::with_capacity(mutations.len()),
            prefix_len: prefix.len(),
        };
        let mut planned = Vec::with_capacity(mutations.len());
        for mutation in mutations {
            keys.bytes.extend_from_slice(&prefix);
            planned.push(match mutation {
                Mutation::Insert(named) => {
                    let row = self.row_from_named(def, named, None)?;
                    self.key_of_row(def, &row, &mut keys.bytes)?;
                    Planned::Insert(row)
                }
                Mutation::Upsert(named) => {
                    let row = self.row_from_named(def, named, None)?;
                    self.key_of_row(def, &row, &mut keys.bytes)?;
                    Planned::Upsert(row)
                }
                Mutation::Update { key, set } => {
                    keys.bytes
                        .extend_from_slice(&self.encode_primary_key(&key)?);
                    Planned::Update(set)
                }
                Mutation::Delete { key } => {
                    keys.bytes
                        .extend_from_slice(&self.encode_primary_key(&key)?);
                    Planned::Delete
                }
            });
            keys.ends.push(keys.bytes.len());
        }
        Ok((keys, planned))
    }

    /// Reads what the batch's keys hold: their hot entries in one `get_many`, then the
    /// flushed rows of the keys that are not hot in one pass over the files.
    async fn read_current(&self, scope: &KeyScope, keys: &BatchKeys) -> Result<CurrentRows> {
        let asked = keys.all();
        // Bulk inserts come in key order: their keys go to the engine as they are (new keys
        // past the stored ones: a single seek).
        let in_order = asked.windows(2).all(|w| w[0] < w[1]);
        let (hot, repeated) = if in_order {
            (self.storage.hot.get_many(&self.hot, &asked).await?, false)
        } else {
            let mut sorted = asked.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let values = self.storage.hot.get_many(&self.hot, &sorted).await?;
            let mut hot = Vec::with_capacity(asked.len());
            for k in &asked {
                let value = sorted
                    .binary_search(k)
                    .ok()
                    .and_then(|at| values.get(at).cloned())
                    .flatten();
                hot.push(value);
            }
            (hot, sorted.len() < asked.len())
        };
        let cold: Vec<&[u8]> = asked
            .iter()
            .zip(&hot)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| &k[keys.prefix_len..])
            .collect();
        let flushed = get_flushed_many(self, scope, &cold).await?;
        Ok(CurrentRows {
            hot,
            flushed,
            repeated,
        })
    }

    /// Applies each mutation to the key's current row (or the batch's earlier write of the
    /// key): the writes to make and what they change.
    fn stage(
        &self,
        def: &TableDefinition,
        keys: &BatchKeys,
        planned: Vec<Planned>,
        current: &CurrentRows,
    ) -> Result<(Vec<Staged>, WriteSummary)> {
        let asked = keys.all();
        let mut staged: Vec<Staged> = Vec::with_capacity(planned.len());
        // Only a batch that writes a key twice needs to find a key's earlier write; the
        // others just keep their order.
        let mut slots: Option<HashMap<&[u8], usize>> = current.repeated.then(HashMap::new);
        let mut summary = WriteSummary::default();
        let logging = def.options.change_retention.is_on();
        for (i, plan) in planned.into_iter().enumerate() {
            let key = &asked[i][keys.prefix_len..];
            let slot = slots.as_ref().and_then(|s| s.get(key).copied());
            let mut before_batch = None;
            let (row_now, was_hot, was_tombstone, hides) = match slot {
                Some(at) => {
                    let earlier = &staged[at];
                    before_batch = Some((earlier.existed, earlier.old.clone()));
                    let before = (earlier.was_hot, earlier.was_tombstone, earlier.hides);
                    (earlier.row.clone(), before.0, before.1, before.2)
                }
                None => match &current.hot[i] {
                    Some(bytes) => {
                        let tombstone = Self::system_of(bytes)?.deleted;
                        (self.hot_values(bytes)?, true, tombstone, None)
                    }
                    None => match current.flushed.get(key) {
                        Some(f) => (Some(f.values.clone()), false, false, Some(f.at)),
                        None => (None, false, false, None),
                    },
                },
            };
            // The log records one change per key and batch, against the row before the batch.
            let (existed, old) = match before_batch {
                Some(before) => before,
                None if logging => (row_now.is_some(), row_now.clone()),
                None => (row_now.is_some(), None),
            };
            let row = match plan {
                Planned::Insert(row) => {
                    if row_now.is_some() {
                        return Err(self.duplicate(def, &row));
                    }
                    summary.inserted += 1;
                    Some(row)
                }
                Planned::Upsert(row) => {
                    if row_now.is_some() {
                        summary.updated += 1;
                    } else {
                        summary.inserted += 1;
                    }
                    Some(row)
                }
                Planned::Update(set) => {
                    let Some(row_now) = row_now else { continue };
                    summary.updated += 1;
                    Some(self.row_from_named(def, set, Some(row_now))?)
                }
                Planned::Delete => {
                    if row_now.is_none() {
                        continue;
                    }
                    summary.deleted += 1;
                    None
                }
            };
            let write = Staged {
                mutation: i,
                row,
                was_hot,
                was_tombstone,
                hides,
                existed,
                old,
            };
            match slot {
                Some(at) => staged[at] = write,
                None => {
                    if let Some(slots) = &mut slots {
                        slots.insert(key, staged.len());
                    }
                    staged.push(write);
                }
            }
        }
        Ok((staged, summary))
    }

    /// Encodes the staged rows and tombstones and commits them with the scope's new counter
    /// and their change-log entries in one batch. Every key and row goes into one buffer the
    /// ops share, every log entry into a second one.
    async fn commit_staged(
        &self,
        def: &TableDefinition,
        scope: &KeyScope,
        seq: &SeqGenerator,
        keys: &BatchKeys,
        staged: Vec<Staged>,
    ) -> Result<()> {
        let asked = keys.all();
        let updated = self.storage.clock.now_nanos();
        let tombstones = Tombstones::new(def);
        let staged_len = staged.len();
        let logging = def.options.change_retention.is_on();
        let mut count = self.hot_count(scope);
        let mut hidden: Vec<(&[u8], Hidden)> = Vec::new();
        let mut rows = Vec::with_capacity(staged_len);
        // In flight until this function returns: multi-table readers wait for the commit.
        let (seqs, _in_flight) = seq.take_tracked(staged_len);
        for (write, seq) in staged.into_iter().zip(seqs) {
            let deleted = write.row.is_none();
            count.entries += u64::from(!write.was_hot);
            count.tombstones += u64::from(deleted);
            count.tombstones = count
                .tombstones
                .saturating_sub(u64::from(write.was_hot && write.was_tombstone));
            if let Some(at) = write.hides {
                hidden.push((&asked[write.mutation][keys.prefix_len..], at));
            }
            let change = match (logging, deleted, write.existed) {
                (false, ..) | (true, true, false) => None,
                (true, true, true) => Some(ChangeOp::Delete),
                (true, false, true) => Some(ChangeOp::Update),
                (true, false, false) => Some(ChangeOp::Insert),
            };
            let values = match write.row {
                Some(values) => values,
                // A tombstone keeps the key columns, so a flush can still read its key.
                None => tombstones.values(&asked[write.mutation][keys.prefix_len..])?,
            };
            let system = SystemColumns {
                seq,
                updated,
                deleted,
            };
            let row = Row {
                schema_version: def.schema.version,
                values,
                system,
            };
            let logged = change.map(|op| (op, write.old));
            rows.push((asked[write.mutation], row, logged));
        }
        let size: usize = rows.iter().map(|(k, r, _)| k.len() + r.encoded_len()).sum();
        let mut buffer = Vec::with_capacity(size);
        let mut log = logging.then(|| EntryWriter::new(scope.as_str(), size + size / 8));
        let mut spans = Vec::with_capacity(rows.len());
        let mut ring = self.feed.wants_changes().then(Vec::new);
        let mut last_seq = None;
        for (key, row, logged) in rows {
            let at = buffer.len();
            buffer.extend_from_slice(key);
            let key_end = buffer.len();
            row.encode_into(&mut buffer);
            spans.push((at..key_end, key_end..buffer.len()));
            let (Some((op, old)), Some(log)) = (logged, &mut log) else {
                continue;
            };
            let old_row = old.map(|values| Row {
                schema_version: def.schema.version,
                values,
                system: row.system,
            });
            // A delete logs the row it removed; an update the row it replaced after the new one.
            match (op, &old_row) {
                (ChangeOp::Delete, Some(removed)) => {
                    log.push(row.system.seq, op, Image::Row(removed), None)
                }
                _ => log.push(
                    row.system.seq,
                    op,
                    Image::Encoded(&buffer[key_end..]),
                    old_row.as_ref(),
                ),
            }
            last_seq = Some(row.system.seq);
            if let Some(ring) = &mut ring {
                let (values, old) = match op {
                    ChangeOp::Delete => (old_row.map(|r| r.values).unwrap_or(row.values), None),
                    _ => (row.values, old_row.map(|r| r.values)),
                };
                ring.push(Change {
                    seq: row.system.seq,
                    op,
                    user: scope.user().cloned(),
                    values,
                    old,
                    updated,
                });
            }
        }
        let buffer = Bytes::from(buffer);
        let mut batch = WriteBatch {
            ops: Vec::with_capacity(spans.len() + hidden.len() + 2),
        };
        for (key, value) in spans {
            batch.ops.push(WriteOp::Put {
                partition: self.hot.clone(),
                key: buffer.slice(key),
                value: buffer.slice(value),
            });
        }
        // The batch's changes as one log entry, keyed by its first seq.
        if let Some((first, value)) = log.and_then(EntryWriter::finish) {
            batch.ops.push(WriteOp::Put {
                partition: self.log.clone(),
                key: Bytes::copy_from_slice(&log_key(first)),
                value: value.into(),
            });
        }
        for (pk, at) in &hidden {
            batch.put(&self.meta, hidden_key(scope, pk), at.encode());
        }
        batch.ops.push(self.counter_op(scope, count));
        self.storage.hot.batch(batch).await?;
        self.write_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        {
            let mut state = self.state.write();
            state.set_count(scope, count);
            state.hide(scope, hidden.into_iter().map(|(_, at)| at));
        }
        if let Some(last) = last_seq {
            self.feed.publish(last, ring);
        }
        Ok(())
    }
}
