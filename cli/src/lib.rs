//! The `kalamstore` shell as a library: kalamstore's own statements (storages, namespaces,
//! tables, ALTER TABLE, flushes, compactions, moves, export, `EXECUTE AS USER`, subscriptions
//! and consumers) parsed by
//! [`parse`], everything else run as SQL through DataFusion (`kalamstore-sql`), results printed
//! as they stream ([`output`]). The binary (`main.rs`) adds arguments, scripts and the shell;
//! the SQL logic tests drive this library directly. [`serve`] puts it behind the Postgres-wire
//! server (`kalamstore-server`), one [`Session`] per login, limited by [`access`].

pub mod access;
mod consumers;
mod copy_file;
mod ddl;
pub mod error;
mod export;
mod maintenance;
pub mod output;
pub mod parse;
pub mod serve;
pub mod session;
mod users;
mod value;
mod views;

pub use error::CliError;
pub use output::Format;
pub use session::{Outcome, Session};

/// The version with the git commit and build date (`kalamstore --version`, SQL `version()`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KALAMSTORE_GIT_COMMIT"),
    ", built ",
    env!("KALAMSTORE_BUILD_DATE"),
    ")"
);

/// Writes `s` to stderr, ignoring a closed pipe.
pub fn note(s: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}
