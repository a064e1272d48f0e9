//! The foyer cache against the conformance suite, a stale-read stress test and the range cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use async_trait::async_trait;
use kalamstore_storage::MemoryBackend;
use kalamstore_storage::conformance::BackendFactory;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::*;

/// A hybrid cache (small memory tier, disk tier in a temp dir) over a fresh `MemoryBackend`.
struct OverMemory(tempfile::TempDir);

#[async_trait]
impl BackendFactory for OverMemory {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        let config = FoyerConfig::hybrid(1 << 20, self.0.path(), 16 << 20);
        Ok(Arc::new(
            FoyerBackend::new(Arc::new(MemoryBackend::new()), config).await?,
        ))
    }
}

kalamstore_storage::conformance_suite!(OverMemory(tempfile::tempdir().expect("temp dir")));

fn p(name: &str) -> Partition {
    Partition::new(name).unwrap()
}

/// A `MemoryBackend` whose next `get` can be held after it read its value, so a test can
/// write the key while that read's fill is in flight. Its state token counts the writes, and
/// it outlives a cache's close (as a reopened engine would), so a cache over it can reopen warm.
/// It counts the reads that reach it: single gets, batched gets and their keys.
#[derive(Debug, Default)]
struct Gated {
    inner: MemoryBackend,
    hold_next_get: AtomicBool,
    read: tokio::sync::Notify,
    release: tokio::sync::Notify,
    writes: AtomicU64,
    gets: AtomicUsize,
    batched_gets: AtomicUsize,
    batched_keys: AtomicUsize,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl StorageBackend for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn create_partition(&self, partition: &Partition) -> Result<()> {
        self.inner.create_partition(partition).await
    }
    async fn drop_partition(&self, partition: &Partition) -> Result<()> {
        self.inner.drop_partition(partition).await
    }
    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.inner.list_partitions().await
    }
    async fn partition_exists(&self, partition: &Partition) -> Result<bool> {
        self.inner.partition_exists(partition).await
    }
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let value = self.inner.get(partition, key).await;
        if self.hold_next_get.swap(false, Ordering::SeqCst) {
            self.read.notify_one();
            self.release.notified().await;
        }
        value
    }
    async fn get_many(&self, partition: &Partition, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        self.batched_gets.fetch_add(1, Ordering::SeqCst);
        self.batched_keys.fetch_add(keys.len(), Ordering::SeqCst);
        self.inner.get_many(partition, keys).await
    }
    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.put(partition, key, value).await
    }
    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(partition, key).await
    }
    async fn staged_batch(&self) -> Result<Box<dyn kalamstore_storage::StagedBatch + '_>> {
        Ok(Box::new(kalamstore_storage::BufferedBatch::new(self)))
    }
    async fn batch(&self, batch: WriteBatch) -> Result<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.batch(batch).await
    }
    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk> {
        self.inner.scan(partition, request).await
    }
    async fn scan_with(
        &self,
        partition: &Partition,
        request: &ScanRequest,
        visit: &mut (dyn for<'e> FnMut(&'e [u8], &'e [u8]) -> Result<()> + Send),
    ) -> Result<Option<ScanRequest>> {
        self.inner.scan_with(partition, request, visit).await
    }
    async fn reclaim(&self, partition: &Partition) -> Result<()> {
        self.inner.reclaim(partition).await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
    async fn state_token(&self) -> Result<Option<Vec<u8>>> {
        Ok(Some(
            self.writes.load(Ordering::SeqCst).to_le_bytes().to_vec(),
        ))
    }
    async fn stats(&self) -> Result<BackendStats> {
        self.inner.stats().await
    }
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// A batched read answers what the cache holds and sends every miss to the inner engine in
/// one batched call (its `MultiGet`), never one `get` per key; the misses are then cached.
#[tokio::test]
async fn a_batched_read_sends_its_misses_to_the_engine_in_one_call() {
    let inner = Arc::new(Gated::default());
    let cache = FoyerBackend::new(inner.clone(), FoyerConfig::memory(4 << 20))
        .await
        .unwrap();
    let t = p("t");
    cache.create_partition(&t).await.unwrap();
    let keys: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| format!("k{i:04}").into_bytes())
        .collect();
    let mut batch = WriteBatch::new();
    // Every other key exists; half of those are cached by a single read first.
    for (i, key) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        batch.put(&t, key.clone(), format!("v{i}").into_bytes());
    }
    inner.inner.batch(batch).await.unwrap();
    for key in keys.iter().step_by(4) {
        cache.get(&t, key).await.unwrap();
    }
    let gets = inner.gets.load(Ordering::SeqCst);
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let values = cache.get_many(&t, &refs).await.unwrap();
    let expected: Vec<Option<Bytes>> = (0..1000)
        .map(|i| (i % 2 == 0).then(|| Bytes::from(format!("v{i}"))))
        .collect();
    assert_eq!(values, expected);
    assert_eq!(inner.gets.load(Ordering::SeqCst), gets, "no single gets");
    assert_eq!(inner.batched_gets.load(Ordering::SeqCst), 1);
    assert_eq!(inner.batched_keys.load(Ordering::SeqCst), 750);
    // Now every key (present or absent) is cached: the engine is not asked again.
    assert_eq!(cache.get_many(&t, &refs).await.unwrap(), expected);
    assert_eq!(inner.batched_gets.load(Ordering::SeqCst), 1);
    cache.close().await.unwrap();
}

