//! The real client apps against a real node, without the manager: one
//! `xray-node-agent` over a real V2Ray 4.34 with VLESS tcp+TLS, VMess ws
//! and Trojan tcp+TLS (a self-signed certificate the clients skip
//! verifying), one user given by `/start`, and hand-written client configs
//! of the kind a subscription serves: V2Ray 4.34, sing-box and Mihomo each
//! fetch known bytes through every inbound; once `/users/edit` removes the
//! user, every fetch fails. The subscription test does the same with the
//! configs the manager serves.

use std::time::Duration;

use node_agent_lib::wire::{InboundProtocol, Network, Security, UsersEditRequest, WireUser};
use node_agent_lib::{NodeClient, NodeKey};
use serde_json::{Value, json};
use tests::clients::{
    ClientApp, assert_all_fetch, assert_all_refused, country_mmdb, mihomo_binary, run_mihomo,
    run_sing_box, run_v2ray, sing_box_binary, v2ray_client_binary,
};
use tests::origin::Origin;
use tests::tls_node::{TLS_SERVER_NAME, TROJAN_TAG, TlsNode, VMESS_WS_PATH};
use xray_core_client::testing::{VLESS_TAG, VMESS_TAG, free_port};

const LONG: Duration = Duration::from_secs(30);
/// Names of the three entries in the sing-box and Clash configs, in the
/// order of `TlsNode`'s inbounds.
const NAMES: [&str; 3] = ["VLESS TLS", "VMess ws", "Trojan TLS"];

/// One V2Ray client config per inbound, as the Xray JSON format serves
/// them (socks and http inbounds on fixed ports, a rule sending private
/// addresses direct: the runner replaces both).
fn v2ray_configs(node: &TlsNode, user: &WireUser) -> Vec<Value> {
    let tls = json!({
        "network": "tcp",
        "security": "tls",
        "tlsSettings": { "serverName": TLS_SERVER_NAME, "allowInsecure": true },
    });
    let outbounds = [
        json!({
            "tag": "proxy", "protocol": "vless",
            "settings": { "vnext": [ { "address": "127.0.0.1", "port": node.vless,
                "users": [ { "id": user.id, "encryption": "none" } ] } ] },
            "streamSettings": tls,
        }),
        json!({
            "tag": "proxy", "protocol": "vmess",
            "settings": { "vnext": [ { "address": "127.0.0.1", "port": node.vmess_ws,
                "users": [ { "id": user.id, "alterId": 0, "security": "auto" } ] } ] },
            "streamSettings": { "network": "ws", "wsSettings": { "path": VMESS_WS_PATH } },
        }),
        json!({
            "tag": "proxy", "protocol": "trojan",
            "settings": { "servers": [ { "address": "127.0.0.1", "port": node.trojan,
                "password": user.secret } ] },
            "streamSettings": tls,
        }),
    ];
    outbounds
        .into_iter()
        .zip(NAMES)
        .map(|(outbound, name)| {
            json!({
                "remarks": name,
                "log": { "loglevel": "warning" },
                "inbounds": [
                    { "tag": "socks", "protocol": "socks", "listen": "127.0.0.1", "port": 10808,
                      "settings": { "auth": "noauth", "udp": true } },
                    { "tag": "http", "protocol": "http", "listen": "127.0.0.1", "port": 10809 },
                ],
                "outbounds": [ outbound, { "tag": "direct", "protocol": "freedom" } ],
                "routing": { "rules": [
                    { "type": "field", "ip": ["geoip:private"], "outboundTag": "direct" },
                ] },
            })
        })
        .collect()
}

/// One sing-box config with all three, as the sing-box format serves it
/// (uTLS fingerprints, a selector, private addresses direct).
fn sing_box_config(node: &TlsNode, user: &WireUser) -> Value {
    let tls = json!({
        "enabled": true, "server_name": TLS_SERVER_NAME, "insecure": true,
        "utls": { "enabled": true, "fingerprint": "chrome" },
    });
    json!({
        "log": { "level": "warn" },
        "inbounds": [ { "type": "mixed", "tag": "mixed-in", "listen": "127.0.0.1",
                        "listen_port": 2080 } ],
        "outbounds": [
            { "type": "selector", "tag": "select", "outbounds": NAMES },
            { "type": "vless", "tag": NAMES[0], "server": "127.0.0.1",
              "server_port": node.vless, "uuid": user.id, "tls": tls },
            { "type": "vmess", "tag": NAMES[1], "server": "127.0.0.1",
              "server_port": node.vmess_ws, "uuid": user.id, "security": "auto", "alter_id": 0,
              "transport": { "type": "ws", "path": VMESS_WS_PATH } },
            { "type": "trojan", "tag": NAMES[2], "server": "127.0.0.1",
              "server_port": node.trojan, "password": user.secret, "tls": tls },
            { "type": "direct", "tag": "direct" },
        ],
        "route": {
            "rules": [ { "ip_is_private": true, "outbound": "direct" } ],
            "final": "select",
        },
    })
}

