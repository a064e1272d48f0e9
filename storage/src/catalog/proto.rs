//! Protobuf messages (prost) of the catalog records. Fields are numbered, so a newer writer's
//! extra fields are ignored and an older writer's missing fields read as defaults.

use prost::Message;

use super::{
    CacheSpec, ConsumerRecord, HotEngine, JobKind, JobRecord, JobStatus, Role, StorageDefinition,
    TableTask, TableTaskOp, UserRecord,
};
use crate::error::{Error, Result};
use crate::ids::{StorageId, TableId, UserId};
use crate::location::S3Options;

#[derive(Clone, PartialEq, Message)]
struct StorageProto {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    hot_kind: String,
    #[prost(string, tag = "3")]
    hot_location: String,
    #[prost(string, tag = "4")]
    cold_url: String,
    #[prost(string, optional, tag = "5")]
    s3_endpoint: Option<String>,
    #[prost(string, optional, tag = "6")]
    s3_region: Option<String>,
    #[prost(string, optional, tag = "7")]
    s3_access_key_id: Option<String>,
    #[prost(string, optional, tag = "8")]
    s3_secret_access_key: Option<String>,
    #[prost(bool, tag = "9")]
    s3_allow_http: bool,
    #[prost(uint64, optional, tag = "10")]
    cache_memory_bytes: Option<u64>,
    #[prost(uint64, tag = "11")]
    cache_disk_bytes: u64,
    #[prost(string, tag = "12")]
    cache_disk_path: String,
    #[prost(int64, tag = "13")]
    created_at_ms: i64,
    #[prost(uint64, optional, tag = "14")]
    metadata_cache_bytes: Option<u64>,
}

pub(super) fn encode_storage(def: &StorageDefinition) -> Vec<u8> {
    StorageProto {
        id: def.id.to_string(),
        hot_kind: def.hot.kind().into(),
        hot_location: def.hot.location().into(),
        cold_url: def.cold_url.clone(),
        s3_endpoint: def.s3.endpoint.clone(),
        s3_region: def.s3.region.clone(),
        s3_access_key_id: def.s3.access_key_id.clone(),
        s3_secret_access_key: def.s3.secret_access_key.clone(),
        s3_allow_http: def.s3.allow_http,
        cache_memory_bytes: def.cache.as_ref().map(|c| c.memory_bytes),
        cache_disk_bytes: def.cache.as_ref().map_or(0, |c| c.disk_bytes),
        cache_disk_path: def
            .cache
            .as_ref()
            .map_or_else(String::new, |c| c.disk_path.clone()),
        created_at_ms: def.created_at_ms,
        metadata_cache_bytes: def.metadata_cache_bytes,
    }
    .encode_to_vec()
}

fn bad(what: &'static str, reason: String) -> Error {
    Error::Corrupt {
        what: what.into(),
        reason,
    }
}

fn prost_error(what: &'static str) -> impl Fn(prost::DecodeError) -> Error {
    move |e| bad(what, e.to_string())
}

pub(super) fn decode_storage(bytes: &[u8]) -> Result<StorageDefinition> {
    const WHAT: &str = "storage definition";
    let p = StorageProto::decode(bytes).map_err(prost_error(WHAT))?;
    let hot = match p.hot_kind.as_str() {
        "rocksdb" => HotEngine::RocksDb {
            path: p.hot_location,
        },
        "object_store" => HotEngine::ObjectStore {
            url: p.hot_location,
        },
        "memory" => HotEngine::Memory,
        other => return Err(bad(WHAT, format!("unknown engine `{other}`"))),
    };
    Ok(StorageDefinition {
        id: StorageId::new(p.id)?,
        hot,
        cold_url: p.cold_url,
        s3: S3Options {
            endpoint: p.s3_endpoint,
            region: p.s3_region,
            access_key_id: p.s3_access_key_id,
            secret_access_key: p.s3_secret_access_key,
            allow_http: p.s3_allow_http,
        },
        cache: p.cache_memory_bytes.map(|memory_bytes| CacheSpec {
            memory_bytes,
            disk_bytes: p.cache_disk_bytes,
            disk_path: p.cache_disk_path,
        }),
        metadata_cache_bytes: p.metadata_cache_bytes,
        created_at_ms: p.created_at_ms,
    })
}

#[derive(Clone, PartialEq, Message)]
struct JobProto {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    kind: String,
    #[prost(string, optional, tag = "3")]
    table: Option<String>,
    #[prost(string, optional, tag = "4")]
    user: Option<String>,
    #[prost(string, tag = "5")]
    status: String,
    #[prost(int64, tag = "6")]
    created_at_ms: i64,
    #[prost(int64, optional, tag = "7")]
    started_at_ms: Option<i64>,
    #[prost(int64, optional, tag = "8")]
    ended_at_ms: Option<i64>,
    #[prost(uint64, tag = "9")]
    rows: u64,
    #[prost(uint64, tag = "10")]
    bytes: u64,
    #[prost(uint64, tag = "11")]
    files: u64,
    #[prost(string, optional, tag = "12")]
    error: Option<String>,
    #[prost(string, optional, tag = "13")]
    summary: Option<String>,
    #[prost(uint32, tag = "14")]
    attempts: u32,
}

pub(super) fn encode_job(job: &JobRecord) -> Vec<u8> {
    JobProto {
        id: job.id.clone(),
        kind: job.kind.as_str().into(),
        table: job.table.as_ref().map(ToString::to_string),
        user: job.user.as_ref().map(ToString::to_string),
        status: job.status.as_str().into(),
        created_at_ms: job.created_at_ms,
        started_at_ms: job.started_at_ms,
        ended_at_ms: job.ended_at_ms,
        rows: job.rows,
        bytes: job.bytes,
        files: job.files,
        error: job.error.clone(),
        summary: job.summary.clone(),
        attempts: job.attempts,
    }
    .encode_to_vec()
}

