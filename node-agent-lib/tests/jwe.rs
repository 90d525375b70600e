//! The JWE envelope through the router: every forged, stale or misdirected
//! request is a bare 401 and reaches neither the service nor the core (the
//! mocks have no expectations, so any call would panic).

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use josekit::jwe::{self, A256KW, Dir, JweHeader};
use node_agent_lib::core::MockCoreApi;
use node_agent_lib::envelope::{self, NodeKey};
use node_agent_lib::service::{MockServiceControl, ServiceStatus};
use serde_json::{Value, json};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token built by hand: any header claims, `dir` encryption under `key`
/// unless the header says otherwise.
fn forge(key: &[u8], header: Value, payload: &[u8]) -> String {
    let mut h = JweHeader::new();
    for (name, value) in header.as_object().unwrap() {
        h.set_claim(name, Some(value.clone())).unwrap();
    }
    match h.algorithm() {
        Some("A256KW") => {
            jwe::serialize_compact(payload, &h, &A256KW.encrypter_from_bytes(key).unwrap()).unwrap()
        }
        _ => jwe::serialize_compact(payload, &h, &Dir.encrypter_from_bytes(key).unwrap()).unwrap(),
    }
}

/// Claims for a request without a body (`bln` 0, `bsh` the digest of nothing).
fn claims(method: &str, path: &str, iat: u64, exp: u64) -> Value {
    json!({"alg": "dir", "enc": "A256GCM", "htm": method, "htu": path, "iat": iat, "exp": exp,
           "jti": "AAAAAAAAAAAAAAAAAAAAAA", "bln": 0,
           "bsh": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"})
}

fn key_bytes(key: &NodeKey) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(key.expose_base64url()).unwrap()
}

async fn assert_unauthorized(node: &TestNode, method: &str, path: &str, token: &str) {
    let (status, body) = send(&node.router, request_with_token(method, path, token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"error": "unauthorized"}),
        "no detail for the caller"
    );
}

#[tokio::test]
async fn a_good_request_gets_a_sealed_answer_bound_to_it() {
    let mut service = MockServiceControl::new();
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Stopped));
    let node = node(Arc::new(service), Arc::new(MockCoreApi::new()));
    let answer = call(&node, "GET", "/status", &Value::Null).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json.unwrap()["nodeStatus"], "Stopped");
}

#[tokio::test]
async fn an_answer_does_not_open_for_another_request() {
    let mut service = MockServiceControl::new();
    service
        .expect_status()
        .returning(|| Ok(ServiceStatus::Stopped));
    let node = node(Arc::new(service), Arc::new(MockCoreApi::new()));
    let (request, _jti) = sealed(&node.key, "GET", "/status", b"");
    let (status, body) = send(&node.router, request).await;
    let body = std::str::from_utf8(&body).unwrap();
    assert!(envelope::open_response(&node.key, body, "another-jti-0000", status.as_u16()).is_err());
    assert!(envelope::open_response(&NodeKey::random(), body, "x", status.as_u16()).is_err());
}