/// One Clash config with all three, as the Clash Meta format serves it.
fn clash_config(node: &TlsNode, user: &WireUser) -> String {
    let (id, secret) = (&user.id, &user.secret);
    let (vless, vmess, trojan) = (node.vless, node.vmess_ws, node.trojan);
    let [vless_name, vmess_name, trojan_name] = NAMES;
    format!(
        "mixed-port: 7890
allow-lan: true
mode: rule
log-level: warning
proxies:
  - name: \"{vless_name}\"
    type: vless
    server: 127.0.0.1
    port: {vless}
    uuid: {id}
    network: tcp
    tls: true
    servername: {TLS_SERVER_NAME}
    skip-cert-verify: true
    client-fingerprint: chrome
    udp: true
  - name: \"{vmess_name}\"
    type: vmess
    server: 127.0.0.1
    port: {vmess}
    uuid: {id}
    alterId: 0
    cipher: auto
    network: ws
    ws-opts:
      path: {VMESS_WS_PATH}
  - name: \"{trojan_name}\"
    type: trojan
    server: 127.0.0.1
    port: {trojan}
    password: \"{secret}\"
    sni: {TLS_SERVER_NAME}
    skip-cert-verify: true
    udp: true
proxy-groups:
  - name: Proxy
    type: select
    proxies: [\"{vless_name}\", \"{vmess_name}\", \"{trojan_name}\"]
rules:
  - IP-CIDR,127.0.0.0/8,DIRECT
  - MATCH,Proxy
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_fetch_through_vless_vmess_and_trojan_until_the_user_is_removed() {
    let began = std::time::Instant::now();
    let (Some(v2ray), Some(sing_box), Some(mihomo), Some(mmdb)) = (
        v2ray_client_binary(),
        sing_box_binary(),
        mihomo_binary(),
        country_mmdb(),
    ) else {
        return;
    };
    let key = NodeKey::random();
    let mut node = TlsNode::new();
    let _agent = node
        .start_agent(&key.expose_base64url(), &v2ray, free_port())
        .await;
    let agent = NodeClient::new(&_agent.endpoint, key, LONG).expect("node client");
    let user = WireUser {
        id: uuid::Uuid::new_v4().to_string(),
        name: "alice".into(),
        secret: uuid::Uuid::new_v4().simple().to_string(),
        proxy_id: None,
    };
    let started = agent
        .start(std::slice::from_ref(&user))
        .await
        .expect("/start");
    // What the subscription will be built from: the agent describes all three.
    let described: Vec<_> = started
        .inbounds
        .iter()
        .map(|i| (i.tag.as_str(), i.protocol, i.port, i.network, i.security))
        .collect();
    for expected in [
        (
            VLESS_TAG,
            InboundProtocol::Vless,
            node.vless,
            Network::Tcp,
            Security::Tls,
        ),
        (
            VMESS_TAG,
            InboundProtocol::Vmess,
            node.vmess_ws,
            Network::Ws,
            Security::None,
        ),
        (
            TROJAN_TAG,
            InboundProtocol::Trojan,
            node.trojan,
            Network::Tcp,
            Security::Tls,
        ),
    ] {
        assert!(
            described.contains(&expected),
            "{expected:?} in {described:?}"
        );
    }
    assert_eq!(described.len(), 3, "{described:?}");
    let origin = Origin::start().await;

    let mut apps: Vec<(String, ClientApp)> = Vec::new();
    for (config, name) in v2ray_configs(&node, &user).into_iter().zip(NAMES) {
        apps.push((format!("v2ray {name}"), run_v2ray(&v2ray, config).await));
    }
    for name in NAMES {
        let config = sing_box_config(&node, &user);
        let app = run_sing_box(&sing_box, config, Some(name)).await;
        apps.push((format!("sing-box {name}"), app));
    }
    let clash = clash_config(&node, &user);
    for name in NAMES {
        let app = run_mihomo(&mihomo, &mmdb, &clash, name).await;
        apps.push((format!("mihomo {name}"), app));
    }
    let up = began.elapsed();

    // All at once: each app is its own process, and a refused VMess fetch
    // only ends at the fetch timeout (the server drains it silently).
    assert_all_fetch(&apps, &origin, LONG).await;

    agent
        .edit_users(&UsersEditRequest {
            add_users: Vec::new(),
            del_users: vec![user.id.clone()],
        })
        .await
        .expect("/users/edit");
    assert_all_refused(&apps, &origin, LONG).await;
    eprintln!(
        "9 clients up in {up:?}; the whole test took {:?}",
        began.elapsed()
    );
}
