//! A user's subscription: the nodes that can serve the user now (exactly as
//! the node-list call decides), each inbound at each address, written in the
//! format the user's client app imports. Pure: no I/O.
//!
//! Where each format lives:
//! - `links`: share links (VLESS, VMess, Trojan, Shadowsocks), plain or as
//!   the base64 list;
//! - `xray`: Xray JSON, an array of complete client configs;
//! - `singbox`: sing-box JSON, outbounds with a selector and a urltest;
//! - `clash`: Clash Meta / Mihomo YAML, proxies and groups;
//! - `html`: the page a browser gets, with a QR code per link;
//! - [`rules`]: which format a request gets;
//! - [`settings`]: what the operator sets (titles, links, the rule table).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{CredentialScope, NodeCredential, NodeEntry, ServedInbound, User, UserSecret};

pub mod clash;
pub mod html;
pub mod links;
pub mod qr;
mod render;
pub mod rules;
pub mod settings;
pub mod singbox;
#[cfg(any(test, feature = "conformance"))]
pub mod testing;
pub mod xray;

pub use render::{Rendered, render};
pub use rules::{ClientRule, ClientRules};
pub use settings::{SubscriptionSettings, Subscriptions};

/// What a subscription is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Share links, one per line, the whole text in standard base64.
    Base64,
    /// Share links, one per line.
    Links,
    /// Xray JSON: an array of client configs.
    Xray,
    /// sing-box JSON.
    SingBox,
    /// Clash Meta / Mihomo YAML.
    Clash,
    /// An HTML page for a browser.
    Html,
}

impl Format {
    /// Every format, in the order of [`Format::as_str`]'s names.
    pub const ALL: [Format; 6] = [
        Format::Base64,
        Format::Links,
        Format::Xray,
        Format::SingBox,
        Format::Clash,
        Format::Html,
    ];

    /// The name used by `?format=` and in the rule table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base64 => "base64",
            Self::Links => "links",
            Self::Xray => "xray",
            Self::SingBox => "sing-box",
            Self::Clash => "clash",
            Self::Html => "html",
        }
    }

    /// The format a name names (`singbox` and `mihomo` are accepted too).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "singbox" => Some(Self::SingBox),
            "mihomo" | "clash-meta" => Some(Self::Clash),
            _ => Self::ALL.into_iter().find(|f| f.as_str() == name),
        }
    }
}

/// What one subscription lists: whose it is, and every entry of every node
/// serving the user now, in node order, with what the user presents there.
#[derive(Clone, Debug)]
pub struct Listing<'a> {
    pub user: &'a User,
    /// As the user dials them: an inbound with a port per user
    /// (`ss-manager`) is a copy with the user's own port.
    pub entries: Vec<Cow<'a, ServedInbound>>,
    /// The user's credentials for each entry (same length and order),
    /// shared by the entries of one node.
    pub credentials: Vec<Arc<EntryCredential>>,
}

/// What the user presents to one entry's inbound, as the formats write it.
#[derive(Clone, PartialEq, Eq)]
pub struct EntryCredential {
    /// The VLESS/VMess id, hyphenated lower case.
    pub uuid: String,
    /// The Trojan/Shadowsocks password.
    pub password: UserSecret,
}

impl From<NodeCredential> for EntryCredential {
    fn from(c: NodeCredential) -> Self {
        Self {
            uuid: c.id.hyphenated().to_string(),
            password: c.secret,
        }
    }
}

impl EntryCredential {
    /// The user's own id and secret (the SPEC's credentials, on every node).
    pub fn shared(user: &User) -> Self {
        Self {
            uuid: user.id.to_string(),
            password: user.secret.clone(),
        }
    }
}

impl std::fmt::Debug for EntryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryCredential(<redacted>)")
    }
}

impl<'a> Listing<'a> {
    /// `entries` with the user's own id and secret for each (the SPEC's
    /// shared credentials).
    pub fn new(user: &'a User, entries: impl IntoIterator<Item = &'a ServedInbound>) -> Self {
        let shared = Arc::new(EntryCredential::shared(user));
        Self::with_credentials(user, entries.into_iter().map(|e| (e, shared.clone())))
    }

    /// Every entry of `nodes`, each with the user's credentials for its node
    /// under `scope`.
    pub fn of_nodes(user: &'a User, nodes: &'a [NodeEntry], scope: CredentialScope) -> Self {
        let shared =
            (scope == CredentialScope::Shared).then(|| Arc::new(EntryCredential::shared(user)));
        let per_node = nodes.iter().flat_map(move |n| {
            let c = match &shared {
                Some(shared) => shared.clone(),
                None => Arc::new(scope.credential(user.id, &user.secret, n.id).into()),
            };
            n.served.iter().map(move |e| (e, c.clone()))
        });
        Self::with_credentials(user, per_node)
    }

    fn with_credentials(
        user: &'a User,
        entries: impl IntoIterator<Item = (&'a ServedInbound, Arc<EntryCredential>)>,
    ) -> Self {
        let mut id = None;
        let (entries, credentials) = entries
            .into_iter()
            .map(|(e, c)| (Self::as_dialed(user, &mut id, e), c))
            .unzip();
        Self {
            user,
            entries,
            credentials,
        }
    }

    /// `e` as the user dials it: an inbound with a port per user
    /// (`ss-manager`) copied with the user's own port.
    fn as_dialed(
        user: &User,
        id: &mut Option<String>,
        e: &'a ServedInbound,
    ) -> Cow<'a, ServedInbound> {
        match e.inbound.port_range {
            None => Cow::Borrowed(e),
            Some(_) => {
                let id = id.get_or_insert_with(|| user.id.to_string());
                Cow::Owned(ServedInbound {
                    remark: e.remark.clone(),
                    address: e.address.clone(),
                    inbound: e.inbound.for_user(id),
                })
            }
        }
    }

