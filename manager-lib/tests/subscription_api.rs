//! The subscription calls through the real router (`oneshot`): the user's
//! `GET /sub/{token}` (formats, headers, what it lists), the URL shown and
//! rotated, and node profiles; in-memory storage, simulated nodes that
//! describe three inbounds.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use manager_lib::cache::MemoryCache;
use manager_lib::domain::{InboundProtocol, Network, PageRequest, Security};
use manager_lib::manager::{Manager, ManagerSettings};
use manager_lib::server::{Backends, Server, ServerSettings};
use manager_lib::storage::memory::MemoryStorage;
use manager_lib::subscription::{SubscriptionSettings, testing};
use manager_lib::transport::simulated::SimulatedFleet;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const TOKEN: &str = "test-admin-token";

struct Api {
    router: axum::Router,
    fleet: Arc<SimulatedFleet>,
    manager: Arc<Manager>,
}

fn three_inbounds() -> Vec<manager_lib::domain::InboundDescription> {
    let mut vless = testing::inbound("vless-in", InboundProtocol::Vless, 443);
    vless.security = Security::Tls;
    vless.sni = "node.example.com".into();
    let mut vmess = testing::inbound("vmess-ws", InboundProtocol::Vmess, 8080);
    vmess.network = Network::Ws;
    vmess.path = "/vm".into();
    let mut trojan = testing::inbound("trojan-in", InboundProtocol::Trojan, 8443);
    trojan.security = Security::Tls;
    vec![vless, vmess, trojan]
}

impl Api {
    fn new(subscription: SubscriptionSettings) -> Self {
        Self::build(subscription, false)
    }

    /// With the in-memory cache in front of the storage, as the shipped
    /// manager runs.
    fn cached(subscription: SubscriptionSettings) -> Self {
        Self::build(subscription, true)
    }

    fn build(subscription: SubscriptionSettings, cached: bool) -> Self {
        let fleet = Arc::new(SimulatedFleet::new().with_inbounds(three_inbounds()));
        let settings = ServerSettings {
            manager: ManagerSettings {
                // Usage read again on every fetch of a cached row: the
                // test pulls usage and fetches at once.
                subscription_usage_max_age: Duration::ZERO,
                ..ManagerSettings::default()
            },
            admin_failure_limit: None,
            push_on_change: false,
            node_list_limit: None,
            subscription: manager_lib::subscription::Subscriptions::new(subscription).unwrap(),
            ..ServerSettings::new(TOKEN)
        };
        let mut backends = Backends::new(Arc::new(MemoryStorage::new()), fleet.clone());
        if cached {
            backends = backends.with_cache(Arc::new(MemoryCache::new()));
        }
        let server = Server::build(backends, settings);
        Self {
            router: server.router,
            fleet,
            manager: server.manager,
        }
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        common::admin(&self.router, TOKEN, method, path, body).await
    }

    /// A running node and an enabled user on it; the user's id.
    async fn user_on_a_node(&self, name: &str) -> String {
        let node =
            common::running_node(&self.router, TOKEN, &self.fleet, "http://10.0.0.1:9000").await;
        let user = common::new_user(&self.router, TOKEN, name).await;
        let (status, _) = self
            .admin("POST", "/user/enable", json!({"userID": user}))
            .await;
        assert_eq!(status, StatusCode::OK);
        self.manager
            .push_pending(node.parse().unwrap())
            .await
            .unwrap();
        user
    }

