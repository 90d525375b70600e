//! Subscriptions end to end: the real manager, one real agent over a real
//! V2Ray 4.34 with VLESS tcp+TLS, VMess ws and Trojan tcp+TLS (a
//! self-signed certificate; the node's profile tells clients to skip
//! verifying it), one user. The user's subscription is fetched over HTTP
//! in each format and run by the client app that imports it:
//!
//! - the base64 list: Mihomo, fetching the subscription URL itself as a
//!   proxy provider (what v2rayN-style apps import);
//! - Xray JSON: V2Ray 4.34, one config per entry;
//! - sing-box JSON: sing-box 1.14, each outbound selected in turn;
//! - Clash Meta YAML: Mihomo, each proxy selected in turn.
//!
//! Every app fetches known bytes through every inbound; then the user is
//! disabled, the next fetch of the subscription lists nothing, and every
//! app fails.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tests::clients::{
    ClientApp, assert_all_fetch, assert_all_refused, country_mmdb, mihomo_binary, run_mihomo,
    run_mihomo_in, run_sing_box, run_v2ray, sing_box_binary, v2ray_client_binary,
};
use tests::fleet::ManagerProcess;
use tests::origin::Origin;
use tests::tls_node::{TROJAN_TAG, TlsNode};
use xray_core_client::testing::{VLESS_TAG, free_port};

const LONG: Duration = Duration::from_secs(30);

async fn fetch(manager: &ManagerProcess, path: &str, format: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}?format={format}", manager.url))
        .send()
        .await
        .expect("the manager answers");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn base64_links(body: &str) -> Vec<String> {
    let text = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("standard base64");
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls the subscription until it lists `n` links.
async fn wait_for_links(manager: &ManagerProcess, path: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LONG;
    loop {
        let (status, body) = fetch(manager, path, "base64").await;
        assert_eq!(status, 200, "{body}");
        let links = base64_links(&body);
        if links.len() == n {
            return links;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription never listed {n} links: {links:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The proxy names of a served Clash config (one JSON object per line
/// under `proxies:`).
fn clash_names(yaml: &str) -> Vec<String> {
    let proxies = yaml.split("\nproxy-groups:").next().unwrap();
    proxies
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .filter_map(|item| serde_json::from_str::<Value>(item).ok())
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_carries_real_bytes_until_the_user_is_disabled() {
    let began = Instant::now();
    let (Some(v2ray), Some(sing_box), Some(mihomo), Some(mmdb)) = (
        v2ray_client_binary(),
        sing_box_binary(),
        mihomo_binary(),
        country_mmdb(),
    ) else {
        return;
    };
    let manager = ManagerProcess::start(200, &[]).await;
    let listen = free_port();
    let (node_id, key) = manager
        .new_node(&format!("http://127.0.0.1:{listen}"))
        .await;
    let mut node = TlsNode::new();
    let _agent = node.start_agent(&key, &v2ray, listen).await;
    let insecure = json!({"allowInsecure": true});
    let (status, body) = manager
        .post(
            "/node/profile",
            json!({
                "nodeID": node_id,
                "remark": "Local",
                "inbounds": { VLESS_TAG: insecure, TROJAN_TAG: insecure },
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = manager
        .post("/node/start", json!({"nodeID": node_id}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, created) = manager
        .post("/user/new", json!({"userName": "alice"}))
        .await;
    let user = created["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = manager.post("/user/enable", json!({"userID": user})).await;
    assert_eq!(status, 200);
    let (_, sub) = manager.get(&format!("/users/{user}/subscription")).await;
    let path = sub["subscription"]["url"].as_str().unwrap().to_owned();
    let links = wait_for_links(&manager, &path, 3).await;
    assert!(links[0].starts_with(&format!("vless://{user}@127.0.0.1:{}", node.vless)));
    let origin = Origin::start().await;

    let mut apps: Vec<(String, ClientApp)> = Vec::new();
    // The base64 list, as a provider Mihomo fetches from the manager.
    let provider = format!(
        "proxy-providers:\n  sub:\n    type: http\n    url: \"{}{path}?format=base64\"\n    \
         interval: 3600\n    path: ./sub.txt\nproxy-groups:\n  - {{\"name\": \"Proxy\", \
         \"type\": \"select\", \"use\": [\"sub\"]}}\nrules:\n  - MATCH,Proxy\n",
        manager.url
    );
    // Mihomo's link import reads `allowInsecure` for Trojan but not for
    // VLESS, so the VLESS TLS link (self-signed here) goes through the
    // other formats only.
    for remark in ["Local vmess-in", "Local trojan-in"] {
        let app = run_mihomo_in(&mihomo, &mmdb, &provider, &["Proxy", remark]).await;
        apps.push((format!("base64 list in mihomo: {remark}"), app));
    }
    // Xray JSON, one config per entry, in V2Ray.
    let (status, xray) = fetch(&manager, &path, "xray").await;
    assert_eq!(status, 200, "{xray}");
    let configs: Vec<Value> = serde_json::from_str(&xray).unwrap();
    assert_eq!(configs.len(), 3);
    for config in configs {
        let name = format!("xray json in v2ray: {}", config["remarks"]);
        apps.push((name, run_v2ray(&v2ray, config).await));
    }
    // sing-box JSON: every proxy outbound selected in turn.
    let (status, text) = fetch(&manager, &path, "sing-box").await;
    assert_eq!(status, 200, "{text}");
    let config: Value = serde_json::from_str(&text).unwrap();
    let tags: Vec<String> = config["outbounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| ["vless", "vmess", "trojan"].contains(&o["type"].as_str().unwrap_or("")))
        .map(|o| o["tag"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags.len(), 3, "{config}");
    for tag in &tags {
        let app = run_sing_box(&sing_box, config.clone(), Some(tag)).await;
        apps.push((format!("sing-box: {tag}"), app));
    }
    // Clash Meta YAML in Mihomo.
    let (status, yaml) = fetch(&manager, &path, "clash").await;
    assert_eq!(status, 200, "{yaml}");
    let names = clash_names(&yaml);
    assert_eq!(names.len(), 3, "{yaml}");
    for name in &names {
        let app = run_mihomo(&mihomo, &mmdb, &yaml, name).await;
        apps.push((format!("clash in mihomo: {name}"), app));
    }

    assert_all_fetch(&apps, &origin, LONG).await;

    let (status, _) = manager.post("/user/disable", json!({"userID": user})).await;
    assert_eq!(status, 200);
    for format in ["base64", "links"] {
        let (status, body) = fetch(&manager, &path, format).await;
        assert_eq!(status, 200);
        let listed = match format {
            "base64" => base64_links(&body),
            _ => body.lines().map(str::to_owned).collect(),
        };
        assert!(listed.is_empty(), "{format}: {listed:?}");
    }
    assert_all_refused(&apps, &origin, LONG).await;
    eprintln!(
        "{} apps; the whole test took {:?}",
        apps.len(),
        began.elapsed()
    );
}
