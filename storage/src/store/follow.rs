//! One subscription's stream: where it starts ([`StartAt`]: initial data from a scan, or its
//! newest rows by `_seq`), the ready marker, then pages of changes from the table's ring or log
//! through its filter ([`SubscriptionEvent`]), waiting for commits when caught up and following
//! the table through moves; and the registry entry each live subscription keeps for `SHOW LIVE
//! QUERIES` and `KILL LIVE QUERY`.

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tokio::sync::watch;

use super::Store;
use crate::changes::{FeedScope, read_changes, through_filter};
use crate::codec::row_values;
use crate::error::{Error, Result};
use crate::filter::{Filter, RowFilter};
use crate::format::{Change, ChangeOp};
use crate::ids::{TableId, UserId};
use crate::merge::{BatchStream, ScanOptions, USER_COLUMN, scan_table};
use crate::table::{Listening, TableHandle};

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// No initial data: changes committed from now on.
    #[default]
    Now,
    /// Every matching row as initial data, then the changes after it.
    Snapshot,
    /// The newest `n` matching rows (by `_seq`) as initial data, then the changes after them.
    LastRows(usize),
    /// No initial data: every change after this `_seq` (a resumed subscription).
    After(i64),
}

/// One step of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionEvent {
    /// Rows of the initial data, as inserts carrying their row's `_seq`.
    Initial(Vec<Change>),
    /// The initial data is complete: changes after `seq` follow. Some initial rows may already
    /// show a later change; applying the changes as upserts (insert or update: set the key's
    /// row; delete: remove it) gives the table's state at every later `upto`.
    Ready {
        /// The table's last committed `_seq` before the initial data was read.
        seq: i64,
    },
    /// Committed changes, in `_seq` order.
    Changes {
        /// The changes (at least one).
        changes: Vec<Change>,
        /// Every matching change up to this `_seq` has been delivered: resume after it.
        upto: i64,
    },
}

/// The registry's entry of one subscription.
#[derive(Debug)]
pub(super) struct LiveEntry {
    pub(super) id: String,
    pub(super) principal: String,
    pub(super) table: TableId,
    pub(super) scope: String,
    pub(super) filter: String,
    pub(super) started_at_ms: i64,
    pub(super) live: AtomicBool,
    pub(super) killed: AtomicBool,
    pub(super) cursor: AtomicI64,
    pub(super) committed: AtomicI64,
    pub(super) delivered: AtomicU64,
}

/// Live subscriptions by id (a leaf lock).
#[derive(Debug, Default)]
pub(super) struct LiveRegistry {
    pub(super) next: AtomicU64,
    pub(super) entries: parking_lot::Mutex<BTreeMap<String, Arc<LiveEntry>>>,
}

/// Removes a subscription from the registry when it is dropped.
pub(super) struct Registered {
    pub(super) store: Store,
    pub(super) entry: Arc<LiveEntry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.store.inner.live.entries.lock().remove(&self.entry.id);
    }
}

/// The state of one subscription's stream.
pub(super) struct Follower {
    pub(super) store: Store,
    pub(super) registered: Registered,
    pub(super) handle: Arc<TableHandle>,
    pub(super) wake: watch::Receiver<i64>,
    pub(super) _listening: Listening,
    pub(super) scope: FeedScope,
    pub(super) user: Option<UserId>,
    pub(super) filter: Option<RowFilter>,
    pub(super) filter_source: Option<Filter>,
    /// The schema version `filter` was bound to.
    pub(super) filter_version: u32,
    /// Not started yet: where to start.
    pub(super) start: Option<StartAt>,
    /// Initial data still to deliver.
    pub(super) initial: Option<Initial>,
    /// The ready marker, once the initial data is out.
    pub(super) ready: Option<i64>,
    pub(super) cursor: i64,
    pub(super) batch: usize,
    pub(super) ended: bool,
}

/// Initial data being delivered.
pub(super) enum Initial {
    Streaming(BatchStream),
    Collected(std::vec::IntoIter<Change>),
}

impl Follower {
    fn entry(&self) -> &LiveEntry {
        &self.registered.entry
    }

    pub(super) async fn next(&mut self) -> Option<Result<SubscriptionEvent>> {
        if self.ended {
            return None;
        }
        Some(self.step().await)
    }

    async fn step(&mut self) -> Result<SubscriptionEvent> {
        if let Some(start) = self.start.take() {
            self.begin(start).await?;
        }
        if let Some(initial) = &mut self.initial {
            if let Some(rows) = next_initial(initial, self.batch, &self.handle).await? {
                return Ok(SubscriptionEvent::Initial(rows));
            }
            self.initial = None;
        }
        if let Some(seq) = self.ready.take() {
            self.entry().live.store(true, Ordering::Release);
            return Ok(SubscriptionEvent::Ready { seq });
        }
        loop {
            self.store.check_open()?;
            if self.entry().killed.load(Ordering::Acquire) {
                return Err(Error::LiveQueryKilled {
                    id: self.entry().id.clone(),
                });
            }
            if self.handle.is_retired() {
                self.follow_moved_table().await?;
            }
            // Seen before reading: a commit after this wakes the wait below.
            self.wake.borrow_and_update();
            self.rebind_filter()?;
            let page = read_changes(&self.handle, &self.scope, self.cursor, self.batch).await?;
            self.cursor = self.cursor.max(page.cursor);
            let entry = self.entry();
            entry.cursor.store(self.cursor, Ordering::Release);
            entry.committed.store(page.committed, Ordering::Release);
            let changes: Vec<Change> = match &self.filter {
                Some(filter) => page
                    .changes
                    .into_iter()
                    .filter_map(|c| through_filter(c, filter))
                    .collect(),
                None => page.changes,
            };
            if !changes.is_empty() {
                entry
                    .delivered
                    .fetch_add(changes.len() as u64, Ordering::AcqRel);
                return Ok(SubscriptionEvent::Changes {
                    changes,
                    upto: self.cursor,
                });
            }
            if self.cursor >= page.committed {
                // Caught up: wait for the next commit (or a move, drop or kill).
                if self.wake.changed().await.is_err() {
                    return Err(Error::TableRetired {
                        table: self.handle.id.to_string(),
                    });
                }
            }
        }
    }

