//! Secrets sealed at rest: node keys, users' Trojan/Shadowsocks secrets
//! and users' subscription keys (the half of the `/sub/{token}` link that
//! is not the user id) are written to the database (and the shared cache)
//! encrypted under a master key, so a dump, a backup or a Redis RDB file
//! alone reveals none of them.
//!
//! A sealed value is text: `xms1.<key id>.<base64url(nonce ‖ ciphertext)>`,
//! XChaCha20-Poly1305 with a random 192-bit nonce. The key id (8 hex digits of
//! a hash of the master key) says which master key sealed it, so a database
//! sealed under another key is refused by name rather than read as garbage,
//! and rotation knows what is left to re-seal. The associated data binds the
//! value to its row (`node-key:<node id>`, `user-secret:<user id>`,
//! `subscription-key:<user id>`): a value copied into another row does not
//! open.
//!
//! Both SQL backends seal on write and open on read through one [`Sealer`];
//! a value without the prefix is a clear one from before sealing, which the
//! startup step ([`Sealer::reseal`]) seals.

mod master_key;
pub mod rotation;

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::domain::{NodeId, NodeKey, SubscriptionKey, UserId, UserSecret};
use crate::storage::{Entity, StorageError};

pub use master_key::{KeySource, MASTER_KEY_FILE, MasterKey, SecretsSettings};

/// What every sealed value starts with: the format's version.
pub const SEALED_PREFIX: &str = "xms1.";
const NONCE_BYTES: usize = 24;

/// The column a sealed value belongs to; with the row's id it is the
/// associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// `nodes.key`: the node's JWE key.
    NodeKey,
    /// `users.secret`: the user's Trojan/Shadowsocks secret.
    UserSecret,
    /// A node's key waiting to be delivered by a rotation.
    PendingNodeKey,
    /// The node key a confirmed rotation replaced (kept for its grace).
    PreviousNodeKey,
    /// `users.subscription_key`: the random half of the user's subscription
    /// token (the link that lists every node credential of the user).
    SubscriptionKey,
}

impl Column {
    /// Every sealed column: what the start-up re-seal walks in each backend.
    pub const ALL: [Column; 5] = [
        Column::NodeKey,
        Column::UserSecret,
        Column::PendingNodeKey,
        Column::PreviousNodeKey,
        Column::SubscriptionKey,
    ];

    /// Where the column lives: its table, its name there (SQLite's nodes
    /// table names the node key `key`, PostgreSQL's `node_key`: the name a
    /// backend uses for [`Column::NodeKey`] is its own), and what a row of
    /// the table is.
    pub fn place(self) -> (&'static str, &'static str, Entity) {
        match self {
            Column::NodeKey => ("nodes", "node_key", Entity::Node),
            Column::UserSecret => ("users", "secret", Entity::User),
            Column::PendingNodeKey => ("node_key_rotations", "pending_key", Entity::KeyRotation),
            Column::PreviousNodeKey => ("node_key_rotations", "previous_key", Entity::KeyRotation),
            Column::SubscriptionKey => ("users", "subscription_key", Entity::User),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Column::NodeKey => "node-key",
            Column::UserSecret => "user-secret",
            Column::PendingNodeKey => "node-key-pending",
            Column::PreviousNodeKey => "node-key-previous",
            Column::SubscriptionKey => "subscription-key",
        }
    }
}

