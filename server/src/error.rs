//! The server's own errors: listening, TLS files, the catalog of logins.

use std::net::SocketAddr;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or reading the listening socket failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS certificate or key file is unreadable or unusable.
    #[error("TLS file {path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed (reading or writing logins).
    #[error("{}", .0.report())]
    Store(#[from] kalamstore::Error),
    /// The server would accept passwords from anywhere without any login to check them.
    #[error("{0}")]
    Unsafe(String),
}
