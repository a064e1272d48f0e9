//! Deletion vectors in the Delta log: inline in the descriptor (Z85 of the portable bitmap)
//! for small ones, else in a `deletion_vector_<uuid>.bin` file at the table's root.
//!
//! | bytes of a DV file        | field                                                 |
//! |---------------------------|-------------------------------------------------------|
//! | 0                         | format version `0x01`, once per file                  |
//! | per DV, at its `offset`:  |                                                       |
//! | +0..+4                    | size of magic + bitmap, u32 BE (= `sizeInBytes`)       |
//! | +4..+8                    | magic `1681511377`, u32 LE                            |
//! | +8..+4+size               | the positions as a portable 64-bit Roaring bitmap     |
//! | next 4                    | CRC-32 of magic + bitmap, u32 BE                      |
//!
//! kalamstore's own deletion-vector bytes (`format::DeletionVector::encode`) are exactly the
//! magic, bitmap and CRC, so a DV file entry is its length and those bytes.

use uuid::Uuid;

use super::actions::DvDescriptor;
use crate::format::DeletionVector;

/// Largest magic + bitmap kept inline in a descriptor.
const INLINE_MAX_BYTES: usize = 64;

/// One `deletion_vector_<uuid>.bin` being assembled for a commit.
pub(crate) struct DvFile {
    uuid: Uuid,
    bytes: Vec<u8>,
}

impl DvFile {
    pub(crate) fn new() -> Self {
        Self {
            uuid: Uuid::new_v4(),
            bytes: vec![1],
        }
    }

    /// The file's name at the table's root.
    pub(crate) fn name(&self) -> String {
        format!("deletion_vector_{}.bin", self.uuid.hyphenated())
    }

    /// Whether no vector went into the file.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.len() == 1
    }

    /// The file's bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The descriptor of `dv`: inline when small, else appended to this file.
    pub(crate) fn describe(&mut self, dv: &DeletionVector) -> DvDescriptor {
        let encoded = dv.encode();
        // Magic + bitmap; our encoding adds the CRC-32 Delta puts after them.
        let body = &encoded[..encoded.len() - 4];
        if body.len() <= INLINE_MAX_BYTES {
            let mut padded = body.to_vec();
            padded.resize(body.len().div_ceil(4) * 4, 0);
            return DvDescriptor {
                storage_type: "i".into(),
                path_or_inline_dv: z85::encode(&padded),
                offset: None,
                size_in_bytes: body.len() as u32,
                cardinality: dv.len(),
            };
        }
        let offset = self.bytes.len() as u32;
        self.bytes
            .extend_from_slice(&(body.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(&encoded);
        DvDescriptor {
            storage_type: "u".into(),
            path_or_inline_dv: z85::encode(self.uuid.as_bytes()),
            offset: Some(offset),
            size_in_bytes: body.len() as u32,
            cardinality: dv.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_fixture_vector_has_the_same_bytes() {
        // delta-kernel-rs `table-with-dv-small`: rows {0, 9}, 45 bytes, CRC 2A671846.
        let mut dv = DeletionVector::new();
        dv.insert(0);
        dv.insert(9);
        let mut file = DvFile::new();
        // Force the file path: this vector is small enough to go inline.
        let encoded = dv.encode();
        let body = &encoded[..encoded.len() - 4];
        file.bytes
            .extend_from_slice(&(body.len() as u32).to_be_bytes());
        file.bytes.extend_from_slice(&encoded);
        assert_eq!(file.bytes.len(), 45);
        assert_eq!(&file.bytes[1..5], &36u32.to_be_bytes());
        assert_eq!(&file.bytes[5..9], &[0xD1, 0xD3, 0x39, 0x64]);
        assert_eq!(&file.bytes[41..45], &0x2A67_1846u32.to_be_bytes());
        let inline = DvFile::new().describe(&dv);
        assert_eq!(
            (inline.storage_type.as_str(), inline.size_in_bytes),
            ("i", 36)
        );
        assert_eq!(inline.path_or_inline_dv.len(), 45);
    }

    #[test]
    fn large_vectors_go_to_the_file_with_offsets() {
        let mut dv = DeletionVector::new();
        for p in (0..10_000).step_by(3) {
            dv.insert(p);
        }
        let mut file = DvFile::new();
        let a = file.describe(&dv);
        let b = file.describe(&dv);
        assert_eq!(a.storage_type, "u");
        assert_eq!(a.offset, Some(1));
        assert_eq!(b.offset, Some(1 + 4 + a.size_in_bytes + 4));
        assert_eq!(a.path_or_inline_dv.len(), 20);
        assert_eq!(a.cardinality, dv.len());
    }
}
