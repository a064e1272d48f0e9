//! The change log's entries: a committed write batch's changes in entries of about
//! [`ENTRY_BYTES`] each, keyed by the `_seq` of their first change (i64 BE) in the table's `log`
//! partition, written in the same batch as the changes (entries per batch rather than per key:
//! a 1000-row insert adds one key to the engine; capped so a million-row statement does not
//! make one value that every read of the log's start must decode whole).
//!
//! Value: `[version u8 = 3][count u32 LE][scope len u32 LE][scope]`, then per changed key, in
//! `_seq` order: `[seq i64 BE][op u8][key len u32 LE][key][row len u32 LE][row][old len u32
//! LE][old]`. A write batch has one scope: its stored name (`KeyScope::as_str`, empty for
//! SHARED and STREAM tables); `key` is the row's encoded primary key. `row` is a [`Row`]: the
//! new image of an insert or update, the old image of a delete (with `_deleted` set), key
//! columns included; `old` (updates only, else empty) is the image the update replaced.
//!
//! Each image is stored once. An insert's or update's new image is the table's row of that
//! key until a later change replaces it, and that change logs it (as an update's `old`, a
//! delete's `row`): so such a change may name its row by reference (op with
//! [`BY_REFERENCE`] set, `row` = its `_updated` as i64 LE) and a reader takes the image from
//! the next change of the key, or else from the table (hot or flushed, same `_seq`). Tables
//! whose rows vanish without a change (STREAM tables' TTL) log every image.
//!
//! Version 2 (before references) has no key and no reference; it is still read.

use crate::codec::{KalamValue, Row};
use crate::error::{Error, Result};
use crate::ids::UserId;

const ENTRY_VERSION: u8 = 3;
/// The entries written before references (no key per change, every image stored).
const ENTRY_VERSION_2: u8 = 2;

/// Set in a change's op byte: its new image is the table's row (see the module doc).
const BY_REFERENCE: u8 = 0x80;

/// Bytes after which a log entry is closed and the batch's next change starts another one.
pub(crate) const ENTRY_BYTES: usize = 1 << 20;

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

