//! Sending results: rows batch by batch (flushed as each batch comes for a subscription),
//! COPY OUT data (flushed whenever the next line is not ready), command tags.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::encode_recordbatch;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use kalamstore_sql::datafusion::execution::SendableRecordBatchStream;
use pgwire::api::results::{FieldInfo, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use tokio_util::sync::CancellationToken;

use crate::StatementError;
use crate::outcome::{canceled, error, info};

/// How rows go out.
pub(crate) struct Rows {
    /// Their columns as the client reads them.
    pub(crate) fields: Arc<Vec<FieldInfo>>,
    /// Send a RowDescription first (the simple protocol).
    pub(crate) describe: bool,
    /// A subscription: flushed after each batch.
    pub(crate) live: bool,
    /// The verb of the tag, e.g. `SELECT`.
    pub(crate) verb: &'static str,
}

/// Sends the rows of `stream`: all of them, or until the token fires (57014). The outer error
/// is the connection's, the inner the statement's.
pub(crate) async fn send_rows<C>(
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
pub(crate) async fn send_copy_out<C>(
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
pub(crate) async fn send_tag<C>(client: &mut C, tag: &str) -> PgWireResult<()>
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
pub(crate) fn data_rows(
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
