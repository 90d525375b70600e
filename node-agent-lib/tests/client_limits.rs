//! What the manager's side of the node channel (`NodeClient`) does with a
//! node, or whoever answers in its place, that misbehaves (issue 14):
//! a huge answer is cut before it is authenticated (finding 4), a redirect
//! is never followed (finding 7), and a wrong key is named as such
//! (finding 11).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use node_agent_lib::NodeClient;
use node_agent_lib::client::ClientError;
use node_agent_lib::envelope::{self, NodeKey};

/// Serves `app` on 127.0.0.1, port 0; its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn client(url: &str, key: &NodeKey) -> NodeClient {
    NodeClient::new(url, key.clone(), Duration::from_secs(60)).unwrap()
}

/// Fails the test if `call` takes longer than a generous deadline: the
/// point is that it does not wait for the whole answer or the timeout.
async fn promptly<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call waited for the whole answer")
}

/// Serves `app` as a node and asks its status: the client must refuse the
/// answer as too large, promptly.
async fn assert_answer_too_large(app: Router) {
    let url = serve(app).await;
    let error = promptly(client(&url, &NodeKey::random()).status())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Protocol(m) if m.contains("answer too large")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_huge_answer_is_cut_at_the_cap_without_being_read_whole() {
    const TOTAL: u64 = 256 * 1024 * 1024;
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let app = Router::new().route(
        "/status",
        get(move || {
            let counter = counter.clone();
            async move {
                let chunk = Bytes::from(vec![b'A'; 1024 * 1024]);
                let chunks = futures::stream::iter(0..TOTAL / (1024 * 1024)).map(move |_| {
                    counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(chunk.clone())
                });
                Response::new(Body::from_stream(chunks))
            }
        }),
    );
    assert_answer_too_large(app).await;
    assert!(
        produced.load(Ordering::SeqCst) < TOTAL / 4,
        "the client read {} bytes of the answer",
        produced.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn an_answer_announcing_600_mb_is_refused_at_once() {
    let app = Router::new().route(
        "/status",
        get(|| async {
            // Announces 600 MB, sends a little, then nothing more.
            let body = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"eyJ"))
            })
            .chain(futures::stream::pending());
            (
                [(header::CONTENT_LENGTH, "600000000")],
                Body::from_stream(body),
            )
                .into_response()
        }),
    );
    assert_answer_too_large(app).await;
}

#[tokio::test]
async fn a_redirect_from_a_node_is_not_followed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let elsewhere = serve(Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { StatusCode::OK }
    })))
    .await;
    let target = elsewhere.clone();
    let node = serve(Router::new().fallback(any(move |uri: axum::http::Uri| {
        let location = format!("{target}{}", uri.path());
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
        }
    })))
    .await;
    let client = client(&node, &NodeKey::random());
    assert!(client.status().await.is_err());
    assert!(client.start(&[user(1)]).await.is_err());
    assert!(client.stop().await.is_err());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a sealed call went elsewhere"
    );
}

#[tokio::test]
async fn an_agent_with_another_key_is_named_a_key_mismatch() {
    let agent = untouchable();
    let url = serve(agent.router.clone()).await;
    let error = client(&url, &NodeKey::random()).status().await.unwrap_err();
    assert!(error.to_string().contains("node key mismatch"), "{error}");
}

#[tokio::test]
async fn an_answer_sealed_under_another_key_is_named_a_key_mismatch() {
    // Answers every call with its `jti`, sealed under a key of its own.
    let app = Router::new().route(
        "/status",
        get(|headers: HeaderMap| async move {
            let token = headers[header::AUTHORIZATION].to_str().unwrap();
            let protected = token.trim_start_matches("JWE ").split('.').next().unwrap();
            let header: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).unwrap()).unwrap();
            let jti = header["jti"].as_str().unwrap();
            envelope::seal_response(&NodeKey::random(), jti, 200, br#"{"nodeStatus":"Running"}"#)
                .unwrap()
        }),
    );
    let url = serve(app).await;
    let error = client(&url, &NodeKey::random()).status().await.unwrap_err();
    assert!(
        matches!(error, ClientError::KeyMismatch { status: 200 }),
        "{error:?}"
    );
    assert!(error.to_string().contains("node key mismatch"), "{error}");
    assert!(!error.to_string().contains("OpenSSL"), "{error}");
}

use futures::StreamExt as _;
