//! The session commands a connection answers itself: `SET`/`RESET`/`SHOW` of the settings
//! drivers send at connect, and the transaction block (`BEGIN`, `COMMIT`, `ROLLBACK`,
//! savepoints) over statements that each commit on their own.

use std::sync::Arc;

use kalamstore_sql::datafusion::arrow::array::StringArray;
use kalamstore_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};
use kalamstore_sql::datafusion::arrow::record_batch::RecordBatch;
use kalamstore_sql::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use pgwire::error::ErrorInfo;
use pgwire::messages::response::TransactionStatus;

use crate::outcome::{Ran, error};
use crate::server::Connection;
use crate::{Reply, StatementError};

/// What a statement does to the session's transaction block.
pub(crate) enum Transaction {
    Begin,
    Commit,
    Rollback,
    /// `ROLLBACK TO SAVEPOINT`: the block goes on.
    RollbackTo,
}

/// A statement the connection answers itself.
pub(crate) enum Local {
    /// A tag, possibly moving the transaction block.
    Tag(&'static str, Option<Transaction>),
    /// `SHOW <setting>`: one text row.
    Show(String, String),
}

/// The settings `SHOW` answers before any `SET`.
pub(crate) const DEFAULTS: &[(&str, &str)] = &[
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

pub(crate) fn words(sql: &str) -> Vec<String> {
    sql.trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

impl Connection {
    /// The session command `sql` is, if it is one.
    pub(crate) fn local(&self, sql: &str) -> Option<Result<Local, StatementError>> {
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
    pub(crate) fn set(&self, words: &[String]) -> Result<(), StatementError> {
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
    pub(crate) fn run_local(&self, local: Local) -> Ran {
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

    pub(crate) fn transaction_status(&self) -> TransactionStatus {
        match *self.transaction.lock() {
            Some(_) => TransactionStatus::Transaction,
            None => TransactionStatus::Idle,
        }
    }
}
