//! A storage whose token reads fail while `down` is set, as a lost
//! database would: the dashboard must tell that apart from a wrong token.
//! Its user status changes fail for the `refused` users, and wait while
//! `hold` is set (a bulk job caught running).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use manager_lib::domain::*;
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::storage::{AccessStore, Storage, StorageError, StorageResult};

/// Memory storage; token reads answer `Unavailable` while `down` is set.
#[derive(Debug, Default)]
pub struct OutageStorage {
    inner: MemoryStorage,
    pub down: Arc<AtomicBool>,
    pub refused: Arc<Mutex<Vec<UserId>>>,
    pub hold: Arc<AtomicBool>,
}

impl OutageStorage {
    fn check(&self) -> StorageResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable("injected outage".into()));
        }
        Ok(())
    }
}

manager_lib::forward_webhook_store!(OutageStorage, inner);
manager_lib::forward_key_rotation_store!(OutageStorage, inner);
manager_lib::forward_notifying_store!(OutageStorage, inner);
manager_lib::forward_user_directory!(OutageStorage, inner);
manager_lib::forward_node_event_log!(OutageStorage, inner);

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl AccessStore for OutageStorage {
    async fn create_token(&self, token: &ApiToken, verifier: &TokenVerifier) -> StorageResult<()> {
        self.inner.create_token(token, verifier).await
    }
    async fn get_token(&self, id: TokenId) -> StorageResult<(ApiToken, TokenVerifier)> {
        self.check()?;
        self.inner.get_token(id).await
    }
    async fn list_tokens(&self) -> StorageResult<Vec<ApiToken>> {
        self.check()?;
        self.inner.list_tokens().await
    }
    async fn revoke_token(&self, id: TokenId, now: Timestamp) -> StorageResult<ApiToken> {
        self.inner.revoke_token(id, now).await
    }
    async fn append_audit(&self, entry: &NewAuditEntry) -> StorageResult<AuditEntry> {
        self.inner.append_audit(entry).await
    }
    async fn list_audit(&self, query: &AuditQuery) -> StorageResult<Page<AuditEntry>> {
        self.inner.list_audit(query).await
    }
    async fn purge_audit(&self, before: Timestamp) -> StorageResult<u64> {
        self.inner.purge_audit(before).await
    }
}

