//! The node API's OpenAPI document and the agent's Prometheus metrics,
//! through the real routers (`oneshot`) over mocked service and core.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use node_agent_lib::Settings;
use node_agent_lib::api::ROUTES;
use node_agent_lib::core::MockCoreApi;
use node_agent_lib::metrics::{self, AgentMetrics};
use node_agent_lib::service::{CoreInstance, MockServiceControl, ServiceError, ServiceStatus};
use node_agent_lib::wire::{
    ErrorBody, InboundDescription, InboundProtocol, JournalMark, Network, NodeStatus, Security,
    StartRequest, StartResponse, StatusResponse, UsersEditRequest, UsersEditResponse, WireUser,
};
use serde_json::{Value, json};

const RUNNING: u8 = 0;
const STOPPED: u8 = 1;
const BROKEN: u8 = 2;

/// A service whose status is whatever `state` says, and a core with `uptime`
/// that cannot count users (so the agent reports its own count).
fn test_node(state: Arc<AtomicU8>, uptime: Arc<AtomicU32>) -> TestNode {
    let mut service = MockServiceControl::new();
    service.expect_restart().returning(|| Ok(()));
    service.expect_stop().returning(|| Ok(()));
    service
        .expect_status()
        .returning(move || match state.load(Ordering::SeqCst) {
            RUNNING => Ok(ServiceStatus::Running),
            STOPPED => Ok(ServiceStatus::Stopped),
            _ => Err(ServiceError::Process("status failed".into())),
        });
    // Each uptime a test sets stands for another run of the core.
    let run = uptime.clone();
    service.expect_instance().returning(move || {
        Ok(Some(CoreInstance::new(
            run.load(Ordering::SeqCst).to_string(),
        )))
    });
    let mut core = MockCoreApi::new();
    core.expect_uptime_secs()
        .returning(move || Ok(uptime.load(Ordering::SeqCst)));
    core.expect_users_count().returning(|_| Ok(None));
    core.expect_add_user().returning(|_, _| Ok(()));
    core.expect_remove_user().returning(|_, _| Ok(()));
    let moved = Arc::new(AtomicU32::new(0));
    core.expect_take_user_traffic().returning(move || {
        // Every read finds 100 more bytes downloaded by user 1.
        let n = moved.fetch_add(1, Ordering::SeqCst);
        Ok(vec![(user(1).id, u64::from(n), 100)])
    });
    node_with_journal(Arc::new(service), Arc::new(core))
}

fn running_node() -> (TestNode, Arc<AtomicU8>, Arc<AtomicU32>) {
    let state = Arc::new(AtomicU8::new(RUNNING));
    let uptime = Arc::new(AtomicU32::new(1000));
    (test_node(state.clone(), uptime.clone()), state, uptime)
}

async fn get(router: &axum::Router, path: &str) -> (StatusCode, String) {
    let request = Request::builder().uri(path).body(Body::empty()).unwrap();
    let (status, body) = send(router, request).await;
    (status, String::from_utf8(body).unwrap())
}

// ---- OpenAPI ----

/// The router the agent serves on `docs_listen` (never on the API's port).
fn docs() -> axum::Router {
    node_agent_lib::api::openapi::docs_router()
}

async fn served_document() -> Value {
    let (status, text) = get(&docs(), "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_of_the_router() {
    let (node, _, _) = running_node();
    let doc = served_document().await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routes);

    // Every listed route is really served: a sealed request gets a sealed
    // answer (anything else, unknown paths included, gets the bare 401).
    for (method, path) in ROUTES {
        let payload = match *path {
            "/start" => json!({"users": []}),
            "/users/edit" => json!({}),
            // The node's own key: a repeated delivery, which changes nothing.
            "/key" => json!({"key": node.key.expose_base64url(), "graceSecs": 0}),
            _ => Value::Null,
        };
        let answer = call(&node, method, path, &payload).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}");
    }
}

