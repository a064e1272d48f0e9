//! The marker that lets a disk tier reopen warm: written at a clean close with a token of the
//! source's state (and what the cache needs to find its entries again), removed at open before
//! the cache serves anything. A cache reopens warm only when the marker is there and its token
//! equals the source's token now; a crash leaves no marker, so the next open starts cold.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::FoyerError;

/// File name of the marker inside the disk tier's directory.
const FILE: &str = "kalamstore-warm";
/// The marker's format and that of the cached entries: a marker of another version means a
/// cold start.
const MAGIC: &[u8; 16] = b"kalamstore-warm3";

/// What a clean close leaves for the next open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// The source's state when the cache closed.
    pub(crate) token: Vec<u8>,
    /// The cache's own state (e.g. partition epochs).
    pub(crate) payload: Vec<u8>,
}

impl Marker {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + self.token.len() + self.payload.len());
        out.extend_from_slice(MAGIC);
        for part in [&self.token, &self.payload] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let mut part = || -> Option<Vec<u8>> {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            let (value, tail) = tail.split_at_checked(len)?;
            rest = tail;
            Some(value.to_vec())
        };
        let token = part()?;
        let payload = part()?;
        rest.is_empty().then_some(Self { token, payload })
    }
}

/// Reads and removes the marker in `dir` (durably, before the cache serves anything). A
/// missing or unreadable marker is `None`: the cache must start cold.
pub(crate) fn take(dir: &Path) -> Result<Option<Marker>, FoyerError> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path, "reading", e)),
    };
    fs::remove_file(&path).map_err(|e| io(&path, "removing", e))?;
    sync_dir(dir)?;
    Ok(Marker::decode(&bytes))
}

/// Writes the marker into `dir`: a temporary file, fsynced, renamed into place.
pub(crate) fn put(dir: &Path, marker: &Marker) -> Result<(), FoyerError> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(|e| io(&tmp, "creating", e))?;
    file.write_all(&marker.encode())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&tmp, "writing", e))?;
    let path = dir.join(FILE);
    fs::rename(&tmp, &path).map_err(|e| io(&path, "renaming into", e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), FoyerError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, "syncing", e))
}

fn io(path: &Path, op: &str, e: std::io::Error) -> FoyerError {
    FoyerError::Runtime(format!("{op} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_read_once_and_a_damaged_one_means_cold() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take(dir.path()).unwrap(), None);
        let marker = Marker {
            token: b"identity:42".to_vec(),
            payload: vec![1, 2, 3],
        };
        put(dir.path(), &marker).unwrap();
        assert_eq!(take(dir.path()).unwrap(), Some(marker.clone()));
        assert_eq!(take(dir.path()).unwrap(), None, "taking removes it");

        let mut bytes = marker.encode();
        bytes.pop();
        fs::write(dir.path().join(FILE), &bytes).unwrap();
        assert_eq!(
            take(dir.path()).unwrap(),
            None,
            "a torn marker is not trusted"
        );
        assert!(!dir.path().join(FILE).exists());
    }
}