/// A read that misses and fills races a write of the same key: the read got the old value
/// from the engine, the write (a put, a batch, then a bulk batch) completes, then the fill
/// tries to insert the old value. The cache must keep serving the write's value.
#[tokio::test(flavor = "multi_thread")]
async fn a_fill_that_read_an_old_value_never_lands_after_the_write() {
    let inner = Arc::new(Gated::default());
    let cache = Arc::new(
        FoyerBackend::new(inner.clone(), FoyerConfig::memory(1 << 20))
            .await
            .unwrap(),
    );
    let t = p("t");
    cache.create_partition(&t).await.unwrap();
    for (round, key) in [b"put".as_slice(), b"batch".as_slice(), b"bulk".as_slice()]
        .into_iter()
        .enumerate()
    {
        // The old value is in the engine, not in the cache.
        inner
            .inner
            .put(&t, Bytes::copy_from_slice(key), Bytes::from_static(b"old"))
            .await
            .unwrap();
        inner.hold_next_get.store(true, Ordering::SeqCst);
        let reader = tokio::spawn({
            let cache = cache.clone();
            let (t, key) = (t.clone(), key.to_vec());
            async move { cache.get(&t, &key).await.unwrap() }
        });
        inner.read.notified().await;
        let new = Bytes::from_static(b"new");
        if round == 0 {
            cache
                .put(&t, Bytes::copy_from_slice(key), new.clone())
                .await
                .unwrap();
        } else {
            // Round 2 is a bulk batch: other keys first, this key last.
            let mut batch = WriteBatch::new();
            for other in 0..(round - 1) * BULK_OPS {
                batch.put(&t, Bytes::from(other.to_be_bytes().to_vec()), new.clone());
            }
            batch.put(&t, Bytes::copy_from_slice(key), new.clone());
            cache.batch(batch).await.unwrap();
        }
        inner.release.notify_one();
        // The read began before the write was acknowledged: either value is right for it.
        reader.await.unwrap();
        assert_eq!(cache.get(&t, key).await.unwrap(), Some(new), "{round}");
    }
    cache.close().await.unwrap();
}

/// Many tasks put, delete and get overlapping keys through a tiny cache (so entries are evicted
/// to disk and dropped all the time); every read must return the value of the last
/// acknowledged write of that key, which each task tracks for the keys it owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers_never_see_a_stale_value() {
    storm(0).await;
}

/// The same storm with bulk batches (each batch's key is first overwritten `BULK_OPS` times).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_batches_in_a_storm_never_leave_a_stale_value() {
    storm(BULK_OPS).await;
}

