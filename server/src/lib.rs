//! kalamstore over the Postgres wire protocol (`kalamstore serve`): one process owns the data
//! directory and serves any Postgres client (psql, psycopg, JDBC, tokio-postgres, ...).
//!
//! The server owns the protocol, not the dialect. Each connection authenticates a login from
//! the catalog with SCRAM-SHA-256 ([`scram`], [`auth`]), over TLS when a certificate is given,
//! then gets its own [`Statements`] from the [`Connector`] the statement layer provides (the
//! CLI's dialect: kalamstore's statements plus SQL through DataFusion), scoped to that login.
//! `handler` runs its statements (a session command of `commands`, a cursor of `cursor`,
//! or the connection's own) for the simple query protocol and `extended` for the extended
//! one (statements prepared once), `send` streams results encoded by [`types`],
//! `copy_wire` runs `COPY` in and out (parsed by [`copy`]), and a CancelRequest cancels the
//! running statement. [`Server`] accepts connections, enforces the connection limit and shuts
//! down gracefully.

pub mod auth;
mod commands;
mod compat;
pub mod copy;
mod copy_wire;
mod cursor;
mod error;
mod extended;
mod handler;
mod outcome;
pub mod scram;
mod send;
mod server;
pub mod types;

use std::sync::Arc;

use async_trait::async_trait;
use kalamstore::Role;
use kalamstore_sql::datafusion::arrow::datatypes::{DataType, SchemaRef};
use kalamstore_sql::datafusion::common::ScalarValue;
use kalamstore_sql::datafusion::execution::SendableRecordBatchStream;

pub use auth::ensure_root;
pub use error::ServerError;
pub use server::{Server, ServerConfig, TlsFiles};

/// An authenticated login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Its name; for a user role also whose rows USER tables show.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// What a statement produced.
pub enum Reply {
    /// Rows, streamed.
    Rows(SendableRecordBatchStream),
    /// A subscription's rows: sent as each batch comes until the client cancels or leaves.
    Live(SendableRecordBatchStream),
    /// A command's tag, e.g. `INSERT 0 3`, `UPDATE 2`, `CREATE TABLE`.
    Done(String),
}

/// What a statement takes and returns, known before it runs (the extended protocol's
/// Describe).
#[derive(Debug, Clone, Default)]
pub struct Description {
    /// The type of each `$n`, where the statement fixes one.
    pub params: Vec<Option<DataType>>,
    /// The columns of its rows; `None` for a command.
    pub columns: Option<SchemaRef>,
}

/// A statement's failure, with the SQLSTATE clients expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StatementError {
    /// The SQLSTATE, e.g. `42P01`.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl StatementError {
    /// An error with `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// One connection's statements, as the login it authenticated: the statement layer
/// implements it.
#[async_trait]
pub trait Statements: Send + Sync {
    /// Splits a simple-query string into its statements.
    fn split(&self, text: &str) -> Result<Vec<String>, StatementError>;

    /// Runs one statement with the values of `$1, $2, ...`.
    async fn execute(&self, sql: &str, params: &[ScalarValue]) -> Result<Reply, StatementError>;

    /// Checks and parses one statement once, to run many times (the extended protocol's
    /// Parse): what it takes and returns is known before it runs.
    async fn prepare(&self, sql: &str) -> Result<Arc<dyn PreparedStatement>, StatementError>;

    /// Inserts rows of text (`COPY ... FROM STDIN`) into `columns` of `table` (all of them when
    /// empty) as one atomic batch; returns how many.
    async fn copy_in(
        &self,
        table: &str,
        columns: &[String],
        rows: &[copy::Record],
    ) -> Result<u64, StatementError>;
}

/// A statement prepared by [`Statements::prepare`]: each execution binds values and runs it,
/// with no parsing (and, for a read or write of one row by its key, no plan).
#[async_trait]
pub trait PreparedStatement: Send + Sync {
    /// What it takes and returns.
    fn description(&self) -> &Description;

    /// Runs it with the values of `$1, $2, ...`.
    async fn execute(&self, params: &[ScalarValue]) -> Result<Reply, StatementError>;
}

/// Makes the statements of each new connection.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The statements of a connection authenticated as `login`.
    async fn connect(&self, login: &Login) -> Result<Arc<dyn Statements>, StatementError>;
}
