//! `_seq` generation: monotonic, snowflake-style 64-bit ids (ms timestamp, node id, sequence).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Start of the id clock: 2024-01-01T00:00:00Z, in ms since the Unix epoch.
pub(crate) const SEQ_EPOCH_MS: u64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
/// Largest node id (10 bits).
pub(crate) const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;
const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;

/// Generates `_seq` values: `[41 bits ms since SEQ_EPOCH_MS][10 bits node][12 bits sequence]`.
///
/// Ids from one generator strictly increase, even when the wall clock stalls or steps back: the
/// generator then keeps counting from its own last millisecond (borrowing from the future when
/// 4096 ids are taken in one ms).
#[derive(Debug)]
pub(crate) struct SeqGenerator {
    node_id: u64,
    /// `(ms << SEQUENCE_BITS) | sequence` of the last id handed out.
    last: AtomicU64,
    /// The first id of every write batch that took its ids with [`SeqGenerator::take_tracked`]
    /// and has not committed or failed yet (a leaf lock).
    in_flight: parking_lot::Mutex<std::collections::BTreeSet<i64>>,
}

/// A write batch's ids in flight: dropped once the batch committed (or failed), which lets
/// the [watermark](SeqGenerator::watermark) pass them.
#[derive(Debug)]
pub(crate) struct InFlight<'g> {
    generator: &'g SeqGenerator,
    first: Option<i64>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(first) = self.first {
            self.generator.in_flight.lock().remove(&first);
        }
    }
}

impl SeqGenerator {
    /// A generator for `node_id` (0..=1023).
    pub(crate) fn new(node_id: u16) -> Result<Self> {
        if node_id > MAX_NODE_ID {
            return Err(Error::InvalidValue {
                column: "node_id".into(),
                reason: format!("{node_id} exceeds the largest node id {MAX_NODE_ID}"),
            });
        }
        Ok(Self {
            node_id: u64::from(node_id),
            last: AtomicU64::new(0),
            in_flight: parking_lot::Mutex::new(std::collections::BTreeSet::new()),
        })
    }

    /// The next id.
    pub(crate) fn next(&self) -> i64 {
        let now = now_ms().saturating_sub(SEQ_EPOCH_MS);
        let mut current = self.last.load(Ordering::Relaxed);
        loop {
            let (ms, seq) = (current >> SEQUENCE_BITS, current & MAX_SEQUENCE);
            let next = if now > ms {
                now << SEQUENCE_BITS
            } else if seq < MAX_SEQUENCE {
                current + 1
            } else {
                (ms + 1) << SEQUENCE_BITS
            };
            match self.last.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.compose(next),
                Err(actual) => current = actual,
            }
        }
    }

    /// Reserves `n` consecutive ids with one clock read (a write batch takes its ids at once).
    pub(crate) fn take(&self, n: usize) -> SeqIds<'_> {
        let now = now_ms().saturating_sub(SEQ_EPOCH_MS) << SEQUENCE_BITS;
        // Packed ids count up: a full millisecond rolls into the next one.
        let n = n as u64;
        if n == 0 {
            return SeqIds {
                generator: self,
                next: 0,
                end: 0,
            };
        }
        let mut current = self.last.load(Ordering::Relaxed);
        loop {
            let first = now.max(current + 1);
            let last = first + n - 1;
            match self.last.compare_exchange_weak(
                current,
                last,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return SeqIds {
                        generator: self,
                        next: first,
                        end: last + 1,
                    };
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// [`take`](Self::take) for a write batch whose changes readers of several tables follow:
    /// until the returned guard is dropped (after the commit), the watermark stays below these
    /// ids.
    pub(crate) fn take_tracked(&self, n: usize) -> (Vec<i64>, InFlight<'_>) {
        let mut in_flight = self.in_flight.lock();
        // Under the lock: a watermark read never sees these ids taken but not yet in flight.
        let ids: Vec<i64> = self.take(n).collect();
        let first = ids.first().copied();
        if let Some(first) = first {
            in_flight.insert(first);
        }
        (
            ids,
            InFlight {
                generator: self,
                first,
            },
        )
    }

    /// The largest id no write batch taken with [`take_tracked`](Self::take_tracked) can still
    /// commit below: every change with a `_seq` up to it has committed (or never will).
    pub(crate) fn watermark(&self) -> i64 {
        let in_flight = self.in_flight.lock();
        match in_flight.first() {
            Some(first) => first - 1,
            None => self.compose(self.last.load(Ordering::Acquire)),
        }
    }

    /// Makes every later id larger than `seen` (call with the largest stored id after reopen).
    pub(crate) fn observe(&self, seen: i64) {
        let seen = seen.max(0) as u64;
        let packed =
            ((seen >> (NODE_BITS + SEQUENCE_BITS)) << SEQUENCE_BITS) | (seen & MAX_SEQUENCE);
        self.last.fetch_max(packed, Ordering::AcqRel);
    }

    fn compose(&self, packed: u64) -> i64 {
        let ms = packed >> SEQUENCE_BITS;
        let seq = packed & MAX_SEQUENCE;
        // 41 bits of ms keep the result below 2^63 until the year 2093.
        ((ms << (NODE_BITS + SEQUENCE_BITS)) | (self.node_id << SEQUENCE_BITS) | seq) as i64
    }
}

/// Ids reserved by [`SeqGenerator::take`], in increasing order.
#[derive(Debug)]
pub(crate) struct SeqIds<'g> {
    generator: &'g SeqGenerator,
    next: u64,
    end: u64,
}

