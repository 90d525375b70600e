//! Template filling for the user-node-list call, pure (no I/O): a node's
//! `user_config_template` filled for one user, and the `<id>-<name>` key the
//! call is made with.

use std::fmt;

use crate::domain::{CredentialScope, NodeCredential, NodeEntry, User, UserId, UserNodes};

/// Splits `<uuid>-<name>`; `None` when the first 36 characters are not a user
/// id followed by a dash.
pub fn split_id_name(id_name: &str) -> Option<(UserId, &str)> {
    let id = id_name.get(..UserId::TEXT_LEN)?;
    let name = id_name.get(UserId::TEXT_LEN..)?.strip_prefix('-')?;
    Some((id.parse().ok()?, name))
}

/// A user's node list, its templates not yet filled: [`NodeLinks::iter`]
/// fills them as they are written, and serialised it is a JSON array of the
/// filled templates, written into the output with no string per node.
#[derive(Clone, Debug)]
pub struct NodeLinks(UserNodes, CredentialScope);

impl NodeLinks {
    /// The node list found for a user whose id and name matched, each
    /// node's template filled with the user's credentials for that node.
    pub(crate) fn new(found: UserNodes, scope: CredentialScope) -> Self {
        Self(found, scope)
    }
}

impl NodeLinks {
    /// One filled template per node, in node order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Filled<'_>> {
        let user = &self.0.user;
        // Only a node with a port per user needs the id as text.
        let id = self
            .0
            .nodes
            .iter()
            .any(|n| n.served.iter().any(|s| s.inbound.port_range.is_some()))
            .then(|| user.id.to_string());
        let scope = self.1;
        self.0.nodes.iter().map(move |n| {
            let filled =
                Filled::new(&n.user_config_template, user).with_port(user_port(n, id.as_deref()));
            match scope {
                CredentialScope::Shared => filled,
                CredentialScope::PerNode => {
                    filled.with_credential(scope.credential(user.id, &user.secret, n.id))
                }
            }
        })
    }

    /// The filled templates as strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|f| f.to_string()).collect()
    }
}

impl serde::Serialize for NodeLinks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// The port `{{.Port}}` stands for on a node: the user's own port on its
/// first listed inbound with a port per user (`ss-manager`), else the first
/// listed inbound's port; `None` when the node lists none. `id` is the
/// user's id as text, given when some node has a port per user.
fn user_port(node: &NodeEntry, id: Option<&str>) -> Option<u16> {
    let per_user = node
        .served
        .iter()
        .find(|s| s.inbound.port_range.is_some())
        .zip(id);
    match per_user {
        Some((s, id)) => Some(s.inbound.port_for(id)),
        None => node.served.first().map(|s| s.inbound.port),
    }
}

/// Fills a node's template for one user: `{{.UserID}}` (the user's id: the
/// VLESS/VMess id too unless each node has its own credentials),
/// `{{.NodeUserID}}` (the VLESS/VMess id on this node, see
/// [`Filled::with_credential`]), `{{.UserName}}` (percent-encoded, for
/// links), `{{.UserNameRaw}}`, `{{.Secret}}` (the Trojan/Shadowsocks
/// password on this node) and `{{.Port}}` (the user's port on the node, see
/// [`Filled::with_port`]; without one the placeholder is kept as it is).
pub fn fill_template(template: &str, user: &User) -> String {
    Filled::new(template, user).to_string()
}

/// A template filled for one user as it is written ([`fill_template`]'s
/// text): one pass over the template, and what a placeholder is replaced
/// with is never scanned again, so a user named `{{.Secret}}` stays named
/// so. Unknown `{{…}}` text is kept as it is. Serialised, it is a string,
/// escaped on its way into the serialiser's output.
#[derive(Clone)]
pub struct Filled<'a> {
    template: &'a str,
    user: &'a User,
    port: Option<u16>,
    /// The user's credentials on the node when they are not the user's
    /// own id and secret.
    credential: Option<NodeCredential>,
}

impl<'a> Filled<'a> {
    /// `template` as filled for `user`, `{{.Port}}` kept as it is.
    pub fn new(template: &'a str, user: &'a User) -> Self {
        Self {
            template,
            user,
            port: None,
            credential: None,
        }
    }

    /// `{{.NodeUserID}}` and `{{.Secret}}` filled with `credential` (the
    /// user's own on one node) instead of the user's id and secret.
    pub fn with_credential(self, credential: NodeCredential) -> Self {
        Self {
            credential: Some(credential),
            ..self
        }
    }

    /// `{{.Port}}` filled with `port` (the user's port on the node: its own
    /// on an `ss-manager` node, else the node's first listed inbound's).
    pub fn with_port(self, port: Option<u16>) -> Self {
        Self { port, ..self }
    }
}

