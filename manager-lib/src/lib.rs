//! The xray-manager as a library: the domain, the ports (`Storage`, and in
//! later modules `NodeTransport` and `Cache`), their in-memory reference
//! backends, and the storage conformance suite (feature `conformance`).
//!
//! ```
//! use std::sync::Arc;
//! use manager_lib::storage::{Storage, memory::MemoryStorage};
//! let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
//! # let _ = storage;
//! ```

/// The HTTP face: router, handlers, error table, OpenAPI, rate limit, admin auth.
pub mod api;
/// The `Cache` port and the caching `Storage` decorator.
pub mod cache;
/// Nodes, users, their statuses and the operations a node still has to apply.
pub mod domain;
/// Template filling for the user-node-list call (pure, no I/O).
pub mod links;
/// The scenarios (`Manager`, `ManagerError`), and in `manager::push` the fleet push engine.
pub mod manager;
/// Prometheus metrics.
pub mod metrics;
/// The heartbeat loop: leases, per-node reconciliation, backoff.
pub mod reconcile;
/// Typed settings: defaults, TOML file, `XM_*` environment.
pub mod settings;
/// The `Storage` port, its in-memory reference backend, and for backend
/// authors `storage::kit` (shared rules, paging) and `storage::grouped`.
pub mod storage;
/// The `NodeTransport` port: the HTTP transport, the simulated fleet, and
/// their conformance suite.
pub mod transport;

/// The `Storage` conformance suite every backend runs (`Cache`'s and
/// `NodeTransport`'s are in `cache` and `transport`).
#[cfg(feature = "conformance")]
pub mod conformance;
