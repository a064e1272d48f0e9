//! `ALTER TABLE` of schema and options: the new definition is written to the catalog (the
//! source of truth) and to the table's storage, and swapped into the open table while writes,
//! flushes and compactions wait; then the table's Delta log follows.

use std::sync::Arc;

use bytes::Bytes;

use super::{Store, TABLES, sys};
use crate::backend::WriteBatch;
use crate::catalog::JobKind;
use crate::delta::{self, Reason};
use crate::error::{Error, Result};
use crate::format::{META_DEFINITION, META_DELTA_PENDING, META_LOG_FLOOR};
use crate::ids::TableId;
use crate::schema::{
    AccessLevel, ChangeRetention, DeltaPublishing, FlushPolicy, SchemaChange, TableDefinition,
    TableType,
};
use crate::table::TableHandle;

/// Option changes of `ALTER TABLE ... SET TBLPROPERTIES`; `None` keeps an option as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionsChange {
    /// New flush policy (not for STREAM tables).
    pub flush_policy: Option<FlushPolicy>,
    /// New TTL of a STREAM table; applies to the rows already stored too.
    pub ttl_seconds: Option<u64>,
    /// New access level.
    pub access_level: Option<AccessLevel>,
    /// New comment.
    pub comment: Option<String>,
    /// Whether and how the table is published as a Delta Lake table.
    pub delta: Option<DeltaPublishing>,
    /// How long the change log keeps changes.
    pub change_retention: Option<ChangeRetention>,
}

impl Store {
    /// Changes a table's columns (a new schema version; kalamstore reads old rows and files
    /// through it as they are, while a published table's files are rewritten when a column was
    /// renamed, retyped or dropped, so Delta readers match columns by name). Returns the new
    /// definition.
    pub async fn alter_table(
        &self,
        table: &TableId,
        change: &SchemaChange,
    ) -> Result<Arc<TableDefinition>> {
        let before = self.table(table).await?.options.delta;
        let def = self
            .replace_definition(table, |def| def.evolve(change, self.now_ms()))
            .await?;
        self.republish_after_change(table, before).await?;
        Ok(def)
    }

    /// Changes a table's options. Returns the new definition.
    pub async fn set_table_options(
        &self,
        table: &TableId,
        change: &OptionsChange,
    ) -> Result<Arc<TableDefinition>> {
        let before = self.table(table).await?.options.delta;
        let log_starts = parking_lot::Mutex::new(None);
        let def = self
            .replace_definition(table, |def| {
                let mut next = def.clone();
                if let Some(retention) = change.change_retention {
                    if !def.options.change_retention.is_on() && retention.is_on() {
                        // Writes while the log was off are not in it: cursors from before
                        // now get the gap answer. Taken under the write lock, so every
                        // logged write's seq is above it.
                        *log_starts.lock() = Some(self.inner.seq.next());
                    }
                    next.options.change_retention = retention;
                }
                if let Some(policy) = change.flush_policy {
                    if def.table_type == TableType::Stream {
                        return Err(Error::InvalidSchema {
                            table: def.id.to_string(),
                            reason: "STREAM tables are never flushed; FLUSH_POLICY does not apply"
                                .into(),
                        });
                    }
                    next.options.flush_policy = policy;
                }
                if let Some(ttl) = change.ttl_seconds {
                    next.options.ttl_seconds = Some(ttl);
                }
                if let Some(level) = change.access_level {
                    next.options.access_level = level;
                }
                if let Some(comment) = &change.comment {
                    next.options.comment = Some(comment.clone());
                }
                if let Some(delta) = change.delta {
                    next.options.delta = delta;
                }
                next.validate()?;
                Ok(next)
            })
            .await?;
        if let Some(floor) = log_starts.into_inner() {
            let handle = self.handle(table).await?;
            handle
                .storage
                .hot
                .put(
                    &handle.meta,
                    Bytes::from_static(META_LOG_FLOOR),
                    Bytes::copy_from_slice(&floor.to_be_bytes()),
                )
                .await?;
            handle.feed.raise_floor(floor);
        }
        self.republish_after_change(table, before).await?;
        Ok(def)
    }

    /// Brings the Delta log in line with a changed definition: removed when publishing was
    /// turned off, rebuilt when it was turned on, otherwise published anew (new metadata),
    /// after a rewrite of the files a rename, retype or drop left unreadable by name.
    async fn republish_after_change(&self, table: &TableId, before: DeltaPublishing) -> Result<()> {
        let handle = self.handle(table).await?;
        let now = handle.definition().options.delta;
        if now == DeltaPublishing::Off {
            let _maintenance = handle.lock_files().await;
            return match before {
                DeltaPublishing::Off => Ok(()),
                _ => delta::unpublish(&handle).await,
            };
        }
        if delta::has_stale_files(&handle) {
            self.rewrite_job(handle, JobKind::Compaction, Reason::SchemaChange, false)
                .await?;
            return Ok(());
        }
        let _maintenance = handle.lock_files().await;
        let reason = match before {
            DeltaPublishing::Off => Reason::Republish,
            _ => Reason::SchemaChange,
        };
        self.publish(&handle, reason).await;
        Ok(())
    }

    /// Computes and installs a new definition while the table's writes and maintenance wait.
    async fn replace_definition(
        &self,
        table: &TableId,
        change: impl Fn(&TableDefinition) -> Result<TableDefinition>,
    ) -> Result<Arc<TableDefinition>> {
        self.check_open()?;
        let _ddl = self.inner.ddl.lock().await;
        loop {
            let handle = self.handle(table).await?;
            let _maintenance = handle.lock_files().await;
            let _writes = handle.lock_rows().await;
            if handle.is_retired() {
                continue;
            }
            let next = change(&handle.definition())?;
            self.install_definition(&handle, next.clone()).await?;
            return Ok(Arc::new(next));
        }
    }

    /// Writes `def` to the catalog, then to the table's storage, then into the open handle.
    /// A crash between the two writes is repaired when the table is next opened.
    async fn install_definition(&self, handle: &TableHandle, def: TableDefinition) -> Result<()> {
        let bytes: Bytes = def.encode().into();
        self.inner
            .system
            .put(&sys(TABLES), def.id.to_string().into(), bytes.clone())
            .await?;
        let mut batch = WriteBatch::new();
        batch.put(&handle.meta, Bytes::from_static(META_DEFINITION), bytes);
        if def.options.delta != DeltaPublishing::Off {
            batch.put(
                &handle.meta,
                Bytes::from_static(META_DELTA_PENDING),
                Bytes::new(),
            );
        }
        handle.storage.hot.batch(batch).await?;
        *handle.def.write() = Arc::new(def);
        handle.feed.reset_ring();
        Ok(())
    }
}
