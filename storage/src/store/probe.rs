//! The storage check: a write, read, list and delete of a probe in a storage's cold store and
//! hot engine, run before a storage is registered or a table moves onto it; and removal of a
//! directory of a cold store.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::backend::Partition;
use crate::error::{Error, Result};
use crate::seq::now_nanos;
use crate::table::StorageHandle;

/// Deletes every object under `dir` of a storage's cold store.
pub(super) async fn delete_prefix(storage: &StorageHandle, dir: &str) -> Result<()> {
    let listed: Vec<_> = storage
        .cold
        .store
        .list(Some(&ObjectPath::from(dir)))
        .try_collect()
        .await
        .map_err(|source| Error::ObjectStore {
            op: format!("listing {dir}"),
            source,
        })?;
    for object in listed {
        match storage.cold.store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(Error::ObjectStore {
                    op: format!("deleting {}", object.location),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Writes, reads, lists and deletes a probe in the storage's hot engine and cold store.
pub(super) async fn check_storage_handle(handle: &StorageHandle) -> Result<()> {
    let id = handle.def.id.to_string();
    let fail = |step: String| {
        let id = id.clone();
        move |e: Error| Error::StorageCheck {
            storage: id,
            step,
            source: Box::new(e),
        }
    };
    let cold = &handle.def.cold_url;
    let probe_path = {
        let mut p = handle.cold.prefix.clone();
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(&format!("_kalamstore_check/{}", now_nanos()));
        ObjectPath::from(p)
    };
    let store = &handle.cold.store;
    let os = |op: String| move |source| Error::ObjectStore { op, source };
    store
        .put(&probe_path, Bytes::from_static(b"kalamstore").into())
        .await
        .map_err(os(format!("writing {probe_path}")))
        .map_err(fail(format!("writing an object to {cold}")))?;
    let read = async {
        store
            .get(&probe_path)
            .await
            .map_err(os(format!("reading {probe_path}")))?
            .bytes()
            .await
            .map_err(os(format!("reading {probe_path}")))
    }
    .await
    .map_err(fail(format!("reading an object from {cold}")))?;
    if read.as_ref() != b"kalamstore" {
        return Err(Error::StorageCheck {
            storage: id.clone(),
            step: format!("reading an object from {cold}"),
            source: Box::new(Error::Corrupt {
                what: probe_path.to_string(),
                reason: "read back different bytes".into(),
            }),
        });
    }
    let probe_dir = ObjectPath::from_iter(probe_path.parts().take(probe_path.parts().count() - 1));
    let listed: Vec<_> = store
        .list(Some(&probe_dir))
        .try_collect()
        .await
        .map_err(os(format!("listing {probe_path}")))
        .map_err(fail(format!("listing objects in {cold}")))?;
    if !listed.iter().any(|o| o.location == probe_path) {
        return Err(Error::StorageCheck {
            storage: id.clone(),
            step: format!("listing objects in {cold}"),
            source: Box::new(Error::Corrupt {
                what: probe_path.to_string(),
                reason: "a written object is not listed".into(),
            }),
        });
    }
    store
        .delete(&probe_path)
        .await
        .map_err(os(format!("deleting {probe_path}")))
        .map_err(fail(format!("deleting an object in {cold}")))?;
    let hot_step = format!("writing to the {} engine", handle.def.hot.kind());
    // Invariant: a short constant name of partition-safe characters.
    let p = Partition::new("sys.check").expect("valid partition name");
    // The partition stays between checks (empty): creating and dropping one costs RocksDB a
    // rewrite of its OPTIONS file each, the largest part of checking a storage.
    async {
        handle.hot.create_partition(&p).await?;
        handle
            .hot
            .put(&p, Bytes::from_static(b"k"), Bytes::from_static(b"v"))
            .await?;
        let got = handle.hot.get(&p, b"k").await?;
        if got.as_deref() != Some(b"v".as_slice()) {
            return Err(Error::Corrupt {
                what: "storage check".into(),
                reason: "read back a different value".into(),
            });
        }
        handle.hot.delete(&p, b"k").await?;
        if handle.hot.get(&p, b"k").await?.is_some() {
            return Err(Error::Corrupt {
                what: "storage check".into(),
                reason: "a deleted key is still read".into(),
            });
        }
        Ok(())
    }
    .await
    .map_err(fail(hot_step))
}
