//! Reading table files from an object store: byte ranges of one immutable file, and the
//! per-storage, byte-bounded cache of what pruning and point reads need from each file
//! (footer with page index, the `_key` page directory, `_key` bloom filters per row group).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, BinaryArray, RecordBatch};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::columns::{KEY_COLUMN, KeyBounds, bounds_overlap, is_unbounded};
use super::manifest::FileMeta;
use crate::cache::CacheCounters;
use crate::error::{Error, Result};
use crate::ids::TableId;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::bloom_filter::Sbbf;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// One Parquet file of known size in an object store. Every read is a ranged GET (a foyer
/// `RangeCachedStore` in front of the store caches them for slow cold tiers).
#[derive(Debug, Clone)]
pub struct ObjectFileReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
}

impl ObjectFileReader {
    /// A reader of `path`, `size` bytes long.
    pub fn new(store: Arc<dyn ObjectStore>, path: &str, size: u64) -> Self {
        Self {
            store,
            path: ObjectPath::from(path),
            size,
        }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let mut parts = self
                .store
                .get_ranges(&self.path, std::slice::from_ref(&range))
                .await
                .map_err(external)?;
            parts
                .pop()
                .ok_or_else(|| ParquetError::General("empty range response".into()))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let policy = options.map_or(PageIndexPolicy::Skip, |o| o.column_index_policy());
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_page_index_policy(policy)
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// One data file of a table: where it is and its manifest entry.
#[derive(Clone, Copy)]
pub(crate) struct DataFile<'a> {
    /// The cold store holding it.
    pub store: &'a Arc<dyn ObjectStore>,
    /// Its manifest entry (path, size, id).
    pub meta: &'a FileMeta,
    /// The table it belongs to, for error messages.
    pub table: &'a TableId,
}

impl DataFile<'_> {
    /// A reader of the file.
    pub(crate) fn reader(&self) -> ObjectFileReader {
        ObjectFileReader::new(self.store.clone(), &self.meta.path, self.meta.size)
    }

    /// `<path> (table <ns.table>)`, for errors.
    pub(crate) fn describe(&self) -> String {
        format!("{} (table {})", self.meta.path, self.table)
    }

    /// Maps a Parquet failure while `doing` something with this file.
    pub(crate) fn parquet_err(&self, doing: &str) -> impl FnOnce(ParquetError) -> Error + use<> {
        let op = format!("{doing} {}", self.describe());
        move |source| Error::Parquet { op, source }
    }
}

/// One cached item of one table handle's file (handles get distinct owners, so a table
/// dropped and created again never sees the old one's entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MetaKey {
    owner: u64,
    file: i64,
    part: MetaPart,
}

/// Which part of a file a cache entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MetaPart {
    /// The [`FileIndex`].
    Index,
    /// The `_key` bloom filter of a row group.
    Bloom(usize),
    /// The `_key` values of the `_key` page starting at this row.
    Keys(u64),
    /// The decoded non-key user columns of the rows from this position on (a `_key` page's
    /// rows, or one row), under this schema version.
    Rows(u64, u32),
}

#[derive(Clone)]
enum MetaValue {
    Index(Arc<FileIndex>),
    /// `None`: the row group has no `_key` bloom filter.
    Bloom(Option<Arc<Sbbf>>),
    Keys(BinaryArray),
    Rows(RecordBatch),
}

/// Shards of a metadata cache (each holds a share of the budget under its own lock).
const METADATA_SHARDS: usize = 4;

/// Bytes charged per cache entry besides what it holds (key, handle, bookkeeping).
const ENTRY_OVERHEAD: usize = 96;

impl MetaValue {
    fn weight(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                Self::Index(index) => index.bytes,
                Self::Bloom(bloom) => bloom.as_ref().map_or(0, |b| b.num_blocks() * 32),
                Self::Keys(keys) => keys.get_array_memory_size(),
                Self::Rows(rows) => rows.get_array_memory_size(),
            }
    }
}

/// What a read keeps of one file: the footer with its page index, and the `_key` page
/// directory that point reads search.
pub(crate) struct FileIndex {
    /// Footer and page index, as the Parquet reader takes them.
    pub(crate) footer: ArrowReaderMetadata,
    /// The file's `_key` pages in key order; `None` when the file has no `_key` page
    /// statistics (point reads then prune by row group and decode with a key predicate).
    pub(crate) key_pages: Option<KeyPages>,
    /// What the cache charges for it.
    bytes: usize,
}

/// One `_key` data page: where its rows are and the (possibly truncated, so conservative)
/// bounds of its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPage {
    /// Row group holding the page.
    pub(crate) row_group: usize,
    /// Position of the page's first row in the file.
    pub(crate) first_row: u64,
    /// Rows in the page.
    pub(crate) rows: u64,
    /// Lower bound of its keys.
    pub(crate) min: Vec<u8>,
    /// Upper bound of its keys.
    pub(crate) max: Vec<u8>,
}

