//! COPY over the wire: `COPY ... TO STDOUT` as CopyData, and COPY IN mode for `COPY ... FROM
//! STDIN`, its data written in atomic batches as it arrives.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::{CopyHandler, send_copy_in_response};
use pgwire::api::results::{CopyResponse, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use tokio_util::sync::CancellationToken;

use crate::copy::{self, BATCH_ROWS, CopyStatement, RecordReader};
use crate::outcome::{canceled, error, info};
use crate::send::send_copy_out;
use crate::server::{Connection, CopyIn};
use crate::{Reply, StatementError};

impl Connection {
    /// Runs a COPY with the client: rows out as CopyData, or COPY IN mode started (`Ok(true)`:
    /// the client sends CopyData next).
    pub(crate) async fn copy<C>(
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
    pub(crate) async fn write_copied(&self, last: bool) -> PgWireResult<u64> {
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
