//! `ObjectStoreConfig`: which object store holds the engine's state and how writes are acknowledged.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use url::Url;

use crate::error::ObjectStoreError;

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

/// S3 connection settings; unset fields come from the `AWS_*` environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: bool,
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
    /// How often SlateDB flushes its write-ahead log to the store.
    pub flush_interval: Duration,
    /// Worker threads of the engine's own runtime.
    pub worker_threads: usize,
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

/// An object store opened from a URL, with what the engine needs to know about it.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Path prefix inside the store (the part of an `s3://` URL after the bucket).
    pub prefix: String,
    /// Whether the store supports conditional overwrites (`If-Match`); LocalFileSystem does not.
    pub conditional_update: bool,
    /// Whether the store lives only in this process's memory.
    pub in_memory: bool,
}

/// Opens the object store a URL names: `file:///dir` or a plain path (created if missing),
/// `memory://`, or `s3://bucket/prefix` with `s3` settings.
pub fn open_store(url: &str, s3: &S3Options) -> Result<OpenedStore, ObjectStoreError> {
    let bad = |reason: String| ObjectStoreError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    if url == "memory://" || url == "memory:" {
        return Ok(OpenedStore {
            store: Arc::new(InMemory::new()),
            prefix: String::new(),
            conditional_update: true,
            in_memory: true,
        });
    }
    let parsed = Url::parse(url).ok().filter(|u| u.scheme().len() > 1);
    match parsed {
        Some(u) if u.scheme() == "s3" => {
            let bucket = u
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| bad("no bucket".into()))?;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(s3.allow_http)
                .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()));
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder.build().map_err(|source| ObjectStoreError::Store {
                op: format!("configuring S3 for {url}"),
                source,
            })?;
            Ok(OpenedStore {
                store: Arc::new(store),
                prefix: u.path().trim_matches('/').to_owned(),
                conditional_update: true,
                in_memory: false,
            })
        }
        Some(u) if u.scheme() == "file" => {
            let path = u
                .to_file_path()
                .map_err(|()| bad("not a local path".into()))?;
            local(&path, url)
        }
        Some(u) => Err(bad(format!("unsupported scheme `{}`", u.scheme()))),
        None => local(std::path::Path::new(url), url),
    }
}

fn local(path: &std::path::Path, url: &str) -> Result<OpenedStore, ObjectStoreError> {
    std::fs::create_dir_all(path).map_err(|source| ObjectStoreError::Io {
        op: format!("creating {}", path.display()),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(path)
        .map_err(|source| ObjectStoreError::Store {
            op: format!("opening {url}"),
            source,
        })?
        .with_automatic_cleanup(true);
    Ok(OpenedStore {
        store: Arc::new(store),
        prefix: String::new(),
        conditional_update: false,
        in_memory: false,
    })
}