    /// One name per entry, in order, unique in the listing: a remark that
    /// appeared before gets ` (2)`, ` (3)`, … (Clash refuses two proxies
    /// of one name; sing-box two outbounds of one tag).
    pub fn unique_names(&self) -> Vec<Cow<'_, str>> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(self.entries.len());
        let mut taken: std::collections::HashSet<Cow<'_, str>> =
            std::collections::HashSet::with_capacity(self.entries.len());
        let mut names = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let count = seen.entry(e.remark.as_str()).or_insert(0);
            *count += 1;
            let mut n = *count;
            let mut name: Cow<'_, str> = if n == 1 {
                Cow::Borrowed(e.remark.as_str())
            } else {
                Cow::Owned(format!("{} ({n})", e.remark))
            };
            while taken.contains(&name) {
                n += 1;
                name = Cow::Owned(format!("{} ({n})", e.remark));
            }
            taken.insert(name.clone());
            names.push(name);
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("mihomo"), Some(Format::Clash));
        assert_eq!(Format::parse("nope"), None);
    }

    #[test]
    fn names_are_made_unique_in_order() {
        let user = testing::user("alice");
        let mut entries = testing::entries();
        entries.truncate(3);
        for e in &mut entries {
            e.remark = "same".into();
        }
        entries[2].remark = "same (2)".into();
        let listing = Listing::new(&user, &entries);
        assert_eq!(listing.unique_names(), ["same", "same (2)", "same (2) (2)"]);
    }

    #[test]
    fn every_format_gives_each_nodes_own_credentials_per_node() {
        use crate::domain::{InboundProtocol, NodeId};
        let user = testing::user("alice");
        // Not Shadowsocks: its link hides the password in base64, so the
        // plain-text search below would miss it there.
        let served: Vec<ServedInbound> = testing::entries()
            .into_iter()
            .filter(|e| e.inbound.protocol != InboundProtocol::Shadowsocks)
            .collect();
        let node = |_| NodeEntry {
            id: NodeId::random(),
            endpoint: "http://203.0.113.7:1".into(),
            user_config_template: "".into(),
            served: served.clone().into(),
        };
        let nodes: Vec<NodeEntry> = (0..2).map(node).collect();
        let listing = Listing::of_nodes(&user, &nodes, CredentialScope::PerNode);
        assert_eq!(listing.credentials.len(), 2 * served.len());
        for format in Format::ALL {
            let body = render(format, &listing, &html::PageOptions::default()).body;
            let text = match format {
                Format::Base64 => String::from_utf8(
                    base64_simd::STANDARD
                        .decode_to_vec(body.as_bytes())
                        .unwrap(),
                )
                .unwrap(),
                _ => body,
            };
            for n in &nodes {
                let c = CredentialScope::PerNode.credential(user.id, &user.secret, n.id);
                let uuid = c.id.to_string();
                assert!(text.contains(&uuid), "{format:?} lacks node {}'s id", n.id);
                assert!(
                    text.contains(c.secret.expose()),
                    "{format:?}: no Trojan password"
                );
            }
            assert!(
                !text.contains(user.secret.expose()),
                "{format:?} carries the secret"
            );
            assert!(
                !text.contains(&user.id.to_string()),
                "{format:?} carries the user id"
            );
        }
    }

    /// An `ss-manager` node's entry: Shadowsocks with a port per user in
    /// 30000-30999, `moved` away from its home port.
    fn per_user_entry(moved: &User, port: u16) -> ServedInbound {
        use crate::domain::InboundProtocol;
        use node_agent_lib::wire::PortRange;
        let mut i = testing::inbound("ss-manager", InboundProtocol::Shadowsocks, 30000);
        i.method = "chacha20-ietf-poly1305".into();
        i.port_range = Some(PortRange::new(30000, 30999).unwrap());
        i.user_ports.insert(moved.id.to_string(), port);
        ServedInbound {
            remark: "ss node".into(),
            address: "203.0.113.7".into(),
            inbound: i,
        }
    }

    #[test]
    fn every_format_lists_a_port_per_user_inbound_with_the_users_own_port() {
        let (alice, bob) = (testing::user("alice"), testing::user("bob"));
        let home = |u: &User| {
            node_agent_lib::wire::PortRange::new(30000, 30999)
                .unwrap()
                .home(&u.id.to_string())
        };
        // Bob's port: any port but his home (another user held it first).
        let bobs = if home(&bob) == 30999 {
            30000
        } else {
            home(&bob) + 1
        };
        let entries = [per_user_entry(&bob, bobs)];
        for (user, port) in [(&alice, home(&alice)), (&bob, bobs)] {
            let listing = Listing::new(user, &entries);
            let listed = &listing.entries[0].inbound;
            assert_eq!(listed.port, port);
            assert!(listed.port_range.is_none() && listed.user_ports.is_empty());
            for format in Format::ALL {
                let body = render(format, &listing, &html::PageOptions::default()).body;
                let text = match format {
                    Format::Base64 => String::from_utf8(
                        base64_simd::STANDARD
                            .decode_to_vec(body.as_bytes())
                            .unwrap(),
                    )
                    .unwrap(),
                    _ => body,
                };
                let want = match format {
                    Format::Base64 | Format::Links => format!("@203.0.113.7:{port}#"),
                    _ => port.to_string(),
                };
                assert!(text.contains(&want), "{format:?}: {text}");
            }
        }
    }
}