#[tokio::test]
async fn no_token_is_unauthorized() {
    let node = untouchable();
    assert_unauthorized(&node, "POST", "/start", "").await;
    let request = axum::http::Request::get("/status")
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, _) = send(&node.router, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn garbage_token_is_unauthorized() {
    let node = untouchable();
    assert_unauthorized(&node, "POST", "/start", "not.a.jwe.at.all").await;
    assert_unauthorized(&node, "GET", "/status", "{\"users\":[]}").await;
}

#[tokio::test]
async fn another_nodes_key_is_unauthorized() {
    let node = untouchable();
    let other = NodeKey::random();
    let s = seal_now(&other, "POST", "/start", b"{\"users\":[]}");
    assert_unauthorized(&node, "POST", "/start", &s.token).await;
}

#[tokio::test]
async fn a_wrong_key_of_another_length_is_unauthorized() {
    let node = untouchable();
    let n = now_secs();
    let mut header = claims("POST", "/stop", n, n + 30);
    header["enc"] = json!("A128GCM");
    let token = forge(&[7u8; 16], header, b"");
    assert_unauthorized(&node, "POST", "/stop", &token).await;
}

#[tokio::test]
async fn tampered_tag_is_unauthorized() {
    let node = untouchable();
    let s = seal_now(&node.key, "POST", "/start", b"{\"users\":[]}");
    // The header token's payload is empty: its tag is what GCM checks.
    let mut parts: Vec<String> = s.token.split('.').map(str::to_owned).collect();
    let mut tag = URL_SAFE_NO_PAD.decode(&parts[4]).unwrap();
    tag[0] ^= 1;
    parts[4] = URL_SAFE_NO_PAD.encode(tag);
    assert_unauthorized(&node, "POST", "/start", &parts.join(".")).await;
}

#[tokio::test]
async fn tampered_header_is_unauthorized() {
    let node = untouchable();
    // Sealed for /stop; the attacker rewrites htu to /start in the header.
    let s = seal_now(&node.key, "POST", "/stop", b"");
    let mut parts: Vec<String> = s.token.split('.').map(str::to_owned).collect();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[0]).unwrap()).unwrap();
    header["htu"] = json!("/start");
    parts[0] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    assert_unauthorized(&node, "POST", "/start", &parts.join(".")).await;
}

#[tokio::test]
async fn expired_request_is_unauthorized() {
    let node = untouchable();
    let old = SystemTime::now() - Duration::from_secs(200);
    let s = envelope::seal_request(&node.key, "POST", "/stop", b"", old).unwrap();
    assert_unauthorized(&node, "POST", "/stop", &s.token).await;
}

#[tokio::test]
async fn request_from_the_future_is_unauthorized() {
    let node = untouchable();
    let later = SystemTime::now() + Duration::from_secs(200);
    let s = envelope::seal_request(&node.key, "POST", "/stop", b"", later).unwrap();
    assert_unauthorized(&node, "POST", "/stop", &s.token).await;
}

#[tokio::test]
async fn request_valid_for_too_long_is_unauthorized() {
    let node = untouchable();
    let n = now_secs();
    let token = forge(
        &key_bytes(&node.key),
        claims("POST", "/stop", n, n + 3600),
        b"",
    );
    assert_unauthorized(&node, "POST", "/stop", &token).await;
}

#[tokio::test]
async fn request_without_jti_is_unauthorized() {
    let node = untouchable();
    let n = now_secs();
    let mut header = claims("POST", "/stop", n, n + 30);
    header.as_object_mut().unwrap().remove("jti");
    let token = forge(&key_bytes(&node.key), header, b"");
    assert_unauthorized(&node, "POST", "/stop", &token).await;
}

#[tokio::test]
async fn replayed_request_is_unauthorized() {
    let node = answering_one_status();
    let s = seal_now(&node.key, "GET", "/status", b"");
    let (first, _) = send(&node.router, request_with_token("GET", "/status", &s.token)).await;
    assert_eq!(first, StatusCode::OK);
    assert_unauthorized(&node, "GET", "/status", &s.token).await;
}

#[tokio::test]
async fn request_for_another_path_is_unauthorized() {
    let node = untouchable();
    let s = seal_now(&node.key, "POST", "/stop", b"{\"users\":[]}");
    assert_unauthorized(&node, "POST", "/start", &s.token).await;
    assert_unauthorized(&node, "POST", "/users/edit", &s.token).await;
}

#[tokio::test]
async fn request_for_another_method_is_unauthorized() {
    let node = untouchable();
    // Sealed for POST /status, sent as GET /status.
    let s = seal_now(&node.key, "POST", "/status", b"");
    assert_unauthorized(&node, "GET", "/status", &s.token).await;
}

