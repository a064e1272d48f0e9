//! `kalamstore serve`: the Postgres-wire server with this crate's dialect behind it. Each
//! login gets a [`Session`] of its own: a user principal (its rows) for a user role, nobody
//! (with `EXECUTE AS USER` and `FOR ALL USERS`) for an operator.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use kalamstore::{Role, Store, UserId};
use kalamstore_server::{
    Connector, Description, Login, PreparedStatement, Reply, StatementError, Statements,
};
use kalamstore_sql::Principal;
use kalamstore_sql::datafusion::common::ScalarValue;

use crate::access::Access;
use crate::error::CliError;
use crate::parse;
use crate::session::{Outcome, PreparedCommand, Session};

fn statement_error(e: CliError) -> StatementError {
    StatementError::new(e.sqlstate(), e.to_string())
}

/// Makes a session per connection.
pub struct ServeConnector {
    /// The store every session runs on.
    pub store: Store,
    /// Where operators' statements may read and write files.
    pub files_dir: Option<PathBuf>,
}

#[async_trait]
impl Connector for ServeConnector {
    async fn connect(&self, login: &Login) -> Result<Arc<dyn Statements>, StatementError> {
        let (principal, access) = match login.role {
            Role::Operator => (
                Principal::Anonymous,
                Access::Operator {
                    files_dir: self.files_dir.clone(),
                },
            ),
            Role::User => (
                Principal::User(
                    UserId::new(login.name.clone()).map_err(|e| statement_error(e.into()))?,
                ),
                Access::User,
            ),
        };
        Ok(Arc::new(ServedSession(Arc::new(Session::connect(
            self.store.clone(),
            principal,
            access,
        )))))
    }
}

/// A connection's session.
struct ServedSession(Arc<Session>);

/// A connection's prepared statement.
struct ServedStatement {
    session: Arc<Session>,
    prepared: PreparedCommand,
    description: Description,
}

fn reply(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Rows(rows) => Reply::Rows(rows),
        Outcome::Live(rows) => Reply::Live(rows),
        Outcome::Done(summary) => Reply::Done(tag(summary)),
    }
}

#[async_trait]
impl PreparedStatement for ServedStatement {
    fn description(&self) -> &Description {
        &self.description
    }

    async fn execute(&self, params: &[ScalarValue]) -> Result<Reply, StatementError> {
        self.session
            .execute_prepared(&self.prepared, params)
            .await
            .map(reply)
            .map_err(statement_error)
    }
}

/// The Postgres command tag of a summary line: `INSERT 3` is `INSERT 0 3`.
fn tag(summary: String) -> String {
    match summary.split_once(' ') {
        Some(("INSERT", n)) if n.parse::<u64>().is_ok() => format!("INSERT 0 {n}"),
        Some(("UPDATE" | "DELETE", n)) if n.parse::<u64>().is_ok() => summary,
        _ => summary,
    }
}

#[async_trait]
impl Statements for ServedSession {
    fn split(&self, text: &str) -> Result<Vec<String>, StatementError> {
        Ok(parse::split(text)
            .map_err(statement_error)?
            .into_iter()
            .map(|l| l.sql)
            .collect())
    }

    async fn execute(&self, sql: &str, params: &[ScalarValue]) -> Result<Reply, StatementError> {
        let command = parse::parse(sql).map_err(statement_error)?;
        self.0
            .execute_with(command, Some(params))
            .await
            .map(reply)
            .map_err(statement_error)
    }

    async fn copy_in(
        &self,
        table: &str,
        columns: &[String],
        rows: &[kalamstore_server::copy::Record],
    ) -> Result<u64, StatementError> {
        self.0
            .insert_text(table, columns, rows)
            .await
            .map_err(statement_error)
    }

    async fn prepare(&self, sql: &str) -> Result<Arc<dyn PreparedStatement>, StatementError> {
        let command = parse::parse(sql).map_err(statement_error)?;
        let prepared = self.0.prepare(command).await.map_err(statement_error)?;
        let description = Description {
            params: prepared.description.params.clone(),
            columns: prepared.description.columns.clone(),
        };
        Ok(Arc::new(ServedStatement {
            session: self.0.clone(),
            prepared,
            description,
        }))
    }
}
