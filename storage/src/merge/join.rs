//! The merge-join of sorted keys with a file's sorted `_key` column, the one way kalamstore
//! finds the flushed rows of many given keys: the write path the rows of many looked-up keys,
//! a compaction where the rows its hot keys hide went (`overlay`).

use arrow::array::{Array, BinaryArray};
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use crate::error::{Error, Result};
use crate::format::{KEY_COLUMN, RowGroupKeys, key_column};
use crate::table::{FileEntry, TableHandle};

/// Keys found in one row group from which the join takes itself for dense.
const DENSE_HITS: usize = 4;

/// A cursor over the sorted `_key` column of one file; keys must be sought in increasing
/// order.
struct KeyCursor {
    footer: ArrowReaderMetadata,
    key_stats: RowGroupKeys,
    /// First row of each row group.
    starts: Vec<u64>,
    key_index: usize,
    /// The row group the last key fell in.
    row_group: usize,
    /// The keys of one loaded row group.
    loaded: Option<(usize, BinaryArray)>,
    /// Where the last key sought in the loaded row group landed.
    at: usize,
    /// Keys found in the loaded row group.
    hits: usize,
    /// Whether the last loaded row group held several sought keys: the join is dense, so a
    /// row group's bloom filter would say "maybe" anyway and is not read (a 1M-row UPDATE
    /// would otherwise read and cache every row group's filter).
    dense: bool,
}

impl KeyCursor {
    async fn open(
        table: &TableHandle,
        entry: &FileEntry,
        expected: Option<&Expected>,
    ) -> Result<Self> {
        let file = table.data_file(&entry.meta);
        let footer = table.file_index.footer(file).await?;
        let key_index = footer
            .schema()
            .index_of(KEY_COLUMN)
            .map_err(|_| Error::Corrupt {
                what: format!("file {}", file.describe()),
                reason: format!("no `{KEY_COLUMN}` column"),
            })?;
        let mut starts = Vec::new();
        let mut at = 0u64;
        for rg in footer.metadata().row_groups() {
            starts.push(at);
            at += rg.num_rows() as u64;
        }
        let key_stats = RowGroupKeys::of(&footer);
        let dense = expected.is_some_and(|e| e.dense_in(&key_stats));
        Ok(Self {
            key_stats,
            footer,
            starts,
            key_index,
            row_group: 0,
            loaded: None,
            at: 0,
            hits: 0,
            dense,
        })
    }

