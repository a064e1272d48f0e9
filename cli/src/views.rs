//! `SHOW` and `DESCRIBE`: queries of the `system` tables, run through SQL like any query.

use crate::error::{CliError, invalid};
use kalamstore::TableId;

use crate::parse::Command;

/// Quotes a string as a SQL literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The query a `SHOW` or `DESCRIBE` statement stands for.
pub(crate) fn view_query(command: &Command) -> Result<String, CliError> {
    let of_table = |id: &TableId| -> Result<String, CliError> {
        Ok(format!(
            "namespace = {} AND table_name = {}",
            literal(id.namespace.as_str()),
            literal(id.table.as_str())
        ))
    };
    Ok(match command {
        Command::ShowStorages => {
            "SELECT storage_id, engine, hot, cold, cache FROM system.storages \
                                  ORDER BY storage_id"
                .into()
        }
        Command::ShowConsumers => "SELECT * FROM system.consumers ORDER BY name".into(),
        Command::ShowUsers => "SELECT * FROM system.users ORDER BY name".into(),
        Command::ShowLiveQueries => "SELECT * FROM system.live_queries ORDER BY started_at".into(),
        Command::ShowNamespaces => {
            "SELECT namespace FROM system.namespaces ORDER BY namespace".into()
        }
        Command::ShowTables(ns) => format!(
            "SELECT namespace, table_name, table_type, storage_id, flush_policy, ttl_seconds, \
             schema_version FROM system.tables {} ORDER BY namespace, table_name",
            ns.as_deref()
                .map(|n| format!("WHERE namespace = {}", literal(n)))
                .unwrap_or_default()
        ),
        Command::Describe(table) => format!(
            "SELECT namespace, table_name, column_name, ordinal, data_type, is_nullable, \
             primary_key, column_default, column_id, comment FROM system.columns WHERE {} \
             ORDER BY ordinal",
            of_table(table)?
        ),
        Command::ShowManifest(table) => format!(
            "SELECT user_id AS user, path AS file, rows, deleted_rows, bytes, min_seq, max_seq, \
             schema_version FROM system.manifest WHERE {} ORDER BY user_id, file_id",
            of_table(table)?
        ),
        Command::ShowStats(table) => format!(
            "SELECT user_id AS user, hot_rows, files, file_rows, deleted_rows, deleted_ratio, \
             bytes FROM system.stats WHERE {} ORDER BY user_id",
            of_table(table)?
        ),
        Command::ShowCacheStats => "SELECT storage_id, tier, hits, misses, hit_ratio, hit_bytes, \
             miss_bytes, warm_start, memory_bytes, used_bytes FROM system.caches ORDER BY storage_id, tier"
            .into(),
        other => return Err(invalid(format!("not a view statement: {other:?}"))),
    })
}
