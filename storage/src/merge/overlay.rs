//! The hot overlay resolved at write time: which flushed rows a scope's hot keys hide (`h`
//! entries, see `format::partitions`), found by merge-join where they are not yet recorded
//! (a compaction's output, a table written before they were kept), and the one-time upgrade
//! of such a table.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::hot::hot_key_scope;
use super::join::FileKeyJoin;
use crate::backend::{ScanRequest, WriteBatch, scan_all};
use crate::error::Result;
use crate::format::{Hidden, META_OVERLAY, counter_key, hidden_key};
use crate::ids::KeyScope;
use crate::table::{FileEntry, FormatUpgrade, TableHandle};

/// The live rows (in no deletion vector) of `files` whose keys are in `keys` (sorted encoded
/// primary keys), by merge-join with each file's `_key` column.
pub(crate) async fn find_live<'k>(
    table: &TableHandle,
    files: &[FileEntry],
    keys: impl Iterator<Item = &'k [u8]> + Clone,
) -> Result<Vec<(&'k [u8], Hidden)>> {
    let mut found = Vec::new();
    for entry in files {
        let mut join = FileKeyJoin::new(entry.clone());
        for key in keys.clone() {
            if let Some(position) = join.position(table, key).await?
                && !entry.dv.contains(position)
            {
                found.push((
                    key,
                    Hidden {
                        file: entry.meta.id,
                        position,
                    },
                ));
            }
        }
    }
    Ok(found)
}

/// Brings a table opened in an older stored form up to date, before anyone else uses it: one
/// pass over the hot partition counts each scope's tombstones and, when the hidden rows were
/// never recorded, merge-joins each scope's hot keys with its files to find them; the `h`
/// entries, the counters in their current form and the `o` marker go in one batch (a crash
/// before it leaves the old form, upgraded at the next open).
pub(crate) async fn upgrade_overlay(table: &TableHandle, upgrade: FormatUpgrade) -> Result<()> {
    let kind = table.definition().table_type;
    let entries = scan_all(
        table.storage.hot.as_ref(),
        &table.hot,
        ScanRequest::default(),
    )
    .await?;
    let mut tombstones: HashMap<KeyScope, u64> = HashMap::new();
    let mut keys: BTreeMap<KeyScope, Vec<Bytes>> = BTreeMap::new();
    for (key, value) in entries {
        let (scope, pk) = hot_key_scope(table, kind, &key)?;
        if TableHandle::system_of(&value)?.deleted {
            *tombstones.entry(scope.clone()).or_default() += 1;
        }
        if upgrade.find_hidden {
            let start = key.len() - pk.len();
            keys.entry(scope).or_default().push(key.slice(start..));
        }
    }
    let mut batch = WriteBatch::new();
    let mut hidden: Vec<(KeyScope, Vec<Hidden>)> = Vec::new();
    for (scope, keys) in &keys {
        let files = table.files(scope);
        let found = find_live(table, &files, keys.iter().map(Bytes::as_ref)).await?;
        for (pk, at) in &found {
            batch.put(&table.meta, hidden_key(scope, pk), at.encode());
        }
        hidden.push((scope.clone(), found.into_iter().map(|(_, at)| at).collect()));
    }
    let counts: Vec<_> = {
        let state = table.state.read();
        state
            .counters
            .iter()
            .map(|(scope, count)| {
                let mut count = *count;
                count.tombstones = tombstones.get(scope).copied().unwrap_or(0);
                (scope.clone(), count)
            })
            .collect()
    };
    for (scope, count) in &counts {
        batch.put(&table.meta, counter_key(scope), count.encode());
    }
    batch.put(&table.meta, Bytes::from_static(META_OVERLAY), Bytes::new());
    table.storage.hot.batch(batch).await?;
    let mut state = table.state.write();
    for (scope, count) in &counts {
        state.set_count(scope, *count);
    }
    for (scope, rows) in hidden {
        state.hide(&scope, rows);
    }
    Ok(())
}
