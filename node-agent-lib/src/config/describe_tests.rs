//! The descriptions `CoreConfig::parse` derives, over inbounds as operators
//! write them for Xray and for V2Ray 4.34.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use xray_core_client::Flavor;

use crate::config::CoreConfig;
use crate::wire::{InboundDescription, InboundProtocol, Network, Security};

/// RFC 7748, section 6.1: Alice's private key and the public key it gives.
const ALICE_PRIVATE: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A base config with the API's inbound and `inbounds` after it.
fn base(inbounds: &[Value]) -> String {
    let mut all = vec![json!({
        "tag": "api", "listen": "127.0.0.1", "port": 10085,
        "protocol": "dokodemo-door", "settings": {"address": "127.0.0.1"}
    })];
    all.extend_from_slice(inbounds);
    json!({
        "api": {"tag": "api", "services": ["HandlerService", "StatsService"]},
        "stats": {},
        "inbounds": all,
        "outbounds": [{"protocol": "freedom"}]
    })
    .to_string()
}

/// The descriptions and warnings of a config with these inbounds (Xray,
/// VLESS flow `xtls-rprx-vision`).
fn parsed(inbounds: &[Value]) -> (Vec<InboundDescription>, Vec<String>) {
    let (config, warnings) =
        CoreConfig::parse(&base(inbounds), Flavor::Xray, "xtls-rprx-vision").unwrap();
    (config.descriptions().to_vec(), warnings)
}

/// The one description of a config with this one inbound, which must not warn.
fn described(inbound: Value) -> InboundDescription {
    let (mut descriptions, warnings) = parsed(&[inbound]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(descriptions.len(), 1);
    descriptions.remove(0)
}

/// A VMess inbound on 443 with these stream settings.
fn vmess(stream: Value) -> Value {
    json!({
        "tag": "in", "port": 443, "protocol": "vmess",
        "settings": {"clients": []}, "streamSettings": stream
    })
}

/// The one inbound is left out, with one warning naming it and `reason`.
fn left_out(inbound: Value, reason: &str) {
    let (config, warnings) = CoreConfig::parse(&base(&[inbound]), Flavor::Xray, "").unwrap();
    assert!(config.descriptions().is_empty());
    assert_eq!(config.inbounds().len(), 1, "its users are still managed");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("inbound in: ") && warnings[0].contains(reason),
        "{warnings:?}"
    );
}

#[test]
fn an_inbound_without_stream_settings_is_plain_tcp() {
    let d = described(json!({
        "tag": "vmess-plain", "port": 10086, "protocol": "vmess",
        "settings": {"clients": []}
    }));
    assert_eq!(d.tag, "vmess-plain");
    assert_eq!(d.protocol, InboundProtocol::Vmess);
    assert_eq!(d.port, 10086);
    assert_eq!((d.network, d.security), (Network::Tcp, Security::None));
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"tag": "vmess-plain", "protocol": "vmess", "port": 10086,
               "network": "tcp", "security": "none"}),
        "nothing else is set"
    );
}

#[test]
fn tcp_with_an_http_header_gives_its_first_path_and_host_in_v2rays_spelling() {
    let d = described(vmess(json!({
        "network": "tcp",
        "tcpSettings": {"header": {
            "type": "http",
            "request": {
                "version": "1.1", "method": "GET", "path": ["/video", "/img"],
                "headers": {"Host": ["www.example.com", "cdn.example.com"]}
            }
        }}
    })));
    assert_eq!(d.network, Network::Tcp);
    assert_eq!(d.header_type, "http");
    assert_eq!(d.path, "/video");
    assert_eq!(d.host, "www.example.com");
}

#[test]
fn raw_is_tcp_and_its_settings_are_read_in_xrays_spelling() {
    let d = described(vmess(json!({
        "network": "raw",
        "rawSettings": {"header": {"type": "http", "request": {
            "path": "/one", "headers": {"host": "raw.example.com"}
        }}}
    })));
    assert_eq!(d.network, Network::Tcp);
    assert_eq!(
        (d.header_type.as_str(), d.path.as_str(), d.host.as_str()),
        ("http", "/one", "raw.example.com")
    );
}

#[test]
fn tcp_without_a_header_disguise_has_no_header_type() {
    let d = described(vmess(json!({
        "network": "tcp", "tcpSettings": {"header": {"type": "none"}}
    })));
    assert_eq!((d.header_type.as_str(), d.path.as_str()), ("", ""));
}

#[test]
fn ws_gives_its_path_and_host_in_both_spellings() {
    let v2ray = described(vmess(json!({
        "network": "ws",
        "wsSettings": {"path": "/ray", "headers": {"Host": "v2.example.com"}}
    })));
    assert_eq!(v2ray.network, Network::Ws);
    assert_eq!(
        (v2ray.path.as_str(), v2ray.host.as_str()),
        ("/ray", "v2.example.com")
    );
    let xray = described(vmess(json!({
        "network": "ws",
        "wsSettings": {"path": "/ray?ed=2048", "host": "x.example.com",
                       "headers": {"Host": "ignored.example.com"}}
    })));
    assert_eq!(
        (xray.path.as_str(), xray.host.as_str()),
        ("/ray?ed=2048", "x.example.com")
    );
}

