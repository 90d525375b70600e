//! Containment of a compromised node: the credentials a user presents on
//! each node. Under [`CredentialScope::Shared`] (the SPEC's way) they are the
//! user's id (VLESS/VMess) and secret (Trojan/Shadowsocks) on every node;
//! under [`CredentialScope::PerNode`] each node gets values derived from the
//! user's secret and the node's id, so what one node learns opens nothing on
//! another, and the secret itself never leaves the manager.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{NodeId, UserCredentials, UserId, UserSecret};

/// Whether users present the same credentials on every node or a different
/// one on each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CredentialScope {
    /// The user's id is the VLESS/VMess id and the user's secret the
    /// Trojan/Shadowsocks password on every node: what the SPEC's templates
    /// (`vless://{{.UserID}}@…`) assume, so it is the default.
    #[default]
    Shared,
    /// Each node gets the user's credentials for that node alone:
    /// VLESS/VMess id = a version-4-shaped UUID from
    /// HMAC-SHA256(secret, `"vless-id:" + node id`), password = base64url of
    /// the first 24 bytes of HMAC-SHA256(secret, `"password:" + node id`).
    /// The user's secret and the user's name are never sent to a node.
    PerNode,
}

impl CredentialScope {
    /// `per_node` as a scope.
    pub fn per_node(per_node: bool) -> Self {
        if per_node {
            Self::PerNode
        } else {
            Self::Shared
        }
    }

    /// What `user` (with `secret`) presents on `node`.
    pub fn credential(self, user: UserId, secret: &UserSecret, node: NodeId) -> NodeCredential {
        match self {
            Self::Shared => NodeCredential {
                id: user.as_uuid(),
                secret: secret.clone(),
            },
            Self::PerNode => NodeCredential {
                id: derived_uuid(secret, node),
                secret: derived_password(secret, node),
            },
        }
    }

    /// `user` as `node` is told of it: the id its core keys the user by (the
    /// user's id, so usage and removals name the user), the name (none under
    /// [`CredentialScope::PerNode`]: with the id it would open the user's
    /// node list) and the credentials for that node.
    pub fn node_user(self, node: NodeId, user: &UserCredentials) -> NodeUser {
        let credential = self.credential(user.id, &user.secret, node);
        NodeUser {
            id: user.id,
            name: match self {
                Self::Shared => user.name.clone(),
                Self::PerNode => String::new(),
            },
            proxy_id: credential.id,
            secret: credential.secret,
        }
    }

    /// [`CredentialScope::node_user`] for each of `users`.
    pub fn node_users(self, node: NodeId, users: &[UserCredentials]) -> Vec<NodeUser> {
        users.iter().map(|u| self.node_user(node, u)).collect()
    }
}

/// What one user presents on one node.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCredential {
    /// The VLESS/VMess id.
    pub id: uuid::Uuid,
    /// The Trojan/Shadowsocks password.
    pub secret: UserSecret,
}

impl fmt::Debug for NodeCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCredential")
            .field("id", &"<redacted>")
            .field("secret", &self.secret)
            .finish()
    }
}

/// A user as one node's agent is told of it (`/start`, `/users/edit`).
#[derive(Clone, PartialEq, Eq)]
pub struct NodeUser {
    /// The core's key for the user (its `email`), what usage and removals name.
    pub id: UserId,
    /// The user's name, or empty when the node is not told it.
    pub name: String,
    /// The VLESS/VMess id the user presents on this node.
    pub proxy_id: uuid::Uuid,
    /// The Trojan/Shadowsocks password the user presents on this node.
    pub secret: UserSecret,
}

impl NodeUser {
    /// Whether the VLESS/VMess id is other than the user's id (a per-node one).
    pub fn has_own_proxy_id(&self) -> bool {
        self.proxy_id != self.id.as_uuid()
    }
}

impl fmt::Debug for NodeUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeUser")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("credential", &"<redacted>")
            .finish()
    }
}

fn mac(secret: &UserSecret, label: &str, node: NodeId) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(label.as_bytes());
    mac.update(node.to_string().as_bytes());
    mac.finalize().into_bytes().into()
}

fn derived_uuid(secret: &UserSecret, node: NodeId) -> uuid::Uuid {
    let bytes = mac(secret, "vless-id:", node);
    let mut first = [0u8; 16];
    first.copy_from_slice(&bytes[..16]);
    // Version 4 and the RFC 4122 variant set, as a random UUID has them.
    uuid::Builder::from_random_bytes(first).into_uuid()
}

