//! The catalog's records (storages, namespaces, jobs) and their binary (protobuf) form.
//!
//! The catalog lives in the system storage's hot engine, one partition per record kind, keyed
//! by the record's id. Table definitions use the schema module's own protobuf format.

mod proto;

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::ids::{StorageId, TableId, UserId};
use crate::location::S3Options;

/// Which engine holds a storage's hot (row-level) data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotEngine {
    /// RocksDB in a local directory.
    RocksDb {
        /// The directory.
        path: String,
    },
    /// SlateDB on an object store URL (local directory, `memory://`, `s3://`).
    ObjectStore {
        /// The URL.
        url: String,
    },
    /// Process memory: gone when the store closes.
    Memory,
}

impl HotEngine {
    /// The engine's short name: `rocksdb`, `object_store` or `memory`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RocksDb { .. } => "rocksdb",
            Self::ObjectStore { .. } => "object_store",
            Self::Memory => "memory",
        }
    }

    /// Where the engine keeps its data (empty for memory).
    pub fn location(&self) -> &str {
        match self {
            Self::RocksDb { path } => path,
            Self::ObjectStore { url } => url,
            Self::Memory => "",
        }
    }
}

/// A foyer cache in front of a storage's hot engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// Memory tier capacity in bytes.
    pub memory_bytes: u64,
    /// Disk tier capacity in bytes (0: memory only).
    pub disk_bytes: u64,
    /// Directory of the disk tier.
    pub disk_path: String,
}

/// A registered storage: where a table's hot rows and Parquet files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageDefinition {
    /// The storage's id, used by `CREATE TABLE ... STORAGE <id>`.
    pub id: StorageId,
    /// The engine of the hot tier.
    pub hot: HotEngine,
    /// Object store URL of the cold tier (Parquet files).
    pub cold_url: String,
    /// S3 settings for `s3://` URLs (hot and cold).
    pub s3: S3Options,
    /// Optional foyer cache over the hot engine.
    pub cache: Option<CacheSpec>,
    /// Byte budget of the Parquet metadata cache (`METADATA CACHE '<size>'`); `None`: the
    /// store's default.
    pub metadata_cache_bytes: Option<u64>,
    /// When it was registered, ms since the epoch.
    pub created_at_ms: i64,
}

impl StorageDefinition {
    /// Encodes the definition (protobuf).
    pub fn encode(&self) -> Vec<u8> {
        proto::encode_storage(self)
    }

    /// Decodes a stored definition.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        proto::decode_storage(bytes)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Buffered rows to Parquet.
    Flush,
    /// Rewrites Parquet files without deleted rows.
    Compaction,
    /// Removes old job records and orphaned files.
    Cleanup,
    /// Moves a table to another storage.
    Move,
    /// Removes a dropped table's data from its storage.
    Drop,
    /// Reclaims expired STREAM rows.
    Expiry,
    /// Rebuilds a table's Delta log from its manifest.
    Publish,
    /// Writes one user's rows to a file (an application job).
    Export,
    /// Restores one user's rows from a file (an application job).
    Import,
}

/// Where a job is in its life: `new -> queued -> running -> completed | failed | retrying |
/// cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Recorded, not yet scheduled.
    New,
    /// Waiting for its turn.
    Queued,
    /// Running now.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Failed and will run again.
    Retrying,
    /// Stopped on request before it committed.
    Cancelled,
}

impl JobKind {
    /// How many times a job of this kind runs before a transient failure is final: flushes,
    /// compactions and republishing are idempotent and retried; cleanup runs again when it is
    /// next due; moves and drops finish through their table task.
    pub fn max_attempts(self) -> u32 {
        match self {
            Self::Flush | Self::Compaction | Self::Publish | Self::Expiry => 3,
            Self::Cleanup | Self::Move | Self::Drop | Self::Export | Self::Import => 1,
        }
    }
}

impl JobStatus {
    /// Whether the job has finished (completed, failed or cancelled).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

macro_rules! names {
    ($ty:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $ty {
            /// The lower-case name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok(Self::$variant),)*
                    _ => Err(Error::InvalidValue {
                        column: stringify!($ty).into(),
                        reason: format!("unknown value `{s}`"),
                    }),
                }
            }
        }
    };
}

names!(JobKind { Flush = "flush", Compaction = "compaction", Cleanup = "cleanup", Move = "move", Drop = "drop", Expiry = "expiry", Publish = "publish", Export = "export", Import = "import" });
names!(JobStatus {
    New = "new",
    Queued = "queued",
    Running = "running",
    Completed = "completed",
    Failed = "failed",
    Retrying = "retrying",
    Cancelled = "cancelled",
});

/// One job as recorded in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// `j-<hex>`, unique and increasing.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// The table it works on, if any.
    pub table: Option<TableId>,
    /// The user scope it works on (USER tables), if limited to one.
    pub user: Option<UserId>,
    /// Where it is in its life.
    pub status: JobStatus,
    /// When it was recorded, ms since the epoch.
    pub created_at_ms: i64,
    /// When it started running.
    pub started_at_ms: Option<i64>,
    /// When it finished.
    pub ended_at_ms: Option<i64>,
    /// Rows written (flush, compaction) or removed (expiry, cleanup).
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files written.
    pub files: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// What it did, in words, where the counters do not say it all (cleanup).
    pub summary: Option<String>,
    /// How many times it started: 1, plus one per retry after a transient failure.
    pub attempts: u32,
}