/// Runs the stress test; each batch first puts its key `overwrites` more times.
async fn storm(overwrites: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = FoyerConfig {
        block_bytes: 64 << 10,
        ..FoyerConfig::hybrid(32 << 10, dir.path(), 4 << 20)
    };
    let backend = Arc::new(
        FoyerBackend::new(Arc::new(MemoryBackend::new()), config)
            .await
            .unwrap(),
    );
    backend.create_partition(&p("t")).await.unwrap();
    let tasks = 8u64;
    let keys_per_task = 40u64;
    let rounds = 600u64;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let backend = backend.clone();
            tokio::spawn(async move {
                // Each task owns the keys k % tasks == t (so it knows their latest value) and
                // reads every key (so it races with the other writers).
                let mut model: HashMap<u64, Option<Bytes>> = HashMap::new();
                let mut state = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for round in 0..rounds {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let key_id = (state % keys_per_task) * tasks + t;
                    let key = Bytes::from(key_id.to_be_bytes().to_vec());
                    match state % 5 {
                        0 => {
                            backend.delete(&p("t"), &key).await.unwrap();
                            model.insert(key_id, None);
                        }
                        1 => {
                            let value = Bytes::from(format!(
                                "{t}-{round}-{}",
                                "x".repeat((state % 900) as usize)
                            ));
                            backend.put(&p("t"), key, value.clone()).await.unwrap();
                            model.insert(key_id, Some(value));
                        }
                        2 => {
                            // A batch: a put of this key, a delete of another own key, then a
                            // second put of this key (the later op wins).
                            let other_id = ((state >> 20) % keys_per_task) * tasks + t;
                            let value = Bytes::from(format!("{t}-{round}-batch"));
                            let mut batch = WriteBatch::new();
                            for _ in 0..=overwrites {
                                batch.put(&p("t"), key.clone(), Bytes::from_static(b"overwritten"));
                            }
                            batch.delete(&p("t"), Bytes::from(other_id.to_be_bytes().to_vec()));
                            batch.put(&p("t"), key, value.clone());
                            backend.batch(batch).await.unwrap();
                            model.insert(other_id, None);
                            model.insert(key_id, Some(value));
                        }
                        _ => {
                            let got = backend.get(&p("t"), &key).await.unwrap();
                            let expected = model.get(&key_id).cloned().flatten();
                            assert_eq!(
                                got, expected,
                                "stale read of key {key_id} in round {round}"
                            );
                            // Also read someone else's key to race with their writes.
                            let other = Bytes::from(
                                ((state >> 8) % (keys_per_task * tasks))
                                    .to_be_bytes()
                                    .to_vec(),
                            );
                            backend.get(&p("t"), &other).await.unwrap();
                        }
                    }
                }
                model
            })
        })
        .collect();
    let mut all = HashMap::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    // After the storm, every key reads as its last write.
    for (key_id, expected) in all {
        let got = backend.get(&p("t"), &key_id.to_be_bytes()).await.unwrap();
        assert_eq!(got, expected, "key {key_id}");
    }
    backend.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_and_recreated_partition_serves_no_cached_values() {
    let backend = FoyerBackend::new(Arc::new(MemoryBackend::new()), FoyerConfig::memory(1 << 20))
        .await
        .unwrap();
    backend.create_partition(&p("t")).await.unwrap();
    backend
        .put(&p("t"), Bytes::from_static(b"k"), Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert!(backend.get(&p("t"), b"k").await.unwrap().is_some());
    backend.drop_partition(&p("t")).await.unwrap();
    backend.create_partition(&p("t")).await.unwrap();
    assert_eq!(backend.get(&p("t"), b"k").await.unwrap(), None);
}

/// A hybrid cache (1 MiB memory, 16 MiB disk under `dir`) over a fresh `MemoryBackend`
/// holding partition `t`.
async fn hybrid_with(dir: &std::path::Path, t: &Partition) -> FoyerBackend<MemoryBackend> {
    let config = FoyerConfig::hybrid(1 << 20, dir, 16 << 20);
    let backend = FoyerBackend::new(Arc::new(MemoryBackend::new()), config)
        .await
        .unwrap();
    backend.create_partition(t).await.unwrap();
    backend
}

/// foyer can write an entry evicted just before a newer write to disk after that write's
/// tombstone, and can drop the newer value's own disk write: then the disk tier holds only
/// the older copy. The cache must not serve it.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_copy_that_reaches_disk_after_a_newer_write_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let t = p("t");
    let backend = hybrid_with(dir.path(), &t).await;
    let (key, new) = (Bytes::from_static(b"k"), Bytes::from_static(b"new"));
    backend
        .put(&t, key.clone(), Bytes::from_static(b"old"))
        .await
        .unwrap();
    let ck = backend.cache_key(&t, &key, false);
    let old = backend
        .cache
        .cache
        .memory()
        .get(&ck)
        .unwrap()
        .value()
        .clone();
    backend.put(&t, key.clone(), new.clone()).await.unwrap();
    // The old entry reaches disk after the write; the new one leaves memory without a copy.
    let disk = backend.cache.cache.storage();
    backend
        .cache
        .cache
        .storage_writer(ck.clone())
        .force()
        .insert(old);
    backend.cache.cache.memory().remove(&ck);
    disk.wait().await;
    match disk.load(&ck).await.unwrap() {
        Load::Entry { value, .. } => assert_eq!(value.value.as_deref(), Some(b"old".as_slice())),
        other => panic!("the disk tier should hold the old copy, got {other:?}"),
    }
    assert_eq!(backend.get(&t, &key).await.unwrap(), Some(new.clone()));
    // The read refilled memory with the current value.
    assert_eq!(backend.get(&t, &key).await.unwrap(), Some(new));
    backend.close().await.unwrap();
}

