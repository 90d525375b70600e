//! The JWE envelope around every node call (josekit, `dir` + `A256GCM`).
//!
//! A request is a compact JWE sealed with the node's 256-bit key. Its
//! protected header (authenticated by GCM) binds it to the call and to a
//! moment: `htm` (HTTP method), `htu` (API path, e.g. `/start`), `iat`,
//! `exp` (at most [`MAX_LIFETIME`] after `iat`) and `jti` (128 random bits).
//! The agent accepts a request once: [`ReplayCache`] remembers every `jti`
//! until its `exp` (plus [`CLOCK_SKEW`]) has passed.
//!
//! The answer is a compact JWE under the same key whose header carries
//! `rid` (the request's `jti`) and `status` (the HTTP status), so nobody on
//! the path can forge an answer or replay an old one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwe::{self, Dir, JweHeader};
use rand::RngCore as _;
use serde_json::Value;

/// The longest a sealed request stays valid (`exp - iat`).
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// How far the manager's and the node's clocks may disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);
/// The only key management algorithm accepted.
pub const ALG: &str = "dir";
/// The only content encryption accepted.
pub const ENC: &str = "A256GCM";
/// The media type of a sealed body.
pub const CONTENT_TYPE: &str = "application/jose";
/// The scheme of the `Authorization` header that carries a sealed GET.
pub const AUTH_SCHEME: &str = "JWE";

/// The JWE key shared by the manager and one node: 32 bytes, written as
/// base64url without padding. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeKey([u8; 32]);

impl NodeKey {
    pub const BYTES: usize = 32;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key as the operator copies it (base64url, no padding).
    pub fn expose_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for NodeKey {
    type Err = InvalidKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| InvalidKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| InvalidKey)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeKey(<redacted>)")
    }
}

/// A node key that is not 32 bytes of base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a node key must be 32 bytes written as base64url without padding")]
pub struct InvalidKey;

/// Why sealing or opening an envelope failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// josekit refused to seal (should not happen with a valid key).
    #[error("cannot seal: {0}")]
    Seal(String),
    /// Not a JWE under our key with our algorithms, or tampered.
    #[error("cannot open: {0}")]
    Open(String),
    /// A valid JWE that is not the answer to our request.
    #[error("answer does not match the request: {0}")]
    Mismatch(&'static str),
}

/// Why the agent refused a request. Shown only in the agent's log: the caller
/// always gets a bare `401 {"error":"unauthorized"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    #[error("no token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not accepted")]
    Algorithm,
    #[error("bad or missing claims")]
    Claims,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("lifetime longer than allowed")]
    Lifetime,
    #[error("method mismatch")]
    Method,
    #[error("path mismatch")]
    Path,
    #[error("decryption failed (wrong key or tampered)")]
    Decrypt,
    #[error("replayed")]
    Replayed,
    #[error("replay cache full")]
    ReplayCacheFull,
}

/// A sealed request and the `jti` its answer must carry back as `rid`.
#[derive(Clone)]
pub struct SealedRequest {
    pub token: String,
    pub jti: String,
}

impl fmt::Debug for SealedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRequest")
            .field("jti", &self.jti)
            .finish_non_exhaustive()
    }
}

/// A request whose envelope was accepted.
#[derive(Clone)]
pub struct OpenedRequest {
    pub jti: String,
    /// Unix seconds after which the request is no longer valid.
    pub exp: u64,
    pub payload: Vec<u8>,
}

impl fmt::Debug for OpenedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedRequest")
            .field("jti", &self.jti)
            .field("exp", &self.exp)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn base_header() -> JweHeader {
    let mut header = JweHeader::new();
    header.set_algorithm(ALG);
    header.set_content_encryption(ENC);
    header
}

fn set(header: &mut JweHeader, key: &str, value: Value) -> Result<(), EnvelopeError> {
    header
        .set_claim(key, Some(value))
        .map_err(|e| EnvelopeError::Seal(e.to_string()))
}