    async fn url(&self, user: &str) -> String {
        let (status, body) = self
            .admin("GET", &format!("/users/{user}/subscription"), Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["subscription"]["url"].as_str().unwrap().to_owned()
    }

    async fn fetch(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn decoded_links(body: &str) -> Vec<String> {
    let text = String::from_utf8(STANDARD.decode(body.trim()).unwrap()).unwrap();
    text.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn the_base64_list_has_one_link_per_inbound_and_the_usage_headers() {
    let api = Api::new(SubscriptionSettings::default());
    let user = api.user_on_a_node("alice").await;
    let url = api.url(&user).await;
    assert!(url.starts_with("/sub/"), "{url}");
    let (status, headers, body) = api.fetch(&url, &[("user-agent", "v2rayNG/1.9.46")]).await;
    assert_eq!(status, StatusCode::OK);
    let links = decoded_links(&body);
    assert_eq!(links.len(), 3, "{links:?}");
    assert!(
        links[0].starts_with(&format!("vless://{user}@10.0.0.1:443?")),
        "{}",
        links[0]
    );
    assert!(links[1].starts_with("vmess://"));
    assert!(links[2].starts_with("trojan://"));
    assert_eq!(
        header(&headers, "subscription-userinfo"),
        "upload=0; download=0; total=0; expire=0"
    );
    assert_eq!(
        header(&headers, "profile-title"),
        format!("base64:{}", STANDARD.encode("alice"))
    );
    assert_eq!(header(&headers, "profile-update-interval"), "12");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    assert!(header(&headers, "content-disposition").starts_with("attachment;"));
    assert!(header(&headers, "content-type").starts_with("text/plain"));
    assert!(headers.get("announce").is_none());
}

#[tokio::test]
async fn the_usage_header_shows_what_was_counted_since_a_cached_fetch() {
    let api = Api::cached(SubscriptionSettings::default());
    let user = api.user_on_a_node("carol").await;
    let url = api.url(&user).await;
    // The first fetch leaves the user's row in the cache.
    let (status, headers, _) = api.fetch(&url, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "subscription-userinfo"),
        "upload=0; download=0; total=0; expire=0"
    );
    let endpoint = "http://10.0.0.1:9000";
    api.fleet
        .record_usage(endpoint, &[(user.parse().unwrap(), 1_000, 25_000)])
        .expect("the node is in the fleet");
    let node = api
        .manager
        .list_nodes(&PageRequest::first(10))
        .await
        .unwrap()
        .items
        .remove(0);
    let pulled = api.manager.pull_usage(&node).await.unwrap();
    assert_eq!(pulled.user_deltas, 1);
    let (status, headers, body) = api.fetch(&url, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "subscription-userinfo"),
        "upload=1000; download=25000; total=0; expire=0"
    );
    assert_eq!(decoded_links(&body).len(), 3, "still served from the cache");
}

#[tokio::test]
async fn the_format_follows_the_query_then_the_user_agent_then_accept() {
    let api = Api::new(SubscriptionSettings::default());
    let user = api.user_on_a_node("bob").await;
    let url = api.url(&user).await;
    /// A query, the request's headers, and the content type it must get.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 6] = [
        ("?format=clash", &[], "text/yaml"),
        (
            "?format=xray",
            &[("user-agent", "clash-verge/2")],
            "application/json",
        ),
        (
            "",
            &[("user-agent", "SFA/1.10.1 (sing-box 1.10.1)")],
            "application/json",
        ),
        ("", &[("user-agent", "mihomo/1.19")], "text/yaml"),
        ("", &[("accept", "text/html,*/*")], "text/html"),
        ("?format=links", &[], "text/plain"),
    ];
    for (query, headers, want) in cases {
        let (status, got, body) = api.fetch(&format!("{url}{query}"), headers).await;
        assert_eq!(status, StatusCode::OK, "{query} {headers:?}");
        assert!(
            header(&got, "content-type").starts_with(want),
            "{query} {headers:?}: {body}"
        );
    }
    let (_, _, sing_box) = api.fetch(&format!("{url}?format=sing-box"), &[]).await;
    let config: Value = serde_json::from_str(&sing_box).unwrap();
    assert!(config["outbounds"].as_array().unwrap().len() >= 3);
    let (_, html_headers, html) = api.fetch(&format!("{url}?format=html"), &[]).await;
    assert!(html.contains("<svg"), "a QR code per link");
    assert!(html_headers.get("content-disposition").is_none());
    assert!(header(&html_headers, "content-security-policy").starts_with("default-src 'none'"));
}

#[tokio::test]
async fn a_rotated_token_is_unknown_at_once_and_the_new_one_works() {
    let api = Api::new(SubscriptionSettings::default());
    let user = api.user_on_a_node("carol").await;
    let old = api.url(&user).await;
    assert_eq!(api.fetch(&old, &[]).await.0, StatusCode::OK);
    let (status, rotated) = api
        .admin("POST", "/user/subscription/rotate", json!({"userID": user}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["subscription"]["url"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let (status, _, body) = api.fetch(&old, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "not found"
    );
    // The user stays on their nodes: the new URL lists them at once.
    let (status, _, body) = api.fetch(&new, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decoded_links(&body).len(), 3);
    assert_eq!(api.url(&user).await, new);
}

#[tokio::test]
async fn tokens_that_name_nobody_are_not_found() {
    let api = Api::new(SubscriptionSettings::default());
    let user = api.user_on_a_node("dave").await;
    let url = api.url(&user).await;
    let token = url.trim_start_matches("/sub/");
    let mut other_key = token.to_owned();
    let last = if token.ends_with('A') { "B" } else { "A" };
    other_key.replace_range(token.len() - 1.., last);
    let unknown_user =
        manager_lib::domain::SubscriptionKey::random().token(manager_lib::domain::UserId::random());
    for path in [
        "/sub/x".to_owned(),
        format!("/sub/{other_key}"),
        format!("/sub/{}", unknown_user.expose()),
        format!("/sub/{token}x"),
    ] {
        let (status, _, body) = api.fetch(&path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "not found"
        );
    }
    let (status, body) = api
        .admin(
            "POST",
            "/user/subscription/rotate",
            json!({"userID": manager_lib::domain::UserId::random().to_string()}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "user not exists");
}

#[tokio::test]
async fn a_disabled_user_gets_an_empty_list_not_an_error() {
    let api = Api::new(SubscriptionSettings::default());
    let user = api.user_on_a_node("erin").await;
    let url = api.url(&user).await;
    let (status, _) = api
        .admin("POST", "/user/disable", json!({"userID": user}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, body) = api.fetch(&url, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(decoded_links(&body).is_empty(), "{body}");
    assert!(headers.get("subscription-userinfo").is_some());
}

#[tokio::test]
async fn the_operators_settings_reach_the_headers() {
    let settings: SubscriptionSettings = toml::from_str(
        "public_url = \"https://sub.example.com\"\n\
         title = \"VPN · {name}\"\n\
         update_interval_hours = 3\n\
         support_url = \"https://t.me/support\"\n\
         web_page_url = \"https://example.com\"\n\
         announce = \"Maintenance at 03:00 UTC\"\n",
    )
    .unwrap();
    let api = Api::new(settings);
    let user = api.user_on_a_node("frank").await;
    let url = api.url(&user).await;
    let path = url.strip_prefix("https://sub.example.com").unwrap();
    let (status, headers, _) = api.fetch(path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "profile-title"),
        format!("base64:{}", STANDARD.encode("VPN · frank"))
    );
    assert_eq!(header(&headers, "profile-update-interval"), "3");
    assert_eq!(header(&headers, "support-url"), "https://t.me/support");
    assert_eq!(
        header(&headers, "profile-web-page-url"),
        "https://example.com"
    );
    assert_eq!(
        header(&headers, "announce"),
        format!("base64:{}", STANDARD.encode("Maintenance at 03:00 UTC"))
    );
}

#[tokio::test]
async fn a_node_profile_renames_readdresses_and_hides_inbounds() {
    let api = Api::new(SubscriptionSettings::default());
    let user = api.user_on_a_node("gina").await;
    let url = api.url(&user).await;
    let (_, nodes) = api.admin("GET", "/nodes", Value::Null).await;
    let node = nodes["nodes"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .admin(
            "POST",
            "/node/profile",
            json!({
                "nodeID": node,
                "address": "nl.example.com",
                "remark": "Amsterdam",
                "inbounds": {
                    "vmess-ws": {"hidden": true},
                    "trojan-in": {"addresses": ["cdn1.example.com", "cdn2.example.com"], "sni": "front.example.com"}
                }
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node"]["served"].as_array().unwrap().len(), 3);
    let (_, _, text) = api.fetch(&format!("{url}?format=links"), &[]).await;
    let links: Vec<&str> = text.lines().collect();
    assert_eq!(links.len(), 3, "{links:?}");
    assert!(links[0].contains("@nl.example.com:443"), "{}", links[0]);
    assert!(links[0].ends_with("#Amsterdam%20vless-in"), "{}", links[0]);
    assert!(links[1].contains("@cdn1.example.com:8443"), "{}", links[1]);
    assert!(links[1].contains("sni=front.example.com"), "{}", links[1]);
    assert!(links[2].contains("@cdn2.example.com:8443"), "{}", links[2]);
    // A bad profile is refused whole and changes nothing.
    let (status, body) = api
        .admin(
            "POST",
            "/node/profile",
            json!({"nodeID": node, "address": "not a host"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid profile");
    let (_, details) = api
        .admin("GET", &format!("/nodes/{node}"), Value::Null)
        .await;
    assert_eq!(details["node"]["profile"]["address"], "nl.example.com");
    assert_eq!(details["node"]["inbounds"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn the_subscription_lists_the_nodes_the_node_list_lists() {
    let api = Api::new(SubscriptionSettings::default());
    let user = api.user_on_a_node("hank").await;
    // A second node, started after the user was enabled, holds the user
    // only once it has applied the change; a stopped third never does.
    let second = common::running_node(&api.router, TOKEN, &api.fleet, "http://10.0.0.2:9000").await;
    api.manager
        .push_pending(second.parse().unwrap())
        .await
        .unwrap();
    api.fleet.add_node("http://10.0.0.3:9000");
    let (_, _) = api
        .admin(
            "POST",
            "/node/new",
            json!({"endpoint": "http://10.0.0.3:9000"}),
        )
        .await;
    let url = api.url(&user).await;
    let (status, _, node_list) = api.fetch(&format!("/user/{user}-hank/nodes"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let node_list: Vec<String> = serde_json::from_str(&node_list).unwrap();
    assert_eq!(node_list.len(), 2);
    let (_, _, body) = api.fetch(&url, &[]).await;
    let links = decoded_links(&body);
    assert_eq!(links.len(), node_list.len() * 3, "three inbounds a node");
    assert!(links.iter().any(|l| l.contains("@10.0.0.2:")));
    assert!(!links.iter().any(|l| l.contains("@10.0.0.3:")));
}
