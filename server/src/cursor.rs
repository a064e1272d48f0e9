//! A connection's cursors: `DECLARE name CURSOR FOR <query>`, `FETCH`, `CLOSE`. A cursor holds
//! a statement's rows and hands them out as the client asks. Over a subscription it follows
//! Materialize's clients: `FETCH` waits for the first new row (at most its `timeout`), then
//! returns what has arrived, so a driver with no streaming API can follow the changes by
//! fetching in a loop.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kalamstore_sql::datafusion::arrow::compute::concat_batches;
use kalamstore_sql::datafusion::arrow::datatypes::SchemaRef;
use kalamstore_sql::datafusion::arrow::record_batch::RecordBatch;
use kalamstore_sql::datafusion::execution::SendableRecordBatchStream;

use crate::StatementError;

fn syntax(msg: impl Into<String>) -> StatementError {
    StatementError::new("42601", msg)
}

/// A cursor statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CursorStatement {
    /// `DECLARE name [NO SCROLL] CURSOR [WITH[OUT] HOLD] FOR query`.
    Declare {
        name: String,
        query: String,
        /// `WITH HOLD`: it outlives the transaction block.
        hold: bool,
    },
    /// `FETCH [NEXT | n | ALL | FORWARD [n | ALL]] [FROM | IN] name [WITH (timeout = '1s')]`.
    Fetch {
        name: String,
        /// How many rows at most; `None` for `ALL`.
        count: Option<u64>,
        /// How long to wait for the first row of a subscription.
        timeout: Option<Duration>,
    },
    /// `CLOSE name | ALL`; `None` for all.
    Close(Option<String>),
}

/// A cursor's name as Postgres folds it: lower case unless quoted.
fn ident(word: &str) -> Result<String, StatementError> {
    let name = match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => word.to_ascii_lowercase(),
    };
    let plain = name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if name.is_empty() || (!plain && !word.starts_with('"')) {
        return Err(syntax(format!("{word:?} is not a cursor name")));
    }
    Ok(name)
}

/// `'1s'`, `'250ms'`, `'2 minutes'`, or a bare number of seconds.
fn duration(text: &str) -> Result<Duration, StatementError> {
    let t = text.trim().trim_matches('\'').trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let n: f64 = number
        .parse()
        .map_err(|_| syntax(format!("{text} is not a duration, e.g. '1s' or '500ms'")))?;
    let seconds = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "second" | "seconds" => n,
        "ms" | "millisecond" | "milliseconds" => n / 1000.0,
        "min" | "minute" | "minutes" => n * 60.0,
        _ => {
            return Err(syntax(format!(
                "{text} is not a duration, e.g. '1s' or '500ms'"
            )));
        }
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| syntax(format!("{text} is not a duration, e.g. '1s' or '500ms'")))
}

/// The cursor statement `sql` is, if it is one.
pub(crate) fn parse(sql: &str) -> Option<Result<CursorStatement, StatementError>> {
    let text = sql.trim().trim_end_matches(';').trim();
    let first = text.split_whitespace().next()?.to_ascii_uppercase();
    match first.as_str() {
        "DECLARE" => Some(parse_declare(text)),
        "FETCH" => Some(parse_fetch(text)),
        "CLOSE" => Some(parse_close(text)),
        _ => None,
    }
}

