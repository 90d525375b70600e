//! The heartbeat's usage pulls, on a simulated fleet: a node whose status
//! shows nothing after the manager's cursor costs no `/usage` call; a node
//! with new batches is pulled in the same beat as before; a node being
//! deleted gives its last batches first.

use std::sync::Arc;

use manager_lib::domain::{NewUser, Node, NodeId, UserId, UserStatus};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::storage::Storage;
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;

const ENDPOINT: &str = "http://idle-node.test:9000";

struct World {
    manager: Manager,
    storage: Arc<dyn Storage>,
    fleet: Arc<SimulatedFleet>,
    node: NodeId,
    user: UserId,
}

impl World {
    async fn new() -> Self {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let fleet = Arc::new(SimulatedFleet::new());
        fleet.add_node(ENDPOINT);
        let manager = Manager::new(storage.clone(), fleet.clone(), ManagerSettings::default());
        let node = manager.new_node(ENDPOINT).await.unwrap().id;
        manager.start_node(node).await.unwrap();
        let user = storage
            .create_user(NewUser::new("u").unwrap())
            .await
            .unwrap()
            .id;
        storage
            .set_user_status(user, UserStatus::Enabled)
            .await
            .unwrap();
        Self {
            manager,
            storage,
            fleet,
            node,
            user,
        }
    }

    async fn node(&self) -> Node {
        self.storage.get_node(self.node).await.unwrap()
    }

    /// One heartbeat; answers the `/usage` calls it made.
    async fn beat(&self) -> u64 {
        let before = self.fleet.usage_calls(ENDPOINT);
        let results = self
            .manager
            .heartbeat_step(vec![self.node().await], |_, _, _| {})
            .await;
        for (id, result) in results {
            result.unwrap_or_else(|e| panic!("node {id}: {e}"));
        }
        self.fleet.usage_calls(ENDPOINT) - before
    }

    async fn used(&self) -> (u64, u64) {
        let user = self.storage.get_user(self.user).await.unwrap();
        (user.used_up, user.used_down)
    }
}

#[tokio::test]
async fn an_idle_node_costs_no_usage_call() {
    let w = World::new().await;
    // No cursor yet: the first beat pulls, to learn the journal's id.
    assert_eq!(w.beat().await, 1);
    for _ in 0..5 {
        assert_eq!(w.beat().await, 0, "nothing after the cursor: no pull");
    }
    assert_eq!(w.used().await, (0, 0));
}

#[tokio::test]
async fn new_batches_are_pulled_in_the_same_beat_and_counted_once() {
    let w = World::new().await;
    w.beat().await;
    w.fleet.record_usage(ENDPOINT, &[(w.user, 10, 20)]);
    assert_eq!(w.beat().await, 1);
    assert_eq!(w.used().await, (10, 20), "stored in the beat that saw them");
    // Delivered but not confirmed: one more pull confirms it, then none.
    assert_eq!(w.beat().await, 1);
    assert_eq!(
        w.fleet.usage_batches(ENDPOINT),
        0,
        "confirmed and forgotten"
    );
    assert_eq!(w.beat().await, 0);
    w.fleet.record_usage(ENDPOINT, &[(w.user, 1, 2)]);
    assert_eq!(w.beat().await, 1);
    assert_eq!(w.used().await, (11, 22), "each batch exactly once");
    assert_eq!(w.node().await.usage_cursor.seq, 2);
}

#[tokio::test]
async fn a_journal_behind_the_cursor_is_pulled_and_numbers_go_on_after_it() {
    let w = World::new().await;
    w.beat().await;
    w.fleet.record_usage(ENDPOINT, &[(w.user, 1, 1)]);
    w.fleet.record_usage(ENDPOINT, &[(w.user, 2, 2)]);
    w.beat().await;
    w.beat().await;
    assert_eq!(w.node().await.usage_cursor.seq, 2);
    // The node's journal comes back from a backup taken at seq 1: its
    // status shows it behind the cursor, so the beat still pulls.
    w.fleet.restore_usage_journal(ENDPOINT, 1);
    assert_eq!(w.beat().await, 1, "behind the cursor: pulled");
    w.fleet.record_usage(ENDPOINT, &[(w.user, 5, 7)]);
    w.beat().await;
    assert_eq!(w.used().await, (8, 10), "the new batch counted, once");
}

#[tokio::test]
async fn a_deleted_node_gives_its_last_usage_first() {
    let w = World::new().await;
    w.beat().await;
    w.fleet.record_usage(ENDPOINT, &[(w.user, 3, 4)]);
    w.beat().await;
    // Read by the agent after the last beat: no beat will reach it again.
    w.fleet.record_usage(ENDPOINT, &[(w.user, 30, 40)]);
    w.manager.delete_node(w.node).await.unwrap();
    assert_eq!(w.used().await, (33, 44), "nothing the node read is lost");
}
