//! The manager's real node transport (`HttpTransport`) against fake nodes on
//! 127.0.0.1 (issue 14): it never follows a node's redirect (finding 7), and
//! a node holding another key is reported as a key mismatch, in the API's
//! answer and in the error the heartbeat logs (finding 11).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::any;
use common::*;
use manager_lib::manager::Manager;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::http::HttpTransport;
use serde_json::{Value, json};

const TOKEN: &str = "node-channel-test-admin-token-0123456789abcdef";

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn manager() -> (Arc<Manager>, Router) {
    let backends = Backends::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(HttpTransport::new(Duration::from_secs(10))),
    );
    let settings = ServerSettings {
        push_on_change: false,
        ..ServerSettings::new(TOKEN)
    };
    let server = Server::build(backends, settings);
    (server.manager, server.router)
}

async fn start_node(api: &Router, endpoint: &str) -> (String, StatusCode, Value) {
    let (status, body) = admin(
        api,
        TOKEN,
        "POST",
        "/node/new",
        json!({"endpoint": endpoint}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["nodeID"].as_str().unwrap().to_owned();
    let (status, body) = admin(api, TOKEN, "POST", "/node/start", json!({"nodeID": id})).await;
    (id, status, body)
}

#[tokio::test]
async fn a_nodes_redirect_is_not_followed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let elsewhere = serve(Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { StatusCode::OK }
    })))
    .await;
    let node = serve(Router::new().fallback(any(move |uri: axum::http::Uri| {
        let location = format!("{elsewhere}{}", uri.path());
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
        }
    })))
    .await;
    let (manager, api) = manager();
    let (id, status, body) = start_node(&api, &node).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let node = manager
        .storage()
        .get_node(id.parse().unwrap())
        .await
        .unwrap();
    assert!(manager.reconcile_node(&node).await.is_err());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a sealed call went elsewhere"
    );
}

#[tokio::test]
async fn a_node_with_another_key_is_reported_as_a_key_mismatch() {
    // What an agent answers to a call sealed under another key.
    let node = serve(Router::new().fallback(any(|| async {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "unauthorized"})),
        )
    })))
    .await;
    let (manager, api) = manager();
    let (id, status, body) = start_node(&api, &node).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body,
        json!({"error": "bad node answer", "message": "node key mismatch"})
    );
    // The heartbeat's error (what it logs) says so too, and the node shows
    // as Error.
    let node = manager
        .storage()
        .get_node(id.parse().unwrap())
        .await
        .unwrap();
    let error = manager.reconcile_node(&node).await.unwrap_err();
    assert!(error.to_string().contains("node key mismatch"), "{error}");
    let (_, nodes) = admin(&api, TOKEN, "GET", "/nodes", Value::Null).await;
    assert_eq!(nodes["nodes"][0]["actualStatus"], "Error");
}
