//! `ObjectStoreConfig`: which object store holds the engine's state and how writes are acknowledged.

use std::time::Duration;

pub use kalamstore_storage::location::{OpenedStore, S3Options, open_store};

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// After the write is durable in the object store (the default).
    #[default]
    Durable,
    /// As soon as it is in memory; `flush` makes earlier writes durable. Faster, and a crash
    /// loses the writes of the last flush interval.
    Memory,
}

/// Settings of an [`ObjectStoreBackend`](crate::ObjectStoreBackend).
#[derive(Debug, Clone)]
pub struct ObjectStoreConfig {
    /// Where the state lives: `file:///dir`, a plain directory path, `memory://` or
    /// `s3://bucket/prefix`.
    pub url: String,
    /// S3 settings for `s3://` URLs.
    pub s3: S3Options,
    /// When writes are acknowledged.
    pub ack: AckMode,
    /// How often SlateDB flushes its write-ahead log to the store on its own. With durable acks
    /// writers flush together as they write (group commit), and this timer, at least 100 ms
    /// then, is only a backstop.
    pub flush_interval: Duration,
    /// Worker threads of the engine's own runtime.
    pub worker_threads: usize,
    /// Memory for SlateDB's cache of SST data blocks; a quarter of it again caches SST
    /// indexes and filters. Without them every read of a flushed key fetches and verifies an
    /// SST index from the store.
    pub block_cache_bytes: u64,
}

impl ObjectStoreConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            s3: S3Options::default(),
            ack: AckMode::Durable,
            flush_interval: Duration::from_millis(10),
            worker_threads: 2,
            block_cache_bytes: 64 << 20,
        }
    }

    /// Sets the ack mode.
    pub fn with_ack(mut self, ack: AckMode) -> Self {
        self.ack = ack;
        self
    }

    /// Sets the S3 options.
    pub fn with_s3(mut self, s3: S3Options) -> Self {
        self.s3 = s3;
        self
    }
}
