//! How clients dial each managed inbound ([`InboundDescription`]), read from
//! the base config once, when it is parsed: the port, the transport
//! (`streamSettings.network` and its settings) and the security layer, in
//! the spellings of Xray and V2Ray 4.34 alike. What cannot be described
//! exactly is left out with a warning rather than described wrongly: a
//! client given a wrong port or key fails where nobody sees it.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use openssl::pkey::{Id, PKey};
use serde_json::Value;

use super::ManagedInbound;
use crate::wire::{InboundDescription, Network, Security};

/// Describes `inbound` (its object in the base config), managed as
/// `managed`. The error says why it cannot be described, for the warning;
/// it never quotes a private key.
pub(super) fn describe(
    inbound: &Value,
    managed: &ManagedInbound,
) -> Result<InboundDescription, String> {
    let port = port(inbound.get("port"))?;
    let stream = inbound.get("streamSettings").unwrap_or(&Value::Null);
    let mut description = InboundDescription::new(managed.tag.clone(), managed.protocol, port);
    // Only the operator can vouch that clients should skip verification:
    // `allow_insecure` stays false.
    description.flow.clone_from(&managed.flow);
    description.method.clone_from(&managed.method);
    transport(stream, &mut description)?;
    security(stream, &mut description)?;
    Ok(description)
}

/// A number, a numeric string, or a range or list (`"1000-2000"`,
/// `"443,8443"`) whose first port clients may dial.
fn port(value: Option<&Value>) -> Result<u16, String> {
    let port = match value {
        Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(Value::String(s)) => s
            .split([',', '-'])
            .next()
            .and_then(|first| first.trim().parse().ok()),
        _ => None,
    };
    match (port, value) {
        (Some(port), _) if port != 0 => Ok(port),
        (_, Some(value)) => Err(format!(
            "port {value} is not a port number or range the agent can read"
        )),
        (_, None) => Err("it has no port".into()),
    }
}

/// The value under the first of `keys` that `object` has (not null): the
/// newer spelling comes first, as the cores prefer it.
fn first_of<'a>(object: &'a Value, keys: &[&str]) -> &'a Value {
    keys.iter()
        .map(|key| object.get(key).unwrap_or(&Value::Null))
        .find(|v| !v.is_null())
        .unwrap_or(&Value::Null)
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// A string, or the first string of a list (the cores' `StringList`).
fn first_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .find_map(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    }
}

