//! Each table's flushed state published as a Delta Lake table in its cold location
//! (`<ns>/<table>/_delta_log/`), so Spark, Trino, DuckDB, Polars and delta-rs read the cold
//! tier correctly: protocol 3/7 with `deletionVectors` (and `timestampNtz` when a column needs
//! it), every data file an `add` with its stats and, when rows of it are deleted or replaced,
//! its deletion vector; USER tables partitioned by `_user` (files under `_user=<id>/`).
//!
//! The log is a published view: the table's manifest stays the source of truth, and
//! [`publish`] brings the log up to date with it in one commit (adds, removes, a changed
//! vector as the remove of the old descriptor and the add of the new one, a new `metaData` when
//! the schema changed). The commit that changes the manifest also sets a pending marker in the
//! table's meta partition; [`publish`] clears it, so a crash in between is repaired when the
//! table is next opened. Hidden columns (`_key`, `_seq`, `_updated`) are not published unless
//! the table's `DELTA` option says so; hot rows are never in the log (it shows the table as of
//! its last flush).

mod actions;
mod dv;
mod log;
mod stats;

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::json;

use crate::backend::WriteBatch;
use crate::error::{Error, Result};
use crate::format::{META_DELTA_PENDING, table_dir};
use crate::ids::KeyScope;
use crate::schema::{DeltaPublishing, TableType};
use crate::seq::now_nanos;
use crate::table::{FileEntry, TableHandle};
use actions::{Action, Add, Format, MetaData, Remove, USER_PARTITION, protocol, schema_string};
use dv::DvFile;
use log::{CHECKPOINT_EVERY, DeltaLog, LogState};

/// Why a table is published: the `operation` of its commit, and whether it changes data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The table was created.
    Create,
    /// A flush added files or deletion vectors.
    Flush,
    /// A compaction rewrote files (no data change).
    Compaction,
    /// The schema changed (files rewritten to the new version first).
    SchemaChange,
    /// A crash left the log behind the manifest.
    Repair,
    /// The log is rebuilt from scratch.
    Republish,
}

impl Reason {
    fn operation(self) -> &'static str {
        match self {
            Self::Create => "CREATE TABLE",
            Self::Flush => "WRITE",
            Self::Compaction => "OPTIMIZE",
            Self::SchemaChange => "CHANGE COLUMN",
            Self::Repair => "REPAIR",
            Self::Republish => "REPUBLISH",
        }
    }
}

fn log_of(table: &TableHandle) -> DeltaLog {
    DeltaLog::new(
        table.storage.cold.store.clone(),
        table_dir(&table.storage.cold.prefix, &table.id),
    )
}

/// Brings the table's Delta log up to date with its manifest in one commit (or none when it
/// is), then clears the pending marker. Returns the log's version; `None` when the table does
/// not publish.
pub(crate) async fn publish(table: &TableHandle, reason: Reason) -> Result<Option<u64>> {
    let def = table.definition();
    if def.options.delta == DeltaPublishing::Off {
        return Ok(None);
    }
    let log = log_of(table);
    if reason == Reason::Republish {
        log.delete_all().await?;
    }
    for _ in 0..3 {
        let state = log.state().await?;
        let Some(actions) = changes(table, &state, reason).await? else {
            clear_pending(table).await?;
            return Ok(state.version);
        };
        let (mut actions, dv_file) = actions;
        if let Some(file) = dv_file {
            let name = file.name();
            log.put(&name, file.into_bytes()).await?;
        }
        let version = state.version.map_or(0, |v| v + 1);
        let reason = match (reason, state.version) {
            (Reason::Repair, None) => Reason::Create,
            (r, _) => r,
        };
        actions.insert(0, commit_info(reason, version));
        if log.commit(version, &actions).await? {
            if version > 0 && version % CHECKPOINT_EVERY == 0 {
                log.checkpoint(&log.state().await?).await?;
            }
            clear_pending(table).await?;
            return Ok(Some(version));
        }
        // Another writer took the version: read the log again and diff anew.
    }
    Err(Error::Corrupt {
        what: format!("the Delta log of table {}", table.id),
        reason: "three commits in a row lost to concurrent writers".into(),
    })
}

/// Removes the table's Delta log (publishing turned off).
pub(crate) async fn unpublish(table: &TableHandle) -> Result<()> {
    log_of(table).delete_all().await?;
    clear_pending(table).await
}

/// Whether the table's meta partition says a publish is pending.
pub(crate) async fn is_pending(table: &TableHandle) -> Result<bool> {
    Ok(table
        .storage
        .hot
        .get(&table.meta, META_DELTA_PENDING)
        .await?
        .is_some())
}

async fn clear_pending(table: &TableHandle) -> Result<()> {
    table
        .storage
        .hot
        .delete(&table.meta, META_DELTA_PENDING)
        .await
}

/// Adds the pending marker to a batch that changes the table's files, deletion vectors or
/// schema, when the table publishes: the log is behind from that commit until [`publish`].
pub(crate) fn mark_pending(table: &TableHandle, batch: &mut WriteBatch) {
    if table.definition().options.delta != DeltaPublishing::Off {
        batch.put(
            &table.meta,
            Bytes::from_static(META_DELTA_PENDING),
            Bytes::new(),
        );
    }
}

