//! The stripe protocol that orders fills against writes without holding a lock across a call
//! to the inner engine. Keys hash to stripes, each with a generation: a write bumps it when it
//! begins and when it ends; a fill notes it before reading the inner engine and caches what it
//! read only if it did not move. A cached value is stamped with the generation at which it
//! was current, so a disk copy is trusted only while its stripe's generation still equals it.

use std::hash::{BuildHasher, Hash, RandomState};

use parking_lot::Mutex;

/// Number of stripes. A write makes the disk copies of every key of its stripe miss once, so
/// more stripes keep more of the disk tier usable under writes (16 bytes each).
const STRIPES: usize = 1 << 14;

/// The generation of each stripe.
#[derive(Debug)]
pub(crate) struct Stripes {
    generations: Box<[Mutex<u64>]>,
    hasher: RandomState,
}

impl Stripes {
    pub(crate) fn new() -> Self {
        Self {
            generations: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The stripe of `key`.
    pub(crate) fn of(&self, key: &impl Hash) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    /// The stripe's generation now (a fill's start).
    pub(crate) fn generation(&self, stripe: usize) -> u64 {
        *self.generations[stripe].lock()
    }

    /// A write's start: bumps the stripe's generation and returns it.
    pub(crate) fn begin_write(&self, stripe: usize) -> u64 {
        let mut generation = self.generations[stripe].lock();
        *generation += 1;
        *generation
    }

    /// A write's end, after the inner engine applied it (or failed, `applied` false): bumps
    /// the generation and runs `finish` under the stripe's lock with the generation to stamp
    /// the written values with, if the write applied and no other write of the stripe began or
    /// ended since `began`; with `None` otherwise (nothing is known about the stripe's keys).
    pub(crate) fn end_write<R>(
        &self,
        stripe: usize,
        began: u64,
        applied: bool,
        finish: impl FnOnce(Option<u64>) -> R,
    ) -> R {
        let mut generation = self.generations[stripe].lock();
        *generation += 1;
        let known = applied && *generation == began + 1;
        finish(known.then_some(*generation))
    }

    /// A bulk write's end: bumps the generation and runs `finish` under the stripe's lock.
    /// Unlike [`end_write`](Self::end_write) it needs no bump before the inner write when
    /// `finish` only removes keys: every older copy is stamped with an older generation than
    /// this bump, and a fill that read the old value either inserted it before the removal or
    /// finds the generation moved.
    pub(crate) fn end_bulk_write<R>(&self, stripe: usize, finish: impl FnOnce() -> R) -> R {
        let mut generation = self.generations[stripe].lock();
        *generation += 1;
        finish()
    }

    /// A fill's end: runs `fill` under the stripe's lock unless a write of the stripe began or
    /// ended since `began` (the generation when the fill started).
    pub(crate) fn end_fill(&self, stripe: usize, began: u64, fill: impl FnOnce()) {
        let generation = self.generations[stripe].lock();
        if *generation == began {
            fill();
        }
    }

    /// Runs `check` with the stripe's generation now, under its lock (no write of the stripe
    /// begins or ends meanwhile).
    pub(crate) fn with_generation<R>(&self, stripe: usize, check: impl FnOnce(u64) -> R) -> R {
        let generation = self.generations[stripe].lock();
        check(*generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_lands_only_if_no_write_of_its_stripe_moved() {
        let stripes = Stripes::new();
        let s = stripes.of(&"k");
        let began = stripes.generation(s);
        let mut filled = false;
        stripes.end_fill(s, began, || filled = true);
        assert!(filled);

        let began = stripes.generation(s);
        let write = stripes.begin_write(s);
        let mut filled = false;
        stripes.end_fill(s, began, || filled = true);
        assert!(!filled, "a write began during the fill");
        assert!(stripes.end_write(s, write, true, |stamp| stamp.is_some()));
    }

    #[test]
    fn overlapping_or_failed_writes_know_nothing() {
        let stripes = Stripes::new();
        let s = stripes.of(&"k");
        let first = stripes.begin_write(s);
        let second = stripes.begin_write(s);
        assert_eq!(stripes.end_write(s, first, true, |stamp| stamp), None);
        assert_eq!(stripes.end_write(s, second, true, |stamp| stamp), None);
        let third = stripes.begin_write(s);
        assert_eq!(stripes.end_write(s, third, false, |stamp| stamp), None);
        let fourth = stripes.begin_write(s);
        let stamp = stripes.end_write(s, fourth, true, |stamp| stamp);
        assert_eq!(stamp, Some(fourth + 1));
        assert!(stripes.with_generation(s, |g| g == fourth + 1));
    }
}
