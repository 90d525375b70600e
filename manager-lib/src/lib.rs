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

pub mod admin_auth;
pub mod api;
pub mod cache;
pub mod domain;
pub mod grouped;
pub mod links;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod reconcile;
pub mod service;
pub mod settings;
pub mod storage;
pub mod transport;

#[cfg(feature = "conformance")]
pub mod conformance;
