//! The query protocols over a connection's [`Statements`](crate::Statements): simple queries
//! (several statements per message), the extended protocol (Parse/Bind/Describe/Execute with
//! typed `$n`), results streamed batch by batch (a subscription flushed as each batch comes),
//! CancelRequests, and the session commands drivers send at connect (`SET`, `SHOW`, `BEGIN`,
//! `COMMIT`, ...), answered here.

use std::fmt::Debug;
use std::sync::{Arc, Weak};

use arrow_pg::datatypes::encode_recordbatch;
use async_trait::async_trait;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use kalamstore_sql::datafusion::arrow::array::StringArray;
use kalamstore_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use kalamstore_sql::datafusion::arrow::record_batch::RecordBatch;
use kalamstore_sql::datafusion::common::ScalarValue;
use kalamstore_sql::datafusion::execution::SendableRecordBatchStream;
use kalamstore_sql::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::{CopyHandler, send_copy_in_response};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_ready_for_query};
use pgwire::api::results::{
    CopyResponse, DescribeResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};
use pgwire::messages::data::{
    DataRow, FieldDescription, NoData, ParameterDescription, RowDescription,
};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Describe, Execute, Parse, ParseComplete, PortalSuspended,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, NoticeResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

use crate::copy::{self, BATCH_ROWS, CopyStatement, RecordReader};
use crate::cursor::{self, Cursor, CursorStatement};
use crate::server::{Connection, CopyIn};
use crate::{Description, PreparedStatement, Reply, StatementError, types};

fn error(code: &'static str, message: impl Into<String>) -> StatementError {
    StatementError::new(code, message)
}

/// A statement's failure as the protocol's error.
fn info(e: StatementError) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), e.code.into(), e.message)
}

fn canceled() -> StatementError {
    error("57014", "canceling statement due to user request")
}

/// A prepared statement: its text, what Describe says about it and, unless the connection
/// answers it itself (a session command, a COPY), the statements' prepared form.
#[derive(Clone)]
pub struct Prepared {
    sql: String,
    statement: Option<Arc<dyn PreparedStatement>>,
    params: Vec<Type>,
    /// The types the statement fixes for its `$n`: a client's value of another type (psycopg
    /// sends small integers as `int2`) is cast to it.
    inferred: Vec<Option<DataType>>,
    columns: Option<SchemaRef>,
}

impl Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sql", &self.sql)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// A statement's reply, a notice to send before it, and the verb of its row count's tag
/// (`SELECT 3`, `FETCH 3`).
struct Ran {
    reply: Reply,
    notice: Option<ErrorInfo>,
    verb: &'static str,
}

impl Ran {
    fn new(reply: Reply) -> Self {
        Self {
            reply,
            notice: None,
            verb: "SELECT",
        }
    }
}

/// What a statement does to the session's transaction block.
enum Transaction {
    Begin,
    Commit,
    Rollback,
    /// `ROLLBACK TO SAVEPOINT`: the block goes on.
    RollbackTo,
}

