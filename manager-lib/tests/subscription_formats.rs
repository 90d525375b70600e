//! The sing-box, Clash and Xray formats read back (serde_json; serde_norway,
//! a libyaml-family parser as Mihomo's go-yaml is): the right fields for
//! every kind of fixture, hostile names intact, names never colliding with
//! the formats' own tags. The real clients check the same output in
//! the `tests` crate's `tests/subscription_clients.rs`.

use manager_lib::domain::{Network, ServedInbound, User};
use manager_lib::subscription::{Listing, clash, singbox, testing, xray};
use serde_json::{Value, json};

struct Fixture {
    user: User,
    entries: Vec<ServedInbound>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            user: testing::user("alice"),
            entries: testing::entries(),
        }
    }
    fn listing(&self) -> Listing<'_> {
        Listing::new(&self.user, &self.entries)
    }
    /// The name the formats give the entry whose inbound has `tag`.
    fn name(&self, tag: &str) -> String {
        let at = self.entries.iter().position(|e| e.inbound.tag == tag);
        self.listing().unique_names()[at.expect("a fixture tag")].to_string()
    }
    fn uuid(&self) -> String {
        self.user.id.to_string()
    }
    fn password(&self) -> &str {
        self.user.secret.expose()
    }
}

fn sing_box(listing: &Listing<'_>) -> Value {
    serde_json::from_str(&singbox::render(listing)).expect("sing-box JSON parses")
}

fn clash_yaml(listing: &Listing<'_>) -> Value {
    serde_norway::from_str(&clash::render(listing)).expect("Clash YAML parses")
}

fn named<'v>(list: &'v Value, key: &str, name: &str) -> &'v Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|o| o[key] == name)
        .unwrap_or_else(|| panic!("no {key} {name:?} in {list}"))
}

fn names_of<'v>(list: &'v Value, key: &str) -> Vec<&'v str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| o[key].as_str().unwrap())
        .collect()
}