/// After a warm reopen, a copy cached by the earlier process is served until this process
/// writes its partition; from then on it is not, even when it is all the disk tier holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_from_an_earlier_process_is_served_only_until_its_partition_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(Gated::default());
    let open = || {
        FoyerBackend::new(
            inner.clone(),
            FoyerConfig::hybrid(1 << 20, dir.path(), 16 << 20),
        )
    };
    let t = p("t");
    let old = Bytes::from_static(b"old");
    inner.create_partition(&t).await.unwrap();
    for key in [b"a", b"b"] {
        inner
            .put(&t, Bytes::from_static(key), old.clone())
            .await
            .unwrap();
    }
    // The first process only reads; its clean close hands its entries over.
    let first = open().await.unwrap();
    for key in [b"a", b"b"] {
        assert_eq!(first.get(&t, key).await.unwrap(), Some(old.clone()));
    }
    first.close().await.unwrap();

    let second = open().await.unwrap();
    assert_eq!(second.get(&t, b"a").await.unwrap(), Some(old.clone()));
    let stats = second.counters().snapshot();
    assert!(stats.warm_start);
    assert_eq!((stats.hits, stats.misses), (1, 0));
    let ck = second.cache_key(&t, b"a", false);
    let old_copy = second
        .cache
        .cache
        .memory()
        .get(&ck)
        .unwrap()
        .value()
        .clone();

    let new = Bytes::from_static(b"new");
    second
        .put(&t, Bytes::from_static(b"a"), new.clone())
        .await
        .unwrap();
    // b's copy is still on disk but no longer trusted: the inner engine answers.
    assert_eq!(second.get(&t, b"b").await.unwrap(), Some(old));
    assert_eq!(second.counters().snapshot().misses, 1);
    // a's old copy reaches disk after the write and the new value leaves memory without one.
    second
        .cache
        .cache
        .storage_writer(ck.clone())
        .force()
        .insert(old_copy);
    second.cache.cache.memory().remove(&ck);
    second.cache.cache.storage().wait().await;
    assert!(matches!(
        second.cache.cache.storage().load(&ck).await.unwrap(),
        Load::Entry { .. }
    ));
    assert_eq!(second.get(&t, b"a").await.unwrap(), Some(new));
    second.close().await.unwrap();
}

/// A bulk batch takes its keys out of memory; every key then reads the batch's value, whether
/// its old value was in memory, only on disk, or not cached.
#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_batch_takes_its_keys_out_of_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let t = p("t");
    let backend = hybrid_with(dir.path(), &t).await;
    let key = |i: u8| Bytes::from(vec![i]);
    for i in 0..100 {
        backend
            .put(&t, key(i), Bytes::from_static(b"v1"))
            .await
            .unwrap();
    }
    // Keys 0-99 go to disk; 0-49 come back into memory.
    backend.cache.cache.memory().evict_all();
    backend.cache.cache.storage().wait().await;
    for i in 0..50 {
        assert_eq!(
            backend.get(&t, &[i]).await.unwrap().as_deref(),
            Some(b"v1".as_slice())
        );
    }
    let mut batch = WriteBatch::new();
    for i in 0..200 {
        batch.put(&t, key(i), Bytes::from_static(b"v2"));
    }
    backend.batch(batch).await.unwrap();
    let before = backend.counters().snapshot();
    for i in 0..200u8 {
        let cached = backend
            .cache
            .cache
            .memory()
            .contains(&backend.cache_key(&t, &[i], false));
        assert!(!cached, "key {i}");
        assert_eq!(
            backend.get(&t, &[i]).await.unwrap().as_deref(),
            Some(b"v2".as_slice()),
            "key {i}"
        );
    }
    let after = backend.counters().snapshot();
    assert_eq!(
        (after.hits - before.hits, after.misses - before.misses),
        (0, 200)
    );
    backend.close().await.unwrap();
}

