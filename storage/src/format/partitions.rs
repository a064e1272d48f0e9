//! A table's three partitions in its storage's hot engine, and the keys of its meta partition.
//!
//! | partition            | key                                   | value                          |
//! |----------------------|---------------------------------------|--------------------------------|
//! | `t.<ns>.<table>.hot` | `[<user> 0x00]` + encoded primary key | row (`codec::Row`); tombstones carry `_deleted` |
//! | `t.<ns>.<table>.meta`| `d`                                   | the table definition           |
//! |                      | `c` + `<user>`                        | [`HotCount`]: buffered hot entries, then tombstones among them, u64 LE each |
//! |                      | `f` + `<user>` 0x00 + file id (i64 BE) | [`FileMeta`](super::FileMeta) |
//! |                      | `v` + `<user>` 0x00 + file id (i64 BE) | [`DeletionVector`](super::DeletionVector) |
//! |                      | `h` + `<user>` 0x00 + primary key      | [`Hidden`]: the flushed row the key's hot entry hides, file id (i64 BE) and position (u64 BE) |
//! |                      | `o`                                   | empty: `h` entries are kept (the table's overlay is resolved at write time) |
//! |                      | `P`                                   | empty: the Delta log is behind |
//! |                      | `l`                                   | the change log's floor (i64 BE): entries below it may be trimmed |
//! | `t.<ns>.<table>.log` | first `_seq` of a write batch (i64 BE) | the batch's changes (`changelog`): op, primary key, row images (new rows of inserts and updates by reference) |
//!
//! `<user>` is the scope's stored name ([`KeyScope::as_str`]): empty for SHARED and STREAM
//! tables. User ids never contain 0x00, so the scope prefix is unambiguous.
//!
//! An `h` entry exists exactly while a key's live flushed row (not in its file's deletion
//! vector) has a newer hot entry in the same scope: the write that first buffers the key
//! records it in the same batch, a flush folds it into the deletion vector, a compaction
//! points it at the row's new position. Reads then take a file's dead rows as its vector
//! plus its hidden positions, without looking at the hot keys.

use bytes::Bytes;

use crate::backend::Partition;
use crate::error::{Error, Result};
use crate::ids::{KeyScope, TableId};
use crate::schema::TableType;

/// Key of the table definition in the meta partition.
pub(crate) const META_DEFINITION: &[u8] = b"d";
/// Key of the marker that the table's Delta log is behind its manifest (see `delta`).
pub(crate) const META_DELTA_PENDING: &[u8] = b"P";
/// Tag of a scope's buffered-entry counter.
pub(crate) const META_COUNTER: u8 = b'c';
/// Tag of a manifest entry.
pub(crate) const META_FILE: u8 = b'f';
/// Tag of a deletion vector.
pub(crate) const META_DV: u8 = b'v';
/// Tag of a hidden flushed row.
pub(crate) const META_HIDDEN: u8 = b'h';
/// Key of the marker that the table keeps `h` entries.
pub(crate) const META_OVERLAY: &[u8] = b"o";
/// Key of the change log's floor: the log holds every change at or above it.
pub(crate) const META_LOG_FLOOR: &[u8] = b"l";

fn table_partition(id: &TableId, suffix: &str) -> Partition {
    // Invariant: namespace and table names are `[a-z][a-z0-9_]*` of at most 64 bytes each,
    // so the name is at most 136 bytes of partition-safe characters.
    Partition::new(format!("t.{}.{}.{suffix}", id.namespace, id.table))
        .expect("table ids make valid partition names")
}

/// The hot-row partition of a table.
pub fn hot_partition(id: &TableId) -> Partition {
    table_partition(id, "hot")
}

/// The meta partition of a table (definition, counters, manifest, deletion vectors).
pub fn meta_partition(id: &TableId) -> Partition {
    table_partition(id, "meta")
}

/// The change-log partition of a table (one entry per changed key, by `_seq`).
pub fn log_partition(id: &TableId) -> Partition {
    table_partition(id, "log")
}

/// The key prefix of a scope in the hot partition: empty for the shared scope, else the user
/// id and 0x00.
pub(crate) fn scope_prefix(scope: &KeyScope) -> Vec<u8> {
    match scope {
        KeyScope::Shared => Vec::new(),
        KeyScope::User(u) => {
            let mut p = Vec::with_capacity(u.as_str().len() + 1);
            p.extend_from_slice(u.as_str().as_bytes());
            p.push(0);
            p
        }
    }
}

