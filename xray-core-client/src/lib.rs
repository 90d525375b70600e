//! A client for the gRPC API of the proxy core (Xray-core, or Debian's V2Ray
//! 4.34): add and remove users at runtime, read traffic stats.
//!
//! Filled by the node agent issue; this crate compiles so the workspace does.
