//! The links read back by a parser of the standard: `url` splits each link
//! as any URL parser would, and the expected fields come from the
//! standard's table written out again here (`expected_query`), not from the
//! writer's code.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;

use super::*;
use crate::domain::{UserId, UserSecret};
use crate::subscription::testing;

fn alice() -> User {
    let mut user = testing::user("alice");
    user.id = UserId::from_uuid(uuid::Uuid::from_u128(
        0x6b6d1a8e_64c5_4b3c_9f02_3c1f1e6a9d4e,
    ));
    user.secret = UserSecret::from_stored("pa+ss/wo=rd".into());
    user
}

fn fixture(tag: &str) -> ServedInbound {
    testing::entries()
        .into_iter()
        .find(|e| e.inbound.tag == tag)
        .expect("a fixture with that tag")
}

/// A link split into the standard's fields, every part decoded.
#[derive(Debug)]
struct Parsed {
    scheme: String,
    credential: String,
    host: String,
    port: u16,
    query: BTreeMap<String, String>,
    remark: String,
}

fn parse(link: &str) -> Parsed {
    let url = url::Url::parse(link).unwrap_or_else(|e| panic!("{link}: {e}"));
    let mut query = BTreeMap::new();
    for (k, v) in url.query_pairs() {
        let old = query.insert(k.into_owned(), v.into_owned());
        assert!(old.is_none(), "a key twice in {link}");
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => panic!("no host in {link}"),
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8().unwrap().into_owned();
    Parsed {
        scheme: url.scheme().into(),
        credential: decode(url.username()),
        host,
        port: url.port().expect("a port"),
        query,
        remark: decode(url.fragment().expect("a remark")),
    }
}

/// The standard's keys for a VLESS or Trojan link of `entry`.
fn expected_query(entry: &ServedInbound) -> BTreeMap<String, String> {
    let ib = &entry.inbound;
    let mut q = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            q.insert(k.to_owned(), v.to_owned());
        }
    };
    put("type", ib.network.as_str());
    match ib.network {
        Network::Tcp if ib.header_type == "http" => {
            put("headerType", "http");
            put("path", &ib.path);
            put("host", &ib.host);
        }
        Network::Tcp => {}
        Network::Kcp => {
            put("headerType", &ib.header_type);
            put("seed", &ib.seed);
        }
        Network::Ws | Network::HttpUpgrade | Network::Xhttp => {
            put("path", &ib.path);
            put("host", &ib.host);
            if ib.network == Network::Xhttp {
                put("mode", &ib.mode);
            }
        }
        Network::Grpc => {
            put("serviceName", &ib.service_name);
            put("mode", &ib.mode);
            put("authority", &ib.authority);
        }
    }
    put("security", ib.security.as_str());
    let sni = if ib.sni.is_empty() {
        ib.server_names.first().cloned().unwrap_or_default()
    } else {
        ib.sni.clone()
    };
    match ib.security {
        Security::None => {}
        Security::Tls => {
            put("sni", &ib.sni);
            put("fp", &ib.fingerprint);
            put("alpn", &ib.alpn.join(","));
            if ib.allow_insecure {
                put("allowInsecure", "1");
            }
        }
        Security::Reality => {
            put("sni", &sni);
            put(
                "fp",
                if ib.fingerprint.is_empty() {
                    "chrome"
                } else {
                    &ib.fingerprint
                },
            );
            put("pbk", &ib.public_key);
            put("sid", ib.short_ids.first().map_or("", |s| s.as_str()));
            put("spx", &ib.spider_x);
        }
    }
    if ib.protocol == InboundProtocol::Vless {
        put("encryption", "none");
        if ib.network == Network::Tcp && ib.security != Security::None {
            put("flow", &ib.flow);
        }
    }
    q
}

fn vmess_json(link: &str) -> serde_json::Value {
    let b64 = link.strip_prefix("vmess://").expect("a vmess link");
    serde_json::from_slice(&STANDARD.decode(b64).expect("standard base64")).expect("JSON")
}

