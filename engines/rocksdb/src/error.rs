//! The RocksDB engine's own errors, mapped into `kalamstore_storage::Error::Engine`.

use kalamstore_storage::Error;

pub(crate) const ENGINE: &str = "rocksdb";

/// What went wrong inside the RocksDB engine.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RocksDbError {
    #[error(transparent)]
    Rocks(#[from] rocksdb::Error),
    #[error("column family `{family}` is missing")]
    MissingFamily { family: String },
    #[error("could not create directory {path}")]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RocksDbError {
    /// Maps into the core error with what the engine was doing.
    pub(crate) fn during(self, op: impl Into<String>) -> Error {
        Error::engine(ENGINE, op, self)
    }
}

/// Shorthand: map a RocksDB error with the operation it interrupted. The description is
/// built only on error: these calls sit on every read and write.
pub(crate) fn rocks<S: Into<String>>(
    op: impl FnOnce() -> S,
) -> impl FnOnce(rocksdb::Error) -> Error {
    move |e| RocksDbError::from(e).during(op())
}
