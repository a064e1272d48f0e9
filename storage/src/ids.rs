//! Typed, validated identifiers: namespaces, tables, users, storages.
//!
//! Every id follows `^[a-z][a-z0-9_]*$`, is at most [`MAX_ID_LEN`] bytes, and a few names are
//! reserved per kind (e.g. the namespace `system`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Longest accepted identifier, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Checks a name against the identifier rules, with no reserved words (column names, say).
pub(crate) fn validate_name(kind: &'static str, value: &str) -> Result<()> {
    validate(kind, value, &[])
}

fn validate(kind: &'static str, value: &str, reserved: &[&str]) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidId {
            kind,
            value: value.chars().take(MAX_ID_LEN + 8).collect(),
            reason,
        })
    };
    let mut bytes = value.bytes();
    match bytes.next() {
        None => return fail("it is empty"),
        Some(b'a'..=b'z') => {}
        Some(_) => return fail("it must start with a lowercase ASCII letter"),
    }
    if value.len() > MAX_ID_LEN {
        return fail("it is longer than 64 bytes");
    }
    if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return fail("only lowercase ASCII letters, digits and `_` are allowed");
    }
    if reserved.contains(&value) {
        return fail("the name is reserved");
    }
    Ok(())
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, reserved = [$($reserved:literal),*]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Names refused for this kind of id.
            pub const RESERVED: &'static [&'static str] = &[$($reserved),*];

            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate($kind, &value, Self::RESERVED)?;
                Ok(Self(value))
            }

            /// Wraps a name that is known valid without checking the reserved list, for the
            /// system's own objects (the `system` namespace, say).
            pub fn system(value: &'static str) -> Self {
                debug_assert!(validate($kind, value, &[]).is_ok(), "bad system id {value}");
                Self(value.to_owned())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

typed_id!(
    /// A namespace: the first part of `namespace.table`.
    NamespaceId, "namespace", reserved = ["system", "information_schema", "sys"]
);
typed_id!(
    /// A table's name inside its namespace.
    TableName, "table name", reserved = []
);
typed_id!(
    /// The user that owns rows of a USER table.
    UserId, "user id", reserved = []
);
typed_id!(
    /// A registered storage: where a table's hot rows and Parquet files live.
    StorageId, "storage id", reserved = ["system"]
);

impl StorageId {
    /// The storage that always exists: the default engine in the data directory.
    pub fn local() -> Self {
        Self::system("local")
    }
}

/// A table's full name: `namespace.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// The namespace.
    pub namespace: NamespaceId,
    /// The table inside it.
    pub table: TableName,
}

impl TableId {
    /// Combines a namespace and a table name.
    pub fn new(namespace: NamespaceId, table: TableName) -> Self {
        Self { namespace, table }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.table)
    }
}

impl FromStr for TableId {
    type Err = Error;

    /// Parses `namespace.table`; an unqualified name is an error that says so.
    fn from_str(s: &str) -> Result<Self> {
        let Some((ns, table)) = s.split_once('.') else {
            return Err(Error::InvalidId {
                kind: "table id",
                value: s.to_owned(),
                reason: "a table must be named as `namespace.table`",
            });
        };
        Ok(Self::new(NamespaceId::new(ns)?, TableName::new(table)?))
    }
}

/// The keyspace of a table that a row belongs to: one per user of a USER table, one shared
/// keyspace for SHARED and STREAM tables. Its stored name ([`as_str`](Self::as_str)) prefixes
/// hot keys and manifest keys and names the user's folder of Parquet files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyScope {
    /// The one keyspace of a SHARED or STREAM table (stored as the empty name).
    Shared,
    /// One user's keyspace of a USER table.
    User(UserId),
}

impl KeyScope {
    /// The user of a USER-table scope.
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Self::User(u) => Some(u),
            Self::Shared => None,
        }
    }

    /// The scope's stored name: empty for the shared scope, else the user id. User ids never
    /// contain 0x00 or `/`, so the name is safe as a key prefix and a path segment.
    pub fn as_str(&self) -> &str {
        match self {
            Self::User(u) => u.as_str(),
            Self::Shared => "",
        }
    }

    /// Parses a stored scope name (see [`as_str`](Self::as_str)).
    pub fn from_stored(name: &str) -> Result<Self> {
        match name {
            "" => Ok(Self::Shared),
            user => UserId::new(user).map(Self::User),
        }
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(u) => write!(f, "user {u}"),
            Self::Shared => f.write_str("the shared scope"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_accepted() {
        assert_eq!(NamespaceId::new("chat").unwrap().as_str(), "chat");
        assert!(UserId::new("user_42").is_ok());
        assert_eq!(
            "chat.messages".parse::<TableId>().unwrap().to_string(),
            "chat.messages"
        );
    }

    #[test]
    fn invalid_ids_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("9lives", "start with"),
            ("Chat", "start with"),
            ("a-b", "only lowercase"),
            ("système", "only lowercase"),
            ("system", "reserved"),
        ] {
            let err = NamespaceId::new(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(
            TableName::new(long)
                .unwrap_err()
                .to_string()
                .contains("longer")
        );
        let err = "messages".parse::<TableId>().unwrap_err().to_string();
        assert!(err.contains("namespace.table"), "{err}");
    }

    #[test]
    fn key_scopes_round_trip_their_stored_names_and_sort_shared_first() {
        let alice = KeyScope::User(UserId::new("alice").unwrap());
        assert_eq!(KeyScope::from_stored("").unwrap(), KeyScope::Shared);
        assert_eq!(KeyScope::from_stored(alice.as_str()).unwrap(), alice);
        assert!(KeyScope::Shared < alice);
        assert!(KeyScope::from_stored("Bad Name").is_err());
    }

    #[test]
    fn reserved_names_depend_on_the_kind() {
        assert!(StorageId::new("system").is_err());
        assert!(TableName::new("system").is_ok());
        assert_eq!(StorageId::local().as_str(), "local");
    }
}
