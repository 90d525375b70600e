//! Traffic through the chaos fleet: a few users of their own (never touched
//! by the workers) fetch a payload through random nodes' real v2ray cores
//! with real VLESS clients while the faults strike. At the end, once every
//! node's agent has been pulled to the last batch of its journal, each
//! user's total in the database must be what the agents read from the cores
//! (their journals' lifetime totals): nothing lost, nothing counted twice.
//!
//! The check is per (user, node), through the usage history the manager
//! stores with each total (it outlives deleted nodes): a node in the
//! database must have given exactly all its journal read; a deleted node,
//! never pulled again, exactly what its journal forgot plus its first `k`
//! outstanding batches, one `k` for all users (the manager's cursor stops
//! at a batch boundary); and each user's total is the sum over the nodes.
//! A killed core loses what its agent had not read yet: that is neither in
//! a journal nor in the database, and is fine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::task::JoinHandle;
use xray_core_client::testing::{TestClientCore, fetch_via_socks, serve_bytes, vless_user_with_id};

use super::{Answer, DbReader, DbSnapshot, Harness, NAME_PREFIX, UserModel, UserState};

/// Bytes of one fetch.
const PAYLOAD: usize = 192 * 1024;
/// Users with traffic.
const USERS: usize = 2;

/// Bytes per user id: `(up, down)`.
pub type UserBytes = BTreeMap<String, (u64, u64)>;

/// One agent's usage journal, read from its state directory.
#[derive(Debug, Clone, Default)]
pub struct JournalTotals {
    pub journal: String,
    /// The highest sequence number it assigned.
    pub last_seq: u64,
    /// Confirmed by the manager and reclaimed from the file.
    pub forgotten: UserBytes,
    /// The batches not forgotten yet, in sequence order.
    pub batches: Vec<UserBytes>,
}

impl JournalTotals {
    /// Forgotten plus the first `k` outstanding batches.
    fn prefix(&self, k: usize) -> UserBytes {
        let mut sum = self.forgotten.clone();
        for batch in &self.batches[..k] {
            for (id, &bytes) in batch {
                add(&mut sum, id, bytes);
            }
        }
        sum
    }
}

/// Reads the journal in an agent's state directory (`None`: none there yet).
pub type JournalReader = Arc<dyn Fn(&Path) -> Result<Option<JournalTotals>, String> + Send + Sync>;

/// What the traffic did and how it was counted.
#[derive(Debug, Clone, Default)]
pub struct TrafficReport {
    /// Whole fetches through the nodes, and the payload bytes they moved.
    pub fetches: u64,
    pub moved: u64,
    /// Fetches that failed (node down, user not there yet, core killed).
    pub failed_fetches: u64,
    /// What the agents read from the cores (all journals, up + down).
    pub counted: u64,
    /// What the database holds for the traffic users (up + down).
    pub stored: u64,
    /// Read by agents of deleted nodes after their last pull: never stored.
    pub unpulled: u64,
}

/// The traffic's shared state in the harness.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    users: std::sync::Mutex<Vec<String>>,
    stop: AtomicBool,
    fetches: AtomicU64,
    moved: AtomicU64,
    failed: AtomicU64,
}

fn add(to: &mut UserBytes, id: &str, (up, down): (u64, u64)) {
    let slot = to.entry(id.to_owned()).or_default();
    slot.0 += up;
    slot.1 += down;
}

impl Harness {
    /// Creates and enables the traffic users, before any fault (every call
    /// must succeed); the model holds them busy, so no worker picks them.
    pub(super) async fn add_traffic_users(&self) {
        for k in 0..USERS {
            let name = format!("{NAME_PREFIX}traffic-{k}");
            let Answer::Ok(body) = self
                .call(0, "/user/new", Some(json!({"userName": name})))
                .await
            else {
                panic!("creating {name} before any fault failed");
            };
            let id = body["user"]["id"].as_str().expect("user id").to_owned();
            let answer = self
                .call(0, "/user/enable", Some(json!({"userID": id})))
                .await;
            assert!(
                matches!(answer, Answer::Ok(_)),
                "enabling {name}: {answer:?}"
            );
            self.traffic.users.lock().unwrap().push(id.clone());
            self.model.lock().unwrap().users.push(UserModel {
                id,
                name,
                state: Some(UserState::Enabled),
                maybe_deleted: false,
                failed_at: None,
                busy: true,
            });
        }
    }

