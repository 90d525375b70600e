//! The hardened listener both binaries serve through
//! (`node_agent_lib::listener`), over real sockets on 127.0.0.1 with short
//! limits set through its settings: slow and idle peers are cut off, the
//! connection cap holds new peers back until a slot frees, and the limits
//! hold through TLS too.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use node_agent_lib::listener::{self, ListenerSettings};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Long enough for any condition we wait for to come true on a loaded CI
/// machine; the limits under test are a few hundred milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// Limits that never fire during a test unless it shortens one of them.
fn patient() -> ListenerSettings {
    ListenerSettings {
        header_read_timeout_ms: 60_000,
        idle_timeout_ms: 60_000,
        ..ListenerSettings::agent()
    }
}

struct Server {
    address: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(settings: ListenerSettings, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let stop = CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    let task =
        tokio::spawn(async move { listener::serve(socket, app(), &settings, tls, shutdown).await });
    Server {
        address,
        stop,
        task,
    }
}

/// `patient()` but for a 300 ms header timeout.
fn short_header_timeout() -> ListenerSettings {
    ListenerSettings {
        header_read_timeout_ms: 300,
        ..patient()
    }
}

/// A plain-TCP server with `settings`, and one connection to it.
async fn start_and_connect(settings: ListenerSettings) -> (Server, TcpStream) {
    let server = start(settings, None).await;
    let stream = TcpStream::connect(server.address).await.unwrap();
    (server, stream)
}

/// Reads until the server closes the connection; `false` if it is still
/// open at the deadline.
async fn closed_by_server(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends one request and reads its answer (small: one read suffices once
/// the body has arrived).
async fn ask(stream: &mut TcpStream) -> String {
    stream.write_all(REQUEST).await.unwrap();
    read_answer(stream, DEADLINE).await.expect("an answer")
}

async fn read_answer(stream: &mut TcpStream, deadline: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        while !answer.ends_with(b"ok") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn a_slowloris_trickling_its_headers_is_closed_after_the_header_timeout() {
    let (_server, mut stream) = start_and_connect(short_header_timeout()).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // One more header byte every 50 ms, never the blank line that ends them.
    let mut buf = [0u8; 1024];
    let mut trickle = tokio::time::interval(Duration::from_millis(50));
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = trickle.tick() => {
                    if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow peer is still connected");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let (_server, mut stream) = start_and_connect(short_header_timeout()).await;
    assert!(closed_by_server(&mut stream, DEADLINE).await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_server, mut stream) = start_and_connect(ListenerSettings {
        idle_timeout_ms: 300,
        ..patient()
    })
    .await;
    let answer = ask(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Keep-alive: the connection stays usable for a next request...
    assert!(ask(&mut stream).await.starts_with("HTTP/1.1 200"));
    // ...until it has been idle too long.
    assert!(closed_by_server(&mut stream, DEADLINE).await);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let (_server, stream) = start_and_connect(ListenerSettings {
        idle_timeout_ms: 300,
        http2: true,
        ..patient()
    })
    .await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = axum::http::Request::get("http://test/")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = sender.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    // HTTP/2 keep-alive pings would be answered, but no request comes: the
    // server ends the connection, and the client's connection task with it.
    let ended = tokio::time::timeout(DEADLINE, connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");
}

#[tokio::test]
async fn past_the_cap_a_new_connection_waits_until_a_slot_frees() {
    let server = start(
        ListenerSettings {
            max_connections: 2,
            ..patient()
        },
        None,
    )
    .await;
    // Two connections, each answered once and kept open: the cap is reached.
    let mut first = TcpStream::connect(server.address).await.unwrap();
    ask(&mut first).await;
    let mut second = TcpStream::connect(server.address).await.unwrap();
    ask(&mut second).await;

    let mut third = TcpStream::connect(server.address).await.unwrap();
    third.write_all(REQUEST).await.unwrap();
    let early = read_answer(&mut third, Duration::from_millis(300)).await;
    assert_eq!(early, None, "served past the cap");

    drop(first);
    let answer = read_answer(&mut third, DEADLINE).await.expect("served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // And the listener keeps serving whoever holds a slot.
    assert!(ask(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn headers_past_the_cap_are_refused() {
    let (_server, mut stream) = start_and_connect(patient()).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    // The server may close before it has read everything we send.
    let _ = stream.write_all(big.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn shutdown_lets_open_requests_finish_and_returns() {
    let (server, mut stream) = start_and_connect(patient()).await;
    assert!(ask(&mut stream).await.starts_with("HTTP/1.1 200"));
    server.stop.cancel();
    // The idle keep-alive connection is closed and serve() returns.
    assert!(closed_by_server(&mut stream, DEADLINE).await);
    let served = tokio::time::timeout(DEADLINE, server.task).await;
    assert!(matches!(served, Ok(Ok(Ok(())))));
}

/// A self-signed certificate for `localhost`, made by the openssl tool.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl tool");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

#[tokio::test]
async fn tls_is_served_with_the_same_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let tls = node_agent_lib::tls::tls_acceptor(&cert, &key, false).unwrap();
    let server = start(short_header_timeout(), Some(tls)).await;

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/", server.address.port());
    let answer = client.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok");

    // A peer that opens TCP and never starts its TLS handshake.
    let mut stalled = TcpStream::connect(server.address).await.unwrap();
    assert!(closed_by_server(&mut stalled, DEADLINE).await);
}

#[test]
fn a_key_file_that_is_not_a_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(dir.path());
    let not_a_key = dir.path().join("nope.pem");
    std::fs::write(&not_a_key, "secret-looking text").unwrap();
    let Err(error) = node_agent_lib::tls::tls_acceptor(&cert, &not_a_key, false) else {
        panic!("a key file without a key was accepted");
    };
    assert!(error.to_string().contains("nope.pem"), "{error}");
    assert!(!error.to_string().contains("secret-looking"), "{error}");
}
