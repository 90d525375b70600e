//! An in-memory fleet of simulated node agents, for tests, benchmarks and
//! trying the manager without real nodes. Each simulated node keeps a running
//! flag and the set of users its "core" has, like a real agent would, and can
//! be made unreachable, slow, or have its core lose its users. Each also
//! keeps a usage journal ([`SimulatedFleet::record_usage`],
//! [`SimulatedFleet::reset_usage_journal`]) that `usage` pulls with the
//! agent's cursor, confirmation and journal-id rules. It is the
//! reference transport: it meets the whole contract (the suite in
//! `transport::conformance`, feature `conformance`, checks it).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{JournalReport, NodeReport, NodeTransport, StartResponse, TransportError, UserPorts};
use crate::domain::usage::{UsageBatch, UsageCursor, UsagePage, UserUsage};
use crate::domain::{
    InboundDescription, InboundProtocol, Node, NodeKey, NodeUser, Timestamp, UserId,
};

/// The most batches a pull answers, as on a real agent.
const MAX_PULL_BATCHES: u32 = 256;

#[derive(Debug, Default, Clone)]
struct SimNode {
    running: bool,
    users: HashSet<UserId>,
    unreachable: bool,
    delay: Duration,
    core_restarts: u64,
    calls: u64,
    /// How many `usage` calls reached the node.
    usage_calls: u64,
    /// The key the agent holds; `None` takes any key.
    key: Option<NodeKey>,
    /// The key a rotation replaced, accepted until [`SimulatedFleet::end_key_grace`].
    previous_key: Option<NodeKey>,
    journal: SimJournal,
}

/// A node's usage journal: the batches not yet confirmed.
#[derive(Debug, Clone)]
struct SimJournal {
    id: String,
    batches: Vec<UsageBatch>,
    last_seq: u64,
}

impl Default for SimJournal {
    fn default() -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            batches: Vec::new(),
            last_seq: 0,
        }
    }
}

impl SimJournal {
    fn append(&mut self, users: &[(UserId, u64, u64)]) -> Option<u64> {
        let users: Vec<UserUsage> = users
            .iter()
            .filter(|(_, up, down)| *up > 0 || *down > 0)
            .map(|&(user, up, down)| UserUsage { user, up, down })
            .collect();
        if users.is_empty() {
            return None;
        }
        self.last_seq += 1;
        let now = Timestamp::now();
        self.batches.push(UsageBatch {
            first_seq: self.last_seq,
            seq: self.last_seq,
            from: now,
            to: now,
            users,
        });
        Some(self.last_seq)
    }

    fn pull(&mut self, cursor: &UsageCursor, max_batches: u32) -> UsagePage {
        let ours = cursor.journal.as_deref() == Some(self.id.as_str());
        let after = if ours {
            self.batches.retain(|b| b.seq > cursor.seq);
            // A journal behind the cursor (restored from a backup): the
            // manager stored up to it, so numbering goes on after it.
            self.last_seq = self.last_seq.max(cursor.seq);
            cursor.seq
        } else {
            0
        };
        let max = max_batches.clamp(1, MAX_PULL_BATCHES) as usize;
        let mut rest = self.batches.iter().filter(|b| b.seq > after);
        let batches: Vec<UsageBatch> = rest.by_ref().take(max).cloned().collect();
        UsagePage {
            journal: self.id.clone(),
            batches,
            more: rest.next().is_some(),
        }
    }
}

/// Simulated agents, keyed by endpoint. A node unknown to the fleet answers
/// as unreachable.
#[derive(Debug)]
pub struct SimulatedFleet {
    nodes: Mutex<HashMap<String, SimNode>>,
    template: String,
    inbounds: Vec<InboundDescription>,
    timeout: Duration,
}

impl Default for SimulatedFleet {
    fn default() -> Self {
        Self::new()
    }
}

impl SimulatedFleet {
    pub fn new() -> Self {
        Self {
            nodes: Mutex::new(HashMap::new()),
            template: "vless://{{.UserID}}@sim:443?security=none#{{.UserName}}".to_owned(),
            inbounds: vec![InboundDescription::new(
                "vless-in",
                InboundProtocol::Vless,
                443,
            )],
            // The manager's default node timeout.
            timeout: Duration::from_secs(10),
        }
    }

