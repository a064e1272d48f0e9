//! A CLI session: the store, whose rows statements see (`--user`, `--all-users`, `EXECUTE AS
//! USER`), the `$n` parameters, and one SQL session per principal; runs parsed statements.

use std::collections::HashMap;
use std::sync::Arc;

use kalamstore::{StorageId, Store, UserId};
use kalamstore_sql::datafusion::common::ScalarValue;
use kalamstore_sql::datafusion::execution::SendableRecordBatchStream;
use kalamstore_sql::{Principal, SqlDescription, SqlOutput, SqlSession, SqlStatement};

use crate::access::Access;
use crate::error::{CliError, invalid};
use crate::output::LiveLimits;
use crate::parse::Command;
use crate::views::view_query;

/// What a statement produced.
pub enum Outcome {
    /// Rows to print, streamed.
    Rows(SendableRecordBatchStream),
    /// A subscription's rows, printed as each batch comes until it ends or is stopped.
    Live(SendableRecordBatchStream),
    /// A summary line for stderr, e.g. `INSERT 3`.
    Done(String),
}

/// A statement's output as the session's outcome.
fn outcome(output: SqlOutput) -> Outcome {
    match output {
        SqlOutput::Rows(rows) => Outcome::Rows(rows),
        SqlOutput::Changed { verb, rows } => Outcome::Done(format!("{verb} {rows}")),
    }
}

/// A statement checked and parsed once, to run many times (see [`Session::prepare`]).
#[derive(Debug, Clone)]
pub struct PreparedCommand {
    /// The statement, with `EXECUTE AS USER` taken off.
    command: Command,
    /// Whose rows it sees.
    principal: Principal,
    /// Its SQL, parsed, for SQL.
    sql: Option<SqlStatement>,
    /// What it takes and returns.
    pub description: SqlDescription,
}

/// A connection to the store.
pub struct Session {
    /// The store.
    pub store: Store,
    /// Whose rows statements see unless `EXECUTE AS USER` says otherwise.
    principal: Principal,
    /// `--param` values, for `$n`.
    params: Vec<String>,
    /// Show progress bars (stderr is a terminal).
    pub progress: bool,
    /// Where `CREATE TABLE` without `STORAGE_ID` puts a table.
    default_storage: StorageId,
    /// One SQL session per principal, made on first use; dropped after catalog changes.
    sql: tokio::sync::Mutex<HashMap<String, Arc<SqlSession>>>,
    /// When subscriptions stop printing.
    live_limits: LiveLimits,
    /// What the session may run.
    access: Access,
}

impl Session {
    /// A session over `store`: `user` (`--user`) or every user (`--all-users`, an operator's
    /// read of USER tables), with `params` for `$1, $2, ...`.
    pub fn new(
        store: Store,
        user: Option<UserId>,
        all_users: bool,
        params: Vec<String>,
        progress: bool,
    ) -> Result<Self, CliError> {
        let principal = match (user, all_users) {
            (Some(_), true) => return Err(invalid("--user and --all-users exclude each other")),
            (Some(u), false) => Principal::User(u),
            (None, true) => Principal::AllUsers,
            (None, false) => Principal::Anonymous,
        };
        Ok(Self {
            store,
            principal,
            params,
            progress,
            default_storage: StorageId::local(),
            sql: tokio::sync::Mutex::new(HashMap::new()),
            live_limits: LiveLimits::default(),
            access: Access::Local,
        })
    }

    /// A server connection's session: `principal`'s rows, limited to what `access` allows.
    pub fn connect(store: Store, principal: Principal, access: Access) -> Self {
        Self {
            store,
            principal,
            params: Vec::new(),
            progress: false,
            default_storage: StorageId::local(),
            sql: tokio::sync::Mutex::new(HashMap::new()),
            live_limits: LiveLimits::default(),
            access,
        }
    }

