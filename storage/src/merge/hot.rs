//! The hot side of a read: a consistent snapshot of a scope's hot entries and files, and hot
//! entries decoded into arrow columns (with their keys, tombstone flags and write times).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, BooleanArray, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::backend::{KeyRange, ScanRequest, prefix_successor, scan_all};
use crate::codec::{DELETED_COLUMN, Row, UPDATED_COLUMN, decode_batch, read_header};
use crate::error::{Error, Result};
use crate::format::{KEY_COLUMN, KeyBounds, split_hot_key};
use crate::ids::KeyScope;
use crate::schema::TableDefinition;
use crate::table::{FileEntry, ReaderPin, TableHandle, upgrade_row};

/// Hot entries read per chunk of a snapshot.
const SNAPSHOT_CHUNK: usize = 4096;

/// Which scopes a read covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scopes {
    /// One scope: a user of a USER table, or a SHARED or STREAM table's.
    One(KeyScope),
    /// Every user of a USER table.
    AllUsers,
}

/// One scope of a [`Snapshot`]: its hot entries (decoded) and its files.
pub(crate) struct ScopeRows {
    /// The scope.
    pub(crate) scope: KeyScope,
    /// Its hot entries within the read's key bounds, `None` when there are none.
    pub(crate) hot: Option<HotRows>,
    /// Its live files, oldest first.
    pub(crate) files: Vec<FileEntry>,
}

/// The hot entries and files of the scopes a read covers, taken together under the table's
/// commit lock, so no row is seen twice or missed while a flush commits. The files stay
/// pinned while the snapshot lives. Hot entries are held decoded (the flush policy bounds
/// them); files are read as the read goes.
pub(crate) struct Snapshot {
    /// The scopes, in scope order.
    pub(crate) scopes: Vec<ScopeRows>,
    _pin: ReaderPin,
}

/// Hot entries of one scope, key and value.
type HotEntries = Vec<(Bytes, Bytes)>;

/// Takes a [`Snapshot`] of `scopes` of a table, hot entries within `keys`.
pub(crate) async fn snapshot(
    table: &TableHandle,
    scopes: &Scopes,
    keys: &KeyBounds,
) -> Result<Snapshot> {
    let (pin, raw) = {
        let _read = table.commit.read().await;
        let pin = table.pins.pin();
        let raw = match scopes {
            Scopes::One(scope) => vec![(
                scope.clone(),
                table.files(scope),
                hot_entries(table, scope, keys).await?,
            )],
            Scopes::AllUsers => all_scopes(table).await?,
        };
        (pin, raw)
    };
    let scopes = raw
        .into_iter()
        .map(|(scope, files, hot)| {
            let hot = match hot.is_empty() {
                true => None,
                false => Some(HotRows::decode(table, &hot)?),
            };
            Ok(ScopeRows { scope, hot, files })
        })
        .collect::<Result<_>>()?;
    Ok(Snapshot { scopes, _pin: pin })
}

/// The hot entries of one scope within `keys`.
async fn hot_entries(
    table: &TableHandle,
    scope: &KeyScope,
    keys: &KeyBounds,
) -> Result<HotEntries> {
    if table.buffered(scope) == 0 {
        return Ok(Vec::new());
    }
    let prefix = table.scope_prefix(scope);
    scan_all(
        table.storage.hot.as_ref(),
        &table.hot,
        ScanRequest::new(hot_range(&prefix, keys)).chunk_size(SNAPSHOT_CHUNK),
    )
    .await
}

/// Every scope of a table with its files and hot entries (the whole hot partition, split by
/// scope; key bounds are applied when the rows are read).
async fn all_scopes(table: &TableHandle) -> Result<Vec<(KeyScope, Vec<FileEntry>, HotEntries)>> {
    let kind = table.definition().table_type;
    let entries = scan_all(
        table.storage.hot.as_ref(),
        &table.hot,
        ScanRequest::default().chunk_size(SNAPSHOT_CHUNK),
    )
    .await?;
    let mut hot: BTreeMap<KeyScope, HotEntries> = BTreeMap::new();
    for (key, value) in entries {
        let name = split_hot_key(kind, &key).0;
        let scope = std::str::from_utf8(name)
            .ok()
            .and_then(|n| KeyScope::from_stored(n).ok())
            .ok_or_else(|| Error::Corrupt {
                what: format!("hot partition of table {}", table.id),
                reason: format!("key {key:02x?} has no valid scope"),
            })?;
        hot.entry(scope).or_default().push((key, value));
    }
    let mut scopes: BTreeMap<KeyScope, (Vec<FileEntry>, HotEntries)> = BTreeMap::new();
    for (scope, files) in &table.state.read().files {
        scopes.entry(scope.clone()).or_default().0 = files.clone();
    }
    for (scope, entries) in hot {
        scopes.entry(scope).or_default().1 = entries;
    }
    Ok(scopes
        .into_iter()
        .map(|(scope, (files, hot))| (scope, files, hot))
        .collect())
}

