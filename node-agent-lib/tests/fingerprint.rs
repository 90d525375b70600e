//! What an unauthenticated peer learns from the node API's port: nothing.
//! Whatever it asks (unknown paths, wrong methods, the documentation's old
//! paths), the answer is byte for byte the one a refused envelope gets, and
//! neither the service nor the core is touched.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::untouchable;
use tower::ServiceExt as _;

/// Status, every header and the body, as sent.
async fn answer(router: &axum::Router, method: &str, path: &str) -> (u16, Vec<String>, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
        .collect();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

#[tokio::test]
async fn every_unauthenticated_request_gets_the_answer_of_an_unauthenticated_status() {
    let node = untouchable();
    let reference = answer(&node.router, "GET", "/status").await;
    assert_eq!(reference.0, 401);
    assert_eq!(reference.2, br#"{"error":"unauthorized"}"#);
    let probes = [
        ("GET", "/"),
        ("GET", "/docs"),
        ("GET", "/docs/"),
        ("GET", "/docs/swagger-ui.css"),
        ("GET", "/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/nope"),
        ("GET", "/status/"),
        ("POST", "/status"),
        ("PUT", "/status"),
        ("DELETE", "/status"),
        ("OPTIONS", "/status"),
        ("PATCH", "/start"),
        ("GET", "/start"),
        ("GET", "/stop"),
        ("GET", "/users/edit"),
        ("POST", "/start"),
        ("POST", "/stop"),
        ("POST", "/users/edit"),
        ("POST", "/nope"),
        ("GET", "/%2e%2e/etc/passwd"),
        ("GET", "/start?x=1"),
    ];
    for (method, path) in probes {
        let probe = answer(&node.router, method, path).await;
        assert_eq!(probe, reference, "{method} {path}");
    }
}
