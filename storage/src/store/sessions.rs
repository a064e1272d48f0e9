//! The connections of a server over this store, for `system.sessions`: who is connected,
//! from where, since when, and what it is running. Kept in memory; a server registers each
//! authenticated connection and drops its handle when it closes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Store;

/// A row of `system.sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The connection's id (its backend pid on the wire).
    pub id: i64,
    /// The login.
    pub user: String,
    /// `operator` or `user`.
    pub role: String,
    /// The client's address.
    pub client: String,
    /// The client's `application_name`.
    pub application: String,
    /// When it connected, ms since the epoch.
    pub connected_at_ms: i64,
    /// The statement running, if any.
    pub statement: Option<String>,
    /// When that statement started, ms since the epoch.
    pub statement_started_at_ms: Option<i64>,
}

/// The registry of open sessions (a leaf lock).
#[derive(Debug, Default)]
pub(super) struct SessionRegistry {
    sessions: parking_lot::Mutex<BTreeMap<u64, SessionInfo>>,
    next: AtomicU64,
}

/// A registered session; dropping it removes the session from `system.sessions`.
#[derive(Debug)]
pub struct SessionHandle {
    registry: Arc<SessionRegistry>,
    key: u64,
    store: Store,
}

impl SessionHandle {
    /// Records that `statement` started running (`None`: the session is idle).
    pub fn running(&self, statement: Option<&str>) {
        let now = self.store.now_ms();
        if let Some(s) = self.registry.sessions.lock().get_mut(&self.key) {
            s.statement = statement.map(|t| t.chars().take(1000).collect());
            s.statement_started_at_ms = statement.map(|_| now);
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.registry.sessions.lock().remove(&self.key);
    }
}

impl Store {
    /// Registers a connection; `info.connected_at_ms` is set to now.
    pub fn register_session(&self, mut info: SessionInfo) -> SessionHandle {
        let registry = self.inner.sessions.clone();
        let key = registry.next.fetch_add(1, Ordering::Relaxed);
        info.connected_at_ms = self.now_ms();
        registry.sessions.lock().insert(key, info);
        SessionHandle {
            registry,
            key,
            store: self.clone(),
        }
    }

    /// The open sessions, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.inner
            .sessions
            .sessions
            .lock()
            .values()
            .cloned()
            .collect()
    }
}
