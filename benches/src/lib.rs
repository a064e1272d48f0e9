//! What kalamstore's criterion benches share: an object store with injected latency, and the
//! result records the engine bench writes and `bench-report` turns into README's table and chart.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use serde::{Deserialize, Serialize};

/// An object store that takes `latency` for every request, like a remote store would. A put
/// the local store rejects as unsupported (SlateDB tags conditional puts with attributes, which
/// S3 keeps and a local directory cannot, then retries without them) fails at once: on S3 that
/// round trip does not happen, so charging it would double every WAL write.
#[derive(Debug)]
pub struct LatencyStore {
    inner: Arc<dyn ObjectStore>,
    latency: Duration,
}

impl LatencyStore {
    /// Wraps `inner`, delaying each request by `latency`.
    pub fn new(inner: Arc<dyn ObjectStore>, latency: Duration) -> Self {
        Self { inner, latency }
    }
}

impl fmt::Display for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatencyStore({}, {:?})", self.inner, self.latency)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for LatencyStore {
    async fn put_opts(
        &self,
        l: &Path,
        p: PutPayload,
        o: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(l, p, o).await;
        if !matches!(
            result,
            Err(object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. })
        ) {
            tokio::time::sleep(self.latency).await;
        }
        result
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        tokio::time::sleep(self.latency).await;
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
        tokio::time::sleep(self.latency).await;
        self.inner.get_opts(l, o).await
    }
    async fn get_ranges(&self, l: &Path, r: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        tokio::time::sleep(self.latency).await;
        self.inner.get_ranges(l, r).await
    }
    fn delete_stream(
        &self,
        l: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(l)
    }
    fn list(&self, p: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(p)
    }
    fn list_with_offset(
        &self,
        p: Option<&Path>,
        o: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(p, o)
    }
    async fn list_with_delimiter(&self, p: Option<&Path>) -> object_store::Result<ListResult> {
        tokio::time::sleep(self.latency).await;
        self.inner.list_with_delimiter(p).await
    }
    async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> object_store::Result<()> {
        tokio::time::sleep(self.latency).await;
        self.inner.copy_opts(f, t, o).await
    }
    async fn rename_opts(&self, f: &Path, t: &Path, o: RenameOptions) -> object_store::Result<()> {
        tokio::time::sleep(self.latency).await;
        self.inner.rename_opts(f, t, o).await
    }
}

/// One engine on one workload, as measured by the engines bench.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// Engine label, e.g. `rocksdb` or `plain rust-rocksdb`.
    pub engine: String,
    /// Workload label, e.g. `load`, `ycsb-a`.
    pub workload: String,
    /// Operations (rows for `load`) per second.
    pub ops_per_sec: f64,
    /// Median latency of one operation, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// The series of rounds this run belongs to (`scripts/bench-engines` sets
    /// `KALAMSTORE_BENCH_SERIES`); `None` for a plain `cargo bench` run.
    #[serde(default)]
    pub series: Option<String>,
    /// The round within the series.
    #[serde(default)]
    pub round: Option<u32>,
}

/// The series and round of this process's engine run, from `KALAMSTORE_BENCH_SERIES` and
/// `KALAMSTORE_BENCH_ROUND`.
pub fn bench_round() -> (Option<String>, Option<u32>) {
    let series = std::env::var("KALAMSTORE_BENCH_SERIES")
        .ok()
        .filter(|s| !s.is_empty());
    let round = std::env::var("KALAMSTORE_BENCH_ROUND")
        .ok()
        .and_then(|r| r.parse().ok());
    (series, round)
}

/// Where the engines bench writes its results (one JSON record per line).
pub fn results_path() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("kalamstore-bench").join("engines.jsonl")
}

/// One table-layer measurement next to its raw-library baseline, as the tables bench records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RatioResult {
    /// What was measured, e.g. `flush 1M rows`.
    pub bench: String,
    /// What kalamstore ran.
    pub ours: String,
    /// What the raw library ran.
    pub baseline: String,
    /// Mean seconds per iteration of ours.
    pub ours_secs: f64,
    /// Mean seconds per iteration of the baseline.
    pub baseline_secs: f64,
    /// The target, as text (e.g. `>= 0.7x speed`).
    pub target: String,
    /// Bytes each iteration moved, for workloads reported as throughput.
    #[serde(default)]
    pub bytes: Option<u64>,
}

/// Where the tables bench writes its results (one JSON record per line).
pub fn tables_results_path() -> PathBuf {
    results_path().with_file_name("tables.jsonl")
}

/// Where the SQL bench writes its query results (one JSON record per line).
pub fn sql_results_path() -> PathBuf {
    results_path().with_file_name("sql.jsonl")
}

/// Appends one JSON record to `file` next to the other results (`feed.jsonl`, ...). A bench
/// still prints its result when the file cannot be written.
pub fn append_result(file: &str, record: &serde_json::Value) {
    use std::io::Write as _;
    let path = results_path().with_file_name(file);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = writeln!(f, "{record}");
    }
}

/// Where the SQL bench writes its memory measurements (one JSON record per line).
pub fn sql_memory_path() -> PathBuf {
    results_path().with_file_name("sql-memory.jsonl")
}

/// The peak memory of a streamed query, as the SQL bench records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryResult {
    /// What was measured.
    pub bench: String,
    /// Peak resident set size of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Bytes of the data directory.
    pub data_bytes: u64,
    /// Seconds the query took.
    pub secs: f64,
    /// The target, as text.
    pub target: String,
}

/// Median and 99th percentile of latencies, in microseconds.
pub fn percentiles(latencies: &mut [Duration]) -> (f64, f64) {
    if latencies.is_empty() {
        return (0.0, 0.0);
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() - 1) as f64 * q).round() as usize;
        latencies[i].as_secs_f64() * 1e6
    };
    (at(0.50), at(0.99))
}

/// Runs `command` (stdout and stderr to `/dev/null`) to its end, sampling its peak RSS
/// (`VmHWM`) every `every`; its wall time and peak RSS in bytes, or `None` if it cannot start.
pub fn run_with_peak_rss(
    command: &mut std::process::Command,
    every: Duration,
) -> Option<(Duration, u64)> {
    let start = std::time::Instant::now();
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) => std::thread::sleep(every),
        }
    }
    Some((start.elapsed(), peak_kib * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_ranks() {
        let mut l: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let (p50, p99) = percentiles(&mut l);
        assert!(
            (p50 - 50.0).abs() <= 1.0 && (p99 - 99.0).abs() <= 1.0,
            "{p50} {p99}"
        );
        assert_eq!(percentiles(&mut []), (0.0, 0.0));
    }
}
