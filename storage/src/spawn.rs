//! Helper tasks spawned by a flush or a scan: aborted when their owner drops them, so a
//! cancelled operation stops its helpers too.

use std::future::Future;

use crate::error::{Error, Result};

/// A spawned task that is aborted when its handle is dropped.
pub(crate) struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T: Send + 'static> AbortOnDrop<T> {
    /// Spawns `future` on the current runtime.
    pub(crate) fn spawn(future: impl Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(future))
    }

    /// Waits for the task's output; a panic in the task resumes here.
    pub(crate) async fn join(&mut self) -> Result<T> {
        match (&mut self.0).await {
            Ok(output) => Ok(output),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::JobCancelled {
                job: "a helper task".into(),
            }),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
