//! The binary form of `TableDefinition`: protobuf messages (prost), versioned.
//!
//! Protobuf fields are numbered, so adding a field keeps older bytes decodable: a field an older
//! writer did not know reads as its default. `format_version` says which writer produced the
//! bytes; 0 means a writer from before the field existed and reads like version 1.

use prost::Message;

use super::{
    AccessLevel, ChangeRetention, ColumnDefinition, DeltaPublishing, FlushPolicy, SchemaVersion,
    TableDefinition, TableOptions, TableType,
};
use crate::codec::KalamValue;
use crate::error::{DecodeError, Error, Result};
use crate::ids::{NamespaceId, StorageId, TableId, TableName};
use crate::types::KalamDataType;

/// The definition format this build writes.
pub const DEFINITION_FORMAT_VERSION: u32 = 1;

#[derive(Clone, PartialEq, Message)]
pub(super) struct TableDefinitionProto {
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(string, tag = "3")]
    pub table: String,
    #[prost(int32, tag = "4")]
    pub table_type: i32,
    #[prost(string, tag = "5")]
    pub storage_id: String,
    #[prost(message, optional, tag = "6")]
    pub options: Option<TableOptionsProto>,
    #[prost(message, optional, tag = "7")]
    pub schema: Option<SchemaVersionProto>,
    #[prost(message, repeated, tag = "8")]
    pub history: Vec<SchemaVersionProto>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct TableOptionsProto {
    #[prost(uint64, optional, tag = "1")]
    pub flush_rows: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub flush_interval_secs: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub ttl_seconds: Option<u64>,
    #[prost(int32, tag = "4")]
    pub access_level: i32,
    #[prost(string, optional, tag = "5")]
    pub comment: Option<String>,
    /// 0 (absent): publish a Delta log; 1: do not; 2: with the system columns.
    #[prost(int32, tag = "6")]
    pub delta: i32,
    /// 0 (absent): the default retention; 1: `change_retention` seconds; 2: that many rows;
    /// 3: no change log.
    #[prost(int32, tag = "7")]
    pub change_log: i32,
    #[prost(uint64, tag = "8")]
    pub change_retention: u64,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct SchemaVersionProto {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(message, repeated, tag = "2")]
    pub columns: Vec<ColumnProto>,
    #[prost(int64, tag = "3")]
    pub created_at_ms: i64,
    #[prost(string, tag = "4")]
    pub change: String,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct ColumnProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub ordinal: u32,
    #[prost(message, optional, tag = "3")]
    pub data_type: Option<DataTypeProto>,
    #[prost(bool, tag = "4")]
    pub nullable: bool,
    #[prost(bool, tag = "5")]
    pub primary_key: bool,
    /// The default value in the value codec's `[tag][payload]` form.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub default_value: Option<Vec<u8>>,
    #[prost(string, optional, tag = "7")]
    pub comment: Option<String>,
    /// Stable column id; 0 from writers before ids existed (they had no schema changes,
    /// so the id is the ordinal + 1).
    #[prost(uint32, tag = "8")]
    pub id: u32,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct DataTypeProto {
    /// The value tag of the type (see `KalamDataType`).
    #[prost(uint32, tag = "1")]
    pub tag: u32,
    #[prost(uint32, tag = "2")]
    pub precision: u32,
    #[prost(int32, tag = "3")]
    pub scale: i32,
    #[prost(uint32, tag = "4")]
    pub dim: u32,
}

pub(super) fn encode(def: &TableDefinition) -> Vec<u8> {
    let options = &def.options;
    TableDefinitionProto {
        format_version: DEFINITION_FORMAT_VERSION,
        namespace: def.id.namespace.to_string(),
        table: def.id.table.to_string(),
        table_type: match def.table_type {
            TableType::User => 0,
            TableType::Shared => 1,
            TableType::Stream => 2,
        },
        storage_id: def.storage_id.to_string(),
        options: Some(TableOptionsProto {
            flush_rows: options.flush_policy.rows,
            flush_interval_secs: options.flush_policy.interval.map(|d| d.as_secs()),
            ttl_seconds: options.ttl_seconds,
            access_level: match options.access_level {
                AccessLevel::Private => 0,
                AccessLevel::Public => 1,
                AccessLevel::Restricted => 2,
            },
            comment: options.comment.clone(),
            delta: match options.delta {
                DeltaPublishing::On => 0,
                DeltaPublishing::Off => 1,
                DeltaPublishing::WithSystemColumns => 2,
            },
            change_log: match options.change_retention {
                r if r == ChangeRetention::DEFAULT => 0,
                ChangeRetention::Duration(_) => 1,
                ChangeRetention::Rows(_) => 2,
                ChangeRetention::Off => 3,
            },
            change_retention: match options.change_retention {
                r if r == ChangeRetention::DEFAULT => 0,
                ChangeRetention::Duration(d) => d.as_secs(),
                ChangeRetention::Rows(n) => n,
                ChangeRetention::Off => 0,
            },
        }),
        schema: Some(schema_to_proto(&def.schema)),
        history: def.history.iter().map(schema_to_proto).collect(),
    }
    .encode_to_vec()
}

fn schema_to_proto(s: &SchemaVersion) -> SchemaVersionProto {
    SchemaVersionProto {
        version: s.version,
        columns: s.columns.iter().map(column_to_proto).collect(),
        created_at_ms: s.created_at_ms,
        change: s.change.clone(),
    }
}

fn column_to_proto(c: &ColumnDefinition) -> ColumnProto {
    let (precision, scale, dim) = match c.data_type {
        KalamDataType::Decimal { precision, scale } => (u32::from(precision), i32::from(scale), 0),
        KalamDataType::Embedding { dim } => (0, 0, dim),
        _ => (0, 0, 0),
    };
    ColumnProto {
        name: c.name.clone(),
        ordinal: c.ordinal,
        data_type: Some(DataTypeProto {
            tag: u32::from(c.data_type.tag()),
            precision,
            scale,
            dim,
        }),
        nullable: c.nullable,
        primary_key: c.primary_key,
        default_value: c.default.as_ref().map(|v| {
            let mut out = Vec::with_capacity(v.encoded_len());
            v.encode(&mut out);
            out
        }),
        comment: c.comment.clone(),
        id: c.id,
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::decode(
        "table definition",
        DecodeError::Invalid {
            reason: reason.into(),
        },
    )
}

pub(super) fn decode(bytes: &[u8]) -> Result<TableDefinition> {
    let p = TableDefinitionProto::decode(bytes)
        .map_err(|e| Error::decode("table definition", e.into()))?;
    if p.format_version > DEFINITION_FORMAT_VERSION {
        return Err(Error::decode(
            "table definition",
            DecodeError::UnsupportedVersion {
                version: p.format_version,
            },
        ));
    }
    let id = TableId::new(NamespaceId::new(&p.namespace)?, TableName::new(&p.table)?);
    let table_type = match p.table_type {
        0 => TableType::User,
        1 => TableType::Shared,
        2 => TableType::Stream,
        other => return Err(invalid(format!("table type {other}"))),
    };
    let storage_id = if p.storage_id.is_empty() {
        StorageId::local()
    } else {
        StorageId::new(&p.storage_id)?
    };
    let options = match p.options {
        None => TableOptions::default(),
        Some(o) => TableOptions {
            flush_policy: FlushPolicy {
                rows: o.flush_rows,
                interval: o.flush_interval_secs.map(std::time::Duration::from_secs),
            },
            ttl_seconds: o.ttl_seconds,
            access_level: match o.access_level {
                0 => AccessLevel::Private,
                1 => AccessLevel::Public,
                2 => AccessLevel::Restricted,
                other => return Err(invalid(format!("access level {other}"))),
            },
            comment: o.comment,
            delta: match o.delta {
                0 => DeltaPublishing::On,
                1 => DeltaPublishing::Off,
                2 => DeltaPublishing::WithSystemColumns,
                other => return Err(invalid(format!("Delta publishing {other}"))),
            },
            change_retention: match (o.change_log, o.change_retention) {
                (0, _) => ChangeRetention::DEFAULT,
                (1, secs) if secs > 0 => {
                    ChangeRetention::Duration(std::time::Duration::from_secs(secs))
                }
                (2, rows) if rows > 0 => ChangeRetention::Rows(rows),
                (3, _) => ChangeRetention::Off,
                (kind, n) => return Err(invalid(format!("change retention {kind}/{n}"))),
            },
        },
    };
    let schema = schema_from_proto(p.schema.ok_or_else(|| invalid("no current schema"))?)?;
    let history = p
        .history
        .into_iter()
        .map(schema_from_proto)
        .collect::<Result<Vec<_>>>()?;
    let def = TableDefinition {
        id,
        table_type,
        storage_id,
        options,
        schema,
        history,
    };
    def.validate()?;
    Ok(def)
}

fn schema_from_proto(p: SchemaVersionProto) -> Result<SchemaVersion> {
    Ok(SchemaVersion {
        version: p.version,
        columns: p
            .columns
            .into_iter()
            .map(column_from_proto)
            .collect::<Result<Vec<_>>>()?,
        created_at_ms: p.created_at_ms,
        change: p.change,
    })
}

fn column_from_proto(p: ColumnProto) -> Result<ColumnDefinition> {
    let t = p
        .data_type
        .ok_or_else(|| invalid(format!("column `{}` has no type", p.name)))?;
    let narrow =
        |n: u32| u8::try_from(n).map_err(|_| invalid(format!("parameter {n} of `{}`", p.name)));
    let data_type = match t.tag {
        0x00 => KalamDataType::Null,
        0x01 => KalamDataType::Boolean,
        0x02 => KalamDataType::Int,
        0x03 => KalamDataType::BigInt,
        0x04 => KalamDataType::Double,
        0x05 => KalamDataType::Text,
        0x06 => KalamDataType::Timestamp,
        0x07 => KalamDataType::Date,
        0x08 => KalamDataType::DateTime,
        0x09 => KalamDataType::Json,
        0x0A => KalamDataType::Bytes,
        0x0B => KalamDataType::Time,
        0x0C => KalamDataType::SmallInt,
        0x0D => KalamDataType::Float,
        0x0E => KalamDataType::Uuid,
        0x0F => KalamDataType::Decimal {
            precision: narrow(t.precision)?,
            scale: i8::try_from(t.scale)
                .map_err(|_| invalid(format!("scale {} of `{}`", t.scale, p.name)))?,
        },
        0x10 => KalamDataType::Embedding { dim: t.dim },
        other => return Err(invalid(format!("type tag {other} of column `{}`", p.name))),
    };
    let default = p
        .default_value
        .map(|bytes| KalamValue::decode_from(&bytes))
        .transpose()
        .map_err(|e| Error::decode("column default", e))?;
    Ok(ColumnDefinition {
        id: if p.id == 0 { p.ordinal + 1 } else { p.id },
        name: p.name,
        ordinal: p.ordinal,
        data_type,
        nullable: p.nullable,
        primary_key: p.primary_key,
        default,
        comment: p.comment,
    })
}
