//! `Store`: the embeddable entry point. It opens a data directory, keeps the catalog
//! (namespaces, storages, tables, jobs) in the system storage, and routes every table
//! operation to the table's own storage.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::backend::{Partition, ScanRequest, StorageBackend, WriteBatch, WriteOp, scan_all};
use crate::catalog::{
    CacheSpec, HotEngine, JobKind, JobRecord, JobStatus, StorageDefinition, TableTask, TableTaskOp,
};
use crate::codec::KalamValue;
use crate::error::{Error, Result};
use crate::flush::compact::{CompactionPolicy, collect_orphans, compact_scope};
use crate::flush::{FlushOutcome, flush_scope, reclaim_flushed};
use crate::ids::{NamespaceId, StorageId, TableId, UserId};
use crate::location::{S3Options, open_store};
use crate::merge::ScanOptions;
use crate::schema::{TableDefinition, TableType};
use crate::seq::{SeqGenerator, now_nanos};
use crate::table::{
    META_DEFINITION, Mutation, StorageHandle, TableHandle, WriteSummary, counter_key,
};

mod alter;
mod moves;
mod tasks;

pub use alter::OptionsChange;

/// Opens hot engines by kind. The core knows no engine; the `kalamstore` crate supplies a
/// provider with RocksDB, the object-store engine and foyer.
#[async_trait]
pub trait EngineProvider: Send + Sync + 'static {
    /// The engine of the system storage and of storage `local`, living in `dir`.
    fn default_engine(&self, dir: &Path) -> HotEngine;

    /// Opens (creating if needed) a hot engine, with a cache in front when asked.
    async fn open(
        &self,
        engine: &HotEngine,
        s3: &S3Options,
        cache: Option<&CacheSpec>,
    ) -> Result<Arc<dyn StorageBackend>>;

    /// The object store the table layer reads Parquet from: `store` itself, or a cache of
    /// its byte ranges when the storage has a cache (files are immutable and never renamed,
    /// so a range cached under a path never goes stale).
    async fn cold_store(
        &self,
        store: Arc<dyn object_store::ObjectStore>,
        _cache: Option<&CacheSpec>,
    ) -> Result<Arc<dyn object_store::ObjectStore>> {
        Ok(store)
    }
}

/// A provider with only the in-memory engine (for tests of the core).
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryEngines;

#[async_trait]
impl EngineProvider for MemoryEngines {
    fn default_engine(&self, _dir: &Path) -> HotEngine {
        HotEngine::Memory
    }

    async fn open(
        &self,
        engine: &HotEngine,
        _s3: &S3Options,
        _cache: Option<&CacheSpec>,
    ) -> Result<Arc<dyn StorageBackend>> {
        match engine {
            HotEngine::Memory => Ok(Arc::new(crate::memory::MemoryBackend::new())),
            other => Err(Error::Unsupported {
                engine: "memory-only provider",
                op: other.kind(),
            }),
        }
    }
}

/// How a `Store` opens and runs.
#[derive(Clone)]
pub struct StoreConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The engines it can open.
    pub engines: Arc<dyn EngineProvider>,
    /// Node id of the `_seq` generator (0..=1023).
    pub node_id: u16,
    /// Run flush policies, STREAM expiry and cleanup in the background.
    pub background: bool,
    /// How often the background scheduler looks for work.
    pub scheduler_interval: Duration,
    /// Finished jobs older than this are removed by the cleanup job.
    pub job_retention: Duration,
    /// Unreferenced Parquet files older than this are deleted by the cleanup job.
    pub orphan_grace: Duration,
}

