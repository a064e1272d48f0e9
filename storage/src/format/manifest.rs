//! A table's manifest: one entry per live Parquet file, kept in the table's meta partition.
//!
//! Entries and deletion vectors live in the hot engine of the table's own storage, so one
//! atomic batch publishes a flush (new file, new vectors, removal of the flushed hot rows).

use prost::Message;

use crate::error::{Error, Result};

/// One flushed Parquet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Unique id; also the file name (`<id:016x>.parquet`).
    pub id: i64,
    /// Object path inside the storage's cold store.
    pub path: String,
    /// Rows in the file (live or not).
    pub rows: u64,
    /// File size in bytes.
    pub size: u64,
    /// Smallest encoded primary key.
    pub min_key: Vec<u8>,
    /// Largest encoded primary key.
    pub max_key: Vec<u8>,
    /// Smallest `_seq`.
    pub min_seq: i64,
    /// Largest `_seq`.
    pub max_seq: i64,
    /// Schema version the file was written with.
    pub schema_version: u32,
    /// When the file was committed, ms since the epoch.
    pub created_at_ms: i64,
}

#[derive(Clone, PartialEq, Message)]
struct FileMetaProto {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(string, tag = "2")]
    path: String,
    #[prost(uint64, tag = "3")]
    rows: u64,
    #[prost(uint64, tag = "4")]
    size: u64,
    #[prost(bytes = "vec", tag = "5")]
    min_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    max_key: Vec<u8>,
    #[prost(int64, tag = "7")]
    min_seq: i64,
    #[prost(int64, tag = "8")]
    max_seq: i64,
    #[prost(uint32, tag = "9")]
    schema_version: u32,
    #[prost(int64, tag = "10")]
    created_at_ms: i64,
}

impl FileMeta {
    /// Encodes the entry (protobuf).
    pub fn encode(&self) -> Vec<u8> {
        FileMetaProto {
            id: self.id,
            path: self.path.clone(),
            rows: self.rows,
            size: self.size,
            min_key: self.min_key.clone(),
            max_key: self.max_key.clone(),
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            schema_version: self.schema_version,
            created_at_ms: self.created_at_ms,
        }
        .encode_to_vec()
    }

    /// Decodes a stored entry; `table` names it in errors.
    pub fn decode(bytes: &[u8], table: &str) -> Result<Self> {
        let p = FileMetaProto::decode(bytes).map_err(|e| Error::Corrupt {
            what: format!("manifest entry of table {table}"),
            reason: e.to_string(),
        })?;
        Ok(Self {
            id: p.id,
            path: p.path,
            rows: p.rows,
            size: p.size,
            min_key: p.min_key,
            max_key: p.max_key,
            min_seq: p.min_seq,
            max_seq: p.max_seq,
            schema_version: p.schema_version,
            created_at_ms: p.created_at_ms,
        })
    }

    /// Whether `key` lies within the file's key range.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        self.min_key.as_slice() <= key && key <= self.max_key.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let meta = FileMeta {
            id: 42,
            path: "app/t/alice/000000000000002a.parquet".into(),
            rows: 10,
            size: 1234,
            min_key: vec![1, 2],
            max_key: vec![9],
            min_seq: 5,
            max_seq: 50,
            schema_version: 2,
            created_at_ms: 99,
        };
        assert_eq!(FileMeta::decode(&meta.encode(), "app.t").unwrap(), meta);
        assert!(meta.may_hold(&[5]));
        assert!(!meta.may_hold(&[9, 1]));
        assert!(FileMeta::decode(&[0xff], "app.t").is_err());
    }
}
