//! Every system table's columns, each declared with the value it takes from one row of the
//! model the table lists: a column's name, type and value sit together, so they cannot drift
//! apart, and a table is built column by column from its rows.

use kalamstore_storage::{
    ColumnDefinition, ConsumerRecord, FileEntry, JobRecord, KalamDataType as T, KalamValue as V,
    LiveQuery, ScopeStats, SessionInfo, StorageCacheStats, StorageDefinition, TableDefinition,
    TableId, UserRecord,
};

use super::value_text;

/// One column of a system table listing rows of type `R`.
pub(super) struct Column<R> {
    pub(super) name: &'static str,
    pub(super) data_type: T,
    /// The column's value in a row.
    pub(super) value: fn(&R) -> V,
}

const fn col<R>(name: &'static str, data_type: T, value: fn(&R) -> V) -> Column<R> {
    Column {
        name,
        data_type,
        value,
    }
}

/// A row of `system.namespaces`.
pub(super) struct NamespaceRow {
    pub(super) name: String,
    pub(super) tables: i64,
    pub(super) created_ms: i64,
}

/// A row of `system.columns`: a column of a table.
pub(super) struct ColumnRow {
    pub(super) table: TableId,
    pub(super) column: ColumnDefinition,
}

/// A row of `system.stats`: one scope of a table.
pub(super) struct StatsRow {
    pub(super) table: TableId,
    pub(super) stats: ScopeStats,
}

/// A row of `system.manifest`: one file of a table's scope.
pub(super) struct FileRow {
    pub(super) table: TableId,
    pub(super) user: Option<String>,
    pub(super) file: FileEntry,
}

fn text(s: Option<String>) -> V {
    s.map_or(V::Null, V::Text)
}

fn big(n: u64) -> V {
    V::BigInt(i64::try_from(n).unwrap_or(i64::MAX))
}

fn at(ms: Option<i64>) -> V {
    ms.map_or(V::Null, |m| V::Timestamp(m.saturating_mul(1000)))
}

pub(super) const STORAGES: &[Column<StorageDefinition>] = &[
    col("storage_id", T::Text, |s| V::Text(s.id.to_string())),
    col("engine", T::Text, |s| V::Text(s.hot.kind().into())),
    col("hot", T::Text, |s| V::Text(s.hot.location().into())),
    col("cold", T::Text, |s| V::Text(s.cold_url.clone())),
    col("cache", T::Text, |s| {
        text(
            s.cache
                .as_ref()
                .map(|c| format!("memory {} B, disk {} B", c.memory_bytes, c.disk_bytes)),
        )
    }),
    col("cache_memory_bytes", T::BigInt, |s| {
        s.cache.as_ref().map_or(V::Null, |c| big(c.memory_bytes))
    }),
    col("cache_disk_bytes", T::BigInt, |s| {
        s.cache.as_ref().map_or(V::Null, |c| big(c.disk_bytes))
    }),
    col("cache_dir", T::Text, |s| {
        text(s.cache.as_ref().map(|c| c.disk_path.clone()))
    }),
    col("s3_endpoint", T::Text, |s| text(s.s3.endpoint.clone())),
    col("s3_region", T::Text, |s| text(s.s3.region.clone())),
    col("s3_allow_http", T::Boolean, |s| V::Boolean(s.s3.allow_http)),
    col("created_at", T::Timestamp, |s| at(Some(s.created_at_ms))),
];

pub(super) const NAMESPACES: &[Column<NamespaceRow>] = &[
    col("namespace", T::Text, |n| V::Text(n.name.clone())),
    col("tables", T::BigInt, |n| V::BigInt(n.tables)),
    col("created_at", T::Timestamp, |n| at(Some(n.created_ms))),
];

/// `system.tables`, and `information_schema.tables` with the same columns.
pub(super) const TABLES: &[Column<TableDefinition>] = &[
    col("namespace", T::Text, |d| {
        V::Text(d.id.namespace.to_string())
    }),
    col("table_name", T::Text, |d| V::Text(d.id.table.to_string())),
    col("table_type", T::Text, |d| V::Text(d.table_type.to_string())),
    col("storage_id", T::Text, |d| V::Text(d.storage_id.to_string())),
    col("flush_policy", T::Text, |d| {
        V::Text(d.options.flush_policy.to_string())
    }),
    col("ttl_seconds", T::BigInt, |d| {
        d.options.ttl_seconds.map_or(V::Null, big)
    }),
    col("schema_version", T::BigInt, |d| {
        V::BigInt(i64::from(d.schema.version))
    }),
    col("access_level", T::Text, |d| {
        V::Text(d.options.access_level.to_string())
    }),
    col("comment", T::Text, |d| text(d.options.comment.clone())),
    col("delta", T::Text, |d| V::Text(d.options.delta.to_string())),
    col(
        "columns",
        T::BigInt,
        |d| V::BigInt(d.columns().len() as i64),
    ),
    // Created with its first schema version; altered with its current one.
    col("created_at", T::Timestamp, |d| {
        at(Some(
            d.history
                .first()
                .map_or(d.schema.created_at_ms, |v| v.created_at_ms),
        ))
    }),
    col("altered_at", T::Timestamp, |d| {
        at(Some(d.schema.created_at_ms))
    }),
    col("change_retention", T::Text, |d| {
        V::Text(d.options.change_retention.to_string())
    }),
];

