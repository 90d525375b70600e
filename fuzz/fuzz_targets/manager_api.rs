//! Run with: cargo +nightly fuzz run manager_api   (from /work/main/fuzz or the repo root)
//!
//! Feeds arbitrary methods, paths, headers and bodies to the manager's real
//! router (memory storage, simulated fleet, one seeded node and user) and
//! checks what the hostile-input tests check: a documented status, never a
//! 500 with memory storage, every error in the `{"error", "message"?}` shape
//! with a text from the API's table, and a rejected call changes nothing.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-admin-token";
const NAME: &str = "alice";
const STATUSES: [u16; 8] = [200, 400, 401, 404, 405, 422, 429, 500];
const ERROR_TEXTS: [&str; 12] = [
    "bad request",
    "unauthorized",
    "not found",
    "method not allowed",
    "too many requests",
    "invalid endpoint",
    "invalid user name",
    "node not exists",
    "user not exists",
    "user id and name do not match",
    "database unavailable",
    "internal server error",
];
const ROUTES: [(&str, &str, &str); 12] = [
    ("POST", "/node/new", "endpoint"),
    ("POST", "/node/start", "nodeID"),
    ("POST", "/node/stop", "nodeID"),
    ("POST", "/node/delete", "nodeID"),
    ("GET", "/nodes", ""),
    ("POST", "/user/new", "userName"),
    ("POST", "/user/enable", "userID"),
    ("POST", "/user/disable", "userID"),
    ("POST", "/user/delete", "userID"),
    ("GET", "/users", ""),
    ("GET", "/health", ""),
    ("GET", "/user/{id}-{name}/nodes", ""),
];

