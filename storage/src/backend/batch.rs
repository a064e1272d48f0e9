//! `WriteBatch`: the writes one atomic [`StorageBackend::batch`](super::StorageBackend::batch)
//! applies. Keys and values sit back to back in a few buffers and each partition is named
//! once, so adding a write allocates nothing per op and shares nothing between threads (an op
//! holding its own partition and byte buffers cost a bulk load an atomic reference count
//! bounced between cores and two allocations kept alive per op).

use std::ops::Range;

use bytes::Bytes;

use super::Partition;

/// One write of a [`WriteBatch`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp<'a> {
    /// Set `key` to `value`.
    Put {
        /// Target partition.
        partition: &'a Partition,
        /// Key bytes.
        key: &'a [u8],
        /// Value bytes.
        value: &'a [u8],
    },
    /// Remove `key`.
    Delete {
        /// Target partition.
        partition: &'a Partition,
        /// Key bytes.
        key: &'a [u8],
    },
    /// Remove every key in `[start, end)`. Only engines whose
    /// [`Capabilities::delete_range`](super::Capabilities::delete_range) is true take it;
    /// others refuse the whole batch with [`Error::Unsupported`](crate::Error::Unsupported).
    DeleteRange {
        /// Target partition.
        partition: &'a Partition,
        /// First key removed.
        start: &'a [u8],
        /// First key kept after the range.
        end: &'a [u8],
    },
}

impl<'a> WriteOp<'a> {
    /// The partition this op writes to.
    pub fn partition(&self) -> &'a Partition {
        match *self {
            Self::Put { partition, .. }
            | Self::Delete { partition, .. }
            | Self::DeleteRange { partition, .. } => partition,
        }
    }

    /// The key this op writes (a range delete: its first key).
    pub fn key(&self) -> &'a [u8] {
        match *self {
            Self::Put { key, .. } | Self::Delete { key, .. } => key,
            Self::DeleteRange { start, .. } => start,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Put,
    Delete,
    DeleteRange,
}

/// The segment number of the batch's open buffer (the one `put` copies into).
const OPEN: u32 = u32::MAX;

/// Where one op's bytes are: `first` (the key, or a range's start) and `second` (the value,
/// or a range's end; empty for a delete), each a range of a segment: the open buffer
/// ([`OPEN`]) or one of the shared buffers.
#[derive(Debug, Clone)]
struct Record {
    kind: Kind,
    partition: u32,
    first_segment: u32,
    second_segment: u32,
    first: Range<usize>,
    second: Range<usize>,
}