impl Iterator for SeqIds<'_> {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        if self.next == self.end {
            return None;
        }
        self.next += 1;
        Some(self.generator.compose(self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.next) as usize;
        (left, Some(left))
    }
}

/// The smallest id of millisecond `ms` (since the Unix epoch): every id taken in an earlier
/// millisecond is below it. Retention turns a time into a log position with it.
pub(crate) fn first_id_at_ms(ms: i64) -> i64 {
    let since = (ms.max(0) as u64).saturating_sub(SEQ_EPOCH_MS);
    (since << (NODE_BITS + SEQUENCE_BITS)) as i64
}

/// The smallest id of the current millisecond plus `ahead_ms`.
pub(crate) fn first_id_from_now(ahead_ms: u64) -> i64 {
    first_id_at_ms((now_ms() + ahead_ms) as i64)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Nanoseconds since the Unix epoch, for `_updated`.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn taken_blocks_and_single_ids_interleave_in_order() {
        let g = SeqGenerator::new(3).unwrap();
        let mut ids = vec![g.next()];
        // 10_000 ids span more than one millisecond's 4096 sequence numbers.
        ids.extend(g.take(10_000));
        ids.push(g.next());
        ids.extend(g.take(0));
        ids.extend(g.take(5));
        assert_eq!(ids.len(), 10_007);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| (id >> 12) & 0x3ff == 3));
    }

    #[test]
    fn ids_strictly_increase_within_a_burst() {
        let g = SeqGenerator::new(7).unwrap();
        let ids: Vec<i64> = (0..20_000).map(|_| g.next()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ids.iter().all(|id| (id >> 12) & 0x3ff == 7),
            "node id is embedded"
        );
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let g = Arc::new(SeqGenerator::new(1).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..10_000).map(|_| g.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id));
            }
        }
    }

    #[test]
    fn observed_ids_from_the_future_are_never_repeated() {
        let g = SeqGenerator::new(0).unwrap();
        let future = g.next() + (1_000_000 << 22);
        g.observe(future);
        assert!(g.next() > future);
    }

    #[test]
    fn an_id_is_below_the_first_id_of_any_later_millisecond() {
        let g = SeqGenerator::new(MAX_NODE_ID).unwrap();
        let id = g.next();
        assert!(id < first_id_from_now(1));
        assert!(first_id_from_now(0) <= g.next() + 1);
        assert_eq!(first_id_at_ms(0), 0);
    }

    #[test]
    fn the_watermark_stays_below_batches_in_flight() {
        let g = SeqGenerator::new(3).unwrap();
        let before = g.next();
        assert_eq!(g.watermark(), before);
        let (ids, first) = g.take_tracked(3);
        assert_eq!(g.watermark(), ids[0] - 1);
        let (later, second) = g.take_tracked(2);
        drop(second);
        assert_eq!(g.watermark(), ids[0] - 1, "an older batch still holds it");
        drop(first);
        assert_eq!(g.watermark(), later[1]);
        assert!(g.take_tracked(0).0.is_empty());
        assert_eq!(g.watermark(), later[1]);
    }

    #[test]
    fn node_ids_beyond_ten_bits_are_refused() {
        assert!(SeqGenerator::new(1024).is_err());
    }
}
