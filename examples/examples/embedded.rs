//! Run with: cargo run -p examples --example embedded
//!
//! A service of its own that embeds the manager: its own axum router with
//! its own routes, the manager's API mounted under `/xray`, and the manager's
//! heartbeat on the same tokio runtime, all wired by the manager's
//! composition root (`manager_lib::server`). In-memory storage and a
//! simulated fleet of three nodes, so it runs anywhere; swap in
//! `storage_sqlite`, `storage_postgres` and `HttpTransport` for a real fleet.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use manager_lib::reconcile::ReconcilerSettings;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fleet = Arc::new(SimulatedFleet::new());
    let settings = ServerSettings {
        reconciler: ReconcilerSettings {
            interval: Duration::from_millis(200),
            ..ReconcilerSettings::default()
        },
        ..ServerSettings::new("example-token")
    };
    let mut server = Server::build(
        Backends::new(Arc::new(MemoryStorage::new()), fleet.clone()),
        settings,
    );
    let manager = server.manager.clone();

    // Call the scenarios directly from Rust...
    for i in 1..=3 {
        let endpoint = format!("http://node-{i}.example:9000");
        fleet.add_node(&endpoint);
        let node = manager.new_node(&endpoint).await?;
        manager.start_node(node.id).await?;
    }
    let alice = manager.new_user("alice").await?;
    manager.enable_user(alice.id).await?;

    // ...the manager pushes the enable to the nodes by itself: alice is on
    // every node's list as soon as each node has her.
    let id_name = format!("{}-{}", alice.id, alice.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let links = loop {
        let links = manager.user_node_list(&id_name).await?;
        if links.len() == 3 || tokio::time::Instant::now() > deadline {
            break links;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("alice can use {} nodes:", links.len());
    for link in &links {
        println!("  {link}");
    }

    // The manager's HTTP API inside this service's own router.
    server.router = Router::new()
        .route("/", get(|| async { "my service, with a manager inside" }))
        .nest("/xray", server.router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "serving on http://{}/ (manager under /xray)",
        listener.local_addr()?
    );

    // Stop after a few seconds so the example ends by itself. The manager's
    // hardened listener (header and idle timeouts, a connection cap) serves
    // the host's routes too, and the heartbeat runs until the shutdown.
    let shutdown = async { tokio::time::sleep(Duration::from_secs(3)).await };
    server.serve(listener, shutdown).await?;
    Ok(())
}