/// A file's `_key` pages in file order, which is key order (files are written sorted by
/// `_key`, and page bounds, truncated or not, keep that order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPages(Vec<KeyPage>);

impl KeyPages {
    /// The directory of a file's `_key` pages, if every page has statistics.
    fn of(footer: &ArrowReaderMetadata) -> Option<Self> {
        use arrow::array::Array;
        let metadata = footer.metadata();
        let (columns, offsets) = (metadata.column_index()?, metadata.offset_index()?);
        let conv =
            StatisticsConverter::try_new(KEY_COLUMN, footer.schema(), footer.parquet_schema())
                .ok()?;
        let mut pages = Vec::new();
        let mut group_start = 0u64;
        for (rg, group) in metadata.row_groups().iter().enumerate() {
            let mins = conv.data_page_mins(columns, offsets, [&rg]).ok()?;
            let maxes = conv.data_page_maxes(columns, offsets, [&rg]).ok()?;
            let counts = conv
                .data_page_row_counts(offsets, metadata.row_groups(), [&rg])
                .ok()??;
            let mins = mins.as_any().downcast_ref::<BinaryArray>()?;
            let maxes = maxes.as_any().downcast_ref::<BinaryArray>()?;
            let mut at = group_start;
            for page in 0..counts.len() {
                if !(mins.is_valid(page) && maxes.is_valid(page) && counts.is_valid(page)) {
                    return None;
                }
                let rows = counts.value(page);
                pages.push(KeyPage {
                    row_group: rg,
                    first_row: at,
                    rows,
                    min: mins.value(page).to_vec(),
                    max: maxes.value(page).to_vec(),
                });
                at += rows;
            }
            group_start += u64::try_from(group.num_rows()).ok()?;
        }
        Some(Self(pages))
    }

    /// The pages whose bounds hold `key`, in file order (one, unless truncated bounds of
    /// long keys overlap).
    pub(crate) fn holding<'a>(&'a self, key: &'a [u8]) -> impl Iterator<Item = &'a KeyPage> {
        let first = self.0.partition_point(|p| p.max.as_slice() < key);
        self.0[first..]
            .iter()
            .take_while(move |p| p.min.as_slice() <= key)
    }

    fn bytes(&self) -> usize {
        self.0
            .iter()
            .map(|p| std::mem::size_of::<KeyPage>() + p.min.len() + p.max.len())
            .sum()
    }
}

/// One storage's cache of what reads need from its Parquet files (footers with page
/// indexes, `_key` page directories, `_key` bloom filters, pages point reads decoded), bounded by a byte budget and
/// evicting the least recently used. Files are immutable, so entries never go stale.
pub(crate) struct MetadataCache {
    cache: foyer_memory::Cache<MetaKey, MetaValue>,
    counters: Arc<CacheCounters>,
    budget: usize,
    next_owner: AtomicU64,
}

impl MetadataCache {
    /// A cache holding at most `budget` bytes.
    pub(crate) fn new(budget: usize) -> Self {
        // foyer splits the budget between its shards and evicts only to make room for a new
        // entry, so an entry larger than a shard's share is not kept at all.
        let per_shard = budget / METADATA_SHARDS;
        Self {
            cache: foyer_memory::CacheBuilder::new(budget)
                .with_name("kalamstore-metadata")
                .with_shards(METADATA_SHARDS)
                .with_weighter(|_: &MetaKey, v: &MetaValue| v.weight())
                .with_filter(move |_: &MetaKey, v: &MetaValue| v.weight() <= per_shard)
                .build(),
            counters: Arc::new(CacheCounters::default()),
            budget,
            next_owner: AtomicU64::new(0),
        }
    }

    /// Its hit and miss counters.
    pub(crate) fn counters(&self) -> &Arc<CacheCounters> {
        &self.counters
    }

    /// Its byte budget.
    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes it holds now.
    pub(crate) fn usage(&self) -> usize {
        self.cache.usage()
    }