/// Writes applied all together or not at all, across partitions, in order: a later write to
/// the same key wins.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// Every partition the batch writes to, each once.
    partitions: Vec<Partition>,
    records: Vec<Record>,
    /// The buffer `put`, `delete` and `delete_range` copy keys and values into.
    open: Vec<u8>,
    /// Buffers taken as they are (`put_bytes`, `put_slices`, `append`).
    shared: Vec<Bytes>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `ops` writes of `bytes` key and value bytes in all.
    pub fn with_capacity(ops: usize, bytes: usize) -> Self {
        Self {
            records: Vec::with_capacity(ops),
            open: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Adds a put; the key and value are copied into the batch.
    pub fn put(&mut self, partition: &Partition, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.copied(Kind::Put, partition, key.as_ref(), value.as_ref());
    }

    /// Adds a put whose value is kept as it is, not copied (for large values).
    pub fn put_bytes(&mut self, partition: &Partition, key: impl AsRef<[u8]>, value: Bytes) {
        let partition = self.partition_index(partition);
        let first = self.copy(key.as_ref());
        let second = 0..value.len();
        let second_segment = self.share(value);
        self.records.push(Record {
            kind: Kind::Put,
            partition,
            first_segment: OPEN,
            second_segment,
            first,
            second,
        });
    }

    /// Adds one put per `(key, value)` pair of byte ranges of `buffer`, which the batch keeps
    /// without copying (rows encoded back to back).
    ///
    /// # Panics
    /// When a range lies outside `buffer`: the caller made both.
    pub fn put_slices(
        &mut self,
        partition: &Partition,
        buffer: Bytes,
        spans: impl IntoIterator<Item = (Range<usize>, Range<usize>)>,
    ) {
        let partition = self.partition_index(partition);
        let len = buffer.len();
        let segment = self.share(buffer);
        let spans = spans.into_iter();
        self.records.reserve(spans.size_hint().0);
        for (key, value) in spans {
            assert!(
                key.start <= key.end
                    && key.end <= len
                    && value.start <= value.end
                    && value.end <= len,
                "put_slices: a span lies outside its {len}-byte buffer"
            );
            self.records.push(Record {
                kind: Kind::Put,
                partition,
                first_segment: segment,
                second_segment: segment,
                first: key,
                second: value,
            });
        }
    }

    /// Adds a delete.
    pub fn delete(&mut self, partition: &Partition, key: impl AsRef<[u8]>) {
        self.copied(Kind::Delete, partition, key.as_ref(), &[]);
    }

    /// Adds a removal of every key in `[start, end)` (engines with
    /// [`Capabilities::delete_range`](super::Capabilities::delete_range) only).
    pub fn delete_range(
        &mut self,
        partition: &Partition,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
    ) {
        self.copied(Kind::DeleteRange, partition, start.as_ref(), end.as_ref());
    }

    /// Adds a copy of `op` (from another batch).
    pub fn push(&mut self, op: WriteOp<'_>) {
        match op {
            WriteOp::Put {
                partition,
                key,
                value,
            } => self.put(partition, key, value),
            WriteOp::Delete { partition, key } => self.delete(partition, key),
            WriteOp::DeleteRange {
                partition,
                start,
                end,
            } => self.delete_range(partition, start, end),
        }
    }

    /// Adds every write of `other` after this batch's own, without copying their bytes.
    pub fn append(&mut self, other: WriteBatch) {
        if other.records.is_empty() {
            return;
        }
        if self.records.is_empty() {
            *self = other;
            return;
        }
        let partitions: Vec<u32> = other
            .partitions
            .iter()
            .map(|p| self.partition_index(p))
            .collect();
        let base = self.shared.len() as u32;
        let other_open = base + other.shared.len() as u32;
        self.shared.extend(other.shared);
        self.shared.push(Bytes::from(other.open));
        let segment = |s: u32| if s == OPEN { other_open } else { base + s };
        self.records
            .extend(other.records.into_iter().map(|r| Record {
                partition: partitions[r.partition as usize],
                first_segment: segment(r.first_segment),
                second_segment: segment(r.second_segment),
                ..r
            }));
    }

    /// The writes, in order.
    pub fn ops(&self) -> impl ExactSizeIterator<Item = WriteOp<'_>> + '_ {
        self.records.iter().map(|r| self.op(r))
    }

    /// The writes, in order, each with the index of its partition in
    /// [`partitions`](Self::partitions) (an engine resolves each partition once).
    pub fn indexed_ops(&self) -> impl ExactSizeIterator<Item = (usize, WriteOp<'_>)> + '_ {
        self.records
            .iter()
            .map(|r| (r.partition as usize, self.op(r)))
    }

    /// Every partition the batch writes to, each once, in order of first use.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no writes.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of keys and values in all (an engine sizes its own batch with it).
    pub fn data_len(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.first.len() + r.second.len())
            .sum()
    }

    fn op<'a>(&'a self, r: &Record) -> WriteOp<'a> {
        let partition = &self.partitions[r.partition as usize];
        let first = &self.segment(r.first_segment)[r.first.clone()];
        let second = &self.segment(r.second_segment)[r.second.clone()];
        match r.kind {
            Kind::Put => WriteOp::Put {
                partition,
                key: first,
                value: second,
            },
            Kind::Delete => WriteOp::Delete {
                partition,
                key: first,
            },
            Kind::DeleteRange => WriteOp::DeleteRange {
                partition,
                start: first,
                end: second,
            },
        }
    }

    fn segment(&self, segment: u32) -> &[u8] {
        match segment {
            OPEN => &self.open,
            s => &self.shared[s as usize],
        }
    }

    fn copied(&mut self, kind: Kind, partition: &Partition, first: &[u8], second: &[u8]) {
        let partition = self.partition_index(partition);
        let first = self.copy(first);
        let second = self.copy(second);
        self.records.push(Record {
            kind,
            partition,
            first_segment: OPEN,
            second_segment: OPEN,
            first,
            second,
        });
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let at = self.open.len();
        self.open.extend_from_slice(bytes);
        at..self.open.len()
    }

    fn share(&mut self, buffer: Bytes) -> u32 {
        self.shared.push(buffer);
        // A batch of four billion buffers does not fit in memory.
        u32::try_from(self.shared.len() - 1).expect("fewer than u32::MAX shared buffers")
    }

    /// The index of `partition` in `partitions`, added when new. A batch writes to a few
    /// partitions, mostly in runs: the search starts from the last one.
    fn partition_index(&mut self, partition: &Partition) -> u32 {
        let at = match self.partitions.iter().rposition(|p| p == partition) {
            Some(at) => at,
            None => {
                self.partitions.push(partition.clone());
                self.partitions.len() - 1
            }
        };
        // As above: a batch names far fewer partitions.
        u32::try_from(at).expect("fewer than u32::MAX partitions in a batch")
    }
}

