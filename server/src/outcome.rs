//! What running a statement gives the protocol: [`Ran`] (its reply, a notice to send first,
//! the verb of its tag) or a [`StatementError`], with the helpers that make and send those.

use pgwire::error::ErrorInfo;

use crate::{Reply, StatementError};

/// A statement's failure with `code`.
pub(crate) fn error(code: &'static str, message: impl Into<String>) -> StatementError {
    StatementError::new(code, message)
}

/// A statement's failure as the protocol's error.
pub(crate) fn info(e: StatementError) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), e.code.into(), e.message)
}

/// The failure of a statement a CancelRequest stopped.
pub(crate) fn canceled() -> StatementError {
    error("57014", "canceling statement due to user request")
}

/// A statement's reply, a notice to send before it, and the verb of its row count's tag
/// (`SELECT 3`, `FETCH 3`).
pub(crate) struct Ran {
    pub(crate) reply: Reply,
    pub(crate) notice: Option<ErrorInfo>,
    pub(crate) verb: &'static str,
}

impl Ran {
    pub(crate) fn new(reply: Reply) -> Self {
        Self {
            reply,
            notice: None,
            verb: "SELECT",
        }
    }
}
