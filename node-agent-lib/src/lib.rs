//! The node agent as a library: the [`ServiceControl`] port and its backends,
//! the JWE-protected node HTTP API, and the typed [`NodeClient`] the manager
//! uses to call it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use node_agent_lib::{NodeClient, wire::WireUser};
//!
//! let node = NodeClient::new("https://node1.example.com:8443", "<node key, base64url>", Duration::from_secs(30))?;
//! let users = vec![WireUser { id: "5f0c…".into(), name: "alice".into(), secret: "…".into() }];
//! let template = node.start(&users).await?.user_config_template;
//! let status = node.status().await?;
//! # Ok(()) }
//! ```
//!
//! The agent side is [`serve`] (or [`Node::build`] + [`Node::serve`]), fed by
//! [`Settings`]; [`router`] over an [`Agent`] is what tests drive with `oneshot`.
//!
//! # How the agent keeps the core's users right
//!
//! - **`/start {users}`** writes the generated config (the operator's base
//!   config plus every user in every managed inbound, written atomically with
//!   mode 0600), restarts the core through the service backend so it runs
//!   exactly those users, and answers once the core's API answers.
//! - **`/users/edit`** applies removals, then additions, through the core's
//!   gRPC API (an existing user added or a missing one removed counts as
//!   success) and marks the generated config dirty. A background writer
//!   rewrites it at most once per `flush_delay` (default 500 ms), so a burst
//!   of edits costs one rewrite of a 100,000-user file, not one per edit.
//!   **Window**: a core restarting within that delay (plus the write time)
//!   after an edit starts without the edit; the restart detection below puts
//!   it back.
//! - **Restart detection**: the agent remembers when the core started
//!   (`now - uptime` from `GetSysStats`). When a later look (every `/status`
//!   and a background monitor every `monitor_interval`) shows a later start,
//!   the core restarted behind the agent's back: `coreRestarts` grows and, if
//!   the manager wants the core running, the agent re-applies through the API
//!   every change made after the newest config write that finished before
//!   the new core started (idempotently, so having read a newer config is
//!   fine). When it cannot tell which config the core read (a restart within
//!   ~2 s of a write, or older than the remembered writes), it writes the
//!   config and restarts the core on it instead.
//! - **`users` in `/status`** is what the core really has where the core can
//!   tell: on Xray, the sum of `GetInboundUsersCount` over the managed
//!   inbounds (minus the base config's own clients) divided by their number.
//!   V2Ray 4.34 cannot count, so it is the agent's own count: the users of
//!   the config the restarted core read until re-applying the newer changes
//!   succeeded, then the full set. The manager compares it with its count of
//!   enabled users and re-sends everything with `/start` when they differ;
//!   a restarted *agent* knows no users and reports 0, which triggers that.
//!
//! # The envelope
//!
//! See [`envelope`]: requests are compact JWEs (`dir` + `A256GCM`) bound to
//! method, path, time and a single-use `jti`; answers are sealed with the
//! request's `jti` and the HTTP status. Every refused request gets the same
//! bare `401 {"error":"unauthorized"}` and touches neither service nor core.

pub mod agent;
pub mod api;
pub mod client;
pub mod config;
pub mod core;
pub mod envelope;
pub mod listener;
pub mod metrics;
pub mod openapi;
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