/// Checks that `link` reads back to every field of `entry` for `user`.
fn assert_reads_back(user: &User, entry: &ServedInbound, link: &str) {
    let ib = &entry.inbound;
    if ib.protocol == InboundProtocol::Vmess {
        let j = vmess_json(link);
        assert_eq!(j["v"], "2");
        assert_eq!(j["ps"], entry.remark.as_str());
        assert_eq!(j["add"], entry.address.as_str());
        assert_eq!(j["port"], ib.port.to_string());
        assert_eq!(j["id"], user.id.to_string());
        assert_eq!(j["aid"], "0");
        assert_eq!(j["scy"], "auto");
        assert_eq!(j["net"], ib.network.as_str());
        let path = match ib.network {
            Network::Grpc => &ib.service_name,
            Network::Kcp => &ib.seed,
            _ => &ib.path,
        };
        assert_eq!(j["path"], path.as_str());
        let host = if ib.network == Network::Grpc {
            &ib.authority
        } else {
            &ib.host
        };
        assert_eq!(j["host"], host.as_str());
        let tls = ib.security == Security::Tls;
        assert_eq!(j["tls"], if tls { "tls" } else { "" });
        assert_eq!(j["sni"], if tls { ib.sni.as_str() } else { "" });
        assert_eq!(
            j["alpn"],
            if tls {
                ib.alpn.join(",")
            } else {
                String::new()
            }
        );
        return;
    }
    let p = parse(link);
    assert_eq!(p.remark, entry.remark, "{link}");
    assert_eq!(p.port, ib.port);
    let expected_host = match entry.address.parse::<Ipv6Addr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => entry.address.clone(),
    };
    assert_eq!(p.host, expected_host);
    match ib.protocol {
        InboundProtocol::Vless => {
            assert_eq!(p.scheme, "vless");
            assert_eq!(p.credential, user.id.to_string());
            assert_eq!(p.query, expected_query(entry), "{link}");
        }
        InboundProtocol::Trojan => {
            assert_eq!(p.scheme, "trojan");
            assert_eq!(p.credential, user.secret.expose());
            assert_eq!(p.query, expected_query(entry), "{link}");
        }
        InboundProtocol::Shadowsocks => {
            assert_eq!(p.scheme, "ss");
            let info = URL_SAFE_NO_PAD.decode(&p.credential).expect("base64url");
            let expected = format!("{}:{}", ib.method, user.secret.expose());
            assert_eq!(String::from_utf8(info).unwrap(), expected);
            assert!(p.query.is_empty());
        }
        InboundProtocol::Vmess => unreachable!(),
    }
}

#[test]
fn vless_reality_link_is_written_as_the_standard_spells_it() {
    let link = link(&alice(), &fixture("vless-reality"));
    assert_eq!(
        link,
        "vless://6b6d1a8e-64c5-4b3c-9f02-3c1f1e6a9d4e@nl.example.com:443\
         ?type=tcp&security=reality&sni=www.example.com&fp=chrome\
         &pbk=hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo&sid=6ba85179e30d4fc2\
         &encryption=none&flow=xtls-rprx-vision\
         #Amsterdam%20%F0%9F%87%B3%F0%9F%87%B1%20%231%20%26%20co"
    );
}

#[test]
fn trojan_password_and_values_are_percent_encoded() {
    let link = link(&alice(), &fixture("trojan-tls"));
    assert_eq!(
        link,
        "trojan://pa%2Bss%2Fwo%3Drd@tr.example.com:443\
         ?type=tcp&security=tls&sni=tr.example.com&alpn=http%2F1.1\
         #Trojan%20%23%20%3F%20%2F%20%40%20%3A"
    );
}

#[test]
fn shadowsocks_user_info_is_url_safe_base64_without_padding() {
    let link = link(&alice(), &fixture("ss"));
    let info = URL_SAFE_NO_PAD.encode("chacha20-ietf-poly1305:pa+ss/wo=rd");
    assert_eq!(
        link,
        format!("ss://{info}@10.0.0.4:8388#ss%2B%202022%20~%20%27x%27")
    );
    assert!(!info.contains(['/', '+', '=']));
}

#[test]
fn vmess_link_is_base64_json_with_string_values() {
    let j = vmess_json(&link(&alice(), &fixture("vmess-ws-tls")));
    let expected = serde_json::json!({
        "v": "2", "ps": "Москва · VMess", "add": "vm.example.com", "port": "443",
        "id": "6b6d1a8e-64c5-4b3c-9f02-3c1f1e6a9d4e", "aid": "0", "scy": "auto",
        "net": "ws", "type": "none", "host": "vm.example.com", "path": "/vm",
        "tls": "tls", "sni": "vm.example.com", "alpn": "", "fp": ""
    });
    assert_eq!(j, expected);
}

#[test]
fn vmess_grpc_carries_service_name_as_path_and_mode_as_type() {
    let mut e = fixture("vless-grpc");
    e.inbound.protocol = InboundProtocol::Vmess;
    e.inbound.authority = "auth.example.com".into();
    let j = vmess_json(&link(&alice(), &e));
    assert_eq!(j["net"], "grpc");
    assert_eq!(j["path"], "grpc-svc");
    assert_eq!(j["type"], "multi");
    assert_eq!(j["host"], "auth.example.com");
    assert_eq!(j["add"], "2001:db8::1", "no brackets inside JSON");
}

#[test]
fn every_fixture_reads_back_to_its_fields() {
    let user = alice();
    for entry in testing::entries() {
        assert_reads_back(&user, &entry, &link(&user, &entry));
    }
}

#[test]
fn ipv6_addresses_are_bracketed() {
    let link = link(&alice(), &fixture("vless-grpc"));
    assert!(link.contains("@[2001:db8::1]:2053?"), "{link}");
}

