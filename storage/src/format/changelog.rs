//! The change log's entries: one per changed key, keyed by the write's `_seq` (i64 BE) in the
//! table's `log` partition, written in the same batch as the change.
//!
//! Value: `[version u8 = 1][op u8][hot key len u32 LE][hot key][row len u32 LE][row][old row]`.
//! The hot key is the scope prefix and the encoded primary key (as in the hot partition);
//! `row` is a [`Row`]: the new image of an insert or update, the old image of a delete (with
//! `_deleted` set); `old row` (updates only, else empty) is the image the update replaced.

use bytes::Bytes;

use crate::codec::{KalamValue, Row};
use crate::error::{Error, Result};
use crate::ids::UserId;

const ENTRY_VERSION: u8 = 1;

/// What a change did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    /// The key had no live row before.
    Insert,
    /// The key's live row was replaced or changed.
    Update,
    /// The key's live row was deleted.
    Delete,
}

impl ChangeOp {
    /// `insert`, `update` or `delete` (the `_op` column).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Self::Insert => 0,
            Self::Update => 1,
            Self::Delete => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Self::Insert),
            1 => Some(Self::Update),
            2 => Some(Self::Delete),
            _ => None,
        }
    }
}

impl std::fmt::Display for ChangeOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One committed change of one key, in the table's current schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The write's `_seq`: changes of a table are ordered by it.
    pub seq: i64,
    /// What happened to the key.
    pub op: ChangeOp,
    /// The user whose row changed (USER tables), else `None`.
    pub user: Option<UserId>,
    /// The row after an insert or update; the row it removed for a delete (every column of it
    /// when the delete knew it, which the write path always does).
    pub values: Vec<KalamValue>,
    /// The row an update replaced; `None` for inserts and deletes.
    pub old: Option<Vec<KalamValue>>,
    /// When the change was written, ns since the epoch (`_updated`).
    pub updated: i64,
}

/// The log key of the change written with `seq`.
pub(crate) fn log_key(seq: i64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The `_seq` of a log key.
pub(crate) fn seq_of_log_key(key: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| Error::Corrupt {
        what: "change log key".into(),
        reason: format!("{} bytes, expected 8", key.len()),
    })?;
    Ok(i64::from_be_bytes(bytes))
}

/// Appends a log value to `out`. `old` is the encoded image an update replaced.
pub(crate) fn encode_entry(
    op: ChangeOp,
    hot_key: &[u8],
    row: &[u8],
    old: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    out.push(ENTRY_VERSION);
    out.push(op.tag());
    // Invariant: hot keys and rows are bounded by MAX_VALUE_LEN per column and the column
    // count, far below 4 GiB.
    out.extend_from_slice(&(hot_key.len() as u32).to_le_bytes());
    out.extend_from_slice(hot_key);
    out.extend_from_slice(&(row.len() as u32).to_le_bytes());
    out.extend_from_slice(row);
    if let Some(old) = old {
        out.extend_from_slice(old);
    }
}

/// A log value, decoded down to its rows.
#[derive(Debug)]
pub(crate) struct LogEntry {
    pub(crate) op: ChangeOp,
    pub(crate) hot_key: Bytes,
    pub(crate) row: Row,
    pub(crate) old: Option<Row>,
}

/// The op and hot key of a log value, without decoding its rows (scope filtering).
pub(crate) fn entry_head(value: &[u8]) -> Result<(ChangeOp, &[u8])> {
    let corrupt = |reason: &str| Error::Corrupt {
        what: "change log entry".into(),
        reason: reason.to_owned(),
    };
    if value.first() != Some(&ENTRY_VERSION) {
        return Err(corrupt("unknown entry version"));
    }
    let op = value
        .get(1)
        .copied()
        .and_then(ChangeOp::from_tag)
        .ok_or_else(|| corrupt("unknown op"))?;
    let len = read_u32(value, 2).ok_or_else(|| corrupt("truncated key length"))?;
    let key = value
        .get(6..6 + len)
        .ok_or_else(|| corrupt("truncated key"))?;
    Ok((op, key))
}

/// Decodes a log value.
pub(crate) fn decode_entry(value: &Bytes) -> Result<LogEntry> {
    let corrupt = |reason: &str| Error::Corrupt {
        what: "change log entry".into(),
        reason: reason.to_owned(),
    };
    let (op, key) = entry_head(value)?;
    let key_end = 6 + key.len();
    let row_len = read_u32(value, key_end).ok_or_else(|| corrupt("truncated row length"))?;
    let row_start = key_end + 4;
    let row_bytes = value
        .get(row_start..row_start + row_len)
        .ok_or_else(|| corrupt("truncated row"))?;
    let row = Row::decode(row_bytes).map_err(|e| Error::decode("change log row", e))?;
    let rest = &value[row_start + row_len..];
    let old = if rest.is_empty() {
        None
    } else {
        Some(Row::decode(rest).map_err(|e| Error::decode("change log old row", e))?)
    };
    Ok(LogEntry {
        op,
        hot_key: value.slice(6..key_end),
        row,
        old,
    })
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::SystemColumns;

    fn row(v: i64, deleted: bool) -> Row {
        Row {
            schema_version: 1,
            values: vec![KalamValue::BigInt(v), KalamValue::Text("x".into())],
            system: SystemColumns {
                seq: 7,
                updated: 9,
                deleted,
            },
        }
    }

    #[test]
    fn entries_decode_back_with_and_without_an_old_row() {
        for (op, old) in [
            (ChangeOp::Insert, None),
            (ChangeOp::Update, Some(row(1, false))),
            (ChangeOp::Delete, None),
        ] {
            let new = row(2, op == ChangeOp::Delete);
            let (new_bytes, old_bytes) = (new.encode(), old.as_ref().map(Row::encode));
            let mut out = Vec::new();
            encode_entry(op, b"alice\0k", &new_bytes, old_bytes.as_deref(), &mut out);
            let entry = decode_entry(&Bytes::from(out)).unwrap();
            assert_eq!(entry.op, op);
            assert_eq!(&entry.hot_key[..], b"alice\0k");
            assert_eq!(entry.row, new);
            assert_eq!(entry.old, old);
        }
    }

    #[test]
    fn truncated_entries_are_corrupt_not_a_panic() {
        let mut out = Vec::new();
        encode_entry(
            ChangeOp::Insert,
            b"k",
            &row(1, false).encode(),
            None,
            &mut out,
        );
        for cut in 0..out.len() {
            assert!(decode_entry(&Bytes::copy_from_slice(&out[..cut])).is_err());
        }
        assert_eq!(seq_of_log_key(&log_key(42)).unwrap(), 42);
        assert!(seq_of_log_key(b"short").is_err());
    }
}
