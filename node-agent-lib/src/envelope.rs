//! The JWE envelope around every node call (josekit, `dir` + `A256GCM`).
//!
//! A request is two parts sealed with the node's 256-bit key:
//! - a small **header token** in `Authorization: JWE <token>`, a compact JWE
//!   with an empty payload whose protected header (authenticated by GCM)
//!   binds the call: `htm` (HTTP method), `htu` (API path, e.g. `/start`),
//!   `iat` (a NumericDate with millisecond precision), `exp` (at most
//!   [`MAX_LIFETIME`] after `iat`), `jti` (128 random bits), and the body's
//!   exact length `bln` and SHA-256 digest `bsh` (base64url);
//! - the **body**, the payload sealed as its own compact JWE (empty when the
//!   payload is: `/status`, `/stop`), sent with `Content-Length: bln`.
//!
//! The agent opens the header token before it reads any body byte, so a
//! peer without the key costs it one small decryption and no memory; the
//! body is then read up to `bln` bytes, its digest checked as it streams in
//! ([`BodyCheck`]), and decrypted only when it is the announced one.
//! The agent accepts a request once: its replay cache remembers every `jti`
//! until its `exp` (plus [`CLOCK_SKEW`]) has passed, and the agent refuses
//! requests issued before it started (the cache does not survive a restart).
//!
//! The answer is a compact JWE under the same key whose header carries
//! `rid` (the request's `jti`) and `status` (the HTTP status), so nobody on
//! the path can forge an answer or replay an old one.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwe::{self, Dir, JweHeader};
use openssl::symm::{Cipher, Crypter, Mode};
use rand::RngCore as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

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
/// The scheme of the `Authorization` header that carries every request's
/// sealed header token.
pub const AUTH_SCHEME: &str = "JWE";
/// The longest header token accepted (a real one is ~400 bytes): nothing
/// longer is base64-decoded or decrypted.
pub const MAX_TOKEN_LEN: usize = 2048;

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
    /// A well-formed answer that does not decrypt under our key: the node
    /// holds another key (or the answer was altered on the way).
    #[error("cannot decrypt the answer: node key mismatch (or altered on the way)")]
    Decrypt,
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
    #[error("issued before this agent started")]
    BeforeStart,
}

/// A sealed request: the token for `Authorization: JWE <token>`, the sealed
/// body to send with exactly its length (empty when the payload is), and
/// the `jti` its answer must carry back as `rid`.
#[derive(Clone)]
pub struct SealedRequest {
    pub token: String,
    pub body: Vec<u8>,
    pub jti: String,
}

impl fmt::Debug for SealedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRequest")
            .field("jti", &self.jti)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A request whose header token was accepted: what it says about the call
/// and about the body that must follow.
#[derive(Clone, Debug)]
pub struct OpenedRequest {
    pub jti: String,
    /// When the manager sealed it, in Unix milliseconds.
    pub iat_ms: u64,
    /// Unix seconds after which the request is no longer valid.
    pub exp: u64,
    /// The exact length of the sealed body (0: no body).
    pub body_len: u64,
    /// The SHA-256 digest of the sealed body.
    pub body_sha256: [u8; 32],
}

/// Unix milliseconds (`u64` holds them for 584 million years).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

