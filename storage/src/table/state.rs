//! A table's state in memory: buffered-entry counters and the manifest (live files with their
//! deletion vectors) per scope, mirrored from the meta partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::format::{DeletionVector, FileMeta};
use crate::ids::KeyScope;

/// One live file of a scope with its current deletion vector.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// The manifest entry.
    pub meta: FileMeta,
    /// Dead row positions.
    pub dv: Arc<DeletionVector>,
}

impl FileEntry {
    /// An entry for a file and its deletion vector.
    pub(crate) fn new(meta: FileMeta, dv: DeletionVector) -> Self {
        Self {
            meta,
            dv: Arc::new(dv),
        }
    }
}

/// The in-memory state of a table.
#[derive(Debug, Default)]
pub(crate) struct TableState {
    /// Buffered hot entries per scope.
    pub(crate) counters: HashMap<KeyScope, u64>,
    /// Live files per scope, in file id order.
    pub(crate) files: BTreeMap<KeyScope, Vec<FileEntry>>,
}

/// What a scan of the meta partition found, before files and vectors are paired.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub(super) counters: HashMap<KeyScope, u64>,
    pub(super) files: BTreeMap<(KeyScope, i64), FileMeta>,
    pub(super) dvs: HashMap<(KeyScope, i64), DeletionVector>,
}

impl Loaded {
    /// Pairs every file with its vector (a file without one has no dead rows).
    pub(super) fn into_state(mut self) -> TableState {
        let mut state = TableState {
            counters: self.counters,
            files: BTreeMap::new(),
        };
        for ((scope, id), meta) in self.files {
            let dv = self.dvs.remove(&(scope.clone(), id)).unwrap_or_default();
            state
                .files
                .entry(scope)
                .or_default()
                .push(FileEntry::new(meta, dv));
        }
        state
    }
}