/// The words of `text` with where each starts.
fn words_at(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace()
        .map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

fn parse_declare(text: &str) -> Result<CursorStatement, StatementError> {
    let usage = "write DECLARE name CURSOR [WITH HOLD] FOR query";
    let mut words = words_at(text).skip(1);
    let name = ident(words.next().ok_or_else(|| syntax(usage))?.1)?;
    let (mut hold, mut cursor, mut query) = (false, false, None);
    let mut options = words.map(|(at, w)| (at, w.to_ascii_uppercase()));
    while let Some((at, word)) = options.next() {
        match word.as_str() {
            "FOR" if cursor => {
                query = Some(text[at + "FOR".len()..].trim());
                break;
            }
            "CURSOR" if !cursor => cursor = true,
            "NO" if !cursor => match options.next() {
                Some((_, w)) if w == "SCROLL" => {}
                _ => return Err(syntax(format!("expected SCROLL after NO: {usage}"))),
            },
            "ASENSITIVE" | "INSENSITIVE" if !cursor => {}
            "SCROLL" | "BINARY" if !cursor => {
                return Err(StatementError::new(
                    "0A000",
                    format!("{word} cursors are not supported: cursors read forward, as text"),
                ));
            }
            "WITH" | "WITHOUT" if cursor => match options.next() {
                Some((_, h)) if h == "HOLD" => hold = word == "WITH",
                _ => return Err(syntax(format!("expected HOLD after {word}: {usage}"))),
            },
            _ => return Err(syntax(format!("unexpected {word}: {usage}"))),
        }
    }
    match query {
        Some(q) if !q.is_empty() => Ok(CursorStatement::Declare {
            name,
            query: q.to_owned(),
            hold,
        }),
        _ => Err(syntax(format!("expected FOR and a query: {usage}"))),
    }
}

fn parse_fetch(text: &str) -> Result<CursorStatement, StatementError> {
    let usage =
        "write FETCH [n | ALL | NEXT | FORWARD [n | ALL]] [FROM] name [WITH (timeout = '1s')]";
    let (body, timeout) = match text.to_ascii_uppercase().find(" WITH") {
        Some(at) => {
            let options = text[at + " WITH".len()..].trim();
            let inner = options
                .strip_prefix('(')
                .and_then(|o| o.strip_suffix(')'))
                .ok_or_else(|| syntax(usage))?;
            let (key, value) = inner.split_once('=').ok_or_else(|| syntax(usage))?;
            if !key.trim().eq_ignore_ascii_case("timeout") {
                return Err(syntax(format!(
                    "unknown FETCH option {}: {usage}",
                    key.trim()
                )));
            }
            (&text[..at], Some(duration(value)?))
        }
        None => (text, None),
    };
    let words: Vec<&str> = body.split_whitespace().skip(1).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let mut i = 0;
    let count_of = |w: &str| -> Option<Option<u64>> {
        if w == "ALL" {
            Some(None)
        } else {
            w.parse::<u64>().ok().map(Some)
        }
    };
    let mut count = Some(1);
    match upper.first().map(String::as_str) {
        Some("NEXT") => i = 1,
        Some("FORWARD") => {
            i = 1;
            if let Some(c) = upper.get(1).and_then(|w| count_of(w)) {
                count = c;
                i = 2;
            }
        }
        Some("PRIOR" | "FIRST" | "LAST" | "ABSOLUTE" | "RELATIVE" | "BACKWARD") => {
            return Err(StatementError::new(
                "55000",
                format!("FETCH {}: cursors read forward only", upper[0]),
            ));
        }
        Some(w) => {
            if let Some(c) = count_of(w) {
                count = c;
                i = 1;
            }
        }
        None => return Err(syntax(usage)),
    }
    if matches!(upper.get(i).map(String::as_str), Some("FROM" | "IN")) {
        i += 1;
    }
    let [name] = &words[i.min(words.len())..] else {
        return Err(syntax(usage));
    };
    Ok(CursorStatement::Fetch {
        name: ident(name)?,
        count,
        timeout,
    })
}

fn parse_close(text: &str) -> Result<CursorStatement, StatementError> {
    match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        [_, all] if all.eq_ignore_ascii_case("ALL") => Ok(CursorStatement::Close(None)),
        [_, name] => Ok(CursorStatement::Close(Some(ident(name)?))),
        _ => Err(syntax("write CLOSE name or CLOSE ALL")),
    }
}

/// A declared cursor: the rows of its statement not yet fetched.
pub(crate) struct Cursor {
    stream: SendableRecordBatchStream,
    /// Rows read from the stream and not yet fetched.
    pending: Option<RecordBatch>,
    /// A subscription: it never ends, and a FETCH returns once rows have come.
    live: bool,
    /// Declared `WITH HOLD`: `COMMIT` leaves it open.
    pub(crate) hold: bool,
    /// The stream has ended.
    done: bool,
}

impl Cursor {
    /// A cursor over `stream`.
    pub(crate) fn new(stream: SendableRecordBatchStream, live: bool, hold: bool) -> Self {
        Self {
            stream,
            pending: None,
            live,
            hold,
            done: false,
        }
    }

