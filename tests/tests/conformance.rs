//! Every engine combination the engine crates do not cover themselves, through the one suite:
//! the in-memory engine, foyer over RocksDB, foyer over the object-store engine, and the
//! object-store engine on a local S3-compatible server.

use kalamstore_tests::{FoyerFactory, ObjectStoreFactory, RocksDbFactory};

mod memory {
    kalamstore_storage::conformance_suite!(kalamstore_storage::conformance::MemoryFactory);
}

mod foyer_over_rocksdb {
    use super::*;
    kalamstore_storage::conformance_suite!(FoyerFactory::over(RocksDbFactory::new()));
}

mod foyer_over_object_store {
    use super::*;
    kalamstore_storage::conformance_suite!(FoyerFactory::over(ObjectStoreFactory::local()));
}

mod object_store_on_s3 {
    use super::*;
    kalamstore_storage::conformance_suite!(optional: ObjectStoreFactory::s3());
}
