//! The manager's domain: nodes, users, their statuses and the operations a
//! node still has to apply.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

pub mod audit;
pub mod containment;
pub mod device;
pub mod directory;
pub mod endpoint;
pub mod key_rotation;
pub mod node_event;
pub mod node_summary;
pub mod plan;
pub mod profile;
pub mod subscription;
pub mod token;
pub mod usage;
pub mod webhook;

pub use audit::{AuditEntry, AuditQuery, NewAuditEntry};
pub use containment::{CredentialScope, NodeCredential, NodeUser};
pub use device::{Device, DevicePolicy, DeviceSighting, DeviceVerdict};
pub use directory::{StateCounts, UserQuery, UserSort};
pub use endpoint::{endpoint_host, normalize_endpoint};
pub use key_rotation::KeyRotation;
pub use node_event::{NodeEvent, NodeEventKind};
pub use node_summary::NodeSummary;
pub use plan::{BlockReason, FieldEdit, Plan, PlanEdit, ResetEdit, ResetStrategy, UserState};
pub use profile::{
    InboundDescription, InboundOverride, InboundProtocol, Network, NodeProfile, Security,
    ServedInbound,
};
pub use subscription::{SubscriptionKey, SubscriptionToken};
pub use token::{ApiToken, IssuedToken, NewToken, PresentedToken, Role, TokenVerifier};
pub use usage::UsageCursor;
pub use webhook::{Delivery, EventKind, NewDelivery, WebhookEvent};

/// Milliseconds since the Unix epoch. Stored as an integer by every backend so
/// that SQLite and PostgreSQL agree to the millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        Self(ms)
    }
}

/// Error for a string that is not a valid id, status or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {value:?}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh id from 122 random bits (UUID v4): it cannot be guessed.
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4())
            }
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
            /// The id a UUID is (any version: ids are only compared).
            pub fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }
            /// The canonical text form: 36 lower-case characters with dashes.
            pub const TEXT_LEN: usize = 36;
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            /// Only the canonical hyphenated form is accepted, so one id has one spelling.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || ParseError { what: $what, value: s.to_owned() };
                if s.len() != Self::TEXT_LEN {
                    return Err(err());
                }
                let id = uuid::Uuid::try_parse(s).map_err(|_| err())?;
                if id.hyphenated().to_string() != s {
                    return Err(err());
                }
                Ok(Self(id))
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    };
}

uuid_id!(
    /// A node's id.
    NodeId,
    "node id"
);
uuid_id!(
    /// A user's id. It is also the user's VLESS/VMess id on every node and the
    /// user's key (`email`) inside the core, and, with the user's name, what
    /// authorises the user's node-list call: so it is random and never reused.
    UserId,
    "user id"
);
uuid_id!(
    /// A scoped API token's id: the public half of the token, so a token is
    /// found by one point read (see [`token`]).
    TokenId,
    "token id"
);

/// The JWE key shared by the manager and one node: the envelope's own type,
/// so a stored key is parsed once, when its node is read, and every node
/// call uses the bytes. `Debug` never shows it; the API shows it as
/// base64url ([`NodeKey::expose_base64url`]).
pub use node_agent_lib::envelope::NodeKey;

/// The secret a user presents to Trojan and Shadowsocks inbounds: 192 random
/// bits as base64url. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserSecret(String);

impl UserSecret {
    pub fn random() -> Self {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserSecret(<redacted>)")
    }
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The spelling used on the wire and in the database.
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant)),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $(stringify!($variant) => Ok(Self::$variant),)+
                    _ => Err(ParseError { what: $what, value: s.to_owned() }),
                }
            }
        }
    };
}

text_enum!(
    /// What a node is doing, as last observed by the manager.
    ActualStatus, "actual status" { Running, Stopped, Error }
);
text_enum!(
    /// What the operator wants a node to do.
    RequiredStatus, "required status" { Running, Stopped }
);
text_enum!(
    /// Whether a user is on the nodes.
    UserStatus, "user status" { Enabled, Disabled }
);
text_enum!(
    /// What a node must do with a user.
    Operation, "operation" { Add, Delete }
);

impl From<RequiredStatus> for ActualStatus {
    fn from(s: RequiredStatus) -> Self {
        match s {
            RequiredStatus::Running => ActualStatus::Running,
            RequiredStatus::Stopped => ActualStatus::Stopped,
        }
    }
}

/// A position in the change log. Every user change (enable, disable, delete)
/// takes the next sequence number; a node's applied cursor is the newest
/// sequence number whose change the node is known to have applied.
pub type Seq = i64;

