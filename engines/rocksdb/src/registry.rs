//! The partition registry and key layout: every partition is a key range of one rows column
//! family, prefixed with its generation; a registry in another family names them. Also how the
//! families are resolved and how the registry is loaded at open.
//!
//! Two layouts (see [`Layout`]); a database keeps the one it was created with:
//!
//! | layout    | rows family | key of a row                     | registry family |
//! |-----------|-------------|----------------------------------|-----------------|
//! | `Compact` | `default`   | `<generation, 1-9 bytes> <key>`  | `registry`      |
//! | `Wide`    | `rows`      | `<generation u64 BE> <key>`      | `default`       |
//!
//! The registry holds `"gen"` -> the next generation (u64 BE) and `"p" <name>` -> the
//! generation of partition `name` (u64 BE).
//!
//! Each creation of a partition takes a fresh generation, so a partition dropped and created
//! again never sees the old keys, even before the range delete of a drop is compacted away.
//! A create is one registry write and a drop one registry delete plus one range delete, in
//! one atomic batch: neither depends on how many partitions exist.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kalamstore_storage::backend::Partition;
use kalamstore_storage::{Error, Result};
use parking_lot::RwLock;
use rocksdb::{ColumnFamily, ReadOptions};

use crate::Db;
use crate::error::{ENGINE, RocksDbError, rocks};

/// The rows family of the `Wide` layout.
pub(crate) const WIDE_ROWS_CF: &str = "rows";
/// The registry family of the `Compact` layout.
pub(crate) const COMPACT_REGISTRY_CF: &str = "registry";
/// Registry key of the next generation.
pub(crate) const NEXT_GENERATION: &[u8] = b"gen";
/// Prefix of the registry keys naming partitions.
pub(crate) const PARTITION_PREFIX: &[u8] = b"p";
/// Generations below this take one byte in the `Compact` layout.
const ONE_BYTE_GENERATIONS: u64 = 0xF0;

/// Where a database keeps its rows and registry, and how a row's key carries its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Rows in the `default` family (RocksDB resolves it without a lookup per write) under a
    /// generation of 1 byte (below 240) to 9 bytes; the registry in the `registry` family.
    /// Every database created since this layout exists.
    Compact,
    /// Rows in the `rows` family under an 8-byte big-endian generation; the registry in
    /// `default`. Databases created before the compact layout keep it (nothing to migrate),
    /// and so do those migrated out of the family-per-partition layout.
    Wide,
}

impl Layout {
    /// The layout of a database with column families `families`; `existed` is whether the
    /// database was there before this open. A new database takes `Compact`; one the `Compact`
    /// layout made has its `registry` family. Any other existing database is `Wide` (also one
    /// of the family-per-partition layout, which migrates into it, and one whose first open
    /// stopped before its families were created: empty, so either layout serves it).
    pub(crate) fn of(existed: bool, families: &[String]) -> Self {
        let has = |name: &str| families.iter().any(|f| f == name);
        if !existed || (has(COMPACT_REGISTRY_CF) && !has(WIDE_ROWS_CF)) {
            Self::Compact
        } else {
            Self::Wide
        }
    }

    /// Name of the family holding every partition's keys.
    pub(crate) fn rows_cf(self) -> &'static str {
        match self {
            Self::Compact => "default",
            Self::Wide => WIDE_ROWS_CF,
        }
    }

    /// Name of the family holding the registry.
    pub(crate) fn registry_cf(self) -> &'static str {
        match self {
            Self::Compact => COMPACT_REGISTRY_CF,
            Self::Wide => "default",
        }
    }

    /// The family holding every partition's keys.
    pub(crate) fn rows_family(self, db: &Db) -> Result<&ColumnFamily> {
        family_named(db, self.rows_cf())
    }

    /// The family holding the partition registry.
    pub(crate) fn registry_family(self, db: &Db) -> Result<&ColumnFamily> {
        family_named(db, self.registry_cf())
    }

    /// The prefix of every key of the partition of `generation`.
    pub(crate) fn prefix(self, generation: u64) -> KeyPrefix {
        let mut bytes = [0u8; 9];
        let len = match self {
            Self::Wide => {
                bytes[..8].copy_from_slice(&generation.to_be_bytes());
                8
            }
            Self::Compact if generation < ONE_BYTE_GENERATIONS => {
                bytes[0] = generation as u8;
                1
            }
            // A marker byte 0xF0 + (n - 1), then the generation's n significant bytes: no
            // prefix starts another (a one-byte prefix is below 0xF0, a marker fixes the
            // length), and prefixes sort like their generations.
            Self::Compact => {
                let n = 8 - (generation.leading_zeros() / 8) as usize;
                bytes[0] = 0xF0 + (n as u8 - 1);
                bytes[1..=n].copy_from_slice(&generation.to_be_bytes()[8 - n..]);
                n + 1
            }
        };
        KeyPrefix { bytes, len }
    }
}