#[test]
fn httpupgrade_gives_its_path_and_host() {
    let d = described(vmess(json!({
        "network": "httpupgrade",
        "httpupgradeSettings": {"path": "/up", "host": "up.example.com"}
    })));
    assert_eq!(d.network, Network::HttpUpgrade);
    assert_eq!(
        (d.path.as_str(), d.host.as_str()),
        ("/up", "up.example.com")
    );
}

#[test]
fn grpc_gives_its_service_name_mode_and_authority() {
    let multi = described(vmess(json!({
        "network": "grpc",
        "grpcSettings": {"serviceName": "tun", "multiMode": true, "authority": "g.example.com"}
    })));
    assert_eq!(multi.network, Network::Grpc);
    assert_eq!(
        (
            multi.service_name.as_str(),
            multi.mode.as_str(),
            multi.authority.as_str()
        ),
        ("tun", "multi", "g.example.com")
    );
    // V2Ray's spelling: network `gun`, no multi mode.
    let gun = described(vmess(
        json!({"network": "gun", "grpcSettings": {"serviceName": "gun-svc"}}),
    ));
    assert_eq!(gun.network, Network::Grpc);
    assert_eq!(
        (gun.service_name.as_str(), gun.mode.as_str()),
        ("gun-svc", "gun")
    );
}

#[test]
fn xhttp_gives_its_path_host_and_mode_which_defaults_to_auto() {
    let d = described(vmess(json!({
        "network": "xhttp",
        "xhttpSettings": {"path": "/x", "host": "x.example.com", "mode": "stream-one"}
    })));
    assert_eq!(d.network, Network::Xhttp);
    assert_eq!(
        (d.path.as_str(), d.host.as_str(), d.mode.as_str()),
        ("/x", "x.example.com", "stream-one")
    );
    let old = described(vmess(
        json!({"network": "splithttp", "splithttpSettings": {"path": "/s"}}),
    ));
    assert_eq!(old.network, Network::Xhttp);
    assert_eq!((old.path.as_str(), old.mode.as_str()), ("/s", "auto"));
}

#[test]
fn kcp_gives_its_header_type_and_seed() {
    let d = described(vmess(json!({
        "network": "mkcp",
        "kcpSettings": {"header": {"type": "wechat-video"}, "seed": "s33d"}
    })));
    assert_eq!(d.network, Network::Kcp);
    assert_eq!(
        (d.header_type.as_str(), d.seed.as_str()),
        ("wechat-video", "s33d")
    );
}

#[test]
fn tls_gives_its_server_name_alpn_and_fingerprint() {
    let d = described(vmess(json!({
        "network": "tcp", "security": "tls",
        "tlsSettings": {
            "serverName": "vpn.example.com", "alpn": ["h2", "http/1.1"], "fingerprint": "chrome",
            "allowInsecure": true,
            "certificates": [{"certificateFile": "/etc/tls/fullchain.pem", "keyFile": "/etc/tls/privkey.pem"}]
        }
    })));
    assert_eq!(d.security, Security::Tls);
    assert_eq!(d.sni, "vpn.example.com");
    assert_eq!(d.alpn, ["h2", "http/1.1"]);
    assert_eq!(d.fingerprint, "chrome");
    assert!(
        !d.allow_insecure,
        "only the operator may tell clients to skip verification"
    );
    let comma = described(vmess(
        json!({"security": "tls", "tlsSettings": {"alpn": "h2,http/1.1"}}),
    ));
    assert_eq!(comma.alpn, ["h2", "http/1.1"]);
}

fn reality(private_key: &str) -> Value {
    json!({
        "tag": "in", "port": 443, "protocol": "vless",
        "settings": {"decryption": "none"},
        "streamSettings": {
            "network": "raw", "security": "reality",
            "realitySettings": {
                "show": false, "target": "www.example.com:443", "xver": 0,
                "serverNames": ["www.example.com", "example.com"],
                "privateKey": private_key,
                "shortIds": ["", "0123456789abcdef"],
                "fingerprint": "chrome", "spiderX": "/s"
            }
        }
    })
}

#[test]
fn reality_gives_server_names_short_ids_and_the_public_key_of_its_private_key() {
    let d = described(reality(&URL_SAFE_NO_PAD.encode(hex(ALICE_PRIVATE))));
    assert_eq!(d.security, Security::Reality);
    assert_eq!(d.sni, "www.example.com");
    assert_eq!(d.server_names, ["www.example.com", "example.com"]);
    assert_eq!(d.short_ids, ["", "0123456789abcdef"]);
    assert_eq!(d.public_key, URL_SAFE_NO_PAD.encode(hex(ALICE_PUBLIC)));
    assert_eq!(
        (d.fingerprint.as_str(), d.spider_x.as_str()),
        ("chrome", "/s")
    );
    assert_eq!(d.flow, "xtls-rprx-vision");
}