    /// Every node describes these inbounds on `/start` (by default one
    /// VLESS inbound over plain TCP on port 443, as the template says).
    pub fn with_inbounds(mut self, inbounds: Vec<InboundDescription>) -> Self {
        self.inbounds = inbounds;
        self
    }

    /// A node slower than `timeout` (see [`SimulatedFleet::set_delay`]) is
    /// unreachable after `timeout`, as over HTTP.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn with<T>(&self, endpoint: &str, f: impl FnOnce(&mut SimNode) -> T) -> T {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        f(nodes.entry(endpoint.to_owned()).or_default())
    }

    /// Brings up an agent (stopped core) at `endpoint` that takes calls
    /// under any key, as if the operator always copied the right one.
    pub fn add_node(&self, endpoint: &str) {
        self.with(endpoint, |_| ());
    }

    /// Brings up an agent (stopped core) at `endpoint` holding `key`: calls
    /// for a node with another key are refused as a key mismatch.
    pub fn add_node_with_key(&self, endpoint: &str, key: &NodeKey) {
        self.with(endpoint, |n| n.key = Some(key.clone()));
    }

    /// The key the node's agent holds now (`None`: it takes any key).
    pub fn key(&self, endpoint: &str) -> Option<NodeKey> {
        self.with(endpoint, |n| n.key.clone())
    }

    /// The grace period of the node's last key rotation ends: only its
    /// current key is accepted from now on.
    pub fn end_key_grace(&self, endpoint: &str) {
        self.with(endpoint, |n| n.previous_key = None);
    }

    /// The node's agent loses a rotation (its state directory wiped): it is
    /// back to `key` alone, as its settings name it.
    pub fn reset_key(&self, endpoint: &str, key: &NodeKey) {
        self.with(endpoint, |n| {
            n.key = Some(key.clone());
            n.previous_key = None;
        });
    }

    /// While unreachable, every call fails as a network error would.
    pub fn set_unreachable(&self, endpoint: &str, unreachable: bool) {
        self.with(endpoint, |n| n.unreachable = unreachable);
    }

    /// Every call to the node takes this long first.
    pub fn set_delay(&self, endpoint: &str, delay: Duration) {
        self.with(endpoint, |n| n.delay = delay);
    }

    /// The core restarts by itself and comes back without its runtime users.
    pub fn crash_core(&self, endpoint: &str) {
        self.with(endpoint, |n| {
            n.users.clear();
            n.core_restarts += 1;
        });
    }

    pub fn is_running(&self, endpoint: &str) -> bool {
        self.with(endpoint, |n| n.running)
    }

    /// The users the node's core has now.
    pub fn users(&self, endpoint: &str) -> HashSet<UserId> {
        self.with(endpoint, |n| n.users.clone())
    }

    /// The node's core counted these bytes `(user, up, down)` and its agent
    /// journaled them as one batch (zero entries left out; none: no batch).
    /// Gives the batch's sequence number.
    pub fn record_usage(&self, endpoint: &str, usage: &[(UserId, u64, u64)]) -> Option<u64> {
        self.with(endpoint, |n| n.journal.append(usage))
    }

    /// The node's usage journal is lost (its state dir wiped): a new journal
    /// id, no batches, numbers from 1 again.
    pub fn reset_usage_journal(&self, endpoint: &str) {
        self.with(endpoint, |n| n.journal = SimJournal::default());
    }

    /// The node's usage journal comes back from a backup taken when its
    /// newest number was `seq`: batches after it are gone, the id is the same.
    pub fn restore_usage_journal(&self, endpoint: &str, seq: u64) {
        self.with(endpoint, |n| {
            n.journal.batches.retain(|b| b.seq <= seq);
            n.journal.last_seq = seq;
        });
    }

    /// Batches the node's journal holds (not yet confirmed).
    pub fn usage_batches(&self, endpoint: &str) -> usize {
        self.with(endpoint, |n| n.journal.batches.len())
    }

    /// How many calls reached the node.
    pub fn calls(&self, endpoint: &str) -> u64 {
        self.with(endpoint, |n| n.calls)
    }

    /// How many of them were usage pulls.
    pub fn usage_calls(&self, endpoint: &str) -> u64 {
        self.with(endpoint, |n| n.usage_calls)
    }

    async fn call<T>(
        &self,
        node: &Node,
        f: impl FnOnce(&mut SimNode) -> Result<T, TransportError>,
    ) -> Result<T, TransportError> {
        let (known, unreachable, delay) = {
            let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            match nodes.get(&node.endpoint) {
                Some(n) => (true, n.unreachable, n.delay),
                None => (false, true, Duration::ZERO),
            }
        };
        if !delay.is_zero() && delay >= self.timeout {
            tokio::time::sleep(self.timeout).await;
            return Err(TransportError::Unreachable(format!(
                "simulated node {} did not answer within {:?}",
                node.endpoint, self.timeout
            )));
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if !known || unreachable {
            return Err(TransportError::Unreachable(format!(
                "simulated node {} is unreachable",
                node.endpoint
            )));
        }
        self.with(&node.endpoint, |n| {
            n.calls += 1;
            let accepted =
                |key: &NodeKey| *key == node.key || n.previous_key.as_ref() == Some(&node.key);
            if n.key.as_ref().is_some_and(|key| !accepted(key)) {
                return Err(TransportError::KeyMismatch(
                    "node key mismatch: the simulated node holds another key".to_owned(),
                ));
            }
            f(n)
        })
    }
}