#[test]
fn sing_box_has_a_proxy_per_entry_but_xhttp() {
    let f = Fixture::new();
    let v = sing_box(&f.listing());
    let proxies: Vec<&Value> = v["outbounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            ["vless", "vmess", "trojan", "shadowsocks"].contains(&o["type"].as_str().unwrap())
        })
        .collect();
    let expected: Vec<String> = f
        .entries
        .iter()
        .filter(|e| e.inbound.network != Network::Xhttp)
        .map(|e| f.name(&e.inbound.tag))
        .collect();
    let tags: Vec<&str> = proxies.iter().map(|o| o["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, expected, "hostile remarks are the tags, unchanged");
    assert_eq!(
        v["inbounds"],
        json!([{"type": "mixed", "tag": "mixed-in", "listen": "127.0.0.1", "listen_port": 2080}])
    );
    assert!(v.get("dns").is_none());
}

#[test]
fn sing_box_routes_through_a_selector_over_a_urltest_and_every_proxy() {
    let f = Fixture::new();
    let v = sing_box(&f.listing());
    let proxies: Vec<String> = f
        .entries
        .iter()
        .filter(|e| singbox::carries(&e.inbound))
        .map(|e| f.name(&e.inbound.tag))
        .collect();
    let select = named(&v["outbounds"], "type", "selector");
    let auto = named(&v["outbounds"], "type", "urltest");
    assert_eq!(auto["outbounds"], json!(proxies));
    let mut choices = vec![auto["tag"].as_str().unwrap().to_owned()];
    choices.extend(proxies);
    assert_eq!(select["outbounds"], json!(choices));
    assert_eq!(select["default"], auto["tag"]);
    assert_eq!(v["route"]["final"], select["tag"]);
    assert_eq!(named(&v["outbounds"], "type", "direct")["tag"], "direct");
}

#[test]
fn sing_box_outbounds_carry_credentials_security_and_transport() {
    let f = Fixture::new();
    let v = sing_box(&f.listing());
    let out = |tag: &str| named(&v["outbounds"], "tag", &f.name(tag)).clone();

    let reality = out("vless-reality");
    assert_eq!(reality["uuid"], f.uuid());
    assert_eq!(reality["server"], "nl.example.com");
    assert_eq!(reality["server_port"], 443);
    assert_eq!(reality["flow"], "xtls-rprx-vision");
    assert_eq!(
        reality["tls"],
        json!({"enabled": true, "server_name": "www.example.com",
            "utls": {"enabled": true, "fingerprint": "chrome"},
            "reality": {"enabled": true, "public_key": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo",
                "short_id": "6ba85179e30d4fc2"}})
    );

    let ws = out("vless-ws");
    assert!(ws.get("flow").is_none(), "flow only over bare tcp");
    assert_eq!(ws["tls"]["alpn"], json!(["http/1.1"]), "ws speaks HTTP/1.1");
    assert_eq!(ws["tls"]["utls"]["fingerprint"], "firefox");
    assert_eq!(
        ws["transport"],
        json!({"type": "ws", "path": "/ws", "headers": {"Host": "cdn.example.com"},
            "max_early_data": 2048, "early_data_header_name": "Sec-WebSocket-Protocol"})
    );

    let grpc = out("vless-grpc");
    assert_eq!(grpc["server"], "2001:db8::1");
    assert_eq!(
        grpc["transport"],
        json!({"type": "grpc", "service_name": "grpc-svc"})
    );

    let up = out("vless-httpupgrade");
    assert!(up.get("tls").is_none());
    assert_eq!(
        up["transport"],
        json!({"type": "httpupgrade", "host": "up.example.com", "path": "/up"})
    );

    let vmess = out("vmess-ws-tls");
    assert_eq!(
        (&vmess["type"], &vmess["security"]),
        (&json!("vmess"), &json!("auto"))
    );
    assert_eq!(vmess["uuid"], f.uuid());
    let http = out("vmess-http");
    assert_eq!(
        http["transport"],
        json!({"type": "http", "host": ["www.bing.com"], "path": "/", "method": "GET"})
    );
    assert!(out("vmess-tcp").get("transport").is_none());

    let trojan = out("trojan-tls");
    assert_eq!(trojan["password"], f.password());
    assert_eq!(trojan["tls"]["server_name"], "tr.example.com");
    assert_eq!(out("trojan-grpc")["tls"]["insecure"], true);

    let ss = out("ss");
    assert_eq!(
        (&ss["type"], &ss["method"], &ss["password"]),
        (
            &json!("shadowsocks"),
            &json!("chacha20-ietf-poly1305"),
            &json!(f.password())
        )
    );
}

#[test]
fn names_like_the_formats_own_tags_get_other_tags() {
    let user = testing::user("alice");
    let mut entries = testing::entries();
    for (e, remark) in entries
        .iter_mut()
        .zip(["direct", "select", "auto", "Proxy", "Auto", "DIRECT"])
    {
        e.remark = remark.into();
    }
    let listing = Listing::new(&user, &entries);
    let v = sing_box(&listing);
    let tags = names_of(&v["outbounds"], "tag");
    let mut unique = tags.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), tags.len(), "{tags:?}");
    let v = clash_yaml(&listing);
    let mut all = names_of(&v["proxies"], "name");
    all.extend(names_of(&v["proxy-groups"], "name"));
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "{all:?}");
    let select = names_of(&v["proxy-groups"], "name")[0].to_owned();
    assert_eq!(v["rules"], json!([format!("MATCH,{select}")]));
}

#[test]
fn clash_has_a_proxy_per_entry_mihomo_dials() {
    let f = Fixture::new();
    let v = clash_yaml(&f.listing());
    let expected: Vec<String> = f
        .entries
        .iter()
        .filter(|e| e.inbound.network != Network::Xhttp)
        .map(|e| f.name(&e.inbound.tag))
        .collect();
    assert_eq!(names_of(&v["proxies"], "name"), expected);
    assert_eq!(v["mixed-port"], 7890);
}

#[test]
fn clash_groups_select_the_url_test_and_every_proxy_and_the_rule_matches_all() {
    let f = Fixture::new();
    let v = clash_yaml(&f.listing());
    let proxies = names_of(&v["proxies"], "name");
    let select = named(&v["proxy-groups"], "type", "select");
    let auto = named(&v["proxy-groups"], "type", "url-test");
    assert_eq!(auto["proxies"], json!(proxies));
    let mut choices = vec![auto["name"].as_str().unwrap()];
    choices.extend(&proxies);
    assert_eq!(select["proxies"], json!(choices));
    assert_eq!(
        v["rules"],
        json!([format!("MATCH,{}", select["name"].as_str().unwrap())])
    );
}