impl StoreConfig {
    /// Defaults: background work on, every second; jobs kept a day; orphans collected after
    /// an hour.
    pub fn new(data_dir: impl Into<PathBuf>, engines: Arc<dyn EngineProvider>) -> Self {
        Self {
            data_dir: data_dir.into(),
            engines,
            node_id: 0,
            background: true,
            scheduler_interval: Duration::from_secs(1),
            job_retention: Duration::from_secs(24 * 3600),
            orphan_grace: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("data_dir", &self.data_dir)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}

/// Which scopes a flush or compaction covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every user of a USER table, or the one keyspace of a SHARED table.
    All,
    /// One user of a USER table.
    User(UserId),
}

impl Scope {
    /// The user of a one-user scope.
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Self::User(u) => Some(u),
            Self::All => None,
        }
    }
}

/// Rows and files of one scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeStats {
    /// The user (USER tables), or `None`.
    pub user: Option<String>,
    /// Buffered hot entries (rows and tombstones).
    pub hot_rows: u64,
    /// Live Parquet files.
    pub files: u64,
    /// Rows in those files, deleted or not.
    pub file_rows: u64,
    /// Rows marked deleted in deletion vectors.
    pub deleted_rows: u64,
    /// Bytes of the files.
    pub bytes: u64,
}

impl ScopeStats {
    /// Deleted share of flushed rows.
    pub fn deleted_ratio(&self) -> f64 {
        if self.file_rows == 0 {
            0.0
        } else {
            self.deleted_rows as f64 / self.file_rows as f64
        }
    }
}

const NAMESPACES: &str = "sys.namespaces";
const STORAGES: &str = "sys.storages";
const TABLES: &str = "sys.tables";
const JOBS: &str = "sys.jobs";

fn sys(name: &'static str) -> Partition {
    Partition::new(name).expect("system partition names are valid")
}

fn now_ms() -> i64 {
    now_nanos() / 1_000_000
}

struct Inner {
    config: StoreConfig,
    system: Arc<dyn StorageBackend>,
    seq: SeqGenerator,
    storages: tokio::sync::Mutex<HashMap<StorageId, Arc<StorageHandle>>>,
    tables: tokio::sync::Mutex<HashMap<TableId, Arc<TableHandle>>>,
    ddl: tokio::sync::Mutex<()>,
    cancels: parking_lot::Mutex<HashMap<String, Arc<AtomicBool>>>,
    scheduler: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
}

