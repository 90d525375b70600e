//! The body of a request is read only after its header token authenticated
//! the call, only up to the length that token announced, within a deadline,
//! and decrypted only when its digest is the announced one (finding 1 of
//! issue 14: the agent used to read 64 MiB from anyone before checking who
//! they were).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use common::*;
use node_agent_lib::api::{AppState, router};
use node_agent_lib::envelope::{self, NodeKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SIXTY_MIB: u64 = 60 * 1024 * 1024;

/// A body that yields 64 KiB chunks without end, counting the bytes the
/// server pulled from it.
fn endless_body(pulled: Arc<AtomicU64>) -> Body {
    let chunk = Bytes::from(vec![b'A'; 64 * 1024]);
    Body::from_stream(futures::stream::repeat_with(move || {
        pulled.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

fn big_request(token: &str, pulled: Arc<AtomicU64>) -> Request<Body> {
    Request::post("/start")
        .header(header::AUTHORIZATION, format!("JWE {token}"))
        .header(header::CONTENT_TYPE, "application/jose")
        .header(header::CONTENT_LENGTH, SIXTY_MIB)
        .body(endless_body(pulled))
        .unwrap()
}

fn assert_bare_401(status: StatusCode, body: &[u8]) {
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<Value>(body).unwrap(),
        json!({"error": "unauthorized"})
    );
}

#[tokio::test]
async fn a_big_body_under_a_wrong_key_is_refused_without_reading_a_byte() {
    let node = untouchable();
    let other = NodeKey::random();
    let sealed = seal_now(&other, "POST", "/start", &vec![b'x'; 1024 * 1024]);
    let pulled = Arc::new(AtomicU64::new(0));
    let (status, body) = send(&node.router, big_request(&sealed.token, pulled.clone())).await;
    assert_bare_401(status, &body);
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "the body was read");
}

#[tokio::test]
async fn a_big_body_without_a_token_is_refused_without_reading_a_byte() {
    let node = untouchable();
    let pulled = Arc::new(AtomicU64::new(0));
    let request = Request::post("/start")
        .header(header::CONTENT_LENGTH, SIXTY_MIB)
        .body(endless_body(pulled.clone()))
        .unwrap();
    let (status, body) = send(&node.router, request).await;
    assert_bare_401(status, &body);
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "the body was read");
}

/// Over a real socket: headers and a few KiB of a 60 MiB body, then the
/// client stalls. The 401 comes at once, not after a body that never ends.
#[tokio::test]
async fn a_stalled_unauthenticated_upload_gets_its_401_at_once() {
    let node = untouchable();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = node.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let forged = seal_now(&NodeKey::random(), "POST", "/start", b"x");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /start HTTP/1.1\r\nhost: node\r\nauthorization: JWE {}\r\ncontent-type: application/jose\r\ncontent-length: {SIXTY_MIB}\r\n\r\n",
        forged.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'A'; 4096]).await.unwrap();
    // The connection stays open and silent from here on.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("no answer while the body was stalled")
            .unwrap();
        assert_ne!(n, 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    server.abort();
}

/// A peer with the key is trusted, but the body must be the one its header
/// announced: one byte past the announced length ends the read at once.
#[tokio::test]
async fn an_authenticated_body_longer_than_announced_is_cut_at_the_length() {
    let node = untouchable();
    let sealed = seal_now(&node.key, "POST", "/start", b"{\"users\":[]}");
    let pulled = Arc::new(AtomicU64::new(0));
    let request = Request::post("/start")
        .header(header::AUTHORIZATION, format!("JWE {}", sealed.token))
        .header(header::CONTENT_LENGTH, sealed.body.len())
        .body(endless_body(pulled.clone()))
        .unwrap();
    let (status, raw) = send(&node.router, request).await;
    assert_sealed_bad_request(&node, &sealed.jti, status, &raw);
    assert!(
        pulled.load(Ordering::SeqCst) <= 64 * 1024,
        "read past the announced length"
    );
}

fn assert_sealed_bad_request(node: &TestNode, jti: &str, status: StatusCode, raw: &[u8]) {
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let opened =
        envelope::open_response(&node.key, std::str::from_utf8(raw).unwrap(), jti, 400).unwrap();
    let body: Value = serde_json::from_slice(&opened).unwrap();
    assert_eq!(body["error"], "bad request");
}

#[tokio::test]
async fn a_body_other_than_the_announced_one_is_refused_and_changes_nothing() {
    let node = untouchable();
    let sealed = seal_now(&node.key, "POST", "/start", b"{\"users\":[]}");
    // Same length, one byte changed: the digest differs.
    let mut body = sealed.body.clone();
    let last = body.len() - 1;
    body[last] = if body[last] == b'A' { b'B' } else { b'A' };
    let (status, raw) = send(
        &node.router,
        request_with_body("POST", "/start", &sealed.token, body),
    )
    .await;
    assert_sealed_bad_request(&node, &sealed.jti, status, &raw);
    // Another length than announced in Content-Length.
    let sealed = seal_now(&node.key, "POST", "/start", b"{}");
    let request = Request::post("/start")
        .header(header::AUTHORIZATION, format!("JWE {}", sealed.token))
        .header(header::CONTENT_LENGTH, sealed.body.len() + 1)
        .body(Body::from(sealed.body.clone()))
        .unwrap();
    let (status, raw) = send(&node.router, request).await;
    assert_sealed_bad_request(&node, &sealed.jti, status, &raw);
    assert!(
        !node.generated().exists(),
        "a refused body wrote the config"
    );
}

/// A half-sent authenticated body does not hold memory forever.
#[tokio::test]
async fn an_authenticated_body_that_stalls_is_given_up_after_the_deadline() {
    let base = untouchable();
    let state = AppState::new(base.agent.clone(), base.key.clone())
        .with_body_timeout(Duration::from_millis(200));
    let app = router(Arc::new(state));
    let sealed = seal_now(&base.key, "POST", "/start", b"{\"users\":[]}");
    let half = Bytes::from(sealed.body[..sealed.body.len() / 2].to_vec());
    let stalled = futures::stream::once(async move { Ok::<_, std::io::Error>(half) })
        .chain(futures::stream::pending());
    let request = Request::post("/start")
        .header(header::AUTHORIZATION, format!("JWE {}", sealed.token))
        .header(header::CONTENT_LENGTH, sealed.body.len())
        .body(Body::from_stream(stalled))
        .unwrap();
    let (status, raw) = tokio::time::timeout(Duration::from_secs(10), send(&app, request))
        .await
        .expect("the stalled body held the handler");
    assert_sealed_bad_request(&base, &sealed.jti, status, &raw);
}

#[tokio::test]
async fn a_body_on_a_call_that_announced_none_is_refused() {
    let node = untouchable();
    let sealed = seal_now(&node.key, "POST", "/stop", b"");
    let (status, raw) = send(
        &node.router,
        request_with_body("POST", "/stop", &sealed.token, b"{}".to_vec()),
    )
    .await;
    assert_sealed_bad_request(&node, &sealed.jti, status, &raw);
}

use futures::StreamExt as _;
