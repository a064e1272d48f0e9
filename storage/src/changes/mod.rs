//! Reading a table's change log: pages of changes after a `_seq` cursor for one user or all
//! users (from the feed's ring when it still holds them, else from the `log` partition), the
//! gap answer past retention, the trim that enforces retention, and the filter transitions a
//! filtered feed applies. The subscription loop on top lives in `store::feed`.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

mod resolve;

use crate::backend::{Direction, KeyRange, KvPair, ScanRequest, WriteBatch};
use crate::error::{Error, Result};
use crate::filter::RowFilter;
use crate::format::{
    Change, ChangeOp, LogImage, META_LOG_FLOOR, RawChange, entry_changes, last_seq, log_key,
    seq_of_log_key,
};
use crate::ids::{KeyScope, UserId};
use crate::schema::{ChangeRetention, TableDefinition, TableType};
use crate::table::{RingRead, TableHandle, upgrade_row};

/// Log entries one page examines at most (a user's page over a log of other users' changes
/// ends there and resumes from its cursor).
const MAX_EXAMINED: usize = 65_536;

/// One page of a table's changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    /// The changes, in `_seq` order.
    pub changes: Vec<Change>,
    /// Where the page ends: the next page starts after it. Every change of the scope up to it
    /// is in this page or an earlier one.
    pub cursor: i64,
    /// The table's last committed `_seq` when the page was read: `cursor < committed` means
    /// more changes are waiting.
    pub committed: i64,
}

/// A change read from the log.
pub(super) struct Logged {
    pub(super) change: Change,
    /// The row's encoded primary key (empty in entries written before references).
    pub(super) key: Vec<u8>,
    /// Whether the log names the new row by reference (`change.values` still to be found).
    pub(super) by_reference: bool,
}

/// Whose changes a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeedScope {
    /// One scope: a user of a USER table, or the shared scope of the others.
    One(KeyScope),
    /// Every user of a USER table (the operator's feed).
    AllUsers,
}

impl FeedScope {
    /// Whether a write batch of the scope stored as `name` is this one's.
    fn covers(&self, name: &[u8]) -> bool {
        match self {
            Self::One(KeyScope::User(u)) => u.as_str().as_bytes() == name,
            Self::One(KeyScope::Shared) | Self::AllUsers => true,
        }
    }
}

/// Fails unless the table keeps a change log.
pub(crate) fn check_logged(table: &TableHandle) -> Result<Arc<TableDefinition>> {
    let def = table.definition();
    if !def.options.change_retention.is_on() {
        return Err(Error::NoChangeLog {
            table: table.id.to_string(),
        });
    }
    Ok(def)
}

/// The changes of `scope` after `after`, at most `limit` of them (at least one is asked
/// for). A cursor older than the log's floor is [`Error::ChangeGap`].
pub(crate) async fn read_changes(
    table: &TableHandle,
    scope: &FeedScope,
    after: i64,
    limit: usize,
) -> Result<ChangePage> {
    let def = check_logged(table)?;
    let limit = limit.max(1);
    let after = after.max(0);
    let page = match table.feed.read_after(after, limit.saturating_mul(4)) {
        RingRead::Covered(ring, upto) => {
            let mut changes = Vec::new();
            let mut cursor = upto;
            for c in ring {
                if changes.len() == limit {
                    cursor = changes.last().map_or(after, |c: &Change| c.seq);
                    break;
                }
                if in_scope(&c, scope) {
                    changes.push(Change::clone(&c));
                }
            }
            Ok(ChangePage {
                changes,
                cursor,
                committed: table.feed.committed(),
            })
        }
        RingRead::Behind => read_log(table, &def, scope, after, limit).await,
    };
    // After the read: a trim that raced with it shows here (also as a failed read, when it
    // took the later change a change by reference needed).
    let floor = table.feed.floor();
    if after < floor.saturating_sub(1) {
        return Err(Error::ChangeGap {
            table: table.id.to_string(),
            after,
            oldest: floor,
        });
    }
    page
}

fn in_scope(change: &Change, scope: &FeedScope) -> bool {
    match scope {
        FeedScope::AllUsers | FeedScope::One(KeyScope::Shared) => true,
        FeedScope::One(KeyScope::User(u)) => change.user.as_ref() == Some(u),
    }
}