/// Whether some data file was written under a schema version whose columns Delta would read
/// wrongly through the current schema (Delta matches columns by name): a column renamed,
/// retyped or dropped since. Such files are rewritten before the table is published (README:
/// "Schema changes and the Delta log").
pub(crate) fn has_stale_files(table: &TableHandle) -> bool {
    let def = table.definition();
    let current = &def.schema;
    let state = table.state.read();
    state.files.values().flatten().any(|f| {
        let version = f.meta.schema_version;
        if version == current.version {
            return false;
        }
        let Some(old) = def.version(version) else {
            return true;
        };
        old.columns.iter().any(|c| {
            current
                .columns
                .iter()
                .find(|n| n.id == c.id)
                .is_none_or(|n| n.name != c.name || n.data_type != c.data_type)
        })
    })
}

fn commit_info(reason: Reason, version: u64) -> Action {
    Action::CommitInfo(json!({
        "timestamp": now_nanos() / 1_000_000,
        "operation": reason.operation(),
        "operationParameters": {},
        "readVersion": version.checked_sub(1),
        "isBlindAppend": false,
        "engineInfo": concat!("kalamstore/", env!("CARGO_PKG_VERSION")),
    }))
}

/// One file as the manifest says it should be published.
struct Wanted {
    entry: FileEntry,
    partition: BTreeMap<String, Option<String>>,
}

/// The actions that bring the log from `state` to the manifest, with the deletion-vector file
/// they refer to; `None` when the log is up to date.
async fn changes(
    table: &TableHandle,
    state: &LogState,
    reason: Reason,
) -> Result<Option<(Vec<Action>, Option<DvFile>)>> {
    let def = table.definition();
    let root = table_dir(&table.storage.cold.prefix, &table.id);
    let user_partition = def.table_type == TableType::User;
    let with_system = def.options.delta == DeltaPublishing::WithSystemColumns;
    let mut actions = Vec::new();
    let wanted_protocol = protocol(&def);
    if state.protocol.as_ref() != Some(&wanted_protocol) {
        actions.push(Action::Protocol(wanted_protocol));
    }
    let metadata = MetaData {
        id: state
            .metadata
            .as_ref()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), |m| m.id.clone()),
        name: Some(def.id.to_string()),
        format: Format {
            provider: "parquet".into(),
            options: BTreeMap::new(),
        },
        schema_string: schema_string(&def, with_system, user_partition),
        partition_columns: match user_partition {
            true => vec![USER_PARTITION.to_owned()],
            false => Vec::new(),
        },
        configuration: BTreeMap::from([(
            "delta.enableDeletionVectors".to_owned(),
            "true".to_owned(),
        )]),
        created_time: state
            .metadata
            .as_ref()
            .and_then(|m| m.created_time)
            .or(Some(def.schema.created_at_ms)),
    };
    let same_metadata = state.metadata.as_ref().is_some_and(|m| {
        m.schema_string == metadata.schema_string
            && m.partition_columns == metadata.partition_columns
            && m.configuration == metadata.configuration
    });
    if !same_metadata {
        actions.push(Action::MetaData(metadata));
    }

    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    for (scope, entries) in table.state.read().files.iter() {
        for entry in entries {
            let path = entry
                .meta
                .path
                .strip_prefix(&format!("{root}/"))
                .ok_or_else(|| Error::Corrupt {
                    what: format!("manifest of table {}", table.id),
                    reason: format!("file {} is outside the table's directory", entry.meta.path),
                })?
                .to_owned();
            let partition = match (user_partition, scope) {
                (true, KeyScope::User(u)) => {
                    BTreeMap::from([(USER_PARTITION.to_owned(), Some(u.to_string()))])
                }
                _ => BTreeMap::new(),
            };
            wanted.insert(
                path,
                Wanted {
                    entry: entry.clone(),
                    partition,
                },
            );
        }
    }
    let data_change = reason != Reason::Compaction;
    let now = now_nanos() / 1_000_000;
    // Whether the log's `add` already says what the manifest wants of that file.
    let current = |add: &Add, w: &Wanted| {
        let cardinality = add.deletion_vector.as_ref().map_or(0, |d| d.cardinality);
        cardinality == w.entry.dv.len() && add.partition_values == w.partition
    };
    for (path, add) in &state.files {
        if !wanted.get(path).is_some_and(|w| current(add, w)) {
            actions.push(Action::Remove(Remove::of(add, data_change, now)));
        }
    }
    let published: Vec<String> =
        serde_json::from_str::<serde_json::Value>(&schema_string(&def, false, false))
            .ok()
            .and_then(|s| {
                s["fields"].as_array().map(|f| {
                    f.iter()
                        .filter_map(|f| f["name"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
    let mut dv_file = DvFile::new();
    for (path, w) in wanted {
        if state.files.get(&path).is_some_and(|add| current(add, &w)) {
            continue;
        }
        let has_dv = !w.entry.dv.is_empty();
        let footer = table
            .file_index
            .footer(table.data_file(&w.entry.meta))
            .await?;
        let stats = stats::file_stats(&def, &footer, w.entry.meta.rows, has_dv, &published);
        actions.push(Action::Add(Add {
            path,
            partition_values: w.partition,
            size: w.entry.meta.size,
            modification_time: w.entry.meta.created_at_ms,
            data_change,
            stats: Some(stats),
            deletion_vector: has_dv.then(|| dv_file.describe(&w.entry.dv)),
        }));
    }
    if actions.is_empty() {
        return Ok(None);
    }
    let dv_file = (!dv_file.is_empty()).then_some(dv_file);
    Ok(Some((actions, dv_file)))
}

/// What the table's Delta log says now (tests compare it with the manifest).
#[cfg(test)]
pub(crate) async fn log_state(table: &TableHandle) -> Result<LogState> {
    log_of(table).state().await
}
