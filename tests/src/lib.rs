//! Shared fixtures for kalamstore's cross-crate integration tests: engine factories over temp
//! dirs, and the local S3-compatible server the Makefile starts.

use std::sync::Arc;

pub mod tables;

use async_trait::async_trait;
use kalamstore_foyer::{FoyerBackend, FoyerConfig};
use kalamstore_object_store::{ObjectStoreBackend, ObjectStoreConfig, S3Options};
use kalamstore_rocksdb::{RocksDbBackend, RocksDbConfig};
use kalamstore_storage::conformance::BackendFactory;
use kalamstore_storage::{Result, StorageBackend};

/// RocksDB in its own temp dir.
pub struct RocksDbFactory(pub tempfile::TempDir);

impl RocksDbFactory {
    /// A factory over a fresh temp dir.
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }
}

impl Default for RocksDbFactory {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl BackendFactory for RocksDbFactory {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(RocksDbBackend::open(RocksDbConfig::new(
            self.0.path(),
        ))?))
    }
}

/// The object-store engine on a URL (a temp dir unless given).
pub struct ObjectStoreFactory {
    /// Keeps a local directory alive for the factory's lifetime.
    _dir: Option<tempfile::TempDir>,
    config: ObjectStoreConfig,
}

impl ObjectStoreFactory {
    /// On a fresh local temp dir.
    pub fn local() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ObjectStoreConfig::new(dir.path().to_string_lossy().into_owned());
        Self {
            _dir: Some(dir),
            config,
        }
    }

    /// On a unique prefix of the test bucket of the local S3-compatible server, or `None` when
    /// no server is configured (outside CI).
    pub fn s3() -> Option<Self> {
        let s3 = s3_server()?;
        let url = format!("s3://{}/{}", s3.bucket, unique_prefix());
        Some(Self {
            _dir: None,
            config: ObjectStoreConfig::new(url).with_s3(s3.options),
        })
    }
}

#[async_trait]
impl BackendFactory for ObjectStoreFactory {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(
            ObjectStoreBackend::open(self.config.clone()).await?,
        ))
    }
}

/// A foyer hybrid cache (disk tier in its own temp dir) over another factory's engine.
pub struct FoyerFactory<F> {
    inner: F,
    cache_dir: tempfile::TempDir,
}

impl<F> FoyerFactory<F> {
    /// Wraps `inner`.
    pub fn over(inner: F) -> Self {
        Self {
            inner,
            cache_dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

#[async_trait]
impl<F: BackendFactory> BackendFactory for FoyerFactory<F> {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        let inner = self.inner.open().await?;
        let config = FoyerConfig::hybrid(4 << 20, self.cache_dir.path(), 32 << 20);
        Ok(Arc::new(FoyerBackend::new(inner, config).await?))
    }
}

/// The local S3-compatible server's coordinates.
pub struct S3Server {
    /// Bucket the Makefile created for tests.
    pub bucket: String,
    /// Endpoint and credentials.
    pub options: S3Options,
}

/// The server named by `KALAMSTORE_S3_ENDPOINT` (set by `make test`, which starts one).
/// Without it a test that needs it fails with the reason, so it never passes without
/// exercising S3; `KALAMSTORE_SKIP_S3=1` is the explicit opt-out (the test then returns
/// early, saying so).
pub fn s3_server() -> Option<S3Server> {
    match std::env::var("KALAMSTORE_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(S3Server {
            bucket: std::env::var("KALAMSTORE_S3_BUCKET")
                .unwrap_or_else(|_| "kalamstore-test".into()),
            options: S3Options {
                endpoint: Some(endpoint),
                region: Some("us-east-1".into()),
                access_key_id: Some("test".into()),
                secret_access_key: Some("test".into()),
                allow_http: true,
            },
        }),
        _ if std::env::var("KALAMSTORE_SKIP_S3").as_deref() == Ok("1") => {
            eprintln!("skipped (KALAMSTORE_SKIP_S3=1): this test needs an S3-compatible server");
            None
        }
        _ => panic!(
            "KALAMSTORE_S3_ENDPOINT is not set: this test needs an S3-compatible server. Run \
             the tests through `make test` (it starts one), or set KALAMSTORE_SKIP_S3=1 to \
             skip the S3 tests explicitly"
        ),
    }
}

/// A prefix no other test run uses.
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "t{}-{}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
