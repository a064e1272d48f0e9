//! Opening a database written by the earlier layout (one column family `p:<name>` per
//! partition): each such family is copied into the rows family (of the `Wide` layout, which
//! such a database takes) under a fresh generation and then dropped, once, at open.
//!
//! Crash-safe by order: the keys are copied first (into a generation the registry does not
//! name yet, cleared before the copy), then one atomic batch names the partition and advances
//! the generation counter, then the old family is dropped. A crash before the batch leaves the
//! old family as the truth and the copy is redone; a crash after it leaves a family the
//! registry already names, which the next open drops.

use kalamstore_storage::Result;
use kalamstore_storage::backend::Partition;
use kalamstore_storage::failpoint::crash_point;
use rocksdb::{IteratorMode, WriteBatch};

use crate::Db;
use crate::error::rocks;
use crate::registry::{NEXT_GENERATION, Registry, registry_key};

/// Column families of the earlier layout carry this prefix.
pub(crate) const OLD_FAMILY_PREFIX: &str = "p:";

/// Entries copied per write batch.
const COPY_BATCH: usize = 4096;

/// What a migration did at open.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Migrated {
    /// Partitions moved out of their own column family.
    pub(crate) partitions: usize,
    /// Keys they held.
    pub(crate) keys: u64,
}

/// Moves every partition family named in `families` into the rows family, registering it in
/// `registry`.
pub(crate) fn migrate(
    db: &mut Db,
    families: &[String],
    registry: &mut Registry,
) -> Result<Migrated> {
    let mut done = Migrated::default();
    for family in families {
        let Some(name) = family.strip_prefix(OLD_FAMILY_PREFIX) else {
            continue;
        };
        let partition = Partition::new(name)?;
        if !registry.partitions.contains_key(&partition) {
            done.keys += copy_family(db, family, &partition, registry)?;
            done.partitions += 1;
        }
        crash_point("rocksdb.migrate.before_drop");
        db.drop_cf(family).map_err(rocks(|| {
            format!("dropping the migrated column family `{family}`")
        }))?;
    }
    Ok(done)
}

/// Copies one old family into a fresh generation and registers it; returns the keys copied.
fn copy_family(
    db: &Db,
    family: &str,
    partition: &Partition,
    registry: &mut Registry,
) -> Result<u64> {
    let what = || format!("migrating partition `{partition}` out of column family `{family}`");
    let old = db
        .cf_handle(family)
        .ok_or_else(|| kalamstore_storage::Error::PartitionNotFound {
            partition: partition.to_string(),
        })?;
    let rows = registry.layout.rows_family(db)?;
    let generation = registry.next;
    let prefix = registry.layout.prefix(generation);
    // A copy that a crash interrupted may have left keys under this generation.
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(&rows, prefix.as_bytes(), &prefix.end());
    let mut copied = 0u64;
    let mut key = Vec::new();
    for entry in db.iterator_cf(&old, IteratorMode::Start) {
        let (k, v) = entry.map_err(rocks(what))?;
        prefix.key_into(&mut key, &k);
        batch.put_cf(&rows, &key, &v);
        copied += 1;
        if batch.len() >= COPY_BATCH {
            db.write(std::mem::take(&mut batch)).map_err(rocks(what))?;
            crash_point("rocksdb.migrate.copying");
        }
    }
    // Every key is copied; the registry does not name the copy yet.
    db.write(std::mem::take(&mut batch)).map_err(rocks(what))?;
    crash_point("rocksdb.migrate.copied");
    let registry_family = registry.layout.registry_family(db)?;
    batch.put_cf(
        &registry_family,
        registry_key(partition),
        generation.to_be_bytes(),
    );
    batch.put_cf(
        &registry_family,
        NEXT_GENERATION,
        (generation + 1).to_be_bytes(),
    );
    db.write(batch).map_err(rocks(what))?;
    registry.partitions.insert(partition.clone(), generation);
    registry.next = generation + 1;
    Ok(copied)
}