/// An open kalamstore data directory.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) a data directory: the system storage on the default engine
    /// in `<data-dir>/hot`, storage `local` with Parquet in `<data-dir>/cold`. Jobs a crash
    /// interrupted are marked failed.
    pub async fn open(config: StoreConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
            op: format!("creating {}", config.data_dir.display()),
            source,
        })?;
        let engine = config.engines.default_engine(&config.data_dir.join("hot"));
        let system = config
            .engines
            .open(&engine, &S3Options::default(), None)
            .await?;
        for p in [NAMESPACES, STORAGES, TABLES, JOBS, tasks::TASKS] {
            system.create_partition(&sys(p)).await?;
        }
        let store = Self {
            inner: Arc::new(Inner {
                seq: SeqGenerator::new(config.node_id)?,
                system,
                storages: tokio::sync::Mutex::new(HashMap::new()),
                tables: tokio::sync::Mutex::new(HashMap::new()),
                ddl: tokio::sync::Mutex::new(()),
                cancels: parking_lot::Mutex::new(HashMap::new()),
                scheduler: parking_lot::Mutex::new(None),
                closed: AtomicBool::new(false),
                config,
            }),
        };
        let local = StorageId::local();
        if store.storage_definition(&local).await?.is_none() {
            let def = StorageDefinition {
                id: local.clone(),
                hot: engine,
                cold_url: store
                    .inner
                    .config
                    .data_dir
                    .join("cold")
                    .to_string_lossy()
                    .into_owned(),
                s3: S3Options::default(),
                cache: None,
                created_at_ms: now_ms(),
            };
            store
                .inner
                .system
                .put(
                    &sys(STORAGES),
                    local.to_string().into(),
                    def.encode().into(),
                )
                .await?;
        }
        store.resume_tasks().await?;
        store.fail_interrupted_jobs().await?;
        if store.inner.config.background {
            let weak = Arc::downgrade(&store.inner);
            let interval = store.inner.config.scheduler_interval;
            let handle = tokio::spawn(async move {
                let mut tick = 0u64;
                loop {
                    tokio::time::sleep(interval).await;
                    let Some(inner) = weak.upgrade() else { break };
                    let store = Store { inner };
                    if store.inner.closed.load(Ordering::Acquire) {
                        break;
                    }
                    store.background_tick(tick).await;
                    tick += 1;
                }
            });
            *store.inner.scheduler.lock() = Some(handle);
        }
        Ok(store)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                engine: "store",
                reason: "closed",
            });
        }
        Ok(())
    }

    /// Every record of a catalog partition, decoded, in key order.
    async fn catalog<T>(
        &self,
        partition: &'static str,
        decode: impl Fn(&[u8], &[u8]) -> Result<T>,
    ) -> Result<Vec<T>> {
        scan_all(
            self.inner.system.as_ref(),
            &sys(partition),
            ScanRequest::default(),
        )
        .await?
        .iter()
        .map(|(k, v)| decode(k, v))
        .collect()
    }

    // ----- namespaces -----

    /// Creates a namespace; an existing one is an error unless `if_not_exists`.
    pub async fn create_namespace(&self, ns: &NamespaceId, if_not_exists: bool) -> Result<bool> {
        self.check_open()?;
        let _ddl = self.inner.ddl.lock().await;
        let p = sys(NAMESPACES);
        if self
            .inner
            .system
            .get(&p, ns.as_str().as_bytes())
            .await?
            .is_some()
        {
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
                &p,
                Bytes::copy_from_slice(ns.as_str().as_bytes()),
                Bytes::copy_from_slice(&now_ms().to_le_bytes()),
            )
            .await?;
        Ok(true)
    }

    /// Every namespace, sorted.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceId>> {
        self.catalog(NAMESPACES, |k, _| {
            NamespaceId::new(String::from_utf8_lossy(k).into_owned())
        })
        .await
    }

    /// Drops a namespace; with `cascade` its tables and their data go too, without it a
    /// namespace with tables is refused.
    pub async fn drop_namespace(&self, ns: &NamespaceId, cascade: bool) -> Result<()> {
        self.check_open()?;
        let p = sys(NAMESPACES);
        if self
            .inner
            .system
            .get(&p, ns.as_str().as_bytes())
            .await?
            .is_none()
        {
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
        self.inner.system.delete(&p, ns.as_str().as_bytes()).await
    }

    // ----- storages -----

    async fn storage_definition(&self, id: &StorageId) -> Result<Option<StorageDefinition>> {
        self.inner
            .system
            .get(&sys(STORAGES), id.as_str().as_bytes())
            .await?
            .map(|b| StorageDefinition::decode(&b))
            .transpose()
    }

    /// Every registered storage, sorted by id.
    pub async fn storages(&self) -> Result<Vec<StorageDefinition>> {
        self.catalog(STORAGES, |_, v| StorageDefinition::decode(v))
            .await
    }

    async fn open_storage_def(&self, def: &StorageDefinition) -> Result<StorageHandle> {
        let hot = if def.id == StorageId::local() {
            self.inner.system.clone()
        } else {
            self.inner
                .config
                .engines
                .open(&def.hot, &def.s3, def.cache.as_ref())
                .await?
        };
        let mut cold = open_store(&def.cold_url, &def.s3)?;
        cold.store = self
            .inner
            .config
            .engines
            .cold_store(cold.store, def.cache.as_ref())
            .await?;
        Ok(StorageHandle {
            def: def.clone(),
            hot,
            cold,
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
            def.created_at_ms = now_ms();
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
            handle.hot.close().await?;
        }
        self.inner
            .system
            .delete(&sys(STORAGES), id.as_str().as_bytes())
            .await?;
        Ok(true)
    }

    // ----- tables -----

    async fn all_tables(&self) -> Result<Vec<TableDefinition>> {
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
        let meta = crate::table::meta_partition(id);
        if storage.hot.get(&meta, META_DEFINITION).await?.as_ref() != Some(&bytes) {
            storage
                .hot
                .put(&meta, Bytes::from_static(META_DEFINITION), bytes.clone())
                .await?;
        }
        let handle = Arc::new(TableHandle::open(def, storage).await?);
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
        if self
            .inner
            .system
            .get(&sys(NAMESPACES), def.id.namespace.as_str().as_bytes())
            .await?
            .is_none()
        {
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
            let _maintenance = handle.maintenance.lock().await;
            let _commit = handle.commit.write().await;
            let _writes = handle.write_lock.lock().await;
            if handle.is_retired() {
                continue;
            }
            self.settle_task(id).await?;
            let store = self.clone();
            let handle = handle.clone();
            self.run_job(
                JobKind::Drop,
                Some(id.clone()),
                None,
                |job, _cancel| async move {
                    let task = TableTask {
                        job,
                        table: handle.id.clone(),
                        op: TableTaskOp::Drop {
                            storage: handle.storage.def.id.clone(),
                        },
                    };
                    // Catalog entry and task in one batch: once the entry is gone, what is left
                    // of the data is the task's to remove.
                    let mut batch = WriteBatch::new();
                    batch.delete(&sys(TABLES), handle.id.to_string());
                    batch.put(&sys(tasks::TASKS), handle.id.to_string(), task.encode());
                    store.inner.system.batch(batch).await?;
                    handle.retired.store(true, Ordering::Release);
                    store.inner.tables.lock().await.remove(&handle.id);
                    crate::flush::failpoint("drop.recorded");
                    tasks::remove_table_data(&handle.storage, &handle.id).await?;
                    crate::flush::failpoint("drop.data_removed");
                    store.delete_task(&handle.id).await?;
                    Ok(FlushOutcome::default())
                },
            )
            .await?;
            return Ok(true);
        }
    }

    /// Runs `op` on a table's open handle; when the table moved while `op` waited (a move
    /// retires the old handle), runs it again on the new one.
    async fn on_table<T, F, Fut>(&self, table: &TableId, op: F) -> Result<T>
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

    // ----- data -----

    /// Applies mutations to a table atomically. USER tables need `user`; others refuse it.
    pub async fn write(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        mutations: Vec<Mutation>,
    ) -> Result<WriteSummary> {
        let mut attempts = 0;
        loop {
            let handle = self.handle(table).await?;
            // A move retires the handle while holding its write lock: on a retired handle
            // nothing was written yet, so the mutations go to the table's new handle.
            let writes = match handle.lock_writes().await {
                Err(_) if handle.is_retired() && attempts < 3 => {
                    attempts += 1;
                    continue;
                }
                result => result?,
            };
            return handle.write(writes, &self.inner.seq, user, mutations).await;
        }
    }

    /// Inserts rows given as `(column, value)` pairs.
    pub async fn insert(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        rows: Vec<Vec<(String, KalamValue)>>,
    ) -> Result<WriteSummary> {
        self.write(
            table,
            user,
            rows.into_iter().map(Mutation::Insert).collect(),
        )
        .await
    }

    /// Merge-on-read scan of a table (one user's rows of a USER table).
    pub async fn scan(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        options: &ScanOptions,
    ) -> Result<Vec<RecordBatch>> {
        self.on_table(table, |handle| async move {
            let scope = handle.scope(user)?;
            crate::merge::scan(&handle, &scope, options).await
        })
        .await
    }

    /// Point read by primary key; values in column order.
    pub async fn get(
        &self,
        table: &TableId,
        user: Option<&UserId>,
        key: &[KalamValue],
    ) -> Result<Option<Vec<KalamValue>>> {
        self.on_table(table, |handle| async move {
            let scope = handle.scope(user)?;
            crate::merge::get(&handle, &scope, key).await
        })
        .await
    }

    /// Per-scope rows, files and deletes of a table.
    pub async fn table_stats(&self, table: &TableId) -> Result<Vec<ScopeStats>> {
        let handle = self.handle(table).await?;
        let is_user = handle.definition().table_type == TableType::User;
        let state = handle.state.read();
        let mut scopes: Vec<String> = state
            .counters
            .keys()
            .chain(state.files.keys())
            .cloned()
            .collect();
        scopes.sort();
        scopes.dedup();
        Ok(scopes
            .into_iter()
            .map(|s| {
                let files = state.files.get(&s).map(Vec::as_slice).unwrap_or_default();
                ScopeStats {
                    hot_rows: state.counters.get(&s).copied().unwrap_or(0),
                    files: files.len() as u64,
                    file_rows: files.iter().map(|f| f.meta.rows).sum(),
                    deleted_rows: files.iter().map(|f| f.dv.len()).sum(),
                    bytes: files.iter().map(|f| f.meta.size).sum(),
                    user: is_user.then_some(s),
                }
            })
            .collect())
    }

    /// The live files of a table's scope (its manifest), oldest first.
    pub async fn manifest(
        &self,
        table: &TableId,
    ) -> Result<Vec<(Option<String>, crate::table::FileEntry)>> {
        let handle = self.handle(table).await?;
        let is_user = handle.definition().table_type == TableType::User;
        let state = handle.state.read();
        Ok(state
            .files
            .iter()
            .flat_map(|(s, files)| {
                files
                    .iter()
                    .map(move |f| (is_user.then(|| s.clone()), f.clone()))
            })
            .collect())
    }

    // ----- jobs -----

    fn scopes_of(handle: &TableHandle, scope: &Scope, with_files: bool) -> Result<Vec<String>> {
        Ok(match scope {
            Scope::User(u) => vec![handle.scope(Some(u))?],
            Scope::All => {
                let mut s: Vec<String> = handle
                    .buffered_scopes()
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
                if with_files {
                    s.extend(handle.file_scopes());
                }
                s.sort();
                s.dedup();
                s
            }
        })
    }

    /// Flushes buffered rows of a table (all scopes or one user) to Parquet, as a job.
    pub async fn flush_table(&self, table: &TableId, scope: Scope) -> Result<JobRecord> {
        let handle = self.handle(table).await?;
        if handle.definition().table_type == TableType::Stream {
            return Err(Error::InvalidQuery {
                table: table.to_string(),
                reason: "STREAM tables are never flushed".into(),
            });
        }
        let user = scope.user().cloned();
        let store = self.clone();
        self.run_job(
            JobKind::Flush,
            Some(table.clone()),
            user,
            move |job, cancel| async move {
                let _m = handle.maintenance.lock().await;
                handle.check_live()?;
                let mut total = FlushOutcome::default();
                let mut ranged = false;
                for s in Self::scopes_of(&handle, &scope, false)? {
                    let (outcome, by_range) =
                        flush_scope(&handle, &s, &store.inner.seq, &job, &cancel).await?;
                    total.add(outcome);
                    ranged |= by_range;
                }
                if ranged {
                    // Once per table flush, not per scope: one memtable flush for all users.
                    reclaim_flushed(&handle).await;
                }
                *handle.last_flush.lock() = std::time::Instant::now();
                Ok(total)
            },
        )
        .await
    }

    /// Rewrites a table's files (all scopes or one user) without their deleted rows, as a job.
    pub async fn compact_table(
        &self,
        table: &TableId,
        scope: Scope,
        policy: CompactionPolicy,
    ) -> Result<JobRecord> {
        let handle = self.handle(table).await?;
        let user = scope.user().cloned();
        let store = self.clone();
        self.run_job(
            JobKind::Compaction,
            Some(table.clone()),
            user,
            move |job, cancel| async move {
                let _m = handle.maintenance.lock().await;
                handle.check_live()?;
                let mut total = FlushOutcome::default();
                for s in handle.file_scopes() {
                    if let Scope::User(u) = &scope
                        && s != u.as_str()
                    {
                        continue;
                    }
                    total.add(
                        compact_scope(&handle, &s, &store.inner.seq, policy, &job, &cancel).await?,
                    );
                }
                Ok(total)
            },
        )
        .await
    }

    /// Runs the cleanup job now: removes finished jobs past their retention, orphaned files
    /// past the grace period and expired STREAM rows.
    pub async fn cleanup(&self) -> Result<JobRecord> {
        let store = self.clone();
        self.run_job(
            JobKind::Cleanup,
            None,
            None,
            move |_job, _cancel| async move {
                let mut total = FlushOutcome::default();
                total.rows += store.remove_old_jobs().await?;
                store.resume_tasks().await?;
                for def in store.all_tables().await? {
                    let handle = store.handle(&def.id).await?;
                    if def.table_type == TableType::Stream {
                        total.rows += expire_stream(&handle).await?;
                    } else {
                        let _m = handle.maintenance.lock().await;
                        if handle.is_retired() {
                            continue;
                        }
                        total.files +=
                            collect_orphans(&handle, store.inner.config.orphan_grace).await?;
                    }
                }
                Ok(total)
            },
        )
        .await
    }

    /// One job record.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.inner
            .system
            .get(&sys(JOBS), id.as_bytes())
            .await?
            .map(|b| JobRecord::decode(&b))
            .transpose()
    }

    /// Every job record, oldest first.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.catalog(JOBS, |_, v| JobRecord::decode(v)).await
    }

    /// Asks a running job to stop before it commits.
    pub async fn cancel_job(&self, id: &str) -> Result<()> {
        match self.inner.cancels.lock().get(id) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                Ok(())
            }
            None => Err(Error::JobNotFound { job: id.to_owned() }),
        }
    }

    async fn put_job(&self, job: &JobRecord) -> Result<()> {
        self.inner
            .system
            .put(&sys(JOBS), job.id.clone().into(), job.encode().into())
            .await
    }

    async fn run_job<F, Fut>(
        &self,
        kind: JobKind,
        table: Option<TableId>,
        user: Option<UserId>,
        work: F,
    ) -> Result<JobRecord>
    where
        F: FnOnce(String, Arc<AtomicBool>) -> Fut,
        Fut: std::future::Future<Output = Result<FlushOutcome>>,
    {
        self.check_open()?;
        let mut job = JobRecord {
            id: format!("j-{:016x}", self.inner.seq.next()),
            kind,
            table,
            user,
            status: JobStatus::New,
            created_at_ms: now_ms(),
            started_at_ms: None,
            ended_at_ms: None,
            rows: 0,
            bytes: 0,
            files: 0,
            error: None,
        };
        self.put_job(&job).await?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.inner
            .cancels
            .lock()
            .insert(job.id.clone(), cancel.clone());
        job.status = JobStatus::Running;
        job.started_at_ms = Some(now_ms());
        self.put_job(&job).await?;
        let result = work(job.id.clone(), cancel).await;
        self.inner.cancels.lock().remove(&job.id);
        job.ended_at_ms = Some(now_ms());
        let outcome = match result {
            Ok(done) => {
                job.status = JobStatus::Completed;
                job.rows = done.rows;
                job.bytes = done.bytes;
                job.files = done.files;
                Ok(())
            }
            Err(e @ Error::JobCancelled { .. }) => {
                job.status = JobStatus::Cancelled;
                job.error = Some(e.to_string());
                Err(e)
            }
            Err(e) => {
                job.status = JobStatus::Failed;
                job.error = Some(e.report());
                Err(e)
            }
        };
        self.put_job(&job).await?;
        outcome.map(|()| job)
    }

    async fn fail_interrupted_jobs(&self) -> Result<()> {
        for mut job in self.jobs().await? {
            if !job.status.is_final() {
                job.status = JobStatus::Failed;
                job.ended_at_ms = Some(now_ms());
                job.error = Some("interrupted by a restart; its work was not committed".into());
                self.put_job(&job).await?;
            }
        }
        Ok(())
    }

    async fn remove_old_jobs(&self) -> Result<u64> {
        let cutoff =
            now_ms() - i64::try_from(self.inner.config.job_retention.as_millis()).unwrap_or(0);
        let mut batch = WriteBatch::new();
        for job in self.jobs().await? {
            if job.status.is_final() && job.ended_at_ms.unwrap_or(job.created_at_ms) < cutoff {
                batch.ops.push(WriteOp::Delete {
                    partition: sys(JOBS),
                    key: job.id.into(),
                });
            }
        }
        let n = batch.len() as u64;
        if n > 0 {
            self.inner.system.batch(batch).await?;
        }
        Ok(n)
    }

    async fn background_tick(&self, tick: u64) {
        let Ok(tables) = self.all_tables().await else {
            return;
        };
        for def in tables {
            let Ok(handle) = self.handle(&def.id).await else {
                continue;
            };
            let policy = def.options.flush_policy;
            match def.table_type {
                TableType::Stream => {
                    let _ = expire_stream(&handle).await;
                }
                _ => {
                    if let Some(rows) = policy.rows {
                        for (scope, n) in handle.buffered_scopes() {
                            if n >= rows {
                                let s = if scope.is_empty() {
                                    Scope::All
                                } else {
                                    match UserId::new(scope) {
                                        Ok(u) => Scope::User(u),
                                        Err(_) => continue,
                                    }
                                };
                                let _ = self.flush_table(&def.id, s).await;
                            }
                        }
                    }
                    if let Some(interval) = policy.interval
                        && handle.last_flush.lock().elapsed() >= interval
                    {
                        if handle.buffered_scopes().is_empty() {
                            *handle.last_flush.lock() = std::time::Instant::now();
                        } else {
                            let _ = self.flush_table(&def.id, Scope::All).await;
                        }
                    }
                }
            }
        }
        if tick % 60 == 59 {
            let _ = self.cleanup().await;
        }
    }

    /// Stops background work and closes every engine.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(h) = self.inner.scheduler.lock().take() {
            h.abort();
        }
        self.inner.tables.lock().await.clear();
        let storages: Vec<_> = self.inner.storages.lock().await.drain().collect();
        for (id, s) in storages {
            if id != StorageId::local() {
                s.hot.close().await?;
            }
        }
        self.inner.system.close().await
    }
}

