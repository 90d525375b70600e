//! The scenarios and the heartbeat against node calls and storage writes
//! that fail at each step: every case converges once the fault clears, with
//! nothing lost and no user left on a node they were removed from.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use manager_lib::domain::usage::{UsageCursor, UsagePage};
use manager_lib::domain::*;
use manager_lib::manager::{Manager, ManagerError, ManagerSettings, NodeOutcome};
use manager_lib::reconcile::{Reconciler, ReconcilerSettings};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::storage::{Storage, StorageError, StorageResult};
use manager_lib::transport::simulated::SimulatedFleet;
use manager_lib::transport::{MockNodeTransport, NodeReport, NodeTransport, TransportError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Step {
    Start,
    Stop,
    Status,
    Edit,
    FinishStart,
    FinishStop,
    Ack,
}

/// Faults to inject: how many more times each step fails.
#[derive(Debug, Default)]
struct Faults(Mutex<HashMap<Step, u32>>);

impl Faults {
    fn fail(&self, step: Step, times: u32) {
        self.0.lock().unwrap().insert(step, times);
    }
    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
    fn hit(&self, step: Step) -> bool {
        let mut map = self.0.lock().unwrap();
        match map.get_mut(&step) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// The simulated fleet, with node calls failing on demand. A failing `edit`
/// or `start` fails before reaching the node; `Ack`/`FinishStart` failures
/// happen in storage after the node call succeeded.
#[derive(Debug)]
struct FaultyFleet {
    fleet: Arc<SimulatedFleet>,
    faults: Arc<Faults>,
}

fn node_down() -> TransportError {
    TransportError::Unreachable("injected fault".into())
}

#[async_trait]
impl NodeTransport for FaultyFleet {
    async fn start(
        &self,
        node: &Node,
        users: &[NodeUser],
    ) -> Result<manager_lib::transport::StartResponse, TransportError> {
        if self.faults.hit(Step::Start) {
            return Err(node_down());
        }
        self.fleet.start(node, users).await
    }
    async fn stop(&self, node: &Node) -> Result<(), TransportError> {
        if self.faults.hit(Step::Stop) {
            return Err(node_down());
        }
        self.fleet.stop(node).await
    }
    async fn status(&self, node: &Node) -> Result<NodeReport, TransportError> {
        if self.faults.hit(Step::Status) {
            return Err(node_down());
        }
        self.fleet.status(node).await
    }
    async fn edit_users(
        &self,
        node: &Node,
        add: &[NodeUser],
        del: &[UserId],
    ) -> Result<manager_lib::transport::UserPorts, TransportError> {
        if self.faults.hit(Step::Edit) {
            return Err(node_down());
        }
        self.fleet.edit_users(node, add, del).await
    }
    async fn usage(
        &self,
        node: &Node,
        cursor: &UsageCursor,
        max_batches: u32,
    ) -> Result<UsagePage, TransportError> {
        self.fleet.usage(node, cursor, max_batches).await
    }

    async fn rotate_key(
        &self,
        node: &Node,
        new: &manager_lib::domain::NodeKey,
        grace: std::time::Duration,
    ) -> Result<(), TransportError> {
        self.fleet.rotate_key(node, new, grace).await
    }
}

/// Memory storage whose chosen writes fail as a lost database would.
#[derive(Debug)]
struct FaultyStorage {
    inner: MemoryStorage,
    faults: Arc<Faults>,
}

impl FaultyStorage {
    fn check(&self, step: Step) -> StorageResult<()> {
        if self.faults.hit(step) {
            return Err(StorageError::Unavailable("injected fault".into()));
        }
        Ok(())
    }
}

manager_lib::forward_access_store!(FaultyStorage, inner);
manager_lib::forward_user_directory!(FaultyStorage, inner);
manager_lib::forward_node_event_log!(FaultyStorage, inner);
manager_lib::forward_webhook_store!(FaultyStorage, inner);
manager_lib::forward_key_rotation_store!(FaultyStorage, inner);
manager_lib::forward_notifying_store!(FaultyStorage, inner);

// Every method forwarded, the optimised ones too: a default would run the
// fault-free path of `inner` or bypass the injected fault.
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Storage for FaultyStorage {
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
        self.check(Step::FinishStart)?;
        self.inner.finish_start(id, seq, t, inbounds).await
    }
    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        self.inner.begin_stop(id).await
    }
    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        self.check(Step::FinishStop)?;
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
        self.check(Step::Ack)?;
        self.inner.ack_operations(id, s).await
    }
    async fn ack_operations_many(&self, acks: &[(NodeId, Seq)]) -> StorageResult<()> {
        // One statement for every node: a lost database fails it whole.
        self.check(Step::Ack)?;
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

struct World {
    manager: Arc<Manager>,
    reconciler: Arc<Reconciler>,
    fleet: Arc<SimulatedFleet>,
    faults: Arc<Faults>,
    storage: Arc<dyn Storage>,
}

impl World {
    /// The manager as the root wires it, changes left to the heartbeat
    /// (every 100 ms) unless `settings` say otherwise.
    fn new() -> Self {
        Self::with(Self::new_settings())
    }

    fn new_settings() -> ServerSettings {
        ServerSettings {
            push_on_change: false,
            reconciler: ReconcilerSettings {
                interval: Duration::from_millis(100),
                ..ReconcilerSettings::default()
            },
            ..ServerSettings::new("t")
        }
    }

    fn with(settings: ServerSettings) -> Self {
        let faults = Arc::new(Faults::default());
        let fleet = Arc::new(SimulatedFleet::new());
        let storage: Arc<dyn Storage> = Arc::new(FaultyStorage {
            inner: MemoryStorage::new(),
            faults: faults.clone(),
        });
        let transport = Arc::new(FaultyFleet {
            fleet: fleet.clone(),
            faults: faults.clone(),
        });
        let server = Server::build(Backends::new(storage.clone(), transport), settings);
        Self {
            manager: server.manager,
            reconciler: server.reconciler,
            fleet,
            faults,
            storage,
        }
    }

    async fn running_node(&self, endpoint: &str) -> Node {
        self.fleet.add_node(endpoint);
        let node = self.manager.new_node(endpoint).await.unwrap();
        self.manager.start_node(node.id).await.unwrap();
        node
    }

    async fn enabled_user(&self, name: &str) -> User {
        let user = self.manager.new_user(name).await.unwrap();
        self.manager.enable_user(user.id).await.unwrap()
    }

    async fn heartbeat_until_converged(&self) {
        for _ in 0..20 {
            self.reconciler.heartbeat().await;
            if self.diverged().await.is_none() {
                return;
            }
        }
        panic!("no convergence: {}", self.diverged().await.unwrap());
    }

    /// What differs between the database's intent and the fleet, if anything.
    async fn diverged(&self) -> Option<String> {
        let users = self
            .storage
            .list_users(&PageRequest::first(10_000))
            .await
            .unwrap()
            .items;
        let enabled: HashSet<UserId> = users
            .iter()
            .filter(|u| u.status == UserStatus::Enabled)
            .map(|u| u.id)
            .collect();
        let nodes = self
            .storage
            .list_nodes(&PageRequest::first(10_000))
            .await
            .unwrap()
            .items;
        for node in &nodes {
            let on_core = self.fleet.users(&node.endpoint);
            let running = self.fleet.is_running(&node.endpoint);
            match node.required_status {
                RequiredStatus::Running => {
                    if !running || on_core != enabled {
                        return Some(format!(
                            "{}: running={running} core={on_core:?} enabled={enabled:?}",
                            node.endpoint
                        ));
                    }
                    if node.actual_status != ActualStatus::Running || !node.state_up_to_date {
                        return Some(format!("{}: stored {node:?}", node.endpoint));
                    }
                    let pending = self.storage.pending_operations(node.id, 100).await.unwrap();
                    if !pending.operations.is_empty() {
                        return Some(format!("{}: pending {pending:?}", node.endpoint));
                    }
                }
                RequiredStatus::Stopped => {
                    if running || node.actual_status != ActualStatus::Stopped {
                        return Some(format!("{}: should be stopped", node.endpoint));
                    }
                }
            }
        }
        for user in &users {
            let listed: HashSet<NodeId> = self
                .storage
                .user_nodes(user.id)
                .await
                .unwrap()
                .nodes
                .iter()
                .map(|n| n.id)
                .collect();
            let expected: HashSet<NodeId> = if user.status == UserStatus::Enabled {
                nodes
                    .iter()
                    .filter(|n| n.required_status == RequiredStatus::Running)
                    .map(|n| n.id)
                    .collect()
            } else {
                HashSet::new()
            };
            if listed != expected {
                return Some(format!(
                    "user {} lists {listed:?}, expected {expected:?}",
                    user.name
                ));
            }
        }
        None
    }

    async fn listed(&self, user: UserId) -> usize {
        self.storage.user_nodes(user).await.unwrap().nodes.len()
    }
}

#[tokio::test]
async fn a_start_that_fails_at_the_node_is_repaired_by_the_heartbeat() {
    let w = World::new();
    let alice = w.enabled_user("alice").await;
    w.fleet.add_node("http://n1");
    let node = w.manager.new_node("http://n1").await.unwrap();
    w.faults.fail(Step::Start, 1);
    let err = w.manager.start_node(node.id).await.unwrap_err();
    assert!(matches!(
        err,
        ManagerError::Node(TransportError::Unreachable(_))
    ));
    assert_eq!(w.listed(alice.id).await, 0);
    assert!(!w.storage.get_node(node.id).await.unwrap().state_up_to_date);
    w.heartbeat_until_converged().await;
    assert_eq!(w.listed(alice.id).await, 1);
}

#[tokio::test]
async fn a_start_whose_result_cannot_be_stored_is_redone() {
    let w = World::new();
    let alice = w.enabled_user("alice").await;
    w.fleet.add_node("http://n1");
    let node = w.manager.new_node("http://n1").await.unwrap();
    w.faults.fail(Step::FinishStart, 1);
    let err = w.manager.start_node(node.id).await.unwrap_err();
    assert!(matches!(
        err,
        ManagerError::Storage(StorageError::Unavailable(_))
    ));
    // The node runs, but the database says "not up to date": nobody is sent there.
    assert!(w.fleet.is_running("http://n1"));
    assert_eq!(w.listed(alice.id).await, 0);
    w.heartbeat_until_converged().await;
}

#[tokio::test]
async fn a_stop_that_fails_is_repaired_by_the_heartbeat() {
    let w = World::new();
    let alice = w.enabled_user("alice").await;
    let node = w.running_node("http://n1").await;
    assert_eq!(w.listed(alice.id).await, 1);
    w.faults.fail(Step::Stop, 1);
    assert!(w.manager.stop_node(node.id).await.is_err());
    assert_eq!(w.listed(alice.id).await, 0, "a stopping node serves nobody");
    w.heartbeat_until_converged().await;
    assert!(!w.fleet.is_running("http://n1"));
}

#[tokio::test]
async fn a_stop_whose_result_cannot_be_stored_is_redone() {
    let w = World::new();
    let node = w.running_node("http://n1").await;
    w.faults.fail(Step::FinishStop, 1);
    assert!(w.manager.stop_node(node.id).await.is_err());
    w.heartbeat_until_converged().await;
    assert_eq!(
        w.storage.get_node(node.id).await.unwrap().actual_status,
        ActualStatus::Stopped
    );
}

#[tokio::test]
async fn an_enable_that_cannot_be_pushed_stays_pending_then_lands() {
    let w = World::new();
    w.running_node("http://n1").await;
    w.running_node("http://n2").await;
    w.faults.fail(Step::Edit, 3);
    let alice = w.enabled_user("alice").await;
    w.reconciler.heartbeat().await;
    assert!(
        w.listed(alice.id).await < 2,
        "a node that failed the push does not list the user"
    );
    w.faults.clear();
    w.heartbeat_until_converged().await;
    assert_eq!(w.listed(alice.id).await, 2);
}

#[tokio::test]
async fn a_disable_that_cannot_be_pushed_still_hides_the_user_and_lands_later() {
    let w = World::new();
    w.running_node("http://n1").await;
    let alice = w.enabled_user("alice").await;
    w.heartbeat_until_converged().await;
    assert!(w.fleet.users("http://n1").contains(&alice.id));
    w.faults.fail(Step::Edit, 2);
    w.manager.disable_user(alice.id).await.unwrap();
    assert_eq!(w.listed(alice.id).await, 0, "off every list at once");
    w.reconciler.heartbeat().await;
    w.heartbeat_until_converged().await;
    assert!(!w.fleet.users("http://n1").contains(&alice.id));
}

#[tokio::test]
async fn an_ack_that_cannot_be_stored_resends_the_operations() {
    let w = World::new();
    w.running_node("http://n1").await;
    let alice = w.enabled_user("alice").await;
    w.faults.fail(Step::Ack, 1);
    let bob = w.manager.new_user("bob").await.unwrap();
    w.manager.enable_user(bob.id).await.unwrap();
    w.manager.disable_user(alice.id).await.unwrap();
    w.heartbeat_until_converged().await;
    assert_eq!(w.fleet.users("http://n1"), HashSet::from([bob.id]));
}

#[tokio::test]
async fn an_unreachable_node_leaves_every_list_and_comes_back() {
    let w = World::new();
    let node = w.running_node("http://n1").await;
    let alice = w.enabled_user("alice").await;
    w.heartbeat_until_converged().await;
    assert_eq!(w.listed(alice.id).await, 1);
    w.fleet.set_unreachable("http://n1", true);
    w.reconciler.heartbeat().await;
    assert_eq!(
        w.storage.get_node(node.id).await.unwrap().actual_status,
        ActualStatus::Error
    );
    assert_eq!(w.listed(alice.id).await, 0);
    // Changes made meanwhile land once it is back.
    let bob = w.enabled_user("bob").await;
    w.fleet.set_unreachable("http://n1", false);
    w.heartbeat_until_converged().await;
    assert_eq!(w.listed(bob.id).await, 1);
}

#[tokio::test]
async fn a_core_that_lost_its_users_gets_them_all_again() {
    let w = World::new();
    let node = w.running_node("http://n1").await;
    let alice = w.enabled_user("alice").await;
    let bob = w.enabled_user("bob").await;
    w.heartbeat_until_converged().await;
    w.fleet.crash_core("http://n1");
    assert!(w.fleet.users("http://n1").is_empty());
    let outcome = w.manager.reconcile_node(&node).await.unwrap();
    assert_eq!(outcome, NodeOutcome::Resynced);
    assert_eq!(
        w.fleet.users("http://n1"),
        HashSet::from([alice.id, bob.id])
    );
    w.heartbeat_until_converged().await;
}

#[tokio::test]
async fn a_node_that_stopped_by_itself_is_started_again() {
    let w = World::new();
    let node = w.running_node("http://n1").await;
    w.enabled_user("alice").await;
    w.heartbeat_until_converged().await;
    w.fleet.stop(&node).await.unwrap();
    let outcome = w.manager.reconcile_node(&node).await.unwrap();
    assert_eq!(outcome, NodeOutcome::Started);
    w.heartbeat_until_converged().await;
}

#[tokio::test]
async fn a_deleted_user_is_removed_from_the_nodes() {
    let w = World::new();
    w.running_node("http://n1").await;
    let alice = w.enabled_user("alice").await;
    w.heartbeat_until_converged().await;
    w.faults.fail(Step::Edit, 1);
    w.manager.delete_user(alice.id).await.unwrap();
    w.heartbeat_until_converged().await;
    assert!(w.fleet.users("http://n1").is_empty());
}

#[tokio::test]
async fn the_status_call_failing_marks_error_and_retries() {
    let w = World::new();
    let node = w.running_node("http://n1").await;
    w.faults.fail(Step::Status, 2);
    let report = w.reconciler.heartbeat().await;
    assert_eq!(report.failed, 1);
    assert_eq!(
        w.storage.get_node(node.id).await.unwrap().actual_status,
        ActualStatus::Error
    );
    w.heartbeat_until_converged().await;
}

#[tokio::test]
async fn a_nudge_pushes_an_enable_without_waiting_for_the_heartbeat() {
    let w = World::with(ServerSettings {
        reconciler: ReconcilerSettings {
            interval: Duration::from_secs(3600),
            ..ReconcilerSettings::default()
        },
        ..ServerSettings::new("t")
    });
    w.running_node("http://n1").await;
    let stop = tokio_util_free_shutdown();
    let task = tokio::spawn(w.reconciler.clone().run(stop.1));
    // The first tick fires at once and claims the node; then only nudges work.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.fleet.calls("http://n1") < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first heartbeat never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alice = w.enabled_user("alice").await;
    while !w.fleet.users("http://n1").contains(&alice.id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "enable never pushed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.0.send(());
    task.await.unwrap();
}

/// Changes made while a push is on its way share the next push, and that
/// push waits as long as the previous one took: on a slow node (or a large
/// fleet) pushing takes at most half of the time, the rest left to the
/// changes. Virtual time, so the timings are exact.
#[tokio::test(start_paused = true)]
async fn changes_made_during_a_push_share_the_next_which_waits_as_long_as_the_last_took() {
    let w = World::with(ServerSettings {
        manager: ManagerSettings {
            max_push_gap: Duration::from_secs(1),
            ..ManagerSettings::default()
        },
        reconciler: ReconcilerSettings {
            interval: Duration::from_secs(3600),
            ..ReconcilerSettings::default()
        },
        ..ServerSettings::new("t")
    });
    let endpoint = "http://n1";
    w.running_node(endpoint).await;
    let stop = tokio_util_free_shutdown();
    let task = tokio::spawn(w.reconciler.clone().run(stop.1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.fleet.calls(endpoint) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first heartbeat never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every call to the node now takes 100 ms.
    w.fleet.set_delay(endpoint, Duration::from_millis(100));
    let calls_before = w.fleet.calls(endpoint);
    let started = tokio::time::Instant::now();
    let first = w.enabled_user("first").await;
    // Five more while the first push (0-100 ms) is on its way.
    let mut later = Vec::new();
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        later.push(w.enabled_user(&format!("later-{i}")).await.id);
    }
    while !w.fleet.users(endpoint).contains(&first.id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first enable never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first_at = started.elapsed();
    while !later.iter().all(|id| w.fleet.users(endpoint).contains(id)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the later enables never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let later_at = started.elapsed();
    // The first push went at once; the second waited 100 ms after it ended
    // (as long as it took), then took 100 ms itself.
    assert!(
        first_at >= Duration::from_millis(100) && first_at < Duration::from_millis(150),
        "{first_at:?}"
    );
    assert!(
        later_at >= Duration::from_millis(300) && later_at < Duration::from_millis(350),
        "{later_at:?}"
    );
    assert_eq!(
        w.fleet.calls(endpoint) - calls_before,
        2,
        "one push for the first enable, one for the five later"
    );
    let _ = stop.0.send(());
    task.await.unwrap();
}

fn tokio_util_free_shutdown() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

#[tokio::test]
async fn a_node_error_is_passed_through_from_start() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let mut transport = MockNodeTransport::new();
    transport.expect_start().returning(|_, _| {
        Err(TransportError::Node {
            status: 503,
            error: "xray service initializing".into(),
            message: None,
        })
    });
    let manager = Manager::new(
        storage.clone(),
        Arc::new(transport),
        ManagerSettings::default(),
    );
    let node = manager.new_node("http://n1").await.unwrap();
    let err = manager.start_node(node.id).await.unwrap_err();
    match err {
        ManagerError::Node(TransportError::Node { status, error, .. }) => {
            assert_eq!(status, 503);
            assert_eq!(error, "xray service initializing");
        }
        other => panic!("{other:?}"),
    }
    let stored = storage.get_node(node.id).await.unwrap();
    assert_eq!(stored.required_status, RequiredStatus::Running);
    assert!(!stored.state_up_to_date);
}

/// A world whose manager sends at most `edit_batch` operations per call.
fn world_with_batch(edit_batch: u32) -> World {
    World::with(ServerSettings {
        manager: ManagerSettings {
            edit_batch,
            ..ManagerSettings::default()
        },
        ..World::new_settings()
    })
}

#[tokio::test]
async fn a_fleet_wide_push_brings_nodes_at_different_cursors_to_the_newest_intent() {
    let w = world_with_batch(3);
    let a = w.running_node("http://a").await;
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(w.enabled_user(&format!("early{i}")).await);
        if i == 1 {
            w.manager.push_pending(a.id).await.unwrap();
        }
    }
    // b starts later with the early users; c is stopped, d registered only.
    let b = w.running_node("http://b").await;
    let c = w.running_node("http://c").await;
    w.manager.stop_node(c.id).await.unwrap();
    w.fleet.add_node("http://d");
    let d = w.manager.new_node("http://d").await.unwrap();
    for i in 0..7 {
        users.push(w.enabled_user(&format!("late{i}")).await);
    }
    w.manager.disable_user(users[0].id).await.unwrap();
    w.manager.delete_user(users[5].id).await.unwrap();
    assert!(
        w.storage.get_node(a.id).await.unwrap().applied_seq
            < w.storage.get_node(b.id).await.unwrap().applied_seq,
        "the nodes start from different cursors"
    );

    let results = w
        .manager
        .push_pending_many(&[a.id, b.id, c.id, d.id], 2)
        .await
        .unwrap();
    // a had the first two early users: it takes the other two, the seven
    // late ones (one of them deleted since: still one operation) and the
    // first user's disable. b's start carried the four early users.
    assert_eq!(results.len(), 2, "only the serving nodes: {results:?}");
    assert_eq!(*results[&a.id].as_ref().unwrap(), 10);
    assert_eq!(*results[&b.id].as_ref().unwrap(), 8);
    let expected: HashSet<UserId> = users
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 0 && *i != 5)
        .map(|(_, u)| u.id)
        .collect();
    for node in [&a, &b] {
        assert_eq!(w.fleet.users(&node.endpoint), expected, "{}", node.endpoint);
        let pending = w.storage.pending_operations(node.id, 100).await.unwrap();
        assert!(pending.operations.is_empty(), "{pending:?}");
    }
    assert!(
        w.fleet.users("http://c").is_empty(),
        "a stopped node gets nothing"
    );
    assert!(
        w.fleet.users("http://d").is_empty(),
        "a node never started gets nothing"
    );
}

#[tokio::test]
async fn a_fleet_wide_push_that_fails_on_one_node_leaves_its_changes_pending() {
    let w = World::new();
    let a = w.running_node("http://a").await;
    let b = w.running_node("http://b").await;
    let alice = w.enabled_user("alice").await;
    w.faults.fail(Step::Edit, 1);
    let results = w.manager.push_pending_many(&[a.id, b.id], 1).await.unwrap();
    let failed: Vec<NodeId> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    let failed = w.storage.get_node(failed[0]).await.unwrap();
    assert!(!w.fleet.users(&failed.endpoint).contains(&alice.id));
    let pending = w.storage.pending_operations(failed.id, 10).await.unwrap();
    assert_eq!(
        pending.operations.len(),
        1,
        "still pending on the failed node"
    );
    // The other node has her, and the next push (or heartbeat) lands the rest.
    w.manager.push_pending_many(&[a.id, b.id], 1).await.unwrap();
    w.heartbeat_until_converged().await;
}

#[tokio::test]
async fn a_fleet_wide_push_whose_ack_cannot_be_stored_resends() {
    let w = World::new();
    let a = w.running_node("http://a").await;
    let alice = w.enabled_user("alice").await;
    w.faults.fail(Step::Ack, 1);
    let results = w.manager.push_pending_many(&[a.id], 4).await.unwrap();
    assert!(results[&a.id].is_err());
    // Applied but not acknowledged: still pending, sent again, no harm.
    assert!(w.fleet.users("http://a").contains(&alice.id));
    assert_eq!(
        w.storage
            .pending_operations(a.id, 10)
            .await
            .unwrap()
            .operations
            .len(),
        1
    );
    let results = w.manager.push_pending_many(&[a.id], 4).await.unwrap();
    assert_eq!(*results[&a.id].as_ref().unwrap(), 1);
    w.heartbeat_until_converged().await;
}
