//! Reading table files from an object store: byte ranges of one immutable file, and the
//! per-table cache of what pruning needs from each file (footer with page index, `_key` bloom
//! filters per row group, `_key` page ranges).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::columns::{KEY_COLUMN, KeyBounds, bounds_overlap, is_unbounded};
use super::manifest::FileMeta;
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

/// `_key` bloom filters per (file id, row group); `None`: the row group has none.
type BloomCache = HashMap<(i64, usize), Option<Arc<Sbbf>>>;

/// What a table's reads keep of each of its files: the footer (with the page index) and the
/// `_key` bloom filters, loaded on first use. Files are immutable, so entries never go stale;
/// [`forget`](Self::forget) drops those of a file that left the manifest.
#[derive(Default)]
pub(crate) struct FileIndexCache {
    footers: parking_lot::Mutex<HashMap<i64, ArrowReaderMetadata>>,
    blooms: parking_lot::Mutex<BloomCache>,
}

impl FileIndexCache {
    /// The file's footer and page index.
    pub(crate) async fn footer(&self, file: DataFile<'_>) -> Result<ArrowReaderMetadata> {
        if let Some(meta) = self.footers.lock().get(&file.meta.id) {
            return Ok(meta.clone());
        }
        let mut reader = file.reader();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load_async(&mut reader, options)
            .await
            .map_err(file.parquet_err("reading the footer of"))?;
        self.footers.lock().insert(file.meta.id, meta.clone());
        Ok(meta)
    }

    /// The `_key` bloom filter of one row group of the file.
    pub(crate) async fn key_bloom(
        &self,
        file: DataFile<'_>,
        footer: &ArrowReaderMetadata,
        row_group: usize,
    ) -> Result<Option<Arc<Sbbf>>> {
        if let Some(b) = self.blooms.lock().get(&(file.meta.id, row_group)) {
            return Ok(b.clone());
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
        self.blooms
            .lock()
            .insert((file.meta.id, row_group), bloom.clone());
        Ok(bloom)
    }

    /// Drops what is kept of a file.
    pub(crate) fn forget(&self, file_id: i64) {
        self.footers.lock().remove(&file_id);
        self.blooms.lock().retain(|(id, _), _| *id != file_id);
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
