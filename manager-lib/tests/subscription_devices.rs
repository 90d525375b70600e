//! The device limit on `GET /sub/{token}` through the real router: devices
//! sending `x-hwid` are recorded up to the limit (the settings' default or
//! the user's own), a device over it gets no nodes and says why, and the
//! admin lists and forgets devices.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use manager_lib::manager::Manager;
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::subscription::{SubscriptionSettings, Subscriptions};
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const TOKEN: &str = "test-admin-token";

struct Api {
    router: axum::Router,
    user: String,
    path: String,
}

impl Api {
    async fn new(settings: SubscriptionSettings) -> Self {
        let fleet = Arc::new(SimulatedFleet::new());
        let server = Server::build(
            Backends::new(Arc::new(MemoryStorage::new()), fleet.clone()),
            ServerSettings {
                admin_failure_limit: None,
                push_on_change: false,
                node_list_limit: None,
                subscription: Subscriptions::new(settings).unwrap(),
                ..ServerSettings::new(TOKEN)
            },
        );
        let manager: Arc<Manager> = server.manager.clone();
        let router = server.router;
        let node = common::running_node(&router, TOKEN, &fleet, "http://10.0.0.1:9000").await;
        let user = common::new_user(&router, TOKEN, "dana").await;
        common::admin(
            &router,
            TOKEN,
            "POST",
            "/user/enable",
            json!({"userID": user}),
        )
        .await;
        manager.push_pending(node.parse().unwrap()).await.unwrap();
        let (_, sub) = common::admin(
            &router,
            TOKEN,
            "GET",
            &format!("/users/{user}/subscription"),
            Value::Null,
        )
        .await;
        let path = sub["subscription"]["url"].as_str().unwrap().to_owned();
        Self { router, user, path }
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        common::admin(&self.router, TOKEN, method, path, body).await
    }

    /// The subscription as the app with `hwid` fetches it (`None`: an app
    /// that sends none): the status, headers, and how many links.
    async fn fetch(&self, hwid: Option<&str>, query: &str) -> (HeaderMap, String) {
        let mut req = Request::builder()
            .uri(format!("{}{query}", self.path))
            .header("user-agent", "Happ/3.1")
            .header("x-device-os", "Android")
            .header("x-ver-os", "14")
            .header("x-device-model", "Pixel 8");
        if let Some(h) = hwid {
            req = req.header("x-hwid", h);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (headers, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn links(&self, hwid: Option<&str>) -> (usize, HeaderMap) {
        let (headers, body) = self.fetch(hwid, "").await;
        let text = String::from_utf8(STANDARD.decode(body.trim()).unwrap()).unwrap();
        (text.lines().count(), headers)
    }
}

fn limited(limit: u32) -> SubscriptionSettings {
    SubscriptionSettings {
        device_limit: limit,
        ..SubscriptionSettings::default()
    }
}

#[tokio::test]
async fn devices_over_the_limit_get_no_nodes_and_are_told_why() {
    let api = Api::new(limited(2)).await;
    for hwid in ["device-aaaa-0001", "device-bbbb-0002"] {
        let (links, headers) = api.links(Some(hwid)).await;
        assert_eq!(links, 1, "{hwid}");
        assert!(headers.get("x-hwid-limit").is_none());
    }
    let (links, headers) = api.links(Some("device-cccc-0003")).await;
    assert_eq!(links, 0);
    assert_eq!(headers["x-hwid-limit"], "true");
    let announce = headers["announce"].to_str().unwrap();
    let text = STANDARD
        .decode(announce.strip_prefix("base64:").unwrap())
        .unwrap();
    assert!(String::from_utf8(text).unwrap().contains("Device limit"));
    // A known device keeps its nodes; the page says why the third has none.
    assert_eq!(api.links(Some("device-aaaa-0001")).await.0, 1);
    let (_, page) = api.fetch(Some("device-cccc-0003"), "?format=html").await;
    assert!(page.contains("Device limit reached"), "{page}");
    // Apps without a hardware id are not counted (require_hwid is off).
    assert_eq!(api.links(None).await.0, 1);
    assert_eq!(api.links(Some("bad id")).await.0, 1);
}

#[tokio::test]
async fn the_admin_lists_and_forgets_devices() {
    let api = Api::new(limited(1)).await;
    assert_eq!(api.links(Some("device-aaaa-0001")).await.0, 1);
    assert_eq!(api.links(Some("device-bbbb-0002")).await.0, 0);
    let (status, listed) = api
        .admin("GET", &format!("/users/{}/devices", api.user), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let devices = listed["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["hwid"], "device-aaaa-0001");
    assert_eq!(devices[0]["model"], "Pixel 8");
    assert_eq!(devices[0]["os"], "Android");
    assert_eq!(devices[0]["userAgent"], "Happ/3.1");
    let forget = json!({"userID": api.user, "hwid": "device-aaaa-0001"});
    let (status, _) = api
        .admin("POST", "/user/device/delete", forget.clone())
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.admin("POST", "/user/device/delete", forget).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "device not exists");
    assert_eq!(api.links(Some("device-bbbb-0002")).await.0, 1, "room again");
}

#[tokio::test]
async fn a_users_own_limit_replaces_the_default() {
    let api = Api::new(limited(1)).await;
    let (status, body) = api
        .admin(
            "POST",
            "/user/device-limit",
            json!({"userID": api.user, "deviceLimit": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["deviceLimit"], 0);
    for n in 0..5 {
        assert_eq!(api.links(Some(&format!("device-{n:012}"))).await.0, 1);
    }
    api.admin(
        "POST",
        "/user/device-limit",
        json!({"userID": api.user, "deviceLimit": 5}),
    )
    .await;
    assert_eq!(api.links(Some("device-new-000001")).await.0, 0);
    let (status, body) = api
        .admin(
            "POST",
            "/user/device-limit",
            json!({"userID": api.user, "deviceLimit": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["user"].get("deviceLimit").is_none());
}

#[tokio::test]
async fn with_require_hwid_an_app_without_one_gets_no_nodes() {
    let api = Api::new(SubscriptionSettings {
        require_hwid: true,
        ..limited(3)
    })
    .await;
    let (links, headers) = api.links(None).await;
    assert_eq!(links, 0);
    assert_eq!(headers["x-hwid-limit"], "true");
    assert_eq!(api.links(Some("device-aaaa-0001")).await.0, 1);
}