#[derive(Arbitrary, Debug)]
enum Verb {
    Route,
    Get,
    Post,
    Head,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Id {
    Real,
    RealPrefix(u8),
    Node,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Target {
    Route {
        index: u8,
        query: String,
    },
    NodeList {
        id: Id,
        separator: bool,
        name: Vec<u8>,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    Valid,
    Bearer(String),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Raw(Vec<u8>),
    /// The route's own field with a string value.
    Field(Id, String),
    /// The route's own field with the real user or node id.
    RealField(bool),
    Nested(u16),
    Large(u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    verb: Verb,
    target: Target,
    auth: Auth,
    content_type: Option<Vec<u8>>,
    payload: Payload,
}

struct Fixture {
    router: Router,
    user_id: String,
    node_id: String,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderValueOpt, Bytes) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("a body");
    (status, ct, body)
}

type HeaderValueOpt = Option<HeaderValue>;

async fn admin(app: &Router, path: &str, body: Value) -> Value {
    let req = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_string()))
        .expect("a request");
    let (status, _, body) = send(app, req).await;
    assert_eq!(status, StatusCode::OK, "seeding {path}");
    serde_json::from_slice(&body).expect("JSON")
}

async fn fixture() -> Fixture {
    let fleet = Arc::new(SimulatedFleet::new());
    fleet.add_node("http://n1");
    // As the root wires it; changes wait for a heartbeat that never runs,
    // so each input sees the same state.
    let settings = ServerSettings {
        node_list_limit: None,
        push_on_change: false,
        ..ServerSettings::new(TOKEN)
    };
    let router = Server::build(Backends::new(Arc::new(MemoryStorage::new()), fleet), settings).router;
    let node = admin(&router, "/node/new", json!({"endpoint": "http://n1"})).await;
    let node_id = node["nodeID"].as_str().expect("id").to_owned();
    admin(&router, "/node/start", json!({"nodeID": node_id})).await;
    let user = admin(&router, "/user/new", json!({"userName": NAME})).await;
    let user_id = user["user"]["id"].as_str().expect("id").to_owned();
    admin(&router, "/user/enable", json!({"userID": user_id})).await;
    Fixture {
        router,
        user_id,
        node_id,
    }
}

async fn snapshot(app: &Router) -> (Bytes, Bytes) {
    let get = |p: &str| {
        Request::get(p)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("a request")
    };
    (
        send(app, get("/users")).await.2,
        send(app, get("/nodes")).await.2,
    )
}

fn pct(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn id_text(fx: &Fixture, id: &Id) -> String {
    match id {
        Id::Real => fx.user_id.clone(),
        Id::RealPrefix(n) => fx.user_id[..usize::from(*n) % fx.user_id.len()].to_owned(),
        Id::Node => fx.node_id.clone(),
        Id::Raw(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn build(fx: &Fixture, input: &Input) -> Option<(Method, Request<Body>)> {
    let route = match &input.target {
        Target::Route { index, .. } => Some(ROUTES[usize::from(*index) % ROUTES.len()]),
        _ => None,
    };
    let method = match &input.verb {
        Verb::Route => Method::from_bytes(route.map_or("GET", |r| r.0).as_bytes()).ok()?,
        Verb::Get => Method::GET,
        Verb::Post => Method::POST,
        Verb::Head => Method::HEAD,
        Verb::Other(m) => Method::from_bytes(m.as_bytes()).ok()?,
    };
    let path = match &input.target {
        Target::Route { query, .. } => {
            let (_, p, _) = route?;
            let p = p.replace("{id}", &fx.user_id).replace("{name}", NAME);
            if query.is_empty() {
                p
            } else {
                format!("{p}?{}", pct(query.as_bytes()))
            }
        }
        Target::NodeList {
            id,
            separator,
            name,
        } => format!(
            "/user/{}{}{}/nodes",
            pct(id_text(fx, id).as_bytes()),
            if *separator { "-" } else { "" },
            pct(name)
        ),
        Target::Raw(p) => p.clone(),
    };
    let field = route.map_or("userName", |r| r.2);
    let body: Vec<u8> = match &input.payload {
        Payload::Raw(b) => b.clone(),
        Payload::Field(id, s) => json!({ field: format!("{}{s}", id_text(fx, id)) })
            .to_string()
            .into_bytes(),
        Payload::RealField(node) => {
            let id = if *node { &fx.node_id } else { &fx.user_id };
            json!({ field: id }).to_string().into_bytes()
        }
        Payload::Nested(depth) => "[".repeat(usize::from(*depth)).into_bytes(),
        Payload::Large(n) => {
            let n = (*n as usize) % (256 * 1024);
            format!(r#"{{"{field}":"{}"}}"#, "x".repeat(n)).into_bytes()
        }
    };
    let mut req = Request::builder().method(method.clone()).uri(path);
    match &input.auth {
        Auth::None => {}
        Auth::Valid => req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}")),
        Auth::Bearer(t) => {
            req = req.header(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {t}")).ok()?,
            )
        }
        Auth::Raw(b) => req = req.header(header::AUTHORIZATION, HeaderValue::from_bytes(b).ok()?),
    }
    if let Some(ct) = &input.content_type {
        req = req.header(header::CONTENT_TYPE, HeaderValue::from_bytes(ct).ok()?);
    }
    Some((method, req.body(Body::from(body)).ok()?))
}

fn check(method: &Method, status: StatusCode, ct: Option<HeaderValue>, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    assert!(STATUSES.contains(&status.as_u16()), "{status}: {text}");
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert_eq!(
        ct.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    if *method == Method::HEAD && body.is_empty() {
        return;
    }
    let value: Value = serde_json::from_slice(body).expect("a JSON body");
    if !status.is_success() {
        let obj = value.as_object().expect("an error object");
        let error = obj
            .get("error")
            .and_then(Value::as_str)
            .expect("an error text");
        assert!(ERROR_TEXTS.contains(&error), "unknown error text {error}");
        assert!(obj.get("message").is_none_or(Value::is_string));
        assert!(obj.keys().all(|k| k == "error" || k == "message"));
    }
}

fuzz_target!(|input: Input| {
    runtime().block_on(async {
        let fx = fixture().await;
        let Some((method, req)) = build(&fx, &input) else {
            return;
        };
        let before = snapshot(&fx.router).await;
        let (status, ct, body) = send(&fx.router, req).await;
        check(&method, status, ct, &body);
        if !status.is_success() {
            assert!(
                snapshot(&fx.router).await == before,
                "a rejected call changed state"
            );
        }
    });
});
