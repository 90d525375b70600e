//! Run with: cargo run -p examples --example embedded
//!
//! A service of its own that embeds the manager: its own axum router with
//! its own routes, the manager's API mounted under `/xray`, and the manager's
//! heartbeat on the same tokio runtime. In-memory storage and a simulated
//! fleet of three nodes, so it runs anywhere; swap in `storage_sqlite`,
//! `storage_postgres` and `HttpTransport` for a real fleet.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use manager_lib::api::{self, ApiState};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::reconcile::{Reconciler, ReconcilerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fleet = Arc::new(SimulatedFleet::new());
    let manager = Arc::new(Manager::new(
        Arc::new(MemoryStorage::new()),
        fleet.clone(),
        ManagerSettings::default(),
    ));

    // Call the scenarios directly from Rust...
    for i in 1..=3 {
        let endpoint = format!("http://node-{i}.example:9000");
        fleet.add_node(&endpoint);
        let node = manager.new_node(&endpoint).await?;
        manager.start_node(node.id).await?;
    }
    let alice = manager.new_user("alice").await?;
    manager.enable_user(alice.id).await?;

    // ...and run the heartbeat beside your own work.
    let reconciler = Arc::new(Reconciler::new(
        manager.clone(),
        ReconcilerSettings {
            interval: Duration::from_millis(200),
            ..ReconcilerSettings::default()
        },
    ));
    reconciler.heartbeat().await;
    let links = manager
        .user_node_list(&format!("{}-{}", alice.id, alice.name))
        .await?;
    println!("alice can use {} nodes:", links.len());
    for link in &links {
        println!("  {link}");
    }

    // The manager's HTTP API inside this service's own router.
    let app = Router::new()
        .route("/", get(|| async { "my service, with a manager inside" }))
        .nest(
            "/xray",
            api::router(ApiState::new(manager.clone(), "example-token")),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "serving on http://{}/ (manager under /xray)",
        listener.local_addr()?
    );

    // Stop after a few seconds so the example ends by itself.
    let shutdown = async { tokio::time::sleep(Duration::from_secs(3)).await };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let heartbeat = tokio::spawn(reconciler.run(async {
        let _ = stop_rx.await;
    }));
    // The manager's hardened listener (header and idle timeouts, a
    // connection cap) serves the host's routes too.
    api::serve(listener, app, shutdown).await?;
    let _ = stop_tx.send(());
    heartbeat.await?;
    Ok(())
}