impl PartialEq for WriteBatch {
    /// Two batches are equal when they hold the same writes in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.ops().eq(other.ops())
    }
}

impl Eq for WriteBatch {}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Partition {
        Partition::new(name).unwrap()
    }

    #[test]
    fn ops_come_back_in_order_with_each_partition_named_once() {
        let (a, b) = (p("a"), p("b"));
        let mut batch = WriteBatch::new();
        batch.put(&a, b"k1", b"v1");
        batch.delete(&b, b"k2");
        batch.put_bytes(&a, b"k3", Bytes::from_static(b"v3"));
        batch.delete_range(&b, b"s", b"t");
        batch.put_slices(
            &a,
            Bytes::from_static(b"k4v4k5v5"),
            [(0..2, 2..4), (4..6, 6..8)],
        );
        assert_eq!(batch.partitions(), &[a.clone(), b.clone()]);
        let ops: Vec<WriteOp<'_>> = batch.ops().collect();
        assert_eq!(
            ops,
            vec![
                WriteOp::Put {
                    partition: &a,
                    key: b"k1",
                    value: b"v1"
                },
                WriteOp::Delete {
                    partition: &b,
                    key: b"k2"
                },
                WriteOp::Put {
                    partition: &a,
                    key: b"k3",
                    value: b"v3"
                },
                WriteOp::DeleteRange {
                    partition: &b,
                    start: b"s",
                    end: b"t"
                },
                WriteOp::Put {
                    partition: &a,
                    key: b"k4",
                    value: b"v4"
                },
                WriteOp::Put {
                    partition: &a,
                    key: b"k5",
                    value: b"v5"
                },
            ]
        );
        let indices: Vec<usize> = batch.indexed_ops().map(|(i, _)| i).collect();
        assert_eq!(indices, vec![0, 1, 0, 1, 0, 0]);
        assert_eq!(batch.len(), 6);
        assert_eq!(batch.data_len(), 4 + 2 + 4 + 2 + 4 + 4);
    }

    #[test]
    fn append_keeps_both_batches_writes_in_order_and_maps_their_partitions() {
        let (a, b, c) = (p("a"), p("b"), p("c"));
        let mut first = WriteBatch::new();
        first.put(&a, b"1", b"x");
        first.put_bytes(&b, b"2", Bytes::from_static(b"y"));
        let mut second = WriteBatch::new();
        second.put(&c, b"3", b"z");
        second.put_bytes(&b, b"4", Bytes::from_static(b"w"));
        second.delete(&a, b"1");

        let mut expected = WriteBatch::new();
        for op in first.ops().chain(second.ops()) {
            expected.push(op);
        }
        first.append(second);
        assert_eq!(first, expected);
        assert_eq!(first.partitions(), &[a, b, c]);
        // Appending to an empty batch takes the other as it is; appending an empty one
        // changes nothing.
        let mut empty = WriteBatch::new();
        empty.append(first.clone());
        assert_eq!(empty, first);
        first.append(WriteBatch::new());
        assert_eq!(empty, first);
        first.put(&p("a"), b"5", b"v");
        assert_eq!(first.ops().last().unwrap().key(), b"5");
    }
}
