//! The admin token check through the real router: a blank presented token
//! is refused over HTTP/1 and HTTP/2 even when the configured token is
//! empty; failed calls spend a per-client budget (429 past it, even with the
//! right token, until it refills), are counted in the metrics and logged at
//! WARN without the presented value, and the log line is rate-limited.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use manager_lib::api;
use manager_lib::api::admin_auth::{FailureLimit, LOG_BURST};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use tower::ServiceExt as _;

const TOKEN: &str = "9b1f0c2e7d4a6b8c3e5f7a9d1c3b5e7f";

/// The API as the root wires it, changes left to the heartbeat.
fn server(settings: ServerSettings) -> Server {
    let backends = Backends::new(
        Arc::new(MemoryStorage::new()),
        Arc::new(SimulatedFleet::new()),
    );
    let settings = ServerSettings {
        push_on_change: false,
        ..settings
    };
    Server::build(backends, settings)
}

fn app(settings: ServerSettings) -> Router {
    server(settings).router
}

fn peer(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, last)), 40_000)
}

/// `GET /users` from `from` with this `Authorization` value (none for `None`).
async fn users(
    app: &Router,
    from: SocketAddr,
    auth: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get("/users");
    if let Some(v) = auth {
        req = req.header(header::AUTHORIZATION, v);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(from));
    let resp = app.clone().oneshot(req).await.unwrap();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, retry, String::from_utf8(body.to_vec()).unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn throttled_after(failures: u32) -> Router {
    app(ServerSettings {
        node_list_limit: None,
        admin_failure_limit: Some(FailureLimit {
            failures,
            refill_every: Duration::from_secs(60),
            ..FailureLimit::default()
        }),
        ..ServerSettings::new(TOKEN)
    })
}

/// Serves `app` on 127.0.0.1:0 with `api::serve`; drop the sender to stop.
async fn served(app: Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, app, async {
        let _ = stopped.await;
    }));
    (format!("http://{addr}"), stop)
}

