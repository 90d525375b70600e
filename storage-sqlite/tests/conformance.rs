//! The shared `Storage` conformance suite on a fresh SQLite file per test.

mod common;

use common::fresh_storage;

manager_lib::storage_conformance_tests!(fresh_storage().await);
