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
    /// The session may not run the statement (a user principal on the server).
    #[error("{0}")]
    Forbidden(String),
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

impl CliError {
    /// The SQLSTATE a Postgres client expects for this error.
    pub fn sqlstate(&self) -> &'static str {
        use kalamstore::Error as E;
        let store = match self {
            Self::Parse(_) => return "42601",
            Self::Invalid(_) => return "22023",
            Self::Forbidden(_) => return "42501",
            Self::Io { .. } => return "58030",
            Self::Store(e) => Some(e),
            Self::Sql(e) => match e {
                kalamstore_sql::SqlError::Forbidden { .. } => return "42501",
                kalamstore_sql::SqlError::Unsupported { .. } => return "0A000",
                kalamstore_sql::SqlError::UnqualifiedTable { .. } => return "42P01",
                other => other.store_error(),
            },
        };
        match store {
            Some(E::TableNotFound { .. }) => "42P01",
            Some(E::NamespaceNotFound { .. }) => "3F000",
            Some(E::TableExists { .. } | E::NamespaceExists { .. } | E::StorageExists { .. }) => {
                "42P07"
            }
            Some(E::UserExists { .. } | E::ConsumerExists { .. }) => "42710",
            Some(E::UserNotFound { .. }) => "42704",
            Some(E::DuplicateKey { .. }) => "23505",
            Some(E::InvalidValue { .. }) => "22023",
            Some(E::InvalidId { .. } | E::InvalidSchema { .. } | E::InvalidType { .. }) => "42602",
            Some(E::Scope { .. }) => "42501",
            Some(E::ChangeGap { .. }) => "22000",
            Some(E::JobCancelled { .. }) => "57014",
            Some(E::TableBusy { .. }) => "55006",
            Some(_) => "XX000",
            // DataFusion's own planning errors: mostly unknown columns and functions.
            None => match self {
                Self::Sql(kalamstore_sql::SqlError::DataFusion(e)) => match e.find_root() {
                    kalamstore_sql::datafusion::error::DataFusionError::SQL(..) => "42601",
                    kalamstore_sql::datafusion::error::DataFusionError::Plan(msg)
                        if msg.contains("function") =>
                    {
                        "42883"
                    }
                    kalamstore_sql::datafusion::error::DataFusionError::Plan(_)
                    | kalamstore_sql::datafusion::error::DataFusionError::SchemaError(..) => {
                        "42703"
                    }
                    kalamstore_sql::datafusion::error::DataFusionError::NotImplemented(_) => {
                        "0A000"
                    }
                    _ => "XX000",
                },
                _ => "XX000",
            },
        }
    }
}
