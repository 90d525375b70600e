//! The manager's HTTP contract, row by row of the SPEC's table, through the
//! real router (`oneshot`), with in-memory storage and a simulated fleet.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use manager_lib::manager::Manager;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};

const TOKEN: &str = "test-admin-token";

struct Api {
    router: axum::Router,
    fleet: Arc<SimulatedFleet>,
    manager: Arc<Manager>,
}

impl Api {
    fn new() -> Self {
        let fleet = Arc::new(SimulatedFleet::new());
        // Failed admin calls are not throttled here (every call shares one
        // client): that has its own tests in admin_auth.rs. Changes reach the
        // nodes only when a test pushes them.
        let settings = ServerSettings {
            admin_failure_limit: None,
            push_on_change: false,
            ..ServerSettings::new(TOKEN)
        };
        let server = Server::build(
            Backends::new(Arc::new(MemoryStorage::new()), fleet.clone()),
            settings,
        );
        Self {
            router: server.router,
            fleet,
            manager: server.manager,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let (status, bytes) =
            common::send(&self.router, method, path, body.unwrap_or(""), token).await;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}"))
        };
        (status, value)
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let body = body.to_string();
        self.call(
            method,
            path,
            (method == "POST").then_some(body.as_str()),
            Some(TOKEN),
        )
        .await
    }

    async fn new_user(&self, name: &str) -> String {
        common::new_user(&self.router, TOKEN, name).await
    }

    async fn running_node(&self, endpoint: &str) -> String {
        common::running_node(&self.router, TOKEN, &self.fleet, endpoint).await
    }
}

impl Api {
    async fn running_node_id(&self, endpoint: &str) -> manager_lib::domain::NodeId {
        let (_, body) = self
            .admin("POST", "/node/new", json!({"endpoint": endpoint}))
            .await;
        body["nodeID"].as_str().unwrap().parse().unwrap()
    }
}

fn error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text in {body}"))
}

