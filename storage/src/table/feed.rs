//! A table's live change feed in memory: the last committed `_seq` (a `watch` its subscribers
//! wait on), the log's floor, and a bounded ring of the newest decoded changes that live
//! subscribers read without going to the engine. The durable log is the `log` partition
//! (`format::changelog`); the ring is only a cache of its tail.
//!
//! The ring is kept only while someone subscribes, and it is complete for every `_seq` in
//! `(from, committed]`: a write that does not push into it (nobody listening) moves `from`
//! up to its own last seq. Writes publish under the table's write lock, in `_seq` order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::format::Change;

/// Changes the ring keeps (shared by every subscriber of the table).
pub(crate) const RING_CAPACITY: usize = 8192;

/// See the module doc.
#[derive(Debug)]
pub(crate) struct ChangeHub {
    committed: watch::Sender<i64>,
    /// Entries below this seq may have been trimmed from the log.
    floor: AtomicI64,
    ring: parking_lot::RwLock<Ring>,
    subscribers: AtomicUsize,
}

#[derive(Debug)]
struct Ring {
    /// The ring holds every change with a seq above this (up to `committed`).
    from: i64,
    entries: VecDeque<Arc<Change>>,
}

/// What the ring answers for a cursor.
pub(crate) enum RingRead {
    /// The changes after the cursor (up to a limit), and the seq they cover up to: nothing
    /// between the cursor and it is missing.
    Covered(Vec<Arc<Change>>, i64),
    /// The cursor is older than the ring: read the log.
    Behind,
}

/// Counts a subscriber while it lives: the hub keeps its ring only while one exists.
#[derive(Debug)]
pub(crate) struct Listening(Arc<ChangeHub>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ChangeHub {
    /// A hub whose log ends at `committed` and keeps everything from `floor`.
    pub(crate) fn new(committed: i64, floor: i64) -> Self {
        Self {
            committed: watch::Sender::new(committed),
            floor: AtomicI64::new(floor),
            ring: parking_lot::RwLock::new(Ring {
                from: committed,
                entries: VecDeque::new(),
            }),
            subscribers: AtomicUsize::new(0),
        }
    }

    /// The last committed seq of the table (0 before its first logged write).
    pub(crate) fn committed(&self) -> i64 {
        *self.committed.borrow()
    }

    /// The log's floor (see [`ChangeHub::new`]).
    pub(crate) fn floor(&self) -> i64 {
        self.floor.load(Ordering::Acquire)
    }

    /// Raises the floor after a trim.
    pub(crate) fn raise_floor(&self, floor: i64) {
        self.floor.fetch_max(floor, Ordering::AcqRel);
    }

    /// Whether a write should hand its decoded changes to [`publish`](Self::publish).
    pub(crate) fn wants_changes(&self) -> bool {
        self.subscribers.load(Ordering::Acquire) > 0
    }

    /// Registers a subscriber: it wakes on every commit (and on [`wake`](Self::wake)).
    pub(crate) fn listen(self: &Arc<Self>) -> (watch::Receiver<i64>, Listening) {
        self.subscribers.fetch_add(1, Ordering::AcqRel);
        (self.committed.subscribe(), Listening(self.clone()))
    }

    /// Records a commit whose last seq is `last`, with its changes when someone listens.
    /// Called under the table's write lock, in seq order.
    pub(crate) fn publish(&self, last: i64, changes: Option<Vec<Change>>) {
        {
            let mut ring = self.ring.write();
            match changes {
                Some(changes) => {
                    ring.entries.extend(changes.into_iter().map(Arc::new));
                    while ring.entries.len() > RING_CAPACITY {
                        if let Some(oldest) = ring.entries.pop_front() {
                            ring.from = oldest.seq;
                        }
                    }
                }
                None => {
                    ring.entries.clear();
                    ring.from = last;
                }
            }
        }
        self.committed.send_replace(last);
    }

    /// Forgets the ring (its rows are in an older schema after ALTER TABLE): readers go to
    /// the log, which decodes them in the current one.
    pub(crate) fn reset_ring(&self) {
        let mut ring = self.ring.write();
        ring.entries.clear();
        ring.from = self.committed();
    }

    /// Wakes every subscriber without a commit (the table moved or was dropped).
    pub(crate) fn wake(&self) {
        self.committed.send_modify(|_| {});
    }

    /// The changes after `after`, at most `limit` of them, if the ring still holds them.
    pub(crate) fn read_after(&self, after: i64, limit: usize) -> RingRead {
        let ring = self.ring.read();
        if after < ring.from {
            return RingRead::Behind;
        }
        let start = ring.entries.partition_point(|c| c.seq <= after);
        let taken: Vec<Arc<Change>> = ring.entries.range(start..).take(limit).cloned().collect();
        let upto = match taken.last() {
            Some(last) if start + taken.len() < ring.entries.len() => last.seq,
            // Everything the ring holds: it is complete up to the committed seq (a commit
            // fills the ring before it announces its seq).
            Some(last) => self.committed().max(last.seq),
            None => self.committed().max(after),
        };
        RingRead::Covered(taken, upto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ChangeOp;

    fn change(seq: i64) -> Change {
        Change {
            seq,
            op: ChangeOp::Insert,
            user: None,
            values: vec![],
            old: None,
            updated: 0,
        }
    }

    fn seqs(read: RingRead) -> Option<(Vec<i64>, i64)> {
        match read {
            RingRead::Covered(c, upto) => Some((c.iter().map(|c| c.seq).collect(), upto)),
            RingRead::Behind => None,
        }
    }

    #[test]
    fn the_ring_answers_only_for_cursors_it_covers() {
        let hub = Arc::new(ChangeHub::new(10, 0));
        // Nobody listens: the write only moves the ring's start.
        hub.publish(12, None);
        assert!(seqs(hub.read_after(10, 10)).is_none());
        assert_eq!(seqs(hub.read_after(12, 10)), Some((vec![], 12)));
        let (_rx, listening) = hub.listen();
        assert!(hub.wants_changes());
        hub.publish(14, Some(vec![change(13), change(14)]));
        assert_eq!(seqs(hub.read_after(12, 10)), Some((vec![13, 14], 14)));
        assert_eq!(seqs(hub.read_after(12, 1)), Some((vec![13], 13)));
        assert_eq!(seqs(hub.read_after(14, 10)), Some((vec![], 14)));
        drop(listening);
        assert!(!hub.wants_changes());
    }

    #[test]
    fn a_full_ring_drops_its_oldest_and_sends_older_cursors_to_the_log() {
        let hub = Arc::new(ChangeHub::new(0, 0));
        let _l = hub.listen();
        let n = RING_CAPACITY as i64 + 5;
        hub.publish(n, Some((1..=n).map(change).collect()));
        assert!(seqs(hub.read_after(4, 1)).is_none());
        assert_eq!(seqs(hub.read_after(5, 1)), Some((vec![6], 6)));
    }
}
