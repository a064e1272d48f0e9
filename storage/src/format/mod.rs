//! The on-disk layout of a table: its data files, deletion vectors, manifest entries and the
//! keys of its partitions. Flush, compaction, reads and moves take the layout from here; this
//! module imports nothing above `schema`.
//!
//! # A data file
//! One sorted Parquet file per flush of a scope (`paths`: `<ns>/<table>/[_user=<user>/]<id>.parquet`),
//! zstd level 1, row groups of 128 Ki rows, data pages of at most 1024 rows (16 KiB), row-group
//! statistics for every column, page statistics and the page index for `_key` and the
//! primary-key columns, the schema version in the key-value metadata
//! (`kalamstore.schema_version`):
//!
//! | column          | arrow type          | what                                               |
//! |-----------------|---------------------|----------------------------------------------------|
//! | user columns    | per `KalamDataType` | the row's values in the file's schema version      |
//! | `_seq`          | Int64               | write sequence of the row's last write             |
//! | `_updated`      | Int64               | time of the last write, ns since the epoch         |
//! | `_key`          | Binary              | encoded primary key (memcomparable, `codec::key`); the sort key, unique per file, no dictionary, a bloom filter (1% fpp) |
//!
//! Rows are never changed in place: a deleted or replaced row is a position in the file's
//! deletion vector.
//!
//! # A deletion vector
//! The dead row positions (0-based, across row groups) of one file, in the bytes Delta Lake
//! and Iceberg v3 share (`dv`): magic `1681511377` (u32 LE), a portable 64-bit Roaring bitmap,
//! CRC-32 of both (u32 BE). Kept as the value of the file's `v` key in the meta partition.
//!
//! # A manifest entry
//! One protobuf [`FileMeta`] per live file (`manifest`): id, path, rows, size, key and `_seq`
//! ranges, schema version, commit time. Kept as the value of the file's `f` key.
//!
//! # The table's partitions
//! Hot rows, the meta partition (definition, counters, manifest, deletion vectors) and the
//! change log in the storage's hot engine: see `partitions` and `changelog`.

mod changelog;
mod columns;
mod dv;
#[cfg(test)]
mod golden;
mod manifest;
mod partitions;
mod paths;
mod reader;
mod writer;

pub use changelog::{Change, ChangeOp};
pub(crate) use changelog::{
    EntryWriter, Image, LogImage, RawChange, entry_changes, last_seq, log_key, seq_of_log_key,
};
pub(crate) use columns::{
    ALL_KEYS, KeyBounds, bounds_overlap, is_unbounded, key_column, key_mask, output_schema,
    point_key, project,
};
pub use columns::{KEY_COLUMN, file_schema};
pub use dv::{DV_MAGIC, DeletionVector};
pub use manifest::FileMeta;
pub use partitions::{Hidden, HotCount, hot_partition, log_partition, meta_partition};
pub(crate) use partitions::{
    META_DEFINITION, META_DELTA_PENDING, META_LOG_FLOOR, META_OVERLAY, MetaKey, counter_key,
    dv_key, hidden_key, hidden_prefix, manifest_key, scope_prefix, split_hot_key,
};
pub(crate) use paths::{is_delta_log_file, scope_dir, table_dir};
pub use reader::ObjectFileReader;
pub(crate) use reader::{
    DataFile, FileIndexCache, KeyPage, MetadataCache, RowGroupKeys, key_page_ranges,
};
pub(crate) use writer::FileWriter;
pub use writer::{ROW_GROUP_ROWS, writer_properties};
