//! The in-memory reference `Storage`: the contract in its plainest form, for
//! unit tests and for embedding the manager without a database. Nothing
//! survives the process.

mod access;
mod devices;
mod directory;
mod node_events;
mod notify;
mod outbox;
mod rotation;
mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::usage::{
    EnforceOutcome, IngestOutcome, NodeUsage, UsageCursor, UsageGrouping, UsagePage, UsageRow,
};
use crate::domain::{
    ActualStatus, DEFAULT_TRAFFIC_MULTIPLIER, Device, DeviceSighting, DeviceVerdict, FleetState,
    InboundDescription, NewNode, NewUser, Node, NodeEntry, NodeId, NodeProfile, Page, PageRequest,
    PendingBatch, PendingOperation, PlanEdit, RequiredStatus, Seq, StartPlan, SubscriptionKey,
    Timestamp, User, UserId, UserNodes, UserStatus,
};
use crate::storage::kit::usage::Bytes;
use crate::storage::{Entity, Storage, StorageError, StorageResult, kit};

#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<State>,
    access: Mutex<access::AccessState>,
    outbox: Mutex<outbox::OutboxState>,
    events: Mutex<node_events::EventState>,
}

#[derive(Clone, Debug, Default)]
struct State {
    last_seq: Seq,
    enabled: u64,
    nodes: BTreeMap<NodeId, Node>,
    leases: HashMap<NodeId, (String, Instant)>,
    /// Users, tombstones included (`deleted == true`).
    users: BTreeMap<UserId, (User, bool)>,
    /// change_seq → user, for reading pending operations in order.
    changes: BTreeMap<Seq, UserId>,
    /// Usage history: per user per UTC day per node (multiplied)…
    user_days: BTreeMap<(UserId, Timestamp, NodeId), Bytes>,
    /// …and per node per UTC hour (raw).
    node_hours: BTreeMap<(NodeId, Timestamp), Bytes>,
    /// Each user's devices, by hardware id.
    devices: HashMap<UserId, BTreeMap<String, Device>>,
    rotations: BTreeMap<NodeId, crate::domain::KeyRotation>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written state:
        // every method finishes its checks before it writes.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn node_mut(&mut self, id: NodeId) -> StorageResult<&mut Node> {
        self.nodes
            .get_mut(&id)
            .ok_or(StorageError::NotFound(Entity::Node))
    }

    fn live_user(&self, id: UserId) -> StorageResult<&User> {
        match self.users.get(&id) {
            Some((user, false)) => Ok(user),
            _ => Err(StorageError::NotFound(Entity::User)),
        }
    }

    /// Gives the user the next sequence number; the old change leaves the log.
    fn bump(&mut self, id: UserId) -> Seq {
        self.last_seq += 1;
        let seq = self.last_seq;
        let (user, _) = self.users.get_mut(&id).expect("checked by the caller");
        self.changes.remove(&user.change_seq);
        user.change_seq = seq;
        self.changes.insert(seq, id);
        seq
    }

    /// Changes a live user with `edit`; when that moves the user on or off
    /// the nodes (or changes why it is blocked) the user takes the next
    /// sequence number and the on-node count follows.
    fn change_user(&mut self, id: UserId, edit: impl FnOnce(&mut User)) -> StorageResult<User> {
        let (before_on, before_blocked) = {
            let user = self.live_user(id)?;
            (user.on_nodes(), user.blocked)
        };
        let (user, _) = self.users.get_mut(&id).expect("checked above");
        edit(user);
        let (after_on, after_blocked) = (user.on_nodes(), user.blocked);
        if before_on != after_on || before_blocked != after_blocked {
            self.bump(id);
        }
        match (before_on, after_on) {
            (false, true) => self.enabled += 1,
            (true, false) => self.enabled -= 1,
            _ => {}
        }
        self.live_user(id).cloned()
    }
}

/// The values of `map` after the page's `after`, those `keep` keeps, read
/// as the SQL backends read rows (one past the limit, see [`kit::into_page`]).
fn page<K, T>(
    map: &BTreeMap<K, T>,
    req: &PageRequest,
    keep: impl Fn(&T) -> bool,
    key: impl Fn(&T) -> String,
) -> Page<T>
where
    K: Ord + std::str::FromStr,
    T: Clone,
{
    let after = kit::page_after::<K>(req);
    let rows = map
        .iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
        .map(|(_, v)| v)
        .filter(|v| keep(v));
    kit::into_page(rows, req.clamped_limit() as usize, |v| Ok(v.clone()), key)
        .expect("cloning cannot fail")
}

