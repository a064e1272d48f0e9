//! The foyer cache of a storage, proven at the table level: on an object-store storage with
//! `CACHE (...)`, a repeated query is served from the range cache (its hit counter rises, the
//! object store sees no new read, counted by a wrapper under the cache), the flush keeps its
//! range delete, and after a clean restart the disk tier answers the first query.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use kalamstore::{
    CacheRequest, CacheSpec, ColdTier, ColumnDefinition, EngineProvider, Engines, HotEngine,
    KalamDataType, NamespaceId, S3Options, Scope, StorageBackend, StorageDefinition, StorageId,
    Store, StoreConfig, TableDefinition, TableOptions, TableType, UserId,
};
use kalamstore_sql::{Principal, SqlOutput, SqlSession};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Counts the reads that reach the real object store.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    reads: Arc<AtomicUsize>,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, opts: GetOptions) -> object_store::Result<GetResult> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_opts(location, opts).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, o).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        o: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, o).await
    }
}

/// Every engine, with each cold store wrapped in `Counting` below its cache.
struct CountingEngines {
    engines: Engines,
    reads: Arc<AtomicUsize>,
}

#[async_trait]
impl EngineProvider for CountingEngines {
    fn default_engine(&self, dir: &std::path::Path) -> HotEngine {
        self.engines.default_engine(dir)
    }

    async fn open(
        &self,
        engine: &HotEngine,
        s3: &S3Options,
        cache: Option<CacheRequest<'_>>,
    ) -> kalamstore::Result<Arc<dyn StorageBackend>> {
        self.engines.open(engine, s3, cache).await
    }

    async fn cold_store(
        &self,
        store: Arc<dyn ObjectStore>,
        cache: Option<CacheRequest<'_>>,
    ) -> kalamstore::Result<ColdTier> {
        let counted = Arc::new(Counting {
            inner: store,
            reads: self.reads.clone(),
        });
        self.engines.cold_store(counted, cache).await
    }
}

async fn open(dir: &std::path::Path, reads: &Arc<AtomicUsize>) -> Store {
    let engines = CountingEngines {
        engines: Engines::default(),
        reads: reads.clone(),
    };
    let mut config = StoreConfig::new(dir.join("data"), Arc::new(engines));
    config.background = false;
    Store::open(config).await.unwrap()
}

async fn rows(s: &SqlSession, sql: &str) -> String {
    match s.run(sql, &[]).await.unwrap() {
        SqlOutput::Rows(stream) => {
            let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
            pretty_format_batches(&batches).unwrap().to_string()
        }
        SqlOutput::Changed { verb, rows } => format!("{verb} {rows}"),
    }
}

/// `(hits, misses, warm_start)` of the storage's `files` cache, read through SQL.
async fn file_cache(s: &SqlSession) -> String {
    rows(
        s,
        "SELECT hits > 0 AS hit, misses > 0 AS missed, warm_start FROM system.caches \
         WHERE storage_id = 'cached' AND tier = 'files'",
    )
    .await
}

const QUERY: &str = "SELECT kind, count(*), sum(score) FROM app.notes GROUP BY kind ORDER BY kind";

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_object_store_storage_serves_a_repeated_query_and_a_restart_from_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let hot = HotEngine::ObjectStore {
        url: format!("file://{}", dir.path().join("hot").display()),
    };
    repeated_query_and_restart(dir, hot).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_rocksdb_storage_keeps_its_range_delete_flush_and_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let hot = HotEngine::RocksDb {
        path: dir.path().join("hot").display().to_string(),
    };
    repeated_query_and_restart(dir, hot).await;
}

