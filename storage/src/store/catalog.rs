//! The catalog: namespaces, storages and tables, their records in the system storage, and the
//! open handles of storages and tables.

use std::sync::Arc;

use bytes::Bytes;

use super::probe::check_storage_handle;
use super::{NAMESPACES, STORAGES, Store, TABLES, TASKS, sys};
use crate::backend::{StorageBackend, WriteBatch};
use crate::cache::{CacheCounters, CacheRequest, StorageCacheStats};
use crate::catalog::{JobKind, StorageDefinition, TableTask, TableTaskOp};
use crate::error::{Error, Result};
use crate::failpoint::crash_point;
use crate::format::{META_DEFINITION, MetadataCache, meta_partition};
use crate::ids::{NamespaceId, StorageId, TableId};
use crate::job::JobOutcome;
use crate::location::open_store;
use crate::schema::TableDefinition;
use crate::table::{StorageHandle, TableHandle};
use crate::timeout::TimeoutStore;

impl Store {
    /// Creates a namespace; an existing one is an error unless `if_not_exists`.
    pub async fn create_namespace(&self, ns: &NamespaceId, if_not_exists: bool) -> Result<bool> {
        self.check_open()?;
        let _ddl = self.inner.ddl.lock().await;
        if self.namespace_exists(ns).await? {
            if if_not_exists {
                return Ok(false);
            }
            return Err(Error::NamespaceExists {
                namespace: ns.to_string(),
            });
        }
        self.inner
            .system
            .put(
                &sys(NAMESPACES),
                Bytes::copy_from_slice(ns.as_str().as_bytes()),
                Bytes::copy_from_slice(&self.now_ms().to_le_bytes()),
            )
            .await?;
        Ok(true)
    }

    async fn namespace_exists(&self, ns: &NamespaceId) -> Result<bool> {
        let found = self
            .inner
            .system
            .get(&sys(NAMESPACES), ns.as_str().as_bytes())
            .await?;
        Ok(found.is_some())
    }

