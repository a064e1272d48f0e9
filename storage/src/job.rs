//! [`JobContext`]: the running job a piece of work (a flush, compaction, move or rewrite)
//! belongs to: its id, for errors and progress records, and the flag `KILL JOB` and the job
//! watchdog set, which the work checks at its safe points. [`JobOutcome`]: what a job did.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// The job a piece of work runs for (see the module doc). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct JobContext {
    id: Arc<str>,
    cancel: Arc<AtomicBool>,
}

impl JobContext {
    /// The context of job `id`, stopped when `cancel` is set.
    pub(crate) fn new(id: &str, cancel: Arc<AtomicBool>) -> Self {
        Self {
            id: id.into(),
            cancel,
        }
    }

    /// The job's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Fails with [`Error::JobCancelled`] once the job was asked to stop.
    pub(crate) fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::JobCancelled {
                job: self.id.to_string(),
            });
        }
        Ok(())
    }
}

/// What a job did, as its record shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOutcome {
    /// Rows written (flush, compaction, move, export, import) or removed (expiry, cleanup).
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files written (or removed, by cleanup).
    pub files: u64,
    /// What it did, in words, where the counters do not say it all.
    pub summary: Option<String>,
}
