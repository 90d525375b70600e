//! How clients dial one inbound the agent manages: what `/start` returns
//! next to the template (`StartResponse::inbounds`), derived by the agent
//! from the core config it runs, and what the manager turns into links and
//! client configs for every user.
//!
//! The fields follow the XTLS share-link standard (Xray-core discussion
//! #716): a transport (`network` with its keys) and a security layer
//! (`security` with its keys). Text fields are empty when the core config
//! does not set them; lists are empty likewise.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PortRange;

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
    /// The port the inbound listens on (the first of a range). With
    /// `port_range`, the range's start: each user's own port is
    /// [`InboundDescription::port_for`].
    pub port: u16,
    /// A core with a port per user (`ss-manager`): the range users' ports
    /// are taken from. A user's port is its home port in the range
    /// ([`PortRange::home`]) unless `user_ports` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
    /// With `port_range`: the users (by id) whose port is not their home
    /// port, because another user held it first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_ports: BTreeMap<String, u16>,
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
            port_range: None,
            user_ports: BTreeMap::new(),
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

    /// The port the user with this id (its text on the wire) dials: its own
    /// port when the inbound has a port per user, else [`Self::port`].
    pub fn port_for(&self, user_id: &str) -> u16 {
        match self.port_range {
            None => self.port,
            Some(range) => self
                .user_ports
                .get(user_id)
                .copied()
                .unwrap_or_else(|| range.home(user_id)),
        }
    }

    /// Records where users now are (by id): on an inbound with a port per
    /// user, a user at its home port loses any exception, any other gets
    /// one; other inbounds are unchanged. Ports outside the range are
    /// ignored (a stale answer from before a change of range).
    pub fn note_user_ports(&mut self, ports: &BTreeMap<String, u16>) {
        let Some(range) = self.port_range else {
            return;
        };
        for (id, &port) in ports.iter().filter(|(_, p)| range.contains(**p)) {
            if range.home(id) == port {
                self.user_ports.remove(id);
            } else {
                self.user_ports.insert(id.clone(), port);
            }
        }
    }

    /// The inbound as the user with this id dials it: `port` is the user's
    /// own ([`Self::port_for`]), with no range and no other user's port
    /// (which are no business of one user's subscription, and would cost a
    /// copy per request).
    pub fn for_user(&self, user_id: &str) -> Self {
        Self {
            port: self.port_for(user_id),
            port_range: None,
            user_ports: BTreeMap::new(),
            tag: self.tag.clone(),
            protocol: self.protocol,
            flow: self.flow.clone(),
            method: self.method.clone(),
            network: self.network,
            header_type: self.header_type.clone(),
            path: self.path.clone(),
            host: self.host.clone(),
            service_name: self.service_name.clone(),
            mode: self.mode.clone(),
            authority: self.authority.clone(),
            seed: self.seed.clone(),
            security: self.security,
            sni: self.sni.clone(),
            alpn: self.alpn.clone(),
            fingerprint: self.fingerprint.clone(),
            server_names: self.server_names.clone(),
            short_ids: self.short_ids.clone(),
            public_key: self.public_key.clone(),
            spider_x: self.spider_x.clone(),
            allow_insecure: self.allow_insecure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_dials_its_home_port_unless_listed_and_a_shared_inbound_its_port() {
        let mut shared = InboundDescription::new("a", InboundProtocol::Shadowsocks, 8388);
        assert_eq!(shared.port_for("alice"), 8388);
        shared.user_ports.insert("alice".into(), 1);
        assert_eq!(
            shared.port_for("alice"),
            8388,
            "no range: exceptions unused"
        );

        let range = PortRange::new(30000, 30999).unwrap();
        let mut per_user = InboundDescription::new("ss", InboundProtocol::Shadowsocks, 30000);
        per_user.port_range = Some(range);
        assert_eq!(per_user.port_for("alice"), range.home("alice"));
        per_user.user_ports.insert("bob".into(), 30001);
        assert_eq!(per_user.port_for("bob"), 30001);
        assert_eq!(per_user.port_for("alice"), range.home("alice"));

        let bobs = per_user.for_user("bob");
        assert_eq!(bobs.port, 30001);
        assert_eq!((bobs.port_range, bobs.user_ports.len()), (None, 0));
        let mut rest = per_user.clone();
        (rest.port, rest.port_range, rest.user_ports) = (30001, None, BTreeMap::new());
        assert_eq!(bobs, rest, "every other field kept");
    }

    #[test]
    fn noted_ports_become_exceptions_only_away_from_home_and_in_range() {
        let range = PortRange::new(100, 102).unwrap();
        let mut d = InboundDescription::new("ss", InboundProtocol::Shadowsocks, 100);
        let unchanged = d.clone();
        let away = |id: &str| {
            if range.home(id) == 102 {
                100
            } else {
                range.home(id) + 1
            }
        };
        let noted: BTreeMap<String, u16> = [("a".to_owned(), away("a"))].into();
        d.note_user_ports(&noted);
        assert_eq!(d, unchanged, "no range: nothing to note");

        d.port_range = Some(range);
        d.note_user_ports(&noted);
        assert_eq!(d.port_for("a"), away("a"));
        d.note_user_ports(&[("a".to_owned(), range.home("a")), ("b".to_owned(), 7)].into());
        assert!(
            d.user_ports.is_empty(),
            "a back home, b's port out of range"
        );
        assert_eq!(d.port_for("a"), range.home("a"));
    }

    #[test]
    fn the_range_and_exceptions_travel_in_camel_case_and_are_absent_when_unused() {
        let mut d = InboundDescription::new("ss", InboundProtocol::Shadowsocks, 30000);
        let plain = serde_json::to_value(&d).unwrap();
        assert!(plain.get("portRange").is_none() && plain.get("userPorts").is_none());
        d.port_range = Some(PortRange::new(30000, 30009).unwrap());
        d.user_ports.insert("bob".into(), 30004);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["portRange"], "30000-30009");
        assert_eq!(v["userPorts"]["bob"], 30004);
        assert_eq!(serde_json::from_value::<InboundDescription>(v).unwrap(), d);
    }
}