#[tokio::test]
async fn node_new_returns_id_and_key_and_is_idempotent() {
    let api = Api::new();
    let (status, first) = api
        .admin(
            "POST",
            "/node/new",
            json!({"endpoint": "http://10.0.0.1:8080"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["nodeID"].as_str().unwrap().len(), 36);
    assert_eq!(first["nodeKey"].as_str().unwrap().len(), 43);
    let (_, again) = api
        .admin(
            "POST",
            "/node/new",
            json!({"endpoint": "http://10.0.0.1:8080/"}),
        )
        .await;
    assert_eq!(again, first);
}

#[tokio::test]
async fn node_new_rejects_an_invalid_endpoint() {
    let api = Api::new();
    for endpoint in ["", "not a url", "ftp://x", "http://"] {
        let (status, body) = api
            .admin("POST", "/node/new", json!({"endpoint": endpoint}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error(&body), "invalid endpoint");
    }
    let (_, nodes) = api.admin("GET", "/nodes", json!(null)).await;
    assert_eq!(nodes["nodes"], json!([]));
}

#[tokio::test]
async fn node_start_and_stop_of_an_unknown_node_say_node_not_exists() {
    let api = Api::new();
    for path in ["/node/start", "/node/stop", "/node/delete"] {
        for id in [uuid_like(), "garbage".to_owned()] {
            let (status, body) = api.admin("POST", path, json!({"nodeID": id})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(error(&body), "node not exists");
        }
    }
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

#[tokio::test]
async fn node_start_accepts_both_spellings_and_lists_the_node_running() {
    let api = Api::new();
    api.fleet.add_node("http://n1");
    let (_, body) = api
        .admin("POST", "/node/new", json!({"endpoint": "http://n1"}))
        .await;
    let id = body["nodeID"].as_str().unwrap();
    let (status, _) = api
        .admin("POST", "/node/start", json!({"node_id": id}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, nodes) = api.admin("GET", "/nodes", json!(null)).await;
    assert_eq!(
        nodes["nodes"],
        json!([{"id": id, "endpoint": "http://n1", "actualStatus": "Running", "requiredStatus": "Running"}])
    );
    let (status, _) = api.admin("POST", "/node/stop", json!({"nodeID": id})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, nodes) = api.admin("GET", "/nodes", json!(null)).await;
    assert_eq!(nodes["nodes"][0]["actualStatus"], "Stopped");
    assert_eq!(nodes["nodes"][0]["requiredStatus"], "Stopped");
}

#[tokio::test]
async fn an_unreachable_node_answers_bad_gateway_on_start() {
    let api = Api::new();
    let (_, body) = api
        .admin("POST", "/node/new", json!({"endpoint": "http://nowhere"}))
        .await;
    let (status, body) = api
        .admin("POST", "/node/start", json!({"nodeID": body["nodeID"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(error(&body), "node unreachable");
}

#[tokio::test]
async fn user_new_needs_a_name_and_names_repeat() {
    let api = Api::new();
    let (status, body) = api
        .admin("POST", "/user/new", json!({"userName": "bob"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["name"], "bob");
    let id1 = body["user"]["id"].as_str().unwrap().to_owned();
    let (_, body) = api
        .admin("POST", "/user/new", json!({"user_name": "bob"}))
        .await;
    assert_ne!(body["user"]["id"].as_str().unwrap(), id1);
    for bad in [
        json!({}),
        json!({"userName": ""}),
        json!({"userName": "  "}),
        json!({"userName": 5}),
    ] {
        let (status, body) = api.admin("POST", "/user/new", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(["bad request", "invalid user name"].contains(&error(&body)));
    }
    let (_, users) = api.admin("GET", "/users", json!(null)).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn enable_disable_and_delete_of_an_unknown_user_say_user_not_exists() {
    let api = Api::new();
    for path in ["/user/enable", "/user/disable", "/user/delete"] {
        for id in [uuid_like(), "x".to_owned()] {
            let (status, body) = api.admin("POST", path, json!({"userID": id})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(error(&body), "user not exists");
        }
    }
}

#[tokio::test]
async fn a_user_sees_their_nodes_while_enabled() {
    let api = Api::new();
    api.running_node("http://n1").await;
    let id = api.new_user("alice-in-wonderland").await;
    let path = format!("/user/{id}-alice-in-wonderland/nodes");
    let (status, body) = api.call("GET", &path, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));
    let (status, _) = api
        .admin("POST", "/user/enable", json!({"user_id": id}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The heartbeat (not running here) pushes the pending add; do its work.
    let node = api.running_node_id("http://n1").await;
    api.manager.push_pending(node).await.unwrap();
    let (status, body) = api.call("GET", &path, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!([format!(
            "vless://{id}@sim:443?security=none#alice-in-wonderland"
        )])
    );
    api.admin("POST", "/user/disable", json!({"userID": id}))
        .await;
    let (_, body) = api.call("GET", &path, None, None).await;
    assert_eq!(body, json!([]), "a disabled user is on no node at once");
}

#[tokio::test]
async fn the_node_list_answers_422_for_a_wrong_name_or_unknown_id() {
    let api = Api::new();
    let id = api.new_user("alice").await;
    for path in [
        format!("/user/{id}-bob/nodes"),
        format!("/user/{id}-alice%20/nodes"),
        format!("/user/{id}/nodes"),
        format!("/user/{}-alice/nodes", uuid_like()),
        "/user/short-alice/nodes".to_owned(),
        "/user/%FF%FE-x/nodes".to_owned(),
    ] {
        let (status, body) = api.call("GET", &path, None, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(error(&body), "user id and name do not match");
    }
    let (status, _) = api
        .call("GET", &format!("/user/{id}-alice/nodes"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn admin_calls_need_the_token_and_change_nothing_without_it() {
    let api = Api::new();
    let calls = [
        ("POST", "/node/new", r#"{"endpoint":"http://n1"}"#),
        ("POST", "/node/start", r#"{"nodeID":"x"}"#),
        ("POST", "/node/stop", r#"{"nodeID":"x"}"#),
        ("POST", "/node/delete", r#"{"nodeID":"x"}"#),
        ("GET", "/nodes", ""),
        ("POST", "/user/new", r#"{"userName":"x"}"#),
        ("POST", "/user/enable", r#"{"userID":"x"}"#),
        ("POST", "/user/disable", r#"{"userID":"x"}"#),
        ("POST", "/user/delete", r#"{"userID":"x"}"#),
        ("GET", "/users", ""),
    ];
    for (method, path, body) in calls {
        for token in [None, Some("wrong"), Some("")] {
            let (status, resp) = api.call(method, path, Some(body), token).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(error(&resp), "unauthorized");
        }
    }
    let (_, nodes) = api.admin("GET", "/nodes", json!(null)).await;
    assert_eq!(nodes["nodes"], json!([]));
    let (_, users) = api.admin("GET", "/users", json!(null)).await;
    assert_eq!(users["users"], json!([]));
}

#[tokio::test]
async fn bodies_that_are_not_the_expected_json_are_bad_requests() {
    let api = Api::new();
    for body in ["", "not json", "[]", r#"{"nodeID": 5}"#, "{\"endpoint\":"] {
        for path in ["/node/new", "/node/start", "/user/enable"] {
            let (status, resp) = api.call("POST", path, Some(body), Some(TOKEN)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body:?}");
            assert_eq!(error(&resp), "bad request");
        }
    }
    let huge = format!(r#"{{"userName":"{}"}}"#, "x".repeat(100_000));
    let (status, resp) = api
        .call("POST", "/user/new", Some(&huge), Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&resp), "bad request");
}

#[tokio::test]
async fn lists_page_with_limit_and_after() {
    let api = Api::new();
    for i in 0..5 {
        api.new_user(&format!("u{i}")).await;
    }
    let (_, first) = api.admin("GET", "/users?limit=2", json!(null)).await;
    assert_eq!(first["users"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    let (_, second) = api
        .admin("GET", &format!("/users?limit=10&after={next}"), json!(null))
        .await;
    assert_eq!(second["users"].as_array().unwrap().len(), 3);
    assert!(second.get("next").is_none());
    let (status, body) = api.admin("GET", "/users?limit=abc", json!(null)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body), "bad request");
}

#[tokio::test]
async fn delete_calls_remove_users_and_nodes() {
    let api = Api::new();
    let node = api.running_node("http://n1").await;
    let user = api.new_user("alice").await;
    let (status, _) = api
        .admin("POST", "/user/delete", json!({"userID": user}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .call("GET", &format!("/user/{user}-alice/nodes"), None, None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .admin("POST", "/node/delete", json!({"nodeID": node}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !api.fleet.is_running("http://n1"),
        "a deleted node is stopped"
    );
    let (_, nodes) = api.admin("GET", "/nodes", json!(null)).await;
    assert_eq!(nodes["nodes"], json!([]));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let api = Api::new();
    let (status, body) = api.call("GET", "/nope", None, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body), "not found");
    let (status, body) = api.call("DELETE", "/user/new", None, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error(&body), "method not allowed");
}

#[tokio::test]
async fn user_edit_sets_clears_and_leaves_plan_fields() {
    let api = Api::new();
    let id = api.new_user("bob").await;
    let edit = |fields: Value| {
        let mut body = fields;
        body["userID"] = json!(id);
        api.admin("POST", "/user/edit", body)
    };
    let (status, body) = edit(json!({
        "dataLimit": 1000,
        "expireAt": 4_000_000_000_i64,
        "resetStrategy": "month",
        "resetDay": 5,
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = &body["user"];
    assert_eq!(
        (
            &user["dataLimit"],
            &user["expireAt"],
            &user["resetStrategy"],
            &user["resetDay"]
        ),
        (
            &json!(1000),
            &json!(4_000_000_000_i64),
            &json!("month"),
            &json!(5)
        )
    );
    // `null` clears, absent leaves, a day alone moves the monthly reset.
    let (status, body) = edit(json!({"data_limit": null, "resetDay": 20})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = &body["user"];
    assert!(user.get("dataLimit").is_none(), "{user}");
    assert_eq!(user["expireAt"], 4_000_000_000_i64);
    assert_eq!(
        (&user["resetStrategy"], &user["resetDay"]),
        (&json!("month"), &json!(20))
    );
    // Refused: nothing changes.
    let before = api.admin("GET", &format!("/users/{id}"), json!(null)).await;
    for bad in [
        json!({"onHoldSecs": 60}),
        json!({"resetDay": 31}),
        json!({"dataLimit": 0}),
        json!({"resetStrategy": "hourly"}),
    ] {
        let (status, body) = edit(bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error(&body), "invalid plan", "{bad}");
    }
    let (status, body) = edit(json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&body), "bad request");
    let after = api.admin("GET", &format!("/users/{id}"), json!(null)).await;
    assert_eq!(after, before);
    // An unknown user is told before a bad field.
    for fields in [json!({"dataLimit": 5}), json!({"resetStrategy": "hourly"})] {
        let mut body = fields;
        body["userID"] = json!(uuid_like());
        let (status, body) = api.admin("POST", "/user/edit", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error(&body), "user not exists");
    }
    // A hold with the expiry cleared is a plan.
    let (status, body) = edit(json!({"expireAt": null, "onHoldSecs": 60})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["onHoldSecs"], 60);
    assert!(body["user"].get("expireAt").is_none());
}
