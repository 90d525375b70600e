//! The shared `Storage` conformance suite on a fresh SQLite file per test,
//! with node keys and user secrets sealed: sealing changes no behaviour.

mod common;

use common::fresh_sealed_storage;

manager_lib::storage_conformance_tests!(fresh_sealed_storage().await);
