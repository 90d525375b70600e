//! How a delivery is signed, and how a receiver checks it.
//!
//! `X-Xm-Signature: v1=<hex of HMAC-SHA256(secret, timestamp + "." + body)>`
//! where `timestamp` is the `X-Xm-Timestamp` header (seconds since the Unix
//! epoch) and `body` the raw request body. A receiver recomputes it, compares
//! in constant time, and refuses a timestamp too far from its clock (a
//! replayed old delivery); it dedupes on `X-Xm-Event-Id`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The event's id: the same on every attempt of every endpoint.
pub const EVENT_ID_HEADER: &str = "x-xm-event-id";
/// The event's kind (`user.limited`, …).
pub const EVENT_HEADER: &str = "x-xm-event";
/// Seconds since the Unix epoch when this attempt was signed.
pub const TIMESTAMP_HEADER: &str = "x-xm-timestamp";
/// `v1=` and the hex HMAC.
pub const SIGNATURE_HEADER: &str = "x-xm-signature";
/// How many attempts came before this one (0 on the first).
pub const ATTEMPT_HEADER: &str = "x-xm-attempt";

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Xm-Signature` value of `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Why a delivery's signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is not v1=<hex>")]
    Malformed,
    #[error("timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("timestamp is too far from now")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a delivery as a receiver would: `signature` matches `body` and
/// `timestamp` under `secret` (constant-time), and `timestamp` is within
/// `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if now_secs.abs_diff(sent) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let hex_sig = signature
        .strip_prefix("v1=")
        .ok_or(SignatureError::Malformed)?;
    let bytes = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    mac(secret, timestamp, body)
        .verify_slice(&bytes)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let sig = sign(secret, "1700000000", b"{\"a\":1}");
        assert!(verify(secret, "1700000000", b"{\"a\":1}", &sig, 1_700_000_010, 300).is_ok());
        let bad = |ts: &str, body: &[u8], sig: &str, secret: &[u8]| {
            verify(secret, ts, body, sig, 1_700_000_010, 300).unwrap_err()
        };
        assert_eq!(
            bad("1700000000", b"{\"a\":2}", &sig, secret),
            SignatureError::Mismatch
        );
        assert_eq!(
            bad("1700000001", b"{\"a\":1}", &sig, secret),
            SignatureError::Mismatch
        );
        assert_eq!(
            bad("1700000000", b"{\"a\":1}", &sig, b"another secret"),
            SignatureError::Mismatch
        );
        assert_eq!(
            bad("1700000000", b"{\"a\":1}", "deadbeef", secret),
            SignatureError::Malformed
        );
        assert_eq!(
            bad("soon", b"{\"a\":1}", &sig, secret),
            SignatureError::BadTimestamp
        );
        assert_eq!(
            verify(secret, "1700000000", b"{\"a\":1}", &sig, 1_700_000_400, 300).unwrap_err(),
            SignatureError::Stale
        );
    }

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // The operator guide's example, computed with
        // `printf '%s' '1700000000.{"event":"node.down"}' | openssl dgst -sha256 -hmac 'whsec-example-0123456789abcdef'`.
        let sig = sign(
            b"whsec-example-0123456789abcdef",
            "1700000000",
            br#"{"event":"node.down"}"#,
        );
        assert_eq!(sig, format!("v1={}", OPENSSL_EXAMPLE));
    }

    const OPENSSL_EXAMPLE: &str =
        "ad678df2cedaca278b12ea17dc52b20a2186f2eed305ed42cc12e9d63fbc992c";
}