#[tokio::test]
async fn the_document_parses_as_openapi_3_and_says_bodies_are_jwe() {
    let text = get(&docs(), "/openapi.json").await.1;
    let doc: utoipa::openapi::OpenApi = serde_json::from_str(&text).unwrap();
    let version = serde_json::to_value(&doc.openapi).unwrap();
    assert!(version.as_str().is_some_and(|v| v.starts_with("3.")));

    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["components"]["securitySchemes"]["node_jwe"].is_object());
    for (method, path) in [
        ("post", "/start"),
        ("post", "/stop"),
        ("get", "/status"),
        ("post", "/users/edit"),
        ("post", "/usage"),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["security"], json!([{"node_jwe": []}]), "{path}");
        assert!(
            op["responses"]["200"]["content"]["application/jose"].is_object(),
            "{path}"
        );
        assert_eq!(
            op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        if method == "post" {
            assert!(
                op["requestBody"]["content"]["application/jose"].is_object(),
                "{path}"
            );
        }
        // Every plaintext schema an operation names exists.
        for ext in ["x-jwe-request", "x-jwe-response", "x-jwe-error"] {
            if let Some(reference) = op[ext]["$ref"].as_str() {
                let name = reference.trim_start_matches("#/components/schemas/");
                assert!(
                    doc["components"]["schemas"][name].is_object(),
                    "{path} {ext} names {name}"
                );
            }
        }
    }
    assert_eq!(
        doc["paths"]["/start"]["post"]["x-jwe-request"]["$ref"],
        "#/components/schemas/StartRequest"
    );
    assert_eq!(
        doc["paths"]["/status"]["get"]["x-jwe-response"]["$ref"],
        "#/components/schemas/StatusResponse"
    );
}

fn property_names(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn field_names(value: &impl serde::Serialize) -> BTreeSet<String> {
    serde_json::to_value(value)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_plaintext_schemas_match_the_wire_types() {
    let doc = serde_json::to_value(node_agent_lib::api::openapi::document()).unwrap();
    // Every field set, so none is left out of the JSON.
    let user = WireUser {
        id: "u".into(),
        name: "n".into(),
        secret: "s".into(),
        proxy_id: Some("p".into()),
    };
    let text = |s: &str| s.to_owned();
    let inbound = InboundDescription {
        tag: text("t"),
        protocol: InboundProtocol::Vless,
        port: 443,
        port_range: Some("443-450".parse().unwrap()),
        user_ports: [(text("u"), 444)].into_iter().collect(),
        flow: text("xtls-rprx-vision"),
        method: text("aes-256-gcm"),
        network: Network::Grpc,
        header_type: text("http"),
        path: text("/p"),
        host: text("h"),
        service_name: text("s"),
        mode: text("multi"),
        authority: text("a"),
        seed: text("seed"),
        security: Security::Reality,
        sni: text("sni"),
        alpn: vec![text("h2")],
        fingerprint: text("chrome"),
        server_names: vec![text("sni")],
        short_ids: vec![text("")],
        public_key: text("k"),
        spider_x: text("/"),
        allow_insecure: true,
    };
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        ("WireUser", field_names(&user)),
        (
            "StartRequest",
            field_names(&StartRequest {
                users: vec![user.clone()],
            }),
        ),
        (
            "StartResponse",
            field_names(&StartResponse {
                user_config_template: TEMPLATE.into(),
                inbounds: vec![inbound.clone()],
            }),
        ),
        ("InboundDescription", field_names(&inbound)),
        (
            "StatusResponse",
            field_names(&StatusResponse {
                node_status: NodeStatus::Running,
                users: 1,
                core_uptime_secs: 2,
                core_restarts: 3,
                usage_journal: Some(JournalMark {
                    journal: "j".into(),
                    seq: 4,
                    batches: 5,
                }),
            }),
        ),
        (
            "JournalMark",
            field_names(&JournalMark {
                journal: "j".into(),
                seq: 4,
                batches: 5,
            }),
        ),
        (
            "UsersEditRequest",
            field_names(&UsersEditRequest {
                add_users: vec![user],
                del_users: vec!["x".into()],
            }),
        ),
        (
            "UsersEditResponse",
            field_names(&UsersEditResponse {
                user_ports: [(text("u"), 444)].into_iter().collect(),
            }),
        ),
        (
            "ErrorBody",
            field_names(&ErrorBody {
                error: "e".into(),
                message: Some("m".into()),
            }),
        ),
    ];
    for (schema, fields) in cases {
        assert_eq!(property_names(&doc, schema), fields, "{schema}");
    }
}

#[tokio::test]
async fn the_docs_are_served_by_their_own_router_and_not_by_the_api() {
    let (node, _, _) = running_node();
    let (status, page) = get(&docs(), "/docs/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("swagger-ui"));
    for path in ["/docs/", "/openapi.json"] {
        let (status, body) = get(&node.router, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"error": "unauthorized"})
        );
    }
    let request = Request::builder()
        .method("POST")
        .uri("/start")
        .header("content-type", "application/json")
        .body(Body::from(json!({"users": []}).to_string()))
        .unwrap();
    let (status, body) = send(&node.router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": "unauthorized"})
    );
}

// ---- metrics ----

/// `name{labels} value` per sample; every other line must be `# HELP`,
/// `# TYPE`, `# UNIT` or `# EOF`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"));
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ")
                    || comment.starts_with("TYPE ")
                    || comment.starts_with("UNIT ")
                    || comment == "EOF",
                "{line:?}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{line:?}");
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(node: &TestNode) -> BTreeMap<String, f64> {
    let router = metrics::router(Arc::new(AgentMetrics::new(node.agent.clone())));
    let response = get(&router, "/metrics").await;
    assert_eq!(response.0, StatusCode::OK);
    parse(&response.1)
}

