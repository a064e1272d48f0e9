//! What the cache stores: keys (a partition's epoch and the key) and values (the inner engine's
//! value or its absence, stamped with when it was current), and a borrowed key that finds an
//! owned one's entry.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A cache key: a partition's epoch and a key of it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CacheKey {
    pub(crate) epoch: u64,
    pub(crate) key: Bytes,
}

/// A [`CacheKey`] borrowed from elsewhere: it hashes like one (the derived `Hash` of both
/// writes the epoch, then the key's slice), so it finds the same stripe and memory entry
/// without an allocation of its own.
#[derive(Debug, Clone, Copy, Hash)]
pub(crate) struct CacheKeyRef<'a> {
    pub(crate) epoch: u64,
    pub(crate) key: &'a [u8],
}

impl equivalent::Equivalent<CacheKey> for CacheKeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        self.epoch == key.epoch && self.key == key.key.as_ref()
    }
}

/// What the cache holds for a key: its value (`None`: the key is absent) and when that was
/// the inner engine's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CacheValue {
    pub(crate) stamp: Stamp,
    pub(crate) value: Option<Bytes>,
}

impl CacheValue {
    pub(crate) fn len(&self) -> usize {
        self.value.as_ref().map_or(0, Bytes::len)
    }
}

/// When a cached value was current: the process that cached it and its stripe's generation
/// then. The value stays current while that generation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    pub(crate) incarnation: u64,
    pub(crate) generation: u64,
}
