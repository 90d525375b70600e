//! The per-client rate limit on the user's node-list call, through the real
//! router (peer address given as `ConnectInfo`) and through `api::serve` on a
//! real socket, with clients on different loopback addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use manager_lib::api;
use manager_lib::api::ratelimit::RateLimit;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use tower::ServiceExt as _;

const TOKEN: &str = "ratelimit-test-token";

/// The API as the root wires it, changes left to the heartbeat.
fn app(settings: ServerSettings) -> Router {
    let backends = Backends::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(SimulatedFleet::new()),
    );
    let settings = ServerSettings {
        push_on_change: false,
        ..settings
    };
    Server::build(backends, settings).router
}

fn limited(per_second: u32, burst: u32) -> Router {
    app(ServerSettings {
        node_list_limit: Some(RateLimit {
            per_second,
            burst,
            ..RateLimit::default()
        }),
        ..ServerSettings::new(TOKEN)
    })
}

fn peer(last: u8, port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, last)),
        port,
    ))
}

/// A node-list call for a user that does not exist: 422 when let through.
async fn node_list(
    app: &Router,
    from: Option<SocketAddr>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    call(
        app,
        "GET",
        "/user/00000000-0000-4000-8000-000000000000-x/nodes",
        from,
    )
    .await
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    from: Option<SocketAddr>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    if let Some(addr) = from {
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn a_burst_beyond_the_limit_is_429_and_another_address_is_unaffected() {
    // One token a second: the eight calls take milliseconds.
    let app = limited(1, 5);
    for i in 0..5 {
        let (status, _, _) = node_list(&app, peer(1, 1000 + i)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "call {i}");
    }
    for i in 0..3 {
        // Another port of the same address is the same client.
        let (status, headers, body) = node_list(&app, peer(1, 2000 + i)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body, r#"{"error":"too many requests"}"#);
        let retry: u64 = headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
    }
    let (status, _, _) = node_list(&app, peer(2, 1000)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "another address");
}

#[tokio::test]
async fn the_bucket_refills_over_time() {
    let app = limited(4, 2);
    let me = peer(9, 5000);
    assert_ne!(node_list(&app, me).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_ne!(node_list(&app, me).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(node_list(&app, me).await.0, StatusCode::TOO_MANY_REQUESTS);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _) = node_list(&app, me).await;
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(Instant::now() < deadline, "the bucket never refilled");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn without_a_peer_address_every_caller_shares_one_bucket() {
    let app = limited(1, 3);
    for _ in 0..3 {
        assert_eq!(
            node_list(&app, None).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    assert_eq!(node_list(&app, None).await.0, StatusCode::TOO_MANY_REQUESTS);
    // Callers with an address have their own buckets.
    assert_eq!(
        node_list(&app, peer(3, 1)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn only_the_node_list_call_is_limited() {
    let app = limited(1, 1);
    let me = peer(4, 1);
    node_list(&app, me).await;
    assert_eq!(node_list(&app, me).await.0, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..20 {
        assert_eq!(call(&app, "GET", "/health", me).await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/users", me).await.0, StatusCode::OK);
    }
    // A wrong method on the limited path is still just a 405.
    assert_eq!(
        call(&app, "POST", "/user/x-y/nodes", me).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn the_limit_is_on_by_default_and_can_be_turned_off() {
    let on = app(ServerSettings::new(TOKEN));
    let mut limited = 0;
    for _ in 0..100 {
        if node_list(&on, peer(5, 1)).await.0 == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(
        limited > 0,
        "100 calls at once went through the default limit"
    );

    let off = app(ServerSettings {
        node_list_limit: None,
        ..ServerSettings::new(TOKEN)
    });
    for _ in 0..100 {
        assert_eq!(
            node_list(&off, peer(5, 1)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}

/// `api::serve` hands the peer address to the limiter: two clients on
/// different loopback addresses have separate buckets.
#[tokio::test]
async fn served_on_a_socket_the_limit_is_per_client_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, limited(1, 3), async {
        let _ = stopped.await;
    }));
    let client = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
            .build()
            .unwrap()
    };
    let url = format!("http://{addr}/user/00000000-0000-4000-8000-000000000000-x/nodes");
    let first = client([127, 0, 0, 2]);
    let mut statuses = Vec::new();
    while statuses.last() != Some(&429) {
        assert!(statuses.len() < 50, "never limited: {statuses:?}");
        statuses.push(first.get(&url).send().await.unwrap().status().as_u16());
    }
    assert!(
        statuses.len() >= 4,
        "limited within the burst: {statuses:?}"
    );
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 422));
    let second = client([127, 0, 0, 3]);
    assert_eq!(
        second.get(&url).send().await.unwrap().status().as_u16(),
        422
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