    /// Starts one fetch loop per traffic user, all on one payload server;
    /// they end when told to stop.
    pub(super) fn start_traffic(self: &Arc<Self>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let (http, server) = serve_bytes(PAYLOAD).await;
            let url = format!("http://{http}/file");
            let users = this.traffic.users.lock().unwrap().clone();
            let loops: Vec<_> = users
                .into_iter()
                .enumerate()
                .map(|(k, user)| tokio::spawn(this.clone().traffic_loop(k, user, url.clone())))
                .collect();
            for task in loops {
                super::join(task).await;
            }
            server.abort();
        })
    }

    /// Fetches the payload as `user` through a random node (not deleted),
    /// one fetch at a time, until told to stop. A client core per node,
    /// started on first use.
    async fn traffic_loop(self: Arc<Self>, k: usize, user: String, url: String) {
        let mut rng = StdRng::seed_from_u64(
            self.s.seed ^ 0x7AFF_1C7A_FF1C_7AFFu64.wrapping_mul(k as u64 + 1),
        );
        let mut clients: HashMap<u16, TestClientCore> = HashMap::new();
        let core_user = vless_user_with_id(&user);
        while !self.traffic.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
            let ports: Vec<u16> = {
                let model = self.model.lock().unwrap();
                model
                    .nodes
                    .iter()
                    .filter(|n| !n.deleted && !n.slot.removed.load(Ordering::SeqCst))
                    .map(|n| n.slot.vless)
                    .collect()
            };
            if ports.is_empty() {
                continue;
            }
            let port = ports[rng.random_range(0..ports.len())];
            if let std::collections::hash_map::Entry::Vacant(slot) = clients.entry(port) {
                match TestClientCore::start(port, &core_user).await {
                    Some(client) => slot.insert(client),
                    None => break, // no core binary: the run was skipped before
                };
            }
            let socks = clients[&port].socks_port();
            match fetch_via_socks(socks, &url).await {
                Ok(body) if body.len() == PAYLOAD => {
                    self.traffic.fetches.fetch_add(1, Ordering::SeqCst);
                    self.traffic
                        .moved
                        .fetch_add(PAYLOAD as u64, Ordering::SeqCst);
                }
                _ => {
                    self.traffic.failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    pub(super) fn stop_traffic(&self) {
        self.traffic.stop.store(true, Ordering::SeqCst);
    }

    /// Waits until every node in the database has been pulled to its
    /// journal's last batch, then checks the traffic users' totals against
    /// the journals (see the module docs); fails the run on any difference.
    pub(super) async fn check_traffic(
        &self,
        db: &DbReader,
        journals: &JournalReader,
    ) -> TrafficReport {
        let deadline = Instant::now() + self.s.converge;
        let users = self.traffic.users.lock().unwrap().clone();
        loop {
            match self.compare_traffic(db, journals, &users).await {
                Ok(Some(report)) => return report,
                // A difference once everything is pulled is final.
                Err(diffs) => {
                    self.fail("traffic totals differ from what the cores reported", &diffs)
                }
                Ok(None) if Instant::now() >= deadline => self.fail(
                    "the manager did not pull every journal to its end",
                    &["a node's usage cursor is behind its journal".to_owned()],
                ),
                Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// One comparison: `Ok(None)` while some node is not pulled to the end
    /// of its journal; `Err` with the differences once all are.
    async fn compare_traffic(
        &self,
        db: &DbReader,
        journals: &JournalReader,
        users: &[String],
    ) -> Result<Option<TrafficReport>, Vec<String>> {
        // The database first, the journals after: a cursor at a journal's
        // last batch then proves the manager had nothing more to store.
        let Ok(snapshot): Result<DbSnapshot, String> = db().await else {
            return Ok(None);
        };
        let live: BTreeMap<&str, (&Option<String>, u64)> = snapshot
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), (&n.usage_journal, n.usage_seq)))
            .collect();
        let slots: Vec<_> = {
            let model = self.model.lock().unwrap();
            model.nodes.iter().map(|n| n.slot.clone()).collect()
        };
        let known: BTreeSet<&str> = users.iter().map(String::as_str).collect();
        let none = BTreeMap::new();
        let by_node = |user: &str| snapshot.usage_by_node.get(user).unwrap_or(&none);
        let mut report = TrafficReport {
            fetches: self.traffic.fetches.load(Ordering::SeqCst),
            moved: self.traffic.moved.load(Ordering::SeqCst),
            failed_fetches: self.traffic.failed.load(Ordering::SeqCst),
            ..TrafficReport::default()
        };
        let mut diffs = Vec::new();
        let mut nodes_seen = BTreeSet::new();
        for slot in &slots {
            let dir = slot.agent.lock().await.state_dir();
            let journal = match journals(&dir) {
                Ok(Some(t)) => t,
                Ok(None) => JournalTotals::default(),
                Err(e) => return Err(vec![format!("node {}: {e}", slot.node_id)]),
            };
            let node = slot.node_id.as_str();
            nodes_seen.insert(node);
            let all = journal.prefix(journal.batches.len());
            report.counted += all.values().map(|(u, d)| u + d).sum::<u64>();
            for id in all.keys().filter(|id| !known.contains(id.as_str())) {
                diffs.push(format!(
                    "node {node}: user {id} has traffic but never had any"
                ));
            }
            let stored = |id: &str| by_node(id).get(node).copied().unwrap_or_default();
            let matches = |k: usize| {
                let sum = journal.prefix(k);
                known
                    .iter()
                    .all(|id| stored(id) == sum.get(*id).copied().unwrap_or_default())
            };
            match live.get(node) {
                Some(&(cursor_journal, seq)) => {
                    let pulled = seq == journal.last_seq
                        && (journal.last_seq == 0
                            || cursor_journal.as_deref() == Some(&journal.journal));
                    if !pulled {
                        return Ok(None);
                    }
                    if !matches(journal.batches.len()) {
                        for id in &known {
                            diffs.push(format!(
                                "node {node}, user {id}: stored {:?}, its journal read {:?}",
                                stored(id),
                                all.get(*id).copied().unwrap_or_default()
                            ));
                        }
                    }
                }
                None => match (0..=journal.batches.len()).rev().find(|&k| matches(k)) {
                    Some(k) => {
                        let kept = journal.prefix(k);
                        let total = |m: &UserBytes| m.values().map(|(u, d)| u + d).sum::<u64>();
                        report.unpulled += total(&all) - total(&kept);
                    }
                    None => {
                        for id in &known {
                            diffs.push(format!(
                                "deleted node {node}, user {id}: stored {:?} is no prefix of its journal (forgotten {:?}, then {} batches, {:?} in all)",
                                stored(id),
                                journal.forgotten.get(*id).copied().unwrap_or_default(),
                                journal.batches.len(),
                                all.get(*id).copied().unwrap_or_default()
                            ));
                        }
                    }
                },
            }
        }
        let totals: HashMap<&str, (u64, u64)> = snapshot
            .users
            .iter()
            .map(|u| (u.id.as_str(), (u.used_up, u.used_down)))
            .collect();
        for id in &known {
            let Some(&(up, down)) = totals.get(id) else {
                diffs.push(format!("traffic user {id} is not in the database"));
                continue;
            };
            report.stored += up + down;
            let history = by_node(id);
            let (h_up, h_down) = history
                .values()
                .fold((0, 0), |(a, b), &(u, d)| (a + u, b + d));
            if (h_up, h_down) != (up, down) {
                diffs.push(format!(
                    "user {id}: total up {up} down {down}, history per node sums to up {h_up} down {h_down}"
                ));
            }
            for node in history.keys().filter(|n| !nodes_seen.contains(n.as_str())) {
                diffs.push(format!(
                    "user {id}: bytes from node {node}, which never had an agent"
                ));
            }
        }
        if diffs.is_empty() {
            Ok(Some(report))
        } else {
            Err(diffs)
        }
    }
}
