//! Where a table's data files live in its storage's cold store:
//! `[<prefix>/]<ns>/<table>/[<user>/]<file id as 16 hex digits>.parquet`.

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

/// The directory of one scope's files: the table's directory, plus the user id for a USER
/// table's scope.
pub(crate) fn scope_dir(prefix: &str, id: &TableId, scope: &KeyScope) -> String {
    let mut dir = table_dir(prefix, id);
    if let KeyScope::User(u) = scope {
        dir.push('/');
        dir.push_str(u.as_str());
    }
    dir
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
        assert_eq!(scope_dir("p/q", &id, &alice), "p/q/chat/messages/alice");
        assert_eq!(scope_dir("", &id, &KeyScope::Shared), "chat/messages");
        assert_eq!(
            data_file_path("chat/messages", 42),
            "chat/messages/000000000000002a.parquet"
        );
    }
}
