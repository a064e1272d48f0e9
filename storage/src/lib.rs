//! kalamstore's engine-neutral core: the [`StorageBackend`] trait, the in-memory engine, value,
//! row and key codecs, data types, schemas, typed ids, the catalog, and the table layer (writes,
//! flush to Parquet with deletion vectors, merge-on-read, compaction, jobs) behind [`Store`].
//!
//! Engines live in their own crates (`kalamstore-rocksdb`, `kalamstore-object-store`,
//! `kalamstore-foyer`); this crate depends on none of them.

pub mod backend;
pub mod catalog;
pub mod codec;
pub mod error;
pub mod flush;
pub mod ids;
pub mod location;
pub mod memory;
pub mod merge;
pub mod schema;
pub mod seq;
mod spawn;
pub mod store;
pub mod table;
pub mod types;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{
    BackendStats, Capabilities, Direction, KeyRange, KvPair, Partition, ScanChunk, ScanRequest,
    StorageBackend, WriteBatch, WriteOp, scan_all,
};
pub use codec::{KalamValue, Row, SystemColumns};
pub use error::{DecodeError, Error, Result};
pub use ids::{NamespaceId, StorageId, TableId, TableName, UserId};
pub use memory::MemoryBackend;
pub use schema::{
    AccessLevel, ColumnDefinition, FlushPolicy, SchemaChange, SchemaVersion, TableDefinition,
    TableOptions, TableType,
};
pub use types::KalamDataType;

pub use catalog::{
    CacheSpec, HotEngine, JobKind, JobRecord, JobStatus, StorageDefinition, TableTask, TableTaskOp,
};
pub use flush::compact::CompactionPolicy;
pub use location::S3Options;
pub use merge::ScanOptions;
pub use store::{
    EngineProvider, MemoryEngines, OptionsChange, Scope, ScopeStats, Store, StoreConfig,
};
pub use table::filter::{CmpOp, Filter};
pub use table::{Mutation, WriteSummary};