#[test]
fn the_reality_public_key_is_rfc_7748s_for_the_private_key_in_any_base64() {
    let private = hex(ALICE_PRIVATE);
    let public = URL_SAFE_NO_PAD.encode(hex(ALICE_PUBLIC));
    assert_eq!(public, "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo");
    for spelling in [
        URL_SAFE_NO_PAD.encode(&private),
        URL_SAFE.encode(&private),
        STANDARD.encode(&private),
        STANDARD.encode(&private).trim_end_matches('=').to_owned(),
    ] {
        assert_eq!(
            described(reality(&spelling)).public_key,
            public,
            "{spelling}"
        );
    }
}

#[test]
fn a_reality_key_that_is_not_32_bytes_is_left_out_without_being_quoted() {
    for bad in [
        String::new(),
        "not base64!".to_owned(),
        URL_SAFE_NO_PAD.encode([7u8; 31]),
        URL_SAFE_NO_PAD.encode([7u8; 33]),
    ] {
        let (config, warnings) =
            CoreConfig::parse(&base(&[reality(&bad)]), Flavor::Xray, "").unwrap();
        assert!(config.descriptions().is_empty(), "{bad}");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("REALITY privateKey"), "{warnings:?}");
        assert!(
            bad.is_empty() || !warnings[0].contains(&bad),
            "the key is quoted: {warnings:?}"
        );
    }
}

#[test]
fn vless_flow_and_shadowsocks_method_are_described() {
    let (descriptions, warnings) = parsed(&[
        json!({"tag": "vl", "port": 443, "protocol": "vless", "settings": {"decryption": "none"},
               "streamSettings": {"security": "tls", "tlsSettings": {"serverName": "a.example.com"}}}),
        json!({"tag": "tr", "port": 8443, "protocol": "trojan", "settings": {}}),
        json!({"tag": "ss", "port": 8388, "protocol": "shadowsocks",
               "settings": {"method": "chacha20-ietf-poly1305", "network": "tcp,udp"}}),
    ]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let facts: Vec<_> = descriptions
        .iter()
        .map(|d| (d.protocol, d.flow.as_str(), d.method.as_str()))
        .collect();
    assert_eq!(
        facts,
        [
            (InboundProtocol::Vless, "xtls-rprx-vision", ""),
            (InboundProtocol::Trojan, "", ""),
            (InboundProtocol::Shadowsocks, "", "chacha20-ietf-poly1305"),
        ]
    );
}

#[test]
fn descriptions_follow_config_order_and_only_managed_inbounds() {
    let (descriptions, _) = parsed(&[
        json!({"tag": "b", "port": 2, "protocol": "trojan"}),
        json!({"tag": "socks", "port": 1080, "protocol": "socks"}),
        json!({"tag": "a", "port": 1, "protocol": "vless"}),
    ]);
    let tags: Vec<_> = descriptions.iter().map(|d| d.tag.as_str()).collect();
    assert_eq!(tags, ["b", "a"]);
}

#[test]
fn a_port_range_list_or_numeric_string_gives_its_first_port() {
    for (port, first) in [
        (json!("8443"), 8443),
        (json!("1000-2000"), 1000),
        (json!("443,8443-8450"), 443),
        (json!(65535), 65535),
    ] {
        let d = described(json!({"tag": "in", "port": port, "protocol": "trojan"}));
        assert_eq!(d.port, first, "{port}");
    }
}

#[test]
fn an_unreadable_port_is_warned_about_and_left_out() {
    for port in [
        json!("env:PORT"),
        json!(0),
        json!(70000),
        json!("abc"),
        json!(null),
        json!(-1),
    ] {
        left_out(
            json!({"tag": "in", "port": port, "protocol": "trojan"}),
            "port",
        );
    }
    left_out(json!({"tag": "in", "protocol": "trojan"}), "no port");
}

#[test]
fn an_unknown_transport_is_warned_about_and_left_out() {
    for network in ["quic", "domainsocket", "h2", "http"] {
        left_out(
            vmess(json!({"network": network})),
            &format!("transport {network:?}"),
        );
    }
}

#[test]
fn an_unknown_security_is_warned_about_and_left_out() {
    left_out(
        vmess(json!({"network": "tcp", "security": "xtls"})),
        "security \"xtls\"",
    );
}

#[test]
fn v2ray_configs_are_described_too() {
    let inbound = vmess(json!({
        "network": "ws", "security": "tls",
        "wsSettings": {"path": "/v", "headers": {"Host": "v.example.com"}},
        "tlsSettings": {"serverName": "v.example.com"}
    }));
    let (config, warnings) = CoreConfig::parse(&base(&[inbound]), Flavor::V2ray, "").unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let d = &config.descriptions()[0];
    assert_eq!((d.network, d.security), (Network::Ws, Security::Tls));
    assert_eq!((d.path.as_str(), d.sni.as_str()), ("/v", "v.example.com"));
}
