//! The manager's scenarios, one function each, independent of HTTP: a Rust
//! program can embed the manager and call them directly.
//!
//! Every scenario leaves the database telling the truth or saying "not up to
//! date": a node call that fails after `begin_start`/`begin_stop` leaves the
//! node's state not up to date (it is in no user's list), and the heartbeat
//! step (`heartbeat`) repairs it; pending operations that could not be
//! pushed stay pending and are retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_trigger::PushTrigger;

use crate::domain::{
    ActualStatus, CredentialScope, FleetState, NewNode, NewUser, Node, NodeId, Page, PageRequest,
    ParseError, RequiredStatus, User, UserId, UserQuery, UserStatus, normalize_endpoint,
};
use crate::links::{NodeLinks, split_id_name};
use crate::storage::{Entity, Storage, StorageError};
use crate::transport::{NodeTransport, TransportError};

/// Scoped API tokens and the audit log.
mod access;
/// Webhook events, enqueued right after the change that caused them.
mod events;
/// The heartbeat's step over many nodes: check each, then one fleet-wide push.
mod heartbeat;
/// Node key rotation: a pending key delivered to the agent, then confirmed.
mod key_rotation;
/// Each node's event log: what the heartbeat found, for the dashboard.
mod node_log;
/// Plans on users and the usage reads.
mod plans;
/// The fleet push engine: `push_pending`, `push_pending_many` and their helpers.
mod push;
/// The push on change: a user change pushed to the held nodes by the manager's own task.
mod push_trigger;
/// The subscription scenarios: token look-up, rotation, node profiles.
mod subscriptions;
/// Traffic accounting: usage pulled and stored exactly once; the plans' clock.
mod usage;

pub use key_rotation::KeyRotated;
pub use usage::UsagePulled;

/// What a scenario can fail with. The HTTP API maps each to one status and
/// one stable error text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(ParseError),
    #[error("invalid user name")]
    InvalidUserName(ParseError),
    /// A plan that cannot hold (see `Plan::validate`).
    #[error("invalid plan: {0}")]
    InvalidPlan(ParseError),
    /// A node multiplier that is not a number above 0 (and at most 1000).
    #[error("invalid multiplier: {0}")]
    InvalidMultiplier(f64),
    #[error("node not exists")]
    NodeNotFound,
    #[error("user not exists")]
    UserNotFound,
    /// The user-node-list call with an id and a name that do not belong together.
    #[error("user id and name do not match")]
    UserMismatch,
    /// The user-node-list call while the settings turn it off.
    #[error("the id-name node list is turned off")]
    NodeListOff,
    /// A user has no device with this hardware id.
    #[error("device not exists")]
    DeviceNotFound,
    /// A subscription token that names no user (or an old key of one).
    #[error("no such subscription")]
    SubscriptionNotFound,
    /// No API token has this id.
    #[error("token not exists")]
    TokenNotFound,
    /// A token's name that another token has, or had.
    #[error("token name taken")]
    TokenNameTaken,
    /// A token request that cannot hold (a name, an expiry in the past).
    #[error("invalid token: {0}")]
    InvalidToken(ParseError),
    /// A node profile that cannot hold (see `NodeProfile::validate`).
    #[error("invalid profile: {0}")]
    InvalidProfile(ParseError),
    /// A page cursor that is not one of this listing's.
    #[error("invalid cursor: {0}")]
    InvalidCursor(ParseError),
    /// A grace period above the longest (in seconds).
    #[error("invalid grace period: {0} s")]
    InvalidGrace(u64),
    /// A key rotation of the node waits to be delivered.
    #[error("key rotation pending")]
    KeyRotationPending,
    /// A node call failed; the node's own errors pass through.
    #[error(transparent)]
    Node(#[from] TransportError),
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for ManagerError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(Entity::Node) => Self::NodeNotFound,
            StorageError::NotFound(Entity::User) => Self::UserNotFound,
            StorageError::NotFound(Entity::Device) => Self::DeviceNotFound,
            StorageError::NotFound(Entity::Token) => Self::TokenNotFound,
            StorageError::AlreadyExists(Entity::Token) => Self::TokenNameTaken,
            StorageError::AlreadyExists(Entity::KeyRotation) => Self::KeyRotationPending,
            // The storage refuses what the scenarios check first (plans,
            // multipliers): a 400 all the same if it ever gets there.
            StorageError::Invalid(e) => Self::InvalidPlan(e),
            other => Self::Storage(other),
        }
    }
}

