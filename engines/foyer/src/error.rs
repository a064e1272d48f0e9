//! The foyer engine's own errors, mapped into `kalamstore_storage::Error::Engine`.

use kalamstore_storage::Error;

pub(crate) const ENGINE: &str = "foyer";

/// What went wrong inside the foyer cache.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FoyerError {
    #[error(transparent)]
    Foyer(#[from] foyer::Error),
    #[error("cache runtime: {0}")]
    Runtime(String),
}

impl FoyerError {
    pub(crate) fn during(self, op: impl Into<String>) -> Error {
        Error::engine(ENGINE, op, self)
    }
}