/// The log's entries that hold changes after a cursor, a chunk at a time.
pub(super) struct LogAfter<'t> {
    table: &'t TableHandle,
    first: Option<Vec<KvPair>>,
    next: Option<ScanRequest>,
}

impl<'t> LogAfter<'t> {
    /// From the entry holding the change right after `after` (an entry is keyed by its first
    /// change, so it may start at or before the cursor).
    pub(super) async fn new(table: &'t TableHandle, after: i64) -> Result<Self> {
        let holding = ScanRequest::new(KeyRange::Range(
            Bound::Unbounded,
            Bound::Included(Bytes::copy_from_slice(&log_key(after))),
        ))
        .direction(Direction::Reverse)
        .limit(1);
        let first = table.storage.hot.scan(&table.log, &holding).await?.entries;
        let range = KeyRange::Range(
            Bound::Excluded(Bytes::copy_from_slice(&log_key(after))),
            Bound::Unbounded,
        );
        Ok(Self {
            table,
            first: Some(first),
            next: Some(ScanRequest::new(range).chunk_size(64)),
        })
    }

    /// The next entries; `None` at the end of the log.
    pub(super) async fn next_chunk(&mut self) -> Result<Option<Vec<KvPair>>> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let Some(request) = self.next.take() else {
            return Ok(None);
        };
        let chunk = self
            .table
            .storage
            .hot
            .scan(&self.table.log, &request)
            .await?;
        self.next = chunk.resume;
        Ok(Some(chunk.entries))
    }
}

/// [`read_changes`] from the `log` partition.
async fn read_log(
    table: &TableHandle,
    def: &TableDefinition,
    scope: &FeedScope,
    after: i64,
    limit: usize,
) -> Result<ChangePage> {
    let committed = table.feed.committed();
    let mut changes = Vec::new();
    let mut examined = 0usize;
    let mut cursor = after;
    let mut log = LogAfter::new(table, after).await?;
    'pages: loop {
        let Some(entries) = log.next_chunk().await? else {
            // The end of the log: nothing up to the committed seq is missing.
            cursor = cursor.max(committed);
            break;
        };
        for (_, value) in &entries {
            let entry = entry_changes(value)?;
            let user = scope
                .covers(entry.scope)
                .then(|| user_of(def, entry.scope))
                .transpose()?;
            for raw in &entry.changes {
                if raw.seq <= after {
                    continue;
                }
                if let Some(user) = &user {
                    changes.push(decode_change(def, user.clone(), raw)?);
                }
                cursor = raw.seq;
                examined += 1;
                if changes.len() == limit || examined == MAX_EXAMINED {
                    break 'pages;
                }
            }
        }
    }
    resolve::resolve(table, def, &mut changes, cursor).await?;
    Ok(ChangePage {
        changes: changes.into_iter().map(|c| c.change).collect(),
        cursor,
        committed: committed.max(cursor),
    })
}

/// The user of a write batch's scope stored as `name` (`None` for SHARED and STREAM tables).
fn user_of(def: &TableDefinition, name: &[u8]) -> Result<Option<UserId>> {
    if name.is_empty() || def.table_type != TableType::User {
        return Ok(None);
    }
    let name = std::str::from_utf8(name).map_err(|_| Error::Corrupt {
        what: format!("change log of table {}", def.id),
        reason: "a user id is not UTF-8".into(),
    })?;
    Ok(Some(UserId::new(name)?))
}

/// A logged change of `user` in the table's current schema; one whose new row the log names
/// by reference has no values until [`resolve::resolve`] finds them.
fn decode_change(
    def: &TableDefinition,
    user: Option<UserId>,
    raw: &RawChange<'_>,
) -> Result<Logged> {
    let entry = raw.decode()?;
    let (values, updated, by_reference) = match entry.row {
        LogImage::Row(row) => {
            let updated = row.system.updated;
            (upgrade_row(def, row)?, updated, false)
        }
        LogImage::Reference { updated } => (Vec::new(), updated, true),
    };
    let old = entry.old.map(|row| upgrade_row(def, row)).transpose()?;
    Ok(Logged {
        change: Change {
            seq: raw.seq,
            op: entry.op,
            user,
            values,
            old,
            updated,
        },
        key: raw.key.to_vec(),
        by_reference,
    })
}

