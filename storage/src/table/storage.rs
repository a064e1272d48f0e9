//! An open storage: its registered definition, its hot engine and its cold object store.

use std::sync::Arc;

use crate::backend::StorageBackend;
use crate::catalog::StorageDefinition;
use crate::clock::Clock;
use crate::location::OpenedStore;

/// A storage opened for use.
pub(crate) struct StorageHandle {
    /// The registered definition.
    pub(crate) def: StorageDefinition,
    /// The hot engine.
    pub(crate) hot: Arc<dyn StorageBackend>,
    /// The cold object store (Parquet files).
    pub(crate) cold: OpenedStore,
    /// The store's clock: `_updated` of writes and STREAM expiry.
    pub(crate) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StorageHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageHandle")
            .field("id", &self.def.id)
            .finish_non_exhaustive()
    }
}
