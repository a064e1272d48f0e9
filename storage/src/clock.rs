//! Wall-clock time for everything that ages: `_updated`, STREAM TTL, flush policies, job
//! records, job retention and the orphan grace. Tests inject a [`ManualClock`] and advance it
//! instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time, in nanoseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> i64;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        self.now_nanos() / 1_000_000
    }
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_nanos(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to: starts at the system time of its creation.
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicI64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            nanos: AtomicI64::new(SystemClock.now_nanos()),
        }
    }
}

impl ManualClock {
    /// A clock at the current system time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> i64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let start = clock.now_nanos();
        assert_eq!(clock.now_nanos(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now_nanos(), start + 1_500_000_000);
        assert_eq!(clock.now_ms(), (start + 1_500_000_000) / 1_000_000);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