/// A change as a subscriber with `filter` sees it: an update whose row leaves the filter is a
/// delete of the old row, one whose row enters it an insert; changes outside it vanish.
pub(crate) fn through_filter(change: Change, filter: &RowFilter) -> Option<Change> {
    let now = filter.matches(&change.values);
    match change.op {
        ChangeOp::Insert | ChangeOp::Delete => now.then_some(change),
        ChangeOp::Update => {
            // The log keeps an update's old row; without one, the update is taken as staying
            // on the side of the filter its new row is on.
            let before = change.old.as_ref().map_or(now, |old| filter.matches(old));
            match (before, now) {
                (true, true) => Some(change),
                (false, true) => Some(Change {
                    op: ChangeOp::Insert,
                    old: None,
                    ..change
                }),
                (true, false) => Some(Change {
                    op: ChangeOp::Delete,
                    values: change.old.clone().unwrap_or_default(),
                    old: None,
                    ..change
                }),
                (false, false) => None,
            }
        }
    }
}

/// The floor a time-based retention asks for at `now_ms`: entries below it are past it.
pub(crate) fn retention_floor(retention: ChangeRetention, now_ms: i64) -> Option<i64> {
    match retention {
        ChangeRetention::Duration(keep) => {
            let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            Some(crate::seq::first_id_at_ms(now_ms.saturating_sub(keep_ms)))
        }
        ChangeRetention::Rows(_) | ChangeRetention::Off => None,
    }
}

/// The `_seq` of the oldest entry of a table's log, if any.
pub(crate) async fn oldest_logged(
    backend: &dyn crate::backend::StorageBackend,
    log: &crate::backend::Partition,
) -> Result<Option<i64>> {
    let first = backend.scan(log, &ScanRequest::default().limit(1)).await?;
    first
        .entries
        .first()
        .map(|(key, _)| seq_of_log_key(key))
        .transpose()
}

/// Trims the log to the table's retention: one range delete of the entries before the first
/// one it keeps, recorded with the new floor (one above the newest change deleted) in the
/// same batch. An entry (a write batch, or a part of a large one) goes whole. Returns the new floor when it
/// moved. The caller holds the table's maintenance lock (a move copies the log).
pub(crate) async fn trim_log(table: &TableHandle, now_ms: i64) -> Result<Option<i64>> {
    let def = table.definition();
    // Entries keyed below this go.
    let cut = match def.options.change_retention {
        ChangeRetention::Off => table.feed.committed().saturating_add(1),
        ChangeRetention::Duration(_) => {
            // Invariant: a Duration retention always has a floor.
            retention_floor(def.options.change_retention, now_ms).unwrap_or(0)
        }
        ChangeRetention::Rows(keep) => {
            // The oldest entry that holds one of the newest `keep` changes.
            let mut kept = 0u64;
            let mut oldest_kept = None;
            let request = ScanRequest::default()
                .direction(Direction::Reverse)
                .chunk_size(64);
            let mut next = Some(request);
            'entries: while let Some(request) = next {
                let chunk = table.storage.hot.scan(&table.log, &request).await?;
                next = chunk.resume;
                for (key, value) in &chunk.entries {
                    oldest_kept = Some(seq_of_log_key(key)?);
                    kept += entry_changes(value)?.changes.len() as u64;
                    if kept >= keep {
                        break 'entries;
                    }
                }
            }
            match oldest_kept {
                Some(seq) => seq,
                None => return Ok(None),
            }
        }
    };
    // The newest entry that goes, for the new floor.
    let below = ScanRequest::new(KeyRange::Range(
        Bound::Unbounded,
        Bound::Excluded(Bytes::copy_from_slice(&log_key(cut))),
    ))
    .direction(Direction::Reverse)
    .limit(1);
    let floor = match table
        .storage
        .hot
        .scan(&table.log, &below)
        .await?
        .entries
        .first()
    {
        Some((_, value)) => last_seq(value)?.saturating_add(1),
        None => return Ok(None),
    };
    if floor <= table.feed.floor() {
        return Ok(None);
    }
    let mut batch = WriteBatch::new();
    batch.delete_range(
        &table.log,
        Bytes::copy_from_slice(&log_key(0)),
        Bytes::copy_from_slice(&log_key(cut)),
    );
    batch.put(
        &table.meta,
        Bytes::from_static(META_LOG_FLOOR),
        Bytes::copy_from_slice(&floor.to_be_bytes()),
    );
    table.storage.hot.batch(batch).await?;
    table.feed.raise_floor(floor);
    Ok(Some(floor))
}