pub type ManagerResult<T> = Result<T, ManagerError>;

/// Tuning of the manager's node work.
#[derive(Clone, Debug)]
pub struct ManagerSettings {
    /// Pending operations sent to a node in one `/users/edit`.
    pub edit_batch: u32,
    /// Nodes worked on at the same time by a heartbeat step or a push.
    pub concurrency: usize,
    /// The longest a change waits for its push because the previous push
    /// was recent (see [`Manager::spawn`]).
    pub max_push_gap: Duration,
    /// Journal batches asked of a node in one usage pull.
    pub usage_page_batches: u32,
    /// Usage pulls (pages) of one node in one heartbeat step at most; the
    /// rest waits for the next step.
    pub usage_pages_per_pull: u32,
    /// Days of per-user, per-node, per-day usage history kept.
    pub usage_days_kept: u32,
    /// Hours of per-node, per-hour usage history kept.
    pub usage_node_hours_kept: u32,
    /// How old the usage totals a subscription shows may be: a user row
    /// cached longer ago has them read again (one point read). About what
    /// the nodes' usage pulls lag anyway.
    pub subscription_usage_max_age: Duration,
    /// Days of audit entries kept.
    pub audit_days_kept: u32,
    /// Which webhook endpoint gets which event; empty (the default): no
    /// event is enqueued.
    pub webhooks: crate::webhook::Routes,
    /// Days before a user's expiry that `user.expiring` is enqueued; 0: never.
    pub expiring_within_days: u32,
    /// What users present on each node: the same credentials everywhere
    /// (the default, as the SPEC's templates assume) or per-node ones.
    pub credentials: CredentialScope,
    /// Whether the SPEC's `GET /user/{id}-{name}/nodes` answers (the
    /// default); off, it is [`ManagerError::NodeListOff`].
    pub id_name_node_list: bool,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        Self {
            edit_batch: 1000,
            concurrency: 32,
            max_push_gap: Duration::from_millis(250),
            usage_page_batches: 64,
            usage_pages_per_pull: 16,
            usage_days_kept: 400,
            usage_node_hours_kept: 24 * 90,
            subscription_usage_max_age: Duration::from_secs(60),
            audit_days_kept: 365,
            webhooks: crate::webhook::Routes::default(),
            expiring_within_days: 3,
            credentials: CredentialScope::Shared,
            id_name_node_list: true,
        }
    }
}

/// One in-process lock per node, so this replica never runs two calls that
/// change the same node at once (a push racing a start could re-add a user the
/// start just left out). Across replicas the storage lease does the same.
#[derive(Debug, Default)]
struct NodeLocks(Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<()>>>>);

impl NodeLocks {
    fn get(&self, id: NodeId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id).or_default().clone()
    }
    fn forget(&self, id: NodeId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// What one reconciliation of a node did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeOutcome {
    Started,
    Stopped,
    /// Running as required; this many pending operations were applied.
    Synced {
        applied: usize,
    },
    /// The node's core had lost users; every user was sent again.
    Resynced,
    /// Stopped as required.
    Idle,
    /// Running as required with every user its cursor says; pending
    /// operations not pushed yet (only from [`Manager::check_node`]).
    InSync,
}

/// The manager: storage and node transport wired together.
#[derive(Debug)]
pub struct Manager {
    storage: Arc<dyn Storage>,
    transport: Arc<dyn NodeTransport>,
    settings: ManagerSettings,
    locks: NodeLocks,
    trigger: Arc<PushTrigger>,
    /// The nodes whose leases this replica holds, from the last claim;
    /// `None` until a heartbeat first claims leases for this manager.
    held: Mutex<Option<Vec<NodeId>>>,
    /// One fleet-wide pass at a time, a heartbeat step or a push: run
    /// together they would only contend for the same node locks and rows.
    fleet_pass: tokio::sync::Mutex<()>,
}