/// The compact JWE `josekit::jwe::serialize_compact` makes for `dir` +
/// `A256GCM` (the same header JSON, an empty key, a random 96-bit IV,
/// the header's base64url as AAD), made without its whole copy of the
/// ciphertext: the payload is encrypted a chunk at a time, each chunk
/// base64url-encoded straight into the token, so sealing a usage page of
/// 100,000 users costs the token, not the token and the ciphertext.
fn seal(key: &NodeKey, header: &JweHeader, payload: &[u8]) -> Result<String, EnvelopeError> {
    /// A multiple of 3: the chunks' base64url joins without padding.
    const CHUNK: usize = 48 * 1024;
    let failed = |e: &dyn fmt::Display| EnvelopeError::Seal(e.to_string());
    let header_json = serde_json::to_vec(header.claims_set()).map_err(|e| failed(&e))?;
    let header_b64 = URL_SAFE_NO_PAD.encode(header_json);
    let mut iv = [0u8; 12];
    rand::rng().fill_bytes(&mut iv);
    let mut crypter = Crypter::new(Cipher::aes_256_gcm(), Mode::Encrypt, key.bytes(), Some(&iv))
        .map_err(|e| failed(&e))?;
    crypter
        .aad_update(header_b64.as_bytes())
        .map_err(|e| failed(&e))?;
    let b64_len = |n: usize| (n * 4).div_ceil(3);
    let mut token = String::with_capacity(
        header_b64.len() + 4 + b64_len(iv.len()) + b64_len(payload.len()) + 22,
    );
    token.push_str(&header_b64);
    token.push_str("..");
    URL_SAFE_NO_PAD.encode_string(iv, &mut token);
    token.push('.');
    let mut out = vec![0u8; CHUNK + Cipher::aes_256_gcm().block_size()];
    for chunk in payload.chunks(CHUNK) {
        let n = crypter.update(chunk, &mut out).map_err(|e| failed(&e))?;
        // GCM is a stream mode: what goes in comes out, byte for byte.
        if n != chunk.len() {
            return Err(EnvelopeError::Seal("AES-GCM held back bytes".into()));
        }
        URL_SAFE_NO_PAD.encode_string(&out[..n], &mut token);
    }
    if crypter.finalize(&mut out).map_err(|e| failed(&e))? != 0 {
        return Err(EnvelopeError::Seal("AES-GCM gave bytes at the end".into()));
    }
    let mut tag = [0u8; 16];
    crypter.get_tag(&mut tag).map_err(|e| failed(&e))?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    Ok(token)
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
///
/// The payload (when there is one) is sealed on its own as the HTTP body;
/// the token for the `Authorization` header binds its length and SHA-256
/// digest, so the agent authenticates the call from the header alone and
/// reads no body byte from a peer without the key.
pub fn seal_request(
    key: &NodeKey,
    method: &str,
    path: &str,
    payload: &[u8],
    now: SystemTime,
) -> Result<SealedRequest, EnvelopeError> {
    let body = if payload.is_empty() {
        Vec::new()
    } else {
        seal(key, &base_header(), payload)?.into_bytes()
    };
    let iat_ms = unix_millis(now);
    let jti = new_jti();
    let mut header = base_header();
    set(&mut header, "htm", Value::from(method))?;
    set(&mut header, "htu", Value::from(path))?;
    set(&mut header, "iat", numeric_date(iat_ms))?;
    set(
        &mut header,
        "exp",
        Value::from(iat_ms / 1000 + MAX_LIFETIME.as_secs()),
    )?;
    set(&mut header, "jti", Value::from(jti.clone()))?;
    set(&mut header, "bln", Value::from(body.len() as u64))?;
    set(
        &mut header,
        "bsh",
        Value::from(URL_SAFE_NO_PAD.encode(Sha256::digest(&body))),
    )?;
    let token = seal(key, &header, b"")?;
    Ok(SealedRequest { token, body, jti })
}

/// `iat` as a JWT NumericDate with millisecond precision (RFC 7519 allows
/// non-integer values): the agent refuses requests issued before it
/// started, which whole seconds would blur.
fn numeric_date(ms: u64) -> Value {
    if ms % 1000 == 0 {
        Value::from(ms / 1000)
    } else {
        serde_json::Number::from_f64(ms as f64 / 1000.0)
            .map_or(Value::from(ms / 1000), Value::Number)
    }
}

/// A NumericDate (integer or fractional seconds) as milliseconds.
fn numeric_date_ms(value: &Value) -> Option<u64> {
    if let Some(secs) = value.as_u64() {
        return secs.checked_mul(1000);
    }
    let secs = value.as_f64()?;
    (0.0..1e15)
        .contains(&secs)
        .then(|| (secs * 1000.0).round() as u64)
}

/// Opens the header token of a request for `method path`, checking
/// everything but replay (the agent's replay cache) and the body (see
/// [`BodyCheck`]). The algorithms are checked before decrypting; the claims
/// are trusted only once GCM has authenticated them. Costs one decryption of
/// a token of a few hundred bytes, whatever body follows.
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
    if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 5 {
        return Err(Rejection::Malformed);
    }
    let header = peek_header(token).ok_or(Rejection::Malformed)?;
    if !algorithms_accepted(&header) {
        return Err(Rejection::Algorithm);
    }
    decrypt(key, token).map_err(|_| Rejection::Decrypt)?;

    // Authenticated from here on.
    let claim_str = |name| header.get(name).and_then(Value::as_str);
    let claim_u64 = |name| header.get(name).and_then(Value::as_u64);
    let (Some(htm), Some(htu), Some(iat_ms), Some(exp), Some(jti), Some(body_len), Some(digest)) = (
        claim_str("htm"),
        claim_str("htu"),
        header.get("iat").and_then(numeric_date_ms),
        claim_u64("exp"),
        claim_str("jti"),
        claim_u64("bln"),
        claim_str("bsh").and_then(|d| URL_SAFE_NO_PAD.decode(d).ok()),
    ) else {
        return Err(Rejection::Claims);
    };
    let Ok(body_sha256) = <[u8; 32]>::try_from(digest) else {
        return Err(Rejection::Claims);
    };
    if jti.len() < 16 || jti.len() > 64 {
        return Err(Rejection::Claims);
    }
    let Some(exp_ms) = exp.checked_mul(1000) else {
        return Err(Rejection::Claims);
    };
    if exp_ms < iat_ms || exp_ms - iat_ms > MAX_LIFETIME.as_millis() as u64 {
        return Err(Rejection::Lifetime);
    }
    let now_ms = unix_millis(now);
    let skew = CLOCK_SKEW.as_millis() as u64;
    if iat_ms > now_ms + skew {
        return Err(Rejection::NotYetValid);
    }
    if now_ms > exp_ms + skew {
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
        iat_ms,
        exp,
        body_len,
        body_sha256,
    })
}

