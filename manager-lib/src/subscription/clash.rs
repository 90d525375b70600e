//! Clash Meta / Mihomo YAML (what Clash Verge, FlClash, Clash Meta for
//! Android and Stash import): `proxies`, a `select` group (the url-test
//! first, then every proxy) that the one rule ends in, a `url-test` group
//! over every proxy, and a `mixed-port` for apps.
//!
//! The document is YAML in block layout whose every item is one JSON flow
//! mapping or string, written by serde_json: JSON is YAML 1.2, so a hostile
//! name (`key: value`, `- [list]`, `*ref`, `!tag`, `#`, quotes) can only
//! ever be a double-quoted scalar, and no YAML emitter is needed (the
//! maintained Rust ones run on a YAML 1.1 C port and are several times
//! slower). The few characters YAML forbids raw or reads as line breaks
//! are escaped.
//!
//! Left out ([`carries`]): xhttp and mKCP (Mihomo 1.19 has neither),
//! Trojan over tcp with the http header (Mihomo's Trojan has no http
//! transport), and Shadowsocks with any transport or TLS (Clash's
//! Shadowsocks takes those only as plugins).

use std::borrow::Cow;
use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

use super::singbox::{alpn_for, fingerprint_for, flow_for, free_name, split_early_data};
use super::{EntryCredential, Listing};
use crate::domain::{InboundDescription, InboundProtocol, Network, Security, ServedInbound};

/// Where the imported profile listens for apps (Clash's usual port).
pub const MIXED_PORT: u16 = 7890;

/// Whether Mihomo can dial this inbound.
pub fn carries(inbound: &InboundDescription) -> bool {
    match (inbound.protocol, inbound.network) {
        (_, Network::Xhttp | Network::Kcp) => false,
        (InboundProtocol::Shadowsocks, network) => {
            network == Network::Tcp
                && inbound.header_type.is_empty()
                && inbound.security == Security::None
        }
        (InboundProtocol::Trojan, Network::Tcp) => inbound.header_type.is_empty(),
        _ => true,
    }
}

/// The Clash Meta config for `listing` (entries Mihomo cannot dial left out).
pub fn render(listing: &Listing<'_>) -> String {
    let names = listing.unique_names();
    let kept: Vec<(&ServedInbound, &str, &EntryCredential)> = listing
        .entries
        .iter()
        .zip(&names)
        .zip(&listing.credentials)
        .filter(|((e, _), _)| carries(&e.inbound))
        .map(|((e, n), c)| (&**e, n.as_ref(), &**c))
        .collect();
    let renamed = renamed_from_built_ins(kept.iter().map(|(_, n, _)| *n).collect());
    let proxy_names: Vec<&str> = renamed.iter().map(AsRef::as_ref).collect();
    let mut taken = proxy_names.clone();
    taken.extend(BUILT_IN);
    let select = free_name("Proxy", &taken);
    let auto = free_name("Auto", &taken);

    let mut out = Vec::with_capacity(256 + kept.len() * 400);
    out.extend_from_slice(
        format!(
            "mixed-port: {MIXED_PORT}\nallow-lan: false\nmode: rule\nlog-level: warning\nproxies:\n"
        )
        .as_bytes(),
    );
    if kept.is_empty() {
        // An empty `proxies:` reads as null; clients want a list.
        out.extend_from_slice(b"  []\n");
    }
    for ((e, _, c), name) in kept.iter().zip(&proxy_names) {
        item(&mut out, &proxy(e, name, &c.uuid, c.password.expose()));
    }
    out.extend_from_slice(b"proxy-groups:\n");
    let mut choices = Vec::with_capacity(proxy_names.len() + 1);
    if proxy_names.is_empty() {
        // A group needs a member; with no proxy the profile goes direct.
        choices.push("DIRECT");
    } else {
        choices.push(&auto);
        choices.extend_from_slice(&proxy_names);
    }
    item(
        &mut out,
        &Group {
            name: &select,
            kind: "select",
            proxies: choices,
            url: None,
            interval: None,
        },
    );
    if !proxy_names.is_empty() {
        item(
            &mut out,
            &Group {
                name: &auto,
                kind: "url-test",
                proxies: proxy_names,
                url: Some("https://www.gstatic.com/generate_204"),
                interval: Some(300),
            },
        );
    }
    out.extend_from_slice(b"rules:\n");
    item(&mut out, &format!("MATCH,{select}"));
    String::from_utf8(out).expect("serde_json and the fixed keys write UTF-8")
}

/// Mihomo's own policies and group: they share the namespace of proxies and
/// groups, and a proxy of one of these names fails the whole config.
const BUILT_IN: [&str; 6] = [
    "DIRECT",
    "REJECT",
    "REJECT-DROP",
    "PASS",
    "COMPATIBLE",
    "GLOBAL",
];

/// `names` with each built-in name numbered (`DIRECT 2`) clear of every
/// other name.
fn renamed_from_built_ins(names: Vec<&str>) -> Vec<Cow<'_, str>> {
    let mut out: Vec<Cow<'_, str>> = names.iter().map(|n| Cow::Borrowed(*n)).collect();
    for at in 0..out.len() {
        if BUILT_IN.contains(&out[at].as_ref()) {
            let mut taken: Vec<&str> = out.iter().map(AsRef::as_ref).collect();
            taken.extend(BUILT_IN);
            let free = free_name(&out[at], &taken).into_owned();
            out[at] = Cow::Owned(free);
        }
    }
    out
}

