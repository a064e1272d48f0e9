//! Per-call deadlines on object-store calls: a store that never answers fails the call with a
//! transient error (the job retries it) instead of holding a table's maintenance lock for ever.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};

/// The error a call past its deadline fails with (inside `object_store::Error::Generic`).
#[derive(Debug, thiserror::Error)]
#[error("the object store did not answer within {limit:?} while {op}")]
pub struct TimedOut {
    /// What the call was doing.
    pub op: &'static str,
    /// The deadline it missed.
    pub limit: Duration,
}

fn timed_out(op: &'static str, limit: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "timeout",
        source: Box::new(TimedOut { op, limit }),
    }
}

async fn within<T>(
    limit: Duration,
    op: &'static str,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(timed_out(op, limit)))
}

/// Gives each item of `stream` `limit` to arrive; a late one ends the stream with an error.
fn items_within<T: Send + 'static>(
    stream: BoxStream<'static, Result<T>>,
    limit: Duration,
    op: &'static str,
) -> BoxStream<'static, Result<T>> {
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(limit, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(timed_out(op, limit)), None)),
        }
    })
    .boxed()
}

/// An object store whose every call (and every item of a listing or a body) must answer
/// within a deadline.
#[derive(Debug)]
pub struct TimeoutStore {
    inner: Arc<dyn ObjectStore>,
    limit: Duration,
}

impl TimeoutStore {
    /// Wraps `inner`, giving each call `limit`.
    pub fn new(inner: Arc<dyn ObjectStore>, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

impl fmt::Display for TimeoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timeout({:?}, {})", self.limit, self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for TimeoutStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let call = self.inner.put_opts(location, payload, opts);
        within(self.limit, "putting an object", call).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let call = self.inner.put_multipart_opts(location, opts);
        let inner = within(self.limit, "starting an upload", call).await?;
        Ok(Box::new(TimeoutUpload {
            inner,
            limit: self.limit,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let call = self.inner.get_opts(location, options);
        let mut result = within(self.limit, "getting an object", call).await?;
        result.payload = match result.payload {
            GetResultPayload::Stream(body) => {
                GetResultPayload::Stream(items_within(body, self.limit, "reading an object"))
            }
            local => local,
        };
        Ok(result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        let call = self.inner.get_ranges(location, ranges);
        within(self.limit, "reading byte ranges", call).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        items_within(
            self.inner.delete_stream(locations),
            self.limit,
            "deleting objects",
        )
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        items_within(self.inner.list(prefix), self.limit, "listing objects")
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let listing = self.inner.list_with_offset(prefix, offset);
        items_within(listing, self.limit, "listing objects")
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let call = self.inner.list_with_delimiter(prefix);
        within(self.limit, "listing a directory", call).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let call = self.inner.copy_opts(from, to, options);
        within(self.limit, "copying an object", call).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let call = self.inner.rename_opts(from, to, options);
        within(self.limit, "renaming an object", call).await
    }
}

/// A multipart upload whose every part, completion and abort must answer within a deadline.
#[derive(Debug)]
struct TimeoutUpload {
    inner: Box<dyn MultipartUpload>,
    limit: Duration,
}

#[async_trait]
impl MultipartUpload for TimeoutUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (part, limit) = (self.inner.put_part(data), self.limit);
        Box::pin(within(limit, "uploading a part", part))
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let limit = self.limit;
        within(limit, "completing an upload", self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        let limit = self.limit;
        within(limit, "aborting an upload", self.inner.abort()).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    /// A store whose puts never answer.
    #[derive(Debug)]
    struct Silent(InMemory);

    impl fmt::Display for Silent {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Silent")
        }
    }

    #[async_trait]
    #[deny(clippy::missing_trait_methods)]
    impl ObjectStore for Silent {
        async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
            std::future::pending().await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.0.copy_opts(from, to, options).await
        }
        async fn get_ranges(
            &self,
            location: &Path,
            ranges: &[std::ops::Range<u64>],
        ) -> Result<Vec<bytes::Bytes>> {
            self.0.get_ranges(location, ranges).await
        }
        fn list_with_offset(
            &self,
            prefix: Option<&Path>,
            offset: &Path,
        ) -> BoxStream<'static, Result<ObjectMeta>> {
            self.0.list_with_offset(prefix, offset)
        }
        async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
            self.0.rename_opts(from, to, options).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_fails_at_its_deadline() {
        let store = TimeoutStore::new(Arc::new(Silent(InMemory::new())), Duration::from_secs(5));
        let err = store
            .put_opts(
                &Path::from("a"),
                PutPayload::from_static(b"x"),
                PutOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("did not answer within 5s"),
            "{err}"
        );
        // Calls that answer pass through.
        let listed: Vec<_> = store.list(None).collect().await;
        assert!(listed.is_empty());
    }
}
