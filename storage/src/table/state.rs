//! A table's state in memory: buffered-entry counts and the manifest (live files with their
//! deletion vectors and hidden rows) per scope, mirrored from the meta partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use crate::format::{DeletionVector, FileMeta, Hidden, HotCount};
use crate::ids::KeyScope;

/// One live file of a scope with its current deletion vector and hidden rows.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// The manifest entry.
    pub meta: FileMeta,
    /// Dead row positions (published: the file's Delta deletion vector).
    pub dv: Arc<DeletionVector>,
    /// Live rows whose keys have a newer hot entry (kept by `h` entries, not published):
    /// reads skip them like dead rows, a flush of those keys moves them into `dv`.
    pub hidden: Arc<DeletionVector>,
    /// `dv` and `hidden` together, computed by the first read that needs it (shared by the
    /// entry's clones; a new cell whenever either changes).
    dead: Arc<OnceLock<Arc<DeletionVector>>>,
}

impl FileEntry {
    /// An entry for a file and its deletion vector, nothing hidden.
    pub(crate) fn new(meta: FileMeta, dv: DeletionVector) -> Self {
        Self::with_hidden(meta, Arc::new(dv), Arc::default())
    }

    /// An entry for a file, its deletion vector and its hidden rows.
    pub(crate) fn with_hidden(
        meta: FileMeta,
        dv: Arc<DeletionVector>,
        hidden: Arc<DeletionVector>,
    ) -> Self {
        Self {
            meta,
            dv,
            hidden,
            dead: Arc::default(),
        }
    }

    /// The rows a read skips: the deletion vector and the hidden rows (the same `Arc` for
    /// every read until either changes).
    pub fn dead(&self) -> Arc<DeletionVector> {
        if self.hidden.is_empty() {
            return self.dv.clone();
        }
        self.dead
            .get_or_init(|| {
                let mut dead = (*self.dv).clone();
                dead.union_with(&self.hidden);
                Arc::new(dead)
            })
            .clone()
    }

    /// Marks rows hidden.
    pub(crate) fn hide(&mut self, positions: impl IntoIterator<Item = u64>) {
        let hidden = Arc::make_mut(&mut self.hidden);
        for p in positions {
            hidden.insert(p);
        }
        self.dead = Arc::default();
    }

    /// Marks the rows of a set hidden.
    pub(crate) fn hide_set(&mut self, positions: &DeletionVector) {
        Arc::make_mut(&mut self.hidden).union_with(positions);
        self.dead = Arc::default();
    }

    /// Rows a read returns.
    pub fn live_rows(&self) -> u64 {
        self.meta
            .rows
            .saturating_sub(self.dv.len() + self.hidden.len())
    }
}

/// The in-memory state of a table.
#[derive(Debug, Default)]
pub(crate) struct TableState {
    /// Buffered hot entries per scope (changed through [`set_count`](Self::set_count)).
    pub(crate) counters: HashMap<KeyScope, HotCount>,
    /// Live files per scope, in file id order.
    pub(crate) files: BTreeMap<KeyScope, Vec<FileEntry>>,
    /// Bumped with every commit that changes hot entries: decoded hot rows cached at one
    /// version are current while it holds.
    pub(crate) hot_version: u64,
}

impl TableState {
    /// Records a scope's count after a commit that changed its hot entries.
    pub(crate) fn set_count(&mut self, scope: &KeyScope, count: HotCount) {
        self.counters.insert(scope.clone(), count);
        self.hot_version += 1;
    }

    /// The buffered-entry count of a scope.
    pub(crate) fn count(&self, scope: &KeyScope) -> HotCount {
        self.counters.get(scope).copied().unwrap_or_default()
    }

    /// Every scope with buffered entries or files, in order.
    pub(crate) fn scopes(&self) -> Vec<KeyScope> {
        let mut scopes: Vec<KeyScope> = self
            .counters
            .keys()
            .chain(self.files.keys())
            .cloned()
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// Marks rows hidden (in memory; the caller committed their `h` entries).
    pub(crate) fn hide(&mut self, scope: &KeyScope, rows: impl IntoIterator<Item = Hidden>) {
        let mut by_file: BTreeMap<i64, DeletionVector> = BTreeMap::new();
        for at in rows {
            by_file.entry(at.file).or_default().insert(at.position);
        }
        self.hide_by_file(scope, &by_file);
    }

    /// Marks rows hidden, given by file (in memory; the caller committed their `h` entries).
    pub(crate) fn hide_by_file(
        &mut self,
        scope: &KeyScope,
        by_file: &BTreeMap<i64, DeletionVector>,
    ) {
        let Some(files) = self.files.get_mut(scope) else {
            return;
        };
        for (file, positions) in by_file {
            if let Some(f) = files.iter_mut().find(|f| f.meta.id == *file) {
                f.hide_set(positions);
            }
        }
    }
}

/// What a scan of the meta partition found, before files, vectors and hidden rows are
/// paired.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// Entries and, when stored, tombstones per scope.
    pub(super) counters: HashMap<KeyScope, (u64, Option<u64>)>,
    pub(super) files: BTreeMap<(KeyScope, i64), FileMeta>,
    pub(super) dvs: HashMap<(KeyScope, i64), DeletionVector>,
    pub(super) hidden: HashMap<(KeyScope, i64), DeletionVector>,
    /// Whether the table keeps `h` entries.
    pub(super) overlay: bool,
}

impl Loaded {
    /// Pairs every file with its vector and hidden rows (a file without them has none). A
    /// counter stored without its tombstones counts none until the table is upgraded.
    pub(super) fn into_state(mut self) -> TableState {
        let counters = self
            .counters
            .into_iter()
            .map(|(scope, (entries, tombstones))| {
                let tombstones = tombstones.unwrap_or(0);
                (
                    scope,
                    HotCount {
                        entries,
                        tombstones,
                    },
                )
            })
            .collect();
        let mut state = TableState {
            counters,
            files: BTreeMap::new(),
            hot_version: 0,
        };
        for ((scope, id), meta) in self.files {
            let key = (scope.clone(), id);
            let dv = self.dvs.remove(&key).unwrap_or_default();
            let hidden = self.hidden.remove(&key).unwrap_or_default();
            state
                .files
                .entry(scope)
                .or_default()
                .push(FileEntry::with_hidden(meta, Arc::new(dv), Arc::new(hidden)));
        }
        state
    }
}
