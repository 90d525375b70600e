//! Traffic accounting against faults, on a simulated fleet (its journals
//! keep the agent's contract) and real databases: every byte journaled on a
//! node is counted exactly once, whatever fails in between. The real
//! agent's own faults (SIGKILL, core restarts) are in node-agent-lib's and
//! the whole-system tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use manager_lib::domain::{NewUser, Node, UserId, UserStatus};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::storage::Storage;
use manager_lib::transport::simulated::SimulatedFleet;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storage_postgres::PgStorage;
use storage_postgres::testing::TestDatabase;
use tests::{TcpProxy, wait_for};

const ENDPOINT: &str = "http://usage-node.test:9000";

/// What was journaled per user, summed: the truth the totals must equal.
#[derive(Default)]
struct Journaled(HashMap<UserId, (u64, u64)>);

impl Journaled {
    fn record(&mut self, fleet: &SimulatedFleet, endpoint: &str, deltas: &[(UserId, u64, u64)]) {
        fleet.record_usage(endpoint, deltas);
        for (id, up, down) in deltas {
            let e = self.0.entry(*id).or_default();
            e.0 += up;
            e.1 += down;
        }
    }

    async fn assert_stored(&self, storage: &dyn Storage) {
        for (id, (up, down)) in &self.0 {
            let user = storage.get_user(*id).await.unwrap();
            assert_eq!((user.used_up, user.used_down), (*up, *down), "user {id}");
        }
    }
}

async fn setup(
    storage: Arc<dyn Storage>,
    fleet: &Arc<SimulatedFleet>,
    users: usize,
) -> (Manager, Vec<UserId>) {
    fleet.add_node(ENDPOINT);
    let manager = Manager::new(storage.clone(), fleet.clone(), ManagerSettings::default());
    let node = manager.new_node(ENDPOINT).await.unwrap();
    manager.start_node(node.id).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..users {
        let user = storage
            .create_user(NewUser::new(format!("u{i}")).unwrap())
            .await
            .unwrap();
        storage
            .set_user_status(user.id, UserStatus::Enabled)
            .await
            .unwrap();
        ids.push(user.id);
    }
    (manager, ids)
}

async fn the_node(storage: &dyn Storage) -> Node {
    storage
        .find_node_by_endpoint(ENDPOINT)
        .await
        .unwrap()
        .expect("the node")
}

/// Pulls until the node's journal has nothing new (a bounded number of times).
async fn drain(manager: &Manager, storage: &dyn Storage) {
    for _ in 0..100 {
        let pulled = manager.pull_usage(&the_node(storage).await).await.unwrap();
        if pulled.user_deltas == 0 {
            return;
        }
    }
    panic!("the journal never drained");
}

fn deltas(rng: &mut StdRng, ids: &[UserId]) -> Vec<(UserId, u64, u64)> {
    let mut out = Vec::new();
    for id in ids {
        if rng.random_bool(0.7) {
            out.push((
                *id,
                rng.random_range(1..10_000),
                rng.random_range(1..1_000_000),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_between_storing_and_confirming_counts_once() {
    let storage: Arc<dyn Storage> = Arc::new(manager_lib::storage::memory::MemoryStorage::new());
    let fleet = Arc::new(SimulatedFleet::new());
    let (first, ids) = setup(storage.clone(), &fleet, 5).await;
    let mut rng = StdRng::seed_from_u64(16);
    let mut truth = Journaled::default();
    let stale = the_node(storage.as_ref()).await;
    truth.record(&fleet, ENDPOINT, &deltas(&mut rng, &ids));
    first
        .pull_usage(&the_node(storage.as_ref()).await)
        .await
        .unwrap();
    // Killed here: stored, but the node never heard of it (no later pull).
    drop(first);
    let second = Manager::new(storage.clone(), fleet.clone(), ManagerSettings::default());
    // A pull with the cursor from before the store (a replica's stale view)
    // writes nothing; one with the stored cursor gets nothing new.
    let pulled = second.pull_usage(&stale).await.unwrap();
    assert_eq!(pulled.user_deltas, 0, "a stale cursor stores nothing");
    drain(&second, storage.as_ref()).await;
    truth.assert_stored(storage.as_ref()).await;
    // And what comes later is counted once too.
    truth.record(&fleet, ENDPOINT, &deltas(&mut rng, &ids));
    drain(&second, storage.as_ref()).await;
    truth.assert_stored(storage.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_for_one_node_count_each_batch_once() {
    let db = TestDatabase::new().await;
    let storage: Arc<dyn Storage> = Arc::new(db.storage().await);
    let fleet = Arc::new(SimulatedFleet::new());
    let (a, ids) = setup(storage.clone(), &fleet, 20).await;
    let b = Manager::new(storage.clone(), fleet.clone(), ManagerSettings::default());
    let mut rng = StdRng::seed_from_u64(17);
    let mut truth = Journaled::default();
    for _ in 0..30 {
        truth.record(&fleet, ENDPOINT, &deltas(&mut rng, &ids));
        let node = the_node(storage.as_ref()).await;
        let (ra, rb) = tokio::join!(a.pull_usage(&node), b.pull_usage(&node));
        ra.unwrap();
        rb.unwrap();
    }
    drain(&a, storage.as_ref()).await;
    truth.assert_stored(storage.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_cut_during_ingest_loses_nothing() {
    let db = TestDatabase::new().await;
    db.storage().await; // the schema
    let mut url: reqwest::Url = db.url().parse().unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(target).await.unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(url.as_str()).await.unwrap());
    let fleet = Arc::new(SimulatedFleet::new());
    let (manager, ids) = setup(storage.clone(), &fleet, 50).await;
    let mut rng = StdRng::seed_from_u64(18);
    let mut truth = Journaled::default();
    truth.record(&fleet, ENDPOINT, &deltas(&mut rng, &ids));
    let node = the_node(storage.as_ref()).await;
    drain(&manager, storage.as_ref()).await;

    // Cut while pages wait: every pull fails, the journal keeps growing.
    proxy.cut().await;
    for _ in 0..5 {
        truth.record(&fleet, ENDPOINT, &deltas(&mut rng, &ids));
        assert!(
            manager.pull_usage(&node).await.is_err(),
            "no database, no ingest"
        );
    }
    proxy.restore().await.unwrap();
    wait_for("the database again", Duration::from_secs(30), || async {
        storage.fleet_state().await.ok()
    })
    .await;
    drain(&manager, storage.as_ref()).await;
    truth.assert_stored(storage.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_away_for_many_intervals_gets_exact_sums() {
    let storage: Arc<dyn Storage> = Arc::new(manager_lib::storage::memory::MemoryStorage::new());
    let fleet = Arc::new(SimulatedFleet::new());
    let (manager, ids) = setup(storage.clone(), &fleet, 10).await;
    let mut rng = StdRng::seed_from_u64(19);
    let mut truth = Journaled::default();
    // Far more intervals than a journal keeps apart: old ones merge.
    for _ in 0..3_000 {
        truth.record(&fleet, ENDPOINT, &deltas(&mut rng, &ids));
    }
    drain(&manager, storage.as_ref()).await;
    truth.assert_stored(storage.as_ref()).await;
}
