//! The node agent as a library: the [`ServiceControl`] port and its backends,
//! the JWE-protected node HTTP API, and the typed [`NodeClient`] the manager uses.

pub mod agent;
pub mod api;
pub mod client;
pub mod config;
pub mod core;
pub mod envelope;
pub mod server;
pub mod service;
pub mod settings;
pub mod wire;

pub use agent::{Agent, AgentError, AgentOptions};
pub use api::{AppState, router};
pub use client::{ClientError, NodeClient};
pub use core::{CoreApi, CoreApiProbe};
pub use envelope::NodeKey;
pub use server::{Node, ServeError, serve};
pub use service::{ServiceControl, ServiceError, ServiceStatus};
pub use settings::Settings;
