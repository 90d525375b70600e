//! What subscriptions show of a node: the inbounds its agent described, the
//! operator's settings for what the agent cannot know (the address clients
//! dial, names, per-inbound overrides, hidden inbounds), and the two merged
//! into what a user's subscription lists ([`ServedInbound`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ParseError;

pub use node_agent_lib::wire::{InboundDescription, InboundProtocol, Network, Security};

/// The longest remark, address, SNI, host or path accepted, in bytes.
pub const MAX_PROFILE_TEXT: usize = 255;
/// The most addresses one inbound may list.
pub const MAX_ADDRESSES: usize = 16;
/// The uTLS fingerprints clients know.
pub const FINGERPRINTS: &[&str] = &[
    "chrome",
    "firefox",
    "safari",
    "ios",
    "android",
    "edge",
    "360",
    "qq",
    "random",
    "randomized",
];
/// The ALPN protocols clients know.
pub const ALPNS: &[&str] = &["h3", "h2", "http/1.1"];

/// The operator's subscription settings for one node. The default shows
/// every inbound at the endpoint's host, named after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeProfile {
    /// The address clients dial (a host name or an IP address); `None`: the
    /// host of the node's endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The name clients show for the node; `None`: the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// Per inbound, by its tag.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub inbounds: BTreeMap<String, InboundOverride>,
}

/// What the operator changes of one inbound for clients. Every `None` (or
/// empty list) keeps what the agent described.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InboundOverride {
    /// Left out of every subscription.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// The addresses clients dial, one entry each (several for a CDN);
    /// empty: the node's address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<Vec<String>>,
    /// Clients skip checking the certificate (a self-signed one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_insecure: Option<bool>,
}