#[test]
fn flow_is_written_only_with_tls_or_reality_over_tcp() {
    let user = alice();
    let mut e = fixture("vless-reality");
    assert!(link(&user, &e).contains("&flow=xtls-rprx-vision"));
    e.inbound.security = Security::Tls;
    assert!(link(&user, &e).contains("&flow=xtls-rprx-vision"));
    e.inbound.security = Security::None;
    assert!(!link(&user, &e).contains("flow="));
    e.inbound.security = Security::Reality;
    e.inbound.network = Network::Ws;
    assert!(!link(&user, &e).contains("flow="));
}

#[test]
fn empty_values_are_left_out() {
    let user = alice();
    for entry in testing::entries() {
        let link = link(&user, &entry);
        assert!(!link.contains("=&") && !link.contains("=#"), "{link}");
        assert!(!link.contains("?&") && !link.contains("&&"), "{link}");
    }
}

#[test]
fn reality_without_fingerprint_or_sni_gets_chrome_and_the_first_server_name() {
    let mut e = fixture("vless-reality");
    e.inbound.fingerprint.clear();
    e.inbound.sni.clear();
    let q = parse(&link(&alice(), &e)).query;
    assert_eq!(q["fp"], "chrome");
    assert_eq!(q["sni"], "www.example.com");
}

#[test]
fn allow_insecure_is_written_as_1() {
    let q = parse(&link(&alice(), &fixture("trojan-grpc"))).query;
    assert_eq!(q["allowInsecure"], "1");
    let q = parse(&link(&alice(), &fixture("trojan-tls"))).query;
    assert!(!q.contains_key("allowInsecure"));
}

#[test]
fn alpn_is_comma_joined() {
    let q = parse(&link(&alice(), &fixture("vless-ws"))).query;
    assert_eq!(q["alpn"], "h2,http/1.1");
}

#[test]
fn the_list_has_one_link_per_line_in_entry_order() {
    let user = alice();
    let entries = testing::entries();
    let listing = Listing::new(&user, &entries);
    let text = links_text(&listing);
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), entries.len());
    for (line, entry) in lines.iter().zip(&entries) {
        assert_eq!(*line, link(&user, entry));
    }
}

#[test]
fn base64_list_is_the_text_in_standard_base64() {
    let user = alice();
    let entries = testing::entries();
    let listing = Listing::new(&user, &entries);
    let body = base64_links(&listing);
    assert_eq!(
        STANDARD.decode(&body).unwrap(),
        links_text(&listing).as_bytes()
    );
}

#[test]
fn an_empty_listing_is_an_empty_body() {
    let user = alice();
    let listing = Listing::new(&user, []);
    assert_eq!(links_text(&listing), "");
    assert_eq!(base64_links(&listing), "");
}

/// Any text at all: ASCII specials are drawn often, the rest from every
/// Unicode scalar value (control characters included).
fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        ' ', '#', '&', '%', '?', '/', '@', ':', '+', '=', ',', '[', ']', '"', '\'', '<', '\\',
    ]);
    let ch = prop_oneof![special, any::<char>(), prop::char::range('a', 'z')];
    prop::collection::vec(ch, 0..24).prop_map(|cs| cs.into_iter().collect())
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?(\\.[a-z]{2,6}){0,3}",
        any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
    ]
}

prop_compose! {
    /// A fixture of any kind with every free-text field replaced.
    fn entry()(
        kind in 0..testing::entries().len(),
        remark in text(), address in address(), port in 1u16..,
        path in text(), host in text(), service in text(), mode in text(),
        sni in text(), spx in text(), alpn in prop::collection::vec(text(), 0..3),
    ) -> ServedInbound {
        let mut e = testing::entries().swap_remove(kind);
        e.remark = remark;
        e.address = address;
        let ib = &mut e.inbound;
        ib.port = port;
        // Set on every kind: a key the kind does not use must not leak.
        (ib.path, ib.host, ib.service_name, ib.mode) = (path, host, service, mode);
        (ib.sni, ib.spider_x) = (sni, spx);
        // An item with a comma could not be told from two once joined.
        ib.alpn = alpn.into_iter().filter(|a| !a.is_empty() && !a.contains(',')).collect();
        e
    }
}

proptest! {
    #[test]
    fn any_link_reads_back_to_its_fields(entry in entry()) {
        let user = alice();
        assert_reads_back(&user, &entry, &link(&user, &entry));
    }

    #[test]
    fn any_list_decodes_to_its_links(entries in prop::collection::vec(entry(), 0..8)) {
        let user = alice();
        let listing = Listing::new(&user, &entries);
        let text = String::from_utf8(STANDARD.decode(base64_links(&listing)).unwrap()).unwrap();
        let links: Vec<String> = entries.iter().map(|e| link(&user, e)).collect();
        prop_assert_eq!(text, links.join("\n"));
    }
}
