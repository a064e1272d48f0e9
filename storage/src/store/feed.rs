//! The change feed's public face: `changes_since` (pull a page after a `_seq` cursor, of one
//! table or merged over a namespace's or a storage's tables),
//! `subscribe` (initial data, a ready marker, then every committed change as it commits) and
//! the live-query registry behind `SHOW LIVE QUERIES` / `KILL LIVE QUERY`.
//!
//! A subscription holds no queue: it is a cursor. When its reader is slow, nothing piles up;
//! it reads on from the ring (the log's tail in memory) or, once the ring has moved past it,
//! from the log itself, and past retention it gets [`Error::ChangeGap`]. Its events keep
//! `_seq` order; a table that moves to another storage or changes its columns keeps feeding.

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::watch;

use super::Store;
use crate::changes::{ChangePage, FeedScope, check_logged, read_changes, through_filter};
use crate::codec::row_values;
use crate::error::{Error, Result};
use crate::filter::{Filter, RowFilter};
use crate::format::{Change, ChangeOp};
use crate::ids::{NamespaceId, StorageId, TableId, UserId};
use crate::merge::{BatchStream, ScanOptions, USER_COLUMN, scan_table};
use crate::schema::{TableDefinition, TableType};
use crate::table::{Listening, TableHandle};

/// Changes a subscription reads per step unless told otherwise.
pub const DEFAULT_BATCH: usize = 1000;

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

/// What a subscription follows.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// One user's rows of a USER table.
    pub user: Option<UserId>,
    /// Every user's rows of a USER table (an operator's feed; changes carry their user).
    pub all_users: bool,
    /// Only rows matching this; a row that leaves it arrives as a delete, one that enters it
    /// as an insert.
    pub filter: Option<Filter>,
    /// Where to start.
    pub start: StartAt,
    /// Most changes per event (default [`DEFAULT_BATCH`]).
    pub batch_size: Option<usize>,
    /// Who subscribes, for `system.live_queries`.
    pub principal: String,
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

/// A live subscription: a stream of [`SubscriptionEvent`]s that ends only with an error (the
/// table was dropped, the query was killed, the store closed, the cursor fell past retention)
/// or when dropped.
pub struct Subscription {
    id: String,
    events: BoxStream<'static, Result<SubscriptionEvent>>,
}

impl Subscription {
    /// The live query's id (`KILL LIVE QUERY '<id>'`).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Stream for Subscription {
    type Item = Result<SubscriptionEvent>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

/// A page of the changes of several tables (a namespace or a storage), merged by `_seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct TablesChangePage {
    /// `(table, change)` in `_seq` order across the tables.
    pub changes: Vec<(TableId, Change)>,
    /// Resume after this `_seq`: every change of these tables up to it is in this page or an
    /// earlier one, and none up to it can still commit.
    pub cursor: i64,
}

/// A row of `system.live_queries`.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveQuery {
    /// Its id.
    pub id: String,
    /// Who subscribed.
    pub principal: String,
    /// `namespace.table`.
    pub table: String,
    /// Whose rows: a user id, `*` for all users, empty for shared tables.
    pub scope: String,
    /// The filter, as SQL (empty: none).
    pub filter: String,
    /// `initial`, `live` or `killed`.
    pub state: &'static str,
    /// The `_seq` it has delivered up to.
    pub cursor: i64,
    /// Committed changes of the table it has not looked at yet (`_seq`s are sparse: an
    /// upper bound on the count, 0 when caught up).
    pub lag: i64,
    /// Changes delivered.
    pub delivered: u64,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
}

/// The registry's entry of one subscription.
#[derive(Debug)]
pub(super) struct LiveEntry {
    id: String,
    principal: String,
    table: TableId,
    scope: String,
    filter: String,
    started_at_ms: i64,
    live: AtomicBool,
    killed: AtomicBool,
    cursor: AtomicI64,
    committed: AtomicI64,
    delivered: AtomicU64,
}

/// Live subscriptions by id (a leaf lock).
#[derive(Debug, Default)]
pub(super) struct LiveRegistry {
    next: AtomicU64,
    entries: parking_lot::Mutex<BTreeMap<String, Arc<LiveEntry>>>,
}

/// Removes a subscription from the registry when it is dropped.
struct Registered {
    store: Store,
    entry: Arc<LiveEntry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.store.inner.live.entries.lock().remove(&self.entry.id);
    }
}

