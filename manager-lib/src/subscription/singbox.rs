//! sing-box JSON (for sing-box 1.14, what SFA/SFI/SFM and Hiddify import):
//! a `mixed` inbound on 127.0.0.1:2080 so an imported profile works as is,
//! one outbound per entry, a `selector` (the urltest first, then every
//! proxy) that routing ends in, a `urltest` over every proxy, and `direct`.
//!
//! sing-box has no xhttp or mKCP transport: those entries are left out
//! ([`carries`]). Serialized from borrowed structs: nothing is copied but
//! the user's id, once.

use std::borrow::Cow;

use serde::Serialize;

use super::{EntryCredential, Listing};
use crate::domain::{InboundDescription, InboundProtocol, Network, Security, ServedInbound};

/// Where the imported profile listens for apps (the port SFA and the
/// sing-box docs use for `mixed`).
pub const MIXED_PORT: u16 = 2080;

/// Whether sing-box can dial this inbound: every protocol over tcp (with or
/// without the http header), ws, httpupgrade and grpc; Shadowsocks only
/// bare (sing-box's Shadowsocks takes no transport or TLS).
pub fn carries(inbound: &InboundDescription) -> bool {
    match inbound.protocol {
        InboundProtocol::Shadowsocks => {
            inbound.network == Network::Tcp
                && inbound.header_type.is_empty()
                && inbound.security == Security::None
        }
        _ => !matches!(inbound.network, Network::Xhttp | Network::Kcp),
    }
}

/// The sing-box config for `listing` (entries sing-box cannot dial left out).
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
    let tags: Vec<&str> = kept.iter().map(|(_, n, _)| *n).collect();
    let direct = free_name("direct", &tags);
    let select = free_name("select", &tags);
    let auto = free_name("auto", &tags);

    let proxies = kept
        .iter()
        .map(|(e, tag, c)| proxy(e, tag, &c.uuid, c.password.expose()))
        .collect();
    let mut groups = Vec::with_capacity(2);
    let route_final: &str = if tags.is_empty() {
        &direct
    } else {
        let mut choices = Vec::with_capacity(tags.len() + 1);
        choices.push(auto.as_ref());
        choices.extend_from_slice(&tags);
        groups.push(Group {
            kind: "selector",
            tag: &select,
            outbounds: choices,
            default: Some(&auto),
        });
        groups.push(Group {
            kind: "urltest",
            tag: &auto,
            outbounds: tags.clone(),
            default: None,
        });
        &select
    };
    let outbounds = Outbounds {
        proxies,
        groups,
        direct: Direct {
            kind: "direct",
            tag: &direct,
        },
    };

    let config = Config {
        inbounds: [Mixed {
            kind: "mixed",
            tag: "mixed-in",
            listen: "127.0.0.1",
            listen_port: MIXED_PORT,
        }],
        outbounds,
        route: Route {
            r#final: route_final,
        },
    };
    serde_json::to_string(&config).expect("plain structs with string keys always serialize")
}

/// `base`, or `base` with a number added, whichever no proxy is named:
/// a remark may be `direct` too.
pub(super) fn free_name<'a>(base: &'a str, taken: &[&str]) -> Cow<'a, str> {
    if !taken.contains(&base) {
        return Cow::Borrowed(base);
    }
    (2..)
        .map(|n| format!("{base} {n}"))
        .find(|n| !taken.contains(&n.as_str()))
        .map(Cow::Owned)
        .expect("a finite list leaves some number free")
}

/// A ws path with Xray's early-data parameter (`/ws?ed=2048`) split into
/// the path without it and the size: sing-box and Mihomo take the size as
/// a setting and would send `?ed=…` to the server as part of the path.
pub(super) fn split_early_data(path: &str) -> (Cow<'_, str>, Option<u32>) {
    let Some((base, query)) = path.split_once('?') else {
        return (Cow::Borrowed(path), None);
    };
    let mut ed = None;
    let mut rest: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("ed=").map(str::parse::<u32>) {
            Some(Ok(n)) if ed.is_none() => ed = Some(n),
            _ => rest.push(pair),
        }
    }
    match (ed, rest.is_empty()) {
        (None, _) => (Cow::Borrowed(path), None),
        (Some(n), true) => (Cow::Borrowed(base), Some(n)),
        (Some(n), false) => (Cow::Owned(format!("{base}?{}", rest.join("&"))), Some(n)),
    }
}

/// The ALPN list to offer: ws and httpupgrade speak HTTP/1.1 on the TLS
/// connection, so offering h2 or h3 there lets a server pick a protocol the
/// transport cannot speak (Xray's own client forces http/1.1 likewise).
pub(super) fn alpn_for(inbound: &InboundDescription) -> Vec<&str> {
    let http1_only = matches!(inbound.network, Network::Ws | Network::HttpUpgrade);
    inbound
        .alpn
        .iter()
        .map(String::as_str)
        .filter(|p| !http1_only || *p == "http/1.1")
        .collect()
}

/// The flow, where it applies: VLESS over bare tcp with TLS or REALITY.
pub(super) fn flow_for(inbound: &InboundDescription) -> Option<&str> {
    let applies = inbound.protocol == InboundProtocol::Vless
        && inbound.network == Network::Tcp
        && inbound.header_type.is_empty()
        && inbound.security != Security::None;
    Some(inbound.flow.as_str()).filter(|f| applies && !f.is_empty())
}