/// A row image for [`EntryWriter::push`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Image<'a> {
    /// Already encoded.
    Encoded(&'a [u8]),
    /// Encoded into the entry.
    Row(&'a Row),
    /// The table's row of the change's key and `_seq`, written at `updated` (ns): not stored.
    Reference { updated: i64 },
}

/// Builds the log entries of one write batch.
pub(crate) struct EntryWriter {
    scope: Vec<u8>,
    buf: Vec<u8>,
    count: u32,
    first: Option<i64>,
    max_bytes: usize,
    done: Vec<(i64, Vec<u8>)>,
}

impl EntryWriter {
    /// No entry yet, for the scope stored as `scope`; the batch's changes take about `bytes`.
    pub(crate) fn new(scope: &str, bytes: usize) -> Self {
        Self::with_entry_bytes(scope, bytes, ENTRY_BYTES)
    }

    fn with_entry_bytes(scope: &str, bytes: usize, max_bytes: usize) -> Self {
        let mut writer = Self {
            scope: scope.as_bytes().to_vec(),
            buf: Vec::new(),
            count: 0,
            first: None,
            max_bytes,
            done: Vec::new(),
        };
        writer.start(bytes.min(max_bytes + max_bytes / 8));
        writer
    }

    /// Starts an empty entry with room for `bytes` of changes.
    fn start(&mut self, bytes: usize) {
        let mut buf = Vec::with_capacity(9 + self.scope.len() + bytes);
        buf.push(ENTRY_VERSION);
        buf.extend_from_slice(&0u32.to_le_bytes());
        // Invariant: a scope's name is a user id of at most 64 bytes.
        buf.extend_from_slice(&(self.scope.len() as u32).to_le_bytes());
        buf.extend_from_slice(&self.scope);
        self.buf = buf;
        self.count = 0;
        self.first = None;
    }

    /// Closes the current entry (if it has a change) into `done`.
    fn seal(&mut self, next_bytes: usize) {
        let Some(first) = self.first else {
            return;
        };
        self.buf[1..5].copy_from_slice(&self.count.to_le_bytes());
        let full = std::mem::take(&mut self.buf);
        self.done.push((first, full));
        self.start(next_bytes);
    }

    /// Appends one change of the row whose encoded primary key is `key`; changes come in
    /// `_seq` order. `row` is the change's image: given encoded (an insert's or update's hot
    /// row, already encoded for the hot partition), as a row encoded straight into the entry,
    /// or by reference; `old` is the row an update replaced.
    pub(crate) fn push(
        &mut self,
        seq: i64,
        op: ChangeOp,
        key: &[u8],
        row: Image<'_>,
        old: Option<&Row>,
    ) {
        if self.buf.len() >= self.max_bytes {
            self.seal(self.max_bytes + self.max_bytes / 8);
        }
        self.first.get_or_insert(seq);
        self.count += 1;
        let out = &mut self.buf;
        out.extend_from_slice(&seq.to_be_bytes());
        let by_reference = matches!(row, Image::Reference { .. });
        out.push(op.tag() | if by_reference { BY_REFERENCE } else { 0 });
        put_part(out, |out| out.extend_from_slice(key));
        put_part(out, |out| match row {
            Image::Encoded(bytes) => out.extend_from_slice(bytes),
            Image::Row(row) => row.encode_into(out),
            Image::Reference { updated } => out.extend_from_slice(&updated.to_le_bytes()),
        });
        put_part(out, |out| {
            if let Some(old) = old {
                old.encode_into(out);
            }
        });
    }

    /// The entries closed so far (full ones), in `_seq` order; later ones follow them.
    pub(crate) fn take_closed(&mut self) -> Vec<(i64, Vec<u8>)> {
        std::mem::take(&mut self.done)
    }

    /// The entries' key seqs and values, in `_seq` order; none when no change was pushed.
    pub(crate) fn finish(mut self) -> Vec<(i64, Vec<u8>)> {
        self.seal(0);
        self.done
    }
}

/// Appends `[len u32 LE]` and what `write` appends.
fn put_part(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    // Invariant: rows are bounded by MAX_VALUE_LEN per column and the column count, and keys
    // by the key limit: far below 4 GiB.
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// A log entry, its rows not decoded yet.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry<'a> {
    /// The stored name of the batch's scope.
    pub(crate) scope: &'a [u8],
    /// Its changes, in `_seq` order.
    pub(crate) changes: Vec<RawChange<'a>>,
}

/// One change of a log entry, its rows not decoded yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawChange<'a> {
    pub(crate) seq: i64,
    pub(crate) op: ChangeOp,
    /// The row's encoded primary key (empty in version 2 entries).
    pub(crate) key: &'a [u8],
    row: RawImage<'a>,
    old: &'a [u8],
}

/// A change's stored image.
#[derive(Debug, Clone, Copy)]
enum RawImage<'a> {
    Row(&'a [u8]),
    Reference { updated: i64 },
}

impl RawChange<'_> {
    /// The change with its rows decoded.
    pub(crate) fn decode(&self) -> Result<LogEntry> {
        let row = match self.row {
            RawImage::Row(bytes) => {
                LogImage::Row(Row::decode(bytes).map_err(|e| Error::decode("change log row", e))?)
            }
            RawImage::Reference { updated } => LogImage::Reference { updated },
        };
        let old = if self.old.is_empty() {
            None
        } else {
            Some(Row::decode(self.old).map_err(|e| Error::decode("change log old row", e))?)
        };
        Ok(LogEntry {
            op: self.op,
            row,
            old,
        })
    }
}

