//! Named failure points on the flush, compaction, move and drop paths: per store, a test makes a
//! point return an error for its next `n` hits ([`Failpoints`], in `StoreConfig`), so retry and
//! backoff paths run in-process, or holds the next hit until it lets go ([`Pause`]), so work
//! that must overlap a flush, compaction or move does; with the `failpoints` feature,
//! `KALAMSTORE_FAILPOINT=<name>`
//! also aborts the process there (crash tests, which kill a real child process). Points after
//! which no clean in-process failure exists (a move's switch, a drop's steps) are crash-only
//! ([`crash_point`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// The failure points of one store, shared by its clones. Empty (nothing fails) by default.
#[derive(Debug, Clone, Default)]
pub struct Failpoints {
    inner: Arc<Armed>,
}

#[derive(Debug, Default)]
struct Armed {
    /// Fast path: no point is armed.
    any: AtomicBool,
    /// Remaining failures per point.
    points: Mutex<HashMap<String, u32>>,
    /// Points whose next hit waits.
    pauses: Mutex<HashMap<String, Held>>,
}

/// A held point's ends: the sender tells the test the work got there, the receiver waits for
/// the test to let go.
type Held = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// A point's next hit, held: [`reached`](Self::reached) waits for the work to get there, and
/// the work goes on when this is released or dropped.
#[derive(Debug)]
pub struct Pause {
    point: String,
    reached: Option<oneshot::Receiver<()>>,
    release: Option<oneshot::Sender<()>>,
}

impl Pause {
    /// Waits until the work has reached the point (and waits there). Fails if the point was
    /// disarmed, or the store dropped, before anything reached it.
    pub async fn reached(&mut self) -> Result<()> {
        let Some(reached) = self.reached.take() else {
            return Ok(());
        };
        reached.await.map_err(|_| Error::Injected {
            point: format!("{} (never reached)", self.point),
        })
    }

    /// Lets the held work go on.
    pub fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

impl Failpoints {
    /// Makes the next `times` hits of point `name` fail with [`Error::Injected`] (a transient
    /// error, like the I/O failure it stands for); 0 disarms the point.
    pub fn fail_next(&self, name: &str, times: u32) {
        let mut points = self.inner.points.lock();
        if times == 0 {
            points.remove(name);
        } else {
            points.insert(name.to_owned(), times);
        }
        let armed = !points.is_empty() || !self.inner.pauses.lock().is_empty();
        self.inner.any.store(armed, Ordering::Release);
    }

    /// Holds the next hit of point `name` until the returned [`Pause`] is released.
    pub fn pause_next(&self, name: &str) -> Pause {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.inner
            .pauses
            .lock()
            .insert(name.to_owned(), (reached_tx, release_rx));
        self.inner.any.store(true, Ordering::Release);
        Pause {
            point: name.to_owned(),
            reached: Some(reached_rx),
            release: Some(release_tx),
        }
    }

    /// Failures still armed at point `name`.
    pub fn remaining(&self, name: &str) -> u32 {
        self.inner.points.lock().get(name).copied().unwrap_or(0)
    }

    /// Passes point `name`: waits there when a [`Pause`] holds it, fails when it is armed;
    /// aborts the process when the `failpoints` feature is on and `KALAMSTORE_FAILPOINT` names
    /// it.
    pub(crate) async fn hit(&self, name: &str) -> Result<()> {
        crash_point(name);
        if !self.inner.any.load(Ordering::Acquire) {
            return Ok(());
        }
        let paused = self.inner.pauses.lock().remove(name);
        if let Some((reached, release)) = paused {
            let _ = reached.send(());
            // A dropped `Pause` lets go too.
            let _ = release.await;
        }
        let mut points = self.inner.points.lock();
        let Some(left) = points.get_mut(name) else {
            return Ok(());
        };
        *left -= 1;
        if *left == 0 {
            points.remove(name);
        }
        let armed = !points.is_empty() || !self.inner.pauses.lock().is_empty();
        self.inner.any.store(armed, Ordering::Release);
        Err(Error::Injected {
            point: name.to_owned(),
        })
    }
}

/// Aborts the process at a named point when `KALAMSTORE_FAILPOINT` names it (crash tests);
/// `KALAMSTORE_FAILPOINT_SKIP=n` lets the first `n` hits pass.
#[cfg(feature = "failpoints")]
pub fn crash_point(name: &str) {
    use std::sync::atomic::AtomicUsize;
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

/// A point that only crash tests use (what follows it has no clean in-process failure path):
/// does nothing without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_armed_point_fails_its_next_hits_then_passes() {
        let points = Failpoints::default();
        assert!(points.hit("flush.before_commit").await.is_ok());
        points.fail_next("flush.before_commit", 2);
        assert!(
            points.hit("flush.after_commit").await.is_ok(),
            "other points pass"
        );
        for _ in 0..2 {
            let err = points.hit("flush.before_commit").await.unwrap_err();
            assert!(err.is_transient(), "{err}");
            assert!(err.to_string().contains("flush.before_commit"), "{err}");
        }
        assert!(points.hit("flush.before_commit").await.is_ok());
        assert_eq!(points.remaining("flush.before_commit"), 0);
        points.fail_next("x", 1);
        points.fail_next("x", 0);
        assert!(points.hit("x").await.is_ok(), "disarmed");
    }

    #[tokio::test]
    async fn a_paused_point_holds_its_next_hit_until_released() {
        let points = Failpoints::default();
        let mut pause = points.pause_next("flush.before_commit");
        let passed = Arc::new(AtomicBool::new(false));
        let work = {
            let (points, passed) = (points.clone(), passed.clone());
            tokio::spawn(async move {
                points.hit("flush.before_commit").await.unwrap();
                passed.store(true, Ordering::SeqCst);
            })
        };
        pause.reached().await.unwrap();
        assert!(!passed.load(Ordering::SeqCst), "held at the point");
        pause.release();
        work.await.unwrap();
        assert!(passed.load(Ordering::SeqCst));
        // Only the next hit waits.
        points.hit("flush.before_commit").await.unwrap();
    }
}
