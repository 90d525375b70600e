//! The node agent as a library: the [`ServiceControl`] port and its backends,
//! the JWE-protected node HTTP API, and the typed [`NodeClient`] the manager uses.

pub mod client;
pub mod envelope;
pub mod wire;

pub use client::{ClientError, NodeClient};
pub use envelope::NodeKey;