/// `PartialEq` only: the traffic multiplier is a float (always finite).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub endpoint: String,
    pub key: NodeKey,
    pub actual_status: ActualStatus,
    pub required_status: RequiredStatus,
    /// The share-link template the node returned on its last successful start.
    pub user_config_template: Option<String>,
    /// The inbounds the node described on its last successful start.
    pub inbounds: Vec<InboundDescription>,
    /// The operator's subscription settings for the node.
    pub profile: NodeProfile,
    /// False while a start/stop is in flight or after one whose result could not be stored.
    pub state_up_to_date: bool,
    /// Changes with a sequence number up to this one are applied on the node.
    pub applied_seq: Seq,
    pub last_seen: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Where the manager stands in the node's usage journal.
    pub usage_cursor: UsageCursor,
    /// What a byte through this node counts as on its users' totals
    /// (finite, > 0; 1.0 unless the operator set it).
    pub traffic_multiplier: f64,
    /// Raw bytes (before the multiplier) the node's users moved, ever.
    pub used_up: u64,
    pub used_down: u64,
}

/// The traffic multiplier a new node gets.
pub const DEFAULT_TRAFFIC_MULTIPLIER: f64 = 1.0;

/// The proxy credentials of a user, as sent to the nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserCredentials {
    /// The VLESS/VMess id and the core's key for the user.
    pub id: UserId,
    pub name: String,
    /// The Trojan/Shadowsocks password.
    pub secret: UserSecret,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub status: UserStatus,
    pub secret: UserSecret,
    /// What the user's subscription URL is keyed by (with the id).
    pub subscription_key: SubscriptionKey,
    /// How many devices may fetch the subscription: `None` the settings'
    /// default, `Some(0)` no limit.
    pub device_limit: Option<u32>,
    /// The sequence number of the user's newest change (0: never changed).
    pub change_seq: Seq,
    pub created_at: Timestamp,
    pub plan: Plan,
    /// Bytes moved since the last reset, after the nodes' multipliers
    /// (saturating at `i64::MAX`, what every backend can store).
    pub used_up: u64,
    pub used_down: u64,
    /// Why the user is off the nodes although enabled (`None`: not blocked).
    pub blocked: Option<BlockReason>,
    /// When the plan's reset strategy next sets the used bytes to zero.
    pub next_reset_at: Option<Timestamp>,
    pub last_reset_at: Option<Timestamp>,
}

impl User {
    /// The user's state for the views: the admin's switch first, then why
    /// the plan blocks the user, then whether a hold waits for its first byte.
    pub fn state(&self) -> UserState {
        match (self.status, self.blocked) {
            (UserStatus::Disabled, _) => UserState::Disabled,
            (_, Some(BlockReason::Expired)) => UserState::Expired,
            (_, Some(BlockReason::Limited)) => UserState::Limited,
            (_, None) if self.plan.on_hold.is_some() => UserState::OnHold,
            (_, None) => UserState::Active,
        }
    }

    /// Whether the user belongs on the nodes: enabled and not blocked
    /// (deleted users are never read).
    pub fn on_nodes(&self) -> bool {
        self.status == UserStatus::Enabled && self.blocked.is_none()
    }

    /// Bytes used since the last reset, up and down together.
    pub fn used(&self) -> u64 {
        self.used_up.saturating_add(self.used_down)
    }

    /// The token of the user's subscription URL.
    pub fn subscription_token(&self) -> SubscriptionToken {
        self.subscription_key.token(self.id)
    }

    pub fn credentials(&self) -> UserCredentials {
        UserCredentials {
            id: self.id,
            name: self.name.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// The longest user name accepted, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 1024;
/// The longest node endpoint accepted, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 2048;

/// A new user, as the storage will keep it. Built with [`NewUser::new`] so the
/// id and secret are random.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub id: UserId,
    pub name: String,
    pub secret: UserSecret,
    pub subscription_key: SubscriptionKey,
    /// Checked by the storage ([`Plan::validate`]); the default limits nothing.
    pub plan: Plan,
}

impl NewUser {
    /// A user with a fresh id and secret. The name must not be empty (after
    /// trimming) nor longer than [`MAX_USER_NAME_BYTES`].
    pub fn new(name: impl Into<String>) -> Result<Self, ParseError> {
        let name = name.into();
        if name.trim().is_empty() || name.len() > MAX_USER_NAME_BYTES || name.contains('\0') {
            return Err(ParseError {
                what: "user name",
                value: name.chars().take(64).collect(),
            });
        }
        Ok(Self {
            id: UserId::random(),
            name,
            secret: UserSecret::random(),
            subscription_key: SubscriptionKey::random(),
            plan: Plan::default(),
        })
    }
}

/// A new node, as the storage will keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    pub id: NodeId,
    pub endpoint: String,
    pub key: NodeKey,
}

impl NewNode {
    /// A node with a fresh id and key. The endpoint must be an absolute
    /// `http://` or `https://` URL with a host.
    pub fn new(endpoint: impl Into<String>) -> Result<Self, ParseError> {
        let endpoint = normalize_endpoint(&endpoint.into())?;
        Ok(Self {
            id: NodeId::random(),
            endpoint,
            key: NodeKey::random(),
        })
    }
}

/// What one node must do with one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOperation {
    pub user: UserCredentials,
    pub operation: Operation,
    /// The change this operation comes from.
    pub seq: Seq,
}