fn seal(key: &NodeKey, header: &JweHeader, payload: &[u8]) -> Result<String, EnvelopeError> {
    let encrypter = Dir
        .encrypter_from_bytes(key.bytes())
        .map_err(|e| EnvelopeError::Seal(e.to_string()))?;
    jwe::serialize_compact(payload, header, &encrypter)
        .map_err(|e| EnvelopeError::Seal(e.to_string()))
}

/// Reads the protected header of a compact JWE without decrypting it, so
/// the algorithms can be checked before any key is used.
fn peek_header(token: &str) -> Option<serde_json::Map<String, Value>> {
    let (header_b64, _) = token.split_once('.')?;
    let bytes = URL_SAFE_NO_PAD.decode(header_b64).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Only `dir` + `A256GCM`, no compression and no critical extensions.
fn algorithms_accepted(header: &serde_json::Map<String, Value>) -> bool {
    header.get("alg").and_then(Value::as_str) == Some(ALG)
        && header.get("enc").and_then(Value::as_str) == Some(ENC)
        && !header.contains_key("zip")
        && !header.contains_key("crit")
}

/// The compact form `dir` + `A256GCM` must have: five base64url segments,
/// an empty encrypted key, a 96-bit IV and a 128-bit tag. Checked before
/// josekit sees the token: OpenSSL panics on an empty IV ("an IV is required
/// for this cipher"), which a forged token could otherwise trigger.
fn well_formed(token: &str) -> Result<(), String> {
    let segments: Vec<&str> = token.split('.').collect();
    let [_, encrypted_key, iv, _, tag] = segments.as_slice() else {
        return Err("not five segments".into());
    };
    let decoded_len = |segment: &str| {
        URL_SAFE_NO_PAD
            .decode(segment)
            .map(|b| b.len())
            .map_err(|_| "a segment is not base64url".to_owned())
    };
    if !encrypted_key.is_empty() {
        return Err("an encrypted key with `dir`".into());
    }
    if decoded_len(iv)? != 12 || decoded_len(tag)? != 16 {
        return Err("wrong IV or tag length for A256GCM".into());
    }
    Ok(())
}

fn decrypt(key: &NodeKey, token: &str) -> Result<Vec<u8>, String> {
    well_formed(token)?;
    let decrypter = Dir
        .decrypter_from_bytes(key.bytes())
        .map_err(|e| e.to_string())?;
    jwe::deserialize_compact(token, &decrypter)
        .map(|(payload, _)| payload)
        .map_err(|e| e.to_string())
}

/// Seals a request for `method path` at `now`, valid for [`MAX_LIFETIME`].
pub fn seal_request(
    key: &NodeKey,
    method: &str,
    path: &str,
    payload: &[u8],
    now: SystemTime,
) -> Result<SealedRequest, EnvelopeError> {
    let iat = unix_secs(now);
    let jti = new_jti();
    let mut header = base_header();
    set(&mut header, "htm", Value::from(method))?;
    set(&mut header, "htu", Value::from(path))?;
    set(&mut header, "iat", Value::from(iat))?;
    set(
        &mut header,
        "exp",
        Value::from(iat + MAX_LIFETIME.as_secs()),
    )?;
    set(&mut header, "jti", Value::from(jti.clone()))?;
    let token = seal(key, &header, payload)?;
    Ok(SealedRequest { token, jti })
}

/// Opens a request sealed for `method path`, checking everything but replay
/// (see [`ReplayCache`]). The algorithms are checked before decrypting; the
/// claims are trusted only once GCM has authenticated them.
pub fn open_request(
    key: &NodeKey,
    token: &str,
    method: &str,
    path: &str,
    now: SystemTime,
) -> Result<OpenedRequest, Rejection> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::Missing);
    }
    if token.split('.').count() != 5 {
        return Err(Rejection::Malformed);
    }
    let header = peek_header(token).ok_or(Rejection::Malformed)?;
    if !algorithms_accepted(&header) {
        return Err(Rejection::Algorithm);
    }
    let payload = decrypt(key, token).map_err(|_| Rejection::Decrypt)?;

    // Authenticated from here on.
    let claim_str = |name| header.get(name).and_then(Value::as_str);
    let claim_u64 = |name| header.get(name).and_then(Value::as_u64);
    let (Some(htm), Some(htu), Some(iat), Some(exp), Some(jti)) = (
        claim_str("htm"),
        claim_str("htu"),
        claim_u64("iat"),
        claim_u64("exp"),
        claim_str("jti"),
    ) else {
        return Err(Rejection::Claims);
    };
    if jti.len() < 16 || jti.len() > 64 {
        return Err(Rejection::Claims);
    }
    if exp < iat || exp - iat > MAX_LIFETIME.as_secs() {
        return Err(Rejection::Lifetime);
    }
    let now = unix_secs(now);
    let skew = CLOCK_SKEW.as_secs();
    if iat > now + skew {
        return Err(Rejection::NotYetValid);
    }
    if now > exp + skew {
        return Err(Rejection::Expired);
    }
    if !htm.eq_ignore_ascii_case(method) {
        return Err(Rejection::Method);
    }
    if htu != path {
        return Err(Rejection::Path);
    }
    Ok(OpenedRequest {
        jti: jti.to_owned(),
        exp,
        payload,
    })
}