/// REALITY's fingerprint: REALITY needs a uTLS hello, and clients refuse
/// or fall back badly without one named.
pub(super) fn fingerprint_for(inbound: &InboundDescription) -> Option<&str> {
    match (inbound.fingerprint.as_str(), inbound.security) {
        ("", Security::Reality) => Some("chrome"),
        ("", _) => None,
        (fp, _) => Some(fp),
    }
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

fn proxy<'a>(e: &'a ServedInbound, tag: &'a str, uuid: &'a str, password: &'a str) -> Proxy<'a> {
    let i = &e.inbound;
    let (kind, uuid, password) = match i.protocol {
        InboundProtocol::Vless => ("vless", Some(uuid), None),
        InboundProtocol::Vmess => ("vmess", Some(uuid), None),
        InboundProtocol::Trojan => ("trojan", None, Some(password)),
        InboundProtocol::Shadowsocks => ("shadowsocks", None, Some(password)),
    };
    let is = |p| i.protocol == p;
    Proxy {
        kind,
        tag,
        server: &e.address,
        server_port: i.port,
        uuid,
        password,
        method: is(InboundProtocol::Shadowsocks).then_some(i.method.as_str()),
        security: is(InboundProtocol::Vmess).then_some("auto"),
        flow: flow_for(i),
        tls: tls(i),
        transport: transport(i),
    }
}

fn tls(i: &InboundDescription) -> Option<Tls<'_>> {
    if i.security == Security::None {
        return None;
    }
    let reality = i.security == Security::Reality;
    Some(Tls {
        enabled: true,
        server_name: non_empty(&i.sni).or_else(|| i.server_names.first().map(String::as_str)),
        insecure: i.allow_insecure && !reality,
        alpn: if reality { Vec::new() } else { alpn_for(i) },
        utls: fingerprint_for(i).map(|fingerprint| Utls {
            enabled: true,
            fingerprint,
        }),
        reality: reality.then(|| Reality {
            enabled: true,
            public_key: &i.public_key,
            short_id: i.short_ids.first().map_or("", String::as_str),
        }),
    })
}

fn transport(i: &InboundDescription) -> Option<Transport<'_>> {
    let host = non_empty(&i.host);
    match i.network {
        Network::Tcp if i.header_type == "http" => Some(Transport::Http {
            host: host.into_iter().collect(),
            path: non_empty(&i.path),
            method: "GET",
        }),
        Network::Tcp | Network::Xhttp | Network::Kcp => None,
        Network::Ws => {
            let (path, ed) = split_early_data(&i.path);
            Some(Transport::Ws {
                path,
                headers: host.map(|host| HostHeader { host }),
                max_early_data: ed,
                // Xray reads early data from this header, not the path.
                early_data_header_name: ed.map(|_| "Sec-WebSocket-Protocol"),
            })
        }
        Network::HttpUpgrade => Some(Transport::HttpUpgrade {
            host,
            path: non_empty(&i.path),
        }),
        Network::Grpc => Some(Transport::Grpc {
            service_name: &i.service_name,
        }),
    }
}

#[derive(Serialize)]
struct Config<'a> {
    inbounds: [Mixed; 1],
    outbounds: Outbounds<'a>,
    route: Route<'a>,
}

#[derive(Serialize)]
struct Mixed {
    #[serde(rename = "type")]
    kind: &'static str,
    tag: &'static str,
    listen: &'static str,
    listen_port: u16,
}

#[derive(Serialize)]
struct Route<'a> {
    r#final: &'a str,
}

/// sing-box's one `outbounds` list: the proxies, the groups, `direct`.
struct Outbounds<'a> {
    proxies: Vec<Proxy<'a>>,
    groups: Vec<Group<'a>>,
    direct: Direct<'a>,
}

impl Serialize for Outbounds<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut seq = serializer.serialize_seq(Some(self.proxies.len() + self.groups.len() + 1))?;
        for p in &self.proxies {
            seq.serialize_element(p)?;
        }
        for g in &self.groups {
            seq.serialize_element(g)?;
        }
        seq.serialize_element(&self.direct)?;
        seq.end()
    }
}

#[derive(Serialize)]
struct Direct<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tag: &'a str,
}

#[derive(Serialize)]
struct Group<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tag: &'a str,
    outbounds: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<&'a str>,
}

#[derive(Serialize)]
struct Proxy<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tag: &'a str,
    server: &'a str,
    server_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    /// VMess: the cipher (`auto`).
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<Transport<'a>>,
}

#[derive(Serialize)]
struct Tls<'a> {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alpn: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    utls: Option<Utls<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reality: Option<Reality<'a>>,
}

#[derive(Serialize)]
struct Utls<'a> {
    enabled: bool,
    fingerprint: &'a str,
}

#[derive(Serialize)]
struct Reality<'a> {
    enabled: bool,
    public_key: &'a str,
    short_id: &'a str,
}

#[derive(Serialize)]
struct HostHeader<'a> {
    #[serde(rename = "Host")]
    host: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Transport<'a> {
    /// Plain HTTP/1.1 without TLS: Xray's tcp transport with the http
    /// header disguise (sing-box merged that into its HTTP transport).
    #[serde(rename = "http")]
    Http {
        #[serde(skip_serializing_if = "Vec::is_empty")]
        host: Vec<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<&'a str>,
        method: &'static str,
    },
    #[serde(rename = "ws")]
    Ws {
        path: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        headers: Option<HostHeader<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_early_data: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        early_data_header_name: Option<&'static str>,
    },
    #[serde(rename = "httpupgrade")]
    HttpUpgrade {
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<&'a str>,
    },
    #[serde(rename = "grpc")]
    Grpc { service_name: &'a str },
}