    /// The view of one table handle.
    pub(crate) fn for_table(self: &Arc<Self>) -> FileIndexCache {
        FileIndexCache {
            cache: self.clone(),
            owner: self.next_owner.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn get(&self, key: &MetaKey) -> Option<MetaValue> {
        // A miss is counted by the `insert` that fills it, with the bytes it loaded.
        let hit = self.cache.get(key).map(|e| e.value().clone());
        if let Some(v) = &hit {
            self.counters.hit(v.weight());
        }
        hit
    }

    fn insert(&self, key: MetaKey, value: MetaValue) {
        self.counters.miss(value.weight());
        self.cache.insert(key, value);
    }
}

/// What one table handle's reads keep of its files, in its storage's [`MetadataCache`]:
/// loaded on first use; [`forget`](Self::forget) drops what is kept of a file that left the
/// manifest.
pub(crate) struct FileIndexCache {
    cache: Arc<MetadataCache>,
    owner: u64,
}

impl FileIndexCache {
    fn key(&self, file: i64, part: MetaPart) -> MetaKey {
        MetaKey {
            owner: self.owner,
            file,
            part,
        }
    }

    /// The `_key` values of the file's `_key` page starting at row `first_row`, if kept.
    pub(crate) fn page_keys(&self, file: i64, first_row: u64) -> Option<BinaryArray> {
        match self.cache.get(&self.key(file, MetaPart::Keys(first_row)))? {
            MetaValue::Keys(keys) => Some(keys),
            _ => None,
        }
    }

    /// Keeps the `_key` values of the file's `_key` page starting at row `first_row`.
    pub(crate) fn keep_page_keys(&self, file: i64, first_row: u64, keys: BinaryArray) {
        self.cache.insert(
            self.key(file, MetaPart::Keys(first_row)),
            MetaValue::Keys(keys),
        );
    }

    /// The non-key user columns of the file's rows from `first_row` on, decoded under schema
    /// version `version`, if kept.
    pub(crate) fn rows(&self, file: i64, first_row: u64, version: u32) -> Option<RecordBatch> {
        match self
            .cache
            .get(&self.key(file, MetaPart::Rows(first_row, version)))?
        {
            MetaValue::Rows(rows) => Some(rows),
            _ => None,
        }
    }

    /// Keeps the non-key user columns of the file's rows from `first_row` on, decoded under
    /// schema version `version`.
    pub(crate) fn keep_rows(&self, file: i64, first_row: u64, version: u32, rows: RecordBatch) {
        self.cache.insert(
            self.key(file, MetaPart::Rows(first_row, version)),
            MetaValue::Rows(rows),
        );
    }

    /// The file's footer and page index.
    pub(crate) async fn footer(&self, file: DataFile<'_>) -> Result<ArrowReaderMetadata> {
        Ok(self.index(file).await?.footer.clone())
    }

    /// The file's footer, page index and `_key` page directory.
    pub(crate) async fn index(&self, file: DataFile<'_>) -> Result<Arc<FileIndex>> {
        let key = self.key(file.meta.id, MetaPart::Index);
        if let Some(MetaValue::Index(index)) = self.cache.get(&key) {
            return Ok(index);
        }
        let mut reader = file.reader();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let footer = ArrowReaderMetadata::load_async(&mut reader, options)
            .await
            .map_err(file.parquet_err("reading the footer of"))?;
        let key_pages = KeyPages::of(&footer);
        let bytes = footer.metadata().memory_size() + key_pages.as_ref().map_or(0, KeyPages::bytes);
        let index = Arc::new(FileIndex {
            footer,
            key_pages,
            bytes,
        });
        self.cache.insert(key, MetaValue::Index(index.clone()));
        Ok(index)
    }

    /// The `_key` bloom filter of one row group of the file.
    pub(crate) async fn key_bloom(
        &self,
        file: DataFile<'_>,
        footer: &ArrowReaderMetadata,
        row_group: usize,
    ) -> Result<Option<Arc<Sbbf>>> {
        let key = self.key(file.meta.id, MetaPart::Bloom(row_group));
        if let Some(MetaValue::Bloom(b)) = self.cache.get(&key) {
            return Ok(b);
        }
        let Ok(key_index) = footer.schema().index_of(KEY_COLUMN) else {
            return Ok(None);
        };
        let mut probe =
            ParquetRecordBatchStreamBuilder::new_with_metadata(file.reader(), footer.clone());
        let bloom = probe
            .get_row_group_column_bloom_filter(row_group, key_index)
            .await
            .map_err(file.parquet_err("reading the bloom filter of"))?
            .map(Arc::new);
        self.cache.insert(key, MetaValue::Bloom(bloom.clone()));
        Ok(bloom)
    }

    /// Drops what is kept of a file's footer, blooms and key pages; its decoded rows age out
    /// (file ids are never reused within a table handle, so they are never read again).
    pub(crate) fn forget(&self, file_id: i64) {
        let index = self.cache.cache.remove(&self.key(file_id, MetaPart::Index));
        if let Some(MetaValue::Index(index)) = index.as_ref().map(|e| e.value()) {
            for rg in 0..index.footer.metadata().num_row_groups() {
                self.cache
                    .cache
                    .remove(&self.key(file_id, MetaPart::Bloom(rg)));
            }
            for page in index.key_pages.iter().flat_map(|p| &p.0) {
                self.cache
                    .cache
                    .remove(&self.key(file_id, MetaPart::Keys(page.first_row)));
            }
        }
    }
}

/// Min and max `_key` of each row group (`None` where the statistics are missing).
pub(crate) struct RowGroupKeys {
    /// Smallest key per row group.
    pub mins: Vec<Option<Vec<u8>>>,
    /// Largest key per row group.
    pub maxes: Vec<Option<Vec<u8>>>,
}

impl RowGroupKeys {
    /// The key statistics of every row group of a file; a file without `_key` statistics
    /// gets `None` everywhere (nothing is pruned).
    pub(crate) fn of(footer: &ArrowReaderMetadata) -> Self {
        let row_groups = footer.metadata().row_groups();
        let none = || vec![None; row_groups.len()];
        let to_vec = |a: arrow::array::ArrayRef| -> Option<Vec<Option<Vec<u8>>>> {
            let a = a.as_any().downcast_ref::<arrow::array::BinaryArray>()?;
            Some(a.iter().map(|v| v.map(<[u8]>::to_vec)).collect())
        };
        let Ok(conv) =
            StatisticsConverter::try_new(KEY_COLUMN, footer.schema(), footer.parquet_schema())
        else {
            return Self {
                mins: none(),
                maxes: none(),
            };
        };
        let mins = conv
            .row_group_mins(row_groups.iter())
            .ok()
            .and_then(to_vec)
            .unwrap_or_else(none);
        let maxes = conv
            .row_group_maxes(row_groups.iter())
            .ok()
            .and_then(to_vec)
            .unwrap_or_else(none);
        Self { mins, maxes }
    }

    /// Whether row group `i` may hold keys within `keys`.
    pub(crate) fn may_overlap(&self, i: usize, keys: &KeyBounds) -> bool {
        match (&self.mins[i], &self.maxes[i]) {
            (Some(min), Some(max)) => bounds_overlap(min, max, keys),
            _ => true,
        }
    }
}

/// For each kept row group, the row ranges (relative to the group) of the `_key` pages whose
/// min/max meet the key bounds; row groups without a page index are absent (all rows).
pub(crate) fn key_page_ranges(
    footer: &ArrowReaderMetadata,
    keep: &[bool],
    keys: &KeyBounds,
) -> HashMap<usize, Vec<Range<u64>>> {
    let mut out = HashMap::new();
    if is_unbounded(keys) {
        return out;
    }
    let metadata = footer.metadata();
    let (Some(columns), Some(offsets), Ok(conv)) = (
        metadata.column_index(),
        metadata.offset_index(),
        StatisticsConverter::try_new(KEY_COLUMN, footer.schema(), footer.parquet_schema()),
    ) else {
        return out;
    };
    for (rg, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
        let mins = conv.data_page_mins(columns, offsets, [&rg]);
        let maxes = conv.data_page_maxes(columns, offsets, [&rg]);
        let counts = conv.data_page_row_counts(offsets, metadata.row_groups(), [&rg]);
        let (Ok(mins), Ok(maxes), Ok(Some(counts))) = (mins, maxes, counts) else {
            continue;
        };
        let (Some(mins), Some(maxes)) = (
            mins.as_any().downcast_ref::<arrow::array::BinaryArray>(),
            maxes.as_any().downcast_ref::<arrow::array::BinaryArray>(),
        ) else {
            continue;
        };
        let mut at = 0u64;
        let mut allowed = Vec::new();
        for page in 0..counts.len() {
            use arrow::array::Array;
            let rows = counts.value(page);
            let overlaps = !(mins.is_valid(page) && maxes.is_valid(page))
                || bounds_overlap(mins.value(page), maxes.value(page), keys);
            if overlaps {
                allowed.push(at..at + rows);
            }
            at += rows;
        }
        out.insert(rg, allowed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(first_row: u64, min: &[u8], max: &[u8]) -> KeyPage {
        KeyPage {
            row_group: 0,
            first_row,
            rows: 10,
            min: min.to_vec(),
            max: max.to_vec(),
        }
    }

    #[test]
    fn holding_returns_every_page_whose_bounds_hold_the_key() {
        // Truncated bounds: the first page's max was rounded up past the second's min.
        let pages = KeyPages(vec![
            page(0, b"a", b"c"),
            page(10, b"bz", b"e"),
            page(20, b"f", b"h"),
        ]);
        let starts = |key: &[u8]| -> Vec<u64> { pages.holding(key).map(|p| p.first_row).collect() };
        assert_eq!(starts(b"a"), vec![0]);
        assert_eq!(starts(b"bzz"), vec![0, 10]);
        assert_eq!(starts(b"d"), vec![10]);
        assert_eq!(starts(b"e"), vec![10]);
        assert_eq!(starts(b"ea"), Vec::<u64>::new());
        assert_eq!(starts(b"0"), Vec::<u64>::new());
        assert_eq!(starts(b"z"), Vec::<u64>::new());
    }
}
