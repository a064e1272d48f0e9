//! The write path: resolves a batch of mutations to keys, reads the current rows of all of them
//! at once (hot engine, then flushed files), and commits the new rows, tombstones, the flushed
//! rows they hide (`h` entries: reads then skip those rows without looking at hot keys) and
//! the scope's buffered-entry count and the change-log entry of its changes in one atomic
//! batch. A large statement is read and staged `StoreConfig::write_chunk_rows` keys at a time:
//! its per-row values live for one chunk (named rows are encoded when planned, so they are
//! kept as their encoded bytes), and its encoded rows go to the engine's staged batch (keys in
//! order) or one batch kept until the commit.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::MutexGuard;

use crate::codec::{EncodedRows, KalamValue};
use crate::error::{Error, Result};
use crate::format::Hidden;
use crate::ids::{KeyScope, UserId};
use crate::merge::{FlushedRow, get_flushed_many};
use crate::schema::TableDefinition;
use crate::seq::SeqGenerator;
use crate::table::TableHandle;

mod commit;
mod plan;
mod rows;

use commit::{Chunk, Commit};
use plan::{BatchKeys, BatchRows, KeyedValues, Plans, RowSource};

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
    Insert(NewRow),
    Upsert(NewRow),
    Update(Vec<(String, KalamValue)>),
    Delete,
}

/// A row a statement writes: its values, or row `.0` of its chunk's rows encoded from a batch's
/// columns (no value per cell).
#[derive(Debug, Clone)]
enum NewRow {
    Values(Vec<KalamValue>),
    Encoded(usize),
}

impl NewRow {
    /// The row's values (an encoded row is decoded from `encoded`, its chunk's rows).
    fn into_values(self, encoded: &EncodedRows) -> Result<Vec<KalamValue>> {
        match self {
            Self::Values(values) => Ok(values),
            Self::Encoded(at) => decode_encoded(encoded_row(encoded, at)?),
        }
    }
}

/// Row `at` of a chunk's encoded rows.
fn encoded_row(encoded: &EncodedRows, at: usize) -> Result<&[u8]> {
    encoded.get(at).ok_or_else(|| Error::Corrupt {
        what: format!("row {at} of a statement's chunk"),
        reason: format!("the chunk encoded {} rows", encoded.len()),
    })
}

/// An encoded row's values.
fn decode_encoded(bytes: &[u8]) -> Result<Vec<KalamValue>> {
    Ok(crate::codec::Row::decode(bytes)
        .map_err(|e| Error::decode("a statement's encoded row", e))?
        .values)
}

/// About the bytes a chunk's keys and rows take: the keys, and the new rows' encoded sizes
/// (a change's row, known only once staged, may grow the buffer).
fn chunk_bytes(keys: &[&[u8]], plans: &[Planned], encoded: &EncodedRows) -> usize {
    let rows: usize = plans
        .iter()
        .map(|plan| match plan {
            Planned::Insert(row) | Planned::Upsert(row) => match row {
                NewRow::Values(values) => crate::codec::Row::encoded_len_of(values),
                NewRow::Encoded(at) => encoded.get(*at).map_or(0, <[u8]>::len),
            },
            Planned::Update(_) | Planned::Delete => 0,
        })
        .sum();
    keys.iter().map(|k| k.len()).sum::<usize>() + rows
}

