//! `500 database unavailable` while PostgreSQL cannot be reached, provoked for
//! real (the path to the database is cut), and recovery without a restart
//! once it is back.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::Value;
use storage_postgres::PgStorage;
use storage_postgres::testing::TestDatabase;
use tests::{TcpProxy, wait_for};
use tower::ServiceExt as _;

async fn call(app: &axum::Router, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", "Bearer t")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_database_unavailable_and_recovers() {
    let db = TestDatabase::new().await;
    db.storage().await; // create the schema
    let mut url: reqwest::Url = db.url().parse().unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(target).await.unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    let storage = PgStorage::connect(url.as_str()).await.unwrap();
    let backends = Backends::new(Arc::new(storage), Arc::new(SimulatedFleet::new()));
    let app = Server::build(backends, ServerSettings::new("t")).router;

    let (status, body) = call(&app, "POST", "/user/new", r#"{"userName":"before"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    proxy.cut().await;
    for (method, path, body) in [
        ("POST", "/user/new", r#"{"userName":"during"}"#),
        ("GET", "/users", ""),
        ("GET", "/nodes", ""),
        ("POST", "/node/new", r#"{"endpoint":"http://10.0.0.1:1"}"#),
    ] {
        let (status, resp) = call(&app, method, path, body).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {path}: {resp}"
        );
        assert_eq!(resp["error"], "database unavailable");
    }

    proxy.restore().await.unwrap();
    let users = wait_for(
        "the manager to reach the database again",
        Duration::from_secs(30),
        || async {
            let (status, body) = call(&app, "GET", "/users", "").await;
            (status == StatusCode::OK).then_some(body)
        },
    )
    .await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["before"],
        "nothing half-written during the outage"
    );
}
