//! kalamstore's engine-neutral core: the [`StorageBackend`] trait, the in-memory engine, value,
//! row and key codecs, data types, schemas, typed ids, the catalog, the on-disk format, and the
//! table layer (writes, flush to Parquet with deletion vectors, merge-on-read, compaction,
//! jobs) behind [`Store`].
//!
//! Engines live in their own crates (`kalamstore-rocksdb`, `kalamstore-object-store`,
//! `kalamstore-foyer`); this crate depends on none of them.
//!
//! Layers, each using only those above it in this list: `error`, `ids`, `types`, `backend`,
//! `seq`, `location`, `spawn`, `failpoint`, `job` (foundations); `memory`, `codec`; `schema`,
//! `catalog`, `cache`; `filter`, `format`; `table`; `merge`; `write`, `flush`; `changes`;
//! `delta`; `store`.

#![warn(unreachable_pub)]

pub mod backend;
pub mod cache;
pub mod catalog;
mod changes;
pub mod clock;
pub mod codec;
pub mod error;
pub mod failpoint;
mod filter;
pub mod format;
pub mod ids;
mod job;
pub mod location;
mod memory;
mod merge;
pub mod schema;
mod seq;
mod spawn;
mod store;
mod table;
pub mod timeout;
pub mod types;
mod write;

mod delta;
mod flush;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use backend::{
    BackendStats, BufferedBatch, Capabilities, Direction, KeyRange, KvPair, Partition, ScanChunk,
    ScanRequest, StagedBatch, StorageBackend, WriteBatch, WriteOp, scan_all, scan_each,
};
pub use cache::{
    CacheCounters, CacheRequest, CacheStats, CacheTier, CloseCache, ColdTier, StorageCacheStats,
};
pub use changes::ChangePage;
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{KalamValue, Row, SystemColumns};
pub use error::{DecodeError, Error, Result};
pub use failpoint::{Failpoints, Pause};
pub use format::{Change, ChangeOp};
pub use ids::{KeyScope, NamespaceId, StorageId, TableId, TableName, UserId};
pub use memory::MemoryBackend;
pub use schema::{
    AccessLevel, ChangeRetention, ColumnDefinition, DeltaPublishing, FlushPolicy, SchemaChange,
    SchemaVersion, TableDefinition, TableOptions, TableType,
};
pub use types::KalamDataType;

pub use catalog::{
    CacheSpec, ConsumerRecord, HotEngine, JobKind, JobRecord, JobStatus, Role, StorageDefinition,
    TableTask, TableTaskOp, UserRecord,
};
pub use filter::{CmpOp, Filter};
pub use flush::FlushOutcome;
pub use flush::compact::CompactionPolicy;
pub use location::S3Options;
pub use merge::{
    BatchStream, FileAccess, RowEstimate, ScanFile, ScanOptions, ScanSnapshot, TableScan,
    USER_COLUMN, read_schema,
};
pub use seq::now_nanos;
pub use store::{
    BackgroundFailure, CleanupOutcome, ConsumerStart, DEFAULT_BATCH, EngineProvider, JobOutcome,
    JobProgress, LiveQuery, MaintenanceOutcome, MemoryEngines, OptionsChange, Scope, ScopeStats,
    SessionHandle, SessionInfo, StartAt, StatementGuard, Store, StoreConfig, SubscribeOptions,
    Subscription, SubscriptionEvent, TablesChangePage,
};
pub use table::FileEntry;
pub use write::{BatchMode, Mutation, WriteSummary};