/// Deletes expired rows of a STREAM table from the hot engine; returns how many.
pub(crate) async fn expire_stream(table: &TableHandle) -> Result<u64> {
    let scope = String::new();
    if table.buffered(&scope) == 0 {
        return Ok(0);
    }
    let _writes = table.write_lock.lock().await;
    if table.is_retired() {
        return Ok(0);
    }
    let mut batch = WriteBatch::new();
    let mut kept = 0u64;
    let mut next = Some(ScanRequest::default().chunk_size(4096));
    while let Some(request) = next {
        let chunk = table.storage.hot.scan(&table.hot, &request).await?;
        next = chunk.resume;
        for (key, value) in chunk.entries {
            let sys = TableHandle::system_of(&value)?;
            if sys.deleted || table.expired(sys.updated) {
                batch.ops.push(WriteOp::Delete {
                    partition: table.hot.clone(),
                    key,
                });
            } else {
                kept += 1;
            }
        }
    }
    let removed = batch.len() as u64;
    if removed == 0 {
        return Ok(0);
    }
    batch.ops.push(WriteOp::Put {
        partition: table.meta.clone(),
        key: counter_key(&scope),
        value: Bytes::copy_from_slice(&kept.to_le_bytes()),
    });
    table.storage.hot.batch(batch).await?;
    table.state.write().counters.insert(scope, kept);
    Ok(removed)
}

