//! The write path: resolves a batch of mutations to keys, reads the current rows of all of them
//! at once (hot engine, then flushed files), and commits the new rows, tombstones, the flushed
//! rows they hide (`h` entries: reads then skip those rows without looking at hot keys) and
//! the scope's buffered-entry count and the change-log entry of its changes in one atomic
//! batch. A large statement is read and staged `StoreConfig::write_chunk_rows` keys at a time:
//! its per-row values live for one chunk, and its encoded rows go to the engine's staged batch
//! (keys in order) or one batch kept until the commit.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::MutexGuard;

use crate::backend::{StagedBatch, WriteBatch, WriteOp};
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
    /// Changes by key: each row of the batch names a key in its leading key columns (key
    /// order, the columns' arrow types); see [`Keyed`].
    Keyed(&'a arrow::record_batch::RecordBatch, Keyed<'a>),
}

/// What [`Rows::Keyed`] does to each key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Keyed<'a> {
    /// Sets these columns, from the batch's columns after the key (one each, in this order).
    Update(&'a [String]),
    /// Deletes the row.
    Delete,
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
    /// An update whose new values are row `usize` of a [`Rows::Keyed`] batch (read when the
    /// key's chunk is staged).
    UpdateAt(usize),
    /// [`Insert`](Self::Insert) and [`Upsert`](Self::Upsert) of row `usize` of a
    /// [`Rows::Batch`] batch (read when the key's chunk is staged).
    InsertAt(usize),
    UpsertAt(usize),
    Delete,
}

/// A statement's plans, one per key, in the order of its keys.
enum Plans {
    /// Mutations, each resolved on its own.
    Each(Vec<Planned>),
    /// Rows of the statement's batch (`rows[k]` for key `k`), all with one change: four
    /// bytes per key, not a plan each.
    Rows {
        rows: Vec<u32>,
        change: fn(usize) -> Planned,
    },
}

impl Plans {
    /// One plan per row `0..n` of a batch, each made by `change`.
    fn rows(n: usize, change: fn(usize) -> Planned, table: &TableDefinition) -> Result<Self> {
        let n = u32::try_from(n).map_err(|_| crate::error::Error::InvalidQuery {
            table: table.id.to_string(),
            reason: format!("a statement of {n} rows (at most {} at once)", u32::MAX),
        })?;
        Ok(Self::Rows {
            rows: (0..n).collect(),
            change,
        })
    }

    /// Puts the plans in the order of their keys (`asked`, sorted with them).
    fn sort_by_key(self, asked: Vec<&[u8]>) -> (Vec<&[u8]>, Self) {
        match self {
            Self::Each(plans) => {
                let mut pairs: Vec<(&[u8], Planned)> = asked.into_iter().zip(plans).collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let (asked, plans) = pairs.into_iter().unzip();
                (asked, Self::Each(plans))
            }
            Self::Rows { rows, change } => {
                let mut pairs: Vec<(&[u8], u32)> = asked.into_iter().zip(rows).collect();
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let (asked, rows) = pairs.into_iter().unzip();
                (asked, Self::Rows { rows, change })
            }
        }
    }

    /// The plans of the next `n` keys, `done` of them already taken.
    fn next_chunk(&mut self, done: usize, n: usize) -> Vec<Planned> {
        match self {
            Self::Each(plans) => plans.drain(..n.min(plans.len())).collect(),
            Self::Rows { rows, change } => rows
                .iter()
                .skip(done)
                .take(n)
                .map(|r| change(*r as usize))
                .collect(),
        }
    }
}

/// The hot keys of a batch's mutations (scope prefix + primary key), back to back in one
/// buffer, in mutation order.
struct BatchKeys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    prefix_len: usize,
}