impl JobRecord {
    /// Encodes the record (protobuf).
    pub fn encode(&self) -> Vec<u8> {
        proto::encode_job(self)
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        proto::decode_job(bytes)
    }
}

/// A durable change-feed consumer (an agent following a table): its acknowledged cursor is
/// kept in the catalog, so a restarted consumer resumes after what it acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Its name, `[a-z][a-z0-9_]*`.
    pub name: String,
    /// The table it follows.
    pub table: TableId,
    /// Whose changes: one user of a USER table, or `None` (every user of a USER table when
    /// `all_users`, else a SHARED or STREAM table's).
    pub user: Option<UserId>,
    /// Every user's changes of a USER table.
    pub all_users: bool,
    /// Every change up to this `_seq` is acknowledged.
    pub acked: i64,
    /// When it was created, ms since the epoch.
    pub created_at_ms: i64,
    /// When it last acknowledged, ms since the epoch.
    pub acked_at_ms: i64,
}

impl ConsumerRecord {
    /// Encodes the record (protobuf).
    pub fn encode(&self) -> Vec<u8> {
        proto::encode_consumer(self)
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        proto::decode_consumer(bytes)
    }
}

/// What a login may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs every statement: DDL, storages, jobs, files, `EXECUTE AS USER`, `FOR ALL USERS`.
    Operator,
    /// Reads and writes its own rows of USER tables (its name is the `UserId`) and SHARED
    /// and STREAM tables.
    User,
}

impl Role {
    /// `operator` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::User => "user",
        }
    }
}

/// A login of the server: its name, role and credential verifier. The core keeps the
/// verifier opaque; the server writes and checks it (SCRAM-SHA-256), so no password is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The login name; for a user role also the `UserId` of its rows.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The credential verifier, as the server encoded it.
    pub verifier: Vec<u8>,
    /// When it was created, ms since the epoch.
    pub created_at_ms: i64,
    /// When its password or role last changed, ms since the epoch.
    pub updated_at_ms: i64,
}

impl UserRecord {
    /// Encodes the record (protobuf).
    pub fn encode(&self) -> Vec<u8> {
        proto::encode_user(self)
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        proto::decode_user(bytes)
    }
}

/// A multi-step table operation in progress, recorded before its first step so that a
/// restart finishes or undoes it. Keyed by table: a table has at most one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTask {
    /// The job doing it.
    pub job: String,
    /// The table.
    pub table: TableId,
    /// What is being done.
    pub op: TableTaskOp,
}

/// The operation of a [`TableTask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableTaskOp {
    /// Copying the table from `from` to `to`. Before `switched` the catalog points at `from`
    /// and a restart removes the partial copy; after it, at `to`, and a restart removes the
    /// source.
    Move {
        /// The source storage.
        from: StorageId,
        /// The target storage.
        to: StorageId,
        /// Whether the catalog already points at `to`.
        switched: bool,
    },
    /// Removing a dropped table's data from `storage`.
    Drop {
        /// Where the data is.
        storage: StorageId,
    },
}

impl TableTask {
    /// Encodes the record (protobuf).
    pub fn encode(&self) -> Vec<u8> {
        proto::encode_task(self)
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        proto::decode_task(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_definitions_round_trip() {
        let def = StorageDefinition {
            id: StorageId::new("s3_cold").unwrap(),
            hot: HotEngine::ObjectStore {
                url: "s3://b/hot".into(),
            },
            cold_url: "s3://b/cold".into(),
            s3: S3Options {
                endpoint: Some("http://127.0.0.1:9555".into()),
                allow_http: true,
                ..Default::default()
            },
            cache: Some(CacheSpec {
                memory_bytes: 1 << 20,
                disk_bytes: 1 << 24,
                disk_path: "/tmp/c".into(),
            }),
            metadata_cache_bytes: Some(8 << 20),
            created_at_ms: 7,
        };
        assert_eq!(StorageDefinition::decode(&def.encode()).unwrap(), def);
        assert!(StorageDefinition::decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn job_records_round_trip() {
        let job = JobRecord {
            id: "j-1".into(),
            kind: JobKind::Flush,
            table: Some("app.messages".parse().unwrap()),
            user: Some(UserId::new("alice").unwrap()),
            status: JobStatus::Completed,
            created_at_ms: 1,
            started_at_ms: Some(2),
            ended_at_ms: Some(3),
            rows: 10,
            bytes: 100,
            files: 1,
            error: None,
            summary: Some("flushed".into()),
            attempts: 2,
        };
        assert_eq!(JobRecord::decode(&job.encode()).unwrap(), job);
        for op in [
            TableTaskOp::Move {
                from: StorageId::local(),
                to: StorageId::new("s3").unwrap(),
                switched: true,
            },
            TableTaskOp::Drop {
                storage: StorageId::local(),
            },
        ] {
            let task = TableTask {
                job: "j-2".into(),
                table: "app.t".parse().unwrap(),
                op,
            };
            assert_eq!(TableTask::decode(&task.encode()).unwrap(), task);
        }
        assert_eq!("Running".parse::<JobStatus>().unwrap(), JobStatus::Running);
    }
}
