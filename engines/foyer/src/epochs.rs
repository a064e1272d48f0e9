//! Partition epochs: every cache key carries its partition's epoch, so moving a partition to a
//! fresh epoch (a drop, a range delete) makes all its old entries unreachable at once; whether
//! the cache may hold anything of an epoch (a bulk write into one it cannot hold skips the
//! per-key work). Also the epochs a clean close hands to the next open (the warm marker's
//! payload) and their codec.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use kalamstore_storage::backend::Partition;
use parking_lot::RwLock;

/// The cache epoch of one partition, and whether this process changed the partition (then
/// the epoch is not handed to the next process: its entries may be stale after a crash or a
/// dropped disk write).
#[derive(Debug)]
struct PartitionEpoch {
    epoch: u64,
    written: AtomicBool,
    /// Whether the cache may hold entries of this epoch or a read or write may be about to
    /// put one there: set before any of them reaches the inner engine, never cleared.
    cached: AtomicBool,
}

impl PartitionEpoch {
    fn fresh(epoch: u64, cached: bool) -> Self {
        Self {
            epoch,
            written: AtomicBool::new(false),
            cached: AtomicBool::new(cached),
        }
    }
}

/// The current epoch of each partition seen so far, and the next fresh one.
#[derive(Debug)]
pub(crate) struct Epochs {
    current: RwLock<HashMap<Partition, PartitionEpoch>>,
    next: AtomicU64,
}

impl Epochs {
    /// The epochs a clean close left (`payload`), or fresh ones when there is none or it does
    /// not decode.
    pub(crate) fn open(payload: Option<&[u8]>) -> Self {
        let (next, current) = payload
            .and_then(decode)
            .unwrap_or_else(|| (1, HashMap::new()));
        Self {
            current: RwLock::new(current),
            next: AtomicU64::new(next),
        }
    }

    /// The partition's epoch for a read or write that may fill or update the cache; a write
    /// marks the partition as changed by this process first. Marks the epoch as one the cache
    /// may hold, before the caller reaches the inner engine (see [`may_hold`](Self::may_hold)).
    pub(crate) fn of(&self, partition: &Partition, write: bool) -> u64 {
        let epoch = self.with_state(partition, |state| {
            if write && !state.written.load(Ordering::Relaxed) {
                state.written.store(true, Ordering::Relaxed);
            }
            // Loaded first: the flag's cache line stays shared once it is set.
            if !state.cached.load(Ordering::Relaxed) {
                state.cached.store(true, Ordering::Relaxed);
            }
            state.epoch
        });
        // Pairs with the fence in `may_hold`: either a bulk write sees this mark, or this
        // caller's inner read or write comes after the bulk write's.
        fence(Ordering::SeqCst);
        epoch
    }

    /// The partition's epoch for a bulk write, which caches nothing: marks the partition as
    /// changed by this process, not the epoch as cached.
    pub(crate) fn of_bulk(&self, partition: &Partition) -> u64 {
        self.with_state(partition, |state| {
            if !state.written.load(Ordering::Relaxed) {
                state.written.store(true, Ordering::Relaxed);
            }
            state.epoch
        })
    }

    /// Whether the cache may hold entries of the partition's `epoch`, asked by a bulk write
    /// once the inner engine applied it. `false` means no entry of it exists and no read or
    /// write that could cache one had reached the inner engine before the bulk write applied
    /// (a later one reads or writes after it): the bulk write has nothing to take out of the
    /// cache. A partition moved to another epoch since holds nothing reachable of `epoch`.
    pub(crate) fn may_hold(&self, partition: &Partition, epoch: u64) -> bool {
        fence(Ordering::SeqCst);
        self.current
            .read()
            .get(partition)
            .is_some_and(|s| s.epoch == epoch && s.cached.load(Ordering::Relaxed))
    }

    /// Runs `f` on the partition's state, giving it a fresh epoch on its first access.
    fn with_state<R>(&self, partition: &Partition, f: impl FnOnce(&PartitionEpoch) -> R) -> R {
        if let Some(state) = self.current.read().get(partition) {
            return f(state);
        }
        let mut current = self.current.write();
        let state = current.entry(partition.clone()).or_insert_with(|| {
            PartitionEpoch::fresh(self.next.fetch_add(1, Ordering::Relaxed), false)
        });
        f(state)
    }