impl BatchKeys {
    /// No key yet; room for `n` keys behind a scope prefix of `prefix_len` bytes.
    fn with_capacity(prefix_len: usize, n: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(n * (prefix_len + 16)),
            ends: Vec::with_capacity(n),
            prefix_len,
        }
    }

    /// Whether some key appears more than once (keys in increasing order, as bulk inserts
    /// and scans give them, answer without sorting).
    fn repeated(asked: &[&[u8]]) -> bool {
        if asked.windows(2).all(|w| w[0] < w[1]) {
            return false;
        }
        let mut sorted = asked.to_vec();
        sorted.sort_unstable();
        sorted.windows(2).any(|w| w[0] == w[1])
    }

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
        let mut values_of = None;
        let mut rows_of = None;
        let (keys, mut planned) = match rows {
            Rows::Mutations(mutations) => self.plan_mutations(&def, &scope, mutations)?,
            Rows::Batch(batch, mode) => {
                rows_of = Some(batch);
                self.plan_batch(&def, &scope, batch, mode)?
            }
            Rows::Keyed(batch, keyed) => {
                if let Keyed::Update(set) = keyed {
                    values_of = Some(KeyedValues::new(&def, batch, set)?);
                }
                self.plan_keyed(&def, &scope, batch, keyed)?
            }
        };
        let mut asked = keys.all();
        let repeated = BatchKeys::repeated(&asked);
        let chunk_rows = self.storage.write_chunk_rows;
        let large = asked.len() > chunk_rows;
        // A large statement of distinct keys is staged in key order (its changes take their
        // `_seq` in that order): each chunk is then one key range of the engine and of each
        // file, so the chunks together read each file once, and the engine can stage sorted
        // runs outside memory. Smaller statements keep their order. A statement writing a key
        // twice is staged whole, in its order: a later write of a key builds on its earlier
        // one.
        if large && !repeated && !asked.windows(2).all(|w| w[0] < w[1]) {
            (asked, planned) = planned.sort_by_key(asked);
        }
        let statement = Statement {
            repeated,
            values_of,
            rows_of,
        };
        let chunk = if repeated {
            asked.len().max(1)
        } else {
            chunk_rows
        };
        let mut commit = Commit::new(self, &def, &scope);
        if large && !repeated {
            commit.stage_in_engine().await?;
        }
        let mut summary = WriteSummary::default();
        for (n, part) in asked.chunks(chunk).enumerate() {
            let plans = planned.next_chunk(n * chunk, part.len());
            let current = self.read_current(&scope, part, keys.prefix_len).await?;
            let (staged, s) =
                self.stage(&def, part, keys.prefix_len, plans, &current, &statement)?;
            drop(current);
            summary.inserted += s.inserted;
            summary.updated += s.updated;
            summary.deleted += s.deleted;
            commit.add(seq, part, keys.prefix_len, staged).await?;
        }
        commit.finish().await?;
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
    ) -> Result<(BatchKeys, Plans)> {
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
        let mut keys = BatchKeys::with_capacity(prefix.len(), n);
        // Keys now; each row's values when its chunk is staged.
        for i in 0..n {
            keys.bytes.extend_from_slice(&prefix);
            self.key_at(def, batch.columns(), i, &mut keys.bytes)?;
            keys.ends.push(keys.bytes.len());
        }
        let change = match mode {
            BatchMode::Insert => Planned::InsertAt,
            BatchMode::Upsert => Planned::UpsertAt,
        };
        Ok((keys, Plans::rows(n, change, def)?))
    }

    /// Resolves every mutation to its hot key, checking rows as it goes.
    fn plan_mutations(
        &self,
        def: &TableDefinition,
        scope: &KeyScope,
        mutations: Vec<Mutation>,
    ) -> Result<(BatchKeys, Plans)> {
        let prefix = self.scope_prefix(scope);
        let mut keys = BatchKeys::with_capacity(prefix.len(), mutations.len());
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
        Ok((keys, Plans::Each(planned)))
    }

    /// Resolves every row of a [`Rows::Keyed`] batch to its hot key (read from its key
    /// columns, no value per cell kept) and its change.
    fn plan_keyed(
        &self,
        def: &TableDefinition,
        scope: &KeyScope,
        batch: &arrow::record_batch::RecordBatch,
        keyed: Keyed<'_>,
    ) -> Result<(BatchKeys, Plans)> {
        let pk: Vec<_> = def.primary_key().collect();
        let given = match keyed {
            Keyed::Update(set) => pk.len() + set.len(),
            Keyed::Delete => pk.len(),
        };
        if batch.num_columns() != given {
            return Err(crate::error::Error::InvalidQuery {
                table: def.id.to_string(),
                reason: format!(
                    "a batch of changes by key has {} columns, expected {given} (the {} key \
                     column(s), then one per assigned column)",
                    batch.num_columns(),
                    pk.len()
                ),
            });
        }
        let prefix = self.scope_prefix(scope);
        let n = batch.num_rows();
        let mut keys = BatchKeys::with_capacity(prefix.len(), n);
        for i in 0..n {
            keys.bytes.extend_from_slice(&prefix);
            for (k, c) in pk.iter().enumerate() {
                let value = crate::codec::value_at(batch.column(k).as_ref(), c.data_type, i)?;
                if value.is_null() {
                    return Err(crate::error::Error::InvalidValue {
                        column: c.name.clone(),
                        reason: "a key value is NULL".into(),
                    });
                }
                crate::codec::encode_component(&value, &mut keys.bytes).map_err(|reason| {
                    crate::error::Error::InvalidValue {
                        column: c.name.clone(),
                        reason: reason.to_owned(),
                    }
                })?;
            }
            keys.ends.push(keys.bytes.len());
        }
        let change = match keyed {
            Keyed::Update(_) => Planned::UpdateAt,
            Keyed::Delete => |_| Planned::Delete,
        };
        Ok((keys, Plans::rows(n, change, def)?))
    }

    /// Reads what the batch's keys hold: their hot entries in one `get_many`, then the
    /// flushed rows of the keys that are not hot in one pass over the files.
    async fn read_current(
        &self,
        scope: &KeyScope,
        asked: &[&[u8]],
        prefix_len: usize,
    ) -> Result<CurrentRows> {
        // Bulk inserts come in key order: their keys go to the engine as they are (new keys
        // past the stored ones: a single seek).
        let in_order = asked.windows(2).all(|w| w[0] < w[1]);
        let hot = if in_order {
            self.storage.hot.get_many(&self.hot, asked).await?
        } else {
            let mut sorted = asked.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            let values = self.storage.hot.get_many(&self.hot, &sorted).await?;
            let mut hot = Vec::with_capacity(asked.len());
            for k in asked {
                let value = sorted
                    .binary_search(k)
                    .ok()
                    .and_then(|at| values.get(at).cloned())
                    .flatten();
                hot.push(value);
            }
            hot
        };
        let cold: Vec<&[u8]> = asked
            .iter()
            .zip(&hot)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| &k[prefix_len..])
            .collect();
        let flushed = get_flushed_many(self, scope, &cold).await?;
        Ok(CurrentRows { hot, flushed })
    }

    /// Applies each mutation to the key's current row (or the batch's earlier write of the
    /// key): the writes to make and what they change.
    fn stage(
        &self,
        def: &TableDefinition,
        asked: &[&[u8]],
        prefix_len: usize,
        planned: Vec<Planned>,
        current: &CurrentRows,
        statement: &Statement<'_>,
    ) -> Result<(Vec<Staged>, WriteSummary)> {
        let (repeated, values_of) = (statement.repeated, statement.values_of.as_ref());
        let mut staged: Vec<Staged> = Vec::with_capacity(planned.len());
        // Only a batch that writes a key twice needs to find a key's earlier write; the
        // others just keep their order.
        let mut slots: Option<HashMap<&[u8], usize>> = repeated.then(HashMap::new);
        let mut summary = WriteSummary::default();
        let logging = def.options.change_retention.is_on();
        for (i, plan) in planned.into_iter().enumerate() {
            let key = &asked[i][prefix_len..];
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
            // Invariant: `InsertAt`/`UpsertAt` are planned only with the batch's rows.
            let plan = match plan {
                Planned::InsertAt(i) => Planned::Insert(self.row_at(
                    def,
                    statement.rows_of.expect("batch rows").columns(),
                    i,
                )?),
                Planned::UpsertAt(i) => Planned::Upsert(self.row_at(
                    def,
                    statement.rows_of.expect("batch rows").columns(),
                    i,
                )?),
                plan => plan,
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
                Planned::UpdateAt(row) => {
                    let Some(row_now) = row_now else { continue };
                    summary.updated += 1;
                    // Invariant: `UpdateAt` is planned only with the batch's values.
                    let set = values_of.expect("keyed values").at(row)?;
                    Some(self.row_from_named(def, set, Some(row_now))?)
                }
                Planned::InsertAt(_) | Planned::UpsertAt(_) => {
                    unreachable!("resolved to Insert/Upsert above")
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
}

/// A statement's write batch while its chunks are staged: every chunk's rows and tombstones
/// encoded into a buffer of its own (the ops slice it), its change-log entries, the flushed
/// rows it hides and the scope's running counter; committed as one engine batch.
struct Commit<'t, 'k> {
    table: &'t TableHandle,
    def: &'t TableDefinition,
    scope: &'t KeyScope,
    tombstones: Tombstones,
    updated: i64,
    count: crate::format::HotCount,
    batch: WriteBatch,
    log: Option<EntryWriter>,
    /// Every flushed row the statement hides (for the table's state after the commit).
    hidden: Vec<Hidden>,
    /// The keys of the `hidden` entries not yet in the batch or handed to `staged` (the
    /// last ones of `hidden`).
    hidden_keys: Vec<&'k [u8]>,
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
    fn new(table: &'t TableHandle, def: &'t TableDefinition, scope: &'t KeyScope) -> Self {
        let logging = def.options.change_retention.is_on();
        Self {
            table,
            def,
            scope,
            tombstones: Tombstones::new(def),
            updated: table.storage.clock.now_nanos(),
            count: table.hot_count(scope),
            batch: WriteBatch::new(),
            log: logging.then(|| EntryWriter::new(scope.as_str(), 0)),
            hidden: Vec::new(),
            hidden_keys: Vec::new(),
            ring: table.feed.wants_changes().then(Vec::new),
            last_seq: None,
            in_flight: Vec::new(),
            staged: None,
            wrote: false,
        }
    }

    /// Hands every chunk to the engine's staged batch as it is encoded.
    async fn stage_in_engine(&mut self) -> Result<()> {
        self.staged = Some(self.table.storage.hot.staged_batch().await?);
        Ok(())
    }

    /// Adds the `h` entries of the hidden rows whose keys are pending to the batch.
    fn batch_hidden(&mut self) {
        let pending = self.hidden_keys.len();
        let ats = &self.hidden[self.hidden.len() - pending..];
        for (pk, at) in self.hidden_keys.drain(..).zip(ats) {
            self.batch
                .put(&self.table.meta, hidden_key(self.scope, pk), at.encode());
        }
    }

    /// Moves what is ready (the batch's ops, closed log entries, new hidden rows) into the
    /// engine's staged batch, when there is one.
    async fn hand_over(&mut self) -> Result<()> {
        if self.staged.is_none() {
            return Ok(());
        }
        let table = self.table;
        if let Some(log) = &mut self.log {
            for (first, value) in log.take_closed() {
                self.batch.ops.push(WriteOp::Put {
                    partition: table.log.clone(),
                    key: Bytes::copy_from_slice(&log_key(first)),
                    value: value.into(),
                });
            }
        }
        self.batch_hidden();
        self.wrote |= !self.batch.ops.is_empty();
        let part = std::mem::take(&mut self.batch);
        match &mut self.staged {
            Some(staged) => staged.add(part).await,
            None => Ok(()),
        }
    }

    /// Encodes one chunk's staged rows and tombstones (keys `asked`, whose first `prefix_len`
    /// bytes are the scope's) and their change-log entries, each write with its own `_seq`.
    async fn add(
        &mut self,
        seq: &'t SeqGenerator,
        asked: &[&'k [u8]],
        prefix_len: usize,
        staged: Vec<Staged>,
    ) -> Result<()> {
        if staged.is_empty() {
            return Ok(());
        }
        let def = self.def;
        let (seqs, in_flight) = seq.take_tracked(staged.len());
        self.in_flight.push(in_flight);
        let mut rows = Vec::with_capacity(staged.len());
        for (write, seq) in staged.into_iter().zip(seqs) {
            let deleted = write.row.is_none();
            let count = &mut self.count;
            count.entries += u64::from(!write.was_hot);
            count.tombstones += u64::from(deleted);
            count.tombstones = count
                .tombstones
                .saturating_sub(u64::from(write.was_hot && write.was_tombstone));
            let key = asked[write.mutation];
            if let Some(at) = write.hides {
                self.hidden.push(at);
                self.hidden_keys.push(&key[prefix_len..]);
            }
            let change = match (self.log.is_some(), deleted, write.existed) {
                (false, ..) | (true, true, false) => None,
                (true, true, true) => Some(ChangeOp::Delete),
                (true, false, true) => Some(ChangeOp::Update),
                (true, false, false) => Some(ChangeOp::Insert),
            };
            let values = match write.row {
                Some(values) => values,
                // A tombstone keeps the key columns, so a flush can still read its key.
                None => self.tombstones.values(&key[prefix_len..])?,
            };
            let system = SystemColumns {
                seq,
                updated: self.updated,
                deleted,
            };
            let row = Row {
                schema_version: def.schema.version,
                values,
                system,
            };
            let logged = change.map(|op| (op, write.old));
            rows.push((key, row, logged));
        }
        let size: usize = rows.iter().map(|(k, r, _)| k.len() + r.encoded_len()).sum();
        let mut buffer = Vec::with_capacity(size);
        let mut spans = Vec::with_capacity(rows.len());
        for (key, row, logged) in rows {
            let at = buffer.len();
            buffer.extend_from_slice(key);
            let key_end = buffer.len();
            row.encode_into(&mut buffer);
            spans.push((at..key_end, key_end..buffer.len()));
            let (Some((op, old)), Some(log)) = (logged, &mut self.log) else {
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
            self.last_seq = Some(row.system.seq);
            if let Some(ring) = &mut self.ring {
                let (values, old) = match op {
                    ChangeOp::Delete => (old_row.map(|r| r.values).unwrap_or(row.values), None),
                    _ => (row.values, old_row.map(|r| r.values)),
                };
                ring.push(Change {
                    seq: row.system.seq,
                    op,
                    user: self.scope.user().cloned(),
                    values,
                    old,
                    updated: self.updated,
                });
            }
        }
        let buffer = Bytes::from(buffer);
        self.batch.ops.reserve(spans.len());
        for (key, value) in spans {
            self.batch.ops.push(WriteOp::Put {
                partition: self.table.hot.clone(),
                key: buffer.slice(key),
                value: buffer.slice(value),
            });
        }
        self.hand_over().await
    }

    /// Commits the batch with its log entries (each keyed by its first seq), hidden rows and
    /// the scope's counter, then applies them to the table's state and feed.
    async fn finish(mut self) -> Result<()> {
        if self.batch.ops.is_empty() && !self.wrote {
            return Ok(());
        }
        let table = self.table;
        for (first, value) in self.log.take().map(EntryWriter::finish).unwrap_or_default() {
            self.batch.ops.push(WriteOp::Put {
                partition: table.log.clone(),
                key: Bytes::copy_from_slice(&log_key(first)),
                value: value.into(),
            });
        }
        self.batch_hidden();
        self.batch
            .ops
            .push(table.counter_op(self.scope, self.count));
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
            state.hide(self.scope, self.hidden);
        }
        if let Some(last) = self.last_seq {
            table.feed.publish(last, self.ring);
        }
        drop(self.in_flight);
        Ok(())
    }
}

/// What every chunk of a statement is staged with.
struct Statement<'b> {
    /// Whether some key is written twice (then the statement is one chunk).
    repeated: bool,
    /// The new values of a [`Keyed::Update`] batch.
    values_of: Option<KeyedValues<'b>>,
    /// The rows of a [`Rows::Batch`] batch.
    rows_of: Option<&'b arrow::record_batch::RecordBatch>,
}

/// The new values of a [`Keyed::Update`] batch: the columns after its key columns, each with
/// the table column it sets.
struct KeyedValues<'b> {
    columns: Vec<(
        &'b String,
        crate::types::KalamDataType,
        &'b arrow::array::ArrayRef,
    )>,
}

impl<'b> KeyedValues<'b> {
    fn new(
        def: &TableDefinition,
        batch: &'b arrow::record_batch::RecordBatch,
        set: &'b [String],
    ) -> Result<Self> {
        let first = def.primary_key().count();
        let mut columns = Vec::with_capacity(set.len());
        for (name, array) in set.iter().zip(batch.columns().iter().skip(first)) {
            let column =
                def.schema
                    .column(name)
                    .ok_or_else(|| crate::error::Error::InvalidValue {
                        column: name.clone(),
                        reason: format!("table {} has no such column", def.id),
                    })?;
            columns.push((name, column.data_type, array));
        }
        Ok(Self { columns })
    }

    /// The named values of row `row`.
    fn at(&self, row: usize) -> Result<Vec<(String, KalamValue)>> {
        self.columns
            .iter()
            .map(|(name, data_type, array)| {
                let value = crate::codec::value_at(array.as_ref(), *data_type, row)?;
                Ok(((*name).clone(), value))
            })
            .collect()
    }
}
