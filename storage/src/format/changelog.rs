//! The change log's entries: a committed write batch's changes in entries of about
//! [`ENTRY_BYTES`] each, keyed by the `_seq` of their first change (i64 BE) in the table's `log`
//! partition, written in the same batch as the changes (entries per batch rather than per key:
//! a 1000-row insert adds one key to the engine; capped so a million-row statement does not
//! make one value that every read of the log's start must decode whole).
//!
//! Value: `[version u8 = 3][count u32 LE][scope len u32 LE][scope][first seq i64 BE][updated
//! i64 LE]`, then per changed key, in `_seq` order: `[seq - previous seq: varint][op u8 |
//! flags][key len: varint][key]`, then `[row len: varint][row]` unless the op has
//! [`BY_REFERENCE`], then `[old len: varint][old]` when it has [`WITH_OLD`] (varints are
//! LEB128; the first change's previous seq is the entry's first). A write batch has one scope
//! and one `_updated`: its stored name (`KeyScope::as_str`, empty for SHARED and STREAM tables)
//! and write time. `key` is the row's encoded primary key. `row` is a [`Row`]: the new image
//! of an insert or update, the old image of a delete (with `_deleted` set), key columns
//! included; `old` is the image an update replaced. A 1000-row insert of 8-byte keys logs
//! about 11 bytes per row.
//!
//! Each image is stored once. An insert's or update's new image is the table's row of that
//! key until a later change replaces it, and that change logs it (as an update's `old`, a
//! delete's `row`): so such a change may name its row by reference (no `row`) and a reader
//! takes the image from
//! the next change of the key, or else from the table (hot or flushed, same `_seq`). Tables
//! whose rows vanish without a change (STREAM tables' TTL) log every image.
//!
//! Version 2 (before references) is still read: `[version u8 = 2][count u32 LE][scope len u32
//! LE][scope]`, then per change `[seq i64 BE][op u8][row len u32 LE][row][old len u32 LE][old]`.

use crate::codec::{KalamValue, Row};
use crate::error::{Error, Result};
use crate::ids::UserId;

const ENTRY_VERSION: u8 = 3;
/// The entries written before references (no key per change, every image stored).
const ENTRY_VERSION_2: u8 = 2;

/// Set in a change's op byte: its new image is the table's row (see the module doc).
const BY_REFERENCE: u8 = 0x80;
/// Set in a change's op byte: an old image follows.
const WITH_OLD: u8 = 0x40;

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
    /// The table's row of the change's key and `_seq`: not stored.
    Reference,
}

/// Builds the log entries of one write batch.
pub(crate) struct EntryWriter {
    scope: Vec<u8>,
    updated: i64,
    buf: Vec<u8>,
    count: u32,
    first: Option<i64>,
    previous: i64,
    max_bytes: usize,
    done: Vec<(i64, Vec<u8>)>,
}

impl EntryWriter {
    /// No entry yet, for a write batch of the scope stored as `scope`, written at `updated`
    /// (ns since the epoch).
    pub(crate) fn new(scope: &str, updated: i64) -> Self {
        Self::with_entry_bytes(scope, updated, ENTRY_BYTES)
    }

    fn with_entry_bytes(scope: &str, updated: i64, max_bytes: usize) -> Self {
        let mut writer = Self {
            scope: scope.as_bytes().to_vec(),
            updated,
            buf: Vec::new(),
            count: 0,
            first: None,
            previous: 0,
            max_bytes,
            done: Vec::new(),
        };
        writer.start(0);
        writer
    }