impl Store {
    /// The changes of a table after `after` (a `_seq`; 0 for everything the log holds), at
    /// most `limit`: one user's (`user`), or every user's of a USER table (`all_users`, an
    /// operator's read). Inserts and updates carry the new row (updates also the old one),
    /// deletes the row they removed. A cursor older than the log's retention is
    /// [`Error::ChangeGap`]; a table with `CHANGE_RETENTION = 'off'` is
    /// [`Error::NoChangeLog`].
    pub async fn changes_since(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        all_users: bool,
        after: i64,
        limit: usize,
    ) -> Result<ChangePage> {
        self.on_table(table, |handle| async move {
            let scope = feed_scope(&handle, user, all_users)?;
            read_changes(&handle, &scope, after, limit).await
        })
        .await
    }

    /// The changes of every table of namespace `ns` after `after`, merged by `_seq`, at most
    /// `limit`: SHARED and STREAM tables', and of USER tables `user`'s (or every user's with
    /// `all_users`; neither skips USER tables). Tables without a change log are skipped. The
    /// cursor advances only past seqs that can no longer commit (`_seq`s are taken before a
    /// write commits), so a change never arrives after a newer one.
    pub async fn namespace_changes_since(
        &self,
        ns: &NamespaceId,
        user: Option<&UserId>,
        all_users: bool,
        after: i64,
        limit: usize,
    ) -> Result<TablesChangePage> {
        let tables = self.tables(Some(ns)).await?;
        self.changes_of_tables(tables, user, all_users, after, limit)
            .await
    }

    /// [`namespace_changes_since`](Self::namespace_changes_since) over the tables of storage
    /// `storage`.
    pub async fn storage_changes_since(
        &self,
        storage: &StorageId,
        user: Option<&UserId>,
        all_users: bool,
        after: i64,
        limit: usize,
    ) -> Result<TablesChangePage> {
        let tables = self.tables(None).await?;
        let tables = tables.into_iter().filter(|d| &d.storage_id == storage);
        self.changes_of_tables(tables.collect(), user, all_users, after, limit)
            .await
    }

    async fn changes_of_tables(
        &self,
        tables: Vec<TableDefinition>,
        user: Option<&UserId>,
        all_users: bool,
        after: i64,
        limit: usize,
    ) -> Result<TablesChangePage> {
        let limit = limit.max(1);
        // Read first: every change up to it has committed when the tables are read below.
        let watermark = self.inner.seq.watermark();
        let mut covered = watermark.max(after);
        let mut changes = Vec::new();
        for def in tables {
            if !def.options.change_retention.is_on() {
                continue;
            }
            let (user, all_users) = match (def.table_type, user, all_users) {
                (TableType::User, Some(u), _) => (Some(u), false),
                (TableType::User, None, true) => (None, true),
                (TableType::User, None, false) => continue,
                _ => (None, false),
            };
            let page = match self
                .changes_since(&def.id, user, all_users, after, limit)
                .await
            {
                Err(Error::TableNotFound { .. }) => continue,
                page => page?,
            };
            if page.cursor < page.committed {
                // The table has more after this page: the merge stops where the page does.
                covered = covered.min(page.cursor);
            }
            let id = def.id.clone();
            changes.extend(page.changes.into_iter().map(|c| (id.clone(), c)));
        }
        changes.retain(|(_, c)| c.seq <= covered);
        changes.sort_by_key(|(_, c)| c.seq);
        if changes.len() > limit {
            changes.truncate(limit);
            covered = changes.last().map_or(covered, |(_, c)| c.seq);
        }
        Ok(TablesChangePage {
            changes,
            cursor: covered,
        })
    }

