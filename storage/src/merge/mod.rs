//! Merge-on-read: a scope's flushed files overlaid with its hot rows (a hot upsert replaces the
//! flushed row with its key, a hot tombstone hides it). The write that buffers a key records
//! the flushed row it hides (`overlay`), so a read skips a file's deletion vector and hidden
//! rows alike, with no per-query key join (`file`, `stream`); point reads are in `lookup`.

mod adapt;
mod file;
mod hot;
mod join;
mod lookup;
mod overlay;
mod plan;
mod stream;

use std::ops::Bound;
use std::sync::Arc;

use crate::codec::{KalamValue, encode_key};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::format::KeyBounds;
use crate::ids::UserId;
use crate::schema::{ColumnDefinition, TableDefinition, TableType};
use crate::table::TableHandle;

pub use file::BatchStream;
pub(crate) use file::read_file;
pub(crate) use hot::Scopes;
#[cfg(test)]
pub(crate) use hot::snapshot;
pub(crate) use lookup::{FlushedRow, get, get_flushed_many, get_flushed_versions, get_many};
pub(crate) use overlay::{find_live, upgrade_overlay};
pub(crate) use plan::FilePlan;
pub use stream::{FileAccess, RowEstimate, ScanFile, ScanSnapshot, TableScan, USER_COLUMN};

/// What a scan returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanOptions {
    /// Columns to return, in this order (`None`: every column).
    pub columns: Option<Vec<String>>,
    /// Rows must match this.
    pub filter: Option<Filter>,
    /// Stop after this many rows.
    pub limit: Option<usize>,
    /// Also return `_seq` and `_updated`.
    pub with_system: bool,
    /// Read every user of a USER table (an operator's read): the rows get a `_user` column.
    /// Refused with a user id, or on other kinds of tables.
    pub all_users: bool,
}

impl ScanOptions {
    /// Every column of every row.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only rows matching `filter`.
    pub fn filtered(filter: Filter) -> Self {
        Self {
            filter: Some(filter),
            ..Self::default()
        }
    }
}

/// The schema of what a read of `def` returns with every column: the user columns, then
/// `_seq` and `_updated` when `with_system`, then [`USER_COLUMN`] for an all-users read.
pub fn read_schema(
    def: &TableDefinition,
    with_system: bool,
    all_users: bool,
) -> arrow::datatypes::SchemaRef {
    stream::with_user_column(
        crate::format::output_schema(def.columns(), with_system, false),
        all_users,
    )
}

/// A planned streamed scan of `table` for `user` (see [`ScanOptions::all_users`]).
pub(crate) fn scan_table(
    table: Arc<TableHandle>,
    user: Option<&UserId>,
    options: &ScanOptions,
) -> Result<TableScan> {
    let scopes = if options.all_users {
        if user.is_some() || table.definition().table_type != TableType::User {
            return Err(Error::Scope {
                table: table.id.to_string(),
                reason: "an all-users read is for USER tables, without a user id",
            });
        }
        Scopes::AllUsers
    } else {
        Scopes::One(table.scope(user)?)
    };
    let plan = plan(&table, options)?;
    Ok(TableScan::new(table, plan, scopes))
}

/// The file plan of a scan: projection resolved, filter bound to the current schema, key
/// bounds derived from the filter.
fn plan(table: &TableHandle, options: &ScanOptions) -> Result<FilePlan> {
    let def = table.definition();
    let columns = projected_columns(&def, options.columns.as_deref())?;
    let filter = options
        .filter
        .as_ref()
        .map(|f| f.bind(&def.schema, &def.id.to_string()))
        .transpose()?;
    let keys = key_bounds(&def, options.filter.as_ref());
    Ok(FilePlan {
        def,
        columns,
        with_system: options.with_system,
        with_key: false,
        filter,
        keys,
        limit: options.limit,
        positions: None,
    })
}

/// The encoded-key bounds a filter implies on a single-column primary key.
fn key_bounds(def: &TableDefinition, filter: Option<&Filter>) -> KeyBounds {
    let unbounded = (Bound::Unbounded, Bound::Unbounded);
    let pk: Vec<_> = def.primary_key().collect();
    let (Some(filter), [pk]) = (filter, pk.as_slice()) else {
        return unbounded;
    };
    let encode = |v: KalamValue| {
        v.coerce(pk.data_type)
            .and_then(|v| encode_key(&[v], &[pk.name.as_str()]).ok())
    };
    let (lo, hi) = filter.bounds_of(&pk.name);
    let lo = match lo {
        Bound::Included(v) => encode(v).map_or(Bound::Unbounded, Bound::Included),
        _ => Bound::Unbounded,
    };
    let hi = match hi {
        Bound::Included(v) => encode(v).map_or(Bound::Unbounded, Bound::Included),
        _ => Bound::Unbounded,
    };
    (lo, hi)
}

/// Resolves a projection against the current columns.
pub(crate) fn projected_columns(
    def: &TableDefinition,
    columns: Option<&[String]>,
) -> Result<Vec<ColumnDefinition>> {
    match columns {
        None => Ok(def.columns().to_vec()),
        Some(names) => names
            .iter()
            .map(|n| {
                def.schema
                    .column(n)
                    .cloned()
                    .ok_or_else(|| Error::InvalidQuery {
                        table: def.id.to_string(),
                        reason: format!("no column `{n}`"),
                    })
            })
            .collect(),
    }
}