#[test]
fn clash_proxies_carry_credentials_security_and_transport() {
    let f = Fixture::new();
    let v = clash_yaml(&f.listing());
    let p = |tag: &str| named(&v["proxies"], "name", &f.name(tag)).clone();

    let reality = p("vless-reality");
    assert_eq!(
        (
            &reality["type"],
            &reality["uuid"],
            &reality["network"],
            &reality["flow"]
        ),
        (
            &json!("vless"),
            &json!(f.uuid()),
            &json!("tcp"),
            &json!("xtls-rprx-vision")
        )
    );
    assert_eq!(reality["tls"], true);
    assert_eq!(reality["servername"], "www.example.com");
    assert_eq!(reality["client-fingerprint"], "chrome");
    assert_eq!(
        reality["reality-opts"],
        json!({"public-key": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo", "short-id": "6ba85179e30d4fc2"})
    );

    let ws = p("vless-ws");
    assert_eq!(ws["network"], "ws");
    assert_eq!(ws["alpn"], json!(["http/1.1"]));
    assert_eq!(
        ws["ws-opts"],
        json!({"path": "/ws", "headers": {"Host": "cdn.example.com"}, "max-early-data": 2048,
            "early-data-header-name": "Sec-WebSocket-Protocol"})
    );

    let grpc = p("vless-grpc");
    assert_eq!(grpc["server"], "2001:db8::1");
    assert_eq!(grpc["grpc-opts"], json!({"grpc-service-name": "grpc-svc"}));

    let up = p("vless-httpupgrade");
    assert_eq!(up["network"], "ws");
    assert_eq!(
        up["ws-opts"],
        json!({"path": "/up", "headers": {"Host": "up.example.com"}, "v2ray-http-upgrade": true})
    );
    assert!(up.get("tls").is_none());

    let vmess = p("vmess-ws-tls");
    assert_eq!(
        (&vmess["alterId"], &vmess["cipher"]),
        (&json!(0), &json!("auto"))
    );
    let http = p("vmess-http");
    assert_eq!(http["network"], "http");
    assert_eq!(
        http["http-opts"],
        json!({"method": "GET", "path": ["/"], "headers": {"Host": ["www.bing.com"]}})
    );

    let trojan = p("trojan-tls");
    assert_eq!(
        (&trojan["password"], &trojan["sni"]),
        (&json!(f.password()), &json!("tr.example.com"))
    );
    assert!(trojan.get("servername").is_none());
    assert_eq!(p("trojan-grpc")["skip-cert-verify"], true);

    let ss = p("ss");
    assert_eq!(
        (&ss["type"], &ss["cipher"], &ss["password"], &ss["udp"]),
        (
            &json!("ss"),
            &json!("chacha20-ietf-poly1305"),
            &json!(f.password()),
            &json!(true)
        )
    );
}

#[test]
fn clash_names_yaml_would_misread_stay_exact() {
    let user = testing::user("alice");
    let mut entries = testing::entries();
    let hostile = [
        "key: value",
        "- [list]",
        "*ref",
        "!tag",
        "&anchor",
        "# comment",
        "null",
        "true",
        "0x1F",
        "line\u{2028}sep\u{2029}para\u{85}nel",
        "del\u{7f} bom\u{feff} c1\u{9b}",
    ];
    for (e, remark) in entries.iter_mut().zip(hostile) {
        e.remark = remark.into();
    }
    entries.truncate(hostile.len());
    entries.retain(|e| clash::carries(&e.inbound));
    let listing = Listing::new(&user, &entries);
    let yaml = clash::render(&listing);
    assert!(!yaml.contains('\u{2028}'), "breaks are escaped");
    let v: Value = serde_norway::from_str(&yaml).unwrap();
    let expected: Vec<&str> = entries.iter().map(|e| e.remark.as_str()).collect();
    assert_eq!(names_of(&v["proxies"], "name"), expected);
}

#[test]
fn an_empty_listing_is_a_config_that_goes_direct() {
    let user = testing::user("alice");
    let listing = Listing::new(&user, []);
    let sb = sing_box(&listing);
    assert_eq!(
        sb["outbounds"],
        json!([{"type": "direct", "tag": "direct"}])
    );
    assert_eq!(sb["route"]["final"], "direct");
    let cl = clash_yaml(&listing);
    assert_eq!(cl["proxies"], json!([]));
    assert_eq!(cl["proxy-groups"][0]["proxies"], json!(["DIRECT"]));
    assert_eq!(xray::render(&listing), "[]");
}

#[test]
fn xray_is_a_complete_config_per_entry() {
    let f = Fixture::new();
    let v: Value = serde_json::from_str(&xray::render(&f.listing())).unwrap();
    let configs = v.as_array().unwrap();
    assert_eq!(configs.len(), f.entries.len(), "Xray dials every kind");
    for (c, e) in configs.iter().zip(&f.entries) {
        assert_eq!(c["remarks"], f.name(&e.inbound.tag));
        let ports: Vec<_> = c["inbounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (&i["protocol"], &i["port"], &i["listen"]))
            .collect();
        assert_eq!(
            ports,
            [
                (&json!("socks"), &json!(10808), &json!("127.0.0.1")),
                (&json!("http"), &json!(10809), &json!("127.0.0.1"))
            ]
        );
        let tags = names_of(&c["outbounds"], "tag");
        assert_eq!(tags, ["proxy", "direct", "block"]);
        let rule = &c["routing"]["rules"][0];
        assert_eq!(rule["outboundTag"], "direct");
        assert!(
            rule["ip"]
                .as_array()
                .unwrap()
                .contains(&json!("192.168.0.0/16"))
        );
        assert_eq!(c["outbounds"][0]["protocol"], e.inbound.protocol.as_str());
        assert_eq!(
            c["outbounds"][0]["streamSettings"]["network"],
            e.inbound.network.as_str()
        );
    }
}

#[test]
fn xray_outbounds_carry_credentials_security_and_transport() {
    let f = Fixture::new();
    let v: Value = serde_json::from_str(&xray::render(&f.listing())).unwrap();
    let out = |tag: &str| named(&v, "remarks", &f.name(tag))["outbounds"][0].clone();

    let reality = out("vless-reality");
    assert_eq!(
        reality["settings"]["vnext"][0],
        json!({"address": "nl.example.com", "port": 443,
            "users": [{"id": f.uuid(), "encryption": "none", "flow": "xtls-rprx-vision"}]})
    );
    assert_eq!(
        reality["streamSettings"],
        json!({"network": "tcp", "security": "reality", "realitySettings": {
            "serverName": "www.example.com", "fingerprint": "chrome",
            "publicKey": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo", "shortId": "6ba85179e30d4fc2"}})
    );

    let ws = out("vless-ws")["streamSettings"].clone();
    assert_eq!(
        ws["wsSettings"],
        json!({"path": "/ws?ed=2048", "host": "cdn.example.com"})
    );
    assert_eq!(
        ws["tlsSettings"],
        json!({"serverName": "cdn.example.com", "alpn": ["h2", "http/1.1"], "fingerprint": "firefox"})
    );
    assert_eq!(
        out("vless-grpc")["streamSettings"]["grpcSettings"],
        json!({"serviceName": "grpc-svc", "multiMode": true})
    );
    assert_eq!(
        out("vless-xhttp")["streamSettings"]["xhttpSettings"],
        json!({"path": "/xh", "host": "xh.example.com", "mode": "auto"})
    );
    assert_eq!(
        out("vless-httpupgrade")["streamSettings"]["httpupgradeSettings"],
        json!({"path": "/up", "host": "up.example.com"})
    );
    assert_eq!(
        out("vmess-tcp")["settings"]["vnext"][0]["users"][0],
        json!({"id": f.uuid(), "alterId": 0, "security": "auto"})
    );
    assert_eq!(
        out("vmess-http")["streamSettings"]["tcpSettings"],
        json!({"header": {"type": "http", "request": {"version": "1.1", "method": "GET",
            "path": ["/"], "headers": {"Host": ["www.bing.com"]}}}})
    );
    let trojan = out("trojan-grpc");
    assert_eq!(
        trojan["settings"]["servers"][0],
        json!({"address": "tr.example.com", "port": 8443, "password": f.password()})
    );
    assert_eq!(
        trojan["streamSettings"]["tlsSettings"]["allowInsecure"],
        true
    );
    assert_eq!(
        out("ss")["settings"]["servers"][0],
        json!({"address": "10.0.0.4", "port": 8388, "password": f.password(),
            "method": "chacha20-ietf-poly1305"})
    );
}
