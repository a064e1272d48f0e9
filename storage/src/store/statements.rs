//! Serializes the read-modify-write statements of one table scope (and `REPLACE`, which
//! overwrites what they read). SQL `UPDATE` and `DELETE`
//! read the rows they change (a query evaluates `SET n = n + 1` and the `WHERE`), then write
//! them in one batch: two of them on the same rows at once would each write what it read,
//! losing the other's change or bringing back a row the other deleted. Lock 0 of
//! `table`'s `# Locking` table, taken before anything else and held to the commit.

use std::collections::HashMap;
use std::sync::Arc;

use super::Store;
use crate::ids::{TableId, UserId};

/// A table scope: the table and, for a USER table, the user.
type ScopeKey = (TableId, Option<UserId>);

/// The statement locks, by table scope (a leaf lock guards the map).
#[derive(Debug, Default)]
pub(super) struct StatementLocks {
    locks: parking_lot::Mutex<HashMap<ScopeKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held by a read-modify-write statement until it committed.
#[derive(Debug)]
pub struct StatementGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Store {
    /// Waits until no other read-modify-write statement works on `user`'s rows of `table`
    /// (every row of a SHARED or STREAM table), then holds them until the guard drops.
    pub async fn lock_for_update(&self, table: &TableId, user: Option<&UserId>) -> StatementGuard {
        let lock = self
            .inner
            .statement_locks
            .locks
            .lock()
            .entry((table.clone(), user.cloned()))
            .or_default()
            .clone();
        StatementGuard {
            _guard: lock.lock_owned().await,
        }
    }
}
