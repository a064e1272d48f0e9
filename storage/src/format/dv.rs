//! Deletion vectors: the set of dead row positions of one Parquet file.
//!
//! Stored in the byte format Delta Lake and Iceberg v3 (`deletion-vector-v1`) share:
//!
//! | offset   | size | field                                                         |
//! |----------|------|---------------------------------------------------------------|
//! | 0        | 4    | magic `1681511377`, u32 LE                                    |
//! | 4        | n    | the positions as a portable 64-bit Roaring bitmap             |
//! | 4 + n    | 4    | CRC-32 of the preceding `4 + n` bytes, u32 BE                 |
//!
//! (Delta frames the blob with a length and Iceberg with a Puffin footer; kalamstore keeps the
//! blob inline in the table's manifest partition, so the frame is the partition value.)

use roaring::RoaringTreemap;

use crate::error::{DecodeError, Error, Result};

/// The magic number of the deletion-vector format.
pub const DV_MAGIC: u32 = 1_681_511_377;

/// The dead row positions of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeletionVector(RoaringTreemap);

impl DeletionVector {
    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `position` dead; returns whether it was live before.
    pub fn insert(&mut self, position: u64) -> bool {
        self.0.insert(position)
    }

    /// Marks `position` live again; returns whether it was dead.
    pub fn remove(&mut self, position: u64) -> bool {
        self.0.remove(position)
    }

    /// Whether `position` is dead.
    pub fn contains(&self, position: u64) -> bool {
        self.0.contains(position)
    }

    /// How many positions are dead.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether no position is dead.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every position of a file of `rows` rows except `live`: a vector that reads only those.
    pub fn all_except(rows: u64, live: impl IntoIterator<Item = u64>) -> Self {
        let mut all = RoaringTreemap::new();
        all.insert_range(0..rows);
        for position in live {
            all.remove(position);
        }
        Self(all)
    }

    /// Marks every position of `positions` dead. Strictly increasing positions (a merge-join's
    /// output) are packed into the bitmap in one pass; any other order is inserted one by one.
    pub fn extend_sorted(&mut self, positions: &[u64]) {
        match RoaringTreemap::from_sorted_iter(positions.iter().copied()) {
            Ok(sorted) if self.0.is_empty() => self.0 = sorted,
            Ok(sorted) => self.0 |= sorted,
            Err(_) => self.0.extend(positions.iter().copied()),
        }
    }

    /// Adds every position of `other`.
    pub fn union_with(&mut self, other: &Self) {
        self.0 |= &other.0;
    }

    /// Dead positions in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter()
    }

    /// Encodes the vector (see the module's byte layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.0.serialized_size());
        out.extend_from_slice(&DV_MAGIC.to_le_bytes());
        self.0
            .serialize_into(&mut out)
            .expect("writing to a Vec cannot fail");
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a stored vector; `what` names it (table and file) in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Self> {
        let corrupt = |reason: String| Error::Corrupt {
            what: format!("deletion vector of {what}"),
            reason,
        };
        if bytes.len() < 8 {
            return Err(corrupt(
                DecodeError::Truncated {
                    at: bytes.len(),
                    needed: 8 - bytes.len(),
                }
                .to_string(),
            ));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_be_bytes(crc.try_into().expect("split_at left 4 bytes"));
        if crc32fast::hash(body) != stored {
            return Err(corrupt("checksum mismatch".into()));
        }
        let magic = u32::from_le_bytes(body[..4].try_into().expect("length checked above"));
        if magic != DV_MAGIC {
            return Err(corrupt(format!("bad magic {magic}")));
        }
        let bitmap = RoaringTreemap::deserialize_from(&body[4..])
            .map_err(|e| corrupt(format!("bad bitmap: {e}")))?;
        Ok(Self(bitmap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn vectors_round_trip(positions in proptest::collection::vec(0u64..(1 << 40), 0..200)) {
            let mut dv = DeletionVector::new();
            for p in &positions {
                dv.insert(*p);
            }
            let decoded = DeletionVector::decode(&dv.encode(), "t").unwrap();
            prop_assert_eq!(&decoded, &dv);
            for p in &positions {
                prop_assert!(decoded.contains(*p));
            }
        }

        #[test]
        fn extending_equals_inserting(
            before in proptest::collection::vec(0u64..(1 << 34), 0..100),
            mut added in proptest::collection::vec(0u64..(1 << 34), 0..300),
            sort in any::<bool>(),
        ) {
            if sort {
                added.sort_unstable();
                added.dedup();
            }
            let mut model = DeletionVector::new();
            for p in before.iter().chain(&added) {
                model.insert(*p);
            }
            let mut dv = DeletionVector::new();
            for p in &before {
                dv.insert(*p);
            }
            dv.extend_sorted(&added);
            prop_assert_eq!(dv, model);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = DeletionVector::decode(&bytes, "t");
        }
    }

    #[test]
    fn a_flipped_bit_is_caught() {
        let mut dv = DeletionVector::new();
        dv.insert(3);
        let mut bytes = dv.encode();
        bytes[5] ^= 1;
        assert!(matches!(
            DeletionVector::decode(&bytes, "t"),
            Err(Error::Corrupt { .. })
        ));
    }
}
