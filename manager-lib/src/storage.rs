//! The `Storage` port: where the manager keeps nodes, users and what each node
//! still has to apply.
//!
//! # The change log and the per-node cursor
//!
//! The original design keeps a row per (node, user) pending operation: enabling
//! one user on a 1,000-node fleet writes 1,000 rows. Here every user change
//! (enable, disable, delete) takes the next number of one fleet-wide sequence
//! and stores it on the user (`change_seq`); each node keeps `applied_seq`, the
//! newest change it is known to have applied. So:
//!
//! - a change costs O(1) writes whatever the number of nodes;
//! - a node's pending operations are the users with `change_seq > applied_seq`,
//!   each with its newest intent only (add when enabled, delete when disabled or
//!   deleted), oldest first;
//! - acknowledging a batch moves the cursor to the batch's `up_to_seq` and never
//!   backwards, so a change that arrived after the batch was read (it has a
//!   larger number) stays pending;
//! - "nothing pending for this user on this node" is `applied_seq >= change_seq`.
//!
//! A deleted user leaves a tombstone (its newest change is a delete) until every
//! node that may still have it has applied the delete; readers never see it.
//!
//! # Plans and usage
//!
//! A user is on the nodes when enabled, not deleted and not blocked by their
//! plan (`User::blocked`: the data limit reached, or the expiry passed).
//! Blocking and unblocking is a change like a disable or enable: it takes
//! the next sequence number, so the pending operations, the node list and
//! the fleet's on-node count follow it with nothing new to poll. Used bytes
//! alone are not a change.
//!
//! Usage comes from each node's journal in pages (`domain::usage`);
//! [`Storage::ingest_usage`] stores a page only when the node's stored
//! cursor is still the one the page was pulled with, and skips the batches
//! at or below it, so a repeated pull or a second replica never counts a
//! byte twice. [`kit::usage`] holds the arithmetic every backend shares
//! (sums, the multiplier, saturation at `i64::MAX`, what a plan blocks).
//!
//! Sequence numbers are handed out so that a change with a smaller number is
//! never committed after a reader saw a larger one (backends serialise the
//! allocation inside the writing transaction): otherwise a cursor could jump
//! over a change that was still in flight.
//!
//! # Writing a backend
//!
//! [`kit`] holds what every backend computes the same way (the
//! pending-operation rule, paging, batches); [`grouped`] serves many
//! callers' calls in one round trip. A backend that wraps another (a
//! decorator, a test fake) should put `#[deny(clippy::missing_trait_methods)]`
//! on its impl, so it forwards the optimised defaults too.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

pub use access::AccessStore;
pub use directory::UserDirectory;
pub use node_events::NodeEventLog;
pub use notify::{Notices, NotifyingStore};
pub use outbox::WebhookStore;
pub use rotation::KeyRotationStore;

use crate::domain::usage::{
    EnforceOutcome, IngestOutcome, NodeUsage, UsageCursor, UsageGrouping, UsagePage, UsageRow,
};
use crate::domain::{
    ActualStatus, Device, DeviceSighting, DeviceVerdict, FleetState, InboundDescription, NewNode,
    NewUser, Node, NodeEntry, NodeId, NodeProfile, Page, PageRequest, PendingBatch, PlanEdit,
    RequiredStatus, Seq, ServingNode, StartPlan, SubscriptionKey, Timestamp, User, UserId,
    UserNodes, UserStatus,
};