#[tokio::test]
async fn metrics_show_the_core_up_with_its_users() {
    let (node, _, _) = running_node();
    let answer = call(
        &node,
        "POST",
        "/start",
        &json!({"users": [user(1), user(2)]}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);

    let m = scrape(&node).await;
    assert_eq!(m["xray_agent_core_up"], 1.0);
    assert_eq!(m["xray_agent_core_users"], 2.0);
    assert_eq!(m["xray_agent_core_uptime_seconds"], 1000.0);
    assert_eq!(m["xray_agent_core_restarts_total"], 0.0);
    assert_eq!(m["xray_agent_status_ok"], 1.0);
}

#[tokio::test]
async fn metrics_show_what_the_usage_collector_wrote() {
    let (node, _, _) = running_node();
    let usage = node.agent.usage().unwrap().clone();
    usage.collect().await.unwrap();
    usage.collect().await.unwrap();
    let m = scrape(&node).await;
    assert_eq!(m["xray_agent_usage_batches_appended_total"], 2.0);
    assert_eq!(m["xray_agent_usage_user_deltas_total"], 2.0);
    assert_eq!(m["xray_agent_usage_reads_total"], 2.0);
    assert_eq!(m["xray_agent_usage_journal_batches"], 2.0);
    assert!(m["xray_agent_usage_journal_bytes"] > 0.0);
    assert!(m.contains_key("xray_agent_usage_read_seconds_total"));
}

#[tokio::test]
async fn metrics_count_a_core_restart_behind_the_agents_back() {
    let (node, _, uptime) = running_node();
    let answer = call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    assert_eq!(answer.status, StatusCode::OK);
    // Another run of the core, which the agent did not start.
    uptime.store(1, Ordering::SeqCst);

    let m = scrape(&node).await;
    assert_eq!(m["xray_agent_core_restarts_total"], 1.0);
    assert_eq!(m["xray_agent_core_up"], 1.0);
}

#[tokio::test]
async fn metrics_show_a_stopped_core_as_down() {
    let (node, state, _) = running_node();
    state.store(STOPPED, Ordering::SeqCst);
    let m = scrape(&node).await;
    assert_eq!(m["xray_agent_core_up"], 0.0);
    assert_eq!(m["xray_agent_core_users"], 0.0);
    assert_eq!(m["xray_agent_status_ok"], 1.0);
}

#[tokio::test]
async fn metrics_say_when_the_status_is_unknown() {
    let (node, state, _) = running_node();
    let answer = call(&node, "POST", "/start", &json!({"users": [user(1)]})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(scrape(&node).await["xray_agent_status_ok"], 1.0);
    state.store(BROKEN, Ordering::SeqCst);
    let m = scrape(&node).await;
    assert_eq!(m["xray_agent_status_ok"], 0.0);
}

#[tokio::test]
async fn metrics_are_not_on_the_node_api() {
    let (node, _, _) = running_node();
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let (status, _) = send(&node.router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn docs_listen_is_off_by_default_and_set_by_file_or_env() {
    assert_eq!(Settings::default().docs_listen, None);
    let mut settings = Settings::from_toml("docs_listen = \"127.0.0.1:9102\"").unwrap();
    assert_eq!(
        settings.docs_listen,
        Some("127.0.0.1:9102".parse().unwrap())
    );
    settings
        .apply_env([("XNA_DOCS_LISTEN".to_owned(), String::new())])
        .unwrap();
    assert_eq!(settings.docs_listen, None);
    assert!(
        settings
            .apply_env([("XNA_DOCS_LISTEN".to_owned(), "nope".to_owned())])
            .is_err()
    );
}

#[test]
fn metrics_listen_is_off_by_default_and_set_by_file_or_env() {
    assert_eq!(Settings::default().metrics_listen, None);
    let mut settings = Settings::from_toml("metrics_listen = \"127.0.0.1:9101\"").unwrap();
    assert_eq!(
        settings.metrics_listen,
        Some("127.0.0.1:9101".parse().unwrap())
    );
    settings
        .apply_env([("XNA_METRICS_LISTEN".to_owned(), "127.0.0.1:9202".to_owned())])
        .unwrap();
    assert_eq!(
        settings.metrics_listen,
        Some("127.0.0.1:9202".parse().unwrap())
    );
    assert!(
        settings
            .apply_env([("XNA_METRICS_LISTEN".to_owned(), "nope".to_owned())])
            .is_err()
    );
}