pub(super) fn decode_job(bytes: &[u8]) -> Result<JobRecord> {
    const WHAT: &str = "job record";
    let p = JobProto::decode(bytes).map_err(prost_error(WHAT))?;
    Ok(JobRecord {
        id: p.id,
        kind: p.kind.parse::<JobKind>()?,
        table: p.table.map(|t| t.parse::<TableId>()).transpose()?,
        user: p.user.map(UserId::new).transpose()?,
        status: p.status.parse::<JobStatus>()?,
        created_at_ms: p.created_at_ms,
        started_at_ms: p.started_at_ms,
        ended_at_ms: p.ended_at_ms,
        rows: p.rows,
        bytes: p.bytes,
        files: p.files,
        error: p.error,
        summary: p.summary,
        attempts: p.attempts,
    })
}

#[derive(Clone, PartialEq, Message)]
struct TableTaskProto {
    #[prost(string, tag = "1")]
    job: String,
    #[prost(string, tag = "2")]
    table: String,
    /// `move` or `drop`.
    #[prost(string, tag = "3")]
    op: String,
    /// The source of a move; the storage of a drop.
    #[prost(string, tag = "4")]
    from: String,
    #[prost(string, tag = "5")]
    to: String,
    #[prost(bool, tag = "6")]
    switched: bool,
}

pub(super) fn encode_task(task: &TableTask) -> Vec<u8> {
    let (op, from, to, switched) = match &task.op {
        TableTaskOp::Move { from, to, switched } => {
            ("move", from.to_string(), to.to_string(), *switched)
        }
        TableTaskOp::Drop { storage } => ("drop", storage.to_string(), String::new(), false),
    };
    TableTaskProto {
        job: task.job.clone(),
        table: task.table.to_string(),
        op: op.into(),
        from,
        to,
        switched,
    }
    .encode_to_vec()
}

pub(super) fn decode_task(bytes: &[u8]) -> Result<TableTask> {
    const WHAT: &str = "table task";
    let p = TableTaskProto::decode(bytes).map_err(prost_error(WHAT))?;
    let op = match p.op.as_str() {
        "move" => TableTaskOp::Move {
            from: StorageId::new(&p.from)?,
            to: StorageId::new(&p.to)?,
            switched: p.switched,
        },
        "drop" => TableTaskOp::Drop {
            storage: StorageId::new(&p.from)?,
        },
        other => return Err(bad(WHAT, format!("unknown operation `{other}`"))),
    };
    Ok(TableTask {
        job: p.job,
        table: p.table.parse()?,
        op,
    })
}

#[derive(Clone, PartialEq, Message)]
struct ConsumerProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    table: String,
    #[prost(string, optional, tag = "3")]
    user: Option<String>,
    #[prost(bool, tag = "4")]
    all_users: bool,
    #[prost(int64, tag = "5")]
    acked: i64,
    #[prost(int64, tag = "6")]
    created_at_ms: i64,
    #[prost(int64, tag = "7")]
    acked_at_ms: i64,
}

pub(super) fn encode_consumer(c: &ConsumerRecord) -> Vec<u8> {
    ConsumerProto {
        name: c.name.clone(),
        table: c.table.to_string(),
        user: c.user.as_ref().map(ToString::to_string),
        all_users: c.all_users,
        acked: c.acked,
        created_at_ms: c.created_at_ms,
        acked_at_ms: c.acked_at_ms,
    }
    .encode_to_vec()
}

pub(super) fn decode_consumer(bytes: &[u8]) -> Result<ConsumerRecord> {
    const WHAT: &str = "consumer record";
    let p = ConsumerProto::decode(bytes).map_err(prost_error(WHAT))?;
    Ok(ConsumerRecord {
        name: p.name,
        table: p.table.parse()?,
        user: p.user.map(UserId::new).transpose()?,
        all_users: p.all_users,
        acked: p.acked,
        created_at_ms: p.created_at_ms,
        acked_at_ms: p.acked_at_ms,
    })
}

#[derive(Clone, PartialEq, Message)]
struct UserProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    role: String,
    #[prost(bytes = "vec", tag = "3")]
    verifier: Vec<u8>,
    #[prost(int64, tag = "4")]
    created_at_ms: i64,
    #[prost(int64, tag = "5")]
    updated_at_ms: i64,
}

pub(super) fn encode_user(u: &UserRecord) -> Vec<u8> {
    UserProto {
        name: u.name.clone(),
        role: u.role.as_str().to_owned(),
        verifier: u.verifier.clone(),
        created_at_ms: u.created_at_ms,
        updated_at_ms: u.updated_at_ms,
    }
    .encode_to_vec()
}

pub(super) fn decode_user(bytes: &[u8]) -> Result<UserRecord> {
    const WHAT: &str = "user record";
    let p = UserProto::decode(bytes).map_err(prost_error(WHAT))?;
    let role = match p.role.as_str() {
        "operator" => Role::Operator,
        "user" => Role::User,
        other => return Err(bad(WHAT, format!("unknown role `{other}`"))),
    };
    Ok(UserRecord {
        name: p.name,
        role,
        verifier: p.verifier,
        created_at_ms: p.created_at_ms,
        updated_at_ms: p.updated_at_ms,
    })
}