pub(super) const COLUMNS: &[Column<ColumnRow>] = &[
    col("namespace", T::Text, |r| {
        V::Text(r.table.namespace.to_string())
    }),
    col("table_name", T::Text, |r| {
        V::Text(r.table.table.to_string())
    }),
    col("column_name", T::Text, |r| V::Text(r.column.name.clone())),
    col("ordinal", T::BigInt, |r| {
        V::BigInt(i64::from(r.column.ordinal))
    }),
    col("data_type", T::Text, |r| {
        V::Text(r.column.data_type.to_string())
    }),
    col("is_nullable", T::Boolean, |r| V::Boolean(r.column.nullable)),
    col("primary_key", T::Boolean, |r| {
        V::Boolean(r.column.primary_key)
    }),
    col("column_default", T::Text, |r| {
        let c = &r.column;
        text(c.default.as_ref().map(|v| value_text(v, c.data_type)))
    }),
    col("column_id", T::BigInt, |r| {
        V::BigInt(i64::from(r.column.id))
    }),
    col("comment", T::Text, |r| text(r.column.comment.clone())),
];

pub(super) const JOBS: &[Column<JobRecord>] = &[
    col("job_id", T::Text, |j| V::Text(j.id.clone())),
    col("kind", T::Text, |j| V::Text(j.kind.to_string())),
    col("table_name", T::Text, |j| {
        text(j.table.as_ref().map(|t| t.to_string()))
    }),
    col("user_id", T::Text, |j| {
        text(j.user.as_ref().map(|u| u.to_string()))
    }),
    col("status", T::Text, |j| V::Text(j.status.to_string())),
    col("created_at", T::Timestamp, |j| at(Some(j.created_at_ms))),
    col("started_at", T::Timestamp, |j| at(j.started_at_ms)),
    col("ended_at", T::Timestamp, |j| at(j.ended_at_ms)),
    col("rows", T::BigInt, |j| big(j.rows)),
    col("bytes", T::BigInt, |j| big(j.bytes)),
    col("files", T::BigInt, |j| big(j.files)),
    col("error", T::Text, |j| text(j.error.clone())),
    col("summary", T::Text, |j| text(j.summary.clone())),
    col("attempts", T::BigInt, |j| big(u64::from(j.attempts))),
];

pub(super) const STATS: &[Column<StatsRow>] = &[
    col("namespace", T::Text, |r| {
        V::Text(r.table.namespace.to_string())
    }),
    col("table_name", T::Text, |r| {
        V::Text(r.table.table.to_string())
    }),
    col("user_id", T::Text, |r| text(r.stats.user.clone())),
    col("hot_rows", T::BigInt, |r| big(r.stats.hot_rows)),
    col("files", T::BigInt, |r| big(r.stats.files)),
    col("file_rows", T::BigInt, |r| big(r.stats.file_rows)),
    col("deleted_rows", T::BigInt, |r| big(r.stats.deleted_rows)),
    col("bytes", T::BigInt, |r| big(r.stats.bytes)),
    col("deleted_ratio", T::Double, |r| {
        V::Double(r.stats.deleted_ratio())
    }),
];

pub(super) const MANIFEST: &[Column<FileRow>] = &[
    col("namespace", T::Text, |r| {
        V::Text(r.table.namespace.to_string())
    }),
    col("table_name", T::Text, |r| {
        V::Text(r.table.table.to_string())
    }),
    col("user_id", T::Text, |r| text(r.user.clone())),
    col("file_id", T::BigInt, |r| V::BigInt(r.file.meta.id)),
    col("path", T::Text, |r| V::Text(r.file.meta.path.clone())),
    col("rows", T::BigInt, |r| big(r.file.meta.rows)),
    col("deleted_rows", T::BigInt, |r| big(r.file.dv.len())),
    col("bytes", T::BigInt, |r| big(r.file.meta.size)),
    col("min_seq", T::BigInt, |r| V::BigInt(r.file.meta.min_seq)),
    col("max_seq", T::BigInt, |r| V::BigInt(r.file.meta.max_seq)),
    col("schema_version", T::BigInt, |r| {
        V::BigInt(i64::from(r.file.meta.schema_version))
    }),
    col("created_at", T::Timestamp, |r| {
        at(Some(r.file.meta.created_at_ms))
    }),
];