/// A log value, split into its changes.
pub(crate) fn entry_changes(value: &[u8]) -> Result<RawEntry<'_>> {
    let corrupt = |reason: &str| Error::Corrupt {
        what: "change log entry".into(),
        reason: reason.to_owned(),
    };
    let version = match value.first() {
        Some(&v) if v == ENTRY_VERSION || v == ENTRY_VERSION_2 => v,
        _ => return Err(corrupt("unknown entry version")),
    };
    let count = read_u32(value, 1).ok_or_else(|| corrupt("truncated header"))?;
    let scope_len = read_u32(value, 5).ok_or_else(|| corrupt("truncated header"))?;
    let scope = value
        .get(9..9 + scope_len)
        .ok_or_else(|| corrupt("truncated scope"))?;
    let mut at = 9 + scope_len;
    let mut changes = Vec::with_capacity(count.min(value.len() / 17));
    let part = |at: &mut usize| {
        let len = read_u32(value, *at).ok_or_else(|| corrupt("truncated length"))?;
        let bytes = value
            .get(*at + 4..*at + 4 + len)
            .ok_or_else(|| corrupt("truncated change"))?;
        *at += 4 + len;
        Ok::<_, Error>(bytes)
    };
    for _ in 0..count {
        let seq = value
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| corrupt("truncated seq"))?;
        let tag = value
            .get(at + 8)
            .copied()
            .ok_or_else(|| corrupt("truncated op"))?;
        let by_reference = version == ENTRY_VERSION && tag & BY_REFERENCE != 0;
        let op = ChangeOp::from_tag(tag & !BY_REFERENCE)
            .filter(|_| version == ENTRY_VERSION || tag & BY_REFERENCE == 0)
            .ok_or_else(|| corrupt("unknown op"))?;
        at += 9;
        let key = if version == ENTRY_VERSION {
            part(&mut at)?
        } else {
            &value[..0]
        };
        let row = part(&mut at)?;
        let row = if by_reference {
            let updated =
                <[u8; 8]>::try_from(row).map_err(|_| corrupt("a reference is not 8 bytes"))?;
            RawImage::Reference {
                updated: i64::from_le_bytes(updated),
            }
        } else {
            RawImage::Row(row)
        };
        let old = part(&mut at)?;
        changes.push(RawChange {
            seq,
            op,
            key,
            row,
            old,
        });
    }
    if at != value.len() {
        return Err(corrupt("bytes after its last change"));
    }
    Ok(RawEntry { scope, changes })
}

/// The `_seq` of an entry's last change.
pub(crate) fn last_seq(value: &[u8]) -> Result<i64> {
    entry_changes(value)?
        .changes
        .last()
        .map(|c| c.seq)
        .ok_or_else(|| Error::Corrupt {
            what: "change log entry".into(),
            reason: "no change in it".into(),
        })
}

/// A change of a log entry, decoded down to its rows.
#[derive(Debug)]
pub(crate) struct LogEntry {
    pub(crate) op: ChangeOp,
    pub(crate) row: LogImage,
    pub(crate) old: Option<Row>,
}

