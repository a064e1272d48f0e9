//! The extended query protocol: Parse (statements prepared once through the connection's
//! statements), Bind, Describe (their replies wait for the client's Sync), Execute (rows
//! streamed, or kept in the portal for a client that reads `max_rows` at a time).

use std::fmt::Debug;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use futures::{Sink, SinkExt, StreamExt};
use kalamstore_sql::datafusion::arrow::datatypes::{DataType, SchemaRef};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{DescribeResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{FieldDescription, NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Describe, Execute, Parse, ParseComplete, PortalSuspended,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, NoticeResponse};

use crate::copy;
use crate::outcome::{Ran, error, info};
use crate::send::{Rows, data_rows, send_rows, send_tag};
use crate::server::Connection;
use crate::{PreparedStatement, Reply, StatementError, types};

/// A prepared statement: its text, what Describe says about it and, unless the connection
/// answers it itself (a session command, a COPY), the statements' prepared form.
#[derive(Clone)]
pub struct Prepared {
    pub(crate) sql: String,
    pub(crate) statement: Option<Arc<dyn PreparedStatement>>,
    pub(crate) params: Vec<Type>,
    /// The types the statement fixes for its `$n`: a client's value of another type (psycopg
    /// sends small integers as `int2`) is cast to it.
    pub(crate) inferred: Vec<Option<DataType>>,
    pub(crate) columns: Option<SchemaRef>,
}

impl Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sql", &self.sql)
            .field("params", &self.params)
            .finish_non_exhaustive()
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
    pub(crate) async fn execute_portal<C>(
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