/// Seals the answer to the request `rid` with HTTP `status`.
pub fn seal_response(
    key: &NodeKey,
    rid: &str,
    status: u16,
    payload: &[u8],
) -> Result<String, EnvelopeError> {
    let mut header = base_header();
    set(&mut header, "rid", Value::from(rid))?;
    set(&mut header, "status", Value::from(status))?;
    seal(key, &header, payload)
}

/// Opens the answer to the request `rid`, received with HTTP `status`: it
/// must be sealed with `key` and carry the same `rid` and `status`.
pub fn open_response(
    key: &NodeKey,
    token: &str,
    rid: &str,
    status: u16,
) -> Result<Vec<u8>, EnvelopeError> {
    let token = token.trim();
    let header = peek_header(token).ok_or(EnvelopeError::Open("not a compact JWE".into()))?;
    if !algorithms_accepted(&header) {
        return Err(EnvelopeError::Open("algorithm not accepted".into()));
    }
    let payload = decrypt(key, token).map_err(EnvelopeError::Open)?;
    if header.get("rid").and_then(Value::as_str) != Some(rid) {
        return Err(EnvelopeError::Mismatch("rid"));
    }
    if header.get("status").and_then(Value::as_u64) != Some(u64::from(status)) {
        return Err(EnvelopeError::Mismatch("status"));
    }
    Ok(payload)
}

/// Remembers accepted `jti`s until they expire, so each request is accepted
/// once. Bounded: when full of unexpired entries it refuses new requests
/// (fails closed) rather than forgetting one that could then be replayed.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashSet<Arc<str>>,
    by_expiry: BinaryHeap<Reverse<(u64, Arc<str>)>>,
}

impl ReplayCache {
    /// Enough for ~1,100 requests a second sustained over a request's whole
    /// validity window (`MAX_LIFETIME + 2 * CLOCK_SKEW`), in about 10 MB.
    pub const DEFAULT_CAPACITY: usize = 131_072;

    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Records `jti` (valid until `exp`), or refuses it if it was seen.
    pub fn check_and_insert(&self, jti: &str, exp: u64, now: SystemTime) -> Result<(), Rejection> {
        let now = unix_secs(now);
        let forget_after = exp + CLOCK_SKEW.as_secs();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(Reverse((expiry, _))) = inner.by_expiry.peek() {
            if *expiry >= now {
                break;
            }
            if let Some(Reverse((_, old))) = inner.by_expiry.pop() {
                inner.seen.remove(&old);
            }
        }
        if inner.seen.contains(jti) {
            return Err(Rejection::Replayed);
        }
        if inner.seen.len() >= self.capacity {
            return Err(Rejection::ReplayCacheFull);
        }
        let jti: Arc<str> = Arc::from(jti);
        inner.seen.insert(jti.clone());
        inner.by_expiry.push(Reverse((forget_after, jti)));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}