/// Deletes every object under `dir` of a storage's cold store.
async fn delete_prefix(storage: &StorageHandle, dir: &str) -> Result<()> {
    let listed: Vec<_> = storage
        .cold
        .store
        .list(Some(&ObjectPath::from(dir)))
        .try_collect()
        .await
        .map_err(|source| Error::ObjectStore {
            op: format!("listing {dir}"),
            source,
        })?;
    for object in listed {
        match storage.cold.store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(Error::ObjectStore {
                    op: format!("deleting {}", object.location),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Writes, reads, lists and deletes a probe in the storage's hot engine and cold store.
async fn check_storage_handle(handle: &StorageHandle) -> Result<()> {
    let id = handle.def.id.to_string();
    let fail = |step: String| {
        let id = id.clone();
        move |e: Error| Error::StorageCheck {
            storage: id,
            step,
            source: Box::new(e),
        }
    };
    let cold = &handle.def.cold_url;
    let probe_path = {
        let mut p = handle.cold.prefix.clone();
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(&format!("_kalamstore_check/{}", now_nanos()));
        ObjectPath::from(p)
    };
    let store = &handle.cold.store;
    let os = |op: String| move |source| Error::ObjectStore { op, source };
    store
        .put(&probe_path, Bytes::from_static(b"kalamstore").into())
        .await
        .map_err(os(format!("writing {probe_path}")))
        .map_err(fail(format!("writing an object to {cold}")))?;
    let read = async {
        store
            .get(&probe_path)
            .await
            .map_err(os(format!("reading {probe_path}")))?
            .bytes()
            .await
            .map_err(os(format!("reading {probe_path}")))
    }
    .await
    .map_err(fail(format!("reading an object from {cold}")))?;
    if read.as_ref() != b"kalamstore" {
        return Err(Error::StorageCheck {
            storage: id.clone(),
            step: format!("reading an object from {cold}"),
            source: Box::new(Error::Corrupt {
                what: probe_path.to_string(),
                reason: "read back different bytes".into(),
            }),
        });
    }
    let probe_dir = ObjectPath::from_iter(probe_path.parts().take(probe_path.parts().count() - 1));
    let listed: Vec<_> = store
        .list(Some(&probe_dir))
        .try_collect()
        .await
        .map_err(os(format!("listing {probe_path}")))
        .map_err(fail(format!("listing objects in {cold}")))?;
    if !listed.iter().any(|o| o.location == probe_path) {
        return Err(Error::StorageCheck {
            storage: id.clone(),
            step: format!("listing objects in {cold}"),
            source: Box::new(Error::Corrupt {
                what: probe_path.to_string(),
                reason: "a written object is not listed".into(),
            }),
        });
    }
    store
        .delete(&probe_path)
        .await
        .map_err(os(format!("deleting {probe_path}")))
        .map_err(fail(format!("deleting an object in {cold}")))?;
    let hot_step = format!("writing to the {} engine", handle.def.hot.kind());
    let p = Partition::new("sys.check").expect("valid partition name");
    async {
        handle.hot.create_partition(&p).await?;
        handle
            .hot
            .put(&p, Bytes::from_static(b"k"), Bytes::from_static(b"v"))
            .await?;
        let got = handle.hot.get(&p, b"k").await?;
        if got.as_deref() != Some(b"v".as_slice()) {
            return Err(Error::Corrupt {
                what: "storage check".into(),
                reason: "read back a different value".into(),
            });
        }
        handle.hot.drop_partition(&p).await
    }
    .await
    .map_err(fail(hot_step))
}

#[cfg(test)]
mod tests;