/// The bytes before every key of one partition (see [`Layout::prefix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyPrefix {
    bytes: [u8; 9],
    len: usize,
}

impl KeyPrefix {
    /// The prefix itself.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Its length: a stored key's own bytes start there.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first stored key past the partition: every one of its keys sorts below it.
    pub(crate) fn end(&self) -> Vec<u8> {
        // A prefix is never all 0xFF bytes: the first byte is at most 0xF7 (`Compact`), and
        // generations never reach u64::MAX (`Wide`).
        kalamstore_storage::backend::prefix_successor(self.as_bytes())
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    /// `key` as stored, written into `out`.
    pub(crate) fn key_into(&self, out: &mut Vec<u8>, key: &[u8]) {
        out.clear();
        out.extend_from_slice(self.as_bytes());
        out.extend_from_slice(key);
    }

    /// Calls `f` with `key` as stored, built on the stack when it is short (a point read's).
    pub(crate) fn with_key<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        let mut buf = [0u8; 128];
        let len = self.len + key.len();
        match buf.get_mut(..len) {
            Some(stored) => {
                stored[..self.len].copy_from_slice(self.as_bytes());
                stored[self.len..].copy_from_slice(key);
                f(stored)
            }
            None => f(&self.key(key)),
        }
    }

    /// `key` as stored.
    pub(crate) fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len + key.len());
        self.key_into(&mut out, key);
        out
    }

    /// The stored range `[lower, upper)` of the partition's keys within `start` and `end` (the
    /// caller handles an empty range).
    pub(crate) fn bounds(&self, start: &Bound<Bytes>, end: &Bound<Bytes>) -> (Vec<u8>, Vec<u8>) {
        let lower = match start {
            Bound::Included(s) => self.key(s),
            Bound::Excluded(s) => {
                let mut k = self.key(s);
                k.push(0);
                k
            }
            Bound::Unbounded => self.as_bytes().to_vec(),
        };
        let upper = match end {
            Bound::Included(e) => {
                let mut k = self.key(e);
                k.push(0);
                k
            }
            Bound::Excluded(e) => self.key(e),
            Bound::Unbounded => self.end(),
        };
        (lower, upper)
    }
}

/// Registry key of `partition`.
pub(crate) fn registry_key(partition: &Partition) -> Vec<u8> {
    [PARTITION_PREFIX, partition.as_str().as_bytes()].concat()
}

/// Resolves partitions to their key prefixes. A thread reuses its last answer while the
/// registry has not changed: point reads of one partition from many tasks then share no lock
/// word (the registry lock's cache line bounced between the cores on each read).
#[derive(Debug)]
pub(crate) struct Resolver {
    /// Bumped by every change of the registry: a cached prefix is valid while it has not moved.
    epoch: AtomicU64,
    /// The backend's number in the process (the key of the threads' cached prefixes).
    id: u64,
}

/// Numbers of the resolvers (backends) made in this process.
static NEXT_RESOLVER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The partition this thread resolved last: its resolver's id, the registry epoch then,
    /// the partition and its prefix.
    static LAST_PREFIX: RefCell<Option<(u64, u64, Partition, KeyPrefix)>> =
        const { RefCell::new(None) };
}

impl Resolver {
    /// The resolver of a backend being opened (nothing cached for it yet).
    pub(crate) fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            id: NEXT_RESOLVER.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The key prefix of `partition` in `registry`, or `PartitionNotFound`.
    pub(crate) fn prefix(
        &self,
        registry: &RwLock<Registry>,
        partition: &Partition,
    ) -> Result<KeyPrefix> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let cached = LAST_PREFIX.with_borrow(|last| match last {
            Some((id, e, p, prefix)) if *id == self.id && *e == epoch && p == partition => {
                Some(*prefix)
            }
            _ => None,
        });
        if let Some(prefix) = cached {
            return Ok(prefix);
        }
        let prefix = registry.read().prefix(partition)?;
        LAST_PREFIX
            .with_borrow_mut(|last| *last = Some((self.id, epoch, partition.clone(), prefix)));
        Ok(prefix)
    }

    /// Records a change of the registry (made under its write lock, before this call).
    pub(crate) fn changed(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Decodes a stored generation.
pub(crate) fn decode_generation(bytes: &[u8], what: &str) -> Result<u64> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| Error::Corrupt {
        what: format!("{ENGINE} registry: {what}"),
        reason: format!("{} bytes, not 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(raw))
}

/// The partitions that exist, by name, and the next generation to hand out.
#[derive(Debug)]
pub(crate) struct Registry {
    /// The database's key layout.
    pub(crate) layout: Layout,
    /// Partition -> generation.
    pub(crate) partitions: HashMap<Partition, u64>,
    /// The generation the next created partition takes (at least 1).
    pub(crate) next: u64,
}

impl Registry {
    /// The generation of `partition`, or `PartitionNotFound`.
    pub(crate) fn generation(&self, partition: &Partition) -> Result<u64> {
        self.partitions
            .get(partition)
            .copied()
            .ok_or_else(|| Error::PartitionNotFound {
                partition: partition.to_string(),
            })
    }

    /// The key prefix of `partition`, or `PartitionNotFound`.
    pub(crate) fn prefix(&self, partition: &Partition) -> Result<KeyPrefix> {
        Ok(self.layout.prefix(self.generation(partition)?))
    }
}

fn family_named<'a>(db: &'a Db, name: &str) -> Result<&'a ColumnFamily> {
    // Both families of the layout are created when the database opens.
    db.cf_handle(name).ok_or_else(|| {
        RocksDbError::MissingFamily {
            family: name.to_owned(),
        }
        .during("resolving a column family")
    })
}

