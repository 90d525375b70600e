//! [`Secret`]: the one wrapper for a secret setting (a key, a token, a URL
//! that may hold a password), used by the agent's and the manager's settings.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// A setting that must not appear in logs or `Debug`; read it with
/// [`Secret::expose`] where it is used, never to print it. A
/// [`SecretString`], so it is also wiped from memory when dropped.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Equal when the secrets are; not constant-time, so not for checking a
/// credential a peer sent (the admin token check has its own).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret_and_serde_reads_it_as_a_string() {
        #[derive(Debug, Deserialize)]
        struct Holder {
            token: Secret,
        }
        let holder: Holder = serde_json::from_str(r#"{"token": "hunter2"}"#).unwrap();
        assert_eq!(holder.token.expose(), "hunter2");
        assert_eq!(format!("{holder:?}"), "Holder { token: <redacted> }");
    }
}