/// A statement the connection answers itself.
enum Local {
    /// A tag, possibly moving the transaction block.
    Tag(&'static str, Option<Transaction>),
    /// `SHOW <setting>`: one text row.
    Show(String, String),
}

/// The settings `SHOW` answers before any `SET`.
const DEFAULTS: &[(&str, &str)] = &[
    ("server_version", "16.0"),
    ("server_version_num", "160000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("transaction_isolation", "serializable"),
    ("default_transaction_isolation", "serializable"),
    ("transaction_read_only", "off"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("application_name", ""),
    ("search_path", "public"),
    ("max_identifier_length", "63"),
    ("extra_float_digits", "1"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
];

fn words(sql: &str) -> Vec<String> {
    sql.trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

impl Connection {
    /// The session command `sql` is, if it is one.
    fn local(&self, sql: &str) -> Option<Result<Local, StatementError>> {
        let words = words(sql);
        let first = words.first()?.to_ascii_uppercase();
        let second = words.get(1).map(|w| w.to_ascii_uppercase());
        Some(Ok(match first.as_str() {
            "BEGIN" => Local::Tag("BEGIN", Some(Transaction::Begin)),
            "START" if second.as_deref() == Some("TRANSACTION") => {
                Local::Tag("START TRANSACTION", Some(Transaction::Begin))
            }
            "COMMIT" | "END" => Local::Tag("COMMIT", Some(Transaction::Commit)),
            // Savepoints (drivers nest blocks with them): each statement commits on its own,
            // so there is nothing to keep apart; ROLLBACK TO warns like ROLLBACK.
            "SAVEPOINT" => Local::Tag("SAVEPOINT", None),
            "RELEASE" => Local::Tag("RELEASE", None),
            "ROLLBACK" if second.as_deref() == Some("TO") => {
                Local::Tag("ROLLBACK", Some(Transaction::RollbackTo))
            }
            "ROLLBACK" | "ABORT" => Local::Tag("ROLLBACK", Some(Transaction::Rollback)),
            "DISCARD" => Local::Tag("DISCARD ALL", None),
            "DEALLOCATE" => Local::Tag("DEALLOCATE", None),
            "UNLISTEN" => Local::Tag("UNLISTEN", None),
            "SET" => return Some(self.set(&words[1..]).map(|()| Local::Tag("SET", None))),
            "RESET" => {
                let name = words.get(1)?.to_ascii_lowercase();
                let mut settings = self.settings.lock();
                if name == "all" {
                    settings.clear();
                } else {
                    settings.remove(&name);
                }
                Local::Tag("RESET", None)
            }
            "SHOW" => {
                let name = match (second.as_deref(), words.len()) {
                    (Some("TRANSACTION"), 4) => "transaction_isolation".to_owned(),
                    (Some(_), 2) => words[1].to_ascii_lowercase(),
                    _ => return None,
                };
                let value = self.settings.lock().get(&name).cloned().or_else(|| {
                    DEFAULTS
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| (*v).to_owned())
                })?;
                Local::Show(name, value)
            }
            _ => return None,
        }))
    }

    /// `SET [SESSION | LOCAL] name {= | TO} value` and `SET TIME ZONE value`.
    fn set(&self, words: &[String]) -> Result<(), StatementError> {
        let mut words = words;
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("SESSION") || w.eq_ignore_ascii_case("LOCAL"))
        {
            words = &words[1..];
        }
        let text = words.join(" ");
        let (name, value) = if text.to_ascii_uppercase().starts_with("TIME ZONE ") {
            ("timezone".to_owned(), text["TIME ZONE ".len()..].to_owned())
        } else if let Some((n, v)) = text.split_once('=') {
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        } else if words.len() >= 3 && words[1].eq_ignore_ascii_case("TO") {
            (words[0].to_ascii_lowercase(), words[2..].join(" "))
        } else {
            return Err(error("42601", format!("syntax error in SET {text}")));
        };
        let value = value.trim_matches('\'').trim_matches('"').to_owned();
        self.settings.lock().insert(name, value);
        Ok(())
    }

    /// Runs the session command, moving the transaction block; a notice when `ROLLBACK` cannot
    /// undo what was written.
    fn run_local(&self, local: Local) -> Ran {
        match local {
            Local::Tag(tag, tx) => {
                let mut notice = None;
                let mut block = self.transaction.lock();
                match tx {
                    Some(Transaction::Begin) => *block = Some(false),
                    Some(Transaction::Commit) => {
                        *block = None;
                        self.cursors.lock().retain(|_, c| c.hold);
                    }
                    Some(Transaction::Rollback | Transaction::RollbackTo) => {
                        let wrote = if matches!(tx, Some(Transaction::Rollback)) {
                            self.cursors.lock().retain(|_, c| c.hold);
                            block.take() == Some(true)
                        } else {
                            *block == Some(true)
                        };
                        notice = wrote.then(|| {
                            ErrorInfo::new(
                                "WARNING".into(),
                                "25000".into(),
                                "the statements since BEGIN stay committed: kalamstore commits \
                                 each statement on its own"
                                    .into(),
                            )
                        });
                    }
                    None => {}
                }
                Ran {
                    reply: Reply::Done(tag.to_owned()),
                    notice,
                    verb: "SELECT",
                }
            }
            Local::Show(name, value) => {
                let schema = Arc::new(Schema::new(vec![Field::new(&name, DataType::Utf8, false)]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(StringArray::from(vec![value]))],
                );
                let stream = futures::stream::iter(vec![batch.map_err(Into::into)]);
                Ran::new(Reply::Rows(Box::pin(RecordBatchStreamAdapter::new(
                    schema, stream,
                ))))
            }
        }
    }

    fn transaction_status(&self) -> TransactionStatus {
        match *self.transaction.lock() {
            Some(_) => TransactionStatus::Transaction,
            None => TransactionStatus::Idle,
        }
    }

    /// Runs one statement (a session command or cursor statement here, the rest through the
    /// statements, or its prepared form when it has one), unless `token` fires first.
    async fn run(
        &self,
        sql: &str,
        prepared: Option<&Arc<dyn PreparedStatement>>,
        params: &[ScalarValue],
        token: &CancellationToken,
    ) -> Result<Ran, StatementError> {
        let reply = if let Some(statement) = prepared {
            tokio::select! {
                r = statement.execute(params) => r?,
                () = token.cancelled() => return Err(canceled()),
            }
        } else {
            if let Some(local) = self.local(sql) {
                return Ok(self.run_local(local?));
            }
            if let Some(statement) = cursor::parse(sql) {
                return self.run_cursor(statement?, params, token).await;
            }
            let session = self
                .session()
                .ok_or_else(|| error("08P01", "not authenticated"))?;
            let sql = crate::compat::rewrite(sql);
            tokio::select! {
                r = session.statements.execute(&sql, params) => r?,
                () = token.cancelled() => return Err(canceled()),
            }
        };
        if matches!(reply, Reply::Done(_))
            && let Some(wrote) = self.transaction.lock().as_mut()
        {
            *wrote = true;
        }
        Ok(Ran::new(reply))
    }

    /// `DECLARE`, `FETCH` or `CLOSE`.
    async fn run_cursor(
        &self,
        statement: CursorStatement,
        params: &[ScalarValue],
        token: &CancellationToken,
    ) -> Result<Ran, StatementError> {
        let missing = |name: &str| error("34000", format!("cursor \"{name}\" does not exist"));
        match statement {
            CursorStatement::Declare { name, query, hold } => {
                if !hold && self.transaction.lock().is_none() {
                    return Err(error(
                        "25P01",
                        "DECLARE CURSOR can only be used in transaction blocks (BEGIN first, \
                         or declare it WITH HOLD)",
                    ));
                }
                if self.cursors.lock().contains_key(&name) {
                    return Err(error("42P03", format!("cursor \"{name}\" already exists")));
                }
                let session = self
                    .session()
                    .ok_or_else(|| error("08P01", "not authenticated"))?;
                let query = crate::compat::rewrite(&query);
                let reply = tokio::select! {
                    r = session.statements.execute(&query, params) => r?,
                    () = token.cancelled() => return Err(canceled()),
                };
                let cursor = match reply {
                    Reply::Rows(s) => Cursor::new(s, false, hold),
                    Reply::Live(s) => Cursor::new(s, true, hold),
                    Reply::Done(_) => {
                        return Err(error("42601", "a cursor's statement must return rows"));
                    }
                };
                self.cursors.lock().insert(name, cursor);
                Ok(Ran::new(Reply::Done("DECLARE CURSOR".into())))
            }
            CursorStatement::Fetch {
                name,
                count,
                timeout,
            } => {
                // Out of the map while it reads (the map's lock is not held across a wait).
                let mut cursor = self
                    .cursors
                    .lock()
                    .remove(&name)
                    .ok_or_else(|| missing(&name))?;
                let fetched = tokio::select! {
                    r = cursor.fetch(count, timeout) => r,
                    () = token.cancelled() => Err(canceled()),
                };
                let schema = cursor.schema();
                self.cursors.lock().insert(name, cursor);
                let stream = futures::stream::iter(vec![Ok(fetched?)]);
                Ok(Ran {
                    reply: Reply::Rows(Box::pin(RecordBatchStreamAdapter::new(schema, stream))),
                    notice: None,
                    verb: "FETCH",
                })
            }
            CursorStatement::Close(Some(name)) => {
                self.cursors
                    .lock()
                    .remove(&name)
                    .ok_or_else(|| missing(&name))?;
                Ok(Ran::new(Reply::Done("CLOSE CURSOR".into())))
            }
            CursorStatement::Close(None) => {
                self.cursors.lock().clear();
                Ok(Ran::new(Reply::Done("CLOSE CURSOR ALL".into())))
            }
        }
    }

    /// Prepares a statement: what it takes and returns and, unless the connection answers it
    /// itself, the statements' prepared form.
    async fn prepare(
        &self,
        sql: &str,
    ) -> Result<(Description, Option<Arc<dyn PreparedStatement>>), StatementError> {
        if let Some(copy) = copy::parse_copy(sql) {
            return copy.map(|_| (Description::default(), None));
        }
        match self.local(sql) {
            Some(Ok(Local::Show(name, _))) => {
                let columns = Schema::new(vec![Field::new(name, DataType::Utf8, false)]);
                let description = Description {
                    params: vec![],
                    columns: Some(Arc::new(columns)),
                };
                return Ok((description, None));
            }
            Some(Ok(Local::Tag(..))) => return Ok((Description::default(), None)),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        match cursor::parse(sql) {
            Some(Ok(CursorStatement::Fetch { name, .. })) => {
                let columns = self.cursors.lock().get(&name).map(Cursor::schema);
                let columns = columns
                    .ok_or_else(|| error("34000", format!("cursor \"{name}\" does not exist")))?;
                let description = Description {
                    params: vec![],
                    columns: Some(columns),
                };
                return Ok((description, None));
            }
            Some(Ok(_)) => return Ok((Description::default(), None)),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        let session = self
            .session()
            .ok_or_else(|| error("08P01", "not authenticated"))?;
        let statement = session
            .statements
            .prepare(&crate::compat::rewrite(sql))
            .await?;
        Ok((statement.description().clone(), Some(statement)))
    }
}

/// How rows go out.
struct Rows {
    /// Their columns as the client reads them.
    fields: Arc<Vec<FieldInfo>>,
    /// Send a RowDescription first (the simple protocol).
    describe: bool,
    /// A subscription: flushed after each batch.
    live: bool,
    /// The verb of the tag, e.g. `SELECT`.
    verb: &'static str,
}

/// Sends the rows of `stream`: all of them, or until the token fires (57014). The outer error
/// is the connection's, the inner the statement's.
async fn send_rows<C>(
    client: &mut C,
    mut stream: SendableRecordBatchStream,
    rows_out: Rows,
    token: &CancellationToken,
) -> PgWireResult<Result<(), StatementError>>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let Rows {
        fields,
        describe,
        live,
        verb,
    } = rows_out;
    if describe {
        let description = RowDescription::new(fields.iter().map(FieldDescription::from).collect());
        client
            .feed(PgWireBackendMessage::RowDescription(description))
            .await?;
        if live {
            client.flush().await?;
        }
    }
    let mut rows = 0usize;
    loop {
        let next = tokio::select! {
            b = stream.next() => b,
            () = token.cancelled() => return Ok(Err(canceled())),
        };
        let batch = match next {
            None => break,
            Some(Ok(b)) => b,
            Some(Err(e)) => return Ok(Err(error("XX000", e.to_string()))),
        };
        for row in encode_recordbatch(fields.clone(), batch) {
            match row {
                Ok(row) => client.feed(PgWireBackendMessage::DataRow(row)).await?,
                Err(e) => return Ok(Err(error("22000", e.to_string()))),
            }
            rows += 1;
        }
        if live {
            client.flush().await?;
        }
    }
    let tag = Tag::new(verb).with_rows(rows);
    client
        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
        .await?;
    Ok(Ok(()))
}

/// Sends COPY OUT data: the lines of `lines` as CopyData, flushed whenever the next line is
/// not ready yet (so a subscription's rows reach the client as they come), until the lines
/// end or the token fires (57014).
async fn send_copy_out<C>(
    client: &mut C,
    columns: usize,
    header: bool,
    lines: impl Stream<Item = PgWireResult<CopyData>> + Send,
    token: &CancellationToken,
) -> PgWireResult<Result<bool, StatementError>>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    // Text format, for the whole row and each column.
    let width = i16::try_from(columns).unwrap_or(i16::MAX);
    let out = CopyOutResponse::new(0, width, vec![0; columns]);
    client
        .feed(PgWireBackendMessage::CopyOutResponse(out))
        .await?;
    let mut lines = std::pin::pin!(lines);
    let mut rows = 0usize;
    loop {
        let next = match lines.next().now_or_never() {
            Some(next) => next,
            None => {
                client.flush().await?;
                tokio::select! {
                    next = lines.next() => next,
                    () = token.cancelled() => return Ok(Err(canceled())),
                }
            }
        };
        match next {
            None => break,
            Some(Ok(data)) => {
                if !data.data.is_empty() {
                    rows += 1;
                    client.feed(PgWireBackendMessage::CopyData(data)).await?;
                }
            }
            Some(Err(e)) => return Ok(Err(error("XX000", e.to_string()))),
        }
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    // The header line is not a row.
    let rows = rows.saturating_sub(usize::from(header));
    send_tag(client, &format!("COPY {rows}")).await?;
    Ok(Ok(false))
}

/// A command's tag, e.g. `INSERT 0 3`, as a CommandComplete.
async fn send_tag<C>(client: &mut C, tag: &str) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .feed(PgWireBackendMessage::CommandComplete(Tag::new(tag).into()))
        .await
        .map_err(Into::into)
}

/// The rows of a batch stream as data rows, one batch encoded at a time.
fn data_rows(
    stream: SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send {
    stream
        .map(move |batch| {
            let rows: Vec<PgWireResult<DataRow>> = match batch {
                Ok(batch) => encode_recordbatch(fields.clone(), batch).collect(),
                Err(e) => vec![Err(PgWireError::UserError(Box::new(info(error(
                    "XX000",
                    e.to_string(),
                )))))],
            };
            futures::stream::iter(rows)
        })
        .flatten()
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let statements = match self.session() {
            Some(s) => s.statements.split(&query.query),
            None => Err(error("08P01", "not authenticated")),
        };
        let mut failed = false;
        match statements {
            Ok(list) if list.is_empty() => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
            }
            Ok(list) => {
                for sql in list {
                    let (token, _busy) = self.start_statement(&sql);
                    if let Some(copy) = copy::parse_copy(&sql) {
                        let outcome = match copy {
                            Ok(statement) => self.copy(client, statement, &token).await?,
                            Err(e) => Err(e),
                        };
                        match outcome {
                            // COPY IN mode: the rest of the exchange is CopyData.
                            Ok(true) => {
                                client.set_state(PgWireConnectionState::CopyInProgress(false));
                                return Ok(());
                            }
                            Ok(false) => continue,
                            Err(e) => {
                                client
                                    .feed(PgWireBackendMessage::ErrorResponse(info(e).into()))
                                    .await?;
                                failed = true;
                                break;
                            }
                        }
                    }
                    let outcome = match self.run(&sql, None, &[], &token).await {
                        Ok(Ran {
                            reply,
                            notice,
                            verb,
                        }) => {
                            if let Some(n) = notice {
                                client
                                    .feed(PgWireBackendMessage::NoticeResponse(
                                        NoticeResponse::from(n),
                                    ))
                                    .await?;
                            }
                            let live = matches!(reply, Reply::Live(_));
                            match reply {
                                Reply::Done(tag) => send_tag(client, &tag).await.map(Ok)?,
                                Reply::Rows(s) | Reply::Live(s) => {
                                    match types::fields(&s.schema(), &Format::UnifiedText) {
                                        Ok(f) => {
                                            let rows = Rows {
                                                fields: Arc::new(f),
                                                describe: true,
                                                live,
                                                verb,
                                            };
                                            send_rows(client, s, rows, &token).await?
                                        }
                                        Err(e) => Err(error("0A000", e.to_string())),
                                    }
                                }
                            }
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = outcome {
                        client
                            .feed(PgWireBackendMessage::ErrorResponse(info(e).into()))
                            .await?;
                        failed = true;
                        break;
                    }
                }
            }
            Err(e) => {
                client
                    .feed(PgWireBackendMessage::ErrorResponse(info(e).into()))
                    .await?;
                failed = true;
            }
        }
        let status = if failed && self.transaction.lock().is_some() {
            TransactionStatus::Error
        } else {
            self.transaction_status()
        };
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_query` above runs every statement itself.
        Ok(Vec::new())
    }
}

/// Describes statements at Parse time through the connection's statements.
pub struct Parser(Weak<Connection>);

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let conn = self.0.upgrade().ok_or_else(|| {
            PgWireError::UserError(Box::new(info(error("08006", "connection closed"))))
        })?;
        let (description, statement) = conn
            .prepare(sql)
            .await
            .map_err(|e| PgWireError::UserError(Box::new(info(e))))?;
        let count = description.params.len().max(types.len());
        let params = (0..count)
            .map(|i| match types.get(i).cloned().flatten() {
                Some(t) if t != Type::UNKNOWN => t,
                _ => types::param_type(description.params.get(i).and_then(Option::as_ref)),
            })
            .collect();
        Ok(Some(Prepared {
            sql: sql.to_owned(),
            statement,
            params,
            inferred: description.params,
            columns: description.columns,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.columns {
            Some(schema) => types::fields(schema, column_format.unwrap_or(&Format::UnifiedText)),
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser(self.this.clone()))
    }

    // Parse, Bind and Describe answer into the connection's buffer: the client reads nothing
    // before its Sync (or Flush), so one write carries a whole round trip's replies instead of
    // one write (and one wake-up of the client) per message.
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(name),
        }
        client
            .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement) {
            Some(Entry::Value(stored)) => {
                let bound = Portal::try_new(&message, stored)?;
                client.portal_store().put_portal(Arc::new(bound));
            }
            Some(Entry::Empty) if message.parameters.is_empty() => {
                client.portal_store().put_empty_portal(portal);
            }
            Some(Entry::Empty) => {
                return Err(PgWireError::UserError(Box::new(info(error(
                    "08P01",
                    format!(
                        "bind message supplies {} parameters, but the empty statement {statement:?} takes none",
                        message.parameters.len()
                    ),
                )))));
            }
            None => return Err(PgWireError::StatementNotFound(statement.to_owned())),
        }
        client
            .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let (params, fields) = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stored)) => {
                    let r = self.do_describe_statement(client, &stored).await?;
                    (
                        Some(r.parameters().unwrap_or_default().to_vec()),
                        r.fields().to_vec(),
                    )
                }
                Some(Entry::Empty) => (Some(Vec::new()), Vec::new()),
                None => return Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    let r = self.do_describe_portal(client, &portal).await?;
                    (None, r.fields().to_vec())
                }
                Some(Entry::Empty) => (None, Vec::new()),
                None => return Err(PgWireError::PortalNotFound(name.to_owned())),
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        if let Some(params) = params {
            client
                .feed(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(params.iter().map(Type::oid).collect()),
                ))
                .await?;
        }
        let reply = if fields.is_empty() {
            PgWireBackendMessage::NoData(NoData::new())
        } else {
            PgWireBackendMessage::RowDescription(RowDescription::new(
                fields.iter().map(FieldDescription::from).collect(),
            ))
        };
        client.feed(reply).await?;
        Ok(())
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p)) => p,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        let max_rows = usize::try_from(message.max_rows).unwrap_or(0);
        let started = !matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        if !started {
            client.set_state(PgWireConnectionState::QueryInProgress);
            let result = self.execute_portal(client, &portal, max_rows).await;
            if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
                client.set_state(PgWireConnectionState::ReadyForQuery);
            }
            client.set_transaction_status(self.transaction_status());
            match result? {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(PgWireError::UserError(Box::new(info(e)))),
            }
        }
        // A portal read `max_rows` at a time.
        let fetched = portal.fetch(max_rows).await?;
        let mut response = fetched.response;
        let mut rows = 0;
        while let Some(row) = response.data_rows().next().await {
            client.feed(PgWireBackendMessage::DataRow(row?)).await?;
            rows += 1;
        }
        if fetched.suspended {
            client
                .feed(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()))
                .await?;
        } else {
            let tag = Tag::new("SELECT").with_rows(rows);
            client
                .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                .await?;
        }
        Ok(())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        _portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_execute` above runs portals itself.
        Ok(Response::EmptyQuery)
    }
}

impl Connection {
    /// Runs a bound portal. Rows are streamed straight to the client unless the client reads
    /// `max_rows` at a time, when the portal keeps them: `Ok(true)` says to fetch from it.
    async fn execute_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        max_rows: usize,
    ) -> PgWireResult<Result<bool, StatementError>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let mut params = Vec::with_capacity(portal.parameter_len());
        for i in 0..portal.parameter_len() {
            let ty = prepared.params.get(i).cloned().unwrap_or(Type::UNKNOWN);
            match types::param(portal, i, &ty) {
                Ok(v) => match prepared.inferred.get(i).cloned().flatten() {
                    Some(want) if want != v.data_type() && !v.is_null() => match v.cast_to(&want) {
                        Ok(cast) => params.push(cast),
                        Err(e) => {
                            return Ok(Err(error("22P02", format!("parameter ${}: {e}", i + 1))));
                        }
                    },
                    _ => params.push(v),
                },
                Err(PgWireError::UserError(e)) => {
                    return Ok(Err(StatementError::new("22P02", e.message)));
                }
                Err(e) => return Ok(Err(error("22P02", e.to_string()))),
            }
        }
        let (token, _busy) = self.start_statement(&prepared.sql);
        if let Some(copy) = copy::parse_copy(&prepared.sql) {
            let statement = match copy {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            return Ok(match self.copy(client, statement, &token).await? {
                Ok(true) => {
                    client.set_state(PgWireConnectionState::CopyInProgress(true));
                    Ok(false)
                }
                other => other.map(|_| false),
            });
        }
        let Ran {
            reply,
            notice,
            verb,
        } = match self
            .run(&prepared.sql, prepared.statement.as_ref(), &params, &token)
            .await
        {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(n) = notice {
            client
                .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                    n,
                )))
                .await?;
        }
        // A subscription streams until cancelled: its rows are flushed as they come.
        let live = matches!(reply, Reply::Live(_));
        let stream = match reply {
            Reply::Done(tag) => {
                send_tag(client, &tag).await?;
                return Ok(Ok(false));
            }
            Reply::Rows(s) | Reply::Live(s) => s,
        };
        if let Some(described) = &prepared.columns
            && !types::same_types(described, &stream.schema())
        {
            return Ok(Err(error(
                "0A000",
                "cached plan must not change result type: the table changed since the \
                 statement was prepared; prepare it again",
            )));
        }
        let fields = match types::fields(&stream.schema(), &portal.result_column_format) {
            Ok(f) => Arc::new(f),
            Err(e) => return Ok(Err(error("0A000", e.to_string()))),
        };
        if max_rows == 0 || live {
            let rows = Rows {
                fields,
                describe: false,
                live,
                verb,
            };
            return Ok(send_rows(client, stream, rows, &token)
                .await?
                .map(|()| false));
        }
        let rows = data_rows(stream, fields.clone());
        portal.start(QueryResponse::new(fields, rows)).await;
        Ok(Ok(true))
    }
}

#[async_trait]
impl CancelHandler for Connection {
    async fn on_cancel_request(&self, request: CancelRequest) {
        // Protocol 3.0 keys are 4 bytes, however the request was decoded.
        let secret = match request.secret_key {
            SecretKey::I32(s) => Some(s),
            SecretKey::Bytes(b) => <[u8; 4]>::try_from(b.as_ref()).ok().map(i32::from_be_bytes),
        };
        if let Some(secret) = secret {
            self.shared.cancel(request.pid, secret);
        }
    }
}

impl Connection {
    /// Runs a COPY with the client: rows out as CopyData, or COPY IN mode started (`Ok(true)`:
    /// the client sends CopyData next).
    async fn copy<C>(
        &self,
        client: &mut C,
        statement: CopyStatement,
        token: &CancellationToken,
    ) -> PgWireResult<Result<bool, StatementError>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(session) = self.session() else {
            return Ok(Err(error("08P01", "not authenticated")));
        };
        match statement {
            CopyStatement::Out { query, format } => {
                let reply = tokio::select! {
                    r = session.statements.execute(&query, &[]) => r,
                    () = token.cancelled() => Err(canceled()),
                };
                // A subscription's COPY runs until the client cancels or leaves.
                let stream = match reply {
                    Ok(Reply::Rows(s) | Reply::Live(s)) => s,
                    Ok(Reply::Done(_)) => {
                        return Ok(Err(error("0A000", "COPY ... TO STDOUT needs a query")));
                    }
                    Err(e) => return Ok(Err(e)),
                };
                let columns = stream.schema().fields().len();
                let lines = match copy::copy_lines(stream, &format) {
                    Ok(l) => l,
                    Err(e) => return Ok(Err(error("0A000", e.to_string()))),
                };
                let header = format.csv && format.header;
                send_copy_out(client, columns, header, lines, token).await
            }
            CopyStatement::In {
                table,
                columns,
                format,
            } => {
                let count = if columns.is_empty() {
                    match session
                        .statements
                        .prepare(&format!("SELECT * FROM {table}"))
                        .await
                    {
                        Ok(p) => p
                            .description()
                            .columns
                            .as_ref()
                            .map_or(0, |c| c.fields().len()),
                        Err(e) => return Ok(Err(e)),
                    }
                } else {
                    columns.len()
                };
                *self.copy_in.lock() = Some(CopyIn {
                    table,
                    columns,
                    reader: RecordReader::new(format),
                    rows: Vec::new(),
                    inserted: 0,
                });
                send_copy_in_response(
                    client,
                    CopyResponse::new(0, count, futures::stream::empty()),
                )
                .await?;
                Ok(Ok(true))
            }
        }
    }

