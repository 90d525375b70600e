//! Scoped API tokens: a name, a role, an optional expiry, revocable.
//!
//! A token's text is `xmt_<id>_<secret>`: the token's id (a UUID, 32 hex
//! digits) and 256 random bits (43 base64url characters). The id finds the
//! stored token with one point read (no scan over the tokens); the secret
//! is checked against the stored [`TokenVerifier`], SHA-256 over a per-token
//! random salt and the secret, compared in constant time. A slow password
//! hash would add nothing: 256 random bits cannot be guessed, so the hash
//! only has to be one-way, and the salt keeps equal digests (and any
//! precomputed table) from ever matching across tokens or databases. The
//! text is shown once, when the token is made; only the verifier is stored.
//!
//! ```
//! use manager_lib::domain::{IssuedToken, NewToken, PresentedToken, Role};
//! let issued = IssuedToken::issue(NewToken::new("ci", Role::ReadOnly, None).unwrap(),
//!     manager_lib::domain::Timestamp(0));
//! let presented = PresentedToken::parse(issued.text()).unwrap();
//! assert_eq!(presented.id(), issued.token.id);
//! assert!(issued.verifier.verifies(&presented));
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::{ParseError, Timestamp, TokenId};

/// What a token may do. Ordered: each role may do everything the ones
/// before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Every admin read except the token list.
    ReadOnly,
    /// Reads, and every change to users (their plans, subscriptions and
    /// devices included).
    Users,
    /// Everything: nodes and tokens too.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::ReadOnly, Role::Users, Role::Admin];

    /// Whether a caller with this role may make a call that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Users => "users",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "role",
                value: s.to_owned(),
            })
    }
}

/// A token as stored and listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: TokenId,
    /// Unique among every token ever made (revoked ones included), so an
    /// audit entry's actor names one token.
    pub name: String,
    pub role: Role,
    pub created: Timestamp,
    /// From this moment on the token is refused; `None`: never expires.
    pub expires: Option<Timestamp>,
    /// When it was revoked; refused from then on.
    pub revoked: Option<Timestamp>,
}

impl ApiToken {
    /// Whether the token may be used at `now`: not revoked, not expired.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| now < e)
    }
}

/// What the caller asks for when making a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub expires: Option<Timestamp>,
}

impl NewToken {
    /// The longest name, in characters.
    pub const MAX_NAME_CHARS: usize = 64;
    /// The audit log's actor for the bootstrap admin token: no token may
    /// take its name.
    pub const BOOTSTRAP_NAME: &'static str = "bootstrap";

    /// A token request with a name of 1 to 64 letters, digits, `-`, `_`, `.`
    /// or `@` (a name goes into logs and audit filters as it is), and not
    /// `bootstrap`.
    pub fn new(name: &str, role: Role, expires: Option<Timestamp>) -> Result<Self, ParseError> {
        let ok = !name.is_empty()
            && name.chars().count() <= Self::MAX_NAME_CHARS
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
            && name != Self::BOOTSTRAP_NAME;
        if !ok {
            return Err(ParseError {
                what: "token name",
                value: name.to_owned(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            role,
            expires,
        })
    }
}

/// The secret half of a token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
struct TokenSecret([u8; 32]);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// A token's text as a caller presented it, split into id and secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedToken {
    id: TokenId,
    secret: TokenSecret,
}

impl PresentedToken {
    /// What every token's text starts with.
    pub const PREFIX: &'static str = "xmt_";

    /// `None` for anything that is not `xmt_<32 hex>_<43 base64url>`.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(Self::PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        if id.len() != 32 || secret.len() != 43 {
            return None;
        }
        let id = uuid::Uuid::try_parse(id).ok()?;
        let bytes = URL_SAFE_NO_PAD.decode(secret).ok()?;
        Some(Self {
            id: TokenId::from_uuid(id),
            secret: TokenSecret(bytes.try_into().ok()?),
        })
    }

    pub fn id(&self) -> TokenId {
        self.id
    }

    fn text(&self) -> String {
        format!(
            "{}{}_{}",
            Self::PREFIX,
            self.id.as_uuid().simple(),
            URL_SAFE_NO_PAD.encode(self.secret.0)
        )
    }
}