/// A batch of a node's pending operations, oldest first, newest intent per user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingBatch {
    pub operations: Vec<PendingOperation>,
    /// Acknowledging the batch moves the node's cursor here: every change up
    /// to this sequence number that concerns the node is in this batch.
    pub up_to_seq: Seq,
    /// True when more pending operations follow this batch.
    pub more: bool,
}

/// What a node needs on `/start`: its row and every user on nodes (enabled,
/// not blocked), read in one consistent snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct StartPlan {
    pub node: Node,
    pub users: Vec<UserCredentials>,
    /// The newest change the user list reflects; the node's cursor moves here
    /// once the start succeeded.
    pub seq: Seq,
}

/// A node on which a user is usable right now, for the user-node-list call
/// and the subscription. Shared: the cache's snapshot hands the same entries
/// to every call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: NodeId,
    pub endpoint: std::sync::Arc<str>,
    pub user_config_template: std::sync::Arc<str>,
    /// What the user's subscription lists for the node
    /// ([`NodeProfile::serve`]).
    pub served: std::sync::Arc<[ServedInbound]>,
}

impl NodeEntry {
    /// The entry of a node with this endpoint, template, described inbounds
    /// and profile.
    pub fn new(
        id: NodeId,
        endpoint: &str,
        user_config_template: &str,
        inbounds: &[InboundDescription],
        profile: &NodeProfile,
    ) -> Self {
        Self {
            id,
            endpoint: endpoint.into(),
            user_config_template: user_config_template.into(),
            served: profile.serve(&endpoint_host(endpoint), inbounds).into(),
        }
    }
}

/// A node that can serve users now, with its cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingNode {
    pub entry: NodeEntry,
    pub applied_seq: Seq,
}

/// The answer to "which nodes can this user use now?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserNodes {
    pub user: User,
    pub nodes: Vec<NodeEntry>,
}

/// The fleet-wide counters the reconciler compares nodes against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetState {
    /// The newest change's sequence number.
    pub last_seq: Seq,
    /// How many users are on the nodes: enabled and not blocked by their plan.
    pub enabled_users: u64,
}

/// A page request: items after `after` (exclusive), in id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 10_000;

    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }
    /// The limit, clamped to 1..=[`Self::MAX_LIMIT`].
    pub fn clamped_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to read the next page; `None` on the last page.
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_spellings() {
        let id = UserId::random();
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        assert!(id.to_string().to_uppercase().parse::<UserId>().is_err());
        assert!(id.as_uuid().simple().to_string().parse::<UserId>().is_err());
        assert!("".parse::<NodeId>().is_err());
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(UserId::random(), UserId::random());
        assert_ne!(NodeKey::random(), NodeKey::random());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let key = NodeKey::random();
        assert!(!format!("{key:?}").contains(&key.expose_base64url()));
        let user = NewUser::new("alice").unwrap();
        assert!(!format!("{user:?}").contains(user.secret.expose()));
        let bytes = URL_SAFE_NO_PAD.decode(key.expose_base64url()).unwrap();
        assert_eq!(bytes.len(), 32);
    }

    #[test]
    fn node_key_parses_only_32_bytes() {
        let key = NodeKey::random();
        assert_eq!(key.expose_base64url().parse::<NodeKey>().unwrap(), key);
        assert!("c2hvcnQ".parse::<NodeKey>().is_err());
    }

    #[test]
    fn user_names_must_not_be_empty() {
        assert!(NewUser::new("").is_err());
        assert!(NewUser::new("   ").is_err());
        assert!(NewUser::new("x".repeat(MAX_USER_NAME_BYTES + 1)).is_err());
        assert!(NewUser::new("Вася-🚀").is_ok());
    }
}