    /// Writes the rows read so far (all of them when `last`), one atomic batch per
    /// [`BATCH_ROWS`]; on a failure the COPY ends and later data is ignored.
    async fn write_copied(&self, last: bool) -> PgWireResult<u64> {
        loop {
            let batch = {
                let mut guard = self.copy_in.lock();
                let Some(copy) = guard.as_mut() else {
                    return Ok(0);
                };
                if last {
                    match copy.reader.finish() {
                        Ok(records) => copy.rows.extend(records),
                        Err(e) => {
                            *guard = None;
                            return Err(PgWireError::UserError(Box::new(info(e))));
                        }
                    }
                }
                if copy.rows.is_empty() || (!last && copy.rows.len() < BATCH_ROWS) {
                    return Ok(copy.inserted);
                }
                let take = copy.rows.len().min(BATCH_ROWS);
                let rows: Vec<_> = copy.rows.drain(..take).collect();
                (copy.table.clone(), copy.columns.clone(), rows)
            };
            let (table, columns, rows) = batch;
            let Some(session) = self.session() else {
                return Ok(0);
            };
            match session.statements.copy_in(&table, &columns, &rows).await {
                Ok(n) => {
                    if let Some(copy) = self.copy_in.lock().as_mut() {
                        copy.inserted += n;
                    }
                }
                Err(e) => {
                    self.copy_in.lock().take();
                    return Err(PgWireError::UserError(Box::new(info(e))));
                }
            }
        }
    }
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.touch();
        {
            let mut guard = self.copy_in.lock();
            // After a failure the rest of the data is ignored, as Postgres does.
            let Some(copy) = guard.as_mut() else {
                return Ok(());
            };
            match copy.reader.push(&data.data) {
                Ok(records) => copy.rows.extend(records),
                Err(e) => {
                    *guard = None;
                    return Err(PgWireError::UserError(Box::new(info(e))));
                }
            }
        }
        self.write_copied(false).await.map(|_| ())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.copy_in.lock().is_none() {
            return Ok(());
        }
        let inserted = self.write_copied(true).await?;
        self.copy_in.lock().take();
        let tag = Tag::new("COPY").with_rows(usize::try_from(inserted).unwrap_or(usize::MAX));
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let written = self.copy_in.lock().take().map_or(0, |c| c.inserted);
        PgWireError::UserError(Box::new(info(error(
            "57014",
            format!(
                "COPY from stdin failed: {} ({written} rows of earlier batches stay written)",
                fail.message
            ),
        ))))
    }
}