impl fmt::Display for Filled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PLACEHOLDERS: [&str; 6] = [
            "{{.UserID}}",
            "{{.UserNameRaw}}",
            "{{.UserName}}",
            "{{.Secret}}",
            "{{.Port}}",
            "{{.NodeUserID}}",
        ];
        let template = self.template;
        // `template[..written]` is out; the next placeholder is looked for
        // from `from` (a `{` that starts none is literal text).
        let (mut written, mut from) = (0, 0);
        while let Some(found) = template[from..].find('{') {
            let at = from + found;
            let rest = &template[at..];
            let Some(which) = PLACEHOLDERS
                .iter()
                .position(|p| rest.starts_with(p))
                .filter(|&w| w != 4 || self.port.is_some())
            else {
                from = at + 1;
                continue;
            };
            f.write_str(&template[written..at])?;
            let mut id = uuid::Uuid::encode_buffer();
            match which {
                0 => f.write_str(self.user.id.as_uuid().hyphenated().encode_lower(&mut id))?,
                1 => f.write_str(&self.user.name)?,
                2 => write_name_encoded(f, &self.user.name)?,
                3 => f.write_str(match &self.credential {
                    Some(c) => c.secret.expose(),
                    None => self.user.secret.expose(),
                })?,
                4 => write!(f, "{}", self.port.unwrap_or_default())?,
                _ => {
                    let proxy_id = match &self.credential {
                        Some(c) => c.id,
                        None => self.user.id.as_uuid(),
                    };
                    f.write_str(proxy_id.hyphenated().encode_lower(&mut id))?
                }
            }
            written = at + PLACEHOLDERS[which].len();
            from = written;
        }
        f.write_str(&template[written..])
    }
}

impl fmt::Debug for Filled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the text: it holds the user's secret.
        f.debug_struct("Filled")
            .field("template", &self.template)
            .field("user", &self.user.id)
            .finish()
    }
}

