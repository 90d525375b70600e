//! Forms another site cannot post: every dashboard form carries a hidden
//! `csrf` field, HMAC-SHA256 of the session's token under a key drawn at
//! random when the manager starts (so a restart expires open forms, not
//! sessions), compared in constant time; and a request whose `Origin`
//! header (when the browser sends one) names another host than `Host` is
//! refused whatever it carries.

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

/// The name of the hidden form field.
pub(super) const FIELD: &str = "csrf";

/// The process's CSRF key.
pub(crate) struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub(super) fn random() -> Self {
        let mut key = [0; 32];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    fn mac(&self, session: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(session.as_bytes());
        mac
    }

    /// The form token of the session holding `session`.
    pub(super) fn token(&self, session: &str) -> String {
        hex::encode(self.mac(session).finalize().into_bytes())
    }

    /// Whether `presented` is the form token of `session` (constant time).
    pub(super) fn verify(&self, session: &str, presented: &str) -> bool {
        match hex::decode(presented) {
            Ok(bytes) => self.mac(session).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

/// Whether the request's `Origin`, when there is one, is this server (its
/// host and port are the `Host` header's). A missing `Origin` passes: older
/// browsers send none on same-origin posts, and the form token still holds.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let Some(origin_host) = url.host_str() else {
        return false;
    };
    let origin_authority = match url.port() {
        Some(port) => format!("{origin_host}:{port}"),
        None => origin_host.to_owned(),
    };
    origin_authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_session_and_key() {
        let key = CsrfKey::random();
        let token = key.token("session-a");
        assert!(key.verify("session-a", &token));
        assert!(!key.verify("session-b", &token));
        assert!(!key.verify("session-a", ""));
        assert!(!key.verify("session-a", "not hex"));
        assert!(!CsrfKey::random().verify("session-a", &token));
    }

    #[test]
    fn the_origin_must_be_the_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&headers));
    }
}