/// The stored scope name and the encoded primary key of a hot key of a table of kind `kind`.
pub(crate) fn split_hot_key(kind: TableType, key: &[u8]) -> (&[u8], &[u8]) {
    if kind == TableType::User {
        match key.iter().position(|b| *b == 0) {
            Some(zero) => (&key[..zero], &key[zero + 1..]),
            None => (key, &[]),
        }
    } else {
        (&[], key)
    }
}

/// The key of a scope's buffered-entry counter.
pub(crate) fn counter_key(scope: &KeyScope) -> Bytes {
    let mut k = vec![META_COUNTER];
    k.extend_from_slice(scope.as_str().as_bytes());
    k.into()
}

/// A scope's buffered hot entries, and how many of them are tombstones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotCount {
    /// Hot entries: rows and tombstones.
    pub entries: u64,
    /// Tombstones among them.
    pub tombstones: u64,
}

impl HotCount {
    /// Live hot rows (entries that are not tombstones; a STREAM row past its TTL still counts).
    pub fn rows(&self) -> u64 {
        self.entries.saturating_sub(self.tombstones)
    }

    /// The stored value: entries, then tombstones, u64 LE each.
    pub(crate) fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.entries.to_le_bytes());
        v.extend_from_slice(&self.tombstones.to_le_bytes());
        v.into()
    }

    /// Decodes a stored value into entries and tombstones; tombstones are `None` in the
    /// earlier 8-byte form (entries only), where they must be counted. A value of any other
    /// length is `Err(its length)`.
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<(u64, Option<u64>), usize> {
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        match bytes.len() {
            8 => Ok((word(0), None)),
            16 => Ok((word(0), Some(word(8)))),
            n => Err(n),
        }
    }
}

fn file_key(tag: u8, scope: &KeyScope, id: i64) -> Bytes {
    let name = scope.as_str().as_bytes();
    let mut k = Vec::with_capacity(name.len() + 10);
    k.push(tag);
    k.extend_from_slice(name);
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k.into()
}

/// The key of a file's manifest entry.
pub(crate) fn manifest_key(scope: &KeyScope, id: i64) -> Bytes {
    file_key(META_FILE, scope, id)
}

/// The key of a file's deletion vector.
pub(crate) fn dv_key(scope: &KeyScope, id: i64) -> Bytes {
    file_key(META_DV, scope, id)
}

/// The prefix of a scope's `h` entries.
pub(crate) fn hidden_prefix(scope: &KeyScope) -> Vec<u8> {
    let name = scope.as_str().as_bytes();
    let mut k = Vec::with_capacity(name.len() + 2);
    k.push(META_HIDDEN);
    k.extend_from_slice(name);
    k.push(0);
    k
}

/// The key of the `h` entry of primary key `pk` in `scope`.
pub(crate) fn hidden_key(scope: &KeyScope, pk: &[u8]) -> Bytes {
    let mut k = hidden_prefix(scope);
    k.extend_from_slice(pk);
    k.into()
}

/// Where a hidden flushed row is: its file and its position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hidden {
    /// The file's id.
    pub file: i64,
    /// The row's position in the file.
    pub position: u64,
}

impl Hidden {
    /// The stored value: file id (i64 BE), position (u64 BE).
    pub(crate) fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.file.to_be_bytes());
        v.extend_from_slice(&self.position.to_be_bytes());
        v.into()
    }

    /// Decodes a stored value; `None` when it is not 16 bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let file: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let position: [u8; 8] = bytes.get(8..)?.try_into().ok()?;
        Some(Self {
            file: i64::from_be_bytes(file),
            position: u64::from_be_bytes(position),
        })
    }
}

/// One decoded key of a meta partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetaKey {
    /// The table definition.
    Definition,
    /// A scope's buffered-entry counter.
    Counter(KeyScope),
    /// A manifest entry.
    File(KeyScope, i64),
    /// A deletion vector.
    Dv(KeyScope, i64),
    /// The hidden flushed row of a primary key (the key after the scope).
    Hidden(KeyScope, Vec<u8>),
    /// The marker that `h` entries are kept.
    Overlay,
    /// A key this version does not write (kept as it is).
    Other,
}

