//! Where a table's data files live in its storage's cold store:
//! `[<prefix>/]<ns>/<table>/[_user=<user>/]<file id as 16 hex digits>.parquet`. A USER table's
//! files are in Hive-style `_user=<id>` folders, the partition column of its Delta log (readers
//! such as Polars take partition values from folder names).

use crate::ids::{KeyScope, TableId};

/// The directory of a table in a cold store whose path prefix is `prefix` (empty: the
/// store's root).
pub(crate) fn table_dir(prefix: &str, id: &TableId) -> String {
    let mut dir = String::with_capacity(prefix.len() + 2 * 16);
    if !prefix.is_empty() {
        dir.push_str(prefix);
        dir.push('/');
    }
    dir.push_str(id.namespace.as_str());
    dir.push('/');
    dir.push_str(id.table.as_str());
    dir
}

/// The directory of one scope's files: the table's directory, plus `_user=<id>` for a USER
/// table's scope.
pub(crate) fn scope_dir(prefix: &str, id: &TableId, scope: &KeyScope) -> String {
    let mut dir = table_dir(prefix, id);
    if let KeyScope::User(u) = scope {
        dir.push_str("/_user=");
        dir.push_str(u.as_str());
    }
    dir
}

/// Whether a path of a table's directory belongs to its Delta log (the log, its checkpoints,
/// deletion-vector files): never a data file.
pub(crate) fn is_delta_log_file(path: &str) -> bool {
    path.contains("/_delta_log/")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("deletion_vector_") && n.ends_with(".bin"))
}

/// The path of data file `id` in directory `dir`.
pub(crate) fn data_file_path(dir: &str, id: i64) -> String {
    format!("{dir}/{id:016x}.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;

    #[test]
    fn paths_nest_prefix_table_and_user() {
        let id: TableId = "chat.messages".parse().unwrap();
        let alice = KeyScope::User(UserId::new("alice").unwrap());
        assert_eq!(table_dir("", &id), "chat/messages");
        assert_eq!(
            scope_dir("p/q", &id, &alice),
            "p/q/chat/messages/_user=alice"
        );
        assert_eq!(scope_dir("", &id, &KeyScope::Shared), "chat/messages");
        assert_eq!(
            data_file_path("chat/messages", 42),
            "chat/messages/000000000000002a.parquet"
        );
    }
}
