//! The object-store engine's own errors, mapped into `kalamstore_storage::Error`.

use kalamstore_storage::Error;

pub(crate) const ENGINE: &str = "object_store";

/// What went wrong inside the object-store engine.
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    /// SlateDB failed.
    #[error("slatedb: {0}")]
    Slate(#[from] slatedb::Error),
    /// A WAL flush that several writes shared failed.
    #[error("slatedb (shared WAL flush): {0}")]
    SharedFlush(std::sync::Arc<slatedb::Error>),
    /// The object store failed.
    #[error("{op}")]
    Store {
        /// What the engine was doing.
        op: String,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local directory could not be prepared.
    #[error("{op}")]
    Io {
        /// What the engine was doing.
        op: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A URL the engine cannot use.
    #[error("bad object store URL `{url}`: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The engine's runtime could not be started or a task on it died.
    #[error("engine runtime: {0}")]
    Runtime(String),
    /// A stored registry entry is not what this engine writes.
    #[error("corrupt partition registry entry for `{0}`")]
    CorruptRegistry(String),
}

impl From<ObjectStoreError> for Error {
    fn from(e: ObjectStoreError) -> Self {
        Error::engine(ENGINE, "an object store operation", e)
    }
}

/// Maps a SlateDB error with the operation it interrupted; a closed or fenced database becomes
/// [`Error::Closed`].
pub(crate) fn slate(op: impl Into<String>) -> impl FnOnce(slatedb::Error) -> Error {
    move |e| closed(&e).unwrap_or_else(|| Error::engine(ENGINE, op, ObjectStoreError::Slate(e)))
}

/// [`slate`] for the error of a WAL flush shared by several writes.
pub(crate) fn shared_flush(op: impl Into<String>, e: &std::sync::Arc<slatedb::Error>) -> Error {
    closed(e).unwrap_or_else(|| Error::engine(ENGINE, op, ObjectStoreError::SharedFlush(e.clone())))
}

/// A closed or fenced database as [`Error::Closed`].
fn closed(e: &slatedb::Error) -> Option<Error> {
    match e.kind() {
        slatedb::ErrorKind::Closed(slatedb::CloseReason::Fenced) => Some(Error::Closed {
            engine: ENGINE,
            reason: "fenced: another process opened the same path",
        }),
        slatedb::ErrorKind::Closed(_) => Some(Error::Closed {
            engine: ENGINE,
            reason: "the database was closed",
        }),
        _ => None,
    }
}
