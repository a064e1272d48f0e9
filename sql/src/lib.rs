//! kalamstore tables through Apache DataFusion: every table of a [`Store`] as a
//! `TableProvider` (a streamed merge-on-read scan, projection, filter and limit pushdown,
//! row-count statistics, `INSERT`), `system.*` and `information_schema.*` built from the
//! store's models, and a [`SqlSession`] per principal that also runs `UPDATE` and `DELETE`
//! (planned as a query of the matching keys, written in one atomic batch).
//!
//! ```no_run
//! # async fn demo(store: kalamstore_storage::Store) -> kalamstore_sql::Result<()> {
//! use futures::TryStreamExt;
//! use kalamstore_sql::{Principal, SqlOutput, SqlSession};
//!
//! let alice = SqlSession::new(store, Principal::User("alice".parse()?)).await?;
//! let sql = "SELECT role, count(*) FROM chat.messages GROUP BY role";
//! if let SqlOutput::Rows(mut rows) = alice.run(sql, &[]).await? {
//!     while let Some(batch) = rows.try_next().await? {
//!         println!("{} rows", batch.num_rows());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [`Store`]: kalamstore_storage::Store

mod catalog;
mod error;
mod filter;
mod lookup;
mod scan;
mod session;
mod system;
mod table;

pub use catalog::META_SUFFIX;
pub use datafusion;
pub use error::{Result, SqlError};
pub use session::{Principal, SqlOutput, SqlSession};
pub use system::value_text;
