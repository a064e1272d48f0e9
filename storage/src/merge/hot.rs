//! The hot side of a read: a consistent snapshot of a scope's hot entries (decoded, see
//! `table::hot`) and files.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{KeyRange, ScanRequest, prefix_successor};
use crate::error::{Error, Result};
use crate::format::{KeyBounds, is_unbounded, split_hot_key};
use crate::ids::KeyScope;
use crate::schema::TableType;
use crate::table::{FileEntry, HotDecoder, HotRows, ReaderPin, TableHandle};

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
    pub(crate) hot: Option<Arc<HotRows>>,
    /// Its live files, oldest first, with their dead and hidden rows.
    pub(crate) files: Vec<FileEntry>,
}

/// The hot entries and files of the scopes a read covers, taken together: under the table's
/// commit lock (no flush moves rows between the tiers meanwhile) and consistent with the
/// writes (a file's hidden rows are those of exactly the hot entries seen). The files stay
/// pinned while the snapshot lives. Hot entries are held decoded (the flush policy bounds
/// them); files are read as the read goes.
pub(crate) struct Snapshot {
    /// The scopes, in scope order.
    pub(crate) scopes: Vec<ScopeRows>,
    _pin: ReaderPin,
}

/// Takes a [`Snapshot`] of `scopes` of a table, hot entries within `keys`, of the user
/// columns `keep` marks (all when `None`). A read of whole scopes takes decoded hot rows from
/// the table's cache when no commit changed them since; otherwise the hot entries are read
/// under the write lock, so no write lands between them and the files' hidden rows (and, for
/// whole scopes of every column, kept decoded for the next read). A read of a few columns
/// decodes only those: a DELETE of millions of hot rows holds their keys, not their text.
pub(crate) async fn snapshot(
    table: &TableHandle,
    scopes: &Scopes,
    keys: &KeyBounds,
    keep: Option<&[bool]>,
) -> Result<Snapshot> {
    let _read = table.read_tiers().await;
    let pin = table.pins.pin();
    let schema_version = table.definition().schema.version;
    let whole = is_unbounded(keys);
    if whole && let Some(scopes) = cached(table, scopes, schema_version) {
        return Ok(Snapshot { scopes, _pin: pin });
    }
    let _writes = table.lock_rows().await;
    let version = (table.state.read().hot_version, schema_version);
    let raw = match scopes {
        Scopes::One(scope) => vec![(
            scope.clone(),
            table.files(scope),
            hot_rows(table, scope, keys, keep).await?,
        )],
        Scopes::AllUsers => all_scopes(table, keep).await?,
    };
    let mut out = Vec::with_capacity(raw.len());
    for (scope, files, hot) in raw {
        let hot = hot.map(Arc::new);
        if whole
            && keep.is_none()
            && let Some(rows) = &hot
        {
            table
                .hot_cache
                .lock()
                .keep(scope.clone(), version, rows.clone());
        }
        out.push(ScopeRows { scope, hot, files });
    }
    Ok(Snapshot {
        scopes: out,
        _pin: pin,
    })
}

/// The scopes of a whole-scope read from the table's cache of decoded hot rows, if it holds
/// every scope with hot entries at the table's current hot version.
fn cached(table: &TableHandle, scopes: &Scopes, schema_version: u32) -> Option<Vec<ScopeRows>> {
    let state = table.state.read();
    let version = (state.hot_version, schema_version);
    let cache = table.hot_cache.lock();
    let wanted = match scopes {
        Scopes::One(scope) => vec![scope.clone()],
        Scopes::AllUsers => state.scopes(),
    };
    let mut out = Vec::with_capacity(wanted.len());
    for scope in wanted {
        // A scope of only tombstones has no hot rows to read (see `HotDecoder::push`).
        let hot = match state.count(&scope).rows() {
            0 => None,
            _ => Some(cache.get(&scope, version)?),
        };
        let files = state.files.get(&scope).cloned().unwrap_or_default();
        out.push(ScopeRows { scope, hot, files });
    }
    Some(out)
}

/// The hot entries of one scope within `keys`, decoded as the engine lends them.
async fn hot_rows(
    table: &TableHandle,
    scope: &KeyScope,
    keys: &KeyBounds,
    keep: Option<&[bool]>,
) -> Result<Option<HotRows>> {
    let count = table.hot_count(scope);
    if count.entries == 0 {
        return Ok(None);
    }
    // A whole scope is sized by its rows (tombstones are skipped); a key range grows as it
    // finds rows.
    let capacity = match is_unbounded(keys) {
        true => usize::try_from(count.rows()).unwrap_or(usize::MAX),
        false => SNAPSHOT_CHUNK,
    };
    let mut decoder = HotDecoder::new(table, capacity, keep)?;
    let prefix = table.scope_prefix(scope);
    let mut next = Some(ScanRequest::new(hot_range(&prefix, keys)).chunk_size(SNAPSHOT_CHUNK));
    while let Some(request) = next {
        next = table
            .storage
            .hot
            .scan_with(&table.hot, &request, &mut |k, v| decoder.push(k, v))
            .await?;
    }
    decoder.finish()
}

/// Every scope of a table with its files and hot rows (the whole hot partition, split by
/// scope and decoded as the engine lends it; key bounds are applied when the rows are read).
async fn all_scopes(
    table: &TableHandle,
    keep: Option<&[bool]>,
) -> Result<Vec<(KeyScope, Vec<FileEntry>, Option<HotRows>)>> {
    let kind = table.definition().table_type;
    let mut decoders: BTreeMap<KeyScope, HotDecoder<'_>> = BTreeMap::new();
    // Keys are ordered by scope: the decoder of the current run is found once per run.
    let mut current: Option<(Vec<u8>, KeyScope)> = None;
    let mut next = Some(ScanRequest::default().chunk_size(SNAPSHOT_CHUNK));
    while let Some(request) = next {
        next = table
            .storage
            .hot
            .scan_with(&table.hot, &request, &mut |k, v| {
                let name = split_hot_key(kind, k).0;
                let scope = match &current {
                    Some((n, scope)) if n.as_slice() == name => scope,
                    _ => {
                        let scope = hot_key_scope(table, kind, k)?.0;
                        &current.insert((name.to_vec(), scope)).1
                    }
                };
                let decoder = match decoders.get_mut(scope) {
                    Some(d) => d,
                    None => {
                        let capacity = usize::try_from(table.hot_count(scope).rows()).unwrap_or(0);
                        decoders
                            .entry(scope.clone())
                            .or_insert(HotDecoder::new(table, capacity, keep)?)
                    }
                };
                decoder.push(k, v)
            })
            .await?;
    }
    let mut scopes: BTreeMap<KeyScope, (Vec<FileEntry>, Option<HotRows>)> = BTreeMap::new();
    for (scope, files) in &table.state.read().files {
        scopes.entry(scope.clone()).or_default().0 = files.clone();
    }
    for (scope, decoder) in decoders {
        scopes.entry(scope).or_default().1 = decoder.finish()?;
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

/// The scope of a hot partition's key, and the key after the scope.
pub(super) fn hot_key_scope<'k>(
    table: &TableHandle,
    kind: TableType,
    key: &'k [u8],
) -> Result<(KeyScope, &'k [u8])> {
    let (name, pk) = split_hot_key(kind, key);
    let scope = std::str::from_utf8(name)
        .ok()
        .and_then(|n| KeyScope::from_stored(n).ok())
        .ok_or_else(|| Error::Corrupt {
            what: format!("hot partition of table {}", table.id),
            reason: format!("key {key:02x?} has no valid scope"),
        })?;
    Ok((scope, pk))
}
