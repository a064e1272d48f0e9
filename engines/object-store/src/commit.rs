//! Group commit: concurrent durable writes share one WAL flush.
//!
//! A durable write puts its batch in SlateDB's WAL buffer without waiting, then joins the
//! next flush. One leader task at a time runs flushes back to back while writers wait; each
//! flush covers every write buffered before it started, so every writer that joined before it
//! started is durable when it ends. Before each flush the leader lingers briefly (at most a
//! quarter of the last flush's time, and never past [`MAX_LINGER`]) until the writers the last
//! flush released and those that joined during it all wait again: without that, writers
//! released by one flush come back just after the next one started and wait for two flushes
//! instead of one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use slatedb::Db;
use tokio::sync::{Notify, oneshot};

/// The longest a flush waits for more writers to join.
const MAX_LINGER: Duration = Duration::from_millis(2);

/// What a waiting writer learns of its flush.
type FlushResult = Result<(), Arc<slatedb::Error>>;

/// Shares WAL flushes among concurrent durable writes of one database.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    joined: Notify,
}

#[derive(Default)]
struct State {
    /// A leader task is running flushes.
    leading: bool,
    /// Writers waiting for the next flush.
    waiting: Vec<oneshot::Sender<FlushResult>>,
    /// Writers the last flush released plus those that joined while it ran: how many the next
    /// flush can expect.
    expected: usize,
    /// How long the last flush took.
    last_flush: Duration,
}

impl GroupCommit {
    /// Waits until every write this task made to `db` before the call is durable. Must run on
    /// the runtime that owns `db` (the leader is spawned there).
    pub(crate) async fn durable(self: &Arc<Self>, db: &Db) -> FlushResult {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut state = self.state.lock();
            state.waiting.push(tx);
            !std::mem::replace(&mut state.leading, true)
        };
        self.joined.notify_one();
        if lead {
            tokio::spawn(self.clone().lead(db.clone()));
        }
        // The leader answers every writer it took before it stops; a dropped sender means
        // its task died with the runtime, i.e. the database is going away.
        rx.await.unwrap_or_else(|_| {
            Err(Arc::new(slatedb::Error::closed(
                "the WAL flush task stopped".into(),
                slatedb::CloseReason::Clean,
            )))
        })
    }

    /// Flushes until no writer waits.
    async fn lead(self: Arc<Self>, db: Db) {
        loop {
            self.linger().await;
            let round = {
                let mut state = self.state.lock();
                if state.waiting.is_empty() {
                    state.leading = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let started = Instant::now();
            let result = db.flush().await.map_err(Arc::new);
            {
                let mut state = self.state.lock();
                // The writers this flush releases and those that joined during it.
                state.expected = round.len() + state.waiting.len();
                state.last_flush = started.elapsed();
            }
            for writer in round {
                // A writer that stopped waiting does not need the answer.
                let _ = writer.send(result.clone());
            }
        }
    }

    /// Waits until the expected writers wait, or the linger ends.
    async fn linger(&self) {
        let (wanted, linger) = {
            let state = self.state.lock();
            (state.expected, (state.last_flush / 4).min(MAX_LINGER))
        };
        let deadline = tokio::time::Instant::now() + linger;
        loop {
            let notified = self.joined.notified();
            if self.state.lock().waiting.len() >= wanted {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}
