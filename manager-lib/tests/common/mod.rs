//! Requests through the manager's real router (`oneshot`), shared by the
//! HTTP test files.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Sends `method path` with a JSON `body` and, if given, the bearer `token`;
/// answers the status and the body's bytes.
pub async fn send(
    router: &Router,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// An admin call with `token`: `body` goes with POST only; the answer as
/// JSON (`Null` when empty or not JSON).
pub async fn admin(
    router: &Router,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let body = if method == "POST" {
        body.to_string()
    } else {
        String::new()
    };
    let (status, bytes) = send(router, method, path, &body, Some(token)).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates a user through the API; its id.
pub async fn new_user(router: &Router, token: &str, name: &str) -> String {
    let (status, body) = admin(
        router,
        token,
        "POST",
        "/user/new",
        json!({"userName": name}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["user"]["id"].as_str().unwrap().to_owned()
}

/// Registers a simulated node at `endpoint` and starts it through the API;
/// its id.
pub async fn running_node(
    router: &Router,
    token: &str,
    fleet: &SimulatedFleet,
    endpoint: &str,
) -> String {
    fleet.add_node(endpoint);
    let (_, body) = admin(
        router,
        token,
        "POST",
        "/node/new",
        json!({"endpoint": endpoint}),
    )
    .await;
    let id = body["nodeID"].as_str().unwrap().to_owned();
    let (status, _) = admin(router, token, "POST", "/node/start", json!({"nodeID": id})).await;
    assert_eq!(status, StatusCode::OK);
    id
}
