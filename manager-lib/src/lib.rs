//! The xray-manager as a library: the domain, the ports (`Storage`,
//! `NodeTransport`, `Cache`) with their in-memory reference backends, the
//! scenarios (`Manager`), the heartbeat, the HTTP API, and the composition
//! root that wires them ([`server`]).
//!
//! A program runs a manager through the root, which pushes each user change
//! to the nodes right away and runs the heartbeat:
//!
//! ```no_run
//! use std::sync::Arc;
//! use manager_lib::server::{Backends, Server, ServerSettings};
//! use manager_lib::storage::memory::MemoryStorage;
//! use manager_lib::transport::simulated::SimulatedFleet;
//! # async fn run() -> Result<(), manager_lib::server::ServeError> {
//! let backends = Backends::new(Arc::new(MemoryStorage::new()), Arc::new(SimulatedFleet::new()));
//! let server = Server::build(backends, ServerSettings::new("a-long-random-admin-token"));
//! let manager = server.manager.clone(); // call the scenarios from Rust…
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! server.serve(listener, std::future::pending()).await // …and serve the API
//! # }
//! ```
//!
//! Where each concept lives (a map for a newcomer):
//! - [`domain`]: nodes, users, their statuses and the operations a node
//!   still has to apply;
//! - [`manager`]: the scenarios (`Manager`, `ManagerError`); the heartbeat
//!   step, the fleet push engine and the push on change in its submodules;
//! - [`links`]: template filling for the user-node-list call (pure, no I/O);
//! - [`storage`]: the `Storage` port, its in-memory reference backend, and
//!   for backend authors `storage::kit` (shared rules, paging) and
//!   `storage::grouped`;
//! - [`cache`]: the `Cache` port and the caching `Storage` decorator;
//! - [`transport`]: the `NodeTransport` port, the HTTP transport and the
//!   simulated fleet;
//! - [`reconcile`]: the heartbeat loop (leases, backoff and metrics around
//!   the manager's heartbeat step);
//! - [`api`]: the HTTP face (router, handlers, error table, OpenAPI, rate
//!   limit, admin auth);
//! - [`dashboard`]: the web dashboard under `/ui/` (server-rendered HTML
//!   over the manager, behind the API's admin check);
//! - [`server`]: the composition root (backends, settings, a listener and a
//!   shutdown in; a running manager out);
//! - [`subscription`]: a user's subscription in each client format (pure,
//!   no I/O);
//! - [`settings`]: typed settings (defaults, TOML file, `XM_*` environment);
//! - [`metrics`]: Prometheus metrics;
//! - [`webhook`]: signed webhooks: event routes, signatures, the delivery
//!   worker over the storage's outbox;
//! - `conformance` (feature `conformance`): the `Storage` suite every backend
//!   runs (`Cache`'s and `NodeTransport`'s sit beside their ports).

pub mod api;
pub mod cache;
pub mod dashboard;
pub mod domain;
pub mod links;
pub mod manager;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod settings;
pub mod storage;
pub mod subscription;
pub mod transport;
pub mod webhook;

#[cfg(feature = "conformance")]
pub mod conformance;
