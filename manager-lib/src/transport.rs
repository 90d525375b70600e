//! The `NodeTransport` port: how the manager calls a node's agent. The real
//! one is [`http::HttpTransport`] (JWE over HTTP, through the agent library's
//! `NodeClient`); [`simulated::SimulatedFleet`] is an in-memory fleet of agents
//! for tests and benchmarks. `conformance` (feature `conformance`) checks a
//! transport against the contract.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::usage::{UsageCursor, UsagePage};
use crate::domain::{Node, NodeKey, NodeUser, UserId};

/// Users' ports on a node with a port per user, by user id (as text).
pub type UserPorts = BTreeMap<String, u16>;

/// What a node answers to `/start`: its template and the inbounds it
/// describes (the agent's own wire type).
pub use node_agent_lib::wire::StartResponse;

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod http;
pub mod simulated;

/// What a node's `/status` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    pub running: bool,
    /// How many users the node's core really has.
    pub users: u64,
    pub core_uptime_secs: u64,
    pub core_restarts: u64,
    /// Where the node's usage journal stands (`None`: an agent that does
    /// not report it, or has no journal).
    pub journal: Option<JournalReport>,
}

/// A node's usage journal as its `/status` reports it: enough to know that a
/// pull would answer nothing, so the heartbeat does not make it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalReport {
    /// The journal's id.
    pub journal: String,
    /// The newest sequence number it assigned (0: none yet).
    pub seq: u64,
    /// Batches it holds that no pull has confirmed yet.
    pub batches: u64,
}

impl JournalReport {
    /// Whether a pull from `cursor` would answer no batch and confirm none:
    /// the same journal, no batch after the cursor, nothing held. A journal
    /// behind the cursor (restored from a backup) is pulled, so the node
    /// learns where the manager stands.
    pub fn nothing_to_pull(&self, cursor: &UsageCursor) -> bool {
        cursor.journal.as_deref() == Some(self.journal.as_str())
            && cursor.seq == self.seq
            && self.batches == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The node answered one of its documented errors; the manager passes it
    /// through to its caller with the same status and body.
    #[error("node answered {status}: {error}")]
    Node {
        status: u16,
        error: String,
        message: Option<String>,
    },
    /// The node could not be reached or did not answer in time.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The node's answer was not authentic or not what the protocol says.
    #[error("bad answer from node: {0}")]
    Protocol(String),
    /// The node and the manager hold different keys for this node: the node
    /// refused our sealed call (401), or its answer does not decrypt under
    /// our key. Copy this node's key to its agent again.
    #[error("{0}")]
    KeyMismatch(String),
}

/// Calls to one node's agent. Object safe; used as `Arc<dyn NodeTransport>`.
///
/// # Contract
/// Every call is idempotent on the node (a repeated `start`, `stop` or edit
/// is harmless), bounded by a timeout, and reports the node's own errors as
/// [`TransportError::Node`]. `usage` is a read that also confirms: a pull
/// repeated with the same cursor answers the same batches.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait NodeTransport: Debug + Send + Sync {
    /// `POST /start`: the node runs its core with exactly `users`; answers the
    /// node's user config template and the inbounds it describes.
    async fn start(&self, node: &Node, users: &[NodeUser])
    -> Result<StartResponse, TransportError>;

    /// `POST /stop`.
    async fn stop(&self, node: &Node) -> Result<(), TransportError>;

    /// `GET /status`.
    async fn status(&self, node: &Node) -> Result<NodeReport, TransportError>;

    /// `POST /users/edit`: adds `add`, removes `del`; adding a present user or
    /// removing a missing one is success. Answers the ports of the added
    /// users (by id) on a node with a port per user (`ss-manager`), else
    /// nothing.
    async fn edit_users(
        &self,
        node: &Node,
        add: &[NodeUser],
        del: &[UserId],
    ) -> Result<UserPorts, TransportError>;

    /// `POST /usage`: the node's usage batches after `cursor`, at most
    /// `max_batches` (the node caps it at 256), in sequence order, with the
    /// node's journal id. When `cursor.journal` names the node's journal the
    /// batches are those after `cursor.seq`, and the node may forget the
    /// ones up to it (the pull confirms them); another journal or none:
    /// from the journal's first batch. Works whether the core runs or not.
    /// A user id in the answer that is not one is a
    /// [`TransportError::Protocol`].
    async fn usage(
        &self,
        node: &Node,
        cursor: &UsageCursor,
        max_batches: u32,
    ) -> Result<UsagePage, TransportError>;

    /// `POST /key`, sealed under `node.key`: the node makes `new` its key
    /// (persisted before it answers) and keeps accepting `node.key` for
    /// `grace`. Delivering the node's current key again (under it or under
    /// the previous key) is success and changes nothing; a node that holds
    /// neither `node.key` nor (in grace) an older key refuses it as a
    /// [`TransportError::KeyMismatch`].
    async fn rotate_key(
        &self,
        node: &Node,
        new: &NodeKey,
        grace: Duration,
    ) -> Result<(), TransportError>;
}
