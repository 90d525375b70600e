//! Two manager replicas on one PostgreSQL with three nodes: each node is
//! reconciled by exactly one replica at a time, and when one replica dies
//! (its heartbeat task is killed without releasing anything) the other takes
//! its nodes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use manager_lib::domain::usage::{UsageCursor, UsagePage};
use manager_lib::domain::{Node, NodeId, NodeUser, UserId};
use manager_lib::manager::Manager;
use manager_lib::reconcile::{Reconciler, ReconcilerSettings};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::Storage;
use manager_lib::transport::simulated::SimulatedFleet;
use manager_lib::transport::{NodeReport, NodeTransport, TransportError};
use storage_postgres::testing::TestDatabase;
use tests::wait_for;

/// Which replica called which node, and when.
#[derive(Debug, Default)]
struct CallLog(Mutex<Vec<(NodeId, &'static str, Instant)>>);

impl CallLog {
    fn callers_since(&self, node: NodeId, since: Instant) -> HashSet<&'static str> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, at)| *n == node && *at >= since)
            .map(|(_, who, _)| *who)
            .collect()
    }
}

/// A replica's view of the shared simulated fleet, logging its calls.
#[derive(Debug)]
struct Tagged {
    name: &'static str,
    fleet: Arc<SimulatedFleet>,
    log: Arc<CallLog>,
}

impl Tagged {
    fn note(&self, node: &Node) {
        self.log
            .0
            .lock()
            .unwrap()
            .push((node.id, self.name, Instant::now()));
    }
}

#[async_trait]
impl NodeTransport for Tagged {
    async fn start(
        &self,
        node: &Node,
        users: &[NodeUser],
    ) -> Result<manager_lib::transport::StartResponse, TransportError> {
        self.note(node);
        self.fleet.start(node, users).await
    }
    async fn stop(&self, node: &Node) -> Result<(), TransportError> {
        self.note(node);
        self.fleet.stop(node).await
    }
    async fn status(&self, node: &Node) -> Result<NodeReport, TransportError> {
        self.note(node);
        self.fleet.status(node).await
    }
    async fn edit_users(
        &self,
        node: &Node,
        add: &[NodeUser],
        del: &[UserId],
    ) -> Result<manager_lib::transport::UserPorts, TransportError> {
        self.note(node);
        self.fleet.edit_users(node, add, del).await
    }
    async fn usage(
        &self,
        node: &Node,
        cursor: &UsageCursor,
        max_batches: u32,
    ) -> Result<UsagePage, TransportError> {
        self.note(node);
        self.fleet.usage(node, cursor, max_batches).await
    }

    async fn rotate_key(
        &self,
        node: &Node,
        new: &manager_lib::domain::NodeKey,
        grace: std::time::Duration,
    ) -> Result<(), TransportError> {
        self.note(node);
        self.fleet.rotate_key(node, new, grace).await
    }
}

fn replica(
    name: &'static str,
    storage: Arc<dyn Storage>,
    fleet: &Arc<SimulatedFleet>,
    log: &Arc<CallLog>,
    interval: Duration,
) -> (Arc<Manager>, Arc<Reconciler>) {
    let transport = Arc::new(Tagged {
        name,
        fleet: fleet.clone(),
        log: log.clone(),
    });
    let settings = ServerSettings {
        reconciler: ReconcilerSettings {
            interval,
            owner: name.to_owned(),
            ..ReconcilerSettings::default()
        },
        ..ServerSettings::new("t")
    };
    let server = Server::build(Backends::new(storage, transport), settings);
    (server.manager, server.reconciler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_has_one_reconciler_and_a_dead_replica_hands_its_nodes_over() {
    let db = TestDatabase::new().await;
    let interval = Duration::from_millis(500);
    let fleet = Arc::new(SimulatedFleet::new());
    let log = Arc::new(CallLog::default());
    let (a, a_beat) = replica("a", Arc::new(db.storage().await), &fleet, &log, interval);
    let (_b, b_beat) = replica("b", Arc::new(db.storage().await), &fleet, &log, interval);

    let mut nodes = Vec::new();
    for i in 1..=3 {
        let endpoint = format!("http://node-{i}:9000");
        fleet.add_node(&endpoint);
        let node = a.new_node(&endpoint).await.unwrap();
        a.storage()
            .set_required_status(node.id, manager_lib::domain::RequiredStatus::Running)
            .await
            .unwrap();
        nodes.push(node);
    }
    let user = a.new_user("alice").await.unwrap();
    a.enable_user(user.id).await.unwrap();

    let (a_stop, a_stopped) = tokio::sync::oneshot::channel::<()>();
    let a_task = tokio::spawn(a_beat.run(async {
        let _ = a_stopped.await;
    }));
    let (b_stop, b_stopped) = tokio::sync::oneshot::channel::<()>();
    let b_task = tokio::spawn(b_beat.run(async {
        let _ = b_stopped.await;
    }));

    // Every node starts, with the user, whoever holds it.
    wait_for(
        "all nodes running with alice",
        Duration::from_secs(20),
        || async {
            nodes
                .iter()
                .all(|n| fleet.users(&n.endpoint).contains(&user.id))
                .then_some(())
        },
    )
    .await;

    // Over several heartbeats, each node hears from one replica only.
    let since = Instant::now();
    let watch = interval * 6;
    tokio::time::sleep(watch).await;
    let mut owners: HashMap<NodeId, &'static str> = HashMap::new();
    for n in &nodes {
        let callers = log.callers_since(n.id, since);
        assert_eq!(
            callers.len(),
            1,
            "node {} called by {callers:?}",
            n.endpoint
        );
        owners.insert(n.id, callers.into_iter().next().unwrap());
    }

    // Kill the replica that holds nodes (without a clean release).
    let victim = *owners.values().next().unwrap();
    let (dead_task, survivor) = if victim == "a" {
        drop(a_stop);
        a_task.abort();
        (a_task, "b")
    } else {
        drop(b_stop);
        b_task.abort();
        (b_task, "a")
    };
    let _ = dead_task.await;
    let killed_at = Instant::now();
    for n in nodes.iter().filter(|n| owners[&n.id] == victim) {
        wait_for(
            "the survivor to take the node",
            Duration::from_secs(10),
            || async {
                log.callers_since(n.id, killed_at)
                    .contains(survivor)
                    .then_some(())
            },
        )
        .await;
    }
    let took = killed_at.elapsed();
    assert!(
        took < interval * 4,
        "takeover took {took:?}, more than a few heartbeats of {interval:?}"
    );
    // The survivor keeps the fleet converged: a new user lands everywhere.
    let survivor_manager = if survivor == "a" {
        a.clone()
    } else {
        _b.clone()
    };
    let bob = survivor_manager.new_user("bob").await.unwrap();
    survivor_manager.enable_user(bob.id).await.unwrap();
    wait_for("bob on every node", Duration::from_secs(10), || async {
        nodes
            .iter()
            .all(|n| fleet.users(&n.endpoint).contains(&bob.id))
            .then_some(())
    })
    .await;
}