fn check_text(what: &'static str, value: &str) -> Result<(), ParseError> {
    if value.is_empty() || value.len() > MAX_PROFILE_TEXT || value.chars().any(char::is_control) {
        return Err(ParseError {
            what,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// A host clients can dial: a DNS name or an IP address, no port, scheme or
/// whitespace. IPv6 addresses are written without brackets.
fn check_address(value: &str) -> Result<(), ParseError> {
    let err = || ParseError {
        what: "address",
        value: value.chars().take(64).collect(),
    };
    check_text("address", value)?;
    if value.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let name_ok = value.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
    });
    if name_ok { Ok(()) } else { Err(err()) }
}

impl NodeProfile {
    /// Checks every value: addresses are hosts, texts are non-empty, short
    /// and without control characters, paths start with `/`, ports are not
    /// 0, fingerprints and ALPN protocols are ones clients know.
    pub fn validate(&self) -> Result<(), ParseError> {
        if let Some(a) = &self.address {
            check_address(a)?;
        }
        if let Some(r) = &self.remark {
            check_text("remark", r)?;
        }
        for (tag, o) in &self.inbounds {
            check_text("inbound tag", tag)?;
            if let Some(r) = &o.remark {
                check_text("remark", r)?;
            }
            if o.addresses.len() > MAX_ADDRESSES {
                return Err(ParseError {
                    what: "addresses",
                    value: format!("{} (at most {MAX_ADDRESSES})", o.addresses.len()),
                });
            }
            for a in &o.addresses {
                check_address(a)?;
            }
            if o.port == Some(0) {
                return Err(ParseError {
                    what: "port",
                    value: "0".into(),
                });
            }
            if let Some(sni) = &o.sni {
                check_address(sni).map_err(|e| ParseError { what: "sni", ..e })?;
            }
            if let Some(host) = &o.host {
                check_text("host", host)?;
            }
            if let Some(path) = &o.path {
                check_text("path", path)?;
                if !path.starts_with('/') {
                    return Err(ParseError {
                        what: "path",
                        value: path.chars().take(64).collect(),
                    });
                }
            }
            if let Some(fp) = &o.fingerprint {
                if !FINGERPRINTS.contains(&fp.as_str()) {
                    return Err(ParseError {
                        what: "fingerprint",
                        value: fp.chars().take(64).collect(),
                    });
                }
            }
            for p in o.alpn.iter().flatten() {
                if !ALPNS.contains(&p.as_str()) {
                    return Err(ParseError {
                        what: "alpn",
                        value: p.chars().take(64).collect(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks the overrides against the inbounds the node described: a
    /// port override on an inbound with a port per user (`ss-manager`) is
    /// refused, since each user is served on their own port there.
    pub fn validate_for(&self, inbounds: &[InboundDescription]) -> Result<(), ParseError> {
        for description in inbounds.iter().filter(|i| i.port_range.is_some()) {
            if let Some(port) = self.inbounds.get(&description.tag).and_then(|o| o.port) {
                return Err(ParseError {
                    what: "port",
                    value: format!(
                        "{port} (inbound {} gives each user their own port)",
                        description.tag
                    ),
                });
            }
        }
        Ok(())
    }

    /// What a subscription lists for this node: every inbound not hidden,
    /// once per address, with the overrides applied, in the agent's order.
    /// `endpoint_host` is the host of the node's endpoint (the address when
    /// none is set).
    pub fn serve(
        &self,
        endpoint_host: &str,
        inbounds: &[InboundDescription],
    ) -> Vec<ServedInbound> {
        let node_address = self.address.as_deref().unwrap_or(endpoint_host);
        let node_remark = self.remark.as_deref().unwrap_or(node_address);
        let no_override = InboundOverride::default();
        let visible: Vec<_> = inbounds
            .iter()
            .map(|i| (i, self.inbounds.get(&i.tag).unwrap_or(&no_override)))
            .filter(|(_, o)| !o.hidden)
            .collect();
        let several = visible.len() > 1;
        let mut served = Vec::new();
        for (description, o) in visible {
            let mut inbound = description.clone();
            if let Some(port) = o.port {
                inbound.port = port;
            }
            if let Some(sni) = &o.sni {
                inbound.sni = sni.clone();
            }
            if let Some(host) = &o.host {
                inbound.host = host.clone();
            }
            if let Some(path) = &o.path {
                inbound.path = path.clone();
            }
            if let Some(fp) = &o.fingerprint {
                inbound.fingerprint = fp.clone();
            }
            if let Some(alpn) = &o.alpn {
                inbound.alpn = alpn.clone();
            }
            if let Some(insecure) = o.allow_insecure {
                inbound.allow_insecure = insecure;
            }
            let remark = match (&o.remark, several) {
                (Some(r), _) => r.clone(),
                (None, true) => format!("{node_remark} {}", description.tag),
                (None, false) => node_remark.to_owned(),
            };
            let addresses: Vec<&str> = if o.addresses.is_empty() {
                vec![node_address]
            } else {
                o.addresses.iter().map(String::as_str).collect()
            };
            for (i, address) in addresses.iter().enumerate() {
                served.push(ServedInbound {
                    remark: if i == 0 {
                        remark.clone()
                    } else {
                        format!("{remark} #{}", i + 1)
                    },
                    address: (*address).to_owned(),
                    inbound: inbound.clone(),
                });
            }
        }
        served
    }
}

/// One entry of a subscription: an inbound at one address, as clients dial
/// it, for every user on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedInbound {
    /// What clients show. Unique within the node; two nodes may share one
    /// (the formats that need unique names number them).
    pub remark: String,
    /// A host name or an IP address (IPv6 without brackets).
    pub address: String,
    /// The agent's description with the operator's overrides applied.
    pub inbound: InboundDescription,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(tag: &str, protocol: InboundProtocol) -> InboundDescription {
        let mut i = InboundDescription::new(tag, protocol, 443);
        i.security = Security::Tls;
        i.sni = "node.example".into();
        i
    }

    #[test]
    fn defaults_list_every_inbound_at_the_endpoint_host() {
        let inbounds = [
            described("a", InboundProtocol::Vless),
            described("b", InboundProtocol::Trojan),
        ];
        let served = NodeProfile::default().serve("10.0.0.1", &inbounds);
        assert_eq!(served.len(), 2);
        assert_eq!(served[0].address, "10.0.0.1");
        assert_eq!(served[0].remark, "10.0.0.1 a");
        assert_eq!(served[1].inbound, inbounds[1]);
    }

    #[test]
    fn overrides_apply_and_hidden_inbounds_go() {
        let inbounds = [
            described("a", InboundProtocol::Vless),
            described("b", InboundProtocol::Trojan),
        ];
        let mut profile = NodeProfile {
            address: Some("node.example".into()),
            remark: Some("Amsterdam".into()),
            ..Default::default()
        };
        profile.inbounds.insert(
            "a".into(),
            InboundOverride {
                addresses: vec!["cdn1.example".into(), "cdn2.example".into()],
                port: Some(8443),
                sni: Some("front.example".into()),
                ..Default::default()
            },
        );
        profile.inbounds.insert(
            "b".into(),
            InboundOverride {
                hidden: true,
                ..Default::default()
            },
        );
        profile.validate().unwrap();
        let served = profile.serve("10.0.0.1", &inbounds);
        let got: Vec<_> = served
            .iter()
            .map(|s| (s.remark.as_str(), s.address.as_str(), s.inbound.port))
            .collect();
        assert_eq!(
            got,
            [
                ("Amsterdam", "cdn1.example", 8443),
                ("Amsterdam #2", "cdn2.example", 8443)
            ]
        );
        assert_eq!(served[0].inbound.sni, "front.example");
    }

    #[test]
    fn a_single_inbound_is_named_after_its_node() {
        let served = NodeProfile::default().serve("h", &[described("x", InboundProtocol::Vmess)]);
        assert_eq!(served[0].remark, "h");
    }

    #[test]
    fn bad_values_are_refused() {
        let bad_override = |o: InboundOverride| {
            let mut p = NodeProfile::default();
            p.inbounds.insert("t".into(), o);
            p.validate().is_err()
        };
        assert!(
            NodeProfile {
                address: Some("http://x".into()),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            NodeProfile {
                remark: Some("a\nb".into()),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(bad_override(InboundOverride {
            port: Some(0),
            ..Default::default()
        }));
        assert!(bad_override(InboundOverride {
            path: Some("no-slash".into()),
            ..Default::default()
        }));
        assert!(bad_override(InboundOverride {
            fingerprint: Some("netscape".into()),
            ..Default::default()
        }));
        assert!(bad_override(InboundOverride {
            alpn: Some(vec!["spdy".into()]),
            ..Default::default()
        }));
        assert!(bad_override(InboundOverride {
            addresses: vec!["a b".into()],
            ..Default::default()
        }));
        assert!(
            NodeProfile {
                address: Some("2001:db8::1".into()),
                remark: Some("Ünïcode 🚀 #1 & co".into()),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn a_port_override_on_an_inbound_with_a_port_per_user_is_refused() {
        let mut ss = described("ss-manager", InboundProtocol::Shadowsocks);
        ss.port_range = Some("20000-20099".parse().unwrap());
        let plain = described("vless-in", InboundProtocol::Vless);
        let inbounds = [ss, plain];
        let with_port = |tag: &str| NodeProfile {
            inbounds: BTreeMap::from([(
                tag.to_owned(),
                InboundOverride {
                    port: Some(8443),
                    ..InboundOverride::default()
                },
            )]),
            ..NodeProfile::default()
        };
        let refused = with_port("ss-manager").validate_for(&inbounds).unwrap_err();
        assert_eq!(refused.what, "port");
        assert!(refused.value.contains("ss-manager"), "{}", refused.value);
        with_port("vless-in").validate_for(&inbounds).unwrap();
        let hidden = NodeProfile {
            inbounds: BTreeMap::from([(
                "ss-manager".to_owned(),
                InboundOverride {
                    hidden: true,
                    ..InboundOverride::default()
                },
            )]),
            ..NodeProfile::default()
        };
        hidden.validate_for(&inbounds).unwrap();
    }
}
