//! The partition registry and key layout: every partition is a key range of one `rows`
//! column family, prefixed with a generation; the registry in the `default` family names them.
//! Also how the two families are resolved and how the registry is loaded at open.
//!
//! | family    | key                          | value         | meaning                     |
//! |-----------|------------------------------|---------------|-----------------------------|
//! | `default` | `"gen"`                      | u64 BE        | next partition generation   |
//! | `default` | `"p" <name>`                 | u64 BE        | partition `name` exists     |
//! | `rows`    | `<generation u64 BE> <key>`  | value         | a key of a partition        |
//!
//! Each creation of a partition takes a fresh generation, so a partition dropped and created
//! again never sees the old keys, even before the range delete of a drop is compacted away.
//! A create is one registry write and a drop one registry delete plus one range delete, in
//! one atomic batch: neither depends on how many partitions exist.

use std::collections::HashMap;
use std::ops::Bound;

use bytes::Bytes;
use kalamstore_storage::backend::Partition;
use kalamstore_storage::{Error, Result};
use rocksdb::{ColumnFamily, ReadOptions};

use crate::Db;
use crate::error::{ENGINE, RocksDbError, rocks};

/// The column family holding every partition's keys.
pub(crate) const ROWS_CF: &str = "rows";
/// Registry key of the next generation.
pub(crate) const NEXT_GENERATION: &[u8] = b"gen";
/// Prefix of the registry keys naming partitions.
pub(crate) const PARTITION_PREFIX: &[u8] = b"p";
/// Bytes of the generation prefix of every key in [`ROWS_CF`].
pub(crate) const GENERATION_BYTES: usize = 8;

/// Registry key of `partition`.
pub(crate) fn registry_key(partition: &Partition) -> Vec<u8> {
    [PARTITION_PREFIX, partition.as_str().as_bytes()].concat()
}

/// `key` of the partition of generation `generation`, as stored, written into `out`.
pub(crate) fn stored_key_into(out: &mut Vec<u8>, generation: u64, key: &[u8]) {
    out.clear();
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(key);
}

/// `key` of the partition of generation `generation`, as stored.
pub(crate) fn stored_key(generation: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(GENERATION_BYTES + key.len());
    stored_key_into(&mut out, generation, key);
    out
}

/// The stored range `[lower, upper)` of the partition of `generation`'s keys within `start` and
/// `end` (the caller handles an empty range).
pub(crate) fn stored_bounds(
    generation: u64,
    start: &Bound<Bytes>,
    end: &Bound<Bytes>,
) -> (Vec<u8>, Vec<u8>) {
    let lower = match start {
        Bound::Included(s) => stored_key(generation, s),
        Bound::Excluded(s) => {
            let mut k = stored_key(generation, s);
            k.push(0);
            k
        }
        Bound::Unbounded => generation.to_be_bytes().to_vec(),
    };
    let upper = match end {
        Bound::Included(e) => {
            let mut k = stored_key(generation, e);
            k.push(0);
            k
        }
        Bound::Excluded(e) => stored_key(generation, e),
        // Generations are allocated from 1 upwards and never reach u64::MAX.
        Bound::Unbounded => (generation + 1).to_be_bytes().to_vec(),
    };
    (lower, upper)
}

/// Decodes a stored generation.
pub(crate) fn decode_generation(bytes: &[u8], what: &str) -> Result<u64> {
    let raw: [u8; GENERATION_BYTES] = bytes.try_into().map_err(|_| Error::Corrupt {
        what: format!("{ENGINE} registry: {what}"),
        reason: format!("{} bytes, not {GENERATION_BYTES}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(raw))
}

/// The partitions that exist, by name, and the next generation to hand out.
#[derive(Debug, Default)]
pub(crate) struct Registry {
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
}

/// The family holding every partition's keys.
pub(crate) fn rows_family(db: &Db) -> Result<&ColumnFamily> {
    family_named(db, ROWS_CF)
}

/// The family holding the partition registry.
pub(crate) fn registry_family(db: &Db) -> Result<&ColumnFamily> {
    family_named(db, "default")
}

fn family_named<'a>(db: &'a Db, name: &str) -> Result<&'a ColumnFamily> {
    // Both families are created when the database opens.
    db.cf_handle(name).ok_or_else(|| {
        RocksDbError::MissingFamily {
            family: name.to_owned(),
        }
        .during("resolving a column family")
    })
}

/// Reads the registry: every partition's generation and the next generation.
pub(crate) fn load_registry(db: &Db) -> Result<Registry> {
    let cf = registry_family(db)?;
    let what = || "reading the partition registry";
    let next = db
        .get_cf(&cf, NEXT_GENERATION)
        .map_err(rocks(what))?
        .map(|v| decode_generation(&v, "next generation"))
        .transpose()?
        .unwrap_or(1);
    let mut registry = Registry {
        next,
        ..Registry::default()
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
    fn stored_bounds_keep_a_partition_inside_its_generation() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let (lo, hi) = stored_bounds(7, &Bound::Unbounded, &Bound::Unbounded);
        assert_eq!(lo, 7u64.to_be_bytes());
        assert_eq!(hi, 8u64.to_be_bytes());
        let (lo, hi) = stored_bounds(7, &Bound::Excluded(b(b"a")), &Bound::Included(b(b"c")));
        assert_eq!(lo, [&7u64.to_be_bytes()[..], b"a\0"].concat());
        assert_eq!(hi, [&7u64.to_be_bytes()[..], b"c\0"].concat());
        // A key of all 0xff bytes still sorts below the next generation.
        assert!(stored_key(7, &[0xff; 40]) < 8u64.to_be_bytes().to_vec());
    }
}
