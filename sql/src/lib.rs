//! kalamstore tables through Apache DataFusion: every table of a [`Store`] as a
//! `TableProvider` (DataFusion's own Parquet scan over the files' live rows unioned with the
//! hot rows, key lookups for queries that pin the primary key, exact statistics, `INSERT`), `system.*` and `information_schema.*` built from the
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

mod access;
mod assign;
mod catalog;
mod changes;
mod error;
mod filter;
mod insert_row;
mod leaf;
mod lookup;
mod pg_catalog;
mod point;
mod principal;
mod scan;
mod session;
mod statement;
mod system;
mod table;
mod text_rows;
mod update_row;
mod views;

pub use catalog::META_SUFFIX;
pub use changes::{
    DEFAULT_CHANGES_LIMIT, SubscribeRequest, changes_batch, changes_schema, subscription_batches,
};
pub use datafusion;
pub use error::{Result, SqlError};
pub use principal::Principal;
pub use session::{SqlDescription, SqlOutput, SqlSession};
pub use statement::SqlStatement;
pub use system::value_text;
pub use text_rows::TextRow;
