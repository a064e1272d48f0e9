//! `FoyerConfig`: sizes and location of a foyer hybrid (memory + disk) cache.

use std::path::PathBuf;

/// Settings of a foyer hybrid cache.
#[derive(Debug, Clone)]
pub struct FoyerConfig {
    /// Memory tier capacity, in bytes (keys and values are weighed by their length).
    pub memory_bytes: usize,
    /// Directory of the disk tier; `None` keeps the cache in memory only.
    pub disk_dir: Option<PathBuf>,
    /// Disk tier capacity, in bytes.
    pub disk_bytes: usize,
    /// Disk block size, which is also the largest entry the disk tier keeps (4 KiB aligned).
    pub block_bytes: usize,
    /// Worker threads of the cache's own runtime.
    pub worker_threads: usize,
}

impl FoyerConfig {
    /// A memory-only cache of `memory_bytes`.
    pub fn memory(memory_bytes: usize) -> Self {
        Self {
            memory_bytes,
            disk_dir: None,
            disk_bytes: 0,
            block_bytes: 1 << 20,
            worker_threads: 1,
        }
    }

    /// A hybrid cache: `memory_bytes` in memory, `disk_bytes` under `dir`.
    pub fn hybrid(memory_bytes: usize, dir: impl Into<PathBuf>, disk_bytes: usize) -> Self {
        Self {
            disk_dir: Some(dir.into()),
            disk_bytes,
            ..Self::memory(memory_bytes)
        }
    }
}
