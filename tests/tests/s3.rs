//! The local S3-compatible server honours the conditional requests SlateDB relies on
//! (`If-None-Match: *` on create, `If-Match` on update), and the object-store engine fences a
//! second opener there as it does on local disk.

use std::sync::Arc;

use bytes::Bytes;
use kalamstore_object_store::{ObjectStoreBackend, ObjectStoreConfig, open_store};
use kalamstore_storage::{Error, Partition, StorageBackend};
use kalamstore_tests::{s3_server, unique_prefix};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload, UpdateVersion};

#[tokio::test]
async fn the_server_honours_conditional_puts() {
    let Some(s3) = s3_server() else { return };
    let opened = open_store(&format!("s3://{}/", s3.bucket), &s3.options).unwrap();
    let store = opened.store;
    let path = Path::from(format!("{}/cas", unique_prefix()));

    let first = store
        .put_opts(&path, PutPayload::from_static(b"1"), PutMode::Create.into())
        .await
        .unwrap();
    let again = store
        .put_opts(&path, PutPayload::from_static(b"2"), PutMode::Create.into())
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "If-None-Match ignored: {again:?}"
    );

    let version = UpdateVersion::from(first);
    let second = store
        .put_opts(
            &path,
            PutPayload::from_static(b"2"),
            PutMode::Update(version.clone()).into(),
        )
        .await
        .unwrap();
    let stale = store
        .put_opts(
            &path,
            PutPayload::from_static(b"3"),
            PutMode::Update(version).into(),
        )
        .await;
    assert!(
        matches!(stale, Err(object_store::Error::Precondition { .. })),
        "If-Match ignored: {stale:?}"
    );
    assert_eq!(
        store.get(&path).await.unwrap().bytes().await.unwrap(),
        Bytes::from_static(b"2")
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_opener_on_s3_fences_the_first() {
    let Some(s3) = s3_server() else { return };
    let config = ObjectStoreConfig::new(format!("s3://{}/{}", s3.bucket, unique_prefix()))
        .with_s3(s3.options);
    let first: Arc<dyn StorageBackend> =
        Arc::new(ObjectStoreBackend::open(config.clone()).await.unwrap());
    let p = Partition::new("t").unwrap();
    first.create_partition(&p).await.unwrap();
    first
        .put(&p, Bytes::from_static(b"a"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    let second = ObjectStoreBackend::open(config).await.unwrap();
    let err = first
        .put(&p, Bytes::from_static(b"b"), Bytes::from_static(b"2"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err:?}");
    assert_eq!(
        second.get(&p, b"a").await.unwrap(),
        Some(Bytes::from_static(b"1"))
    );
    second.close().await.unwrap();
}
