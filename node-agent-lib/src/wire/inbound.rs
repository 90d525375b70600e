//! How clients dial one inbound the agent manages: what `/start` returns
//! next to the template (`StartResponse::inbounds`), derived by the agent
//! from the core config it runs, and what the manager turns into links and
//! client configs for every user.
//!
//! The fields follow the XTLS share-link standard (Xray-core discussion
//! #716): a transport (`network` with its keys) and a security layer
//! (`security` with its keys). Text fields are empty when the core config
//! does not set them; lists are empty likewise.

use serde::{Deserialize, Serialize};

/// The protocol of a managed inbound (lower-case on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundProtocol {
    Vless,
    Vmess,
    Trojan,
    Shadowsocks,
}

impl InboundProtocol {
    /// The spelling on the wire and in links (`vless`, `vmess`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vless => "vless",
            Self::Vmess => "vmess",
            Self::Trojan => "trojan",
            Self::Shadowsocks => "shadowsocks",
        }
    }

    /// The protocol a core config's inbound names (`"protocol": "vless"`),
    /// or `None` for one whose users the agent does not manage (socks,
    /// dokodemo-door, …).
    pub fn from_config(protocol: &str) -> Option<Self> {
        [Self::Vless, Self::Vmess, Self::Trojan, Self::Shadowsocks]
            .into_iter()
            .find(|p| p.as_str() == protocol)
    }

    /// Whether the user's id is the protocol's credential (a UUID).
    pub fn uses_uuid(self) -> bool {
        matches!(self, Self::Vless | Self::Vmess)
    }
}

/// The transport (`streamSettings.network`; `raw` is read as `tcp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Tcp,
    Ws,
    #[serde(rename = "httpupgrade")]
    HttpUpgrade,
    Grpc,
    Xhttp,
    Kcp,
}

impl Network {
    /// The spelling of the share-link standard's `type` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Ws => "ws",
            Self::HttpUpgrade => "httpupgrade",
            Self::Grpc => "grpc",
            Self::Xhttp => "xhttp",
            Self::Kcp => "kcp",
        }
    }
}

/// The security layer (`streamSettings.security`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    #[default]
    None,
    Tls,
    Reality,
}

impl Security {
    /// The spelling of the share-link standard's `security` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Tls => "tls",
            Self::Reality => "reality",
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One managed inbound as a client must dial it. The address clients use is
/// not here: the agent cannot know it (NAT, DNS, a CDN in front); the
/// manager takes it from the node's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundDescription {
    /// The inbound's tag in the core config: what operators name it by.
    pub tag: String,
    pub protocol: InboundProtocol,
    /// The port the inbound listens on (the first of a range).
    pub port: u16,
    /// VLESS: the flow every user gets (`xtls-rprx-vision`), or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flow: String,
    /// Shadowsocks: the cipher (`aes-256-gcm`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,

    #[serde(default)]
    pub network: Network,
    /// tcp: `http` for the HTTP header disguise, else empty; kcp: its header type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub header_type: String,
    /// ws, httpupgrade, xhttp: the path; tcp with an http header: its first path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// ws, httpupgrade, xhttp: the Host header; tcp with an http header: its first Host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// grpc: the service name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_name: String,
    /// grpc: `gun` or `multi`; xhttp: `auto`, `packet-up`, `stream-up`, `stream-one`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// grpc: the `:authority` clients send, if set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// kcp: the seed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seed: String,

    #[serde(default)]
    pub security: Security,
    /// tls: the server name of the certificate (`serverName`); reality: the
    /// first of `server_names`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// tls: the ALPN protocols, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// The uTLS fingerprint clients should present (`chrome`, …), if the
    /// config names one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// reality: every server name the inbound accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
    /// reality: every short id the inbound accepts (may hold `""`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_ids: Vec<String>,
    /// reality: the X25519 public key (base64url without padding, as
    /// `xray x25519` prints it), computed from the config's private key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_key: String,
    /// reality: the spider path clients start from (`spx`), if set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spider_x: String,
    /// tls: the certificate is not one clients can verify (the operator
    /// says so on the manager; the agent never sets it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_insecure: bool,
}

impl InboundDescription {
    /// An inbound with only its tag, protocol and port: plain TCP, no
    /// security, every other field empty. Deriving code and tests set the
    /// rest on it.
    pub fn new(tag: impl Into<String>, protocol: InboundProtocol, port: u16) -> Self {
        Self {
            tag: tag.into(),
            protocol,
            port,
            flow: String::new(),
            method: String::new(),
            network: Network::Tcp,
            header_type: String::new(),
            path: String::new(),
            host: String::new(),
            service_name: String::new(),
            mode: String::new(),
            authority: String::new(),
            seed: String::new(),
            security: Security::None,
            sni: String::new(),
            alpn: Vec::new(),
            fingerprint: String::new(),
            server_names: Vec::new(),
            short_ids: Vec::new(),
            public_key: String::new(),
            spider_x: String::new(),
            allow_insecure: false,
        }
    }
}