/// Reads the registry: every partition's generation and the next generation.
pub(crate) fn load_registry(db: &Db, layout: Layout) -> Result<Registry> {
    let cf = layout.registry_family(db)?;
    let what = || "reading the partition registry";
    let next = db
        .get_cf(&cf, NEXT_GENERATION)
        .map_err(rocks(what))?
        .map(|v| decode_generation(&v, "next generation"))
        .transpose()?
        .unwrap_or(1);
    let mut registry = Registry {
        layout,
        next,
        partitions: HashMap::new(),
    };
    let mut options = ReadOptions::default();
    options.set_iterate_upper_bound(
        kalamstore_storage::backend::prefix_successor(PARTITION_PREFIX)
            .map(|b| b.to_vec())
            .unwrap_or_default(),
    );
    let mut it = db.raw_iterator_cf_opt(&cf, options);
    it.seek(PARTITION_PREFIX);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let name =
            std::str::from_utf8(&k[PARTITION_PREFIX.len()..]).map_err(|_| Error::Corrupt {
                what: format!("{ENGINE} registry key {k:02x?}"),
                reason: "the partition name is not UTF-8".into(),
            })?;
        let generation = decode_generation(v, name)?;
        registry.next = registry.next.max(generation + 1);
        registry
            .partitions
            .insert(Partition::new(name)?, generation);
        it.next();
    }
    it.status().map_err(rocks(what))?;
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_keep_a_partition_inside_its_prefix() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let wide = Layout::Wide.prefix(7);
        let (lo, hi) = wide.bounds(&Bound::Unbounded, &Bound::Unbounded);
        assert_eq!(lo, 7u64.to_be_bytes());
        assert_eq!(hi, 8u64.to_be_bytes()[..8].to_vec());
        let (lo, hi) = wide.bounds(&Bound::Excluded(b(b"a")), &Bound::Included(b(b"c")));
        assert_eq!(lo, [&7u64.to_be_bytes()[..], b"a\0"].concat());
        assert_eq!(hi, [&7u64.to_be_bytes()[..], b"c\0"].concat());
        // A key of all 0xff bytes still sorts below the partition's end.
        assert!(wide.key(&[0xff; 40]) < wide.end());
        let compact = Layout::Compact.prefix(7);
        assert_eq!(
            compact.bounds(&Bound::Unbounded, &Bound::Unbounded),
            (vec![7], vec![8])
        );
        assert!(compact.key(&[0xff; 40]) < compact.end());
    }

    #[test]
    fn compact_prefixes_are_short_ordered_and_never_start_one_another() {
        let generations = [
            1u64,
            2,
            0xEF,
            0xF0,
            0xFF,
            0x100,
            0xFFFF,
            0x1_0000,
            1 << 40,
            (1 << 56) - 1,
            1 << 56,
            u64::MAX - 1,
        ];
        let prefixes: Vec<KeyPrefix> = generations
            .iter()
            .map(|g| Layout::Compact.prefix(*g))
            .collect();
        assert_eq!(prefixes[0].as_bytes(), [1]);
        assert_eq!(prefixes[3].as_bytes(), [0xF0, 0xF0]);
        assert_eq!(prefixes[5].as_bytes(), [0xF1, 1, 0]);
        assert_eq!(prefixes[11].len(), 9);
        for (i, a) in prefixes.iter().enumerate() {
            for b in &prefixes[i + 1..] {
                assert!(a.as_bytes() < b.as_bytes(), "{a:?} {b:?}");
                assert!(!b.as_bytes().starts_with(a.as_bytes()), "{a:?} {b:?}");
                // Every key of `a`'s partition sorts below `b`'s first key.
                assert!(a.end() <= b.as_bytes().to_vec(), "{a:?} {b:?}");
            }
        }
    }
}
