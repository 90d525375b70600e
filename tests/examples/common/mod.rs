//! What the manager's benchmarks share: a simulated fleet seeded through
//! the manager, and its serving nodes marked as having applied every user
//! change (straight in the storage: no heartbeat runs beside the figures).

use manager_lib::domain::RequiredStatus;
use manager_lib::manager::Manager;
use manager_lib::storage::Storage;
use manager_lib::transport::simulated::SimulatedFleet;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `n` simulated nodes `http://sim-{i}.bench:9000`, registered; the first
/// `serving` of them started.
pub async fn seed_nodes(
    manager: &Manager,
    sim: &SimulatedFleet,
    n: usize,
    serving: usize,
) -> Result<()> {
    for i in 0..n {
        let endpoint = format!("http://sim-{i}.bench:9000");
        sim.add_node(&endpoint);
        let node = manager.new_node(&endpoint).await?;
        if i < serving {
            manager.start_node(node.id).await?;
        }
    }
    Ok(())
}

/// Every node meant to run has applied every user change so far.
pub async fn ack_running_nodes(storage: &dyn Storage) -> Result<()> {
    let last = storage.fleet_state().await?.last_seq;
    for node in manager_lib::storage::all_nodes(storage).await? {
        if node.required_status == RequiredStatus::Running {
            storage.ack_operations(node.id, last).await?;
        }
    }
    Ok(())
}
