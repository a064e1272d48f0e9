//! Reader pins: how a compaction or a storage move learns that no reader still uses the files
//! it is about to delete.
//!
//! A reader takes a [`ReaderPin`] while it holds the table's commit lock for reading, together
//! with its snapshot of the manifest, and keeps it until it has read the files. After a commit
//! replaced files, [`ReaderPins::wait_for_readers`] waits until every pin taken before the
//! call is released. Pins taken after it belong to readers that saw the new manifest and never
//! touch the replaced files.
//!
//! **Readers that outlive the wait** ([`READER_WAIT`]): the files are not deleted then. A
//! compaction leaves its replaced files to the orphan collector (the cleanup job deletes
//! unreferenced files past their grace period); a move leaves its switched task, so the next
//! cleanup or open removes the source. A reader holding a snapshot longer than that may find a
//! file gone and fail with a not-found error; it never returns wrong rows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a compaction or a move waits for readers of the files it replaced.
pub(crate) const READER_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct PinState {
    /// Bumped by every wait: pins taken before a wait carry an older epoch.
    epoch: u64,
    /// Live pins per epoch.
    live: BTreeMap<u64, usize>,
}

/// The readers of one table's files.
#[derive(Debug, Default)]
pub(crate) struct ReaderPins {
    state: parking_lot::Mutex<PinState>,
    released: tokio::sync::Notify,
}

/// A reader's hold on the files of its snapshot; released on drop.
#[derive(Debug)]
pub(crate) struct ReaderPin {
    pins: Arc<ReaderPins>,
    epoch: u64,
}

impl ReaderPins {
    /// Pins the files of a snapshot taken now.
    pub(crate) fn pin(self: &Arc<Self>) -> ReaderPin {
        let mut state = self.state.lock();
        let epoch = state.epoch;
        *state.live.entry(epoch).or_default() += 1;
        ReaderPin {
            pins: self.clone(),
            epoch,
        }
    }

    /// Waits until every pin taken before this call is released, for at most `timeout`.
    /// Returns whether they all were.
    pub(crate) async fn wait_for_readers(&self, timeout: Duration) -> bool {
        let cutoff = {
            let mut state = self.state.lock();
            let cutoff = state.epoch;
            state.epoch += 1;
            cutoff
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so a release between the check and the wait is
            // not missed.
            let released = self.released.notified();
            if self.state.lock().live.range(..=cutoff).next().is_none() {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return self.state.lock().live.range(..=cutoff).next().is_none();
            }
        }
    }

    /// Pins alive now (for tests and stats).
    #[cfg(test)]
    fn live(&self) -> usize {
        self.state.lock().live.values().sum()
    }
}

impl Drop for ReaderPin {
    fn drop(&mut self) {
        let mut state = self.pins.state.lock();
        if let Some(n) = state.live.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                state.live.remove(&self.epoch);
            }
        }
        drop(state);
        self.pins.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_returns_once_earlier_pins_are_released() {
        let pins = Arc::new(ReaderPins::default());
        let early = pins.pin();
        let waiter = {
            let pins = pins.clone();
            tokio::spawn(async move { pins.wait_for_readers(Duration::from_secs(30)).await })
        };
        // A pin taken after the wait started does not hold it up.
        tokio::task::yield_now().await;
        while pins.state.lock().epoch == 0 {
            tokio::task::yield_now().await;
        }
        let late = pins.pin();
        drop(early);
        assert!(waiter.await.unwrap(), "released pins end the wait");
        assert_eq!(pins.live(), 1);
        drop(late);
        assert_eq!(pins.live(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_gives_up_after_its_timeout() {
        let pins = Arc::new(ReaderPins::default());
        let _held = pins.pin();
        assert!(!pins.wait_for_readers(Duration::from_secs(30)).await);
        assert!(
            !pins.wait_for_readers(Duration::from_secs(1)).await,
            "a pin older than every wait holds each of them"
        );
        assert_eq!(pins.live(), 1);
    }
}