/// Keys a statement larger than `StoreConfig::write_chunk_rows` (staged in key order) reads
/// and stages at a time.
const SORTED_CHUNK_ROWS: usize = 16_384;

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
    row: Option<NewRow>,
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
        let (keys, mut planned) = match rows {
            Rows::Mutations(mutations) => self.plan_mutations(&def, &scope, mutations)?,
            Rows::Batch(batch, mode) => self.plan_batch(&def, &scope, batch, mode)?,
            Rows::Keyed(batch, keyed) => self.plan_keyed(&def, &scope, batch, keyed)?,
        };
        // Keys in increasing order (SQL UPDATE and DELETE ask for them so, bulk inserts come
        // so) are distinct and need no list of them all: each chunk takes its own.
        let in_order = keys.in_order();
        let mut asked: Option<Vec<&[u8]>> = (!in_order).then(|| keys.all());
        let repeated = asked.as_deref().is_some_and(BatchKeys::repeated);
        let chunk_rows = self.storage.write_chunk_rows;
        let n = keys.len();
        let large = n > chunk_rows;
        // A large statement of distinct keys is staged in key order (its changes take their
        // `_seq` in that order): each chunk is then one key range of the engine and of each
        // file, so the chunks together read each file once, and the engine can stage sorted
        // runs outside memory. Smaller statements keep their order. A statement writing a key
        // twice is staged whole, in its order: a later write of a key builds on its earlier
        // one.
        if large
            && !repeated
            && let Some(all) = asked.take()
        {
            let (sorted, resorted) = planned.sort_by_key(all);
            (asked, planned) = (Some(sorted), resorted);
        }
        let chunk = match (repeated, large) {
            (true, _) => n.max(1),
            // Sorted keys: each chunk is a key range, so smaller chunks still read every file
            // once, in key order, and hold fewer rows (and their old and new images) at a time.
            (false, true) => chunk_rows.min(SORTED_CHUNK_ROWS),
            (false, false) => chunk_rows,
        };
        self.hot_cache.lock().forget();
        let mut commit = Commit::new(self, &def, &scope);
        if large && !repeated {
            commit.stage_in_engine().await?;
        }
        let mut summary = WriteSummary::default();
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            let taken;
            let part: &[&[u8]] = match &asked {
                Some(all) => &all[start..start + len],
                None => {
                    taken = keys.range(start, len);
                    &taken
                }
            };
            let (plans, encoded) = planned.next_chunk(start, len)?;
            let encoded: &EncodedRows = &encoded;
            // A statement's keys in increasing order are so in every chunk; a larger one is
            // sorted above.
            let sorted = in_order || (large && !repeated);
            let current = self
                .read_current(&scope, part, keys.prefix_len, sorted)
                .await?;
            let mut chunk =
                commit.start_chunk(seq, plans.len(), chunk_bytes(part, &plans, encoded));
            let s = self.stage(
                &def,
                part,
                keys.prefix_len,
                (plans, encoded),
                &current,
                repeated,
                (&mut commit, &mut chunk),
            )?;
            drop(current);
            summary.inserted += s.inserted;
            summary.updated += s.updated;
            summary.deleted += s.deleted;
            commit.end_chunk(chunk).await?;
        }
        commit.finish().await?;
        Ok(summary)
    }

    /// Resolves every row of `batch` to its hot key and its values, checking them as
    /// [`plan_mutations`](Self::plan_mutations) checks named rows.
    fn plan_batch<'b>(
        &self,
        def: &TableDefinition,
        scope: &KeyScope,
        batch: &'b arrow::record_batch::RecordBatch,
        mode: BatchMode,
    ) -> Result<(BatchKeys, Plans<'b>)> {
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
        // Every column checked once; keys now, each chunk's rows encoded when it is staged.
        let rows = BatchRows::new(def, batch)?;
        let prefix = self.scope_prefix(scope);
        let n = batch.num_rows();
        let mut keys = BatchKeys::with_capacity(prefix.len(), n);
        for i in 0..n {
            keys.bytes.extend_from_slice(&prefix);
            self.key_at(def, rows.arrays(), i, &mut keys.bytes)?;
            keys.ends.push(keys.bytes.len());
        }
        let source = match mode {
            BatchMode::Insert => RowSource::Insert(rows),
            BatchMode::Upsert => RowSource::Upsert(rows),
        };
        Ok((keys, Plans::rows(n, source, def)?))
    }

    /// Resolves every mutation to its hot key, checking rows as it goes.
    fn plan_mutations(
        &self,
        def: &TableDefinition,
        scope: &KeyScope,
        mutations: Vec<Mutation>,
    ) -> Result<(BatchKeys, Plans<'static>)> {
        let prefix = self.scope_prefix(scope);
        let mut keys = BatchKeys::with_capacity(prefix.len(), mutations.len());
        let mut planned = Vec::with_capacity(mutations.len());
        // New rows are encoded as they are checked (row `k` of the statement's rows): their
        // values are dropped here, not carried to the commit.
        let mut encoded = EncodedRows::default();
        let (n, mut reserved) = (mutations.len(), false);
        for mutation in mutations {
            keys.bytes.extend_from_slice(&prefix);
            planned.push(match mutation {
                Mutation::Insert(named) => {
                    self.encode_named(def, named, &mut encoded, &mut keys.bytes)?;
                    Planned::Insert(NewRow::Encoded(encoded.len() - 1))
                }
                Mutation::Upsert(named) => {
                    self.encode_named(def, named, &mut encoded, &mut keys.bytes)?;
                    Planned::Upsert(NewRow::Encoded(encoded.len() - 1))
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
            if encoded.len() == 1 && !reserved {
                // A statement's rows are mostly alike: room for the rest at once.
                encoded.reserve_rows(n - planned.len());
                reserved = true;
            }
        }
        Ok((keys, Plans::Each(planned, encoded)))
    }

    /// Resolves every row of a [`Rows::Keyed`] batch to its hot key (read from its key
    /// columns, no value per cell kept) and its change.
    fn plan_keyed<'b>(
        &self,
        def: &TableDefinition,
        scope: &KeyScope,
        batch: &'b arrow::record_batch::RecordBatch,
        keyed: Keyed<'b>,
    ) -> Result<(BatchKeys, Plans<'b>)> {
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
                rows::key_component(c, &value, &mut keys.bytes)?;
            }
            keys.ends.push(keys.bytes.len());
        }
        let source = match keyed {
            Keyed::Update(set) => RowSource::Update(KeyedValues::new(def, batch, set)?),
            Keyed::Delete => RowSource::Delete,
        };
        Ok((keys, Plans::rows(n, source, def)?))
    }

    /// Reads what the batch's keys hold: their hot entries in one `get_many`, then the
    /// flushed rows of the keys that are not hot in one pass over the files. `in_order`:
    /// the caller knows `asked` is strictly increasing.
    async fn read_current(
        &self,
        scope: &KeyScope,
        asked: &[&[u8]],
        prefix_len: usize,
        in_order: bool,
    ) -> Result<CurrentRows> {
        // Bulk inserts come in key order: their keys go to the engine as they are (new keys
        // past the stored ones: a single seek).
        let hot = if in_order || asked.windows(2).all(|w| w[0] < w[1]) {
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
    /// key) and puts the writes into `chunk` of `commit`: what they change.
    #[allow(clippy::too_many_arguments)]
    fn stage<'t, 'k>(
        &self,
        def: &TableDefinition,
        asked: &[&'k [u8]],
        prefix_len: usize,
        (planned, encoded): (Vec<Planned>, &EncodedRows),
        current: &CurrentRows,
        repeated: bool,
        (commit, chunk): (&mut Commit<'t, 'k>, &mut Chunk),
    ) -> Result<WriteSummary> {
        // Only a batch that writes a key twice keeps its writes until all are staged (a later
        // write of a key replaces its earlier one); the others go to the chunk as they come.
        let mut staged: Vec<Staged> = Vec::new();
        let mut slots: Option<HashMap<&[u8], usize>> = repeated.then(HashMap::new);
        let mut summary = WriteSummary::default();
        let logging = def.options.change_retention.is_on();
        for (i, plan) in planned.into_iter().enumerate() {
            let key = &asked[i][prefix_len..];
            // The common write: a row encoded when planned, for a key with nothing before
            // it that the batch writes once.
            if let Planned::Insert(NewRow::Encoded(row)) | Planned::Upsert(NewRow::Encoded(row)) =
                plan
                && slots.is_none()
                && current.hot[i].is_none()
                && !current.flushed.contains_key(key)
            {
                summary.inserted += 1;
                commit.put_new(chunk, asked[i], prefix_len, encoded_row(encoded, row)?)?;
                continue;
            }
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
                        let values = self.hot_values(bytes)?.map(NewRow::Values);
                        (values, true, tombstone, None)
                    }
                    None => match current.flushed.get(key) {
                        Some(f) => (
                            Some(NewRow::Values(f.values.clone())),
                            false,
                            false,
                            Some(f.at),
                        ),
                        None => (None, false, false, None),
                    },
                },
            };
            // The log records one change per key and batch, against the row before the batch.
            let (existed, old) = match before_batch {
                Some(before) => before,
                None if logging => (
                    row_now.is_some(),
                    row_now
                        .clone()
                        .map(|r| r.into_values(encoded))
                        .transpose()?,
                ),
                None => (row_now.is_some(), None),
            };
            let row = match plan {
                Planned::Insert(row) => {
                    if row_now.is_some() {
                        return Err(self.duplicate(def, key));
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
                    let base = row_now.into_values(encoded)?;
                    Some(NewRow::Values(self.row_from_named(def, set, Some(base))?))
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
            match (slot, &mut slots) {
                (Some(at), _) => staged[at] = write,
                (None, Some(slots)) => {
                    slots.insert(key, staged.len());
                    staged.push(write);
                }
                (None, None) => commit.put(chunk, asked[i], prefix_len, write, encoded)?,
            }
        }
        for write in staged {
            commit.put(chunk, asked[write.mutation], prefix_len, write, encoded)?;
        }
        Ok(summary)
    }
}