    /// Ends subscriptions after `limits` (`--until-rows`, `--timeout`).
    pub fn with_live_limits(mut self, limits: LiveLimits) -> Self {
        self.live_limits = limits;
        self
    }

    /// When subscriptions stop printing.
    pub fn live_limits(&self) -> LiveLimits {
        self.live_limits
    }

    /// Puts tables created without `STORAGE_ID` on `storage` (`--storage`).
    pub fn with_default_storage(mut self, storage: StorageId) -> Self {
        self.default_storage = storage;
        self
    }

    /// Where `CREATE TABLE` without `STORAGE_ID` puts a table.
    pub(crate) fn default_storage(&self) -> &StorageId {
        &self.default_storage
    }

    /// Runs one statement.
    pub async fn execute(&self, command: Command) -> Result<Outcome, CliError> {
        self.execute_with(command, None).await
    }

    /// Runs one statement; `params` (the server's typed `$n`) replace `--param`.
    pub async fn execute_with(
        &self,
        command: Command,
        params: Option<&[ScalarValue]>,
    ) -> Result<Outcome, CliError> {
        let command = self.access.confine(command)?;
        match command {
            Command::ExecuteAs { user, inner } => {
                let principal = Principal::User(UserId::new(user)?);
                self.run(*inner, &principal, params).await
            }
            other => self.run(other, &self.principal, params).await,
        }
    }

    /// Inserts rows of text (a COPY) into `columns` of `table` as the session's principal, one
    /// atomic batch.
    pub async fn insert_text(
        &self,
        table: &str,
        columns: &[String],
        rows: &[kalamstore_sql::TextRow],
    ) -> Result<u64, CliError> {
        let session = self.sql_session(&self.principal).await?;
        Ok(session.insert_text(table, columns, rows).await?)
    }

    /// Checks and parses `command` once for running many times (the server's prepared
    /// statements), with what it takes and returns.
    pub async fn prepare(&self, command: Command) -> Result<PreparedCommand, CliError> {
        let command = self.access.confine(command)?;
        let (command, principal) = match command {
            Command::ExecuteAs { user, inner } => (*inner, Principal::User(UserId::new(user)?)),
            other => (other, self.principal.clone()),
        };
        let session = self.sql_session(&principal).await?;
        let mut sql = None;
        let description = match &command {
            Command::Sql(text) => {
                let statement = SqlStatement::parse(text)?;
                let d = session.describe_statement(&statement).await?;
                sql = Some(statement);
                d
            }
            Command::Subscribe(request) => SqlDescription {
                params: Vec::new(),
                columns: Some(session.subscribe_schema(request).await?),
            },
            view if view_query(view).is_ok() => session.describe(&view_query(view)?).await?,
            Command::Consume { name, .. } => {
                let c = self.store.consumer(name).await?;
                let def = self.store.table(&c.table).await?;
                SqlDescription {
                    params: Vec::new(),
                    columns: Some(kalamstore_sql::changes_schema(&def, c.all_users)),
                }
            }
            _ => SqlDescription::default(),
        };
        Ok(PreparedCommand {
            command,
            principal,
            sql,
            description,
        })
    }

    /// Runs a prepared statement with `params` for its `$n`.
    pub async fn execute_prepared(
        &self,
        prepared: &PreparedCommand,
        params: &[ScalarValue],
    ) -> Result<Outcome, CliError> {
        let Some(statement) = &prepared.sql else {
            return self
                .run(prepared.command.clone(), &prepared.principal, Some(params))
                .await;
        };
        let session = self.sql_session(&prepared.principal).await?;
        Ok(outcome(session.run_statement(statement, params).await?))
    }

