//! Forms another site cannot post: every dashboard form carries a hidden
//! `csrf` field, HMAC-SHA256 of the session's token under a key drawn at
//! random when the manager starts (so a restart expires open forms, not
//! sessions), compared in constant time; and a request whose `Origin`
//! header (when the browser sends one) names another host than `Host` is
//! refused whatever it carries.
//!
//! Pages are compressed, and a page may hold text from the request (a
//! search): an attacker who can make the browser load pages with guesses
//! and watch their compressed size could otherwise learn the token a byte
//! at a time (BREACH). So a page never holds the token as is: each render
//! shows it XORed with a fresh random pad, pad first (as Rails and Django
//! do), and the check takes the pad off.

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

    /// The form token of the session holding `session`, masked with a
    /// fresh pad: each call gives another text, every one of them valid.
    pub(super) fn token(&self, session: &str) -> String {
        let mac = self.mac(session).finalize().into_bytes();
        let mut pad = [0u8; 32];
        rand::rng().fill_bytes(&mut pad);
        let masked: Vec<u8> = mac.iter().zip(&pad).map(|(m, p)| m ^ p).collect();
        format!("{}{}", hex::encode(pad), hex::encode(masked))
    }

    /// Whether `presented` is a form token of `session` (constant time).
    pub(super) fn verify(&self, session: &str, presented: &str) -> bool {
        let Ok(bytes) = hex::decode(presented) else {
            return false;
        };
        if bytes.len() != 64 {
            return false;
        }
        let (pad, masked) = bytes.split_at(32);
        let mac: Vec<u8> = masked.iter().zip(pad).map(|(m, p)| m ^ p).collect();
        self.mac(session).verify_slice(&mac).is_ok()
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
    fn each_render_masks_the_token_anew() {
        let key = CsrfKey::random();
        let (a, b) = (key.token("session-a"), key.token("session-a"));
        assert_ne!(a, b, "no two pages hold the same text");
        assert!(key.verify("session-a", &a) && key.verify("session-a", &b));
        // The unmasked MAC alone (the old form) is not accepted.
        let unmasked = hex::encode(key.mac("session-a").finalize().into_bytes());
        assert!(!key.verify("session-a", &unmasked));
        // A pad changed without the masked half fails.
        let mut flipped = a.into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!key.verify("session-a", &String::from_utf8(flipped).unwrap()));
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
