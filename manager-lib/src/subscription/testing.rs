//! Fixtures for the formats' tests: a user and one entry for every kind of
//! inbound the agent describes (protocols × transports × security layers),
//! with hostile remarks.

use crate::domain::{
    InboundDescription, InboundProtocol, Network, NewUser, Plan, Security, ServedInbound,
    Timestamp, User, UserStatus,
};

/// An enabled user named `name`, with fresh credentials.
pub fn user(name: &str) -> User {
    let new = NewUser::new(name).expect("a valid name");
    User {
        id: new.id,
        name: new.name,
        status: UserStatus::Enabled,
        secret: new.secret,
        subscription_key: new.subscription_key,
        device_limit: None,
        change_seq: 1,
        created_at: Timestamp(0),
        plan: Plan::default(),
        used_up: 0,
        used_down: 0,
        blocked: None,
        next_reset_at: None,
        last_reset_at: None,
    }
}

/// An inbound with nothing set beyond its protocol, port and transport.
pub fn inbound(tag: &str, protocol: InboundProtocol, port: u16) -> InboundDescription {
    InboundDescription::new(tag, protocol, port)
}

/// One entry per kind: VLESS REALITY vision, VLESS TLS ws, VLESS grpc,
/// VLESS xhttp, VLESS httpupgrade, VMess ws TLS, VMess tcp, VMess tcp with
/// an http header, Trojan TLS tcp, Trojan grpc TLS, Shadowsocks; some at an
/// IPv6 address, remarks with spaces, unicode, `#`, `&`, `%`, quotes,
/// YAML and HTML specials.
pub fn entries() -> Vec<ServedInbound> {
    let mut out = Vec::new();
    let mut push = |remark: &str, address: &str, inbound: InboundDescription| {
        out.push(ServedInbound {
            remark: remark.into(),
            address: address.into(),
            inbound,
        })
    };

    let mut i = inbound("vless-reality", InboundProtocol::Vless, 443);
    i.flow = "xtls-rprx-vision".into();
    i.security = Security::Reality;
    i.sni = "www.example.com".into();
    i.server_names = vec!["www.example.com".into(), "example.com".into()];
    i.short_ids = vec!["6ba85179e30d4fc2".into(), String::new()];
    // RFC 7748's test key, as `xray x25519` writes keys.
    i.public_key = "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo".into();
    i.fingerprint = "chrome".into();
    push("Amsterdam 🇳🇱 #1 & co", "nl.example.com", i);

    let mut i = inbound("vless-ws", InboundProtocol::Vless, 8443);
    i.network = Network::Ws;
    i.path = "/ws?ed=2048".into();
    i.host = "cdn.example.com".into();
    i.security = Security::Tls;
    i.sni = "cdn.example.com".into();
    i.alpn = vec!["h2".into(), "http/1.1".into()];
    i.fingerprint = "firefox".into();
    push("100% \"quoted\" 'name'", "cdn.example.com", i);

    let mut i = inbound("vless-grpc", InboundProtocol::Vless, 2053);
    i.network = Network::Grpc;
    i.service_name = "grpc-svc".into();
    i.mode = "multi".into();
    i.security = Security::Tls;
    i.sni = "grpc.example.com".into();
    push("key: value - [list] {map} *ref !tag", "2001:db8::1", i);

    let mut i = inbound("vless-xhttp", InboundProtocol::Vless, 2083);
    i.network = Network::Xhttp;
    i.path = "/xh".into();
    i.host = "xh.example.com".into();
    i.mode = "auto".into();
    i.security = Security::Tls;
    i.sni = "xh.example.com".into();
    push("<script>alert(1)</script>", "xh.example.com", i);

    let mut i = inbound("vless-httpupgrade", InboundProtocol::Vless, 2087);
    i.network = Network::HttpUpgrade;
    i.path = "/up".into();
    i.host = "up.example.com".into();
    push("plain name", "10.0.0.1", i);

    let mut i = inbound("vmess-ws-tls", InboundProtocol::Vmess, 443);
    i.network = Network::Ws;
    i.path = "/vm".into();
    i.host = "vm.example.com".into();
    i.security = Security::Tls;
    i.sni = "vm.example.com".into();
    push("Москва · VMess", "vm.example.com", i);

    push(
        "vmess tcp",
        "10.0.0.2",
        inbound("vmess-tcp", InboundProtocol::Vmess, 10086),
    );

    let mut i = inbound("vmess-http", InboundProtocol::Vmess, 80);
    i.header_type = "http".into();
    i.path = "/".into();
    i.host = "www.bing.com".into();
    push("line\\back\\slash", "10.0.0.3", i);

    let mut i = inbound("trojan-tls", InboundProtocol::Trojan, 443);
    i.security = Security::Tls;
    i.sni = "tr.example.com".into();
    i.alpn = vec!["http/1.1".into()];
    push("Trojan # ? / @ :", "tr.example.com", i);

    let mut i = inbound("trojan-grpc", InboundProtocol::Trojan, 8443);
    i.network = Network::Grpc;
    i.service_name = "tr-grpc".into();
    i.security = Security::Tls;
    i.sni = "tr.example.com".into();
    i.allow_insecure = true;
    push("trojan grpc", "tr.example.com", i);

    let mut i = inbound("ss", InboundProtocol::Shadowsocks, 8388);
    i.method = "chacha20-ietf-poly1305".into();
    push("ss+ 2022 ~ 'x'", "10.0.0.4", i);

    out
}