    /// Moves `partition` to a fresh epoch (on its next access), making every cached key of
    /// the old one unreachable.
    pub(crate) fn forget(&self, partition: &Partition) {
        self.current.write().remove(partition);
    }

    /// Whether `epoch` is the partition's epoch handed over by the last clean close and this
    /// process has not written the partition since: its entries from that close are current.
    pub(crate) fn is_unwritten(&self, partition: &Partition, epoch: u64) -> bool {
        self.current
            .read()
            .get(partition)
            .is_some_and(|s| s.epoch == epoch && !s.written.load(Ordering::Relaxed))
    }

    /// What a clean close hands to the next open: the next epoch and the epochs of the
    /// partitions this process only read.
    pub(crate) fn handover(&self) -> Vec<u8> {
        let current = self.current.read();
        let clean: Vec<(&Partition, u64)> = current
            .iter()
            .filter(|(_, s)| !s.written.load(Ordering::Relaxed))
            .map(|(p, s)| (p, s.epoch))
            .collect();
        encode(self.next.load(Ordering::Relaxed), &clean)
    }
}

/// The handover's bytes: `next`, then each partition this process only read, as (name length
/// u16, name, epoch u64), little-endian.
fn encode(next: u64, clean: &[(&Partition, u64)]) -> Vec<u8> {
    let mut out = next.to_le_bytes().to_vec();
    for (partition, epoch) in clean {
        let name = partition.as_str().as_bytes();
        // Partition names are at most `MAX_PARTITION_NAME_LEN` (200) bytes.
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&epoch.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Option<(u64, HashMap<Partition, PartitionEpoch>)> {
    let (next, mut rest) = bytes.split_first_chunk::<8>()?;
    let mut epochs = HashMap::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let (name, tail) = tail.split_at_checked(usize::from(u16::from_le_bytes(*len)))?;
        let (epoch, tail) = tail.split_first_chunk::<8>()?;
        let partition = Partition::new(std::str::from_utf8(name).ok()?).ok()?;
        // The last process's entries of a handed-over epoch may still be on disk.
        epochs.insert(
            partition,
            PartitionEpoch::fresh(u64::from_le_bytes(*epoch), true),
        );
        rest = tail;
    }
    Some((u64::from_le_bytes(*next), epochs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handover_keeps_the_epochs_of_partitions_only_read() {
        let epochs = Epochs::open(None);
        let (read, written) = (
            Partition::new("read").unwrap(),
            Partition::new("written").unwrap(),
        );
        let read_epoch = epochs.of(&read, false);
        epochs.of(&written, true);
        let next = Epochs::open(Some(&epochs.handover()));
        assert!(next.is_unwritten(&read, read_epoch));
        // A written partition starts at a fresh epoch, past every handed-out one.
        assert!(next.of(&written, false) > read_epoch);
        assert!(Epochs::open(Some(b"short")).current.read().is_empty());
        // A handed-over epoch may have entries on disk.
        assert!(next.may_hold(&read, read_epoch));
    }

    #[test]
    fn only_an_epoch_read_or_written_through_the_cache_may_hold_entries() {
        let epochs = Epochs::open(None);
        let (loaded, read) = (
            Partition::new("loaded").unwrap(),
            Partition::new("read").unwrap(),
        );
        let bulk = epochs.of_bulk(&loaded);
        assert!(!epochs.may_hold(&loaded, bulk));
        assert_eq!(epochs.of(&loaded, false), bulk);
        assert!(epochs.may_hold(&loaded, bulk));
        let epoch = epochs.of(&read, true);
        assert!(epochs.may_hold(&read, epoch));
        // Moved to a new epoch: nothing of the old one is reachable.
        epochs.forget(&read);
        assert!(!epochs.may_hold(&read, epoch));
        let fresh = epochs.of_bulk(&read);
        assert!(!epochs.may_hold(&read, fresh));
    }
}