    /// Starts the subscription: reads the initial data's starting point.
    async fn begin(&mut self, start: StartAt) -> Result<()> {
        let committed = self.handle.feed.committed();
        match start {
            StartAt::Now => {
                self.cursor = committed;
                self.ready = Some(committed);
            }
            StartAt::After(seq) => {
                // Checked now: a cursor past retention is a gap before any event.
                read_changes(&self.handle, &self.scope, seq, 1).await?;
                self.cursor = seq;
                self.ready = Some(seq);
            }
            StartAt::Snapshot | StartAt::LastRows(_) => {
                let options = ScanOptions {
                    filter: self.filter_source.clone(),
                    with_system: true,
                    all_users: self.scope == FeedScope::AllUsers,
                    ..ScanOptions::default()
                };
                let scan = scan_table(self.handle.clone(), self.user.as_ref(), &options)?;
                let stream = scan.stream();
                self.initial = Some(match start {
                    StartAt::LastRows(n) => {
                        Initial::Collected(newest_rows(stream, n, &self.handle).await?)
                    }
                    _ => Initial::Streaming(stream),
                });
                self.cursor = committed;
                self.ready = Some(committed);
            }
        }
        self.entry().cursor.store(self.cursor, Ordering::Release);
        Ok(())
    }

    /// Re-reads the table's handle after a move (or learns that it was dropped).
    async fn follow_moved_table(&mut self) -> Result<()> {
        let handle = self.store.handle(&self.handle.id).await?;
        let (wake, listening) = handle.feed.listen();
        self.handle = handle;
        self.wake = wake;
        self._listening = listening;
        Ok(())
    }

    /// Binds the filter again when ALTER TABLE changed the columns.
    fn rebind_filter(&mut self) -> Result<()> {
        let def = self.handle.definition();
        if def.schema.version != self.filter_version {
            if let Some(f) = &self.filter_source {
                self.filter = Some(f.for_rows(&def.schema, &self.handle.id.to_string())?);
            }
            self.filter_version = def.schema.version;
        }
        Ok(())
    }
}

/// Up to `max` rows of the initial data.
async fn next_initial(
    initial: &mut Initial,
    max: usize,
    handle: &TableHandle,
) -> Result<Option<Vec<Change>>> {
    match initial {
        Initial::Collected(rows) => {
            let chunk: Vec<Change> = rows.take(max).collect();
            Ok((!chunk.is_empty()).then_some(chunk))
        }
        Initial::Streaming(stream) => loop {
            match stream.next().await {
                None => return Ok(None),
                Some(batch) => {
                    let rows = initial_rows(&batch?, handle)?;
                    if !rows.is_empty() {
                        return Ok(Some(rows));
                    }
                }
            }
        },
    }
}

/// The newest `n` rows of a scan by `_seq`, oldest first (a heap of `n`).
async fn newest_rows(
    mut stream: BatchStream,
    n: usize,
    handle: &TableHandle,
) -> Result<std::vec::IntoIter<Change>> {
    struct BySeq(Change);
    impl PartialEq for BySeq {
        fn eq(&self, other: &Self) -> bool {
            self.0.seq == other.0.seq
        }
    }
    impl Eq for BySeq {}
    impl PartialOrd for BySeq {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for BySeq {
        // Reversed: the heap's top is the oldest row kept.
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            other.0.seq.cmp(&self.0.seq)
        }
    }
    let mut heap = BinaryHeap::with_capacity(n.saturating_add(1).min(1 << 16));
    while let Some(batch) = stream.next().await {
        for row in initial_rows(&batch?, handle)? {
            heap.push(BySeq(row));
            if heap.len() > n {
                heap.pop();
            }
        }
    }
    let mut rows: Vec<Change> = heap.into_iter().map(|r| r.0).collect();
    rows.sort_by_key(|c| c.seq);
    Ok(rows.into_iter())
}

/// A scan batch (user columns, `_seq`, `_updated`, maybe `_user`) as inserts.
fn initial_rows(batch: &RecordBatch, handle: &TableHandle) -> Result<Vec<Change>> {
    let columns = handle.definition().columns().len();
    let seqs = batch
        .column_by_name("_seq")
        .and_then(|a| a.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| Error::Corrupt {
            what: format!("initial data of table {}", handle.id),
            reason: "the scan returned no _seq column".into(),
        })?;
    let updated = batch
        .column_by_name("_updated")
        .and_then(|a| a.as_primitive_opt::<Int64Type>());
    let users = batch.column_by_name(USER_COLUMN);
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let mut values = row_values(batch, i)?;
        let user = match users {
            Some(users) if !users.is_null(i) => {
                let name = users
                    .as_string_opt::<i32>()
                    .map(|s| s.value(i).to_owned())
                    .unwrap_or_default();
                Some(UserId::new(name)?)
            }
            _ => None,
        };
        values.truncate(columns);
        out.push(Change {
            seq: seqs.value(i),
            op: ChangeOp::Insert,
            user,
            values,
            old: None,
            updated: updated.map_or(0, |u| u.value(i)),
        });
    }
    Ok(out)
}
