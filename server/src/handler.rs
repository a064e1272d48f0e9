//! Running a connection's statements: each one is a session command ([`commands`]), a cursor
//! statement ([`cursor`]) or goes to the connection's [`Statements`](crate::Statements) (or
//! its prepared form), cancelled when a CancelRequest fires its token. Also the simple query
//! protocol (several statements per message) and the CancelRequest itself; the extended
//! protocol is [`extended`], COPY [`copy_wire`], sending results [`send`].
//!
//! [`commands`]: crate::commands
//! [`cursor`]: crate::cursor
//! [`extended`]: crate::extended
//! [`copy_wire`]: crate::copy_wire
//! [`send`]: crate::send

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use kalamstore_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};
use kalamstore_sql::datafusion::common::ScalarValue;
use kalamstore_sql::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::Format;
use pgwire::api::query::{SimpleQueryHandler, send_ready_for_query};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::response::{EmptyQueryResponse, NoticeResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

use crate::commands::Local;
use crate::copy;
use crate::cursor::{self, Cursor, CursorStatement};
use crate::outcome::{Ran, canceled, error, info};
use crate::send::{Rows, send_rows, send_tag};
use crate::server::Connection;
use crate::{Description, PreparedStatement, Reply, StatementError, types};

impl Connection {
    /// Runs one statement (a session command or cursor statement here, the rest through the
    /// statements, or its prepared form when it has one), unless `token` fires first.
    pub(crate) async fn run(
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
    pub(crate) async fn prepare(
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