/// Counts `get_ranges` calls that reach the wrapped store.
#[derive(Debug)]
struct Counting {
    inner: InMemory,
    ranges: AtomicUsize,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        l: &object_store::path::Path,
        p: PutPayload,
        o: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &object_store::path::Path,
        o: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(
        &self,
        l: &object_store::path::Path,
        o: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(l, o).await
    }
    async fn get_ranges(
        &self,
        l: &object_store::path::Path,
        r: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.ranges.fetch_add(1, Ordering::SeqCst);
        self.inner.get_ranges(l, r).await
    }
    fn delete_stream(
        &self,
        l: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(l)
    }
    fn list(
        &self,
        p: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(p)
    }
    fn list_with_offset(
        &self,
        p: Option<&object_store::path::Path>,
        o: &object_store::path::Path,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list_with_offset(p, o)
    }
    async fn list_with_delimiter(
        &self,
        p: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(p).await
    }
    async fn copy_opts(
        &self,
        f: &object_store::path::Path,
        t: &object_store::path::Path,
        o: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(f, t, o).await
    }
    async fn rename_opts(
        &self,
        f: &object_store::path::Path,
        t: &object_store::path::Path,
        o: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(f, t, o).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_range_reads_are_served_by_the_cache() {
    let counting = Arc::new(Counting {
        inner: InMemory::new(),
        ranges: AtomicUsize::new(0),
    });
    let path = object_store::path::Path::from("t/part-1.parquet");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    counting
        .put(&path, PutPayload::from(data.clone()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = FoyerConfig::hybrid(1 << 20, dir.path(), 8 << 20);
    let open = |source: &'static str| {
        RangeCachedStore::new(
            counting.clone(),
            config.clone(),
            Some(source),
            Arc::default(),
        )
    };
    let cached = open("file:///cold").await.unwrap();
    assert!(!cached.counters().snapshot().warm_start);

    let ranges = [0..100, 5_000..9_000, 99_000..100_000];
    let first = cached.get_ranges(&path, &ranges).await.unwrap();
    assert_eq!(counting.ranges.load(Ordering::SeqCst), 1);
    for _ in 0..10 {
        let again = cached.get_ranges(&path, &ranges).await.unwrap();
        assert_eq!(again, first);
    }
    assert_eq!(
        counting.ranges.load(Ordering::SeqCst),
        1,
        "repeats never reach the inner store"
    );
    assert_eq!(first[1].as_ref(), &data[5_000..9_000]);

    // A partly cached request fetches only the missing range.
    let mixed = cached.get_ranges(&path, &[0..100, 200..300]).await.unwrap();
    assert_eq!(mixed[1].as_ref(), &data[200..300]);
    assert_eq!(counting.ranges.load(Ordering::SeqCst), 2);
    let stats = cached.counters().snapshot();
    assert_eq!((stats.hits, stats.misses), (31, 4));
    assert_eq!(stats.miss_bytes, 100 + 4_000 + 1_000 + 100);
    cached.close().await.unwrap();

    // A clean close over the same source: the disk tier reopens warm.
    let cached = open("file:///cold").await.unwrap();
    assert!(cached.counters().snapshot().warm_start);
    assert_eq!(cached.get_ranges(&path, &ranges).await.unwrap(), first);
    assert_eq!(
        counting.ranges.load(Ordering::SeqCst),
        2,
        "served from disk"
    );
    assert_eq!(cached.counters().snapshot().hits, 3);
    // No clean close (as after a crash): the next open cannot trust the disk tier.
    drop(cached);
    let cached = open("file:///cold").await.unwrap();
    assert!(!cached.counters().snapshot().warm_start);
    assert_eq!(cached.get_ranges(&path, &ranges).await.unwrap(), first);
    assert_eq!(counting.ranges.load(Ordering::SeqCst), 3);
    cached.close().await.unwrap();
    // Another source behind the same directory: cold.
    let cached = open("file:///elsewhere").await.unwrap();
    assert!(!cached.counters().snapshot().warm_start);
    cached.get_ranges(&path, &ranges).await.unwrap();
    assert_eq!(counting.ranges.load(Ordering::SeqCst), 4);
    cached.close().await.unwrap();
}

/// A range delete through the cache: cached rows in the range are never served again, rows
/// outside it still read right, and the hit and miss counters see every lookup.
#[tokio::test(flavor = "multi_thread")]
async fn a_range_delete_through_the_cache_serves_no_deleted_row() {
    let backend = FoyerBackend::new(Arc::new(MemoryBackend::new()), FoyerConfig::memory(1 << 20))
        .await
        .unwrap();
    assert!(backend.capabilities().delete_range, "the inner engine's");
    let t = p("t");
    backend.create_partition(&t).await.unwrap();
    for i in 0..10u8 {
        backend
            .put(&t, Bytes::from(vec![i]), Bytes::from(vec![i; 4]))
            .await
            .unwrap();
    }
    for i in 0..10u8 {
        assert_eq!(
            backend.get(&t, &[i]).await.unwrap(),
            Some(Bytes::from(vec![i; 4]))
        );
    }
    let stats = backend.counters().snapshot();
    assert_eq!((stats.hits, stats.misses, stats.hit_bytes), (10, 0, 40));

    let mut batch = WriteBatch::default();
    batch.delete_range(&t, Bytes::from(vec![2]), Bytes::from(vec![7]));
    batch.put(&t, Bytes::from(vec![9]), Bytes::from_static(b"new"));
    backend.batch(batch).await.unwrap();
    for i in 0..10u8 {
        let expected = match i {
            2..=6 => None,
            9 => Some(Bytes::from_static(b"new")),
            _ => Some(Bytes::from(vec![i; 4])),
        };
        assert_eq!(backend.get(&t, &[i]).await.unwrap(), expected, "key {i}");
    }
    let stats = backend.counters().snapshot();
    assert_eq!(stats.misses, 10, "the partition moved to a new epoch");
    backend.close().await.unwrap();
}

/// A borrowed key lands on the same stripe and memory entry as the owned key it stands for
/// (the bulk path removes keys through it).
#[test]
fn a_borrowed_cache_key_hashes_and_compares_like_the_owned_one() {
    use equivalent::Equivalent;
    use std::hash::BuildHasher;
    let owned = CacheKey {
        epoch: 7,
        key: Bytes::from_static(b"user-42"),
    };
    let borrowed = CacheKeyRef {
        epoch: 7,
        key: b"user-42",
    };
    let hasher = std::hash::RandomState::new();
    assert_eq!(hasher.hash_one(&owned), hasher.hash_one(borrowed));
    let stripes = Stripes::new();
    assert_eq!(stripes.of(&owned), stripes.of(&borrowed));
    assert!(borrowed.equivalent(&owned));
    assert!(
        !CacheKeyRef {
            epoch: 8,
            ..borrowed
        }
        .equivalent(&owned)
    );
    assert!(
        !CacheKeyRef {
            key: b"user-4",
            ..borrowed
        }
        .equivalent(&owned)
    );
}

/// Bulk writes into partitions nothing was read from yet skip the per-key work; readers that
/// start at the same moment must still never leave an older value cached: after each bulk
/// write returns, a read sees it. Many fresh partitions, so the first fill and the first bulk
/// write race many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_writes_racing_the_first_reads_of_a_fresh_partition_leave_nothing_stale() {
    let backend = Arc::new(
        FoyerBackend::new(Arc::new(MemoryBackend::new()), FoyerConfig::memory(1 << 20))
            .await
            .unwrap(),
    );
    let key = Bytes::from_static(b"k");
    for round in 0..200 {
        let t = p(&format!("fresh{round}"));
        backend.create_partition(&t).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (backend, t, stop) = (backend.clone(), t.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        backend.get(&t, b"k").await.unwrap();
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for version in 0..5u8 {
            let mut batch = WriteBatch::new();
            batch.put(&t, key.clone(), [version]);
            for other in 0..BULK_OPS as u32 {
                batch.put(&t, other.to_be_bytes(), [version]);
            }
            backend.batch(batch).await.unwrap();
            assert_eq!(
                backend.get(&t, b"k").await.unwrap().as_deref(),
                Some([version].as_slice()),
                "partition {t}, version {version}"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
    }
}
