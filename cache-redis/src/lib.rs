//! `Cache` on Redis for the manager's hot user-node-list query, shared by all
//! manager replicas that point at the same Redis.
//!
//! Filled by the manager issue; this crate compiles so the workspace does.