/// A storage with `hot` as its hot engine, its cold tier in a local directory (through
/// `object_store`) and a cache in front of both.
async fn repeated_query_and_restart(dir: tempfile::TempDir, hot_engine: HotEngine) {
    let url = |sub: &str| format!("file://{}", dir.path().join(sub).display());
    let rocksdb = matches!(hot_engine, HotEngine::RocksDb { .. });
    std::fs::create_dir_all(dir.path().join("hot")).unwrap();
    std::fs::create_dir_all(dir.path().join("cold")).unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let store = open(dir.path(), &reads).await;
    let cached = StorageId::new("cached").unwrap();
    store
        .create_storage(StorageDefinition {
            id: cached.clone(),
            hot: hot_engine,
            cold_url: url("cold"),
            s3: S3Options::default(),
            cache: Some(CacheSpec {
                memory_bytes: 8 << 20,
                disk_bytes: 64 << 20,
                disk_path: dir.path().join("cache").display().to_string(),
            }),
            metadata_cache_bytes: None,
            created_at_ms: 0,
        })
        .await
        .unwrap();
    // The cache in front of the hot engine keeps the engine's range delete (RocksDB has one,
    // SlateDB not), so a flush removes the flushed rows with one range delete (counted by
    // the RocksDB engine, whose figures the cache passes on).
    let hot = store.storage_engine(&cached).await.unwrap();
    assert_eq!(hot.name(), "foyer");
    assert_eq!(hot.capabilities().delete_range, rocksdb);
    let range_deletes = || {
        let hot = hot.clone();
        async move {
            let stats = hot.stats().await.unwrap();
            let figure = stats.details.iter().find(|(n, _)| n == "range_deletes");
            figure.map(|(_, v)| v.parse::<u64>().unwrap())
        }
    };

    store
        .create_namespace(&NamespaceId::new("app").unwrap(), false)
        .await
        .unwrap();
    let def = TableDefinition::new(
        "app.notes".parse().unwrap(),
        TableType::User,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("kind", KalamDataType::Text).not_null(),
            ColumnDefinition::new("score", KalamDataType::Int),
        ],
        cached.clone(),
        TableOptions::default(),
        0,
    )
    .unwrap();
    store.create_table(def, false).await.unwrap();
    let alice = UserId::new("alice").unwrap();
    let session = SqlSession::new(store.clone(), Principal::User(alice.clone()))
        .await
        .unwrap();
    let values: Vec<String> = (0..2_000)
        .map(|i| format!("({i}, 'k{}', {i})", i % 3))
        .collect();
    rows(
        &session,
        &format!("INSERT INTO app.notes VALUES {}", values.join(", ")),
    )
    .await;
    let before_flush = range_deletes().await;
    store
        .flush_table(&"app.notes".parse().unwrap(), Scope::User(alice.clone()))
        .await
        .unwrap();
    match (rocksdb, before_flush, range_deletes().await) {
        (true, Some(before), Some(after)) => {
            assert_eq!(after - before, 1, "one range delete for the flushed scope")
        }
        (false, None, None) => {}
        other => panic!("range deletes (rocksdb, before, after): {other:?}"),
    }
    assert!(
        rows(&session, "SELECT hot_rows FROM system.stats")
            .await
            .contains("| 0        |"),
        "the flush removed the hot rows"
    );

    let expected = "+------+-------+--------+\n\
                    | kind | count | sum    |\n\
                    +------+-------+--------+\n\
                    | k0   | 667   | 666333 |\n\
                    | k1   | 667   | 667000 |\n\
                    | k2   | 666   | 665667 |\n\
                    +------+-------+--------+";
    assert_eq!(rows(&session, QUERY).await, expected);
    let after_first = reads.load(Ordering::SeqCst);
    assert!(after_first > 0, "the first run read the Parquet file");
    assert_eq!(rows(&session, QUERY).await, expected);
    assert_eq!(
        reads.load(Ordering::SeqCst),
        after_first,
        "the second run read nothing from the object store"
    );
    assert_eq!(
        file_cache(&session).await,
        "+------+--------+------------+\n\
         | hit  | missed | warm_start |\n\
         +------+--------+------------+\n\
         | true | true   | false      |\n\
         +------+--------+------------+"
    );
    drop(session);
    store.close().await.unwrap();

    // A clean close over the same cold store: the disk tier reopens warm, and the first query
    // after the restart (footers included) is answered without reading the object store.
    reads.store(0, Ordering::SeqCst);
    let store = open(dir.path(), &reads).await;
    let session = SqlSession::new(store.clone(), Principal::User(alice))
        .await
        .unwrap();
    assert_eq!(rows(&session, QUERY).await, expected);
    assert_eq!(
        reads.load(Ordering::SeqCst),
        0,
        "served by the warm disk tier"
    );
    assert_eq!(
        file_cache(&session).await,
        "+------+--------+------------+\n\
         | hit  | missed | warm_start |\n\
         +------+--------+------------+\n\
         | true | false  | true       |\n\
         +------+--------+------------+"
    );
    drop(session);
    store.close().await.unwrap();
}