/// Why a stored value did not open. The texts never hold the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Sealed under a master key that is neither the current nor a previous one.
    #[error(
        "the secrets in the database are sealed under master key {found}, but the master key \
         given is {current}{previous}: start with the master key the database was sealed with \
         ([secrets] master_key_file, XM_SECRETS_MASTER_KEY_FILE or XM_MASTER_KEY); to move to a \
         new key, name the old one in previous_master_key_files"
    )]
    UnknownKey {
        found: String,
        current: String,
        previous: String,
    },
    /// Sealed, but the storage was opened without a master key.
    #[error(
        "the secrets in the database are sealed (master key {found}) and no master key was given"
    )]
    NoMasterKey { found: String },
    /// The key is known but the value does not open: damaged, or copied
    /// from another row.
    #[error(
        "a sealed {column} of row {row} does not open: it was altered or belongs to another row"
    )]
    Forged { column: &'static str, row: String },
    /// Not in the sealed format.
    #[error("a sealed {column} of row {row} is malformed")]
    Malformed { column: &'static str, row: String },
}

impl From<SealError> for StorageError {
    /// The wrong master key is the operator's to fix, not damaged data.
    fn from(e: SealError) -> Self {
        match e {
            SealError::UnknownKey { .. } | SealError::NoMasterKey { .. } => {
                StorageError::Other(Box::new(e))
            }
            _ => StorageError::Corrupt(e.to_string()),
        }
    }
}

/// Seals and opens the secret columns. Without a master key
/// ([`Sealer::clear`], the library default) values are written in clear
/// and a sealed value is refused with [`SealError::NoMasterKey`].
#[derive(Clone)]
pub struct Sealer {
    inner: Arc<Keys>,
}

struct Keys {
    current: Option<MasterKey>,
    previous: Vec<MasterKey>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.inner.current.as_ref().map(MasterKey::id))
            .field(
                "previous",
                &self
                    .inner
                    .previous
                    .iter()
                    .map(MasterKey::id)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Sealer {
    fn default() -> Self {
        Self::clear()
    }
}

/// What [`Sealer::reseal`] made of one stored value.
#[derive(Debug, PartialEq, Eq)]
pub enum Resealed {
    /// Already sealed under the current key (or clear with no key): unchanged.
    Current,
    /// The value to write instead.
    Replace(String),
}

impl Sealer {
    /// No master key: values are stored in clear.
    pub fn clear() -> Self {
        Self {
            inner: Arc::new(Keys {
                current: None,
                previous: Vec::new(),
            }),
        }
    }

    /// Seals under `current`; values sealed under one of `previous` still open.
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        let previous = previous
            .into_iter()
            .filter(|k| k.id() != current.id())
            .collect();
        Self {
            inner: Arc::new(Keys {
                current: Some(current),
                previous,
            }),
        }
    }

    /// Whether values are sealed (a master key was given).
    pub fn is_sealing(&self) -> bool {
        self.inner.current.is_some()
    }

    /// The prefix of every value sealed under the current key (`None` when
    /// clear): a backend selects the rows left to re-seal with it.
    pub fn current_prefix(&self) -> Option<String> {
        self.inner
            .current
            .as_ref()
            .map(|k| format!("{SEALED_PREFIX}{}.", k.id()))
    }

    /// `clear` as stored in `column` of row `row`.
    pub fn seal(&self, column: Column, row: &str, clear: &str) -> String {
        let Some(key) = &self.inner.current else {
            return clear.to_owned();
        };
        let nonce = XChaCha20Poly1305::generate_nonce(&mut chacha20poly1305::aead::OsRng);
        let aad = aad(column, row);
        let sealed = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: clear.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!(
            "{SEALED_PREFIX}{}.{}",
            key.id(),
            URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// The clear value of `stored` (as stored in `column` of row `row`). A
    /// value without the sealed prefix is a clear one from before sealing.
    pub fn open(&self, column: Column, row: &str, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let malformed = || SealError::Malformed {
            column: column.label(),
            row: row.to_owned(),
        };
        let (id, body) = rest.split_once('.').ok_or_else(malformed)?;
        let key = self.key(id)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| malformed())?;
        if bytes.len() < NONCE_BYTES {
            return Err(malformed());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let aad = aad(column, row);
        let clear = key
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Forged {
                column: column.label(),
                row: row.to_owned(),
            })?;
        String::from_utf8(clear).map_err(|_| malformed())
    }

    /// What to store instead of `stored` so that it is sealed under the
    /// current key: clear values and values under a previous key are
    /// re-sealed; a value under an unknown key is an error.
    pub fn reseal(&self, column: Column, row: &str, stored: &str) -> Result<Resealed, SealError> {
        let current = self.current_prefix();
        let clear_and_clear = current.is_none() && !stored.starts_with(SEALED_PREFIX);
        if clear_and_clear || current.is_some_and(|p| stored.starts_with(&p)) {
            // Opened anyway: a value the current key cannot open is found now,
            // at start, not on the first read.
            self.open(column, row, stored)?;
            return Ok(Resealed::Current);
        }
        let clear = self.open(column, row, stored)?;
        Ok(Resealed::Replace(self.seal(column, row, &clear)))
    }

    /// A node's key as stored.
    pub fn seal_node_key(&self, node: NodeId, key: &NodeKey) -> String {
        self.seal(Column::NodeKey, &node.to_string(), &key.expose_base64url())
    }

    /// A node's key from its stored form. Errors never echo the key.
    pub fn open_node_key(&self, node: &str, stored: &str) -> Result<NodeKey, StorageError> {
        self.open(Column::NodeKey, node, stored)?
            .parse()
            .map_err(|e: node_agent_lib::envelope::InvalidKey| StorageError::Corrupt(e.to_string()))
    }

    /// A node key as stored in `column` (one of the node-key columns) of
    /// node `node`'s row.
    pub fn seal_key_in(&self, column: Column, node: NodeId, key: &NodeKey) -> String {
        self.seal(column, &node.to_string(), &key.expose_base64url())
    }

    /// A node key from its stored form in `column`. Errors never echo the key.
    pub fn open_key_in(
        &self,
        column: Column,
        node: &str,
        stored: &str,
    ) -> Result<NodeKey, StorageError> {
        self.open(column, node, stored)?
            .parse()
            .map_err(|e: node_agent_lib::envelope::InvalidKey| StorageError::Corrupt(e.to_string()))
    }

    /// A user's secret as stored.
    pub fn seal_user_secret(&self, user: UserId, secret: &UserSecret) -> String {
        self.seal(Column::UserSecret, &user.to_string(), secret.expose())
    }

    /// A user's secret from its stored form.
    pub fn open_user_secret(&self, user: &str, stored: &str) -> Result<UserSecret, StorageError> {
        Ok(UserSecret::from_stored(self.open(
            Column::UserSecret,
            user,
            stored,
        )?))
    }

    /// A user's subscription key as stored.
    pub fn seal_subscription_key(&self, user: UserId, key: &SubscriptionKey) -> String {
        self.seal(Column::SubscriptionKey, &user.to_string(), &key.to_hex())
    }

    /// A user's subscription key from its stored form (a clear one, from
    /// before sealing, too). Errors never echo the key.
    pub fn open_subscription_key(
        &self,
        user: &str,
        stored: &str,
    ) -> Result<SubscriptionKey, StorageError> {
        SubscriptionKey::from_hex(&self.open(Column::SubscriptionKey, user, stored)?)
            .map_err(|e| StorageError::Corrupt(e.to_string()))
    }

    fn key(&self, id: &str) -> Result<&MasterKey, SealError> {
        let keys = &self.inner;
        let Some(current) = &keys.current else {
            return Err(SealError::NoMasterKey {
                found: id.to_owned(),
            });
        };
        std::iter::once(current)
            .chain(&keys.previous)
            .find(|k| k.id() == id)
            .ok_or_else(|| SealError::UnknownKey {
                found: id.to_owned(),
                current: current.id().to_owned(),
                previous: if keys.previous.is_empty() {
                    String::new()
                } else {
                    let ids: Vec<&str> = keys.previous.iter().map(MasterKey::id).collect();
                    format!(" (previous: {})", ids.join(", "))
                },
            })
    }
}

fn aad(column: Column, row: &str) -> String {
    format!("{}:{row}", column.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(MasterKey::random(), Vec::new())
    }

    #[test]
    fn a_value_opens_in_its_own_row_only() {
        let s = sealer();
        let sealed = s.seal(Column::UserSecret, "u1", "hunter2-secret");
        assert!(sealed.starts_with(&s.current_prefix().unwrap()));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            s.open(Column::UserSecret, "u1", &sealed).unwrap(),
            "hunter2-secret"
        );
        assert!(matches!(
            s.open(Column::UserSecret, "u2", &sealed),
            Err(SealError::Forged { .. })
        ));
        assert!(matches!(
            s.open(Column::NodeKey, "u1", &sealed),
            Err(SealError::Forged { .. })
        ));
    }

    #[test]
    fn each_seal_draws_a_new_nonce() {
        let s = sealer();
        assert_ne!(
            s.seal(Column::NodeKey, "n", "k"),
            s.seal(Column::NodeKey, "n", "k")
        );
    }

    #[test]
    fn a_value_under_another_key_is_refused_by_key_id() {
        let sealed = sealer().seal(Column::NodeKey, "n", "k");
        let other = sealer();
        let err = other.open(Column::NodeKey, "n", &sealed).unwrap_err();
        assert!(matches!(err, SealError::UnknownKey { .. }), "{err}");
        assert!(err.to_string().contains("master_key_file"), "{err}");
        let clear = Sealer::clear().open(Column::NodeKey, "n", &sealed);
        assert!(matches!(clear, Err(SealError::NoMasterKey { .. })));
    }

    #[test]
    fn reseal_seals_clear_values_and_moves_previous_keys_to_the_current_one() {
        let old = MasterKey::random();
        let under_old = Sealer::new(old.clone(), Vec::new()).seal(Column::UserSecret, "u", "s");
        let new = MasterKey::random();
        let rotating = Sealer::new(new.clone(), vec![old]);
        let Resealed::Replace(moved) = rotating
            .reseal(Column::UserSecret, "u", &under_old)
            .unwrap()
        else {
            panic!("a value under the previous key is re-sealed");
        };
        let only_new = Sealer::new(new, Vec::new());
        assert_eq!(only_new.open(Column::UserSecret, "u", &moved).unwrap(), "s");
        assert_eq!(
            only_new.reseal(Column::UserSecret, "u", &moved).unwrap(),
            Resealed::Current
        );
        let Resealed::Replace(sealed) = only_new.reseal(Column::UserSecret, "u", "clear").unwrap()
        else {
            panic!("a clear value is sealed");
        };
        assert_eq!(
            only_new.open(Column::UserSecret, "u", &sealed).unwrap(),
            "clear"
        );
        assert_eq!(
            Sealer::clear().reseal(Column::UserSecret, "u", "clear"),
            Ok(Resealed::Current)
        );
    }

    #[test]
    fn a_tampered_or_truncated_value_is_refused_without_echoing_it() {
        let s = sealer();
        let sealed = s.seal(Column::NodeKey, "n", "secret-key");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(s.open(Column::NodeKey, "n", &tampered).is_err());
        let short = &sealed[..s.current_prefix().unwrap().len() + 4];
        let err = s.open(Column::NodeKey, "n", short).unwrap_err();
        assert!(matches!(err, SealError::Malformed { .. }));
        assert!(!err.to_string().contains("secret-key"));
    }
}