    /// The columns of its rows.
    pub(crate) fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }

    /// The next `count` rows (all of them for `None`). A query's cursor reads until it has
    /// them or its rows end; a subscription's waits for the first row (at most `timeout`),
    /// then takes only what has already arrived.
    pub(crate) async fn fetch(
        &mut self,
        count: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<RecordBatch, StatementError> {
        let want = count.map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
        let mut taken: Vec<RecordBatch> = Vec::new();
        let mut got = 0usize;
        while got < want {
            if let Some(batch) = self.pending.take() {
                let n = batch.num_rows().min(want - got);
                if n < batch.num_rows() {
                    self.pending = Some(batch.slice(n, batch.num_rows() - n));
                }
                got += n;
                taken.push(batch.slice(0, n));
                continue;
            }
            if self.done {
                break;
            }
            let next = if !self.live {
                self.stream.next().await
            } else if got > 0 {
                // Rows have come: only what is already here.
                match self.stream.next().now_or_never() {
                    Some(next) => next,
                    None => break,
                }
            } else {
                match timeout {
                    Some(t) => match tokio::time::timeout(t, self.stream.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                    None => self.stream.next().await,
                }
            };
            match next {
                None => self.done = true,
                Some(Ok(batch)) => {
                    if batch.num_rows() > 0 {
                        self.pending = Some(batch);
                    }
                }
                Some(Err(e)) => return Err(StatementError::new("XX000", e.to_string())),
            }
        }
        concat_batches(&self.schema(), &taken)
            .map_err(|e| StatementError::new("XX000", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kalamstore_sql::datafusion::arrow::array::{Array, Int64Array};
    use kalamstore_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};
    use kalamstore_sql::datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::*;

    fn declare(name: &str, query: &str, hold: bool) -> CursorStatement {
        CursorStatement::Declare {
            name: name.into(),
            query: query.into(),
            hold,
        }
    }

    fn fetch(name: &str, count: Option<u64>, timeout: Option<Duration>) -> CursorStatement {
        CursorStatement::Fetch {
            name: name.into(),
            count,
            timeout,
        }
    }

    #[test]
    fn cursor_statements_parse_as_postgres_and_materialize_write_them() {
        let ok = |sql: &str| parse(sql).unwrap().unwrap();
        assert_eq!(
            ok("DECLARE c CURSOR FOR SUBSCRIBE TO app.m"),
            declare("c", "SUBSCRIBE TO app.m", false)
        );
        assert_eq!(
            ok("declare \"Big\" no scroll cursor with hold for SELECT * FROM t WHERE a = 'for';"),
            declare("Big", "SELECT * FROM t WHERE a = 'for'", true)
        );
        assert_eq!(
            ok("DECLARE cursor_for CURSOR WITHOUT HOLD FOR SELECT 1"),
            declare("cursor_for", "SELECT 1", false)
        );
        assert_eq!(ok("FETCH c"), fetch("c", Some(1), None));
        assert_eq!(ok("FETCH 10 c"), fetch("c", Some(10), None));
        assert_eq!(ok("FETCH ALL FROM c"), fetch("c", None, None));
        assert_eq!(ok("fetch forward 5 in C"), fetch("c", Some(5), None));
        assert_eq!(ok("FETCH NEXT FROM c"), fetch("c", Some(1), None));
        assert_eq!(
            ok("FETCH ALL c WITH (timeout = '250ms')"),
            fetch("c", None, Some(Duration::from_millis(250)))
        );
        assert_eq!(
            ok("FETCH 3 c WITH (TIMEOUT='2s')"),
            fetch("c", Some(3), Some(Duration::from_secs(2)))
        );
        assert_eq!(ok("CLOSE c"), CursorStatement::Close(Some("c".into())));
        assert_eq!(ok("CLOSE ALL"), CursorStatement::Close(None));
        assert!(parse("SELECT 1").is_none());
        for (bad, code) in [
            ("DECLARE c FOR SELECT 1", "42601"),
            ("DECLARE cursor_x CURSOR SELECT 1", "42601"),
            ("DECLARE c CURSOR FOR ", "42601"),
            ("DECLARE c SCROLL CURSOR FOR SELECT 1", "0A000"),
            ("DECLARE c BINARY CURSOR FOR SELECT 1", "0A000"),
            ("FETCH PRIOR FROM c", "55000"),
            ("FETCH", "42601"),
            ("FETCH 1 c WITH (timeout = 'soon')", "42601"),
            ("FETCH 1 c WITH (size = 1)", "42601"),
            ("CLOSE a b", "42601"),
            ("FETCH 1 c;d", "42601"),
        ] {
            let e = parse(bad).unwrap().unwrap_err();
            assert_eq!(e.code, code, "{bad}: {e}");
        }
    }

    fn batches(values: &[&[i64]]) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        values
            .iter()
            .map(|v| {
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v.to_vec()))])
                    .unwrap()
            })
            .collect()
    }

    fn values(batch: &RecordBatch) -> Vec<i64> {
        let a = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        (0..a.len()).map(|i| a.value(i)).collect()
    }

    #[tokio::test]
    async fn a_query_cursor_hands_out_its_rows_in_order_across_batches() {
        let parts = batches(&[&[1, 2, 3], &[], &[4, 5]]);
        let schema = parts[0].schema();
        let stream = futures::stream::iter(parts.into_iter().map(Ok));
        let mut c = Cursor::new(
            Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
            false,
            false,
        );
        assert_eq!(values(&c.fetch(Some(2), None).await.unwrap()), [1, 2]);
        assert_eq!(values(&c.fetch(Some(2), None).await.unwrap()), [3, 4]);
        assert_eq!(values(&c.fetch(None, None).await.unwrap()), [5]);
        assert!(values(&c.fetch(Some(1), None).await.unwrap()).is_empty());
    }

    #[tokio::test]
    async fn a_live_cursor_waits_for_the_first_rows_then_takes_what_has_come() {
        let parts = batches(&[&[1, 2], &[3]]);
        let schema = parts[0].schema();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut c = Cursor::new(
            Box::pin(RecordBatchStreamAdapter::new(schema, rx)),
            true,
            false,
        );
        // Nothing yet: the timeout ends the wait with no rows.
        let none = c
            .fetch(None, Some(Duration::from_millis(20)))
            .await
            .unwrap();
        assert_eq!(none.num_rows(), 0);
        for b in parts {
            tx.unbounded_send(Ok(b)).unwrap();
        }
        // Both batches are here: ALL takes them and returns without waiting for more.
        assert_eq!(values(&c.fetch(None, None).await.unwrap()), [1, 2, 3]);
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.unbounded_send(Ok(batches(&[&[4]]).remove(0))).unwrap();
            tx
        });
        assert_eq!(values(&c.fetch(Some(5), None).await.unwrap()), [4]);
        drop(later.await.unwrap());
    }
}
