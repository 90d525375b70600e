//! The storage conformance suite against the in-memory reference backend.

use std::sync::Arc;

use manager_lib::storage::{Storage, memory::MemoryStorage};

fn fresh() -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new())
}

manager_lib::storage_conformance_tests!(fresh());
