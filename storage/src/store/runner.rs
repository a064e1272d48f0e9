//! The store's job runner: the workers jobs run on, the stop controls of running jobs, the jobs
//! a restart interrupted, and the watchdog around each attempt. `jobs.rs` records the jobs'
//! lives in `sys.jobs` on top of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::catalog::JobRecord;
use crate::error::{Error, Result};
use crate::job::JobOutcome;

/// The store's part that runs jobs: the workers a job holds a permit of while it runs, the
/// stop controls of the jobs running in this process (a leaf lock), and the jobs a restart
/// interrupted, queued to run again under their own records (a leaf lock).
#[derive(Debug)]
pub(super) struct JobRunner {
    pub(super) workers: tokio::sync::Semaphore,
    pub(super) cancels: parking_lot::Mutex<std::collections::HashMap<String, Arc<JobControl>>>,
    pub(super) requeued: parking_lot::Mutex<Vec<JobRecord>>,
}

impl JobRunner {
    /// A runner with `workers` job workers.
    pub(super) fn new(workers: usize) -> Self {
        Self {
            workers: tokio::sync::Semaphore::new(workers),
            cancels: parking_lot::Mutex::default(),
            requeued: parking_lot::Mutex::default(),
        }
    }
}

/// How a running job is stopped: `cancel` is what the work checks at its safe points; `killed`
/// says a `KILL JOB` set it (not the watchdog).
#[derive(Debug, Default)]
pub(super) struct JobControl {
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) killed: AtomicBool,
}

tokio::task_local! {
    /// Set while a job's attempt runs: jobs it starts run on its worker.
    pub(super) static IN_JOB: ();
}

/// Runs one attempt of a job under the watchdog: past `limit` the attempt is asked to stop
/// (its cancel flag) and, once it has stopped at a safe point, fails as
/// [`Error::JobTimedOut`], which is retried. An attempt that finishes anyway keeps its result;
/// one that a `KILL JOB` had already stopped stays cancelled.
pub(super) async fn watched<Fut>(
    attempt: Fut,
    limit: std::time::Duration,
    control: &JobControl,
    job: &str,
) -> Result<JobOutcome>
where
    Fut: std::future::Future<Output = Result<JobOutcome>>,
{
    tokio::pin!(attempt);
    tokio::select! {
        result = &mut attempt => return result,
        () = tokio::time::sleep(limit) => {}
    }
    control.cancel.store(true, Ordering::Relaxed);
    match attempt.await {
        // A `KILL JOB` before or after the watchdog fired wins: the job stays cancelled.
        Err(Error::JobCancelled { .. }) if !control.killed.load(Ordering::Relaxed) => {
            control.cancel.store(false, Ordering::Relaxed);
            Err(Error::JobTimedOut {
                job: job.to_owned(),
                limit,
            })
        }
        other => other,
    }
}
