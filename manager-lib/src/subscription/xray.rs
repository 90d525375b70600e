//! Xray JSON (what v2rayN, v2rayNG, Streisand, Happ and V2Box import): an
//! array of complete client configs, one per entry, each with `remarks`,
//! a SOCKS inbound on 127.0.0.1:10808 and an HTTP one on 10809, the entry's
//! outbound (`proxy`), `direct` and `block`, and routing that sends private
//! addresses direct (by CIDR, so no geoip.dat is needed).
//!
//! Xray dials every kind the agent describes, so no entry is left out.

use serde::Serialize;

use super::Listing;
use super::singbox::{fingerprint_for, flow_for};
use crate::domain::{InboundDescription, InboundProtocol, Network, Security, ServedInbound};

/// The SOCKS port of every config (v2rayN's default).
pub const SOCKS_PORT: u16 = 10808;
/// The HTTP port of every config (v2rayN's default).
pub const HTTP_PORT: u16 = 10809;

/// The addresses that never go through the proxy: loopback, private,
/// link-local and CGNAT ranges, IPv4 and IPv6.
const PRIVATE: [&str; 9] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

/// The Xray JSON for `listing`: a JSON array, one config per entry.
pub fn render(listing: &Listing<'_>) -> String {
    let names = listing.unique_names();
    let configs: Vec<Config<'_>> = listing
        .entries
        .iter()
        .zip(&names)
        .zip(&listing.credentials)
        .map(|((e, name), c)| config(e, name, &c.uuid, c.password.expose()))
        .collect();
    serde_json::to_string(&configs).expect("plain structs with string keys always serialize")
}

fn config<'a>(
    e: &'a ServedInbound,
    remarks: &'a str,
    uuid: &'a str,
    password: &'a str,
) -> Config<'a> {
    Config {
        remarks,
        log: Log {
            loglevel: "warning",
        },
        inbounds: [
            Inbound {
                tag: "socks",
                listen: "127.0.0.1",
                port: SOCKS_PORT,
                protocol: "socks",
                settings: Some(SocksSettings {
                    auth: "noauth",
                    udp: true,
                }),
                sniffing: Sniffing::ROUTE_ONLY,
            },
            Inbound {
                tag: "http",
                listen: "127.0.0.1",
                port: HTTP_PORT,
                protocol: "http",
                settings: None,
                sniffing: Sniffing::ROUTE_ONLY,
            },
        ],
        outbounds: (
            proxy(e, uuid, password),
            Plain {
                tag: "direct",
                protocol: "freedom",
            },
            Plain {
                tag: "block",
                protocol: "blackhole",
            },
        ),
        routing: Routing {
            domain_strategy: "AsIs",
            rules: [Rule {
                kind: "field",
                ip: PRIVATE,
                outbound_tag: "direct",
            }],
        },
    }
}

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

fn proxy<'a>(e: &'a ServedInbound, uuid: &'a str, password: &'a str) -> Proxy<'a> {
    let i = &e.inbound;
    let settings = match i.protocol {
        InboundProtocol::Vless | InboundProtocol::Vmess => {
            let vless = i.protocol == InboundProtocol::Vless;
            Settings::Vnext {
                vnext: [Vnext {
                    address: &e.address,
                    port: i.port,
                    users: [User {
                        id: uuid,
                        encryption: vless.then_some("none"),
                        flow: flow_for(i),
                        alter_id: (!vless).then_some(0),
                        security: (!vless).then_some("auto"),
                    }],
                }],
            }
        }
        InboundProtocol::Trojan | InboundProtocol::Shadowsocks => Settings::Servers {
            servers: [Server {
                address: &e.address,
                port: i.port,
                password,
                method: non_empty(&i.method).filter(|_| i.protocol == InboundProtocol::Shadowsocks),
            }],
        },
    };
    Proxy {
        tag: "proxy",
        protocol: i.protocol.as_str(),
        settings,
        stream_settings: stream(i),
    }
}