    /// The absolute position of `key` in the file, if the file holds it.
    async fn seek(
        &mut self,
        table: &TableHandle,
        entry: &FileEntry,
        key: &[u8],
    ) -> Result<Option<u64>> {
        let n = self.starts.len();
        let stats = &self.key_stats;
        while self.row_group < n
            && stats.maxes[self.row_group]
                .as_deref()
                .is_some_and(|max| max < key)
        {
            self.row_group += 1;
        }
        if self.row_group == n
            || stats.mins[self.row_group]
                .as_deref()
                .is_some_and(|min| min > key)
        {
            return Ok(None);
        }
        let rg = self.row_group;
        if self.loaded.as_ref().is_none_or(|(at, _)| *at != rg) {
            if self.loaded.is_some() {
                self.dense = self.hits >= DENSE_HITS;
            }
            let file = table.data_file(&entry.meta);
            if !self.dense
                && let Some(bloom) = table.file_index.key_bloom(file, &self.footer, rg).await?
                && !bloom.check(key)
            {
                return Ok(None);
            }
            let keys = self.load_keys(table, entry, rg).await?;
            self.loaded = Some((rg, keys));
            self.at = 0;
            self.hits = 0;
        }
        let Some((_, keys)) = &self.loaded else {
            return Ok(None);
        };
        // Keys come in increasing order: gallop forward from the last position, then search
        // the bracketed run (dense key sets step a few rows, sparse ones a few doublings).
        let mut lo = self.at.min(keys.len());
        let mut step = 1usize;
        let mut hi = lo;
        while hi < keys.len() && keys.value(hi) < key {
            lo = hi + 1;
            hi = (hi + step).min(keys.len());
            step *= 2;
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            if keys.value(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let found = lo < keys.len() && keys.value(lo) == key;
        self.at = lo;
        self.hits += usize::from(found);
        Ok(found.then(|| self.starts[rg] + lo as u64))
    }

    /// Decodes the `_key` column of one row group.
    async fn load_keys(
        &self,
        table: &TableHandle,
        entry: &FileEntry,
        row_group: usize,
    ) -> Result<BinaryArray> {
        let file = table.data_file(&entry.meta);
        let what = format!("merge-joining keys of {}", file.describe());
        let rows =
            usize::try_from(self.footer.metadata().row_group(row_group).num_rows()).unwrap_or(0);
        let parquet = |source| Error::Parquet {
            op: what.clone(),
            source,
        };
        let stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(file.reader(), self.footer.clone())
                .with_projection(ProjectionMask::roots(
                    self.footer.parquet_schema(),
                    [self.key_index],
                ))
                .with_row_groups(vec![row_group])
                // One batch of the row group's rows: the reader reserves its buffers for a
                // whole batch, so no larger size.
                .with_batch_size(rows.max(1))
                .build()
                .map_err(parquet)?;
        let batches: Vec<_> = stream.try_collect().await.map_err(parquet)?;
        let arrays = batches
            .iter()
            .map(|b| key_column(b, &what))
            .collect::<Result<Vec<_>>>()?;
        Ok(match arrays.as_slice() {
            [one] => (*one).clone(),
            _ => {
                let arrays: Vec<&dyn Array> = arrays.iter().map(|a| *a as &dyn Array).collect();
                let all = arrow::compute::concat(&arrays)
                    .map_err(Error::arrow("collecting a row group's keys"))?;
                all.as_any()
                    .downcast_ref::<BinaryArray>()
                    .cloned()
                    .ok_or_else(|| Error::Corrupt {
                        what,
                        reason: "`_key` is not binary".into(),
                    })?
            }
        })
    }
}

/// How many keys a join will seek, between which bounds.
struct Expected {
    keys: usize,
    first: Vec<u8>,
    last: Vec<u8>,
}

impl Expected {
    /// Whether the keys come [`DENSE_HITS`] or more to a row group that their range overlaps:
    /// then the row groups' bloom filters would all say "maybe".
    fn dense_in(&self, stats: &RowGroupKeys) -> bool {
        let overlapped = stats
            .mins
            .iter()
            .zip(&stats.maxes)
            .filter(|(min, max)| {
                min.as_deref().is_none_or(|m| m <= self.last.as_slice())
                    && max.as_deref().is_none_or(|m| m >= self.first.as_slice())
            })
            .count();
        self.keys >= DENSE_HITS * overlapped.max(1)
    }
}

/// The merge-join of one file with increasing keys: the file's `_key` column is opened on the
/// first key inside the file's key range, and each key is found by a forward seek.
pub(crate) struct FileKeyJoin {
    entry: FileEntry,
    cursor: Option<KeyCursor>,
    expected: Option<Expected>,
}

impl FileKeyJoin {
    /// A join with `entry`; nothing is read yet.
    pub(crate) fn new(entry: FileEntry) -> Self {
        Self {
            entry,
            cursor: None,
            expected: None,
        }
    }

    /// A join with `entry` that will seek `keys` keys from `first` to `last`: when they are
    /// dense in the row groups they span, no bloom filter is read.
    pub(crate) fn expecting(entry: FileEntry, keys: usize, first: &[u8], last: &[u8]) -> Self {
        Self {
            expected: Some(Expected {
                keys,
                first: first.to_vec(),
                last: last.to_vec(),
            }),
            ..Self::new(entry)
        }
    }

    /// The position of `key` in the file, if the file holds it (live or deleted). Keys must
    /// come in increasing order across calls.
    pub(crate) async fn position(
        &mut self,
        table: &TableHandle,
        key: &[u8],
    ) -> Result<Option<u64>> {
        if !self.entry.meta.may_hold(key) {
            return Ok(None);
        }
        let cursor = match &mut self.cursor {
            Some(c) => c,
            None => self
                .cursor
                .insert(KeyCursor::open(table, &self.entry, self.expected.as_ref()).await?),
        };
        cursor.seek(table, &self.entry, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(ranges: &[(&[u8], &[u8])]) -> RowGroupKeys {
        RowGroupKeys {
            mins: ranges.iter().map(|(min, _)| Some(min.to_vec())).collect(),
            maxes: ranges.iter().map(|(_, max)| Some(max.to_vec())).collect(),
        }
    }

    #[test]
    fn keys_are_dense_by_the_row_groups_their_range_overlaps() {
        let groups = stats(&[(b"a", b"c"), (b"d", b"f"), (b"g", b"i"), (b"j", b"l")]);
        let expected = |keys, first: &[u8], last: &[u8]| Expected {
            keys,
            first: first.to_vec(),
            last: last.to_vec(),
        };
        // Two row groups overlapped: dense from 2 * DENSE_HITS keys.
        assert!(expected(2 * DENSE_HITS, b"b", b"e").dense_in(&groups));
        assert!(!expected(2 * DENSE_HITS - 1, b"b", b"e").dense_in(&groups));
        // The same keys over all four row groups are sparse.
        assert!(!expected(2 * DENSE_HITS, b"a", b"z").dense_in(&groups));
        // Row groups without statistics count as overlapped.
        let unknown = RowGroupKeys {
            mins: vec![None; 4],
            maxes: vec![None; 4],
        };
        assert!(!expected(2 * DENSE_HITS, b"b", b"e").dense_in(&unknown));
        assert!(expected(4 * DENSE_HITS, b"b", b"e").dense_in(&unknown));
    }
}
