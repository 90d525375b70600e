//! The custom backend runs the same conformance suite as the real ones.

use std::sync::Arc;

use examples::CountingStorage;
use manager_lib::storage::Storage;
use manager_lib::storage::memory::MemoryStorage;

fn fresh() -> Arc<dyn Storage> {
    Arc::new(CountingStorage::new(Arc::new(MemoryStorage::new())))
}

manager_lib::storage_conformance_tests!(fresh());

#[tokio::test]
async fn calls_are_counted() {
    let storage = CountingStorage::new(Arc::new(MemoryStorage::new()));
    let user = storage
        .create_user(manager_lib::domain::NewUser::new("alice").unwrap())
        .await
        .unwrap();
    storage.get_user(user.id).await.unwrap();
    assert_eq!(storage.counts(), (1, 1));
}

/// A decorator must forward the optimised calls too: a fleet-wide ack is one
/// call to the backend, not one per node (the trait's default), and the
/// serving-node read is one read, not a walk over every node's page.
#[tokio::test]
async fn the_optimised_calls_reach_the_backend_once() {
    let storage = CountingStorage::new(Arc::new(MemoryStorage::new()));
    let mut acks = Vec::new();
    for i in 0..3 {
        let node = storage
            .create_node(
                manager_lib::domain::NewNode::new(format!("http://10.0.0.{i}:80")).unwrap(),
            )
            .await
            .unwrap();
        acks.push((node.id, manager_lib::domain::Seq::default()));
    }
    let before = storage.counts();
    storage.ack_operations_many(&acks).await.unwrap();
    storage.serving_nodes().await.unwrap();
    let after = storage.counts();
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
}
