//! The node agent as a library: the [`ServiceControl`] port and its backends,
//! the JWE-protected node HTTP API, and the typed [`NodeClient`] the manager
//! uses to call it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use node_agent_lib::{NodeClient, NodeKey, wire::WireUser};
//!
//! let key: NodeKey = "<node key, base64url>".parse()?;
//! let node = NodeClient::new("https://node1.example.com:8443", key, Duration::from_secs(30))?;
//! let users = vec![WireUser { id: "5f0c…".into(), name: "alice".into(), secret: "…".into(), proxy_id: None }];
//! let template = node.start(&users).await?.user_config_template;
//! let status = node.status().await?;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `agent` (default): the agent itself (the core client, the service
//!   backends, the node API, settings, metrics). Without it the crate is
//!   what the manager links: [`wire`], [`envelope`], [`client`],
//!   [`listener`], [`tls`], [`openapi`] (serving a document) and [`secret`].
//! - `testing`: `tls::testing`, a throwaway certificate authority for
//!   tests (made with the `openssl` tool).
//! - `mocks`: mockall's `MockCoreApi` and `MockServiceControl`, for tests
//!   (enabled from dev-dependencies, never in a release build).
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
//!   A core that does not read its users from its config (`ss-manager`,
//!   one port per user: [`core::SsManagerClient`]) starts empty and gets
//!   every user through its API before `/start` answers.
//!   Its answer carries the operator's `user_config_template` and
//!   `inbounds`: how clients dial each managed inbound (protocol, port,
//!   transport, TLS or REALITY with the public key computed from the
//!   config's private key), derived once from the base config when it is
//!   parsed ([`config::CoreConfig::descriptions`]); an inbound that cannot be
//!   described exactly is left out with a warning, its users still managed.
//!   An `ss-manager` core is one Shadowsocks inbound with `portRange` and
//!   `userPorts`: the users away from their home port
//!   ([`wire::PortRange::home`], the function the manager uses too).
//! - **`/users/edit`** applies removals, then additions, through the core's
//!   gRPC API (an existing user added or a missing one removed counts as
//!   success; an `ss-manager` node answers each added user's port) and marks the generated config dirty. A background writer
//!   rewrites it at most once per `flush_delay` (default 500 ms), so a burst
//!   of edits costs one rewrite of a 100,000-user file, not one per edit.
//!   The file lags the edits the core acknowledged: a core that restarts
//!   meanwhile reads an older user set, which the next two points put right.
//! - **Restart detection**: the service backend names each run of the core
//!   (`ServiceControl::instance`: the process backend counts its spawns,
//!   systemd gives `InvocationID`/`MainPID`, launchd a pid), so every start
//!   is seen, however soon after the previous one. Each look (every `/status`
//!   and a background monitor every `monitor_interval`) compares it with the
//!   run the agent started; any other run is a start the agent did not order:
//!   `coreRestarts` grows and, if the manager wants the core running, the
//!   agent re-applies its whole user set through the API at once (every user
//!   added, every id it removed removed: both idempotent), retrying until it
//!   went through. Re-applying everything rather than the changes since some
//!   config write means nothing depends on knowing which file the core read.
//! - **Verification** (anti-entropy, trusting no detection): in the
//!   background the agent checks every user against the core, one pass per
//!   `verify_period` (default 25 s), paced evenly, and repairs what differs
//!   (a user missing, or one it removed present again — also when changed
//!   behind its back through the core's API), within two periods. See
//!   [`agent`]'s `verify` module for what V2Ray lets it find.
//! - **`users` in `/status`** is what the core really has where the core can
//!   tell: on Xray, the sum of `GetInboundUsersCount` over the managed
//!   inbounds (minus the base config's own clients) divided by their number.
//!   V2Ray 4.34 cannot count, so it is the agent's own count. The manager
//!   compares it with its count of enabled users and re-sends everything
//!   with `/start` when they differ; a restarted *agent* knows no users and
//!   reports 0, which triggers that.
//!
//! # Traffic accounting
//!
//! See [`usage`]: every `stats_interval` the agent reads and zeroes the
//! core's per-user counters into a durable, sequence-numbered journal in
//! `state_dir` (written and synced before a read counts as taken; one last
//! read before the agent stops or restarts the core). **`/usage`** answers
//! the batches after the manager's cursor and, when the request names this
//! journal, confirms it: the agent forgets batches only up to what the
//! manager stored. While the manager is away, the oldest never-delivered
//! batches are merged (exact sums), so the journal stays bounded. A cursor
//! beyond the journal's newest number (a journal restored from an older
//! backup) confirms everything it holds and numbering goes on after the
//! cursor. **`/status`** reports the journal's id, newest number and
//! unconfirmed batches (`usageJournal`), so the manager pulls only when
//! there is something to pull.
//!
//! # Key rotation
//!
//! See [`keyring`]: **`/key`** gives the agent a new node key, persisted in
//! `state_dir` (`node-key`, 0600, taking precedence over the settings' key)
//! before it answers; the key the call came under stays accepted for the
//! grace period it names, and every call is answered under the key it came in.
//!
//! # The envelope
//!
//! See [`envelope`]: each request's header carries a compact JWE (`dir` +
//! `A256GCM`) bound to method, path, time, a single-use `jti` and the sealed
//! body's length and digest, opened before any body byte is read; answers
//! are sealed with the request's `jti` and the HTTP status. Every refused
//! request gets the same bare `401 {"error":"unauthorized"}` and touches
//! neither service nor core; refusals are counted and logged at most once
//! per interval ([`refusals`]).

// The crate doc describes the agent; without feature `agent` (the manager's
// build) its links to the agent's items have nothing to point at.
#![cfg_attr(not(feature = "agent"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "agent")]
pub mod api;
pub mod client;
#[cfg(feature = "agent")]
pub mod config;
#[cfg(feature = "agent")]
pub mod core;
pub mod envelope;
#[cfg(feature = "agent")]
pub mod keyring;
pub mod listener;
#[cfg(feature = "agent")]
pub mod metrics;
pub mod openapi;
#[cfg(feature = "agent")]
pub mod refusals;
#[cfg(feature = "agent")]
pub mod replay;
pub mod secret;
#[cfg(feature = "agent")]
pub mod server;
#[cfg(feature = "agent")]
pub mod service;
#[cfg(feature = "agent")]
pub mod settings;
pub mod tls;
#[cfg(feature = "agent")]
pub mod usage;
pub mod wire;

#[cfg(feature = "agent")]
pub use agent::{Agent, AgentError, AgentOptions};
#[cfg(feature = "agent")]
pub use api::{AppState, router};
pub use client::{ClientError, NodeClient};
#[cfg(feature = "agent")]
pub use core::{CoreApi, CoreApiProbe};
pub use envelope::NodeKey;
#[cfg(feature = "agent")]
pub use server::{Node, ServeError, serve};
#[cfg(feature = "agent")]
pub use service::{ServiceControl, ServiceError, ServiceStatus};
#[cfg(feature = "agent")]
pub use settings::Settings;
