//! The JSON bodies of the node HTTP API, shared by the agent and [`crate::NodeClient`].
//!
//! Answers are written in camelCase; requests are also accepted in the
//! snake_case spelling the original design uses.

use std::fmt;

use serde::{Deserialize, Serialize};

mod inbound;
mod ports;

pub use inbound::{InboundDescription, InboundProtocol, Network, Security};
pub use ports::{PortRange, PortRangeError};

/// One user as the manager sends it to a node.
///
/// `id` is the core's key (`email`) for the user and, unless `proxy_id` is
/// given, the user's VLESS/VMess id; `secret` is the Trojan/Shadowsocks
/// password. A manager that gives each node its own credentials sends
/// `proxyId` (and may send an empty name). `Debug` hides `secret` and
/// `proxy_id`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUser {
    #[serde(alias = "userID", alias = "user_id")]
    pub id: String,
    #[serde(alias = "userName", alias = "user_name")]
    pub name: String,
    pub secret: String,
    /// The VLESS/VMess id on this node when it is not `id`.
    #[serde(
        default,
        rename = "proxyId",
        alias = "proxy_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub proxy_id: Option<String>,
}

impl WireUser {
    /// The VLESS/VMess id the user presents on this node.
    pub fn vless_id(&self) -> &str {
        self.proxy_id.as_deref().unwrap_or(&self.id)
    }
}

impl fmt::Debug for WireUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireUser")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("proxy_id", &self.proxy_id.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `POST /start`: run the core with exactly these users.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    pub users: Vec<WireUser>,
}

/// The answer to `POST /start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartResponse {
    /// The node's share-link pattern for one user (`{{.UserID}}`,
    /// `{{.NodeUserID}}`, `{{.UserName}}`, `{{.UserNameRaw}}`,
    /// `{{.Secret}}`), filled by the manager.
    #[serde(alias = "user_config_template")]
    pub user_config_template: String,
    /// How clients dial each inbound whose users the agent manages, in
    /// config order. Absent from agents older than this field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbounds: Vec<InboundDescription>,
}

/// Whether the core runs, as `GET /status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeStatus {
    Running,
    Stopped,
}

/// The answer to `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    #[serde(alias = "node_status")]
    pub node_status: NodeStatus,
    /// How many users the core really has (see the crate docs for how it is
    /// counted); the manager re-sends `/start` when it differs from its own count.
    #[serde(default)]
    pub users: u64,
    /// Seconds since the core started (0 when stopped).
    #[serde(default, alias = "core_uptime_secs")]
    pub core_uptime_secs: u64,
    /// How many times the agent saw the core restart behind its back.
    #[serde(default, alias = "core_restarts")]
    pub core_restarts: u64,
    /// Where the usage journal stands, so the manager pulls only when there
    /// is something to pull. Absent from an agent without a journal (or
    /// older than this field).
    #[serde(
        default,
        alias = "usage_journal",
        skip_serializing_if = "Option::is_none"
    )]
    pub usage_journal: Option<JournalMark>,
}

/// The usage journal as `GET /status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalMark {
    /// The journal's id (as `UsageResponse::journal`).
    pub journal: String,
    /// The newest sequence number assigned (0: none yet).
    pub seq: u64,
    /// Batches held that no pull has confirmed yet.
    pub batches: u64,
}

/// `POST /users/edit`: add and remove users on the running core.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersEditRequest {
    #[serde(default, alias = "add_users")]
    pub add_users: Vec<WireUser>,
    /// The ids of the users to remove.
    #[serde(default, alias = "del_users")]
    pub del_users: Vec<String>,
}

/// The answer to `POST /users/edit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersEditResponse {
    /// A core with a port per user (`ss-manager`): the port of every user
    /// the edit added (by id), so the manager learns the ones away from
    /// their home port. Empty for other cores, and from agents older than
    /// this field (which answered nothing).
    #[serde(
        default,
        alias = "user_ports",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub user_ports: std::collections::BTreeMap<String, u16>,
}

/// `POST /usage`: the usage batches after the manager's cursor. Naming the
/// agent's journal and `after = N` also confirms that the manager stored
/// every batch up to `N`, so the agent may forget them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRequest {
    /// The journal the manager's cursor belongs to; another journal (or none)
    /// means "from your first batch".
    #[serde(default)]
    pub journal: Option<String>,
    /// The newest sequence number the manager has stored from this journal.
    #[serde(default)]
    pub after: u64,
    /// How many batches at most (the agent caps it).
    #[serde(default, alias = "max_batches")]
    pub max_batches: Option<u32>,
}

/// The answer to `POST /usage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageResponse {
    /// The agent's journal id (made when its journal file was created).
    pub journal: String,
    /// In sequence order, each after the request's `after`.
    pub batches: Vec<UsageBatch>,
    /// More batches wait after the last one answered.
    pub more: bool,
}

/// The bytes the core counted between two reads (or several reads, merged
/// while the manager was away): `first_seq..=seq` of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageBatch {
    #[serde(alias = "first_seq")]
    pub first_seq: u64,
    pub seq: u64,
    /// Unix seconds of the read before the first delta and of the read that took the last.
    pub from: i64,
    pub to: i64,
    pub users: Vec<UserUsage>,
}

/// What one user moved through the node's core in a batch, in bytes as the
/// core counts them: `up` is what the user sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUsage {
    pub id: String,
    pub up: u64,
    pub down: u64,
}

/// `POST /key`: the node's next key, sealed under a key the node accepts.
/// `Debug` hides the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRequest {
    /// The new key, base64url without padding (32 bytes).
    pub key: String,
    /// How long the key the request was sealed under stays accepted.
    #[serde(alias = "grace_secs")]
    pub grace_secs: u64,
}

impl fmt::Debug for KeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRequest")
            .field("key", &"<redacted>")
            .field("grace_secs", &self.grace_secs)
            .finish()
    }
}

/// The answer to `POST /key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyResponse {
    /// False when the key was already the node's (a repeated delivery).
    pub rotated: bool,
    /// Unix seconds after which the previous key is refused (none: no
    /// previous key is accepted).
    #[serde(default, alias = "grace_until")]
    pub grace_until: Option<u64>,
}

/// Every error answer: a short stable text, and optional details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: None,
        }
    }
}
