//! The dashboard's overview and node pages through the real router: every
//! page answers, start/stop/delete change the node and are audited like the
//! API's calls, roles hold (a read-only or users token sees no node button
//! and its posts are 403 with nothing changed), a hostile remark is
//! escaped, and a node's key is on no page but the answer that added it.

mod common;
mod dashboard_support;

use std::sync::Arc;

use axum::http::StatusCode;
use manager_lib::storage::memory::MemoryStorage;
use serde_json::{Value, json};

use common::{admin, new_user, running_node};
use dashboard_support::{BOOT, csrf_of, get, login, post, server};

const HOSTILE: &str = "<script>alert('x')</script>";

async fn node_status(router: &axum::Router, id: &str) -> (StatusCode, Value) {
    admin(router, BOOT, "GET", &format!("/nodes/{id}"), json!({})).await
}

async fn audit(router: &axum::Router) -> Vec<Value> {
    let (status, body) = admin(router, BOOT, "GET", "/audit", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    body["entries"].as_array().unwrap().clone()
}

async fn scoped(router: &axum::Router, name: &str, role: &str) -> String {
    let (status, created) = admin(
        router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": name, "role": role}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    created["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_overview_shows_the_fleet_and_refreshes_from_its_fragment() {
    let (router, fleet, _) = server(Arc::new(MemoryStorage::new()), false);
    let node = running_node(&router, BOOT, &fleet, "http://n1:8443").await;
    new_user(&router, BOOT, "alice").await;
    let cookie = login(&router, BOOT).await;
    let page = get(&router, "/ui/", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(r#"data-refresh="/ui/overview/fragment" data-every="10""#)
    );
    assert!(page.body.contains(&format!("/ui/nodes/{node}")));
    let fragment = get(&router, "/ui/overview/fragment", Some(&cookie)).await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(!fragment.body.contains("<html"), "a fragment, not a page");
    assert!(fragment.body.contains("Nodes in error (0)"));
    assert!(fragment.body.contains("Traffic, last 24 h"));
    assert!(fragment.body.contains("running (wanted: running)"));
}

#[tokio::test]
async fn nodes_start_stop_and_delete_from_the_list_and_each_change_is_audited() {
    let (router, fleet, _) = server(Arc::new(MemoryStorage::new()), false);
    let id = running_node(&router, BOOT, &fleet, "http://n1:8443").await;
    let (_, ops) = admin(
        &router,
        BOOT,
        "POST",
        "/token/new",
        json!({"name": "ops-admin", "role": "admin"}),
    )
    .await;
    let cookie = login(&router, ops["token"].as_str().unwrap()).await;
    let list = get(&router, "/ui/nodes", Some(&cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    for button in [
        ">Start</button>",
        ">Stop</button>",
        ">Delete</a>",
        ">Add node</a>",
    ] {
        assert!(list.body.contains(button), "{button}");
    }
    let csrf = list.csrf();
    let stop = post(
        &router,
        &format!("/ui/nodes/{id}/stop"),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(stop.status, StatusCode::SEE_OTHER, "{}", stop.body);
    assert_eq!(
        node_status(&router, &id).await.1["node"]["requiredStatus"],
        "Stopped"
    );
    let start = post(
        &router,
        &format!("/ui/nodes/{id}/start"),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    assert_eq!(
        node_status(&router, &id).await.1["node"]["requiredStatus"],
        "Running"
    );
    let confirm = get(&router, &format!("/ui/nodes/{id}/delete"), Some(&cookie)).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("http://n1:8443"));
    assert_eq!(
        node_status(&router, &id).await.0,
        StatusCode::OK,
        "asking deletes nothing"
    );
    let delete = post(
        &router,
        &format!("/ui/nodes/{id}/delete"),
        &cookie,
        &[("csrf", &confirm.csrf())],
    )
    .await;
    assert_eq!(delete.status, StatusCode::SEE_OTHER);
    assert_eq!(node_status(&router, &id).await.0, StatusCode::BAD_REQUEST);
    let calls: Vec<(String, String, Option<String>, u64)> = audit(&router)
        .await
        .iter()
        .filter(|e| e["actor"] == "ops-admin")
        .map(|e| {
            (
                e["call"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["target"].as_str().map(str::to_owned),
                e["result"].as_u64().unwrap(),
            )
        })
        .collect();
    for call in ["POST /node/stop", "POST /node/start", "POST /node/delete"] {
        assert!(
            calls
                .iter()
                .any(|(c, _, t, r)| c == call && t.as_deref() == Some(&id) && *r == 200),
            "{call} in {calls:?}"
        );
    }
    let missing = post(
        &router,
        &format!("/ui/nodes/{id}/start"),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.body.contains("node not exists"));
}

#[tokio::test]
async fn a_read_only_or_users_token_sees_no_node_button_and_its_posts_change_nothing() {
    let (router, fleet, _) = server(Arc::new(MemoryStorage::new()), false);
    let id = running_node(&router, BOOT, &fleet, "http://n1:8443").await;
    for role in ["read-only", "users"] {
        let token = scoped(&router, role, role).await;
        let cookie = login(&router, &token).await;
        let list = get(&router, "/ui/nodes", Some(&cookie)).await;
        assert_eq!(list.status, StatusCode::OK);
        assert!(list.body.contains("http://n1:8443"));
        for button in [">Start</button>", ">Stop</button>", ">Delete<", "Add node"] {
            assert!(!list.body.contains(button), "{role}: {button}");
        }
        let node_page = get(&router, &format!("/ui/nodes/{id}"), Some(&cookie)).await;
        assert_eq!(node_page.status, StatusCode::OK);
        assert!(!node_page.body.contains(">Stop</button>"));
        let csrf = list.csrf();
        for verb in ["stop", "delete"] {
            let answer = post(
                &router,
                &format!("/ui/nodes/{id}/{verb}"),
                &cookie,
                &[("csrf", &csrf)],
            )
            .await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{role} {verb}");
        }
        let add = post(
            &router,
            "/ui/nodes/new",
            &cookie,
            &[("csrf", &csrf), ("endpoint", "http://n2:8443")],
        )
        .await;
        assert_eq!(add.status, StatusCode::FORBIDDEN);
        let (status, node) = node_status(&router, &id).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(node["node"]["requiredStatus"], "Running");
        let refused: Vec<Value> = audit(&router)
            .await
            .into_iter()
            .filter(|e| e["actor"] == role && e["result"] == 403)
            .collect();
        assert_eq!(refused.len(), 3, "{role}: {refused:?}");
    }
    let (_, nodes) = admin(&router, BOOT, "GET", "/nodes", json!({})).await;
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1, "no node added");
}

#[tokio::test]
async fn a_hostile_remark_or_endpoint_is_escaped_on_every_page() {
    let (router, fleet, _) = server(Arc::new(MemoryStorage::new()), false);
    let id = running_node(&router, BOOT, &fleet, "http://n1:8443").await;
    let (status, _) = admin(
        &router,
        BOOT,
        "POST",
        "/node/profile",
        json!({"nodeID": id, "remark": HOSTILE}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let cookie = login(&router, BOOT).await;
    for path in [
        "/ui/".to_owned(),
        "/ui/overview/fragment".to_owned(),
        "/ui/nodes".to_owned(),
        format!("/ui/nodes/{id}"),
        format!("/ui/nodes/{id}/delete"),
    ] {
        let page = get(&router, &path, Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains("<script>alert"), "{path}: raw script");
        assert!(
            page.body.contains("&lt;script&gt;alert"),
            "{path}: the remark is shown, escaped"
        );
    }
    // A hostile endpoint in the add form's answer is escaped too.
    let csrf = csrf_of(&router, &cookie).await;
    let added = post(
        &router,
        "/ui/nodes/new",
        &cookie,
        &[
            ("csrf", &csrf),
            ("endpoint", "http://n2:8443/\"><script>x</script>"),
        ],
    )
    .await;
    assert!(!added.body.contains("<script>x"), "{}", added.body);
}

#[tokio::test]
async fn a_node_key_is_shown_once_with_the_agent_settings_and_on_no_other_page() {
    let (router, _, _) = server(Arc::new(MemoryStorage::new()), false);
    let cookie = login(&router, BOOT).await;
    let form = get(&router, "/ui/nodes/new", Some(&cookie)).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body
            .contains(r#"<label for="endpoint">Endpoint</label>"#)
    );
    assert!(form.body.contains(">Add</button>"));
    let added = post(
        &router,
        "/ui/nodes/new",
        &cookie,
        &[
            ("csrf", &form.csrf()),
            ("endpoint", "http://n9.example:9443"),
        ],
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert_eq!(added.headers["cache-control"], "no-store");
    let re = regex::Regex::new(
        r#"id="node-key" class="secret" type="text" readonly value="([A-Za-z0-9_-]{43})""#,
    )
    .unwrap();
    let key = re.captures(&added.body).expect("the key")[1].to_owned();
    assert!(
        added
            .body
            .contains(&format!("node_key = &quot;{key}&quot;"))
    );
    assert!(added.body.contains("listen = &quot;0.0.0.0:9443&quot;"));
    assert!(
        added
            .body
            .contains("xray-node-agent --config /etc/xray-node-agent/agent.toml")
    );
    let id = regex::Regex::new(r#"/ui/nodes/([0-9a-f-]{36})"#)
        .unwrap()
        .captures(&added.body)
        .unwrap()[1]
        .to_owned();
    let (_, nodes) = admin(&router, BOOT, "GET", "/nodes", json!({})).await;
    assert_eq!(nodes["nodes"][0]["id"], id.as_str());
    for path in [
        "/ui/".to_owned(),
        "/ui/overview/fragment".to_owned(),
        "/ui/nodes".to_owned(),
        "/ui/nodes/new".to_owned(),
        format!("/ui/nodes/{id}"),
        format!("/ui/nodes/{id}/delete"),
    ] {
        let page = get(&router, &path, Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains(&key), "{path} shows the key");
        assert!(!page.body.contains(BOOT), "{path} shows the admin token");
    }
    let audited = audit(&router).await;
    assert!(
        audited
            .iter()
            .any(|e| e["call"] == "POST /node/new" && e["target"] == id.as_str())
    );
    assert!(!serde_json::to_string(&audited).unwrap().contains(&key));
}

#[tokio::test]
async fn a_node_page_shows_its_inbounds_and_a_traffic_chart() {
    let (router, fleet, _) = server(Arc::new(MemoryStorage::new()), false);
    let id = running_node(&router, BOOT, &fleet, "http://n1:8443").await;
    let cookie = login(&router, BOOT).await;
    let page = get(&router, &format!("/ui/nodes/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Inbounds"));
    assert!(
        page.body
            .contains(r#"role="img" aria-label="Traffic of the last 14 days""#)
    );
    assert_eq!(page.body.matches("<rect ").count(), 14, "a bar per day");
    let unknown = get(
        &router,
        "/ui/nodes/6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22",
        Some(&cookie),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let garbage = get(&router, "/ui/nodes/not-an-id", Some(&cookie)).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
}
