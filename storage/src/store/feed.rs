//! The change feed's public face: `changes_since` (pull a page after a `_seq` cursor, of one
//! table or merged over a namespace's or a storage's tables),
//! `subscribe` (initial data, a ready marker, then every committed change as it commits) and
//! the live-query registry behind `SHOW LIVE QUERIES` / `KILL LIVE QUERY`.
//!
//! A subscription holds no queue: it is a cursor. When its reader is slow, nothing piles up;
//! it reads on from the ring (the log's tail in memory) or, once the ring has moved past it,
//! from the log itself, and past retention it gets [`Error::ChangeGap`]. Its events keep
//! `_seq` order; a table that moves to another storage or changes its columns keeps feeding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use super::Store;
use super::follow::{Follower, LiveEntry, Registered, StartAt, SubscriptionEvent};
use crate::changes::{ChangePage, FeedScope, check_logged, read_changes};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::format::Change;
use crate::ids::{NamespaceId, StorageId, TableId, UserId};
use crate::schema::{TableDefinition, TableType};
use crate::table::TableHandle;

/// Changes a subscription reads per step unless told otherwise.
pub const DEFAULT_BATCH: usize = 1000;

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
