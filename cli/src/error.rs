//! The CLI's errors: bad SQL, bad values, and the store's own errors.

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The statement is not valid in the dialect.
    #[error("syntax error: {0}")]
    Parse(String),
    /// The statement is valid but cannot run (unknown column, bad value, missing user, ...).
    #[error("{0}")]
    Invalid(String),
    /// The store refused or failed.
    #[error("{}", .0.report())]
    Store(#[from] kalamstore::Error),
    /// Reading or writing a local file failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand for an [`CliError::Invalid`].
pub fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Invalid(msg.into())
}
