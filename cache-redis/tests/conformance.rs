//! The cache conformance suite against Redis.

mod common;

manager_lib::cache_conformance_tests!(optional common::fresh().await);