/// A change's image as the log holds it.
#[derive(Debug, PartialEq)]
pub(crate) enum LogImage {
    /// Stored in the entry.
    Row(Row),
    /// The table's row of the change's key and `_seq` (or the next change's old image),
    /// written at `updated`.
    Reference { updated: i64 },
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
    fn an_entry_decodes_back_to_its_changes() {
        let changes = [
            (10, ChangeOp::Insert, None),
            (11, ChangeOp::Update, Some(row(1, false))),
            (12, ChangeOp::Delete, None),
            (13, ChangeOp::Insert, None),
        ];
        let mut entry = EntryWriter::new("alice", 0);
        for (seq, op, old) in &changes {
            let new = row(*seq, *op == ChangeOp::Delete);
            let key = seq.to_be_bytes();
            match seq % 3 {
                0 => entry.push(*seq, *op, &key, Image::Row(&new), old.as_ref()),
                1 => entry.push(*seq, *op, &key, Image::Encoded(&new.encode()), old.as_ref()),
                _ => entry.push(
                    *seq,
                    *op,
                    &key,
                    Image::Reference {
                        updated: *seq * 100,
                    },
                    None,
                ),
            }
        }
        let [(first, value)] = &entry.finish()[..] else {
            panic!("one entry")
        };
        assert_eq!(*first, 10);
        assert_eq!(last_seq(value).unwrap(), 13);
        let raw = entry_changes(value).unwrap();
        assert_eq!((raw.scope, raw.changes.len()), (&b"alice"[..], 4));
        for (r, (seq, op, old)) in raw.changes.iter().zip(&changes) {
            let decoded = r.decode().unwrap();
            assert_eq!((r.seq, r.op, r.key), (*seq, *op, &seq.to_be_bytes()[..]));
            let image = match seq % 3 {
                2 => LogImage::Reference {
                    updated: *seq * 100,
                },
                _ => LogImage::Row(row(*seq, *op == ChangeOp::Delete)),
            };
            assert_eq!(decoded.row, image);
            let old = if seq % 3 == 2 { &None } else { old };
            assert_eq!(&decoded.old, old);
        }
        assert!(EntryWriter::new("", 0).finish().is_empty());
    }

    /// A version 2 entry (written before references): no key, every image stored.
    #[test]
    fn version_2_entries_still_read() {
        let (new, old) = (row(5, false), row(4, false));
        let mut value = vec![ENTRY_VERSION_2];
        value.extend_from_slice(&1u32.to_le_bytes());
        value.extend_from_slice(&3u32.to_le_bytes());
        value.extend_from_slice(b"bob");
        value.extend_from_slice(&5i64.to_be_bytes());
        value.push(ChangeOp::Update.tag());
        for part in [new.encode(), old.encode()] {
            value.extend_from_slice(&(part.len() as u32).to_le_bytes());
            value.extend_from_slice(&part);
        }
        let raw = entry_changes(&value).unwrap();
        let [change] = &raw.changes[..] else {
            panic!("one change")
        };
        assert_eq!(
            (change.seq, change.op, change.key),
            (5, ChangeOp::Update, &[][..])
        );
        let decoded = change.decode().unwrap();
        assert_eq!(decoded.row, LogImage::Row(new));
        assert_eq!(decoded.old, Some(old));
        // A version 2 entry cannot hold a reference.
        value[9 + 3 + 8] |= BY_REFERENCE;
        assert!(entry_changes(&value).is_err());
    }

    #[test]
    fn a_large_batch_is_split_into_entries_keyed_by_their_first_seq() {
        let mut entry = EntryWriter::with_entry_bytes("bob", 0, 100);
        for seq in 1..=20 {
            entry.push(
                seq,
                ChangeOp::Insert,
                b"k",
                Image::Row(&row(seq, false)),
                None,
            );
        }
        let entries = entry.finish();
        assert!(entries.len() > 2, "{} entries", entries.len());
        let mut next = 1;
        for (first, value) in &entries {
            assert_eq!(*first, next);
            assert!(value.len() < 100 + 70, "{} bytes", value.len());
            let raw = entry_changes(value).unwrap();
            assert_eq!(raw.scope, b"bob");
            for change in &raw.changes {
                assert_eq!(change.seq, next);
                next += 1;
            }
        }
        assert_eq!(next, 21);
    }

    #[test]
    fn truncated_entries_are_corrupt_not_a_panic() {
        let mut entry = EntryWriter::new("", 0);
        entry.push(1, ChangeOp::Insert, b"k1", Image::Row(&row(1, false)), None);
        entry.push(
            2,
            ChangeOp::Insert,
            b"k2",
            Image::Reference { updated: 3 },
            None,
        );
        let (_, value) = entry.finish().pop().unwrap();
        for cut in 0..value.len() {
            assert!(entry_changes(&value[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert!(entry_changes(&longer).is_err());
        assert_eq!(seq_of_log_key(&log_key(42)).unwrap(), 42);
        assert!(seq_of_log_key(b"short").is_err());
    }
}