/// What is stored to check a token: a random salt and SHA-256(salt ‖ secret).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenVerifier {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenVerifier(<redacted>)")
    }
}

impl TokenVerifier {
    fn digest(salt: &[u8; 16], secret: &TokenSecret) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(secret.0);
        h.finalize().into()
    }

    fn of(secret: &TokenSecret) -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Self {
            digest: Self::digest(&salt, secret),
            salt,
        }
    }

    /// Reads the stored form back; `None` when a part has the wrong length.
    pub fn from_parts(salt: &[u8], digest: &[u8]) -> Option<Self> {
        Some(Self {
            salt: salt.try_into().ok()?,
            digest: digest.try_into().ok()?,
        })
    }

    pub fn salt(&self) -> &[u8; 16] {
        &self.salt
    }

    pub fn digest_bytes(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Whether `presented` is the token this verifier was made for, in
    /// constant time (the id is not checked here: it found the verifier).
    pub fn verifies(&self, presented: &PresentedToken) -> bool {
        let given = Self::digest(&self.salt, &presented.secret);
        bool::from(given.ct_eq(&self.digest))
    }
}

/// A token just made: the record, its verifier, and its text, which exists
/// only here and is shown once.
pub struct IssuedToken {
    pub token: ApiToken,
    pub verifier: TokenVerifier,
    presented: PresentedToken,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl IssuedToken {
    /// A fresh token (new id, 256 random bits) for `new`, made at `now`.
    pub fn issue(new: NewToken, now: Timestamp) -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let presented = PresentedToken {
            id: TokenId::random(),
            secret: TokenSecret(secret),
        };
        Self {
            token: ApiToken {
                id: presented.id,
                name: new.name,
                role: new.role,
                created: now,
                expires: new.expires,
                revoked: None,
            },
            verifier: TokenVerifier::of(&presented.secret),
            presented,
        }
    }

    /// The token's text, to hand to its holder once.
    pub fn text(&self) -> String {
        self.presented.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> IssuedToken {
        IssuedToken::issue(
            NewToken::new("ci", Role::Users, None).unwrap(),
            Timestamp(1),
        )
    }

    #[test]
    fn a_token_round_trips_through_its_text_and_only_its_own_verifier_accepts_it() {
        let a = issued();
        let b = issued();
        let text = a.text();
        assert_eq!(text.len(), 4 + 32 + 1 + 43);
        let presented = PresentedToken::parse(&text).unwrap();
        assert_eq!(presented.id(), a.token.id);
        assert!(a.verifier.verifies(&presented));
        assert!(!b.verifier.verifies(&presented));
        assert!(!format!("{a:?}{presented:?}{:?}", a.verifier).contains(&text[37..]));
    }

    #[test]
    fn malformed_texts_are_not_tokens() {
        let text = issued().text();
        for bad in [
            "",
            "xmt_",
            &text[1..],
            &text[..text.len() - 1],
            &text.replace("xmt_", "xmx_"),
            &format!("{text}A"),
        ] {
            assert_eq!(PresentedToken::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_are_short_plain_and_never_bootstrap() {
        for good in ["ci", "backup.job", "ops@site-1", "Zürich_2"] {
            assert!(NewToken::new(good, Role::Admin, None).is_ok(), "{good}");
        }
        let long = "x".repeat(65);
        for bad in ["", "bootstrap", "a b", "a\nb", "x/y", &long] {
            assert!(NewToken::new(bad, Role::Admin, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_are_ordered_and_spelt_as_in_the_api() {
        assert!(Role::Admin.allows(Role::Users) && Role::Users.allows(Role::ReadOnly));
        assert!(!Role::ReadOnly.allows(Role::Users) && !Role::Users.allows(Role::Admin));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let expired = ApiToken {
            expires: Some(Timestamp(5)),
            ..issued().token
        };
        assert!(expired.is_usable(Timestamp(4)) && !expired.is_usable(Timestamp(5)));
    }
}