impl serde::Serialize for Filled<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The name percent-encoded for a link's fragment: form encoding with
/// spaces as `%20`.
fn write_name_encoded(out: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    for piece in url::form_urlencoded::byte_serialize(name.as_bytes()) {
        out.write_str(if piece == "+" { "%20" } else { piece })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserStatus;

    #[test]
    fn id_name_splits_after_the_uuid() {
        let id = UserId::random();
        assert_eq!(
            split_id_name(&format!("{id}-bob-the-builder")),
            Some((id, "bob-the-builder"))
        );
        assert_eq!(split_id_name(&format!("{id}-")), Some((id, "")));
        assert_eq!(split_id_name(&format!("{id}")), None);
        assert_eq!(split_id_name(&format!("{id}_bob")), None);
        assert_eq!(split_id_name("short-bob"), None);
        assert_eq!(split_id_name("ффффффффффффффффффффффффф-bob"), None);
        assert_eq!(split_id_name(""), None);
    }

    /// An enabled user with secret `s3cret`.
    fn enabled_user_named(name: &str) -> User {
        User {
            id: UserId::random(),
            name: name.into(),
            status: UserStatus::Enabled,
            secret: crate::domain::UserSecret::from_stored("s3cret".into()),
            subscription_key: crate::domain::SubscriptionKey::random(),
            device_limit: None,
            change_seq: 1,
            created_at: crate::domain::Timestamp(0),
            plan: Default::default(),
            used_up: 0,
            used_down: 0,
            blocked: None,
            next_reset_at: None,
            last_reset_at: None,
        }
    }

    #[test]
    fn templates_are_filled_per_user() {
        let user = enabled_user_named("Вася Pupkin");
        let out = fill_template(
            "vless://{{.UserID}}@h:443#{{.UserName}}|{{.UserNameRaw}}|{{.Secret}}",
            &user,
        );
        assert_eq!(
            out,
            format!(
                "vless://{}@h:443#%D0%92%D0%B0%D1%81%D1%8F%20Pupkin|Вася Pupkin|s3cret",
                user.id
            )
        );
    }

    fn node(template: &str, inbounds: &[node_agent_lib::wire::InboundDescription]) -> NodeEntry {
        NodeEntry::new(
            crate::domain::NodeId::random(),
            "https://10.0.0.1:8443",
            template,
            inbounds,
            &crate::domain::NodeProfile::default(),
        )
    }

    #[test]
    fn the_port_placeholder_is_the_users_own_port_on_a_node_with_a_port_per_user() {
        use node_agent_lib::wire::{InboundDescription, InboundProtocol, PortRange};
        let user = enabled_user_named("bob");
        let id = user.id.to_string();
        let range = PortRange::new(30000, 30999).unwrap();
        let mut ss = InboundDescription::new("ss-manager", InboundProtocol::Shadowsocks, 30000);
        ss.port_range = Some(range);
        let moved = ss.clone();
        let mut moved_ss = moved;
        let away = if range.home(&id) == 30999 {
            30000
        } else {
            range.home(&id) + 1
        };
        moved_ss.user_ports.insert(id.clone(), away);
        let vless = InboundDescription::new("v", InboundProtocol::Vless, 443);
        let links = NodeLinks::new(
            UserNodes {
                user: user.clone(),
                nodes: vec![
                    node("ss://{{.Secret}}@h:{{.Port}}", &[ss]),
                    node("p={{.Port}}", &[moved_ss]),
                    node("p={{.Port}}", &[vless]),
                    node("p={{.Port}}", &[]),
                ],
            },
            CredentialScope::Shared,
        );
        assert_eq!(
            links.to_strings(),
            [
                format!("ss://s3cret@h:{}", range.home(&id)),
                format!("p={away}"),
                "p=443".to_owned(),
                "p={{.Port}}".to_owned(),
            ]
        );
        // Without a node, nothing to say: kept as it is.
        assert_eq!(fill_template("{{.Port}}", &user), "{{.Port}}");
    }

    #[test]
    fn per_node_credentials_fill_each_nodes_own_and_never_the_secret() {
        let user = enabled_user_named("bob");
        let template = "vless://{{.NodeUserID}}@h#{{.UserName}}|{{.Secret}}|{{.UserID}}";
        let (a, b) = (node(template, &[]), node(template, &[]));
        let found = UserNodes {
            user: user.clone(),
            nodes: vec![a.clone(), b.clone()],
        };
        let per_node = NodeLinks::new(found.clone(), CredentialScope::PerNode).to_strings();
        for (entry, filled) in [&a, &b].into_iter().zip(&per_node) {
            let c = CredentialScope::PerNode.credential(user.id, &user.secret, entry.id);
            assert_eq!(
                filled,
                &format!("vless://{}@h#bob|{}|{}", c.id, c.secret.expose(), user.id)
            );
            assert!(!filled.contains("s3cret"));
        }
        assert_ne!(per_node[0], per_node[1]);
        // Shared: the SPEC's filling, `{{.NodeUserID}}` being the user's id.
        assert_eq!(
            NodeLinks::new(found, CredentialScope::Shared).to_strings()[0],
            format!("vless://{}@h#bob|s3cret|{}", user.id, user.id)
        );
    }

    #[test]
    fn what_a_placeholder_brings_is_not_filled_again() {
        let user = enabled_user_named("{{.Secret}} + {{.UserID}}");
        assert_eq!(
            fill_template("{{.UserNameRaw}}|{{.Unknown}}|{{.|{{.Secret}}", &user),
            "{{.Secret}} + {{.UserID}}|{{.Unknown}}|{{.|s3cret"
        );
        assert_eq!(
            fill_template("#{{.UserName}}", &user),
            "#%7B%7B.Secret%7D%7D%20%2B%20%7B%7B.UserID%7D%7D"
        );
        assert_eq!(fill_template("", &user), "");
        assert_eq!(fill_template("no placeholders", &user), "no placeholders");
    }

    /// The filling rule written the plain way (the implementation this one
    /// replaced): the next `{{.` from the left, replaced when it starts a
    /// placeholder, kept otherwise.
    fn reference_fill(template: &str, user: &User) -> String {
        let values = [
            ("{{.UserID}}", user.id.to_string()),
            ("{{.UserNameRaw}}", user.name.clone()),
            (
                "{{.UserName}}",
                url::form_urlencoded::byte_serialize(user.name.as_bytes())
                    .collect::<String>()
                    .replace('+', "%20"),
            ),
            ("{{.Secret}}", user.secret.expose().to_owned()),
            ("{{.NodeUserID}}", user.id.to_string()),
        ];
        let mut out = String::new();
        let mut rest = template;
        while let Some(at) = rest.find("{{.") {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            match values.iter().find(|(p, _)| rest.starts_with(p)) {
                Some((p, value)) => {
                    out.push_str(value);
                    rest = &rest[p.len()..];
                }
                None => {
                    out.push_str("{{.");
                    rest = &rest[3..];
                }
            }
        }
        out + rest
    }

    /// Templates of placeholders and text that JSON must escape.
    fn template() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![
                Just("{{.UserID}}".to_owned()),
                Just("{{.UserName}}".to_owned()),
                Just("{{.UserNameRaw}}".to_owned()),
                Just("{{.Secret}}".to_owned()),
                Just("{{.NodeUserID}}".to_owned()),
                Just("{{.".to_owned()),
                Just("{".to_owned()),
                "[\"\\\\\\x00-\\x1f\\x7f]{1,3}",
                "\\PC{0,8}",
            ],
            0..8,
        )
        .prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        /// The templates are filled as the plain rule says, and the HTTP
        /// answer is the JSON of those strings byte for byte, though no
        /// string per node is made on its way out.
        #[test]
        fn node_links_serialise_as_the_json_of_the_filled_templates(
            templates in proptest::collection::vec(template(), 0..6),
            name in "[\"\\\\{}.+ \\x00-\\x1f]{0,6}|\\PC{0,12}",
        ) {
            let user = enabled_user_named(&name);
            let nodes = templates
                .iter()
                .map(|t| {
                    crate::domain::NodeEntry::new(
                        crate::domain::NodeId::random(),
                        "http://n:1",
                        t,
                        &[],
                        &Default::default(),
                    )
                })
                .collect();
            let links = NodeLinks(UserNodes { user: user.clone(), nodes }, CredentialScope::Shared);
            let filled: Vec<String> = templates.iter().map(|t| reference_fill(t, &user)).collect();
            proptest::prop_assert_eq!(&links.to_strings(), &filled);
            proptest::prop_assert_eq!(
                serde_json::to_vec(&links).unwrap(),
                serde_json::to_vec(&filled).unwrap()
            );
        }
    }
}