/// One block-sequence item: `  - ` and the value as one line of JSON.
fn item(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"  - ");
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, YamlSafe);
    value
        .serialize(&mut ser)
        .expect("plain structs with string keys always serialize");
    out.push(b'\n');
}

/// serde_json's compact output with the characters escaped that JSON
/// allows raw but YAML does not: C1 controls and DEL, the BOM, U+FFFE/FFFF
/// (not printable in YAML), and NEL, U+2028, U+2029 (line breaks to YAML
/// 1.1 parsers such as Mihomo's go-yaml, which would fold them into a
/// space and so rename a proxy).
#[derive(Clone, Copy, Debug)]
struct YamlSafe;

impl YamlSafe {
    fn needs_escape(c: char) -> bool {
        matches!(
            c,
            '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
    }
}

impl Formatter for YamlSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !fragment.chars().any(Self::needs_escape) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if Self::needs_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

fn proxy<'a>(e: &'a ServedInbound, name: &'a str, uuid: &'a str, password: &'a str) -> Proxy<'a> {
    let i = &e.inbound;
    let tls = i.security != Security::None;
    let reality = i.security == Security::Reality;
    let server_name = non_empty(&i.sni).or_else(|| i.server_names.first().map(String::as_str));
    let (kind, uuid, password, cipher) = match i.protocol {
        InboundProtocol::Vless => ("vless", Some(uuid), None, None),
        InboundProtocol::Vmess => ("vmess", Some(uuid), None, Some("auto")),
        InboundProtocol::Trojan => ("trojan", None, Some(password), None),
        InboundProtocol::Shadowsocks => ("ss", None, Some(password), Some(i.method.as_str())),
    };
    let trojan = i.protocol == InboundProtocol::Trojan;
    let host = non_empty(&i.host);
    let mut p = Proxy {
        name,
        kind,
        server: &e.address,
        port: i.port,
        uuid,
        alter_id: (i.protocol == InboundProtocol::Vmess).then_some(0),
        password,
        cipher,
        udp: true,
        network: None,
        flow: flow_for(i),
        // Trojan is TLS by definition: Mihomo has no `tls` key for it.
        tls: (tls && !trojan).then_some(true),
        servername: server_name.filter(|_| tls && !trojan),
        sni: server_name.filter(|_| trojan),
        skip_cert_verify: i.allow_insecure && !reality,
        alpn: if tls && !reality {
            alpn_for(i)
        } else {
            Vec::new()
        },
        client_fingerprint: fingerprint_for(i).filter(|_| tls),
        reality_opts: reality.then(|| RealityOpts {
            public_key: &i.public_key,
            short_id: i.short_ids.first().map_or("", String::as_str),
        }),
        ws_opts: None,
        grpc_opts: None,
        http_opts: None,
    };
    match i.network {
        Network::Tcp if i.header_type == "http" => {
            p.network = Some("http");
            p.http_opts = Some(HttpOpts {
                method: "GET",
                path: [non_empty(&i.path).unwrap_or("/")],
                headers: host.map(|h| HttpHeaders { host: [h] }),
            });
        }
        Network::Tcp | Network::Xhttp | Network::Kcp => {
            p.network = (i.protocol != InboundProtocol::Shadowsocks).then_some("tcp");
        }
        Network::Ws | Network::HttpUpgrade => {
            let upgrade = i.network == Network::HttpUpgrade;
            let (path, ed) = if upgrade {
                (Cow::Borrowed(i.path.as_str()), None)
            } else {
                split_early_data(&i.path)
            };
            p.network = Some("ws");
            p.ws_opts = Some(WsOpts {
                path: if path.is_empty() { "/".into() } else { path },
                headers: host.map(|host| HostHeader { host }),
                max_early_data: ed,
                early_data_header_name: ed.map(|_| "Sec-WebSocket-Protocol"),
                v2ray_http_upgrade: upgrade,
            });
        }
        Network::Grpc => {
            p.network = Some("grpc");
            p.grpc_opts = Some(GrpcOpts {
                grpc_service_name: &i.service_name,
            });
        }
    }
    p
}

#[derive(Serialize)]
struct Group<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    proxies: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Proxy<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    server: &'a str,
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<&'a str>,
    #[serde(rename = "alterId", skip_serializing_if = "Option::is_none")]
    alter_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher: Option<&'a str>,
    udp: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    servername: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skip_cert_verify: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alpn: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reality_opts: Option<RealityOpts<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ws_opts: Option<WsOpts<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_opts: Option<GrpcOpts<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_opts: Option<HttpOpts<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RealityOpts<'a> {
    public_key: &'a str,
    short_id: &'a str,
}

#[derive(Serialize)]
struct HostHeader<'a> {
    #[serde(rename = "Host")]
    host: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WsOpts<'a> {
    path: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HostHeader<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_early_data: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    early_data_header_name: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    v2ray_http_upgrade: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct GrpcOpts<'a> {
    grpc_service_name: &'a str,
}

/// Mihomo's http transport: V2Ray's tcp http header disguise (lists, as
/// V2Ray's config has them).
#[derive(Serialize)]
struct HttpOpts<'a> {
    method: &'static str,
    path: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HttpHeaders<'a>>,
}

#[derive(Serialize)]
struct HttpHeaders<'a> {
    #[serde(rename = "Host")]
    host: [&'a str; 1],
}