    /// Follows a table's changes (see [`SubscribeOptions`] and [`SubscriptionEvent`]).
    /// Checks the table, scope and filter now; nothing is read until the stream is polled.
    pub async fn subscribe(
        &self,
        table: &TableId,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let handle = self.handle(table).await?;
        let def = check_logged(&handle)?;
        let scope = feed_scope(&handle, options.user.as_ref(), options.all_users)?;
        let filter = match &options.filter {
            Some(f) => Some(f.for_rows(&def.schema, &table.to_string())?),
            None => None,
        };
        let n = self.inner.live.next.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(LiveEntry {
            id: format!("lq-{}-{n}", std::process::id()),
            principal: options.principal.clone(),
            table: table.clone(),
            scope: match (&scope, &options.user) {
                (FeedScope::AllUsers, _) => "*".into(),
                (_, Some(u)) => u.to_string(),
                (_, None) => String::new(),
            },
            filter: options
                .filter
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            started_at_ms: self.now_ms(),
            live: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            cursor: AtomicI64::new(0),
            committed: AtomicI64::new(handle.feed.committed()),
            delivered: AtomicU64::new(0),
        });
        self.inner
            .live
            .entries
            .lock()
            .insert(entry.id.clone(), entry.clone());
        let registered = Registered {
            store: self.clone(),
            entry: entry.clone(),
        };
        let (wake, listening) = handle.feed.listen();
        let follower = Follower {
            store: self.clone(),
            registered,
            filter_version: def.schema.version,
            filter,
            filter_source: options.filter,
            scope,
            user: options.user,
            start: Some(options.start),
            initial: None,
            ready: None,
            cursor: 0,
            batch: options.batch_size.unwrap_or(DEFAULT_BATCH).max(1),
            handle,
            wake,
            _listening: listening,
            ended: false,
        };
        let events = futures::stream::unfold(follower, |mut f| async move {
            let item = f.next().await?;
            f.ended = item.is_err();
            Some((item, f))
        })
        .boxed();
        Ok(Subscription {
            id: entry.id.clone(),
            events,
        })
    }

    /// The live subscriptions of this process.
    pub fn live_queries(&self) -> Vec<LiveQuery> {
        let entries: Vec<Arc<LiveEntry>> =
            self.inner.live.entries.lock().values().cloned().collect();
        entries
            .iter()
            .map(|e| {
                let cursor = e.cursor.load(Ordering::Acquire);
                let killed = e.killed.load(Ordering::Acquire);
                LiveQuery {
                    id: e.id.clone(),
                    principal: e.principal.clone(),
                    table: e.table.to_string(),
                    scope: e.scope.clone(),
                    filter: e.filter.clone(),
                    state: match (killed, e.live.load(Ordering::Acquire)) {
                        (true, _) => "killed",
                        (false, true) => "live",
                        (false, false) => "initial",
                    },
                    cursor,
                    lag: e
                        .committed
                        .load(Ordering::Acquire)
                        .saturating_sub(cursor)
                        .max(0),
                    delivered: e.delivered.load(Ordering::Acquire),
                    started_at_ms: e.started_at_ms,
                }
            })
            .collect()
    }

    /// Ends a live subscription: its stream yields [`Error::LiveQueryKilled`] and ends.
    pub async fn kill_live_query(&self, id: &str) -> Result<()> {
        let entry = self.inner.live.entries.lock().get(id).cloned();
        let entry = entry.ok_or_else(|| Error::LiveQueryNotFound { id: id.to_owned() })?;
        entry.killed.store(true, Ordering::Release);
        if let Ok(handle) = self.handle(&entry.table).await {
            handle.feed.wake();
        }
        Ok(())
    }
}

/// Whose changes a feed of `handle` reads.
fn feed_scope(handle: &TableHandle, user: Option<&UserId>, all_users: bool) -> Result<FeedScope> {
    if all_users {
        if user.is_some() || handle.definition().table_type != TableType::User {
            return Err(Error::Scope {
                table: handle.id.to_string(),
                reason: "an all-users feed is for USER tables, without a user id",
            });
        }
        return Ok(FeedScope::AllUsers);
    }
    Ok(FeedScope::One(handle.scope(user)?))
}

/// The state of one subscription's stream.
struct Follower {
    store: Store,
    registered: Registered,
    handle: Arc<TableHandle>,
    wake: watch::Receiver<i64>,
    _listening: Listening,
    scope: FeedScope,
    user: Option<UserId>,
    filter: Option<RowFilter>,
    filter_source: Option<Filter>,
    /// The schema version `filter` was bound to.
    filter_version: u32,
    /// Not started yet: where to start.
    start: Option<StartAt>,
    /// Initial data still to deliver.
    initial: Option<Initial>,
    /// The ready marker, once the initial data is out.
    ready: Option<i64>,
    cursor: i64,
    batch: usize,
    ended: bool,
}

/// Initial data being delivered.
enum Initial {
    Streaming(BatchStream),
    Collected(std::vec::IntoIter<Change>),
}

impl Follower {
    fn entry(&self) -> &LiveEntry {
        &self.registered.entry
    }

    async fn next(&mut self) -> Option<Result<SubscriptionEvent>> {
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
