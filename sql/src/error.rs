//! The SQL layer's errors: a store error, a DataFusion error, or a statement this layer does
//! not run; each with one clear line for a user.

use datafusion::error::DataFusionError;

/// What went wrong running a statement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] kalamstore_storage::Error),
    /// DataFusion could not parse, plan or run the statement.
    #[error("{}", clear(.0))]
    DataFusion(#[from] DataFusionError),
    /// The session's principal may not do this (SQLSTATE 42501).
    #[error("permission denied: {what}")]
    Forbidden {
        /// What was refused.
        what: String,
    },
    /// A query named a table without its namespace (SQLSTATE 42P01).
    #[error("table `{name}` not found: name tables as namespace.table")]
    UnqualifiedTable {
        /// The name as written.
        name: String,
    },
    /// A statement this layer does not run.
    #[error("{what} is not supported: {hint}")]
    Unsupported {
        /// The statement or feature.
        what: String,
        /// What to do instead.
        hint: &'static str,
    },
}

/// Result alias of the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// A DataFusion error as one line: the innermost error (a store error keeps its causes),
/// without DataFusion's category prefixes, context wrappers and backtraces.
fn clear(e: &DataFusionError) -> String {
    let text = match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            return clear(inner);
        }
        DataFusionError::Shared(inner) => return clear(inner),
        DataFusionError::Collection(all) => match all.first() {
            Some(first) => return clear(first),
            None => String::new(),
        },
        DataFusionError::ArrowError(inner, _) => inner.to_string(),
        DataFusionError::External(inner) => match inner.downcast_ref::<kalamstore_storage::Error>()
        {
            Some(store) => return store.report(),
            None => inner.to_string(),
        },
        DataFusionError::SQL(inner, _) => format!("syntax error: {inner}"),
        DataFusionError::Plan(msg) | DataFusionError::Execution(msg) => msg.clone(),
        DataFusionError::NotImplemented(msg) => format!("not supported: {msg}"),
        DataFusionError::SchemaError(inner, _) => inner.to_string(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_owned()
}

/// A store error for DataFusion (kept whole, so [`SqlError`] can show its causes).
pub(crate) fn external(e: kalamstore_storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl SqlError {
    /// The store error at the root of this one, if any.
    pub fn store_error(&self) -> Option<&kalamstore_storage::Error> {
        match self {
            Self::Store(e) => Some(e),
            Self::DataFusion(e) => match e.find_root() {
                DataFusionError::External(inner) => inner.downcast_ref(),
                _ => None,
            },
            Self::Unsupported { .. } | Self::Forbidden { .. } | Self::UnqualifiedTable { .. } => {
                None
            }
        }
    }
}