    async fn run(
        &self,
        command: Command,
        principal: &Principal,
        params: Option<&[ScalarValue]>,
    ) -> Result<Outcome, CliError> {
        match command {
            Command::ExecuteAs { .. } => Err(invalid("EXECUTE AS cannot be nested")),
            Command::Sql(sql) => self.sql(&sql, principal, params).await,
            Command::Subscribe(request) => {
                let session = self.sql_session(principal).await?;
                Ok(Outcome::Live(session.subscribe(request).await?))
            }
            consumer @ (Command::CreateConsumer { .. }
            | Command::Consume { .. }
            | Command::Ack { .. }
            | Command::DropConsumer { .. }) => self.consumer_command(consumer, principal).await,
            Command::KillLiveQuery(id) => {
                self.store.kill_live_query(&id).await?;
                Ok(Outcome::Done(format!("KILL LIVE QUERY {id}")))
            }
            view @ (Command::ShowStorages
            | Command::ShowLiveQueries
            | Command::ShowConsumers
            | Command::ShowUsers
            | Command::ShowNamespaces
            | Command::ShowTables(_)
            | Command::Describe(_)
            | Command::ShowManifest(_)
            | Command::ShowStats(_)
            | Command::ShowCacheStats) => {
                if let Command::Describe(t) | Command::ShowManifest(t) | Command::ShowStats(t) =
                    &view
                {
                    self.store.table(t).await?;
                }
                let query = view_query(&view)?;
                self.sql(&query, principal, None).await
            }
            Command::CopyFrom {
                table,
                columns,
                path,
                format,
            } => {
                let session = self.sql_session(principal).await?;
                let def = self.store.table(&table).await?;
                let rows =
                    crate::copy_file::copy_from(&session, &def, &columns, &path, format).await?;
                Ok(Outcome::Done(format!("COPY {rows}")))
            }
            Command::CopyTo {
                query,
                path,
                format,
            } => {
                let Outcome::Rows(rows) = self.sql(&query, principal, None).await? else {
                    return Err(invalid("COPY ... TO needs a query"));
                };
                let rows = crate::copy_file::copy_to(rows, &path, &format).await?;
                Ok(Outcome::Done(format!("COPY {rows}")))
            }
            user @ (Command::CreateUser { .. }
            | Command::AlterUser { .. }
            | Command::DropUser { .. }) => self.user_command(user).await,
            maintenance @ (Command::Flush { .. }
            | Command::Compact(_)
            | Command::KillJob(_)
            | Command::Export { .. }
            | Command::Import { .. }) => self.maintenance(maintenance).await,
            ddl => {
                let done = self.ddl(ddl).await;
                // Namespaces or tables may have changed: sessions list them afresh.
                self.sql.lock().await.clear();
                done
            }
        }
    }

    /// Runs SQL through DataFusion as `principal`, with `params` or else `--param`.
    async fn sql(
        &self,
        sql: &str,
        principal: &Principal,
        params: Option<&[ScalarValue]>,
    ) -> Result<Outcome, CliError> {
        let session = self.sql_session(principal).await?;
        let given: Vec<ScalarValue>;
        let params = match params {
            Some(p) => p,
            None => {
                given = self
                    .params
                    .iter()
                    .map(|p| ScalarValue::Utf8(Some(p.clone())))
                    .collect();
                &given
            }
        };
        Ok(outcome(session.run(sql, params).await?))
    }

    async fn sql_session(&self, principal: &Principal) -> Result<Arc<SqlSession>, CliError> {
        let key = format!("{principal:?}");
        let mut sessions = self.sql.lock().await;
        if let Some(s) = sessions.get(&key) {
            return Ok(s.clone());
        }
        let session = SqlSession::new(self.store.clone(), principal.clone()).await?;
        session.set_version(&format!("kalamstore {}", crate::VERSION));
        let session = Arc::new(session);
        sessions.insert(key, session.clone());
        Ok(session)
    }

    /// The `$n` parameters as given.
    pub(crate) fn params(&self) -> &[String] {
        &self.params
    }

    /// A spinner on stderr while a long statement runs (when stderr is a terminal).
    pub(crate) fn spinner(&self, msg: &str) -> Option<indicatif::ProgressBar> {
        if !self.progress {
            return None;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(msg.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Some(bar)
    }
}