pub(super) const CACHES: &[Column<StorageCacheStats>] = &[
    col("storage_id", T::Text, |c| V::Text(c.storage.to_string())),
    col("tier", T::Text, |c| V::Text(c.tier.to_string())),
    col("hits", T::BigInt, |c| big(c.stats.hits)),
    col("misses", T::BigInt, |c| big(c.stats.misses)),
    col("hit_ratio", T::Double, |c| {
        match c.stats.hits + c.stats.misses {
            0 => V::Null,
            lookups => V::Double(c.stats.hits as f64 / lookups as f64),
        }
    }),
    col("hit_bytes", T::BigInt, |c| big(c.stats.hit_bytes)),
    col("miss_bytes", T::BigInt, |c| big(c.stats.miss_bytes)),
    col("memory_bytes", T::BigInt, |c| big(c.spec.memory_bytes)),
    col("disk_bytes", T::BigInt, |c| big(c.spec.disk_bytes)),
    col("used_bytes", T::BigInt, |c| {
        c.used_bytes.map_or(V::Null, big)
    }),
    col("warm_start", T::Boolean, |c| V::Boolean(c.stats.warm_start)),
];

pub(super) const LIVE_QUERIES: &[Column<LiveQuery>] = &[
    col("live_id", T::Text, |q| V::Text(q.id.clone())),
    col("principal", T::Text, |q| V::Text(q.principal.clone())),
    col("table_name", T::Text, |q| V::Text(q.table.clone())),
    col("scope", T::Text, |q| V::Text(q.scope.clone())),
    col("filter", T::Text, |q| V::Text(q.filter.clone())),
    col("state", T::Text, |q| V::Text(q.state.to_owned())),
    col("cursor", T::BigInt, |q| V::BigInt(q.cursor)),
    col("lag", T::BigInt, |q| V::BigInt(q.lag)),
    col("delivered", T::BigInt, |q| big(q.delivered)),
    // A subscription is a cursor: nothing waits in a queue for it.
    col("queue_depth", T::BigInt, |_| V::BigInt(0)),
    col("started_at", T::Timestamp, |q| at(Some(q.started_at_ms))),
];

pub(super) const CONSUMERS: &[Column<ConsumerRecord>] = &[
    col("name", T::Text, |c| V::Text(c.name.clone())),
    col("table_name", T::Text, |c| V::Text(c.table.to_string())),
    col("scope", T::Text, |c| {
        V::Text(match (&c.user, c.all_users) {
            (_, true) => "*".into(),
            (Some(u), false) => u.to_string(),
            (None, false) => String::new(),
        })
    }),
    col("acked", T::BigInt, |c| V::BigInt(c.acked)),
    col("acked_at", T::Timestamp, |c| at(Some(c.acked_at_ms))),
    col("created_at", T::Timestamp, |c| at(Some(c.created_at_ms))),
];

/// The verifier is a secret: never listed.
pub(super) const USERS: &[Column<UserRecord>] = &[
    col("name", T::Text, |u| V::Text(u.name.clone())),
    col("role", T::Text, |u| V::Text(u.role.as_str().to_owned())),
    col("created_at", T::Timestamp, |u| at(Some(u.created_at_ms))),
    col("updated_at", T::Timestamp, |u| at(Some(u.updated_at_ms))),
];

pub(super) const SESSIONS: &[Column<SessionInfo>] = &[
    col("session_id", T::BigInt, |s| V::BigInt(s.id)),
    col("user_name", T::Text, |s| V::Text(s.user.clone())),
    col("role", T::Text, |s| V::Text(s.role.clone())),
    col("client", T::Text, |s| V::Text(s.client.clone())),
    col("application_name", T::Text, |s| {
        V::Text(s.application.clone())
    }),
    col("connected_at", T::Timestamp, |s| {
        at(Some(s.connected_at_ms))
    }),
    col("statement", T::Text, |s| text(s.statement.clone())),
    col("statement_started_at", T::Timestamp, |s| {
        at(s.statement_started_at_ms)
    }),
];
