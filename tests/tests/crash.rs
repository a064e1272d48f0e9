//! Crash safety of every durable engine, by killing a child process: the child writes keys and
//! reports each acknowledged write on stdout; the parent SIGKILLs it mid-stream, reopens the
//! engine in the same directory and checks that every acknowledged write is there.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use kalamstore_foyer::{FoyerBackend, FoyerConfig};
use kalamstore_object_store::{ObjectStoreBackend, ObjectStoreConfig};
use kalamstore_rocksdb::{RocksDbBackend, RocksDbConfig};
use kalamstore_storage::{Partition, StorageBackend, WriteBatch};

const CHILD_ENGINE: &str = "KALAMSTORE_CRASH_ENGINE";
const CHILD_DIR: &str = "KALAMSTORE_CRASH_DIR";
/// Acknowledged writes the parent waits for before it kills the child.
const KILL_AFTER: usize = 150;

async fn open(engine: &str, dir: &Path) -> Arc<dyn StorageBackend> {
    let data = dir.join("data");
    match engine {
        "rocksdb" => Arc::new(RocksDbBackend::open(RocksDbConfig::new(&data)).unwrap()),
        "object_store" => Arc::new(
            ObjectStoreBackend::open(ObjectStoreConfig::new(data.to_string_lossy().into_owned()))
                .await
                .unwrap(),
        ),
        "foyer_rocksdb" => {
            let inner = Arc::new(RocksDbBackend::open(RocksDbConfig::new(&data)).unwrap());
            let cache = FoyerConfig::hybrid(1 << 20, dir.join("cache"), 16 << 20);
            Arc::new(FoyerBackend::new(inner, cache).await.unwrap())
        }
        other => panic!("unknown engine {other}"),
    }
}

fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("value-{i}-{}", "v".repeat(i % 300)))
}

/// The child: when started by a parent below, writes until it is killed. Ignored, so a plain
/// run never counts it as a pass; the parent launches it with `--ignored`.
#[test]
#[ignore = "child process of the crash tests"]
fn crash_child() {
    let (Ok(engine), Ok(dir)) = (std::env::var(CHILD_ENGINE), std::env::var(CHILD_DIR)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let backend = open(&engine, Path::new(&dir)).await;
        let p = Partition::new("t").unwrap();
        backend.create_partition(&p).await.unwrap();
        let mut out = std::io::stdout().lock();
        for i in 0.. {
            let key = Bytes::from(format!("k{i:08}"));
            if i % 3 == 0 {
                let mut batch = WriteBatch::new();
                batch.put(&p, key, value_of(i));
                backend.batch(batch).await.unwrap();
            } else {
                backend.put(&p, key, value_of(i)).await.unwrap();
            }
            writeln!(out, "ACK {i}").unwrap();
            out.flush().unwrap();
        }
    });
}

fn kill_mid_write_and_check(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENGINE, engine)
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(i) = line.strip_prefix("ACK ") {
            acked.push(i.parse::<usize>().unwrap());
            if acked.len() == KILL_AFTER {
                child.kill().unwrap(); // SIGKILL: no destructors, no flush.
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(
        acked.len(),
        KILL_AFTER,
        "the child stopped before it was killed"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = open(engine, dir.path()).await;
        let p = Partition::new("t").unwrap();
        for i in acked {
            let got = backend
                .get(&p, format!("k{i:08}").as_bytes())
                .await
                .unwrap();
            assert_eq!(
                got,
                Some(value_of(i)),
                "{engine}: acknowledged write {i} lost"
            );
        }
        backend.close().await.unwrap();
    });
}

#[test]
fn rocksdb_keeps_every_acknowledged_write_after_sigkill() {
    kill_mid_write_and_check("rocksdb");
}

#[test]
fn object_store_keeps_every_acknowledged_write_after_sigkill() {
    kill_mid_write_and_check("object_store");
}

#[test]
fn foyer_over_rocksdb_keeps_every_acknowledged_write_after_sigkill() {
    kill_mid_write_and_check("foyer_rocksdb");
}
