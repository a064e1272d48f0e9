//! Object-store locations: opening the store an URL names (local directory, `memory://`, `s3://`).

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use url::Url;

use crate::error::{Error, Result};

/// S3 connection settings; unset fields come from the `AWS_*` environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// An opened object store and what it can do.
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
pub fn open_store(url: &str, s3: &S3Options) -> Result<OpenedStore> {
    let bad = |reason: String| Error::BadUrl {
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
    if url.is_empty() {
        return Err(bad("empty".into()));
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
            let store = builder.build().map_err(|source| Error::ObjectStore {
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
        None => local(Path::new(url), url),
    }
}

fn local(path: &Path, url: &str) -> Result<OpenedStore> {
    std::fs::create_dir_all(path).map_err(|source| Error::Io {
        op: format!("creating {}", path.display()),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(path)
        .map_err(|source| Error::ObjectStore {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_and_empty_url_are_refused() {
        assert!(matches!(
            open_store("ftp://x/y", &S3Options::default()),
            Err(Error::BadUrl { .. })
        ));
        assert!(matches!(
            open_store("", &S3Options::default()),
            Err(Error::BadUrl { .. })
        ));
    }

    #[test]
    fn a_plain_path_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b");
        let opened = open_store(&target.to_string_lossy(), &S3Options::default()).unwrap();
        assert!(target.is_dir());
        assert!(!opened.conditional_update);
    }
}
