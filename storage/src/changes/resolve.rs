//! Finding the new rows that the change log names by reference (see `format::changelog`): a
//! row replaced later is the old image of the key's next change (in the page, else further
//! on in the log); a row not replaced yet is the table's row of that key with the same `_seq`,
//! hot or flushed.

use std::collections::HashMap;

use super::{LogAfter, Logged, user_of};
use crate::codec::KalamValue;
use crate::error::{Error, Result};
use crate::format::{ChangeOp, entry_changes};
use crate::ids::{KeyScope, UserId};
use crate::merge::get_flushed_versions;
use crate::schema::TableDefinition;
use crate::table::TableHandle;

/// A row by its scope's user and encoded primary key.
type RowId = (Option<UserId>, Vec<u8>);

/// The image a change holds of the row it replaced: an update's old row, a delete's removed
/// row.
fn replaced(change: &crate::format::Change) -> Option<&Vec<KalamValue>> {
    match change.op {
        ChangeOp::Update => change.old.as_ref(),
        ChangeOp::Delete => Some(&change.values),
        ChangeOp::Insert => None,
    }
}

/// Fills the values of every change of `page` (in `_seq` order, the log read up to `cursor`)
/// that the log names by reference.
pub(super) async fn resolve(
    table: &TableHandle,
    def: &TableDefinition,
    page: &mut [Logged],
    cursor: i64,
) -> Result<()> {
    // The latest change of each row still waiting for its image, by row.
    let mut pending: HashMap<RowId, usize> = HashMap::new();
    for at in 0..page.len() {
        let logged = &page[at];
        if !logged.by_reference && (pending.is_empty() || replaced(&logged.change).is_none()) {
            continue;
        }
        let id = (logged.change.user.clone(), logged.key.clone());
        if let Some(image) = replaced(&logged.change)
            && let Some(earlier) = pending.remove(&id)
        {
            page[earlier].change.values = image.clone();
        }
        if page[at].by_reference {
            pending.insert(id, at);
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    from_table(table, page, &mut pending).await?;
    if pending.is_empty() {
        return Ok(());
    }
    from_later_changes(table, def, page, pending, cursor).await
}

/// Takes the images of `pending` rows that the table still holds with the change's `_seq`:
/// hot entries in one `get_many` per scope, flushed rows in one pass over the files.
async fn from_table(
    table: &TableHandle,
    page: &mut [Logged],
    pending: &mut HashMap<RowId, usize>,
) -> Result<()> {
    let mut by_scope: HashMap<Option<UserId>, Vec<(Vec<u8>, usize)>> = HashMap::new();
    for ((user, key), at) in pending.iter() {
        by_scope
            .entry(user.clone())
            .or_default()
            .push((key.clone(), *at));
    }
    // Flushes and moves between the tiers wait: a row is in one of them.
    let _read = table.read_tiers().await;
    for (user, mut rows) in by_scope {
        rows.sort_unstable();
        let scope = user.clone().map_or(KeyScope::Shared, KeyScope::User);
        let prefix = table.scope_prefix(&scope);
        let hot_keys: Vec<Vec<u8>> = rows
            .iter()
            .map(|(key, _)| [prefix.as_slice(), key].concat())
            .collect();
        let asked: Vec<&[u8]> = hot_keys.iter().map(Vec::as_slice).collect();
        let hot = table.storage.hot.get_many(&table.hot, &asked).await?;
        let mut cold = Vec::new();
        for ((key, at), entry) in rows.iter().zip(hot) {
            let Some(bytes) = entry else {
                cold.push((key.as_slice(), *at));
                continue;
            };
            let system = TableHandle::system_of(&bytes)?;
            // Otherwise replaced since: a later change holds the image.
            if system.seq == page[*at].change.seq
                && let Some(values) = table.hot_values(&bytes)?
            {
                page[*at].change.values = values;
                pending.remove(&(user.clone(), key.clone()));
            }
        }
        if cold.is_empty() {
            continue;
        }
        let keys: Vec<&[u8]> = cold.iter().map(|(key, _)| *key).collect();
        let mut flushed = get_flushed_versions(table, &scope, &keys).await?;
        for (key, at) in cold {
            if let Some(row) = flushed.remove(key)
                && row.seq == Some(page[at].change.seq)
            {
                page[at].change.values = row.values;
                pending.remove(&(user.clone(), key.to_vec()));
            }
        }
    }
    Ok(())
}

/// Takes the images of `pending` rows replaced after the page from the changes that
/// replaced them, reading the log on from `cursor`.
async fn from_later_changes(
    table: &TableHandle,
    def: &TableDefinition,
    page: &mut [Logged],
    mut pending: HashMap<RowId, usize>,
    cursor: i64,
) -> Result<()> {
    let mut log = LogAfter::new(table, cursor).await?;
    while !pending.is_empty() {
        let Some(entries) = log.next_chunk().await? else {
            break;
        };
        for (_, value) in &entries {
            let entry = entry_changes(value)?;
            let user = user_of(def, entry.scope)?;
            for raw in &entry.changes {
                if raw.seq <= cursor || raw.op == ChangeOp::Insert {
                    continue;
                }
                let id = (user.clone(), raw.key.to_vec());
                let Some(at) = pending.remove(&id) else {
                    continue;
                };
                let later = super::decode_change(def, user.clone(), raw)?;
                if let Some(image) = replaced(&later.change) {
                    page[at].change.values = image.clone();
                }
                if pending.is_empty() {
                    return Ok(());
                }
            }
        }
    }
    match pending.values().min() {
        None => Ok(()),
        Some(at) => Err(Error::Corrupt {
            what: format!("change log of table {}", table.id),
            reason: format!(
                "change {} names its row by reference, but neither the table nor a later \
                 change holds that row",
                page[*at].change.seq
            ),
        }),
    }
}
