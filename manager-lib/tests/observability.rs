//! The manager's OpenAPI document and Prometheus metrics, through the real
//! router (`oneshot`), with in-memory storage and a simulated fleet.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use manager_lib::api::ROUTES;
use manager_lib::cache::MemoryCache;
use manager_lib::metrics::{self, ManagerMetrics};
use manager_lib::reconcile::{Reconciler, ReconcilerSettings};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};

const TOKEN: &str = "observability-admin-token";

struct Api {
    router: axum::Router,
    fleet: Arc<SimulatedFleet>,
    metrics: Arc<ManagerMetrics>,
    reconciler: Arc<Reconciler>,
}

impl Api {
    /// The manager as the binary wires it: a cached storage whose counters
    /// the metrics report.
    fn new() -> Self {
        Self::with(ReconcilerSettings::default())
    }

    fn with(reconciler: ReconcilerSettings) -> Self {
        let fleet = Arc::new(SimulatedFleet::new());
        let backends = Backends::new(Arc::new(MemoryStorage::new()), fleet.clone())
            .with_cache(Arc::new(MemoryCache::new()));
        let settings = ServerSettings {
            node_list_limit: None,
            push_on_change: false,
            reconciler,
            ..ServerSettings::new(TOKEN)
        };
        let server = Server::build(backends, settings);
        Self {
            router: server.router,
            fleet,
            metrics: server.metrics,
            reconciler: server.reconciler,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, String) {
        call(&self.router, method, path, body, token).await
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        common::admin(&self.router, TOKEN, method, path, body).await
    }

    async fn new_user(&self, name: &str) -> String {
        common::new_user(&self.router, TOKEN, name).await
    }

    async fn running_node(&self, endpoint: &str) -> String {
        common::running_node(&self.router, TOKEN, &self.fleet, endpoint).await
    }

    async fn scrape(&self) -> Metrics {
        let (status, text) = self.call("GET", "/metrics", None, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        Metrics::parse(&text)
    }
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, bytes) = common::send(router, method, path, &body, token).await;
    (status, String::from_utf8(bytes).unwrap())
}

/// One sample: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed strictly: every line is a comment (`# HELP`, `# TYPE`,
/// `# UNIT`, `# EOF`) or a sample.
#[derive(Debug)]
struct Metrics {
    samples: Vec<Sample>,
    text: String,
}

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                assert!(
                    ["HELP ", "TYPE ", "UNIT "]
                        .iter()
                        .any(|k| comment.starts_with(k))
                        || comment == "EOF",
                    "bad comment line {line:?}"
                );
                continue;
            }
            samples.push(parse_sample(line));
        }
        assert!(text.ends_with("# EOF\n"), "no EOF marker");
        Self {
            samples,
            text: text.to_owned(),
        }
    }

    /// The value of the one sample named `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().map(|s| s.value)
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("bad sample line {line:?}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line:?}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let close = loop {
            let (i, c) = chars.next().unwrap_or_else(|| panic!("unclosed {line:?}"));
            match c {
                '}' => break i,
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('"') => break,
                            Some('\\') => value.push(chars.next().unwrap().1),
                            Some(c) => value.push(c),
                            None => panic!("unclosed label value in {line:?}"),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        };
        rest = &inner[close + 1..];
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn http_requests(m: &Metrics, method: &str, route: &str, status: &str) -> Option<f64> {
    m.value(
        "xray_manager_http_requests_total",
        &[("method", method), ("route", route), ("status", status)],
    )
}

// ---- OpenAPI ----

fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_of_the_router() {
    let api = Api::new();
    let (status, text) = api.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_str(&text).unwrap();
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented_operations(&doc), routes);

    // And every listed route is one the router really serves. The
    // subscription call answers 404 for a token of nobody, as the
    // fallback does: it gets a real user's token.
    let (_, created) = api
        .call(
            "POST",
            "/user/new",
            Some(json!({"userName": "doc"})),
            Some(TOKEN),
        )
        .await;
    let user: Value = serde_json::from_str(&created).unwrap();
    let user = user["user"]["id"].as_str().unwrap().to_owned();
    let (_, sub) = api
        .call(
            "GET",
            &format!("/users/{user}/subscription"),
            None,
            Some(TOKEN),
        )
        .await;
    let sub: Value = serde_json::from_str(&sub).unwrap();
    let token = sub["subscription"]["token"].as_str().unwrap().to_owned();
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id_name}", "00000000-0000-0000-0000-000000000000-x")
            .replace("{token}", &token);
        let body = (*method == "POST").then(|| json!({}));
        let (status, text) = api.call(method, &concrete, body, Some(TOKEN)).await;
        assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}: {text}");
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {text}"
        );
    }
}