    /// Starts an empty entry with room for `bytes` of changes.
    fn start(&mut self, bytes: usize) {
        let mut buf = Vec::with_capacity(25 + self.scope.len() + bytes);
        buf.push(ENTRY_VERSION);
        buf.extend_from_slice(&0u32.to_le_bytes());
        // Invariant: a scope's name is a user id of at most 64 bytes.
        buf.extend_from_slice(&(self.scope.len() as u32).to_le_bytes());
        buf.extend_from_slice(&self.scope);
        // The first seq, set by the first change.
        buf.extend_from_slice(&0i64.to_be_bytes());
        buf.extend_from_slice(&self.updated.to_le_bytes());
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
    /// increasing `_seq` order. `row` is the change's image: given encoded (an insert's or
    /// update's hot row, already encoded for the hot partition), as a row encoded straight
    /// into the entry, or by reference; `old` is the row an update replaced.
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
        if self.first.is_none() {
            let at = 9 + self.scope.len();
            self.buf[at..at + 8].copy_from_slice(&seq.to_be_bytes());
            self.first = Some(seq);
            self.previous = seq;
        }
        self.count += 1;
        let out = &mut self.buf;
        // Invariant: seqs increase within a batch, so the delta is not negative.
        put_varint(out, seq.abs_diff(self.previous));
        self.previous = seq;
        let mut tag = op.tag();
        if matches!(row, Image::Reference) {
            tag |= BY_REFERENCE;
        }
        if old.is_some() {
            tag |= WITH_OLD;
        }
        out.push(tag);
        put_varint(out, key.len() as u64);
        out.extend_from_slice(key);
        match row {
            Image::Encoded(bytes) => {
                put_varint(out, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
            Image::Row(row) => put_row(out, row),
            Image::Reference => {}
        }
        if let Some(old) = old {
            put_row(out, old);
        }
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

/// Appends `row` encoded, after its length.
fn put_row(out: &mut Vec<u8>, row: &Row) {
    put_varint(out, row.encoded_len() as u64);
    let at = out.len();
    row.encode_into(out);
    debug_assert_eq!(out.len() - at, row.encoded_len());
}

/// Appends `value` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The LEB128 varint at `*at`, moving `*at` past it.
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
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
    /// The table's row, written at the entry's `updated`.
    Reference {
        updated: i64,
    },
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
    let mut changes = Vec::with_capacity(count.min(value.len() / 11));
    if version == ENTRY_VERSION_2 {
        for _ in 0..count {
            changes
                .push(version_2_change(value, &mut at).ok_or_else(|| corrupt("truncated change"))?);
        }
    } else {
        let mut header = || -> Option<(i64, i64)> {
            let first = i64::from_be_bytes(value.get(at..at + 8)?.try_into().ok()?);
            let updated = i64::from_le_bytes(value.get(at + 8..at + 16)?.try_into().ok()?);
            at += 16;
            Some((first, updated))
        };
        let (mut seq, updated) = header().ok_or_else(|| corrupt("truncated header"))?;
        for _ in 0..count {
            let delta = read_varint(value, &mut at).ok_or_else(|| corrupt("truncated seq"))?;
            seq = i64::try_from(delta)
                .ok()
                .and_then(|d| seq.checked_add(d))
                .ok_or_else(|| corrupt("a seq past i64"))?;
            let tag = *value.get(at).ok_or_else(|| corrupt("truncated op"))?;
            at += 1;
            let op = ChangeOp::from_tag(tag & !(BY_REFERENCE | WITH_OLD))
                .ok_or_else(|| corrupt("unknown op"))?;
            let mut part = || -> Option<&[u8]> {
                let len = usize::try_from(read_varint(value, &mut at)?).ok()?;
                let bytes = value.get(at..at.checked_add(len)?)?;
                at += len;
                Some(bytes)
            };
            let key = part().ok_or_else(|| corrupt("truncated key"))?;
            let row = match tag & BY_REFERENCE {
                0 => RawImage::Row(part().ok_or_else(|| corrupt("truncated row"))?),
                _ => RawImage::Reference { updated },
            };
            let old = match tag & WITH_OLD {
                0 => &value[..0],
                _ => part().ok_or_else(|| corrupt("truncated old row"))?,
            };
            changes.push(RawChange {
                seq,
                op,
                key,
                row,
                old,
            });
        }
    }
    if at != value.len() {
        return Err(corrupt("bytes after its last change"));
    }
    Ok(RawEntry { scope, changes })
}

/// One change of a version 2 entry at `*at`, moving `*at` past it.
fn version_2_change<'a>(value: &'a [u8], at: &mut usize) -> Option<RawChange<'a>> {
    let seq = i64::from_be_bytes(value.get(*at..*at + 8)?.try_into().ok()?);
    let op = ChangeOp::from_tag(*value.get(*at + 8)?)?;
    *at += 9;
    let mut parts = [&value[..0]; 2];
    for part in &mut parts {
        let len = read_u32(value, *at)?;
        *part = value.get(*at + 4..(*at + 4).checked_add(len)?)?;
        *at += 4 + len;
    }
    Some(RawChange {
        seq,
        op,
        key: &value[..0],
        row: RawImage::Row(parts[0]),
        old: parts[1],
    })
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
        let mut entry = EntryWriter::new("alice", 1300);
        for (seq, op, old) in &changes {
            let new = row(*seq, *op == ChangeOp::Delete);
            let key = seq.to_be_bytes();
            match seq % 3 {
                0 => entry.push(*seq, *op, &key, Image::Row(&new), old.as_ref()),
                1 => entry.push(*seq, *op, &key, Image::Encoded(&new.encode()), old.as_ref()),
                _ => entry.push(*seq, *op, &key, Image::Reference, None),
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
                2 => LogImage::Reference { updated: 1300 },
                _ => LogImage::Row(row(*seq, *op == ChangeOp::Delete)),
            };
            assert_eq!(decoded.row, image);
            let old = if seq % 3 == 2 { &None } else { old };
            assert_eq!(&decoded.old, old);
        }
        assert!(EntryWriter::new("", 0).finish().is_empty());
    }

    /// An insert of an 8-byte key by reference takes 11 bytes: the seq step, the op, the key.
    #[test]
    fn a_change_by_reference_is_its_key_and_little_else() {
        let mut entry = EntryWriter::new("", 5);
        for seq in 100..1100 {
            entry.push(
                seq,
                ChangeOp::Insert,
                &seq.to_be_bytes(),
                Image::Reference,
                None,
            );
        }
        let [(first, value)] = &entry.finish()[..] else {
            panic!("one entry")
        };
        assert_eq!((*first, value.len()), (100, 25 + 1000 * 11));
        let raw = entry_changes(value).unwrap();
        assert_eq!(raw.changes.len(), 1000);
        assert_eq!(raw.changes[999].seq, 1099);
        assert_eq!(last_seq(value).unwrap(), 1099);
    }

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut at = 0;
            assert_eq!(read_varint(&out, &mut at), Some(value));
            assert_eq!(at, out.len());
        }
        assert_eq!(read_varint(&[0x80; 11], &mut 0), None);
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
            assert!(value.len() < 100 + 80, "{} bytes", value.len());
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
        entry.push(2, ChangeOp::Insert, b"k2", Image::Reference, None);
        let (new, old) = (row(9, false), row(1, false));
        entry.push(9, ChangeOp::Update, b"k1", Image::Row(&new), Some(&old));
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