impl Manager {
    /// A manager that acts only when called: a user change reaches the nodes
    /// at their next heartbeat step or [`Manager::push_held`]. For a manager
    /// that pushes each change by itself, see [`Manager::spawn`].
    pub fn new(
        storage: Arc<dyn Storage>,
        transport: Arc<dyn NodeTransport>,
        settings: ManagerSettings,
    ) -> Self {
        Self {
            storage,
            transport,
            settings,
            locks: NodeLocks::default(),
            trigger: Arc::new(PushTrigger::default()),
            held: Mutex::new(None),
            fleet_pass: tokio::sync::Mutex::new(()),
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn settings(&self) -> &ManagerSettings {
        &self.settings
    }

    // ---- nodes ----

    /// Registers a node: a fresh id and key. Idempotent: an endpoint already
    /// registered returns its node (and key).
    pub async fn new_node(&self, endpoint: &str) -> ManagerResult<Node> {
        let endpoint = normalize_endpoint(endpoint).map_err(ManagerError::InvalidEndpoint)?;
        if let Some(node) = self.storage.find_node_by_endpoint(&endpoint).await? {
            return Ok(node);
        }
        let new = NewNode::new(endpoint.as_str()).map_err(ManagerError::InvalidEndpoint)?;
        match self.storage.create_node(new).await {
            Ok(node) => Ok(node),
            // Two calls raced: the other one's node is the answer.
            Err(StorageError::AlreadyExists(_)) => self
                .storage
                .find_node_by_endpoint(&endpoint)
                .await?
                .ok_or(ManagerError::NodeNotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// The operator wants the node running: start it now with every enabled user.
    pub async fn start_node(&self, id: NodeId) -> ManagerResult<()> {
        self.storage
            .set_required_status(id, RequiredStatus::Running)
            .await?;
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        // The heartbeat may have started it while we waited for the lock.
        let node = self.storage.get_node(id).await?;
        if node.actual_status == ActualStatus::Running && node.state_up_to_date {
            return Ok(());
        }
        self.start_locked(id).await
    }

    /// The operator wants the node stopped: stop it now.
    pub async fn stop_node(&self, id: NodeId) -> ManagerResult<()> {
        self.storage
            .set_required_status(id, RequiredStatus::Stopped)
            .await?;
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let node = self.storage.get_node(id).await?;
        if node.actual_status == ActualStatus::Stopped && node.state_up_to_date {
            return Ok(());
        }
        self.stop_locked(id).await
    }

    /// Forgets a node. Its core is asked to stop (best effort: a node that
    /// cannot be reached is deleted all the same, its users stay on it until
    /// the operator wipes it).
    pub async fn delete_node(&self, id: NodeId) -> ManagerResult<()> {
        let node = self.storage.get_node(id).await?;
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        if node.actual_status != ActualStatus::Stopped
            && let Err(e) = self.transport.stop(&node).await
        {
            tracing::warn!(node = %id, error = %e, "deleting a node that could not be stopped");
        }
        // The agent reads the core's counters one last time as it stops it:
        // what its journal holds is stored before the node is gone (no pull
        // ever reaches a deleted node). An unreachable node's is lost with it.
        if let Err(e) = self.pull_usage(&self.storage.get_node(id).await?).await {
            tracing::warn!(node = %id, error = %e, "deleting a node whose last usage could not be pulled");
        }
        self.storage.delete_node(id).await?;
        self.locks.forget(id);
        Ok(())
    }

    pub async fn list_nodes(&self, page: &PageRequest) -> ManagerResult<Page<Node>> {
        Ok(self.storage.list_nodes(page).await?)
    }

    async fn start_locked(&self, id: NodeId) -> ManagerResult<()> {
        self.start_locked_as(id, false).await
    }

    /// A start that sends every user again to a running node whose core
    /// lost some; recorded with `node.resynced`.
    async fn start_locked_resync(&self, node: &Node) -> ManagerResult<()> {
        self.start_locked_as(node.id, true).await
    }

    async fn start_locked_as(&self, id: NodeId, resync: bool) -> ManagerResult<()> {
        let plan = self.storage.begin_start(id).await?;
        let users = self.settings.credentials.node_users(id, &plan.users);
        let started = self.transport.start(&plan.node, &users).await?;
        self.store_start(
            &plan.node,
            plan.seq,
            &started.user_config_template,
            &started.inbounds,
            resync,
        )
        .await
    }

    async fn stop_locked(&self, id: NodeId) -> ManagerResult<()> {
        let node = self.storage.begin_stop(id).await?;
        self.transport.stop(&node).await?;
        self.storage.finish_stop(id).await?;
        Ok(())
    }

    // ---- users ----

    /// Creates a user, Disabled and on no node.
    pub async fn new_user(&self, name: &str) -> ManagerResult<User> {
        let new = NewUser::new(name).map_err(ManagerError::InvalidUserName)?;
        Ok(self.storage.create_user(new).await?)
    }

    /// Enables a user: stored at once, pushed to the nodes this replica holds
    /// right away, to the rest by their heartbeat.
    pub async fn enable_user(&self, id: UserId) -> ManagerResult<User> {
        self.set_user_status(id, UserStatus::Enabled).await
    }

    pub async fn disable_user(&self, id: UserId) -> ManagerResult<User> {
        self.set_user_status(id, UserStatus::Disabled).await
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> ManagerResult<User> {
        let user = self.storage.set_user_status(id, status).await?;
        self.trigger.pull();
        Ok(user)
    }

    /// Deletes a user: gone from every read at once, removed from the nodes
    /// like a disable.
    pub async fn delete_user(&self, id: UserId) -> ManagerResult<()> {
        self.storage.delete_user(id).await?;
        self.trigger.pull();
        Ok(())
    }

    pub async fn get_node(&self, id: NodeId) -> ManagerResult<Node> {
        Ok(self.storage.get_node(id).await?)
    }

    pub async fn get_user(&self, id: UserId) -> ManagerResult<User> {
        Ok(self.storage.get_user(id).await?)
    }

    pub async fn list_users(&self, page: &PageRequest) -> ManagerResult<Page<User>> {
        Ok(self.storage.list_users(page).await?)
    }

    /// The user directory: search, filters, order, a page after a cursor
    /// (a malformed cursor is `InvalidCursor`).
    pub async fn find_users(&self, query: &UserQuery) -> ManagerResult<Page<User>> {
        match self.storage.find_users(query).await {
            Err(StorageError::Invalid(e)) => Err(ManagerError::InvalidCursor(e)),
            other => Ok(other?),
        }
    }

    /// The user-node-list call: `id_name` is `<user id>-<user name>` (the id
    /// is a UUID, so it holds dashes itself: it is the first 36 characters).
    /// Answers each usable node's template filled for the user. An unknown
    /// id answers like a wrong name, so the call tells nothing about which
    /// ids exist.
    pub async fn user_node_list(&self, id_name: &str) -> ManagerResult<Vec<String>> {
        Ok(self.user_node_links(id_name).await?.to_strings())
    }

    /// [`Manager::user_node_list`] without filling the templates yet: the
    /// answer serialises as the same JSON array of strings, each template
    /// filled and escaped straight into the output (the HTTP API's path).
    pub async fn user_node_links(&self, id_name: &str) -> ManagerResult<NodeLinks> {
        if !self.settings.id_name_node_list {
            return Err(ManagerError::NodeListOff);
        }
        let (id, name) = split_id_name(id_name).ok_or(ManagerError::UserMismatch)?;
        let found = match self.storage.user_nodes(id).await {
            Ok(found) => found,
            Err(StorageError::NotFound(_)) => return Err(ManagerError::UserMismatch),
            Err(e) => return Err(e.into()),
        };
        if found.user.name != name {
            return Err(ManagerError::UserMismatch);
        }
        Ok(NodeLinks::new(found, self.settings.credentials))
    }

    /// The fleet counters (for status pages and metrics).
    pub async fn fleet_state(&self) -> ManagerResult<FleetState> {
        Ok(self.storage.fleet_state().await?)
    }

    /// Removes deleted users' tombstones that every node applied.
    pub async fn purge_tombstones(&self) -> ManagerResult<u64> {
        Ok(self.storage.purge_tombstones().await?)
    }

    /// Takes or renews this replica's node leases; the nodes held are the
    /// ones [`Manager::push_held`] pushes to from then on.
    pub async fn claim_nodes(&self, owner: &str, ttl: Duration) -> ManagerResult<Vec<Node>> {
        let nodes = self.storage.claim_nodes(owner, ttl, u32::MAX).await?;
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(nodes.iter().map(|n| n.id).collect());
        Ok(nodes)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        // Ends the push task of `Manager::spawn`, which holds only a weak reference.
        self.trigger.close();
    }
}
