//! The node agent as a library: the `ServiceControl` port and its backends,
//! the JWE-protected node HTTP API, and the typed `NodeClient` the manager uses.
//!
//! Filled by the node agent issue; this crate compiles so the workspace does.