fn stream(i: &InboundDescription) -> Stream<'_> {
    let server_name = non_empty(&i.sni).or_else(|| i.server_names.first().map(String::as_str));
    let host = non_empty(&i.host);
    let path = non_empty(&i.path);
    let mut s = Stream {
        network: i.network.as_str(),
        security: i.security.as_str(),
        tls_settings: (i.security == Security::Tls).then(|| TlsSettings {
            server_name,
            allow_insecure: i.allow_insecure,
            alpn: i.alpn.iter().map(String::as_str).collect(),
            fingerprint: fingerprint_for(i),
        }),
        reality_settings: (i.security == Security::Reality).then(|| RealitySettings {
            server_name,
            fingerprint: fingerprint_for(i).unwrap_or("chrome"),
            public_key: &i.public_key,
            short_id: i.short_ids.first().map_or("", String::as_str),
            spider_x: non_empty(&i.spider_x),
        }),
        tcp_settings: None,
        ws_settings: None,
        httpupgrade_settings: None,
        grpc_settings: None,
        xhttp_settings: None,
        kcp_settings: None,
    };
    match i.network {
        Network::Tcp if i.header_type == "http" => {
            s.tcp_settings = Some(TcpSettings {
                header: TcpHeader {
                    kind: "http",
                    request: HttpRequest {
                        version: "1.1",
                        method: "GET",
                        path: [path.unwrap_or("/")],
                        headers: host.map(|h| HttpHeaders { host: [h] }),
                    },
                },
            })
        }
        Network::Tcp => {}
        // `host` (not a Host header) is what current Xray reads; the header
        // form is deprecated there.
        Network::Ws => s.ws_settings = Some(PathHost { path, host }),
        Network::HttpUpgrade => s.httpupgrade_settings = Some(PathHost { path, host }),
        Network::Grpc => {
            s.grpc_settings = Some(GrpcSettings {
                service_name: &i.service_name,
                multi_mode: i.mode == "multi",
                authority: non_empty(&i.authority),
            })
        }
        Network::Xhttp => {
            s.xhttp_settings = Some(XhttpSettings {
                path,
                host,
                mode: non_empty(&i.mode),
            })
        }
        Network::Kcp => {
            s.kcp_settings = Some(KcpSettings {
                header: KcpHeader {
                    kind: non_empty(&i.header_type).unwrap_or("none"),
                },
                seed: non_empty(&i.seed),
            })
        }
    }
    s
}

#[derive(Serialize)]
struct Config<'a> {
    remarks: &'a str,
    log: Log,
    inbounds: [Inbound; 2],
    outbounds: (Proxy<'a>, Plain, Plain),
    routing: Routing,
}

#[derive(Serialize)]
struct Log {
    loglevel: &'static str,
}

#[derive(Serialize)]
struct Inbound {
    tag: &'static str,
    listen: &'static str,
    port: u16,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<SocksSettings>,
    sniffing: Sniffing,
}

#[derive(Serialize)]
struct SocksSettings {
    auth: &'static str,
    udp: bool,
}

/// Sniffed names serve routing only: the connection still goes to the
/// address the app asked for.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sniffing {
    enabled: bool,
    dest_override: [&'static str; 2],
    route_only: bool,
}

impl Sniffing {
    const ROUTE_ONLY: Self = Self {
        enabled: true,
        dest_override: ["http", "tls"],
        route_only: true,
    };
}

#[derive(Serialize)]
struct Plain {
    tag: &'static str,
    protocol: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Routing {
    domain_strategy: &'static str,
    rules: [Rule; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(rename = "type")]
    kind: &'static str,
    ip: [&'static str; PRIVATE.len()],
    outbound_tag: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Proxy<'a> {
    tag: &'static str,
    protocol: &'static str,
    settings: Settings<'a>,
    stream_settings: Stream<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Settings<'a> {
    Vnext { vnext: [Vnext<'a>; 1] },
    Servers { servers: [Server<'a>; 1] },
}

#[derive(Serialize)]
struct Vnext<'a> {
    address: &'a str,
    port: u16,
    users: [User<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alter_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<&'static str>,
}

#[derive(Serialize)]
struct Server<'a> {
    address: &'a str,
    port: u16,
    password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stream<'a> {
    network: &'static str,
    security: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_settings: Option<TlsSettings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reality_settings: Option<RealitySettings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_settings: Option<TcpSettings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ws_settings: Option<PathHost<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    httpupgrade_settings: Option<PathHost<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_settings: Option<GrpcSettings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xhttp_settings: Option<XhttpSettings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kcp_settings: Option<KcpSettings<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TlsSettings<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    server_name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_insecure: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alpn: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RealitySettings<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    server_name: Option<&'a str>,
    fingerprint: &'a str,
    public_key: &'a str,
    short_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    spider_x: Option<&'a str>,
}

#[derive(Serialize)]
struct TcpSettings<'a> {
    header: TcpHeader<'a>,
}

#[derive(Serialize)]
struct TcpHeader<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    request: HttpRequest<'a>,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    version: &'static str,
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

#[derive(Serialize)]
struct PathHost<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GrpcSettings<'a> {
    service_name: &'a str,
    multi_mode: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    authority: Option<&'a str>,
}

#[derive(Serialize)]
struct XhttpSettings<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'a str>,
}

#[derive(Serialize)]
struct KcpSettings<'a> {
    header: KcpHeader<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<&'a str>,
}

#[derive(Serialize)]
struct KcpHeader<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}