// Every method forwarded, the optimised ones too.
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Storage for OutageStorage {
    async fn create_node(&self, n: NewNode) -> StorageResult<Node> {
        self.inner.create_node(n).await
    }
    async fn get_node(&self, id: NodeId) -> StorageResult<Node> {
        self.inner.get_node(id).await
    }
    async fn find_node_by_endpoint(&self, e: &str) -> StorageResult<Option<Node>> {
        self.inner.find_node_by_endpoint(e).await
    }
    async fn list_nodes(&self, p: &PageRequest) -> StorageResult<Page<Node>> {
        self.inner.list_nodes(p).await
    }
    async fn delete_node(&self, id: NodeId) -> StorageResult<()> {
        self.inner.delete_node(id).await
    }
    async fn set_required_status(&self, id: NodeId, s: RequiredStatus) -> StorageResult<Node> {
        self.inner.set_required_status(id, s).await
    }
    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan> {
        self.inner.begin_start(id).await
    }
    async fn finish_start(
        &self,
        id: NodeId,
        seq: Seq,
        t: &str,
        inbounds: &[manager_lib::domain::InboundDescription],
    ) -> StorageResult<()> {
        self.inner.finish_start(id, seq, t, inbounds).await
    }
    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        self.inner.begin_stop(id).await
    }
    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        self.inner.finish_stop(id).await
    }
    async fn record_observation(&self, id: NodeId, a: ActualStatus) -> StorageResult<()> {
        self.inner.record_observation(id, a).await
    }
    async fn create_user(&self, u: NewUser) -> StorageResult<User> {
        self.inner.create_user(u).await
    }
    async fn get_user(&self, id: UserId) -> StorageResult<User> {
        self.inner.get_user(id).await
    }
    async fn list_users(&self, p: &PageRequest) -> StorageResult<Page<User>> {
        self.inner.list_users(p).await
    }
    async fn set_user_status(&self, id: UserId, s: UserStatus) -> StorageResult<User> {
        while self.hold.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if self.refused.lock().unwrap().contains(&id) {
            return Err(StorageError::Unavailable("injected failure".into()));
        }
        self.inner.set_user_status(id, s).await
    }
    async fn delete_user(&self, id: UserId) -> StorageResult<()> {
        self.inner.delete_user(id).await
    }
    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes> {
        self.inner.user_nodes(id).await
    }
    async fn user_nodes_with_usage(
        &self,
        id: UserId,
        max_age: std::time::Duration,
    ) -> StorageResult<UserNodes> {
        self.inner.user_nodes_with_usage(id, max_age).await
    }
    async fn pending_operations(&self, id: NodeId, l: u32) -> StorageResult<PendingBatch> {
        self.inner.pending_operations(id, l).await
    }
    async fn changes_after(&self, after: Seq, l: u32) -> StorageResult<PendingBatch> {
        self.inner.changes_after(after, l).await
    }
    async fn ack_operations(&self, id: NodeId, s: Seq) -> StorageResult<()> {
        self.inner.ack_operations(id, s).await
    }
    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        // One statement for every node: a lost database fails it whole.
        self.inner.ack_operations_many(acks).await
    }
    async fn fleet_state(&self) -> StorageResult<FleetState> {
        self.inner.fleet_state().await
    }
    async fn purge_tombstones(&self) -> StorageResult<u64> {
        self.inner.purge_tombstones().await
    }
    async fn ingest_usage(
        &self,
        node: manager_lib::domain::NodeId,
        pulled_with: &manager_lib::domain::usage::UsageCursor,
        page: &manager_lib::domain::usage::UsagePage,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::usage::IngestOutcome> {
        self.inner.ingest_usage(node, pulled_with, page, now).await
    }
    async fn edit_user_plan(
        &self,
        id: manager_lib::domain::UserId,
        edit: manager_lib::domain::PlanEdit,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::User> {
        self.inner.edit_user_plan(id, edit, now).await
    }
    async fn reset_user_usage(
        &self,
        id: manager_lib::domain::UserId,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::User> {
        self.inner.reset_user_usage(id, now).await
    }
    async fn enforce_time(
        &self,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::usage::EnforceOutcome> {
        self.inner.enforce_time(now).await
    }
    async fn note_user_ports(
        &self,
        id: manager_lib::domain::NodeId,
        ports: &std::collections::BTreeMap<String, u16>,
    ) -> StorageResult<()> {
        self.inner.note_user_ports(id, ports).await
    }
    async fn set_node_profile(
        &self,
        id: manager_lib::domain::NodeId,
        profile: &manager_lib::domain::NodeProfile,
    ) -> StorageResult<manager_lib::domain::Node> {
        self.inner.set_node_profile(id, profile).await
    }
    async fn set_subscription_key(
        &self,
        id: manager_lib::domain::UserId,
        key: manager_lib::domain::SubscriptionKey,
    ) -> StorageResult<manager_lib::domain::User> {
        self.inner.set_subscription_key(id, key).await
    }
    async fn set_device_limit(
        &self,
        id: manager_lib::domain::UserId,
        limit: Option<u32>,
    ) -> StorageResult<manager_lib::domain::User> {
        self.inner.set_device_limit(id, limit).await
    }
    async fn record_device(
        &self,
        id: manager_lib::domain::UserId,
        sighting: &manager_lib::domain::DeviceSighting,
        limit: u32,
        now: manager_lib::domain::Timestamp,
    ) -> StorageResult<manager_lib::domain::DeviceVerdict> {
        self.inner.record_device(id, sighting, limit, now).await
    }
    async fn list_devices(
        &self,
        id: manager_lib::domain::UserId,
    ) -> StorageResult<Vec<manager_lib::domain::Device>> {
        self.inner.list_devices(id).await
    }
    async fn delete_device(
        &self,
        id: manager_lib::domain::UserId,
        hwid: &str,
    ) -> StorageResult<()> {
        self.inner.delete_device(id, hwid).await
    }
    async fn set_node_multiplier(
        &self,
        id: manager_lib::domain::NodeId,
        multiplier: f64,
    ) -> StorageResult<manager_lib::domain::Node> {
        self.inner.set_node_multiplier(id, multiplier).await
    }
    async fn user_usage(
        &self,
        id: manager_lib::domain::UserId,
        from: manager_lib::domain::Timestamp,
        to: manager_lib::domain::Timestamp,
        group: manager_lib::domain::usage::UsageGrouping,
    ) -> StorageResult<Vec<manager_lib::domain::usage::UsageRow>> {
        self.inner.user_usage(id, from, to, group).await
    }
    async fn node_usage(
        &self,
        from: manager_lib::domain::Timestamp,
        to: manager_lib::domain::Timestamp,
    ) -> StorageResult<Vec<manager_lib::domain::usage::NodeUsage>> {
        self.inner.node_usage(from, to).await
    }
    async fn purge_usage_history(
        &self,
        user_days_before: manager_lib::domain::Timestamp,
        node_hours_before: manager_lib::domain::Timestamp,
    ) -> StorageResult<u64> {
        self.inner
            .purge_usage_history(user_days_before, node_hours_before)
            .await
    }
    async fn claim_nodes(&self, o: &str, t: Duration, l: u32) -> StorageResult<Vec<Node>> {
        self.inner.claim_nodes(o, t, l).await
    }
    async fn release_nodes(&self, o: &str) -> StorageResult<()> {
        self.inner.release_nodes(o).await
    }
    async fn serving_nodes(&self) -> StorageResult<Vec<ServingNode>> {
        self.inner.serving_nodes().await
    }
}
