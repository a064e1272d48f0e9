//! foyer over RocksDB across restarts: the disk tier reopens warm after a clean close when
//! RocksDB is unchanged, and starts cold when that cannot be proven (RocksDB written without
//! the cache, or no clean close).

use std::sync::Arc;

use bytes::Bytes;
use kalamstore_foyer::{FoyerBackend, FoyerConfig};
use kalamstore_rocksdb::{RocksDbBackend, RocksDbConfig};
use kalamstore_storage::{CacheStats, Partition, StorageBackend};

const KEYS: u8 = 50;

struct Dirs {
    _root: tempfile::TempDir,
    db: std::path::PathBuf,
    cache: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    Dirs {
        db: root.path().join("db"),
        cache: root.path().join("cache"),
        _root: root,
    }
}

async fn cached(d: &Dirs) -> FoyerBackend<RocksDbBackend> {
    let db = RocksDbBackend::open(RocksDbConfig::new(&d.db)).unwrap();
    let config = FoyerConfig::hybrid(4 << 20, &d.cache, 32 << 20);
    FoyerBackend::new(Arc::new(db), config).await.unwrap()
}

fn part() -> Partition {
    Partition::new("chat").unwrap()
}

/// Reads every key and returns the counters after.
async fn read_all(cache: &FoyerBackend<RocksDbBackend>, changed: Option<u8>) -> CacheStats {
    for i in 0..KEYS {
        let expected = if changed == Some(i) {
            Bytes::from_static(b"changed")
        } else {
            Bytes::from(vec![i; 100])
        };
        assert_eq!(
            cache.get(&part(), &[i]).await.unwrap(),
            Some(expected),
            "key {i}"
        );
    }
    cache.counters().snapshot()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_disk_tier_reopens_warm_only_when_rocksdb_is_unchanged() {
    let d = dirs();
    let cache = cached(&d).await;
    cache.create_partition(&part()).await.unwrap();
    for i in 0..KEYS {
        cache
            .put(&part(), Bytes::from(vec![i]), Bytes::from(vec![i; 100]))
            .await
            .unwrap();
    }
    cache.close().await.unwrap();

    // The writing process's entries are not trusted (a write's disk copy may be dropped):
    // the partition starts a new epoch, so every read fills from RocksDB.
    let cache = cached(&d).await;
    assert!(cache.counters().snapshot().warm_start);
    let stats = read_all(&cache, None).await;
    assert_eq!((stats.hits, stats.misses), (0, u64::from(KEYS)));
    cache.close().await.unwrap();

    // A process that only read: its entries come back, and RocksDB is never asked.
    let cache = cached(&d).await;
    let stats = read_all(&cache, None).await;
    assert!(stats.warm_start);
    assert_eq!((stats.hits, stats.misses), (u64::from(KEYS), 0));
    cache.close().await.unwrap();

    // RocksDB written while the cache was closed: its state token moved, the cache is dropped
    // and the changed key reads its new value.
    {
        let db = RocksDbBackend::open(RocksDbConfig::new(&d.db)).unwrap();
        db.put(
            &part(),
            Bytes::from(vec![7]),
            Bytes::from_static(b"changed"),
        )
        .await
        .unwrap();
        db.close().await.unwrap();
    }
    let cache = cached(&d).await;
    let stats = read_all(&cache, Some(7)).await;
    assert!(!stats.warm_start);
    assert_eq!((stats.hits, stats.misses), (0, u64::from(KEYS)));
    cache.close().await.unwrap();

    // Warm again after a clean read-only run, then no clean close (as after a crash): the next
    // open cannot prove the disk tier fresh and starts cold.
    let cache = cached(&d).await;
    assert!(cache.counters().snapshot().warm_start);
    read_all(&cache, Some(7)).await;
    drop(cache);
    let cache = cached(&d).await;
    let stats = read_all(&cache, Some(7)).await;
    assert!(!stats.warm_start);
    assert_eq!(stats.hits, 0);
    cache.close().await.unwrap();
}