/// The hot-partition range of a scope's keys within `keys`.
fn hot_range(prefix: &[u8], keys: &KeyBounds) -> KeyRange {
    let with_prefix = |k: &Vec<u8>| {
        let mut out = prefix.to_vec();
        out.extend_from_slice(k);
        Bytes::from(out)
    };
    let start = match &keys.0 {
        Bound::Included(k) => Bound::Included(with_prefix(k)),
        Bound::Excluded(k) => Bound::Excluded(with_prefix(k)),
        Bound::Unbounded if prefix.is_empty() => Bound::Unbounded,
        Bound::Unbounded => Bound::Included(Bytes::copy_from_slice(prefix)),
    };
    let end = match &keys.1 {
        Bound::Included(k) => Bound::Included(with_prefix(k)),
        Bound::Excluded(k) => Bound::Excluded(with_prefix(k)),
        Bound::Unbounded if prefix.is_empty() => Bound::Unbounded,
        Bound::Unbounded => prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded),
    };
    KeyRange::Range(start, end)
}

/// Hot entries decoded: a batch of the current user columns, then `_seq`, `_updated`,
/// `_deleted` and `_key` (the encoded primary key after the scope prefix), every column
/// nullable (tombstones hold only their key columns).
pub(crate) struct HotRows {
    /// The decoded entries.
    pub(crate) batch: RecordBatch,
    /// Their encoded primary keys, in key order.
    pub(crate) keys: BinaryArray,
    /// Which are tombstones.
    pub(crate) deleted: BooleanArray,
    /// When each was written, ns since the epoch.
    pub(crate) updated: Int64Array,
}

impl HotRows {
    /// Decodes hot entries of `table`.
    pub(crate) fn decode(table: &TableHandle, entries: &[(Bytes, Bytes)]) -> Result<Self> {
        let def = table.definition();
        let def = def.as_ref();
        let current = def.schema.version;
        let mut upgraded: Vec<Vec<u8>> = Vec::new();
        let mut rows: Vec<&[u8]> = Vec::with_capacity(entries.len());
        let needs_upgrade = entries
            .iter()
            .any(|(_, v)| read_header(v).map_or(true, |h| h.schema_version != current));
        if needs_upgrade {
            for (_, v) in entries {
                upgraded.push(upgrade_hot_row(def, v)?);
            }
            rows.extend(upgraded.iter().map(Vec::as_slice));
        } else {
            rows.extend(entries.iter().map(|(_, v)| v.as_ref()));
        }
        let schema = def.arrow_schema(false);
        let nullable = Arc::new(Schema::new_with_metadata(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        ));
        let decoded = decode_batch(rows, &nullable, true)?;
        let kind = def.table_type;
        let keys =
            BinaryArray::from_iter_values(entries.iter().map(|(k, _)| split_hot_key(kind, k).1));
        let system = |name: &str| {
            decoded.column_by_name(name).ok_or_else(|| Error::Corrupt {
                what: format!("hot rows of table {}", table.id),
                reason: format!("decoded without `{name}`"),
            })
        };
        let deleted = system(DELETED_COLUMN)?
            .as_any()
            .downcast_ref::<BooleanArray>()
            .cloned();
        let updated = system(UPDATED_COLUMN)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned();
        let (Some(deleted), Some(updated)) = (deleted, updated) else {
            return Err(Error::Corrupt {
                what: format!("hot rows of table {}", table.id),
                reason: "system columns of the wrong type".into(),
            });
        };
        let mut fields: Vec<Field> = decoded
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(KEY_COLUMN, DataType::Binary, false));
        let mut columns = decoded.columns().to_vec();
        columns.push(Arc::new(keys.clone()));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(Error::arrow("adding keys to hot rows"))?;
        Ok(Self {
            batch,
            keys,
            deleted,
            updated,
        })
    }

    /// Which entries are live rows: not tombstones, not past a STREAM table's TTL.
    pub(crate) fn alive(&self, table: &TableHandle) -> BooleanArray {
        let cutoff = table.expiry_cutoff();
        (0..self.batch.num_rows())
            .map(|i| {
                let expired = cutoff.is_some_and(|c| self.updated.value(i) < c);
                Some(!self.deleted.value(i) && !expired)
            })
            .collect()
    }
}

/// A hot row written in an older schema version, re-encoded in `def`'s current one (added
/// columns filled, dropped ones gone).
pub(crate) fn upgrade_hot_row(def: &TableDefinition, bytes: &[u8]) -> Result<Vec<u8>> {
    let row = Row::decode(bytes).map_err(|e| Error::decode("hot row", e))?;
    let system = row.system;
    let values = upgrade_row(def, row)?;
    Ok(Row {
        schema_version: def.schema.version,
        values,
        system,
    }
    .encode())
}
