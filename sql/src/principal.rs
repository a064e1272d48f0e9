//! Whose rows a session reads and writes: the principal every table provider and system table
//! of a session is scoped to.

use kalamstore_storage::{TableDefinition, TableType, UserId};

/// Whose rows a session reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nobody: SHARED and STREAM tables; USER tables refuse.
    Anonymous,
    /// One user: their rows of USER tables, and SHARED and STREAM tables.
    User(UserId),
    /// An operator reading every user's rows of USER tables, with a `_user` column. USER
    /// tables refuse writes (a write belongs to one user).
    AllUsers,
}

impl Principal {
    /// The user id reads and writes of `def` are scoped to: the session's user for a USER
    /// table, nobody for the others.
    pub(crate) fn user_for(&self, def: &TableDefinition) -> Option<&UserId> {
        match (self, def.table_type) {
            (Self::User(u), TableType::User) => Some(u),
            _ => None,
        }
    }

    /// Whether reads of `def` cover every user (an operator on a USER table).
    pub fn reads_all_users(&self, def: &TableDefinition) -> bool {
        *self == Self::AllUsers && def.table_type == TableType::User
    }
}
