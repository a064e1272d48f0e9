//! Crash points for crash tests: with the `failpoints` feature, `KALAMSTORE_FAILPOINT=<name>`
//! aborts the process when execution reaches the point of that name.

/// Aborts the process at a named point when `KALAMSTORE_FAILPOINT` names it (crash tests);
/// `KALAMSTORE_FAILPOINT_SKIP=n` lets the first `n` hits pass.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static HITS: AtomicUsize = AtomicUsize::new(0);
    if std::env::var("KALAMSTORE_FAILPOINT").is_ok_and(|v| v == name) {
        let skip: usize = std::env::var("KALAMSTORE_FAILPOINT_SKIP")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if HITS.fetch_add(1, Ordering::SeqCst) >= skip {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}

/// Aborts the process at a named point when `KALAMSTORE_FAILPOINT` names it (crash tests).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_name: &str) {}