    /// Every namespace, sorted.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceId>> {
        self.catalog(NAMESPACES, |k, _| {
            NamespaceId::new(String::from_utf8_lossy(k).into_owned())
        })
        .await
    }

    /// Every namespace with when it was created (ms since the epoch), sorted.
    pub async fn namespaces_created(&self) -> Result<Vec<(NamespaceId, i64)>> {
        self.catalog(NAMESPACES, |k, v| {
            let ns = NamespaceId::new(String::from_utf8_lossy(k).into_owned())?;
            let created = v
                .try_into()
                .map(i64::from_le_bytes)
                .map_err(|_| Error::Corrupt {
                    what: format!("catalog entry of namespace {ns}"),
                    reason: format!("{} bytes, not 8", v.len()),
                })?;
            Ok((ns, created))
        })
        .await
    }

    /// Drops a namespace; with `cascade` its tables and their data go too, without it a
    /// namespace with tables is refused.
    pub async fn drop_namespace(&self, ns: &NamespaceId, cascade: bool) -> Result<()> {
        self.check_open()?;
        if !self.namespace_exists(ns).await? {
            return Err(Error::NamespaceNotFound {
                namespace: ns.to_string(),
            });
        }
        let tables = self.tables(Some(ns)).await?;
        if !tables.is_empty() && !cascade {
            return Err(Error::NamespaceNotEmpty {
                namespace: ns.to_string(),
                tables: tables.len(),
            });
        }
        for t in tables {
            self.drop_table(&t.id, true).await?;
        }
        let _ddl = self.inner.ddl.lock().await;
        self.inner
            .system
            .delete(&sys(NAMESPACES), ns.as_str().as_bytes())
            .await
    }

    pub(super) async fn storage_definition(
        &self,
        id: &StorageId,
    ) -> Result<Option<StorageDefinition>> {
        self.inner
            .system
            .get(&sys(STORAGES), id.as_str().as_bytes())
            .await?
            .map(|b| StorageDefinition::decode(&b).map(|def| self.located(def)))
            .transpose()
    }

    /// Every registered storage, sorted by id.
    pub async fn storages(&self) -> Result<Vec<StorageDefinition>> {
        self.catalog(STORAGES, |_, v| {
            StorageDefinition::decode(v).map(|def| self.located(def))
        })
        .await
    }

    /// `def` where it is now: the built-in `local` storage's files are the data dir's `cold`
    /// directory wherever the data dir was created (a data dir copied or moved elsewhere keeps
    /// reading its own files, not the original's).
    fn located(&self, mut def: StorageDefinition) -> StorageDefinition {
        if def.id == StorageId::local() {
            def.cold_url = local_cold_url(&self.inner.config.data_dir);
        }
        def
    }

    /// The caches of the storages this process has opened, by storage id then tier: hits,
    /// misses and bytes since each was opened.
    pub async fn cache_stats(&self) -> Result<Vec<StorageCacheStats>> {
        self.check_open()?;
        let storages = self.inner.storages.lock().await;
        let mut out: Vec<StorageCacheStats> =
            storages.values().flat_map(|s| s.cache_stats()).collect();
        out.sort_by(|a, b| {
            (a.storage.as_str(), a.tier.to_string()).cmp(&(b.storage.as_str(), b.tier.to_string()))
        });
        Ok(out)
    }

    async fn open_storage_def(&self, def: &StorageDefinition) -> Result<StorageHandle> {
        let counters = [
            Arc::new(CacheCounters::default()),
            Arc::new(CacheCounters::default()),
        ];
        let request = |counters: &Arc<CacheCounters>, source| {
            def.cache.as_ref().map(|spec| CacheRequest {
                spec,
                counters: counters.clone(),
                source,
            })
        };
        let hot = if def.id == StorageId::local() {
            self.inner.system.clone()
        } else {
            let source = def.hot.location();
            self.inner
                .config
                .engines
                .open(&def.hot, &def.s3, request(&counters[0], source))
                .await?
        };
        let mut cold = open_store(&def.cold_url, &def.s3)?;
        let config = &self.inner.config;
        let tier = config
            .engines
            .cold_store(cold.store, request(&counters[1], &def.cold_url))
            .await?;
        cold.store = Arc::new(TimeoutStore::new(tier.store, config.object_store_timeout));
        let metadata_budget = def
            .metadata_cache_bytes
            .unwrap_or(config.metadata_cache_bytes);
        Ok(StorageHandle {
            def: def.clone(),
            hot,
            cold,
            clock: self.inner.config.clock.clone(),
            cache_counters: counters,
            cold_cache: tier.cache,
            failpoints: config.failpoints.clone(),
            metadata: Arc::new(MetadataCache::new(
                usize::try_from(metadata_budget).unwrap_or(usize::MAX),
            )),
            write_chunk_rows: config.write_chunk_rows.max(1),
        })
    }

    pub(crate) async fn storage(&self, id: &StorageId) -> Result<Arc<StorageHandle>> {
        let mut storages = self.inner.storages.lock().await;
        if let Some(s) = storages.get(id) {
            return Ok(s.clone());
        }
        let def = self
            .storage_definition(id)
            .await?
            .ok_or_else(|| Error::StorageNotFound {
                storage: id.to_string(),
            })?;
        let handle = Arc::new(self.open_storage_def(&def).await?);
        storages.insert(id.clone(), handle.clone());
        Ok(handle)
    }

    /// Registers a storage after checking that its hot engine and cold store can write, read,
    /// list and delete.
    pub async fn create_storage(&self, mut def: StorageDefinition) -> Result<()> {
        self.check_open()?;
        let _ddl = self.inner.ddl.lock().await;
        if self.storage_definition(&def.id).await?.is_some() {
            return Err(Error::StorageExists {
                storage: def.id.to_string(),
            });
        }
        if def.created_at_ms == 0 {
            def.created_at_ms = self.now_ms();
        }
        let handle = self
            .open_storage_def(&def)
            .await
            .map_err(|e| Error::StorageCheck {
                storage: def.id.to_string(),
                step: format!("opening {} at `{}`", def.hot.kind(), def.hot.location()),
                source: Box::new(e),
            })?;
        check_storage_handle(&handle).await?;
        self.inner
            .system
            .put(
                &sys(STORAGES),
                def.id.to_string().into(),
                def.encode().into(),
            )
            .await?;
        self.inner
            .storages
            .lock()
            .await
            .insert(def.id.clone(), Arc::new(handle));
        Ok(())
    }

    /// The hot engine of a registered storage, for inspection (partitions, stats).
    pub async fn storage_engine(&self, id: &StorageId) -> Result<Arc<dyn StorageBackend>> {
        Ok(self.storage(id).await?.hot.clone())
    }

    /// Runs the write/read/list/delete check on a registered storage.
    pub async fn check_storage(&self, id: &StorageId) -> Result<()> {
        let handle = self.storage(id).await?;
        check_storage_handle(&handle).await
    }

    /// Removes a storage; refused for `local` and for a storage a table uses.
    pub async fn drop_storage(&self, id: &StorageId, if_exists: bool) -> Result<bool> {
        self.check_open()?;
        let _ddl = self.inner.ddl.lock().await;
        if self.storage_definition(id).await?.is_none() {
            if if_exists {
                return Ok(false);
            }
            return Err(Error::StorageNotFound {
                storage: id.to_string(),
            });
        }
        if *id == StorageId::local() {
            return Err(Error::StorageInUse {
                storage: id.to_string(),
                table: "(the system catalog)".into(),
            });
        }
        if let Some(t) = self
            .all_tables()
            .await?
            .into_iter()
            .find(|t| t.storage_id == *id)
        {
            return Err(Error::StorageInUse {
                storage: id.to_string(),
                table: t.id.to_string(),
            });
        }
        if let Some(task) = self.table_tasks().await?.into_iter().find(|t| match &t.op {
            TableTaskOp::Move { from, to, .. } => from == id || to == id,
            TableTaskOp::Drop { storage } => storage == id,
        }) {
            return Err(Error::StorageInUse {
                storage: id.to_string(),
                table: format!("{} (unfinished job {})", task.table, task.job),
            });
        }
        if let Some(handle) = self.inner.storages.lock().await.remove(id) {
            handle.close().await?;
        }
        self.inner
            .system
            .delete(&sys(STORAGES), id.as_str().as_bytes())
            .await?;
        Ok(true)
    }

    pub(super) async fn all_tables(&self) -> Result<Vec<TableDefinition>> {
        self.catalog(TABLES, |_, v| TableDefinition::decode(v))
            .await
    }

    /// Table definitions, of one namespace or all, sorted by id.
    pub async fn tables(&self, ns: Option<&NamespaceId>) -> Result<Vec<TableDefinition>> {
        Ok(self
            .all_tables()
            .await?
            .into_iter()
            .filter(|t| ns.is_none_or(|ns| t.id.namespace == *ns))
            .collect())
    }

    /// The current definition of a table.
    pub async fn table(&self, id: &TableId) -> Result<Arc<TableDefinition>> {
        Ok(self.handle(id).await?.definition())
    }

    pub(crate) async fn handle(&self, id: &TableId) -> Result<Arc<TableHandle>> {
        self.check_open()?;
        let mut tables = self.inner.tables.lock().await;
        if let Some(t) = tables.get(id) {
            return Ok(t.clone());
        }
        let bytes = self
            .inner
            .system
            .get(&sys(TABLES), id.to_string().as_bytes())
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: id.to_string(),
            })?;
        let def = TableDefinition::decode(&bytes)?;
        let storage = self.storage(&def.storage_id).await?;
        // The catalog is the source of truth; an ALTER interrupted between its two writes
        // left the storage's copy behind.
        let meta = meta_partition(id);
        if storage.hot.get(&meta, META_DEFINITION).await?.as_ref() != Some(&bytes) {
            storage
                .hot
                .put(&meta, Bytes::from_static(META_DEFINITION), bytes.clone())
                .await?;
        }
        let (handle, upgrade) = TableHandle::open(def, storage).await?;
        if let Some(upgrade) = upgrade {
            crate::merge::upgrade_overlay(&handle, upgrade).await?;
        }
        let handle = Arc::new(handle);
        self.repair_publication(&handle).await;
        let max_seq = handle
            .state
            .read()
            .files
            .values()
            .flatten()
            .map(|f| f.meta.max_seq)
            .max();
        if let Some(s) = max_seq {
            self.inner.seq.observe(s);
        }
        tables.insert(id.clone(), handle.clone());
        Ok(handle)
    }

    /// Creates a table on its storage (`storage_id`, default `local`); the definition is
    /// written into the catalog and into the storage. Returns `false` when it existed and
    /// `if_not_exists` was set.
    pub async fn create_table(&self, def: TableDefinition, if_not_exists: bool) -> Result<bool> {
        self.check_open()?;
        def.validate()?;
        let _ddl = self.inner.ddl.lock().await;
        let key = def.id.to_string();
        if !self.namespace_exists(&def.id.namespace).await? {
            return Err(Error::NamespaceNotFound {
                namespace: def.id.namespace.to_string(),
            });
        }
        if self
            .inner
            .system
            .get(&sys(TABLES), key.as_bytes())
            .await?
            .is_some()
        {
            if if_not_exists {
                return Ok(false);
            }
            return Err(Error::TableExists { table: key });
        }
        // A drop of an earlier table with this id may still have data to remove.
        self.settle_task(&def.id).await?;
        let storage = self.storage(&def.storage_id).await?;
        TableHandle::create_in_storage(&def, &storage).await?;
        self.inner
            .system
            .put(&sys(TABLES), key.into(), def.encode().into())
            .await?;
        drop(_ddl);
        // Opening the table publishes its (empty) Delta log: the storage's copy of the
        // definition carries the pending marker.
        self.handle(&def.id).await?;
        Ok(true)
    }

    /// Drops a table, as a job (kind `drop`): the catalog entry goes together with a task
    /// record, then the hot rows, manifest and Parquet files leave the table's storage. A crash
    /// in between is finished on the next open.
    pub async fn drop_table(&self, id: &TableId, if_exists: bool) -> Result<bool> {
        self.check_open()?;
        loop {
            let handle = match self.handle(id).await {
                Ok(h) => h,
                Err(Error::TableNotFound { .. }) if if_exists => return Ok(false),
                Err(e) => return Err(e),
            };
            let _ddl = self.inner.ddl.lock().await;
            let _maintenance = handle.lock_files().await;
            let _commit = handle.lock_tiers().await;
            let _writes = handle.lock_rows().await;
            if handle.is_retired() {
                continue;
            }
            self.settle_task(id).await?;
            let store = self.clone();
            let handle = handle.clone();
            // The maintenance lock is held above, with the DDL, commit and write locks.
            self.run_job(JobKind::Drop, Some(id.clone()), None, None, |job| {
                let (store, handle) = (store.clone(), handle.clone());
                async move {
                    let task = TableTask {
                        job: job.id().to_owned(),
                        table: handle.id.clone(),
                        op: TableTaskOp::Drop {
                            storage: handle.storage.def.id.clone(),
                        },
                    };
                    // Catalog entry and task in one batch: once the entry is gone, what is left
                    // of the data is the task's to remove.
                    let mut batch = WriteBatch::new();
                    batch.delete(&sys(TABLES), handle.id.to_string());
                    batch.put(&sys(TASKS), handle.id.to_string(), task.encode());
                    store.inner.system.batch(batch).await?;
                    handle.retire();
                    store.inner.tables.lock().await.remove(&handle.id);
                    crash_point("drop.recorded");
                    super::tasks::remove_table_data(&handle.storage, &handle.id).await?;
                    crash_point("drop.data_removed");
                    store.delete_task(&handle.id).await?;
                    Ok(JobOutcome::default())
                }
            })
            .await?;
            return Ok(true);
        }
    }

    /// Runs `op` on a table's open handle; when the table moved while `op` waited (a move
    /// retires the old handle), runs it again on the new one.
    pub(super) async fn on_table<T, F, Fut>(&self, table: &TableId, op: F) -> Result<T>
    where
        F: Fn(Arc<TableHandle>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempts = 0;
        loop {
            let handle = self.handle(table).await?;
            match op(handle.clone()).await {
                Err(_) if handle.is_retired() && attempts < 3 => attempts += 1,
                result => return result,
            }
        }
    }
}

/// The cold location of the built-in `local` storage of the data dir `data_dir`.
pub(super) fn local_cold_url(data_dir: &std::path::Path) -> String {
    data_dir.join("cold").to_string_lossy().into_owned()
}