#[tokio::test]
async fn the_document_parses_as_openapi_3() {
    let api = Api::new();
    let (_, text) = api.call("GET", "/openapi.json", None, None).await;
    let doc: utoipa::openapi::OpenApi = serde_json::from_str(&text).unwrap();
    let version = serde_json::to_value(&doc.openapi).unwrap();
    assert!(
        version.as_str().is_some_and(|v| v.starts_with("3.")),
        "{version}"
    );
    // Nothing served is lost in the typed form.
    assert_eq!(
        serde_json::to_value(&doc).unwrap(),
        serde_json::from_str::<Value>(&text).unwrap()
    );
    let schemes = doc.components.as_ref().unwrap();
    assert!(schemes.security_schemes.contains_key("admin_token"));
}

#[tokio::test]
async fn admin_calls_need_the_token_in_the_document_and_the_user_call_does_not() {
    let doc = serde_json::to_value(manager_lib::api::openapi::document()).unwrap();
    let security = |method: &str, path: &str| doc["paths"][path][method]["security"].clone();
    assert_eq!(security("post", "/user/new"), json!([{"admin_token": []}]));
    assert_eq!(security("get", "/metrics"), json!([{"admin_token": []}]));
    assert_eq!(security("get", "/user/{id_name}/nodes"), Value::Null);
    let body = &doc["paths"]["/node/new"]["post"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/NodeCreated");
    let created = &doc["components"]["schemas"]["NodeCreated"]["properties"];
    assert!(created.get("nodeID").is_some() && created.get("nodeKey").is_some());
    let node = &doc["components"]["schemas"]["NodeView"]["properties"];
    assert_eq!(
        node["actualStatus"]["enum"],
        json!(["Running", "Stopped", "Error"])
    );
}

#[tokio::test]
async fn the_docs_are_served_without_a_token() {
    let api = Api::new();
    let (status, _) = api.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = api.call("GET", "/docs/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("swagger-ui"), "{page}");
    let (status, _) = api.call("GET", "/docs/swagger-ui.css", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

// ---- metrics ----

#[tokio::test]
async fn metrics_without_the_admin_token_are_refused() {
    let api = Api::new();
    let (status, _) = api.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call("GET", "/metrics", None, Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_metrics_router_serves_without_a_token() {
    let api = Api::new();
    let (status, text) = call(
        &metrics::router(api.metrics.clone()),
        "GET",
        "/metrics",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(Metrics::parse(&text).has("xray_manager_storage_up"));
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status() {
    let api = Api::new();
    api.new_user("alice").await;
    let bob = api.new_user("bob").await;
    let (status, _) = api.admin("GET", "/nodes", json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .call("GET", &format!("/user/{bob}-bob/nodes"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .call("GET", &format!("/user/{bob}-mallory/nodes"), None, None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api.call("GET", "/no/such/path/secret", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call("POST", "/user/new", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let m = api.scrape().await;
    assert_eq!(http_requests(&m, "POST", "/user/new", "200"), Some(2.0));
    assert_eq!(http_requests(&m, "POST", "/user/new", "401"), Some(1.0));
    assert_eq!(http_requests(&m, "GET", "/nodes", "200"), Some(1.0));
    let node_list = "/user/{id_name}/nodes";
    assert_eq!(http_requests(&m, "GET", node_list, "200"), Some(1.0));
    assert_eq!(http_requests(&m, "GET", node_list, "422"), Some(1.0));
    assert_eq!(
        http_requests(&m, "GET", metrics::UNMATCHED_ROUTE, "404"),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "xray_manager_http_request_duration_seconds_count",
            &[
                ("method", "POST"),
                ("route", "/user/new"),
                ("status", "200")
            ]
        ),
        Some(2.0)
    );
    // Neither the user's id nor an invented path becomes a label.
    assert!(!m.text.contains(&bob));
    assert!(!m.text.contains("secret"));
}

#[tokio::test]
async fn nodes_are_counted_by_actual_and_required_status() {
    let api = Api::new();
    api.running_node("http://10.0.0.1:8080").await;
    api.running_node("http://10.0.0.2:8080").await;
    let stopped = api.running_node("http://10.0.0.3:8080").await;
    let (status, _) = api
        .admin("POST", "/node/stop", json!({"nodeID": stopped}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let m = api.scrape().await;
    let nodes = |actual, required| {
        m.value(
            "xray_manager_nodes",
            &[("actual", actual), ("required", required)],
        )
    };
    assert_eq!(nodes("Running", "Running"), Some(2.0));
    assert_eq!(nodes("Stopped", "Stopped"), Some(1.0));
    assert_eq!(nodes("Error", "Running"), Some(0.0));
    assert_eq!(m.value("xray_manager_storage_up", &[]), Some(1.0));
}

#[tokio::test]
async fn pending_changes_show_per_node_until_the_heartbeat_applies_them() {
    let api = Api::new();
    let node = api.running_node("http://10.0.0.1:8080").await;
    api.fleet.set_unreachable("http://10.0.0.1:8080", true);
    for name in ["a", "b"] {
        let id = api.new_user(name).await;
        let (status, _) = api
            .admin("POST", "/user/enable", json!({"userID": id}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let m = api.scrape().await;
    let pending = m.value("xray_manager_node_pending_changes", &[("node", &node)]);
    assert!(pending.is_some_and(|p| p >= 2.0), "{pending:?}");
    assert_eq!(m.value("xray_manager_enabled_users", &[]), Some(2.0));

    api.fleet.set_unreachable("http://10.0.0.1:8080", false);
    api.reconciler.heartbeat().await;
    let m = api.scrape().await;
    assert_eq!(
        m.value("xray_manager_node_pending_changes", &[("node", &node)]),
        Some(0.0)
    );
}

#[tokio::test]
async fn heartbeat_duration_and_failures_are_recorded_per_node() {
    let api = Api::with(ReconcilerSettings {
        interval: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        ..ReconcilerSettings::default()
    });
    let up = api.running_node("http://10.0.0.1:8080").await;
    let down = api.running_node("http://10.0.0.2:8080").await;
    api.fleet.set_unreachable("http://10.0.0.2:8080", true);
    api.reconciler.heartbeat().await;
    api.reconciler.heartbeat().await;

    let m = api.scrape().await;
    let count = |node: &str| {
        m.value(
            "xray_manager_heartbeat_duration_seconds_count",
            &[("node", node)],
        )
    };
    assert_eq!(count(&up), Some(2.0));
    assert_eq!(count(&down), Some(2.0));
    let failures = |node: &str| m.value("xray_manager_heartbeat_failures_total", &[("node", node)]);
    assert_eq!(failures(&down), Some(2.0));
    assert_eq!(failures(&up), None);
    let buckets = m
        .samples
        .iter()
        .filter(|s| s.name == "xray_manager_heartbeat_duration_seconds_bucket")
        .filter(|s| s.labels.get("node") == Some(&up))
        .count();
    assert!(buckets > 5, "{buckets} buckets");
}

#[tokio::test]
async fn cache_hits_and_ratio_come_from_the_cached_storage() {
    let api = Api::new();
    api.running_node("http://10.0.0.1:8080").await;
    let id = api.new_user("carol").await;
    let (status, _) = api
        .admin("POST", "/user/enable", json!({"userID": id}))
        .await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..3 {
        let (status, body) = api
            .call("GET", &format!("/user/{id}-carol/nodes"), None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let m = api.scrape().await;
    let hits = m.value("xray_manager_cache_hits_total", &[]).unwrap();
    let misses = m.value("xray_manager_cache_misses_total", &[]).unwrap();
    assert!(hits >= 2.0, "hits {hits}");
    assert!(misses >= 1.0, "misses {misses}");
    let ratio = m.value("xray_manager_cache_hit_ratio", &[]).unwrap();
    assert!((ratio - hits / (hits + misses)).abs() < 1e-9, "{ratio}");
}