/// Checks a request's body against the length and digest its authenticated
/// header announced, as the body streams in, then opens it.
#[derive(Debug)]
pub struct BodyCheck<'a> {
    request: &'a OpenedRequest,
    digest: Sha256,
    received: u64,
}

impl<'a> BodyCheck<'a> {
    pub fn new(request: &'a OpenedRequest) -> Self {
        Self {
            request,
            digest: Sha256::new(),
            received: 0,
        }
    }

    /// Takes the next piece of the body; refuses a byte past the announced
    /// length before anything is kept.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), BodyError> {
        self.received = self.received.saturating_add(chunk.len() as u64);
        if self.received > self.request.body_len {
            return Err(BodyError::Length);
        }
        self.digest.update(chunk);
        Ok(())
    }

    /// The body is complete: its length and digest must be the announced
    /// ones; only then is it decrypted. Gives the payload (empty for an
    /// empty body).
    pub fn open(self, key: &NodeKey, body: &[u8]) -> Result<Vec<u8>, BodyError> {
        if self.received != self.request.body_len || body.len() as u64 != self.received {
            return Err(BodyError::Length);
        }
        if self.digest.finalize().as_slice() != self.request.body_sha256 {
            return Err(BodyError::Digest);
        }
        if body.is_empty() {
            return Ok(Vec::new());
        }
        let token = std::str::from_utf8(body).map_err(|_| BodyError::Decrypt)?;
        let header = peek_header(token).ok_or(BodyError::Decrypt)?;
        if !algorithms_accepted(&header) {
            return Err(BodyError::Decrypt);
        }
        decrypt(key, token).map_err(|_| BodyError::Decrypt)
    }
}

/// Why an authenticated request's body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("body length differs from the sealed header's")]
    Length,
    #[error("body digest differs from the sealed header's")]
    Digest,
    #[error("body is not a JWE sealed with the node key")]
    Decrypt,
    #[error("body too large")]
    TooLarge,
    #[error("body not received in time")]
    Timeout,
    #[error("body could not be read")]
    Read,
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
    well_formed(token).map_err(EnvelopeError::Open)?;
    // Well formed, our algorithms: a failure now is GCM's tag, so the
    // answer was sealed under another key (or altered on the way).
    let payload = decrypt(key, token).map_err(|_| EnvelopeError::Decrypt)?;
    if header.get("rid").and_then(Value::as_str) != Some(rid) {
        return Err(EnvelopeError::Mismatch("rid"));
    }
    if header.get("status").and_then(Value::as_u64) != Some(u64::from(status)) {
        return Err(EnvelopeError::Mismatch("status"));
    }
    Ok(payload)
}
