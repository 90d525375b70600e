//! Examples of using the xray-manager libraries from another Rust program.
//!
//! - `examples/embedded.rs`: a service that mounts the manager's API inside its
//!   own axum router and runs the heartbeat on its own tokio runtime.
//! - [`CountingStorage`] (this file): a custom `Storage` backend, here a
//!   decorator that counts calls over any other backend; `tests/conformance.rs`
//!   runs the storage conformance suite on it, as every backend must.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use manager_lib::domain::{
    ActualStatus, FleetState, NewNode, NewUser, Node, NodeId, Page, PageRequest, PendingBatch,
    RequiredStatus, Seq, ServingNode, StartPlan, User, UserId, UserNodes, UserStatus,
};
use manager_lib::storage::{Storage, StorageResult};

/// A `Storage` that forwards to another one and counts reads and writes.
#[derive(Debug)]
pub struct CountingStorage {
    inner: Arc<dyn Storage>,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl CountingStorage {
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// (reads, writes) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }

    fn read(&self) -> &dyn Storage {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.as_ref()
    }

    fn write(&self) -> &dyn Storage {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.as_ref()
    }
}

manager_lib::forward_access_store!(CountingStorage, inner);
manager_lib::forward_user_directory!(CountingStorage, inner);
manager_lib::forward_node_event_log!(CountingStorage, inner);
manager_lib::forward_webhook_store!(CountingStorage, inner);
manager_lib::forward_key_rotation_store!(CountingStorage, inner);
manager_lib::forward_notifying_store!(CountingStorage, inner);

// Every method forwards, the optimised defaults included: a decorator that
// left `serving_nodes` or `ack_operations_many` to the trait's defaults would
// quietly read every node and ack one node at a time over a real backend.
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Storage for CountingStorage {
    async fn create_node(&self, node: NewNode) -> StorageResult<Node> {
        self.write().create_node(node).await
    }
    async fn get_node(&self, id: NodeId) -> StorageResult<Node> {
        self.read().get_node(id).await
    }
    async fn find_node_by_endpoint(&self, endpoint: &str) -> StorageResult<Option<Node>> {
        self.read().find_node_by_endpoint(endpoint).await
    }
    async fn list_nodes(&self, page: &PageRequest) -> StorageResult<Page<Node>> {
        self.read().list_nodes(page).await
    }
    async fn delete_node(&self, id: NodeId) -> StorageResult<()> {
        self.write().delete_node(id).await
    }
    async fn set_required_status(&self, id: NodeId, s: RequiredStatus) -> StorageResult<Node> {
        self.write().set_required_status(id, s).await
    }
    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan> {
        self.write().begin_start(id).await
    }
    async fn finish_start(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[manager_lib::domain::InboundDescription],
    ) -> StorageResult<()> {
        self.write().finish_start(id, seq, template, inbounds).await
    }
    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        self.write().begin_stop(id).await
    }
    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        self.write().finish_stop(id).await
    }
    async fn record_observation(&self, id: NodeId, actual: ActualStatus) -> StorageResult<()> {
        self.write().record_observation(id, actual).await
    }
    async fn create_user(&self, user: NewUser) -> StorageResult<User> {
        self.write().create_user(user).await
    }
    async fn get_user(&self, id: UserId) -> StorageResult<User> {
        self.read().get_user(id).await
    }
    async fn list_users(&self, page: &PageRequest) -> StorageResult<Page<User>> {
        self.read().list_users(page).await
    }
    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StorageResult<User> {
        self.write().set_user_status(id, status).await
    }
    async fn delete_user(&self, id: UserId) -> StorageResult<()> {
        self.write().delete_user(id).await
    }
    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes> {
        self.read().user_nodes(id).await
    }
    async fn user_nodes_with_usage(
        &self,
        id: UserId,
        max_age: std::time::Duration,
    ) -> StorageResult<UserNodes> {
        self.read().user_nodes_with_usage(id, max_age).await
    }
    async fn pending_operations(&self, id: NodeId, limit: u32) -> StorageResult<PendingBatch> {
        self.read().pending_operations(id, limit).await
    }
    async fn changes_after(&self, after: Seq, limit: u32) -> StorageResult<PendingBatch> {
        self.read().changes_after(after, limit).await
    }
    async fn ack_operations(&self, id: NodeId, up_to_seq: Seq) -> StorageResult<()> {
        self.write().ack_operations(id, up_to_seq).await
    }
    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        self.write().ack_operations_many(acks).await
    }
    async fn fleet_state(&self) -> StorageResult<FleetState> {
        self.read().fleet_state().await
    }
    async fn purge_tombstones(&self) -> StorageResult<u64> {
        self.write().purge_tombstones().await
    }
    async fn ingest_usage(
        &self,
        node: manager_lib::domain::NodeId,
        pulled_with: &manager_lib::domain::usage::UsageCursor,
        page: &manager_lib::domain::usage::UsagePage,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::usage::IngestOutcome> {
        self.write()
            .ingest_usage(node, pulled_with, page, now)
            .await
    }
    async fn edit_user_plan(
        &self,
        id: manager_lib::domain::UserId,
        edit: manager_lib::domain::PlanEdit,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::User> {
        self.write().edit_user_plan(id, edit, now).await
    }
    async fn reset_user_usage(
        &self,
        id: manager_lib::domain::UserId,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::User> {
        self.write().reset_user_usage(id, now).await
    }
    async fn enforce_time(
        &self,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::usage::EnforceOutcome> {
        self.write().enforce_time(now).await
    }
    async fn note_user_ports(
        &self,
        id: manager_lib::domain::NodeId,
        ports: &std::collections::BTreeMap<String, u16>,
    ) -> StorageResult<()> {
        self.write().note_user_ports(id, ports).await
    }
    async fn set_node_profile(
        &self,
        id: manager_lib::domain::NodeId,
        profile: &manager_lib::domain::NodeProfile,
    ) -> StorageResult<manager_lib::domain::Node> {
        self.write().set_node_profile(id, profile).await
    }
    async fn set_subscription_key(
        &self,
        id: manager_lib::domain::UserId,
        key: manager_lib::domain::SubscriptionKey,
    ) -> StorageResult<manager_lib::domain::User> {
        self.write().set_subscription_key(id, key).await
    }
    async fn set_device_limit(
        &self,
        id: manager_lib::domain::UserId,
        limit: Option<u32>,
    ) -> StorageResult<manager_lib::domain::User> {
        self.write().set_device_limit(id, limit).await
    }
    async fn record_device(
        &self,
        id: manager_lib::domain::UserId,
        sighting: &manager_lib::domain::DeviceSighting,
        limit: u32,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::DeviceVerdict> {
        self.write().record_device(id, sighting, limit, now).await
    }
    async fn list_devices(
        &self,
        id: manager_lib::domain::UserId,
    ) -> StorageResult<Vec<manager_lib::domain::Device>> {
        self.write().list_devices(id).await
    }
    async fn delete_device(
        &self,
        id: manager_lib::domain::UserId,
        hwid: &str,
    ) -> StorageResult<()> {
        self.write().delete_device(id, hwid).await
    }
    async fn set_node_multiplier(
        &self,
        id: manager_lib::domain::NodeId,
        multiplier: f64,
    ) -> StorageResult<manager_lib::domain::Node> {
        self.write().set_node_multiplier(id, multiplier).await
    }
    async fn user_usage(
        &self,
        id: manager_lib::domain::UserId,
        from: manager_lib::domain::Timestamp,
        to: manager_lib::domain::Timestamp,
        group: manager_lib::domain::usage::UsageGrouping,
    ) -> StorageResult<Vec<manager_lib::domain::usage::UsageRow>> {
        self.read().user_usage(id, from, to, group).await
    }
    async fn node_usage(
        &self,
        from: manager_lib::domain::Timestamp,
        to: manager_lib::domain::Timestamp,
    ) -> StorageResult<Vec<manager_lib::domain::usage::NodeUsage>> {
        self.read().node_usage(from, to).await
    }
    async fn purge_usage_history(
        &self,
        user_days_before: manager_lib::domain::Timestamp,
        node_hours_before: manager_lib::domain::Timestamp,
    ) -> StorageResult<u64> {
        self.write()
            .purge_usage_history(user_days_before, node_hours_before)
            .await
    }
    async fn claim_nodes(
        &self,
        owner: &str,
        ttl: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Node>> {
        self.write().claim_nodes(owner, ttl, limit).await
    }
    async fn release_nodes(&self, owner: &str) -> StorageResult<()> {
        self.write().release_nodes(owner).await
    }
    async fn serving_nodes(&self) -> StorageResult<Vec<ServingNode>> {
        self.read().serving_nodes().await
    }
}