#[tokio::test]
async fn alg_none_is_unauthorized() {
    let node = untouchable();
    let s = seal_now(&node.key, "POST", "/stop", b"");
    let mut parts: Vec<String> = s.token.split('.').map(str::to_owned).collect();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[0]).unwrap()).unwrap();
    header["alg"] = json!("none");
    parts[0] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    assert_unauthorized(&node, "POST", "/stop", &parts.join(".")).await;
    // And an unencrypted "token" with alg none and the payload in clear.
    let n = now_secs();
    let mut header = claims("POST", "/stop", n, n + 30);
    header["alg"] = json!("none");
    let clear = format!(
        "{}..{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode([0u8; 12]),
        URL_SAFE_NO_PAD.encode(b"{}")
    );
    assert_unauthorized(&node, "POST", "/stop", &clear).await;
}

#[tokio::test]
async fn other_algorithms_under_the_right_key_are_unauthorized() {
    let node = untouchable();
    let key = key_bytes(&node.key);
    let n = now_secs();
    // Key wrapping with the node key: decryptable in principle, but not `dir`.
    let mut header = claims("POST", "/stop", n, n + 30);
    header["alg"] = json!("A256KW");
    assert_unauthorized(&node, "POST", "/stop", &forge(&key, header, b"")).await;
    // `dir` with another content encryption (a 256-bit key fits A128CBC-HS128).
    let mut header = claims("POST", "/stop", n, n + 30);
    header["enc"] = json!("A128CBC-HS256");
    assert_unauthorized(&node, "POST", "/stop", &forge(&key, header, b"")).await;
    // Compression is refused too.
    let mut header = claims("POST", "/stop", n, n + 30);
    header["zip"] = json!("DEF");
    assert_unauthorized(&node, "POST", "/stop", &forge(&key, header, b"")).await;
}

/// Found by `jwe_mutations`: an empty IV made OpenSSL panic inside josekit.
#[tokio::test]
async fn an_empty_or_short_iv_or_tag_is_unauthorized() {
    let node = untouchable();
    let s = seal_now(&node.key, "POST", "/stop", b"");
    let parts: Vec<&str> = s.token.split('.').collect();
    for (segment, value) in [(2, ""), (2, "AAAA"), (4, ""), (4, "AAAA"), (1, "AAAA")] {
        let mut forged: Vec<&str> = parts.clone();
        forged[segment] = value;
        assert_unauthorized(&node, "POST", "/stop", &forged.join(".")).await;
    }
}

/// Compact JWE has no base64 padding, no whitespace inside: a `=` or a space
/// at the end of any segment is not the same token.
#[tokio::test]
async fn padding_or_spaces_inside_the_token_are_unauthorized() {
    for segment in 0..5 {
        for extra in ["=", "==", " ", "\t"] {
            let node = untouchable();
            let s = seal_now(&node.key, "POST", "/stop", b"");
            let mut parts: Vec<String> = s.token.split('.').map(str::to_owned).collect();
            if segment == 4 && extra.trim().is_empty() {
                continue; // trailing whitespace around the token is trimmed
            }
            parts[segment].push_str(extra);
            assert_unauthorized(&node, "POST", "/stop", &parts.join(".")).await;
        }
    }
}

/// Answers are sealed a chunk at a time (48 KiB): whatever their size, the
/// token is the compact JWE josekit opens, with the very payload.
#[test]
fn answers_of_any_size_open_with_josekit_to_the_same_payload() {
    let key = NodeKey::random();
    for len in [0, 1, 2, 3, 48 * 1024 - 1, 48 * 1024, 48 * 1024 + 1, 300_001] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let token = envelope::seal_response(&key, "rid-1", 200, &payload).unwrap();
        assert_eq!(
            envelope::open_response(&key, &token, "rid-1", 200).unwrap(),
            payload,
            "{len} bytes"
        );
        let decrypter = Dir.decrypter_from_bytes(key_bytes(&key)).unwrap();
        let (opened, header) = jwe::deserialize_compact(&token, &decrypter).unwrap();
        assert_eq!(opened, payload, "{len} bytes, by josekit");
        assert_eq!(header.claim("rid"), Some(&json!("rid-1")));
    }
}
