//! A user's subscription token: what the subscription URL is keyed by.
//!
//! The token is the user's id and a 128-bit random key, as 43 base64url
//! characters. The key is stored on the user's row; rotating it (a new
//! random key) makes every earlier token unknown at once. Carrying the id
//! lets the subscription call read the user as the node-list call does (one
//! point read, the same cache) and then compare the key in constant time;
//! the id tells nothing a subscription does not already show (it is the
//! user's VLESS/VMess id).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

use super::{ParseError, UserId};

/// The random half of a user's subscription token. `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionKey([u8; 16]);

impl SubscriptionKey {
    /// The stored form's length: 32 lower-case hex digits.
    pub const TEXT_LEN: usize = 32;

    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The stored form (hex).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads the stored form.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError {
            what: "subscription key",
            value: String::new(),
        };
        let bytes = hex::decode(s).map_err(|_| err())?;
        Ok(Self(bytes.try_into().map_err(|_| err())?))
    }

    /// The token of `user` under this key.
    pub fn token(&self, user: UserId) -> SubscriptionToken {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(user.as_uuid().as_bytes());
        bytes[16..].copy_from_slice(&self.0);
        SubscriptionToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Whether `other` is this key, in time that does not depend on where
    /// they differ.
    pub fn matches(&self, other: &SubscriptionKey) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SubscriptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubscriptionKey(<redacted>)")
    }
}

/// A subscription token as it appears in the URL. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriptionToken(String);

impl SubscriptionToken {
    /// The token's length in characters.
    pub const TEXT_LEN: usize = 43;

    /// The user and key a token names, or `None` for text that is no token.
    pub fn parse(text: &str) -> Option<(UserId, SubscriptionKey)> {
        if text.len() != Self::TEXT_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (id, key) = bytes.split_at_checked(16)?;
        let id = uuid::Uuid::from_slice(id).ok()?;
        Some((UserId::from_uuid(id), SubscriptionKey(key.try_into().ok()?)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubscriptionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubscriptionToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_and_key() {
        let (id, key) = (UserId::random(), SubscriptionKey::random());
        let token = key.token(id);
        assert_eq!(token.expose().len(), SubscriptionToken::TEXT_LEN);
        let (got_id, got_key) = SubscriptionToken::parse(token.expose()).unwrap();
        assert_eq!(got_id, id);
        assert!(got_key.matches(&key));
        assert!(!SubscriptionKey::random().matches(&key));
        assert!(!format!("{token:?}{key:?}").contains(&key.to_hex()));
    }

    #[test]
    fn the_stored_form_round_trips() {
        let key = SubscriptionKey::random();
        assert_eq!(key.to_hex().len(), SubscriptionKey::TEXT_LEN);
        assert!(
            SubscriptionKey::from_hex(&key.to_hex())
                .unwrap()
                .matches(&key)
        );
        assert!(SubscriptionKey::from_hex("00").is_err());
        assert!(SubscriptionKey::from_hex(&"g".repeat(32)).is_err());
    }

    #[test]
    fn other_text_is_no_token() {
        for bad in ["", "short", &"!".repeat(43), &"A".repeat(44)] {
            assert!(SubscriptionToken::parse(bad).is_none(), "{bad:?}");
        }
    }
}
