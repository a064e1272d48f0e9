//! The conformance suite: one case per bullet of the `StorageBackend` contract, run against
//! every engine through [`conformance_suite!`](crate::conformance_suite).
//!
//! Cases panic on a broken guarantee (they are test code). Engines that differ declare it in
//! `capabilities()`, and the cases branch on that instead of being skipped.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{Partition, ScanRequest, StorageBackend, WriteBatch, scan_all};
use crate::error::Result;

mod lifecycle;
mod scans;
mod values;

pub use lifecycle::*;
pub use scans::*;
pub use values::*;

/// Opens an engine at one fixed location; opening again after `close` must see the same data
/// when the engine is durable.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// Opens (or reopens) the backend.
    async fn open(&self) -> Result<Arc<dyn StorageBackend>>;
}

/// Stamps out one `#[tokio::test]` per conformance case for an engine.
///
/// `conformance_suite!(factory)` takes an expression building a fresh [`BackendFactory`] (with
/// its own temp dir) for each test; `conformance_suite!(optional: factory)` takes one building an
/// `Option` of it, for engines that need an external server, and runs the case only when it is
/// `Some`. The calling crate needs `tokio` (with `macros`) as a dev-dependency.
#[macro_export]
macro_rules! conformance_suite {
    (optional: $factory:expr) => {
        $crate::conformance_suite!(@list [optional $factory]);
    };
    ($factory:expr) => {
        $crate::conformance_suite!(@list [required $factory]);
    };
    (@list $mode:tt) => {
        $crate::conformance_suite!(@cases $mode;
            missing_key_reads_none,
            put_then_get_returns_the_value,
            get_many_answers_each_key_in_order,
            put_overwrites_the_previous_value,
            delete_removes_the_key_and_is_idempotent,
            empty_keys_and_values_are_valid,
            large_values_round_trip,
            batch_applies_every_op_across_partitions,
            batch_with_a_failing_op_applies_nothing,
            staged_batch_commits_every_part_at_once,
            delete_range_removes_exactly_its_range,
            scan_returns_keys_in_byte_order,
            scan_respects_range_bounds,
            scan_prefix_stays_inside_the_prefix,
            scan_reverse_returns_descending_keys,
            scan_limit_and_chunks_visit_each_key_once,
            scan_with_visits_what_scan_returns,
            reclaim_changes_no_entry,
            partitions_are_isolated,
            partitions_whose_names_prefix_each_other_are_isolated,
            create_partition_is_idempotent_and_listed,
            drop_partition_removes_its_data,
            operations_on_a_missing_partition_fail,
            concurrent_writers_lose_nothing,
            reopen_after_close_keeps_data_when_durable,
            closed_backend_refuses_requests,
            stats_count_partitions,
            works_from_a_current_thread_runtime
        );
    };
    (@cases $mode:tt; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::conformance_suite!(@run $mode $case);
            }
        )*
    };
    (@run [required $factory:expr] $case:ident) => {
        let factory = $factory;
        $crate::conformance::$case(&factory).await;
    };
    (@run [optional $factory:expr] $case:ident) => {
        if let Some(factory) = $factory {
            $crate::conformance::$case(&factory).await;
        }
    };
}

fn p(name: &str) -> Partition {
    Partition::new(name).expect("test partition names are valid")
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

async fn open_with(factory: &dyn BackendFactory, partitions: &[&str]) -> Arc<dyn StorageBackend> {
    let backend = factory.open().await.expect("open backend");
    for name in partitions {
        backend
            .create_partition(&p(name))
            .await
            .expect("create partition");
    }
    backend
}

async fn keys(backend: &dyn StorageBackend, partition: &str, request: ScanRequest) -> Vec<Bytes> {
    scan_all(backend, &p(partition), request)
        .await
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

async fn put_all(backend: &dyn StorageBackend, partition: &str, keys: &[&'static [u8]]) {
    let mut batch = WriteBatch::new();
    for k in keys {
        batch.put(&p(partition), b(k), b(k));
    }
    backend.batch(batch).await.expect("batch");
}

/// A factory for [`MemoryBackend`](crate::MemoryBackend): every open is a fresh, empty engine.
#[derive(Debug, Default)]
pub struct MemoryFactory;

#[async_trait]
impl BackendFactory for MemoryFactory {
    async fn open(&self) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(crate::MemoryBackend::new()))
    }
}
