//! [`JobContext`]: the running job a piece of work (a flush, compaction, move or rewrite)
//! belongs to: its id, for errors and progress records, and the flag `KILL JOB` and the job
//! watchdog set, which the work checks at its safe points.

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
