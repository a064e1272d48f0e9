//! The CLI's errors: bad statements, bad values, the store's and the SQL layer's own errors,
//! local files.

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
    /// DataFusion refused or failed a query.
    #[error("{}", sql_message(.0))]
    Sql(#[from] kalamstore_sql::SqlError),
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

/// A SQL error as one line; a store error at its root keeps its causes.
fn sql_message(e: &kalamstore_sql::SqlError) -> String {
    match e.store_error() {
        Some(store) => store.report(),
        None => e.to_string(),
    }
}

/// Shorthand for an [`CliError::Invalid`].
pub fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Invalid(msg.into())
}