impl MetaKey {
    /// Decodes a meta-partition key of table `table`; a known tag with a malformed body is
    /// [`Error::Corrupt`].
    pub(crate) fn decode(key: &[u8], table: &TableId) -> Result<Self> {
        let corrupt = |reason: &str| Error::Corrupt {
            what: format!("meta partition of table {table}"),
            reason: format!("{reason}: key {key:02x?}"),
        };
        let scope = |name: &[u8]| {
            std::str::from_utf8(name)
                .ok()
                .and_then(|n| KeyScope::from_stored(n).ok())
                .ok_or_else(|| corrupt("bad scope name"))
        };
        let file = |body: &[u8]| -> Result<(KeyScope, i64)> {
            let at = body
                .len()
                .checked_sub(9)
                .filter(|at| body[*at] == 0)
                .ok_or_else(|| corrupt("bad file key"))?;
            let mut id = [0u8; 8];
            id.copy_from_slice(&body[at + 1..]);
            Ok((scope(&body[..at])?, i64::from_be_bytes(id)))
        };
        Ok(match key.split_first() {
            _ if key == META_DEFINITION => Self::Definition,
            _ if key == META_OVERLAY => Self::Overlay,
            Some((&META_COUNTER, body)) => Self::Counter(scope(body)?),
            Some((&META_FILE, body)) => {
                let (s, id) = file(body)?;
                Self::File(s, id)
            }
            Some((&META_DV, body)) => {
                let (s, id) = file(body)?;
                Self::Dv(s, id)
            }
            Some((&META_HIDDEN, body)) => {
                let zero = body
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or_else(|| corrupt("bad hidden-row key"))?;
                Self::Hidden(scope(&body[..zero])?, body[zero + 1..].to_vec())
            }
            _ => Self::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;

    fn table() -> TableId {
        "app.t".parse().unwrap()
    }

    #[test]
    fn file_keys_decode_back_even_when_the_id_holds_zero_bytes() {
        let alice = KeyScope::User(UserId::new("alice").unwrap());
        for (scope, id) in [
            (KeyScope::Shared, 0x0100_0000_0000_0000i64),
            (alice.clone(), 0),
            (alice, i64::MAX),
        ] {
            let key = manifest_key(&scope, id);
            assert_eq!(
                MetaKey::decode(&key, &table()).unwrap(),
                MetaKey::File(scope.clone(), id)
            );
            let key = dv_key(&scope, id);
            assert_eq!(
                MetaKey::decode(&key, &table()).unwrap(),
                MetaKey::Dv(scope, id)
            );
        }
        assert!(MetaKey::decode(b"f", &table()).is_err());
    }

    #[test]
    fn hidden_keys_decode_back_with_keys_that_hold_zero_bytes() {
        let alice = KeyScope::User(UserId::new("alice").unwrap());
        for scope in [KeyScope::Shared, alice] {
            let key = hidden_key(&scope, b"a\0b");
            assert!(key.starts_with(&hidden_prefix(&scope)));
            assert_eq!(
                MetaKey::decode(&key, &table()).unwrap(),
                MetaKey::Hidden(scope, b"a\0b".to_vec())
            );
        }
        let at = Hidden {
            file: -3,
            position: 1 << 40,
        };
        assert_eq!(Hidden::decode(&at.encode()), Some(at));
        assert_eq!(Hidden::decode(&[1, 2, 3]), None);
        assert!(MetaKey::decode(b"h", &table()).is_err());
    }

    #[test]
    fn hot_counts_decode_in_both_forms() {
        let count = HotCount {
            entries: 7,
            tombstones: 2,
        };
        assert_eq!(HotCount::decode(&count.encode()), Ok((7, Some(2))));
        assert_eq!(HotCount::decode(&7u64.to_le_bytes()), Ok((7, None)));
        assert_eq!(HotCount::decode(&[0; 3]), Err(3));
        assert_eq!(count.rows(), 5);
    }

    #[test]
    fn counter_and_definition_keys_decode() {
        let bob = KeyScope::User(UserId::new("bob").unwrap());
        assert_eq!(
            MetaKey::decode(&counter_key(&bob), &table()).unwrap(),
            MetaKey::Counter(bob)
        );
        assert_eq!(
            MetaKey::decode(META_DEFINITION, &table()).unwrap(),
            MetaKey::Definition
        );
        assert_eq!(MetaKey::decode(b"zz", &table()).unwrap(), MetaKey::Other);
    }

    #[test]
    fn hot_keys_split_into_scope_and_primary_key() {
        let alice = KeyScope::User(UserId::new("alice").unwrap());
        let mut key = scope_prefix(&alice);
        key.extend_from_slice(b"pk");
        assert_eq!(
            split_hot_key(TableType::User, &key),
            (&b"alice"[..], &b"pk"[..])
        );
        assert_eq!(
            split_hot_key(TableType::Shared, b"pk"),
            (&b""[..], &b"pk"[..])
        );
    }
}
