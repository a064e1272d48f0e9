//! kalamstore's engine-neutral core: the [`StorageBackend`] trait, the in-memory engine, value,
//! row and key codecs, data types, schemas and typed ids.
//!
//! Engines live in their own crates (`kalamstore-rocksdb`, `kalamstore-object-store`,
//! `kalamstore-foyer`); this crate depends on none of them.

pub mod backend;
pub mod codec;
pub mod error;
pub mod ids;
pub mod memory;
pub mod schema;
pub mod seq;
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
    AccessLevel, ColumnDefinition, FlushPolicy, SchemaVersion, TableDefinition, TableOptions,
    TableType,
};
pub use types::KalamDataType;