/// A router whose configured token were empty (the settings refuse that,
/// but the check must not depend on it): `Bearer ` and `Bearer   ` are
/// refused on a real socket over HTTP/1 and over cleartext HTTP/2 (prior
/// knowledge), where the header's trailing spaces reach the server intact.
#[tokio::test]
async fn a_blank_bearer_token_is_refused_over_http1_and_http2_even_if_the_token_were_empty() {
    let app = app(ServerSettings {
        admin_failure_limit: None,
        ..ServerSettings::new("")
    });
    let (url, _stop) = served(app).await;
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, version) in [
        (&http1, reqwest::Version::HTTP_11),
        (&http2, reqwest::Version::HTTP_2),
    ] {
        for value in ["Bearer ", "Bearer   ", "Bearer \t"] {
            for (method, path) in [("GET", "/users"), ("POST", "/node/new")] {
                let resp = client
                    .request(method.parse().unwrap(), format!("{url}{path}"))
                    .header(header::AUTHORIZATION, value)
                    .body(r#"{"endpoint":"http://10.0.0.1:8443"}"#)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.version(), version);
                assert_eq!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED,
                    "{version:?} {method} {path} with {value:?}"
                );
                assert_eq!(resp.text().await.unwrap(), r#"{"error":"unauthorized"}"#);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn past_the_failure_budget_admin_calls_are_429_even_with_the_right_token_until_it_refills() {
    let app = throttled_after(3);
    let me = peer(1);
    // Successful calls spend nothing.
    for _ in 0..20 {
        assert_eq!(
            users(&app, me, Some(&bearer(TOKEN))).await.0,
            StatusCode::OK
        );
    }
    for guess in ["a", "b", "c"] {
        let (status, _, _) = users(&app, me, Some(&bearer(guess))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, retry, body) = users(&app, me, Some(&bearer(TOKEN))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, r#"{"error":"too many requests"}"#);
    assert_eq!(retry.as_deref(), Some("60"));
    // Missing tokens count as failures too, and are throttled the same way.
    assert_eq!(users(&app, me, None).await.0, StatusCode::TOO_MANY_REQUESTS);

    // Another address has its own budget.
    let other = peer(2);
    assert_eq!(
        users(&app, other, Some(&bearer(TOKEN))).await.0,
        StatusCode::OK
    );

    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        users(&app, me, Some(&bearer(TOKEN))).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    // One failure has refilled: the right token works, as often as wanted...
    for _ in 0..5 {
        assert_eq!(
            users(&app, me, Some(&bearer(TOKEN))).await.0,
            StatusCode::OK
        );
    }
    // ...and one more wrong guess spends it again.
    assert_eq!(
        users(&app, me, Some(&bearer("d"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        users(&app, me, Some(&bearer(TOKEN))).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_failure_budget_is_on_by_default_and_can_be_turned_off() {
    let on = app(ServerSettings::new(TOKEN));
    let me = peer(3);
    let mut statuses = Vec::new();
    for _ in 0..FailureLimit::default().failures + 1 {
        statuses.push(users(&on, me, Some(&bearer("guess"))).await.0);
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    let off = app(ServerSettings {
        admin_failure_limit: None,
        ..ServerSettings::new(TOKEN)
    });
    for _ in 0..100 {
        assert_eq!(
            users(&off, me, Some(&bearer("guess"))).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        users(&off, me, Some(&bearer(TOKEN))).await.0,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn failures_and_throttled_calls_are_counted_in_the_metrics() {
    let server = server(ServerSettings {
        admin_failure_limit: Some(FailureLimit {
            failures: 2,
            ..FailureLimit::default()
        }),
        ..ServerSettings::new(TOKEN)
    });
    let (app, metrics) = (server.router, server.metrics);
    let me = peer(4);
    users(&app, me, Some(&bearer("x"))).await;
    users(&app, me, None).await;
    users(&app, me, Some(&bearer(TOKEN))).await;
    users(&app, peer(5), Some(&bearer(TOKEN))).await;
    let text = metrics.render().await;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
            .to_owned()
    };
    assert_eq!(value("xray_manager_admin_auth_failures_total"), "2");
    assert_eq!(value("xray_manager_admin_auth_throttled_total"), "1");
}

/// Tracing output, captured for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Captures everything at `level` and above on this thread until the
    /// guard drops (the test runs on one thread).
    fn install(&self, level: tracing::Level) -> tracing::subscriber::DefaultGuard {
        let out = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_failure_is_logged_at_warn_with_the_address_and_never_the_presented_value() {
    let log = Captured::default();
    let _guard = log.install(tracing::Level::TRACE);
    let app = throttled_after(2);
    let guess = "correct-horse-battery-staple-guess";
    users(&app, peer(6), Some(&bearer(guess))).await;
    users(&app, peer(6), None).await;
    users(&app, peer(6), Some(&bearer(TOKEN))).await;
    let text = log.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("admin call refused"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines.iter().all(|l| l.contains("WARN")), "{text}");
    assert!(lines.iter().all(|l| l.contains("203.0.113.6")), "{text}");
    assert!(lines[0].contains("wrong token"), "{text}");
    assert!(lines[1].contains("no bearer token"), "{text}");
    assert!(lines[2].contains("too many failures"), "{text}");
    assert!(
        !text.contains("correct-horse"),
        "the guess was logged:\n{text}"
    );
    assert!(!text.contains(TOKEN), "the token was logged:\n{text}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_refusal_log_line_is_rate_limited_and_says_how_many_it_left_out() {
    let log = Captured::default();
    let _guard = log.install(tracing::Level::WARN);
    let app = throttled_after(1_000);
    let refused_lines = || {
        log.text()
            .lines()
            .filter(|l| l.contains("admin call refused"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for _ in 0..500 {
        users(&app, peer(7), Some(&bearer("guess"))).await;
    }
    assert_eq!(refused_lines().len(), LOG_BURST as usize);
    tokio::time::advance(Duration::from_secs(1)).await;
    users(&app, peer(7), Some(&bearer("guess"))).await;
    let lines = refused_lines();
    assert_eq!(lines.len(), LOG_BURST as usize + 1);
    let left_out = 500 - LOG_BURST;
    assert!(
        lines
            .last()
            .unwrap()
            .contains(&format!("suppressed={left_out}")),
        "{lines:?}"
    );
}
