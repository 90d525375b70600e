//! The webhook outbox outlives the manager: events one manager enqueued in
//! its SQLite file while the receiver was down are delivered, each once,
//! by the next manager opened on the same file.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use manager_lib::domain::{NewToken, Role};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::settings::Secret;
use manager_lib::storage::WebhookStore as _;
use manager_lib::transport::simulated::SimulatedFleet;
use manager_lib::webhook::signature::EVENT_ID_HEADER;
use manager_lib::webhook::{Deliverer, DeliverySettings, Endpoint, Routes};
use storage_sqlite::SqliteStorage;
use tokio_util::sync::CancellationToken;

type Seen = Arc<Mutex<BTreeMap<String, u32>>>;

async fn count(State(seen): State<Seen>, headers: HeaderMap) -> StatusCode {
    let id = headers
        .get(EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    *seen.lock().unwrap().entry(id).or_default() += 1;
    StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_enqueued_before_a_restart_are_delivered_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::url_in(&dir);
    // The receiver's address is known before it listens: down at first.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoint = Endpoint {
        name: "crm".into(),
        url: format!("http://{addr}/hook").parse().unwrap(),
        secret: Secret::new("restart-test-secret-0123456789"),
        events: Default::default(),
    };
    let settings = ManagerSettings {
        webhooks: Routes::of(std::slice::from_ref(&endpoint)),
        ..ManagerSettings::default()
    };

    // The first manager: events made, the receiver refusing connections.
    drop(listener);
    {
        let storage = Arc::new(SqliteStorage::connect(&url).await.unwrap());
        let m = Manager::new(
            storage.clone(),
            Arc::new(SimulatedFleet::new()),
            settings.clone(),
        );
        for n in 0..3 {
            m.create_token(NewToken::new(&format!("t{n}"), Role::Users, None).unwrap())
                .await
                .unwrap();
        }
        let deliverer = Arc::new(Deliverer::new(
            storage.clone(),
            vec![endpoint.clone()],
            DeliverySettings {
                owner: "first".into(),
                retry_initial: Duration::from_millis(20),
                retry_max: Duration::from_millis(50),
                poll: Duration::from_millis(10),
                ..DeliverySettings::default()
            },
        ));
        // A few failed passes (connection refused), then the process "ends".
        for _ in 0..3 {
            let outcome = deliverer.pass().await.unwrap();
            assert_eq!(outcome.delivered, 0);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_eq!(storage.undelivered_count().await.unwrap(), 3);
        storage.close().await;
    }

    // The receiver comes up on the same address; a new manager opens the file.
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/hook", post(count))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let storage = Arc::new(SqliteStorage::connect(&url).await.unwrap());
    let stop = CancellationToken::new();
    let deliverer = Arc::new(Deliverer::new(
        storage.clone(),
        vec![endpoint],
        DeliverySettings {
            owner: "second".into(),
            poll: Duration::from_millis(10),
            ..DeliverySettings::default()
        },
    ));
    tokio::spawn(deliverer.run(stop.clone()));
    let started = Instant::now();
    while storage.undelivered_count().await.unwrap() > 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "not delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "each once: {seen:?}");
}
