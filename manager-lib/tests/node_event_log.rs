//! The heartbeat writes what it finds to each node's event log: a failure
//! once per error text while the node stays in error, its recovery, a
//! re-sync of a core that lost its users.

use std::sync::Arc;

use manager_lib::domain::{NewUser, NodeEventKind, NodeId, UserStatus};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::storage::{NodeEventLog, Storage};
use manager_lib::transport::simulated::SimulatedFleet;

const ENDPOINT: &str = "http://events.example:9000";

async fn running() -> (Arc<MemoryStorage>, Arc<SimulatedFleet>, Manager, NodeId) {
    let storage = Arc::new(MemoryStorage::new());
    let fleet = Arc::new(SimulatedFleet::new());
    fleet.add_node(ENDPOINT);
    let manager = Manager::new(storage.clone(), fleet.clone(), ManagerSettings::default());
    let user = storage
        .create_user(NewUser::new("alice").unwrap())
        .await
        .unwrap();
    storage
        .set_user_status(user.id, UserStatus::Enabled)
        .await
        .unwrap();
    let node = manager.new_node(ENDPOINT).await.unwrap().id;
    manager.start_node(node).await.unwrap();
    (storage, fleet, manager, node)
}

async fn kinds(storage: &MemoryStorage, node: NodeId) -> Vec<NodeEventKind> {
    let events = storage.node_events(node, 50).await.unwrap();
    events.iter().rev().map(|e| e.kind).collect()
}

async fn check(manager: &Manager, storage: &MemoryStorage, node: NodeId) -> bool {
    let node = storage.get_node(node).await.unwrap();
    manager.check_node(&node).await.is_ok()
}

#[tokio::test]
async fn an_unreachable_node_is_logged_once_while_down_and_its_recovery_too() {
    let (storage, fleet, manager, node) = running().await;
    assert!(check(&manager, &storage, node).await);
    assert_eq!(
        kinds(&storage, node).await,
        vec![],
        "in sync: nothing to log"
    );
    fleet.set_unreachable(ENDPOINT, true);
    for _ in 0..3 {
        assert!(!check(&manager, &storage, node).await);
    }
    assert_eq!(kinds(&storage, node).await, vec![NodeEventKind::Failed]);
    let failure = &storage.node_events(node, 1).await.unwrap()[0];
    assert!(failure.detail.contains("unreachable"), "{failure:?}");
    fleet.set_unreachable(ENDPOINT, false);
    assert!(check(&manager, &storage, node).await);
    assert_eq!(
        kinds(&storage, node).await,
        vec![NodeEventKind::Failed, NodeEventKind::Recovered]
    );
}

#[tokio::test]
async fn a_core_that_lost_its_users_is_logged_as_resynced_with_the_counts() {
    let (storage, fleet, manager, node) = running().await;
    fleet.crash_core(ENDPOINT);
    assert!(check(&manager, &storage, node).await);
    assert_eq!(fleet.users(ENDPOINT).len(), 1, "sent again");
    assert_eq!(kinds(&storage, node).await, vec![NodeEventKind::Resynced]);
    let event = &storage.node_events(node, 1).await.unwrap()[0];
    assert!(
        event.detail.contains("had 0 users, 1 expected"),
        "{event:?}"
    );
}