#[async_trait]
impl NodeTransport for SimulatedFleet {
    async fn start(
        &self,
        node: &Node,
        users: &[NodeUser],
    ) -> Result<StartResponse, TransportError> {
        let answer = StartResponse {
            user_config_template: self.template.clone(),
            inbounds: self.inbounds.clone(),
        };
        self.call(node, |n| {
            n.running = true;
            n.users = users.iter().map(|u| u.id).collect();
            Ok(answer)
        })
        .await
    }

    async fn stop(&self, node: &Node) -> Result<(), TransportError> {
        self.call(node, |n| {
            n.running = false;
            n.users.clear();
            Ok(())
        })
        .await
    }

    async fn status(&self, node: &Node) -> Result<NodeReport, TransportError> {
        self.call(node, |n| {
            Ok(NodeReport {
                running: n.running,
                users: n.users.len() as u64,
                core_uptime_secs: 1,
                core_restarts: n.core_restarts,
                journal: Some(JournalReport {
                    journal: n.journal.id.clone(),
                    seq: n.journal.last_seq,
                    batches: n.journal.batches.len() as u64,
                }),
            })
        })
        .await
    }

    async fn edit_users(
        &self,
        node: &Node,
        add: &[NodeUser],
        del: &[UserId],
    ) -> Result<UserPorts, TransportError> {
        self.call(node, |n| {
            if !n.running {
                return Err(TransportError::Node {
                    status: 500,
                    error: "xray service unavailable".to_owned(),
                    message: None,
                });
            }
            n.users.extend(add.iter().map(|u| u.id));
            for id in del {
                n.users.remove(id);
            }
            Ok(UserPorts::new())
        })
        .await
    }

    async fn usage(
        &self,
        node: &Node,
        cursor: &UsageCursor,
        max_batches: u32,
    ) -> Result<UsagePage, TransportError> {
        self.call(node, |n| {
            n.usage_calls += 1;
            Ok(n.journal.pull(cursor, max_batches))
        })
        .await
    }

    async fn rotate_key(
        &self,
        node: &Node,
        new: &NodeKey,
        grace: Duration,
    ) -> Result<(), TransportError> {
        self.call(node, |n| {
            if n.key.as_ref() == Some(new) {
                return Ok(());
            }
            // As on a real agent: only the current key may change the key.
            if n.key.as_ref().is_some_and(|current| *current != node.key) {
                return Err(TransportError::Node {
                    status: 400,
                    error: "bad request".to_owned(),
                    message: None,
                });
            }
            n.key = Some(new.clone());
            n.previous_key = (!grace.is_zero()).then(|| node.key.clone());
            Ok(())
        })
        .await
    }
}
