//! The `StorageBackend` trait every engine implements, and the request types it takes.

use std::fmt;
use std::ops::Bound;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};

mod batch;

pub use batch::{WriteBatch, WriteOp};

/// Longest partition name, in bytes.
pub const MAX_PARTITION_NAME_LEN: usize = 200;

/// A validated partition name: 1..=200 bytes of `[A-Za-z0-9_.:-]`.
///
/// The character set keeps names safe as RocksDB column-family names, file names and
/// object-store path segments alike. Cloning is cheap (a shared string); a write batch names
/// each of its partitions once, not per op.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(std::sync::Arc<str>);

impl Partition {
    /// Validates and wraps a partition name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_PARTITION_NAME_LEN {
            Some("it is longer than 200 bytes")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        {
            Some("only ASCII letters, digits and `_ . : -` are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidPartitionName { name, reason }),
            None => Ok(Self(name.into())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which keys a scan visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Every key of the partition.
    All,
    /// Keys starting with these bytes.
    Prefix(Bytes),
    /// Keys between two bounds.
    Range(Bound<Bytes>, Bound<Bytes>),
}

impl KeyRange {
    /// The range as a pair of bounds; a prefix becomes `[prefix, successor(prefix))`.
    pub fn bounds(&self) -> (Bound<Bytes>, Bound<Bytes>) {
        match self {
            Self::All => (Bound::Unbounded, Bound::Unbounded),
            Self::Prefix(p) => (
                Bound::Included(p.clone()),
                prefix_successor(p).map_or(Bound::Unbounded, Bound::Excluded),
            ),
            Self::Range(start, end) => (start.clone(), end.clone()),
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when no such key
/// exists (an empty or all-`0xFF` prefix).
pub fn prefix_successor(prefix: &[u8]) -> Option<Bytes> {
    let end = prefix.iter().rposition(|b| *b != 0xFF)?;
    let mut out = prefix[..=end].to_vec();
    out[end] += 1;
    Some(out.into())
}

/// Scan direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Ascending key order.
    #[default]
    Forward,
    /// Descending key order.
    Reverse,
}

/// Default number of entries an engine returns per scan chunk.
pub const DEFAULT_CHUNK_SIZE: usize = 1024;

/// A scan: range, direction, total limit and chunk size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    /// Keys to visit.
    pub range: KeyRange,
    /// Order of the results.
    pub direction: Direction,
    /// Stop after this many entries in total.
    pub limit: Option<usize>,
    /// Most entries per returned chunk (at least 1).
    pub chunk_size: usize,
}

impl Default for ScanRequest {
    fn default() -> Self {
        Self {
            range: KeyRange::All,
            direction: Direction::Forward,
            limit: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl ScanRequest {
    /// A forward scan over `range`.
    pub fn new(range: KeyRange) -> Self {
        Self {
            range,
            ..Self::default()
        }
    }

    /// A forward scan of keys starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        Self::new(KeyRange::Prefix(prefix.into()))
    }

    /// Sets the direction.
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Sets the total limit.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sets the chunk size.
    pub fn chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// How many entries the next chunk may hold: `chunk_size` capped by the limit.
    pub fn chunk_budget(&self) -> usize {
        let chunk = self.chunk_size.max(1);
        self.limit.map_or(chunk, |l| l.min(chunk))
    }

    /// The request for the chunk after one that returned `returned` entries ending at `last`,
    /// or `None` when the scan is complete. Engines call this to build [`ScanChunk::resume`].
    pub fn resume_after(&self, last: Option<&Bytes>, returned: usize) -> Option<Self> {
        let last = last?;
        if returned < self.chunk_budget() {
            return None;
        }
        let limit = match self.limit {
            Some(l) if l <= returned => return None,
            Some(l) => Some(l - returned),
            None => None,
        };
        let (start, end) = self.range.bounds();
        let range = match self.direction {
            Direction::Forward => KeyRange::Range(Bound::Excluded(last.clone()), end),
            Direction::Reverse => KeyRange::Range(start, Bound::Excluded(last.clone())),
        };
        Some(Self {
            range,
            direction: self.direction,
            limit,
            chunk_size: self.chunk_size,
        })
    }
}

/// One key and its value.
pub type KvPair = (Bytes, Bytes);

/// One chunk of a scan and how to continue it.
#[derive(Debug, Clone, Default)]
pub struct ScanChunk {
    /// Entries in scan order, at most `chunk_budget()` of them.
    pub entries: Vec<KvPair>,
    /// The request for the next chunk, `None` when the scan is complete.
    pub resume: Option<ScanRequest>,
}

/// What an engine guarantees; conformance cases branch on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Data survives `close` and reopening the same location.
    pub durable: bool,
    /// An acknowledged write survives the process being killed (without `flush`).
    pub durable_on_ack: bool,
    /// The engine may drop entries on its own (a pure cache).
    pub may_evict: bool,
    /// Batches may hold [`WriteOp::DeleteRange`] (one range tombstone instead of a delete per
    /// key, which also spares later scans from skipping each deleted key).
    pub delete_range: bool,
}

/// Counters an engine reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// The engine's name.
    pub engine: &'static str,
    /// Number of partitions.
    pub partitions: usize,
    /// Estimated number of keys, when the engine knows.
    pub approximate_keys: Option<u64>,
    /// Estimated bytes of live data, when the engine knows.
    pub approximate_bytes: Option<u64>,
    /// Engine-specific figures, as name and value.
    pub details: Vec<(String, String)>,
}

/// An ordered key-value store with partitions: the hot tier under kalamstore's tables.
///
/// # Contract
/// - `get` of a key that was never written, or was deleted, returns `Ok(None)`.
/// - `put` of an existing key replaces its value; the last acknowledged write wins.
/// - `delete` is idempotent: deleting a missing key succeeds.
/// - Empty keys and empty values are valid; values of at least 8 MiB are supported.
/// - A `batch` is all-or-nothing across partitions: if any op fails (e.g. its partition does not
///   exist), no op is applied and readers never see part of it.
/// - `scan` returns entries ordered by key bytes (descending for [`Direction::Reverse`]), only
///   inside the requested prefix or bounds, at most `limit` in total, in chunks of at most
///   `chunk_size`; following `resume` visits every remaining key exactly once. Chunks are not
///   one snapshot: a key written between chunks may or may not be seen.
/// - Partitions are isolated: a key in one is invisible in every other, whatever their names.
/// - `create_partition` is idempotent; `drop_partition` removes the partition and all its data
///   and is idempotent; every other operation on a missing partition fails with
///   [`Error::PartitionNotFound`]. `list_partitions` is sorted by name.
/// - Concurrent writers from many tasks lose nothing.
/// - `reclaim` changes no entry: reads before and after it agree.
/// - After `flush` returns, every earlier acknowledged write is durable, when
///   `capabilities().durable`; then closing and reopening the same location keeps all data.
/// - After `close`, every operation fails with [`Error::Closed`]; `close` is idempotent.
/// - Methods may be called from any async context (any runtime, any thread): engines that run
///   their own background tasks keep them on their own runtime.
#[async_trait]
pub trait StorageBackend: Send + Sync + fmt::Debug {
    /// The engine's name, e.g. `rocksdb`.
    fn name(&self) -> &'static str;

    /// What this engine guarantees.
    fn capabilities(&self) -> Capabilities;

    /// Creates a partition; creating an existing one is a no-op.
    async fn create_partition(&self, partition: &Partition) -> Result<()>;

    /// Drops a partition and all its data; dropping a missing one is a no-op.
    async fn drop_partition(&self, partition: &Partition) -> Result<()>;

    /// All partitions, sorted by name.
    async fn list_partitions(&self) -> Result<Vec<Partition>>;

    /// Whether the partition exists.
    async fn partition_exists(&self, partition: &Partition) -> Result<bool>;

    /// The value of `key`, or `None`.
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Bytes>>;

    /// The values of many keys, in the order given. Engines may answer a batch faster than
    /// one `get` per key (RocksDB proves a sorted batch absent with one seek, or uses
    /// `MultiGet`); the default asks one key at a time.
    async fn get_many(&self, partition: &Partition, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(partition, key).await?);
        }
        Ok(out)
    }

    /// Sets `key` to `value`.
    async fn put(&self, partition: &Partition, key: Bytes, value: Bytes) -> Result<()>;

    /// Removes `key`; a missing key is fine.
    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()>;

    /// Applies every op of `batch` atomically.
    async fn batch(&self, batch: WriteBatch) -> Result<()>;

    /// Starts one atomic write handed over in parts ([`StagedBatch`]), for a write too large
    /// to build whole in memory: engines that can keep the parts outside memory do (RocksDB
    /// writes them to table files it ingests at the commit); the default keeps the parts in
    /// one [`WriteBatch`] applied by [`batch`](Self::batch).
    async fn staged_batch(&self) -> Result<Box<dyn StagedBatch + '_>> {
        Ok(Box::new(BufferedBatch::new(self)))
    }

    /// One chunk of an ordered scan; continue with `resume`.
    async fn scan(&self, partition: &Partition, request: &ScanRequest) -> Result<ScanChunk>;

    /// [`scan`](Self::scan) that hands each entry of the chunk to `visit` in scan order
    /// instead of returning it, and returns the request for the next chunk (`None` when the
    /// scan is complete). Engines that can lend entries out of their own buffers do so (no
    /// copy per entry); the default collects the chunk first. An error from `visit` stops the
    /// scan and is returned.
    async fn scan_with(
        &self,
        partition: &Partition,
        request: &ScanRequest,
        visit: &mut (dyn for<'e> FnMut(&'e [u8], &'e [u8]) -> Result<()> + Send),
    ) -> Result<Option<ScanRequest>> {
        let chunk = self.scan(partition, request).await?;
        for (key, value) in &chunk.entries {
            visit(key, value)?;
        }
        Ok(chunk.resume)
    }

    /// A hint that a range delete just removed most of a partition's entries: the engine may
    /// reclaim them now rather than on its own schedule, so later scans do not step over them
    /// (RocksDB flushes the partition's memtable in the background, which drops the entries
    /// the range delete covers). Reads are unaffected; the default only checks the partition.
    async fn reclaim(&self, partition: &Partition) -> Result<()> {
        match self.partition_exists(partition).await? {
            true => Ok(()),
            false => Err(Error::PartitionNotFound {
                partition: partition.to_string(),
            }),
        }
    }

    /// Makes every acknowledged write durable.
    async fn flush(&self) -> Result<()>;

    /// Bytes that identify the engine's durable contents: they change with every write and an
    /// engine reopened from the same files reports them again. A cache's disk tier reopens
    /// warm only when this is unchanged since it closed. `None` (the default) when the engine
    /// cannot tell, which keeps such caches cold.
    async fn state_token(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Engine counters.
    async fn stats(&self) -> Result<BackendStats>;

    /// Flushes and releases the engine; later calls fail with [`Error::Closed`].
    async fn close(&self) -> Result<()>;
}

/// One atomic write handed to its engine in parts (see [`StorageBackend::staged_batch`]):
/// nothing of it is visible before [`commit`](Self::commit), all of it after. The parts write
/// each key at most once, and each partition's keys mostly in increasing order (an engine
/// that stages sorted files starts another file where they are not).
#[async_trait]
pub trait StagedBatch: Send {
    /// Adds the ops of `part`.
    async fn add(&mut self, part: WriteBatch) -> Result<()>;

    /// Applies every part atomically.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// The default [`StagedBatch`]: the parts kept in one [`WriteBatch`], applied by the
/// engine's [`batch`](StorageBackend::batch) at the commit.
pub struct BufferedBatch<'a, B: ?Sized> {
    backend: &'a B,
    batch: WriteBatch,
}

impl<'a, B: StorageBackend + ?Sized> BufferedBatch<'a, B> {
    /// An empty batch of `backend`.
    pub fn new(backend: &'a B) -> Self {
        Self {
            backend,
            batch: WriteBatch::new(),
        }
    }
}

#[async_trait]
impl<B: StorageBackend + ?Sized> StagedBatch for BufferedBatch<'_, B> {
    async fn add(&mut self, part: WriteBatch) -> Result<()> {
        self.batch.append(part);
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.backend.batch(self.batch).await
    }
}

/// Runs a scan to the end, following `resume`, and collects every entry.
pub async fn scan_all(
    backend: &dyn StorageBackend,
    partition: &Partition,
    request: ScanRequest,
) -> Result<Vec<KvPair>> {
    let mut out = Vec::new();
    let mut next = Some(request);
    while let Some(request) = next {
        let chunk = backend.scan(partition, &request).await?;
        out.extend(chunk.entries);
        next = chunk.resume;
    }
    Ok(out)
}

/// Runs a scan to the end, following `resume`, handing each entry to `each` one chunk at a
/// time (memory is one chunk, not the whole range).
pub async fn scan_each(
    backend: &dyn StorageBackend,
    partition: &Partition,
    request: ScanRequest,
    mut each: impl FnMut(Bytes, Bytes) -> Result<()>,
) -> Result<()> {
    let mut next = Some(request);
    while let Some(request) = next {
        let chunk = backend.scan(partition, &request).await?;
        for (key, value) in chunk.entries {
            each(key, value)?;
        }
        next = chunk.resume;
    }
    Ok(())
}

/// Whether the bounds admit no key at all (start after end, or equal with one side excluded).
/// `BTreeMap::range` panics on such bounds, and RocksDB iterators dislike them.
pub fn is_empty_range(start: &Bound<Bytes>, end: &Bound<Bytes>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

/// Whether `key` lies inside `(start, end)`.
pub fn in_bounds(key: &[u8], start: &Bound<Bytes>, end: &Bound<Bytes>) -> bool {
    let after_start = match start {
        Bound::Unbounded => true,
        Bound::Included(s) => key >= s.as_ref(),
        Bound::Excluded(s) => key > s.as_ref(),
    };
    let before_end = match end {
        Bound::Unbounded => true,
        Bound::Included(e) => key <= e.as_ref(),
        Bound::Excluded(e) => key < e.as_ref(),
    };
    after_start && before_end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_skips_trailing_ff() {
        assert_eq!(prefix_successor(b"ab").unwrap().as_ref(), b"ac");
        assert_eq!(prefix_successor(b"a\xff\xff").unwrap().as_ref(), b"b");
        assert_eq!(prefix_successor(b"\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn partition_names_are_checked() {
        assert!(Partition::new("t:chat.messages-1_a").is_ok());
        for bad in ["", "a/b", "a b", "é"] {
            assert!(Partition::new(bad).is_err(), "{bad}");
        }
        assert!(Partition::new("x".repeat(201)).is_err());
    }

    #[test]
    fn resume_narrows_the_range_and_the_limit() {
        let req = ScanRequest::prefix(&b"p"[..]).limit(5).chunk_size(2);
        let next = req
            .resume_after(Some(&Bytes::from_static(b"p2")), 2)
            .unwrap();
        assert_eq!(next.limit, Some(3));
        assert_eq!(
            next.range,
            KeyRange::Range(
                Bound::Excluded(Bytes::from_static(b"p2")),
                Bound::Excluded(Bytes::from_static(b"q"))
            )
        );
        assert!(
            req.resume_after(Some(&Bytes::from_static(b"p2")), 1)
                .is_none(),
            "short chunk ends it"
        );
        assert!(
            req.limit(2)
                .resume_after(Some(&Bytes::from_static(b"p2")), 2)
                .is_none()
        );
    }
}
