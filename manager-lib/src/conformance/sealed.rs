//! Helpers for each backend's sealed-at-rest tests (its own database
//! bytes: a SQLite file, a `pg_dump`): the rows to seal, and the check that
//! no node key, user secret or subscription key (nor the user's
//! subscription token) appears in those bytes in any form.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::domain::{NewNode, NewUser, Node, NodeKey, Timestamp, User, UserStatus};
use crate::seal::{MasterKey, Sealer};
use crate::storage::Storage;

/// A sealer with `key` and no previous key.
pub fn sealer(key: &MasterKey) -> Sealer {
    Sealer::new(key.clone(), Vec::new())
}

/// Three nodes and twelve users, every other one enabled (so the change
/// log holds users too).
pub async fn fill(s: &dyn Storage) -> (Vec<Node>, Vec<User>) {
    let mut nodes = Vec::new();
    for i in 0..3 {
        let node = NewNode::new(format!("http://10.9.0.{i}:8443")).unwrap();
        nodes.push(s.create_node(node).await.unwrap());
    }
    let mut users = Vec::new();
    for i in 0..12 {
        let user = s
            .create_user(NewUser::new(format!("user-{i}")).unwrap())
            .await
            .unwrap();
        let user = if i % 2 == 0 {
            s.set_user_status(user.id, UserStatus::Enabled)
                .await
                .unwrap()
        } else {
            user
        };
        users.push(user);
    }
    (nodes, users)
}

/// Key rotations on the first two of `nodes` (at least two): the first
/// with a key pending, the second confirmed (its old key kept as the
/// previous one; `nodes` gets its new key) and another pending. Gives the
/// keys the rotation rows hold.
pub async fn fill_rotations(s: &dyn Storage, nodes: &mut [Node]) -> Vec<NodeKey> {
    let grace = std::time::Duration::from_secs(3600);
    let (a, b, c) = (NodeKey::random(), NodeKey::random(), NodeKey::random());
    s.request_key_rotation(nodes[0].id, &a, grace, Timestamp::now())
        .await
        .unwrap();
    s.request_key_rotation(nodes[1].id, &b, grace, Timestamp::now())
        .await
        .unwrap();
    nodes[1] = s
        .confirm_key_rotation(nodes[1].id, &b, Timestamp::now())
        .await
        .unwrap()
        .expect("pending");
    s.request_key_rotation(nodes[1].id, &c, grace, Timestamp::now())
        .await
        .unwrap();
    let old = s.key_rotation(nodes[1].id).await.unwrap().unwrap().previous;
    let (old, _) = old.expect("the replaced key is kept");
    vec![a, old, c]
}

/// Panics if `bytes` hold any of `keys` (pending or previous node keys) in
/// any form.
pub fn assert_no_key_in(bytes: &[u8], keys: &[NodeKey]) {
    let mut checked = 0;
    for key in keys {
        for form in forms(&key.expose_base64url()) {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                "a rotation's key is in the database's bytes in clear"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * keys.len());
}

/// Panics unless the rotations [`fill_rotations`] made read back with
/// their keys: `keys` as it gave them.
pub async fn assert_rotations_read_back(s: &dyn Storage, nodes: &[Node], keys: &[NodeKey]) {
    let first = s.key_rotation(nodes[0].id).await.unwrap().unwrap();
    assert_eq!(first.pending.as_ref(), Some(&keys[0]));
    let second = s.key_rotation(nodes[1].id).await.unwrap().unwrap();
    assert_eq!(second.previous.map(|(key, _)| key).as_ref(), Some(&keys[1]));
    assert_eq!(second.pending.as_ref(), Some(&keys[2]));
}

/// Every way a secret given as base64url could be written: as is, as
/// standard base64 and as hex of its bytes.
fn forms(base64url: &str) -> [String; 3] {
    let bytes = URL_SAFE_NO_PAD.decode(base64url).expect("base64url");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    [
        base64url.to_owned(),
        STANDARD.encode(&bytes).trim_end_matches('=').to_owned(),
        hex,
    ]
}

/// Panics if `bytes` hold any node key, user secret, subscription key or
/// subscription token of `nodes` and `users` in any of its forms.
pub fn assert_no_secret_in(bytes: &[u8], nodes: &[Node], users: &[User]) {
    let keys = nodes.iter().map(|n| n.key.expose_base64url());
    let secrets = users.iter().map(|u| u.secret.expose().to_owned());
    let sub_keys = users
        .iter()
        .map(|u| URL_SAFE_NO_PAD.encode(u.subscription_key.as_bytes()));
    let tokens = users
        .iter()
        .map(|u| u.subscription_key.token(u.id).expose().to_owned());
    let mut checked = 0;
    for secret in keys.chain(secrets).chain(sub_keys).chain(tokens) {
        for form in forms(&secret) {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                "a key or secret is in the database's bytes in clear"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * (nodes.len() + 3 * users.len()));
}

/// Panics unless every node key, user secret and subscription key reads
/// back as written.
pub async fn assert_reads_back(s: &dyn Storage, nodes: &[Node], users: &[User]) {
    for node in nodes {
        assert_eq!(s.get_node(node.id).await.unwrap().key, node.key);
    }
    for user in users {
        let got = s.get_user(user.id).await.unwrap();
        assert_eq!(got.secret, user.secret);
        assert!(got.subscription_key.matches(&user.subscription_key));
    }
}
