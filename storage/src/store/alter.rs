//! `ALTER TABLE` of schema and options: the new definition is written to the catalog (the
//! source of truth) and to the table's storage, and swapped into the open table while writes,
//! flushes and compactions wait.

use std::sync::Arc;

use bytes::Bytes;

use super::{Store, TABLES, now_ms, sys};
use crate::error::{Error, Result};
use crate::format::META_DEFINITION;
use crate::ids::TableId;
use crate::schema::{AccessLevel, FlushPolicy, SchemaChange, TableDefinition, TableType};
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
}

impl Store {
    /// Changes a table's columns (a new schema version; old rows and files are read through
    /// it without being rewritten). Returns the new definition.
    pub async fn alter_table(
        &self,
        table: &TableId,
        change: &SchemaChange,
    ) -> Result<Arc<TableDefinition>> {
        self.replace_definition(table, |def| def.evolve(change, now_ms()))
            .await
    }

    /// Changes a table's options. Returns the new definition.
    pub async fn set_table_options(
        &self,
        table: &TableId,
        change: &OptionsChange,
    ) -> Result<Arc<TableDefinition>> {
        self.replace_definition(table, |def| {
            let mut next = def.clone();
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
            next.validate()?;
            Ok(next)
        })
        .await
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
            let _maintenance = handle.maintenance.lock().await;
            let _writes = handle.write_lock.lock().await;
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
        handle
            .storage
            .hot
            .put(&handle.meta, Bytes::from_static(META_DEFINITION), bytes)
            .await?;
        *handle.def.write() = Arc::new(def);
        Ok(())
    }
}
