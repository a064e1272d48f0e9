//! `Store`: the embeddable entry point. It opens a data directory, keeps the catalog
//! (namespaces, storages, tables, jobs) in the system storage, and routes every table
//! operation to the table's own storage. By concern: `config` (engines and settings),
//! `catalog` (namespaces, storages, tables), `data` (reads and writes), `feed`, `follow` and
//! `consumers` (the change feed: pulls, subscriptions and their streams, durable consumers),
//! `users` (the server's logins), `sessions` (its connections), `statements` (UPDATE and
//! DELETE of one scope one at a time), `dirlock` (one process per data directory),
//! `jobs` (job records, flush and compaction, and the `JobRunner` part: workers, stop
//! controls, jobs a restart interrupted, queued again), `scheduler` (the `Scheduler` part: the
//! background task, its failure log, STREAM expiry, cleanup), `probe` (the
//! storage check), `alter`, `moves` and `tasks` (crash-safe multi-step operations), `publish` (each
//! table's Delta log).

mod alter;
mod catalog;
mod config;
mod consumers;
mod data;
mod dirlock;
mod feed;
mod follow;
mod jobs;
mod moves;
mod probe;
mod publish;
mod runner;
mod scheduler;
mod sessions;
mod statements;
mod tasks;
mod users;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::{Partition, ScanRequest, StorageBackend, scan_all};
use crate::catalog::StorageDefinition;
use crate::error::{Error, Result};
use crate::ids::{StorageId, TableId};
use crate::location::S3Options;
use crate::seq::SeqGenerator;
use crate::table::{StorageHandle, TableHandle};

pub use crate::job::JobOutcome;
pub use alter::OptionsChange;
pub use config::{EngineProvider, MemoryEngines, StoreConfig};
pub use consumers::ConsumerStart;
pub use data::ScopeStats;
pub use feed::{DEFAULT_BATCH, LiveQuery, SubscribeOptions, Subscription, TablesChangePage};
pub use follow::{StartAt, SubscriptionEvent};
pub use jobs::{JobProgress, Scope};
pub use scheduler::{BackgroundFailure, CleanupOutcome, MaintenanceOutcome};
pub use sessions::{SessionHandle, SessionInfo};
pub use statements::StatementGuard;

/// Catalog partitions of the system storage.
const NAMESPACES: &str = "sys.namespaces";
const STORAGES: &str = "sys.storages";
const TABLES: &str = "sys.tables";
const JOBS: &str = "sys.jobs";
const TASKS: &str = "sys.tasks";
/// Tables whose job records went (past `job_retention_count`) while files they may have
/// orphaned were still within the orphan grace: the next cleanups look at them (key: table id,
/// value: when the job ended, ms BE).
const ORPHAN_WATCH: &str = "sys.orphan_watch";

/// Durable change-feed consumers (key: name, value: `ConsumerRecord`).
const CONSUMERS: &str = "sys.consumers";
/// The server's logins (key: name, value: `UserRecord`).
const USERS: &str = "sys.users";

/// A catalog partition.
fn sys(name: &'static str) -> Partition {
    // Invariant: the names above are short `[a-z.]` constants.
    Partition::new(name).expect("system partition names are valid")
}

struct Inner {
    config: StoreConfig,
    system: Arc<dyn StorageBackend>,
    seq: SeqGenerator,
    /// Lock 6 of `table`'s `# Locking` table.
    storages: tokio::sync::Mutex<HashMap<StorageId, Arc<StorageHandle>>>,
    /// Lock 5.
    tables: tokio::sync::Mutex<HashMap<TableId, Arc<TableHandle>>>,
    /// Lock 1.
    ddl: tokio::sync::Mutex<()>,
    /// The jobs running in this process: their workers, cancel flags and the interrupted
    /// ones queued again.
    jobs: runner::JobRunner,
    /// The background task and what it keeps: failures nobody waits for, the last cleanup.
    scheduler: scheduler::Scheduler,
    /// Live subscriptions (a leaf lock).
    live: follow::LiveRegistry,
    closed: AtomicBool,
    /// Lock 0: one read-modify-write statement per table scope.
    statement_locks: statements::StatementLocks,
    /// A server's open sessions (a leaf lock).
    sessions: Arc<sessions::SessionRegistry>,
    /// The data directory's lock, released by `close`.
    dir_lock: parking_lot::Mutex<Option<dirlock::DirLock>>,
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
    /// The store clock's time, in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    /// Opens (creating if needed) a data directory: the system storage on the default engine
    /// in `<data-dir>/hot`, storage `local` with Parquet in `<data-dir>/cold`. Flushes and
    /// compactions a crash interrupted are queued to run again; other interrupted jobs are
    /// marked failed (moves and drops finish through their table task).
    pub async fn open(config: StoreConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
            op: format!("creating {}", config.data_dir.display()),
            source,
        })?;
        let dir_lock = dirlock::DirLock::acquire(&config.data_dir)?;
        let engine = config.engines.default_engine(&config.data_dir.join("hot"));
        let system = config
            .engines
            .open(&engine, &S3Options::default(), None)
            .await?;
        for p in [
            NAMESPACES,
            STORAGES,
            TABLES,
            JOBS,
            TASKS,
            ORPHAN_WATCH,
            CONSUMERS,
            USERS,
        ] {
            system.create_partition(&sys(p)).await?;
        }
        let workers = config.job_workers.max(1);
        let store = Self {
            inner: Arc::new(Inner {
                seq: SeqGenerator::new(config.node_id)?,
                system,
                storages: tokio::sync::Mutex::new(HashMap::new()),
                tables: tokio::sync::Mutex::new(HashMap::new()),
                ddl: tokio::sync::Mutex::new(()),
                jobs: runner::JobRunner::new(workers),
                scheduler: scheduler::Scheduler::default(),
                live: follow::LiveRegistry::default(),
                closed: AtomicBool::new(false),
                statement_locks: statements::StatementLocks::default(),
                sessions: Arc::default(),
                dir_lock: parking_lot::Mutex::new(Some(dir_lock)),
                config,
            }),
        };
        let local = StorageId::local();
        if store.storage_definition(&local).await?.is_none() {
            let def = StorageDefinition {
                id: local.clone(),
                hot: engine,
                cold_url: catalog::local_cold_url(&store.inner.config.data_dir),
                s3: S3Options::default(),
                cache: None,
                metadata_cache_bytes: None,
                created_at_ms: store.now_ms(),
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
        store.requeue_interrupted_jobs().await?;
        if store.inner.config.background {
            store.start_scheduler();
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

    /// Stops background work and closes every engine.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(h) = self.inner.scheduler.task.lock().take() {
            h.abort();
        }
        // Subscriptions wake up, find the store closed and end with `Error::Closed`.
        for (_, table) in self.inner.tables.lock().await.drain() {
            table.feed.wake();
        }
        let storages: Vec<_> = self.inner.storages.lock().await.drain().collect();
        for (_, s) in storages {
            s.close().await?;
        }
        let closed = self.inner.system.close().await;
        self.inner.dir_lock.lock().take();
        closed
    }
}

#[cfg(test)]
mod tests;