/// 192 bits as base64url (32 characters), the shape of a [`UserSecret`]:
/// Trojan takes any text, Shadowsocks' AEAD ciphers (V2Ray, ss-manager)
/// derive their key from any text, and links carry it without escaping.
fn derived_password(secret: &UserSecret, node: NodeId) -> UserSecret {
    let bytes = mac(secret, "password:", node);
    UserSecret::from_stored(URL_SAFE_NO_PAD.encode(&bytes[..24]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> UserSecret {
        UserSecret::from_stored(s.to_owned())
    }

    #[test]
    fn the_derivation_is_the_documented_hmac() {
        // `printf '%s' 'vless-id:00000000-0000-4000-8000-000000000001' |
        //  openssl dgst -sha256 -hmac s3cret` is e4a44378f6165e3b18b04e0a…:
        // its first 16 bytes with the version (4) and variant bits set. The
        // password: the same with `password:`, 24 bytes, base64url.
        let node: NodeId = "00000000-0000-4000-8000-000000000001".parse().unwrap();
        let c = CredentialScope::PerNode.credential(UserId::random(), &secret("s3cret"), node);
        assert_eq!(c.id.to_string(), "e4a44378-f616-4e3b-98b0-4e0a92b7810c");
        assert_eq!(c.secret.expose(), "V8Xo_YeVWlvDewAteevObU3im0EHHpn2");
    }

    #[test]
    fn per_node_credentials_are_stable() {
        let (user, node, s) = (UserId::random(), NodeId::random(), UserSecret::random());
        let a = CredentialScope::PerNode.credential(user, &s, node);
        let b = CredentialScope::PerNode.credential(user, &s, node);
        assert_eq!(a, b);
    }

    #[test]
    fn per_node_credentials_differ_per_node_and_per_user() {
        let user = UserId::random();
        let (s, other) = (UserSecret::random(), UserSecret::random());
        let nodes: Vec<NodeId> = (0..8).map(|_| NodeId::random()).collect();
        let mut ids = std::collections::HashSet::new();
        let mut passwords = std::collections::HashSet::new();
        for &node in &nodes {
            for secret in [&s, &other] {
                let c = CredentialScope::PerNode.credential(user, secret, node);
                assert!(ids.insert(c.id), "an id repeats");
                assert!(passwords.insert(c.secret.expose().to_owned()));
                assert_ne!(c.id, user.as_uuid());
                assert_ne!(c.secret.expose(), secret.expose());
            }
        }
    }

    #[test]
    fn per_node_ids_are_version_4_uuids_and_passwords_url_safe() {
        for _ in 0..64 {
            let c = CredentialScope::PerNode.credential(
                UserId::random(),
                &UserSecret::random(),
                NodeId::random(),
            );
            assert_eq!(c.id.get_version(), Some(uuid::Version::Random));
            assert_eq!(c.id.get_variant(), uuid::Variant::RFC4122);
            let text = c.id.hyphenated().to_string();
            assert_eq!(uuid::Uuid::try_parse(&text).unwrap(), c.id);
            assert_eq!(c.secret.expose().len(), 32);
            assert!(
                c.secret
                    .expose()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
    }

    #[test]
    fn shared_credentials_are_the_users_own_on_every_node() {
        let (user, s) = (UserId::random(), UserSecret::random());
        let c = CredentialScope::Shared.credential(user, &s, NodeId::random());
        assert_eq!(c.id, user.as_uuid());
        assert_eq!(c.secret, s);
    }

    #[test]
    fn a_node_is_told_neither_the_secret_nor_the_name_per_node() {
        let creds = UserCredentials {
            id: UserId::random(),
            name: "alice".into(),
            secret: UserSecret::random(),
        };
        let node = NodeId::random();
        let told = CredentialScope::PerNode.node_user(node, &creds);
        assert_eq!(told.id, creds.id);
        assert!(told.name.is_empty());
        assert_ne!(told.secret, creds.secret);
        assert!(told.has_own_proxy_id());
        let shared = CredentialScope::Shared.node_user(node, &creds);
        assert_eq!(
            (shared.name.as_str(), &shared.secret),
            ("alice", &creds.secret)
        );
        assert!(!shared.has_own_proxy_id());
        assert!(!format!("{told:?}").contains(told.secret.expose()));
        assert!(!format!("{told:?}").contains(&told.proxy_id.to_string()));
    }
}