/// The batch of changes after `cursor` (see `Storage::changes_after`).
fn changes_after(st: &State, cursor: Seq, limit: u32) -> PendingBatch {
    let mut iter = st.changes.range(cursor + 1..);
    let operations: Vec<PendingOperation> = iter
        .by_ref()
        .take(kit::batch_limit(limit))
        .map(|(seq, uid)| {
            let (user, deleted) = &st.users[uid];
            PendingOperation {
                user: user.credentials(),
                operation: kit::intent(user.status, user.blocked.is_some(), *deleted),
                seq: *seq,
            }
        })
        .collect();
    let more = iter.next().is_some();
    kit::batch(operations, cursor, more)
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn create_node(&self, new: NewNode) -> StorageResult<Node> {
        let mut st = self.lock();
        if st.nodes.contains_key(&new.id) || st.nodes.values().any(|n| n.endpoint == new.endpoint) {
            return Err(StorageError::AlreadyExists(Entity::Node));
        }
        let now = Timestamp::now();
        let node = Node {
            id: new.id,
            endpoint: new.endpoint,
            key: new.key,
            actual_status: ActualStatus::Stopped,
            required_status: RequiredStatus::Stopped,
            user_config_template: None,
            inbounds: Vec::new(),
            profile: NodeProfile::default(),
            state_up_to_date: true,
            applied_seq: st.last_seq,
            last_seen: None,
            created_at: now,
            updated_at: now,
            usage_cursor: UsageCursor::default(),
            traffic_multiplier: DEFAULT_TRAFFIC_MULTIPLIER,
            used_up: 0,
            used_down: 0,
        };
        st.nodes.insert(node.id, node.clone());
        Ok(node)
    }

    async fn get_node(&self, id: NodeId) -> StorageResult<Node> {
        let mut st = self.lock();
        st.node_mut(id).map(|n| n.clone())
    }

    async fn find_node_by_endpoint(&self, endpoint: &str) -> StorageResult<Option<Node>> {
        let st = self.lock();
        Ok(st.nodes.values().find(|n| n.endpoint == endpoint).cloned())
    }

    async fn list_nodes(&self, req: &PageRequest) -> StorageResult<Page<Node>> {
        let st = self.lock();
        Ok(page(&st.nodes, req, |_| true, |n| n.id.to_string()))
    }

    async fn delete_node(&self, id: NodeId) -> StorageResult<()> {
        let mut st = self.lock();
        st.nodes
            .remove(&id)
            .ok_or(StorageError::NotFound(Entity::Node))?;
        st.leases.remove(&id);
        st.rotations.remove(&id);
        Ok(())
    }

    async fn set_required_status(&self, id: NodeId, status: RequiredStatus) -> StorageResult<Node> {
        let mut st = self.lock();
        let node = st.node_mut(id)?;
        if node.required_status != status {
            node.required_status = status;
            node.updated_at = Timestamp::now();
        }
        Ok(node.clone())
    }

    async fn begin_start(&self, id: NodeId) -> StorageResult<StartPlan> {
        let mut st = self.lock();
        let seq = st.last_seq;
        let node = st.node_mut(id)?;
        node.state_up_to_date = false;
        node.updated_at = Timestamp::now();
        let node = node.clone();
        let users = st
            .users
            .values()
            .filter(|(u, deleted)| !deleted && u.on_nodes())
            .map(|(u, _)| u.credentials())
            .collect();
        Ok(StartPlan { node, users, seq })
    }

    async fn finish_start(
        &self,
        id: NodeId,
        seq: Seq,
        template: &str,
        inbounds: &[InboundDescription],
    ) -> StorageResult<()> {
        self.lock().finish_start(id, seq, template, inbounds)
    }

    async fn begin_stop(&self, id: NodeId) -> StorageResult<Node> {
        let mut st = self.lock();
        let node = st.node_mut(id)?;
        node.state_up_to_date = false;
        node.updated_at = Timestamp::now();
        Ok(node.clone())
    }

    async fn finish_stop(&self, id: NodeId) -> StorageResult<()> {
        let mut st = self.lock();
        let node = st.node_mut(id)?;
        let now = Timestamp::now();
        node.actual_status = ActualStatus::Stopped;
        node.state_up_to_date = true;
        node.last_seen = Some(now);
        node.updated_at = now;
        Ok(())
    }

    async fn record_observation(&self, id: NodeId, actual: ActualStatus) -> StorageResult<()> {
        self.lock().observe(id, actual)
    }

    async fn create_user(&self, new: NewUser) -> StorageResult<User> {
        new.plan.validate()?;
        let mut st = self.lock();
        if st.users.contains_key(&new.id) {
            return Err(StorageError::AlreadyExists(Entity::User));
        }
        let now = Timestamp::now();
        let user = User {
            id: new.id,
            name: new.name,
            status: UserStatus::Disabled,
            secret: new.secret,
            subscription_key: new.subscription_key,
            device_limit: None,
            change_seq: 0,
            created_at: now,
            next_reset_at: new.plan.reset.next_reset_after(now),
            blocked: kit::usage::plan_block(&new.plan, 0, now),
            plan: new.plan,
            used_up: 0,
            used_down: 0,
            last_reset_at: None,
        };
        st.users.insert(user.id, (user.clone(), false));
        Ok(user)
    }

    async fn get_user(&self, id: UserId) -> StorageResult<User> {
        let st = self.lock();
        st.live_user(id).cloned()
    }

    async fn list_users(&self, req: &PageRequest) -> StorageResult<Page<User>> {
        let st = self.lock();
        let p = page(
            &st.users,
            req,
            |(_, deleted)| !deleted,
            |(u, _)| u.id.to_string(),
        );
        Ok(Page {
            items: p.items.into_iter().map(|(u, _)| u).collect(),
            next: p.next,
        })
    }

    async fn set_user_status(&self, id: UserId, status: UserStatus) -> StorageResult<User> {
        let mut st = self.lock();
        if st.live_user(id)?.status == status {
            return st.live_user(id).cloned();
        }
        let user = st.change_user(id, |u| u.status = status)?;
        if user.blocked.is_some() {
            // Off the nodes either way, but a status change is a change.
            st.bump(id);
        }
        st.live_user(id).cloned()
    }

    async fn delete_user(&self, id: UserId) -> StorageResult<()> {
        let mut st = self.lock();
        if st.live_user(id)?.on_nodes() {
            st.enabled -= 1;
        }
        st.bump(id);
        let entry = st.users.get_mut(&id).expect("checked above");
        entry.0.status = UserStatus::Disabled;
        entry.1 = true;
        Ok(())
    }

    async fn user_nodes(&self, id: UserId) -> StorageResult<UserNodes> {
        let st = self.lock();
        let user = st.live_user(id)?.clone();
        let nodes = if user.on_nodes() {
            st.nodes
                .values()
                .filter(|n| {
                    n.actual_status == ActualStatus::Running
                        && n.state_up_to_date
                        && n.applied_seq >= user.change_seq
                })
                .filter_map(|n| {
                    Some(NodeEntry::new(
                        n.id,
                        &n.endpoint,
                        n.user_config_template.as_deref()?,
                        &n.inbounds,
                        &n.profile,
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(UserNodes { user, nodes })
    }

    async fn pending_operations(&self, id: NodeId, limit: u32) -> StorageResult<PendingBatch> {
        let mut st = self.lock();
        let cursor = st.node_mut(id)?.applied_seq;
        Ok(changes_after(&st, cursor, limit))
    }

    async fn changes_after(&self, after: Seq, limit: u32) -> StorageResult<PendingBatch> {
        Ok(changes_after(&self.lock(), after, limit))
    }

    async fn ack_operations(&self, id: NodeId, up_to_seq: Seq) -> StorageResult<()> {
        let mut st = self.lock();
        let node = st.node_mut(id)?;
        node.applied_seq = node.applied_seq.max(up_to_seq);
        Ok(())
    }

    async fn fleet_state(&self) -> StorageResult<FleetState> {
        let st = self.lock();
        Ok(FleetState {
            last_seq: st.last_seq,
            enabled_users: st.enabled,
        })
    }

    async fn purge_tombstones(&self) -> StorageResult<u64> {
        let mut st = self.lock();
        let horizon = st
            .nodes
            .values()
            .filter(|n| {
                n.actual_status != ActualStatus::Stopped
                    || n.required_status != RequiredStatus::Stopped
            })
            .map(|n| n.applied_seq)
            .min()
            .unwrap_or(Seq::MAX);
        let dead: Vec<UserId> = st
            .users
            .values()
            .filter(|(u, deleted)| *deleted && u.change_seq <= horizon)
            .map(|(u, _)| u.id)
            .collect();
        for id in &dead {
            if let Some((user, _)) = st.users.remove(id) {
                st.changes.remove(&user.change_seq);
            }
            st.devices.remove(id);
        }
        Ok(dead.len() as u64)
    }

    async fn ingest_usage(
        &self,
        node: NodeId,
        pulled_with: &UsageCursor,
        page: &UsagePage,
        now: Timestamp,
    ) -> StorageResult<IngestOutcome> {
        self.lock().ingest(node, pulled_with, page, now)
    }

    async fn edit_user_plan(
        &self,
        id: UserId,
        edit: PlanEdit,
        now: Timestamp,
    ) -> StorageResult<User> {
        self.lock().edit_plan(id, edit, now)
    }

    async fn reset_user_usage(&self, id: UserId, now: Timestamp) -> StorageResult<User> {
        self.lock().reset_usage(id, now)
    }

    async fn enforce_time(&self, now: Timestamp) -> StorageResult<EnforceOutcome> {
        Ok(self.lock().enforce_time(now))
    }

    async fn note_user_ports(
        &self,
        id: NodeId,
        ports: &std::collections::BTreeMap<String, u16>,
    ) -> StorageResult<()> {
        let mut st = self.lock();
        let node = st.node_mut(id)?;
        node.inbounds
            .iter_mut()
            .for_each(|i| i.note_user_ports(ports));
        Ok(())
    }

    async fn set_node_profile(&self, id: NodeId, profile: &NodeProfile) -> StorageResult<Node> {
        profile.validate()?;
        let mut st = self.lock();
        let node = st.node_mut(id)?;
        node.profile = profile.clone();
        node.updated_at = Timestamp::now();
        Ok(node.clone())
    }

    async fn set_subscription_key(&self, id: UserId, key: SubscriptionKey) -> StorageResult<User> {
        self.lock().change_user(id, |u| u.subscription_key = key)
    }

    async fn set_device_limit(&self, id: UserId, limit: Option<u32>) -> StorageResult<User> {
        self.lock().change_user(id, |u| u.device_limit = limit)
    }

    async fn record_device(
        &self,
        id: UserId,
        sighting: &DeviceSighting,
        limit: u32,
        now: Timestamp,
    ) -> StorageResult<DeviceVerdict> {
        self.lock().record_device(id, sighting, limit, now)
    }

    async fn list_devices(&self, id: UserId) -> StorageResult<Vec<Device>> {
        self.lock().list_devices(id)
    }

    async fn delete_device(&self, id: UserId, hwid: &str) -> StorageResult<()> {
        self.lock().delete_device(id, hwid)
    }

    async fn set_node_multiplier(&self, id: NodeId, multiplier: f64) -> StorageResult<Node> {
        let multiplier = crate::domain::usage::check_multiplier(multiplier)?;
        let mut st = self.lock();
        let node = st.node_mut(id)?;
        node.traffic_multiplier = multiplier;
        node.updated_at = Timestamp::now();
        Ok(node.clone())
    }

    async fn user_usage(
        &self,
        id: UserId,
        from: Timestamp,
        to: Timestamp,
        group: UsageGrouping,
    ) -> StorageResult<Vec<UsageRow>> {
        self.lock().user_usage(id, from, to, group)
    }

    async fn node_usage(&self, from: Timestamp, to: Timestamp) -> StorageResult<Vec<NodeUsage>> {
        Ok(self.lock().node_usage(from, to))
    }

    async fn purge_usage_history(
        &self,
        user_days_before: Timestamp,
        node_hours_before: Timestamp,
    ) -> StorageResult<u64> {
        let mut st = self.lock();
        let before = st.user_days.len() + st.node_hours.len();
        st.user_days
            .retain(|(_, day, _), _| *day >= user_days_before);
        st.node_hours
            .retain(|(_, hour), _| *hour >= node_hours_before);
        Ok((before - st.user_days.len() - st.node_hours.len()) as u64)
    }

    async fn claim_nodes(
        &self,
        owner: &str,
        ttl: Duration,
        limit: u32,
    ) -> StorageResult<Vec<Node>> {
        let mut st = self.lock();
        let now = Instant::now();
        let until = now + ttl;
        let mut held = Vec::new();
        let mut taken = 0u32;
        let ids: Vec<NodeId> = st.nodes.keys().copied().collect();
        for id in ids {
            let mine = match st.leases.get(&id) {
                Some((o, _)) if o == owner => true,
                Some((_, exp)) if *exp > now => continue,
                _ if taken < limit => {
                    taken += 1;
                    true
                }
                _ => false,
            };
            if mine {
                st.leases.insert(id, (owner.to_owned(), until));
                held.push(st.nodes[&id].clone());
            }
        }
        Ok(held)
    }

    async fn release_nodes(&self, owner: &str) -> StorageResult<()> {
        let mut st = self.lock();
        st.leases.retain(|_, (o, _)| o != owner);
        Ok(())
    }
}
