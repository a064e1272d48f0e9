//! Merge-joins of sorted keys with a file's sorted `_key` column: a flush finds the flushed
//! rows its keys replace, a scan the flushed rows its hot keys hide.

use arrow::array::{Array, AsArray, BinaryArray};
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;

use super::dv::DeletionVector;
use super::object_reader::ObjectFileReader;
use super::read::{KEY_COLUMN, file_metadata, key_bloom};
use crate::error::{Error, Result};
use crate::table::{FileEntry, TableHandle};

/// A cursor over the sorted `_key` column of one older file, for the merge-join.
pub(crate) struct KeyCursor {
    entry: FileEntry,
    meta: ArrowReaderMetadata,
    mins: Vec<Option<Vec<u8>>>,
    maxes: Vec<Option<Vec<u8>>>,
    starts: Vec<u64>,
    key_index: usize,
    rg: usize,
    loaded: Option<(usize, BinaryArray)>,
    /// Where the last key sought in the loaded row group landed.
    at: usize,
}

impl KeyCursor {
    pub(crate) async fn open(table: &TableHandle, entry: FileEntry) -> Result<Self> {
        let meta = file_metadata(table, &entry).await?;
        let schema = meta.schema().clone();
        let key_index = schema.index_of(KEY_COLUMN).map_err(|_| Error::Corrupt {
            what: format!("file {} of table {}", entry.meta.path, table.id),
            reason: "no `_key` column".into(),
        })?;
        let row_groups = meta.metadata().row_groups();
        let conv = StatisticsConverter::try_new(KEY_COLUMN, &schema, meta.parquet_schema())
            .map_err(|source| Error::Parquet {
                op: format!("reading key statistics of {}", entry.meta.path),
                source,
            })?;
        let to_vec = |a: arrow::array::ArrayRef| -> Vec<Option<Vec<u8>>> {
            a.as_binary::<i32>()
                .iter()
                .map(|v| v.map(<[u8]>::to_vec))
                .collect()
        };
        let stats_err = |source| Error::Parquet {
            op: format!("reading key statistics of {}", entry.meta.path),
            source,
        };
        let mins = to_vec(conv.row_group_mins(row_groups.iter()).map_err(stats_err)?);
        let maxes = to_vec(conv.row_group_maxes(row_groups.iter()).map_err(stats_err)?);
        let mut starts = Vec::with_capacity(row_groups.len());
        let mut at = 0u64;
        for rg in row_groups {
            starts.push(at);
            at += rg.num_rows() as u64;
        }
        Ok(Self {
            entry,
            meta,
            mins,
            maxes,
            starts,
            key_index,
            rg: 0,
            loaded: None,
            at: 0,
        })
    }

    fn reader(&self, table: &TableHandle) -> ObjectFileReader {
        super::read::reader(table, &self.entry)
    }

    /// The absolute position of `key` in the file, if the file holds it. Keys must be sought
    /// in increasing order.
    pub(crate) async fn seek(&mut self, table: &TableHandle, key: &[u8]) -> Result<Option<u64>> {
        let what = || format!("merge-joining keys of {}", self.entry.meta.path);
        let n = self.starts.len();
        while self.rg < n && self.maxes[self.rg].as_deref().is_some_and(|max| max < key) {
            self.rg += 1;
        }
        if self.rg == n || self.mins[self.rg].as_deref().is_some_and(|min| min > key) {
            return Ok(None);
        }
        let rg = self.rg;
        if self.loaded.as_ref().is_none_or(|(at, _)| *at != rg) {
            if let Some(bloom) = key_bloom(table, &self.entry, &self.meta, rg).await?
                && !bloom.check(key)
            {
                return Ok(None);
            }
            let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
                self.reader(table),
                self.meta.clone(),
            )
            .with_projection(ProjectionMask::roots(
                self.meta.parquet_schema(),
                [self.key_index],
            ))
            .with_row_groups(vec![rg])
            .with_batch_size(usize::MAX >> 1)
            .build()
            .map_err(|source| Error::Parquet { op: what(), source })?;
            let batches: Vec<_> = stream
                .try_collect()
                .await
                .map_err(|source| Error::Parquet { op: what(), source })?;
            let keys = match batches.as_slice() {
                [one] => one.column(0).clone(),
                _ => {
                    let arrays: Vec<&dyn Array> =
                        batches.iter().map(|b| b.column(0).as_ref()).collect();
                    arrow::compute::concat(&arrays).map_err(|source| Error::Arrow {
                        op: "collecting a row group's keys",
                        source,
                    })?
                }
            };
            self.loaded = Some((rg, keys.as_binary::<i32>().clone()));
            self.at = 0;
        }
        let (_, keys) = self.loaded.as_ref().expect("loaded just above");
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
        self.at = lo;
        Ok((lo < keys.len() && keys.value(lo) == key).then(|| self.starts[rg] + lo as u64))
    }
}

/// The rows of `entry` whose keys are in `keys` (sorted ascending), as positions added to the
/// file's deletion vector: the flushed rows that hot entries replace or delete.
pub(crate) async fn hide_keys<'k>(
    table: &TableHandle,
    entry: &FileEntry,
    keys: impl IntoIterator<Item = &'k [u8]>,
) -> Result<DeletionVector> {
    let mut dead = (*entry.dv).clone();
    let mut cursor: Option<KeyCursor> = None;
    for key in keys {
        if !entry.meta.may_hold(key) {
            continue;
        }
        if cursor.is_none() {
            cursor = Some(KeyCursor::open(table, entry.clone()).await?);
        }
        if let Some(pos) = cursor
            .as_mut()
            .expect("opened just above")
            .seek(table, key)
            .await?
        {
            dead.insert(pos);
        }
    }
    Ok(dead)
}