/// Every string of a list, or of a string with commas (the cores'
/// `StringList` accepts both).
fn texts(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(|s| s.trim().to_owned()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The `Host` of a `headers` object, however its key is cased.
fn host_header(headers: &Value) -> String {
    headers
        .as_object()
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")))
        .map(|(_, v)| first_text(Some(v)))
        .unwrap_or_default()
}

/// A header type, empty for `none` (what clients assume when it is absent).
fn header_type(settings: &Value) -> String {
    let kind = settings
        .pointer("/header/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind.eq_ignore_ascii_case("none") {
        String::new()
    } else {
        kind.to_owned()
    }
}

fn transport(stream: &Value, d: &mut InboundDescription) -> Result<(), String> {
    let network = stream
        .get("network")
        .and_then(Value::as_str)
        .unwrap_or("tcp")
        .to_ascii_lowercase();
    match network.as_str() {
        "tcp" | "raw" => {
            d.network = Network::Tcp;
            let settings = first_of(stream, &["rawSettings", "tcpSettings"]);
            if header_type(settings) == "http" {
                d.header_type = "http".into();
                let request = settings.pointer("/header/request").unwrap_or(&Value::Null);
                d.path = first_text(request.get("path"));
                d.host = host_header(request.get("headers").unwrap_or(&Value::Null));
            }
        }
        "ws" | "websocket" => {
            d.network = Network::Ws;
            http_path_and_host(stream.get("wsSettings").unwrap_or(&Value::Null), d);
        }
        "httpupgrade" => {
            d.network = Network::HttpUpgrade;
            http_path_and_host(stream.get("httpupgradeSettings").unwrap_or(&Value::Null), d);
        }
        "grpc" | "gun" => {
            d.network = Network::Grpc;
            let settings = first_of(stream, &["grpcSettings", "gunSettings"]);
            d.service_name = text(settings, "serviceName");
            let multi = settings.get("multiMode").and_then(Value::as_bool) == Some(true);
            d.mode = if multi { "multi" } else { "gun" }.into();
            d.authority = text(settings, "authority");
        }
        "xhttp" | "splithttp" => {
            d.network = Network::Xhttp;
            let settings = first_of(stream, &["xhttpSettings", "splithttpSettings"]);
            http_path_and_host(settings, d);
            d.mode = text(settings, "mode");
            if d.mode.is_empty() {
                d.mode = "auto".into();
            }
        }
        "kcp" | "mkcp" => {
            d.network = Network::Kcp;
            let settings = stream.get("kcpSettings").unwrap_or(&Value::Null);
            d.header_type = header_type(settings);
            d.seed = text(settings, "seed");
        }
        other => {
            return Err(format!(
                "transport {other:?} is not one clients are told about \
                 (tcp/raw, ws, httpupgrade, grpc, xhttp, kcp)"
            ));
        }
    }
    Ok(())
}

/// ws, httpupgrade, xhttp: `path`, and `host` or else the `Host` header.
fn http_path_and_host(settings: &Value, d: &mut InboundDescription) {
    d.path = text(settings, "path");
    d.host = text(settings, "host");
    if d.host.is_empty() {
        d.host = host_header(settings.get("headers").unwrap_or(&Value::Null));
    }
}

fn security(stream: &Value, d: &mut InboundDescription) -> Result<(), String> {
    let security = stream
        .get("security")
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_ascii_lowercase();
    match security.as_str() {
        "" | "none" => d.security = Security::None,
        "tls" => {
            d.security = Security::Tls;
            let settings = stream.get("tlsSettings").unwrap_or(&Value::Null);
            d.sni = text(settings, "serverName");
            d.alpn = texts(settings.get("alpn"));
            d.fingerprint = text(settings, "fingerprint");
        }
        "reality" => {
            d.security = Security::Reality;
            let settings = stream.get("realitySettings").unwrap_or(&Value::Null);
            d.server_names = texts(settings.get("serverNames"));
            d.sni = d.server_names.first().cloned().unwrap_or_default();
            d.short_ids = match settings.get("shortIds") {
                // Every id is kept, the empty one too: it is a valid id.
                Some(Value::Array(ids)) => ids
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                other => texts(other),
            };
            let private = settings
                .get("privateKey")
                .and_then(Value::as_str)
                .unwrap_or("");
            d.public_key = reality_public_key(private).ok_or(
                "REALITY privateKey is not an X25519 key (32 bytes in base64url, as `xray x25519` prints)",
            )?;
            d.fingerprint = text(settings, "fingerprint");
            d.spider_x = text(settings, "spiderX");
        }
        other => {
            return Err(format!(
                "security {other:?} is not one clients are told about (none, tls, reality)"
            ));
        }
    }
    Ok(())
}

/// Reads base64 as the cores' users write keys: either alphabet, padded or
/// not, trailing bits not checked (Go's decoder does not check them).
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The X25519 public key of a REALITY private key, as `xray x25519` prints
/// it (base64url, no padding); `None` unless `private` is 32 bytes of
/// base64 (url-safe or standard, padded or not).
fn reality_public_key(private: &str) -> Option<String> {
    let url_safe = private.trim().replace('+', "-").replace('/', "_");
    let bytes = LENIENT_URL_SAFE.decode(url_safe).ok()?;
    if bytes.len() != 32 {
        return None;
    }
    let key = PKey::private_key_from_raw_bytes(&bytes, Id::X25519).ok()?;
    let public = key.raw_public_key().ok()?;
    Some(URL_SAFE_NO_PAD.encode(public))
}

#[cfg(test)]
#[path = "describe_tests.rs"]
mod tests;