/// A boxed error from a backend's driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of record an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    Node,
    User,
    /// One of a user's devices.
    Device,
    /// A scoped API token.
    Token,
    /// A node's pending key rotation.
    KeyRotation,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Node => "node",
            Entity::User => "user",
            Entity::Device => "device",
            Entity::Token => "token",
            Entity::KeyRotation => "key rotation",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The record does not exist (or is a deleted user's tombstone).
    #[error("{0} not found")]
    NotFound(Entity),
    /// A unique field (a node's endpoint, an id) is already taken.
    #[error("{0} already exists")]
    AlreadyExists(Entity),
    /// The database cannot be reached or refused the connection; retrying
    /// later can help. The API answers `database unavailable`.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// A stored value could not be read back (a status or id in a bad form).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The caller's value breaks a rule (a plan, a multiplier); nothing
    /// was written.
    #[error("{0}")]
    Invalid(#[from] crate::domain::ParseError),
    /// Anything else the backend reported.
    #[error("storage error: {0}")]
    Other(#[source] BoxError),
}

impl StorageError {
    /// Whether the same call may succeed later without any change on our side.
    pub fn is_temporary(&self) -> bool {
        matches!(self, StorageError::Unavailable(_))
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Where the manager keeps its state. Object safe; used as `Arc<dyn Storage>`.
/// Tokens and the audit log are its [`AccessStore`] part; the webhook outbox
/// its [`WebhookStore`] part; changes written with their webhook events its
/// [`NotifyingStore`] part.
///
/// Every method is one transaction: it either happens whole or not at all.
/// Methods that take an id answer [`StorageError::NotFound`] when no such
/// record exists; deleted users are not found.
#[async_trait]
pub trait Storage:
    AccessStore
    + UserDirectory
    + WebhookStore
    + NotifyingStore
    + KeyRotationStore
    + NodeEventLog
    + Debug
    + Send
    + Sync
{
    /// Stores a new node with `actual_status = Stopped`, `required_status =
    /// Stopped`, no template, `state_up_to_date = true` and its cursor at the
    /// current newest change (a stopped node has nothing to apply; its start
    /// sends it every enabled user).
    ///
    /// # Contract
    /// - [`StorageError::AlreadyExists`] when the endpoint (or id) is taken;
    ///   nothing is written then.
    /// - The returned node is what a following [`Storage::get_node`] returns.
    async fn create_node(&self, node: NewNode) -> StorageResult<Node>;

    /// # Contract
    /// - [`StorageError::NotFound`] when there is no such node.
    async fn get_node(&self, id: NodeId) -> StorageResult<Node>;

    /// # Contract
    /// - `Ok(None)` when no node has this exact (already normalised) endpoint.
    async fn find_node_by_endpoint(&self, endpoint: &str) -> StorageResult<Option<Node>>;

    /// Nodes in id order, a page at a time.
    ///
    /// # Contract
    /// - At most `page.clamped_limit()` nodes, all with an id greater than
    ///   `page.after` (when given); `next` is `Some` exactly when more follow.
    /// - Walking the pages visits every node once.
    async fn list_nodes(&self, page: &PageRequest) -> StorageResult<Page<Node>>;

    /// Deletes the node; its cursor (and so its pending operations) and its
    /// lease go with it.
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] when there is no such node.
    async fn delete_node(&self, id: NodeId) -> StorageResult<()>;

    /// Sets what the operator wants the node to do.
    ///
    /// # Contract
    /// - Returns the node as stored after the change.
    /// - Idempotent; nothing else of the node changes.
    async fn set_required_status(&self, id: NodeId, status: RequiredStatus) -> StorageResult<Node>;

    /// Marks the node's stored state as not up to date and reads, in the same
    /// snapshot, the node and every user on nodes (enabled, not blocked):
    /// what `/start` must send.
    ///
    /// # Contract
    /// - After it, the node is in no user's node list until
    ///   [`Storage::finish_start`] succeeds.
    /// - `plan.seq` is the newest change reflected in `plan.users`; every change
    ///   with a larger number is still pending for the node afterwards.
    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan>;

    /// Records a successful `/start`: actual status Running, the node's
    /// template and described inbounds, cursor moved to `seq` (never
    /// backwards), last seen now, and the state up to date again.
    ///
    /// # Contract
    /// - Changes after `seq` stay pending.
    /// - The inbounds replace the ones stored; the node's profile is kept.
    async fn finish_start(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
    ) -> StorageResult<()>;

    /// Records the ports users now hold on the node (by user id, as a
    /// `/users/edit` answer reports them) on each of its inbounds with a
    /// port per user ([`InboundDescription::note_user_ports`]).
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] for an unknown node.
    /// - Nothing else of the node changes; a node without such an inbound
    ///   is unchanged. The serving-node set shows it.
    async fn note_user_ports(
        &self,
        id: NodeId,
        ports: &std::collections::BTreeMap<String, u16>,
    ) -> StorageResult<()>;

    /// Sets the operator's subscription settings for the node.
    ///
    /// # Contract
    /// - [`StorageError::Invalid`] when [`NodeProfile::validate`] refuses
    ///   it; nothing written.
    /// - Nothing else of the node changes; the serving-node set shows it.
    async fn set_node_profile(&self, id: NodeId, profile: &NodeProfile) -> StorageResult<Node>;

    /// Marks the node's stored state as not up to date before a `/stop`.
    ///
    /// # Contract
    /// - After it, the node is in no user's node list.
    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node>;

    /// Records a successful `/stop`: actual status Stopped, last seen now, state
    /// up to date.
    async fn finish_stop(&self, id: NodeId) -> StorageResult<()>;

    /// Records what a heartbeat saw: the node's actual status (`Error` when it
    /// did not answer). A node that answered gets `last_seen = now`.
    ///
    /// # Contract
    /// - Touches neither the cursor, nor the template, nor `state_up_to_date`.
    /// - A node seen as anything but Running leaves every user's list at once.
    async fn record_observation(&self, id: NodeId, actual: ActualStatus) -> StorageResult<()>;

    /// Stores a new user, Disabled and on no node (`change_seq = 0`).
    ///
    /// # Contract
    /// - Names need not be unique; [`StorageError::AlreadyExists`] only for a
    ///   taken id.
    async fn create_user(&self, user: NewUser) -> StorageResult<User>;

    /// # Contract
    /// - [`StorageError::NotFound`] when there is no such user or it was deleted.
    async fn get_user(&self, id: UserId) -> StorageResult<User>;

    /// Users (not deleted ones) in id order, a page at a time; same paging
    /// contract as [`Storage::list_nodes`].
    async fn list_users(&self, page: &PageRequest) -> StorageResult<Page<User>>;

    /// Enables or disables a user. When the status changes, the change takes
    /// the next sequence number: an add (enable) or delete (disable) becomes
    /// pending for every node, replacing any older intent for this user.
    ///
    /// # Contract
    /// - Atomic: status and pending intent change together or not at all.
    /// - Setting the status the user already has changes nothing (no new
    ///   sequence number) and returns the user.
    /// - O(1) writes, whatever the number of nodes.
    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StorageResult<User>;

    /// Deletes a user: it is gone from every read at once; a delete becomes
    /// pending for every node (replacing any older intent) and its tombstone is
    /// kept until [`Storage::purge_tombstones`] finds every node applied it.
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] when there is no such user (or already deleted).
    async fn delete_user(&self, id: UserId) -> StorageResult<()>;

    /// The user and the nodes they can use right now: nodes whose actual
    /// status is Running, whose state is up to date, that have a template and
    /// that applied the user's newest change; none when the user is disabled
    /// or blocked by their plan.
    /// Nodes are in id order. One round trip.
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] when there is no such user.
    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes>;

    /// [`Storage::user_nodes`], with the user's usage totals (`used_up`,
    /// `used_down`) as counted at most `max_age` ago (for the headers of the
    /// user's subscription). A backend reads them now; a cache in front
    /// keeps a user's row until the user's next change, and usage is not a
    /// change, so it reads the totals again for a row older than that.
    async fn user_nodes_with_usage(
        &self,
        id: UserId,
        max_age: Duration,
    ) -> StorageResult<UserNodes> {
        let _ = max_age;
        self.user_nodes(id).await
    }

    /// The node's pending operations: the newest intent of every user whose
    /// newest change the node has not applied, oldest change first, at most
    /// `limit` (clamped to 1..=10,000) of them.
    ///
    /// # Contract
    /// - Each user appears at most once, with its newest intent.
    /// - `up_to_seq` is the sequence number of the last operation in the batch
    ///   (the node's cursor when the batch is empty); `more` says whether
    ///   operations with a larger number follow.
    /// - Reads only; two calls without changes in between return the same batch.
    async fn pending_operations(&self, id: NodeId, limit: u32) -> StorageResult<PendingBatch>;

    /// The pending operations of a node whose cursor is `after`, without a
    /// node: the change log read once for many nodes (a node with a larger
    /// cursor takes the batch's operations numbered above its own cursor).
    /// Oldest change first, at most `limit` (clamped to 1..=10,000).
    ///
    /// # Contract
    /// - For a node whose cursor is `after`, the same batch as
    ///   [`Storage::pending_operations`] with the same `limit`.
    /// - `up_to_seq` is the last operation's number (`after` when empty);
    ///   every change numbered up to it is in the batch or superseded by a
    ///   newer change of the same user that is.
    async fn changes_after(&self, after: Seq, limit: u32) -> StorageResult<PendingBatch>;

    /// Records that the node applied every pending operation up to `up_to_seq`:
    /// its cursor becomes `max(cursor, up_to_seq)`.
    ///
    /// # Contract
    /// - Never moves a cursor backwards, so acknowledging an old batch after a
    ///   newer one is harmless.
    /// - A change made after the batch was read is still pending afterwards.
    async fn ack_operations(&self, id: NodeId, up_to_seq: Seq) -> StorageResult<()>;

    /// [`Storage::ack_operations`] for many nodes in one transaction (one
    /// statement where the backend can): after a fleet-wide push, one write
    /// instead of one per node.
    ///
    /// # Contract
    /// - Each listed node's cursor becomes `max(cursor, seq)`; with a node
    ///   listed twice, the larger number counts.
    /// - Nodes that no longer exist are skipped (deleted meanwhile).
    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        for (id, seq) in acks {
            match self.ack_operations(*id, *seq).await {
                Ok(()) | Err(StorageError::NotFound(Entity::Node)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The newest change's number and how many users are enabled.
    async fn fleet_state(&self) -> StorageResult<FleetState>;

    /// Removes the tombstones of deleted users that no node can still hold: a
    /// tombstone stays while a node that is or should be running has not
    /// applied it. Returns how many were removed.
    async fn purge_tombstones(&self) -> StorageResult<u64>;

    /// Leases for manager replicas: takes or renews, for `owner`, up to
    /// `limit` nodes whose lease is free, expired or already `owner`'s, for
    /// `ttl`, and returns the nodes `owner` now holds.
    ///
    /// # Contract
    /// - At any moment a node's lease has at most one unexpired owner.
    /// - Leases held by `owner` are always renewed, even beyond `limit`.
    /// - Time is the database's clock, so replicas on other hosts agree.
    async fn claim_nodes(&self, owner: &str, ttl: Duration, limit: u32)
    -> StorageResult<Vec<Node>>;

    /// Gives up every lease `owner` holds (a clean shutdown).
    async fn release_nodes(&self, owner: &str) -> StorageResult<()>;

    /// Stores a page of usage pulled from `node` with the cursor
    /// `pulled_with`, in one transaction.
    ///
    /// # Contract
    /// - When the node's stored cursor is not `pulled_with` (another replica
    ///   stored first), nothing is written: `stored == false` and `cursor`
    ///   is the stored one.
    /// - Else, for each of `page.new_batches(pulled_with)` and each of its
    ///   users that exists (others are skipped): the user's totals grow by
    ///   the bytes × the node's multiplier (rounded), the node's totals by
    ///   the raw bytes, every total saturating at `i64::MAX`; the history
    ///   gets the same amounts (per user per node per UTC day, multiplied;
    ///   per node per UTC hour, raw) in the day and hour of the batch's
    ///   `to`. An on-hold user with bytes gets `expire_at = now + hold` and
    ///   no hold any more. A user whose used bytes (up + down) reach the
    ///   limit and who was not blocked becomes `Limited` with one change (a
    ///   delete for every node, as a disable) and is in `newly_blocked`.
    ///   The cursor becomes `page.cursor_after(pulled_with)`.
    /// - `user_deltas` counts the user entries of the batches stored.
    /// - [`StorageError::NotFound`] when there is no such node.
    async fn ingest_usage(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
    ) -> StorageResult<IngestOutcome>;

    /// Edits the user's plan: `edit` is applied to the plan stored at that
    /// moment, in the same atomic step as the write, so concurrent edits of
    /// different fields all land. A whole plan is set with
    /// `PlanEdit::from(plan)`.
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] when there is no such live user (before
    ///   the edit is looked at).
    /// - [`StorageError::Invalid`] when the edited plan is refused by
    ///   [`crate::domain::Plan::validate`] (or a monthly day does not fit); nothing is
    ///   written then.
    /// - `next_reset_at` becomes the edited plan's first reset after `now`.
    /// - The user is blocked as `Expired` when the expiry is at or before
    ///   `now`, else as `Limited` when the used bytes reach the limit, else
    ///   not blocked; only when that changes does the user take a change
    ///   (an add or a delete for every node).
    async fn edit_user_plan(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
    ) -> StorageResult<User>;

    /// Sets the key of the user's subscription URL (a rotation: every token
    /// made with the old key is unknown from then on).
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] for an unknown or deleted user.
    /// - Takes no change: the nodes are not concerned, and the user stays
    ///   on every node that serves them. Nothing else of the user changes.
    async fn set_subscription_key(&self, id: UserId, key: SubscriptionKey) -> StorageResult<User>;

    /// Sets how many devices may fetch the user's subscription: `None` the
    /// settings' default, `Some(0)` no limit.
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] for an unknown or deleted user.
    /// - Takes no change; devices already recorded stay (a lower limit
    ///   refuses only devices not yet seen).
    async fn set_device_limit(&self, id: UserId, limit: Option<u32>) -> StorageResult<User>;

    /// Records that a device fetched the user's subscription, within
    /// `limit` devices (0: no limit).
    ///
    /// # Contract
    /// - A device already recorded is [`DeviceVerdict::Allowed`]; its
    ///   details and `last_seen` are written only when `last_seen` is
    ///   [`LAST_SEEN_STEP_MS`](crate::domain::device::LAST_SEEN_STEP_MS)
    ///   or more behind `now`.
    /// - A new device is recorded (`first_seen = last_seen = now`) and
    ///   allowed while the user has fewer than `limit` devices; otherwise
    ///   [`DeviceVerdict::OverLimit`] and nothing is written. Concurrent
    ///   sightings of new devices never leave more than `limit`.
    /// - [`StorageError::NotFound`] for an unknown or deleted user.
    async fn record_device(
        &self,
        id: UserId,
        sighting: &DeviceSighting,
        limit: u32,
        now: Timestamp,
    ) -> StorageResult<DeviceVerdict>;

    /// The user's devices, oldest first (by `first_seen`, then hardware id).
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] for an unknown or deleted user.
    async fn list_devices(&self, id: UserId) -> StorageResult<Vec<Device>>;

    /// Forgets one of the user's devices (it counts again as new).
    ///
    /// # Contract
    /// - `NotFound(Entity::Device)` when the user has no such device;
    ///   `NotFound(Entity::User)` for an unknown or deleted user.
    async fn delete_device(&self, id: UserId, hwid: &str) -> StorageResult<()>;

    /// Sets the user's used bytes to zero by hand.
    ///
    /// # Contract
    /// - `used_up = used_down = 0`, `last_reset_at = now`; a `Limited` user
    ///   is unblocked with one change (an add for every node).
    async fn reset_user_usage(&self, id: UserId, now: Timestamp) -> StorageResult<User>;

    /// Applies what time decides, for every live user it concerns.
    ///
    /// # Contract
    /// - A user whose `expire_at <= now` and who is not blocked as expired
    ///   becomes `Expired`, with one change; listed in `expired`.
    /// - A user whose `next_reset_at <= now` gets used bytes 0,
    ///   `last_reset_at = now`, `next_reset_at` the next one after `now`,
    ///   and is unblocked when `Limited` (one change); listed in `reset`.
    /// - Cheap when nothing is due (indexed reads).
    async fn enforce_time(&self, now: Timestamp) -> StorageResult<EnforceOutcome>;

    /// Sets what a byte through the node counts as on its users' totals,
    /// for the pages stored afterwards.
    ///
    /// # Contract
    /// - [`StorageError::Invalid`] unless finite and > 0; nothing written.
    async fn set_node_multiplier(&self, id: NodeId, multiplier: f64) -> StorageResult<Node>;

    /// The user's usage history (bytes after the multiplier) for the UTC
    /// days whose midnight is in `from..to`: one row per day (in day order)
    /// or per node (in node id order).
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] when there is no such user.
    async fn user_usage(
        &self,
        id: UserId,
        from: Timestamp,
        to: Timestamp,
        group: UsageGrouping,
    ) -> StorageResult<Vec<UsageRow>>;

    /// Raw bytes per node over the UTC hours whose start is in `from..to`,
    /// in node id order; nodes without traffic then are left out.
    async fn node_usage(&self, from: Timestamp, to: Timestamp) -> StorageResult<Vec<NodeUsage>>;

    /// Drops user-day history older than `user_days_before` and node-hour
    /// history older than `node_hours_before` (bucket start before them).
    /// Returns how many rows went. Totals are untouched.
    async fn purge_usage_history(
        &self,
        user_days_before: Timestamp,
        node_hours_before: Timestamp,
    ) -> StorageResult<u64>;

    /// The nodes that can serve users now: actual status Running, state up to
    /// date, with a template; each with its cursor, in id order. A user is on
    /// such a node when on nodes (enabled, not blocked) and
    /// `node.applied_seq >= user.change_seq`.
    ///
    /// # Contract
    /// - The same nodes [`Storage::user_nodes`] would consider.
    async fn serving_nodes(&self) -> StorageResult<Vec<ServingNode>> {
        let nodes = all_nodes(self).await?;
        Ok(nodes
            .into_iter()
            .filter_map(|n| {
                let serving = n.actual_status == ActualStatus::Running && n.state_up_to_date;
                let template = n.user_config_template.filter(|_| serving)?;
                Some(ServingNode {
                    applied_seq: n.applied_seq,
                    entry: NodeEntry::new(n.id, &n.endpoint, &template, &n.inbounds, &n.profile),
                })
            })
            .collect())
    }
}

/// Every node, in id order, every page of [`Storage::list_nodes`] read.
pub async fn all_nodes<S: Storage + ?Sized>(storage: &S) -> StorageResult<Vec<Node>> {
    let mut out = Vec::new();
    let mut req = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let page = storage.list_nodes(&req).await?;
        out.extend(page.items);
        match page.next {
            Some(next) => req.after = Some(next),
            None => return Ok(out),
        }
    }
}

pub mod access;
pub mod directory;
pub mod grouped;
pub mod kit;
pub mod memory;
pub mod node_events;
pub mod notify;
pub mod outbox;
pub mod rotation;
