//! A node as subscriptions show it (`node show`: the inbounds its agent
//! described, what subscriptions list, the operator's profile) and setting
//! that profile (`node profile`).
//!
//! The API replaces the whole profile on each call, so `node profile`
//! always sends a whole one: the file's with `--file`, else the current
//! one (read first) with the flags applied. The profile travels as JSON
//! the CLI does not model field by field, so what a newer manager adds to
//! it survives a round trip; only a profile file is checked for unknown
//! names, since a misspelt field would otherwise be cleared in silence.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::client::Client;
use super::error::CliError;
use super::output::table;

/// The fields of a profile.
pub const PROFILE_FIELDS: [&str; 3] = ["address", "remark", "inbounds"];
/// The fields of one inbound's override.
pub const OVERRIDE_FIELDS: [&str; 10] = [
    "hidden",
    "remark",
    "addresses",
    "port",
    "sni",
    "host",
    "path",
    "fingerprint",
    "alpn",
    "allowInsecure",
];

/// One inbound as the node's agent described it (the columns `node show`
/// prints; the rest is kept for `--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundView {
    pub tag: String,
    pub protocol: String,
    pub port: u16,
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub security: String,
    #[serde(default)]
    pub sni: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// One entry a subscription lists for the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedView {
    pub remark: String,
    pub address: String,
    pub tag: String,
    pub protocol: String,
    pub port: u16,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A node as `GET /nodes/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDetails {
    pub id: String,
    pub endpoint: String,
    pub actual_status: String,
    pub required_status: String,
    pub traffic_multiplier: f64,
    /// Empty until the node's first start.
    #[serde(default)]
    pub inbounds: Vec<InboundView>,
    /// `address`, `remark`, `inbounds` (by tag), each absent when unset.
    #[serde(default)]
    pub profile: Map<String, Value>,
    #[serde(default)]
    pub served: Vec<ServedView>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The answer of `GET /nodes/{id}` and `POST /node/profile`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeAnswer {
    pub node: NodeDetails,
}

impl Client {
    /// `GET /nodes/{id}`.
    pub async fn node_get(&self, id: &str) -> Result<NodeAnswer, CliError> {
        self.call(Method::GET, self.url(&["nodes", id]), None, true)
            .await
    }

    /// `POST /node/profile`: replaces the node's whole profile.
    pub async fn node_profile(
        &self,
        id: &str,
        profile: Map<String, Value>,
    ) -> Result<NodeAnswer, CliError> {
        let mut body = profile;
        body.insert("nodeID".into(), json!(id));
        self.post(&["node", "profile"], Value::Object(body)).await
    }
}

/// `node profile`'s flags.
#[derive(Debug, Default, Clone, Args)]
pub struct ProfileArgs {
    /// The address clients dial (a host name or an IP address); `none`
    /// removes it (clients then dial the host of the node's endpoint)
    #[arg(long, value_name = "HOST")]
    pub address: Option<String>,
    /// The node's name in client apps; `none` removes it (the address is
    /// shown instead)
    #[arg(long, value_name = "TEXT")]
    pub remark: Option<String>,
    /// A JSON file with the whole new profile: `address`, `remark` and
    /// `inbounds` (per inbound tag: hidden, remark, addresses, port, sni,
    /// host, path, fingerprint, alpn, allowInsecure), as `node show --json`
    /// prints it under `.node.profile`; what it leaves out is cleared; `-`
    /// reads stdin
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl ProfileArgs {
    pub fn is_empty(&self) -> bool {
        self.address.is_none() && self.remark.is_none() && self.file.is_none()
    }

    /// `base` with `--address` and `--remark` applied (`none` removes one).
    pub fn apply(&self, mut base: Map<String, Value>) -> Map<String, Value> {
        for (field, flag) in [("address", &self.address), ("remark", &self.remark)] {
            match flag.as_deref() {
                None => {}
                Some("none") => {
                    base.remove(field);
                }
                Some(value) => {
                    base.insert(field.into(), json!(value));
                }
            }
        }
        base
    }
}

/// Reads a profile file (`-`: stdin).
pub fn load_file(file: &Path) -> Result<Map<String, Value>, CliError> {
    let shown = file.display().to_string();
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().lock().read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| CliError::Usage(format!("cannot read {shown}: {e}")))?;
    parse_profile(&text).map_err(|e| CliError::Usage(format!("{shown}: {e}")))
}

/// A profile object with only the fields the API knows, at the top and
/// in each inbound's override. Values are the manager's to check.
pub fn parse_profile(text: &str) -> Result<Map<String, Value>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON profile: {e}"))?;
    let Value::Object(profile) = value else {
        return Err("the profile must be a JSON object (`{\"address\": …}`)".into());
    };
    unknown(profile.keys(), &PROFILE_FIELDS, "the profile")?;
    match profile.get("inbounds") {
        None | Some(Value::Null) => {}
        Some(Value::Object(inbounds)) => {
            for (tag, o) in inbounds {
                let Value::Object(o) = o else {
                    return Err(format!("inbounds.{tag} must be a JSON object"));
                };
                unknown(o.keys(), &OVERRIDE_FIELDS, &format!("inbounds.{tag}"))?;
            }
        }
        Some(_) => return Err("`inbounds` must be a JSON object keyed by inbound tag".into()),
    }
    Ok(profile)
}

fn unknown<'a>(
    mut keys: impl Iterator<Item = &'a String>,
    known: &[&str],
    place: &str,
) -> Result<(), String> {
    match keys.find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown field {k:?} in {place} (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// A JSON value as a person writes it: strings bare, lists comma-joined.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// One inbound's override on a line: `hidden`, `sni=…`, `addresses=a,b`.
fn override_text(o: &Value) -> String {
    let Value::Object(o) = o else {
        return plain(o);
    };
    o.iter()
        .filter(|(k, v)| !(k.as_str() == "hidden" && v == &&Value::Bool(false)))
        .map(|(k, v)| match (k.as_str(), v) {
            ("hidden", Value::Bool(true)) => "hidden".to_owned(),
            _ => format!("{k}={}", plain(v)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What clients dial without an address in the profile.
fn endpoint_host(endpoint: &str) -> String {
    let host = reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
    match host {
        Some(h) => format!("{h} (the endpoint's host)"),
        None => "(the endpoint's host)".to_owned(),
    }
}

/// `node show` and `node profile`, for people.
pub fn node_details(n: &NodeDetails) -> String {
    let profile_text = |field: &str, unset: &str| {
        n.profile
            .get(field)
            .filter(|v| !v.is_null())
            .map_or_else(|| unset.to_owned(), plain)
    };
    let mut t = table(&["FIELD", "VALUE"]);
    for (k, v) in [
        ("id", n.id.clone()),
        ("endpoint", n.endpoint.clone()),
        ("actual", n.actual_status.clone()),
        ("required", n.required_status.clone()),
        ("multiplier", n.traffic_multiplier.to_string()),
        (
            "address",
            profile_text("address", &endpoint_host(&n.endpoint)),
        ),
        ("remark", profile_text("remark", "(the address)")),
    ] {
        t.add_row(vec![k.to_owned(), v]);
    }
    let mut out = t.to_string();

    out.push_str("\ninbounds described by the agent:\n");
    if n.inbounds.is_empty() {
        out.push_str("none yet (the agent describes them when the node starts)");
    } else {
        let mut t = table(&["TAG", "PROTOCOL", "PORT", "NETWORK", "SECURITY", "SNI"]);
        for i in &n.inbounds {
            t.add_row(vec![
                i.tag.clone(),
                i.protocol.clone(),
                i.port.to_string(),
                i.network.clone(),
                i.security.clone(),
                i.sni.clone(),
            ]);
        }
        out.push_str(&t.to_string());
    }

    out.push_str("\nserved in subscriptions:\n");
    if n.served.is_empty() {
        out.push_str("nothing");
    } else {
        let mut t = table(&["REMARK", "ADDRESS", "PORT", "TAG", "PROTOCOL"]);
        for s in &n.served {
            t.add_row(vec![
                s.remark.clone(),
                s.address.clone(),
                s.port.to_string(),
                s.tag.clone(),
                s.protocol.clone(),
            ]);
        }
        out.push_str(&t.to_string());
    }

    let overrides = match n.profile.get("inbounds") {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    if !overrides.is_empty() {
        out.push_str("\nper-inbound overrides:\n");
        let mut t = table(&["TAG", "OVERRIDE"]);
        for (tag, o) in &overrides {
            t.add_row(vec![tag.clone(), override_text(o)]);
        }
        out.push_str(&t.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(address: Option<&str>, remark: Option<&str>) -> ProfileArgs {
        ProfileArgs {
            address: address.map(str::to_owned),
            remark: remark.map(str::to_owned),
            file: None,
        }
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn flags_change_only_their_field_and_keep_the_overrides() {
        let current = object(json!({
            "address": "old.example.com",
            "remark": "Amsterdam",
            "inbounds": {"vmess-ws": {"hidden": true}}
        }));
        let body = args(Some("nl.example.com"), None).apply(current);
        assert_eq!(
            Value::Object(body),
            json!({
                "address": "nl.example.com",
                "remark": "Amsterdam",
                "inbounds": {"vmess-ws": {"hidden": true}}
            })
        );
    }

    #[test]
    fn none_removes_a_field() {
        let current = object(json!({"address": "a.example.com", "remark": "A"}));
        let body = args(Some("none"), Some("none")).apply(current);
        assert!(body.is_empty(), "{body:?}");
    }

    #[test]
    fn a_profile_file_with_a_misspelt_field_is_refused() {
        let err = parse_profile(r#"{"adress": "x.example.com"}"#).expect_err("misspelt");
        assert!(
            err.contains("\"adress\"") && err.contains("address"),
            "{err}"
        );
        let err = parse_profile(r#"{"inbounds": {"vless-in": {"hiden": true}}}"#)
            .expect_err("misspelt override");
        assert!(err.contains("inbounds.vless-in"), "{err}");
        assert!(parse_profile("[1]").is_err());
        assert!(parse_profile(r#"{"inbounds": []}"#).is_err());
        assert!(parse_profile("{").is_err());
    }

    #[test]
    fn a_profile_file_as_node_show_prints_it_is_accepted() {
        let text = r#"{
            "address": "nl.example.com",
            "inbounds": {"trojan-in": {"addresses": ["a.example.com"], "allowInsecure": true}}
        }"#;
        let profile = parse_profile(text).expect("valid");
        assert_eq!(profile["address"], "nl.example.com");
        assert!(parse_profile("{}").expect("empty").is_empty());
    }

    #[test]
    fn details_show_inbounds_served_entries_and_overrides() {
        let node: NodeDetails = serde_json::from_value(json!({
            "id": "n1",
            "endpoint": "http://10.0.0.1:9000",
            "actualStatus": "Running",
            "requiredStatus": "Running",
            "trafficMultiplier": 1.5,
            "inbounds": [
                {"tag": "vless-in", "protocol": "vless", "port": 443, "network": "tcp",
                 "security": "tls", "sni": "node.example.com", "flow": "xtls-rprx-vision"},
                {"tag": "vmess-ws", "protocol": "vmess", "port": 8080, "network": "ws",
                 "security": "none"}
            ],
            "profile": {"remark": "Amsterdam",
                        "inbounds": {"vmess-ws": {"hidden": true, "sni": "front.example.com"}}},
            "served": [{"remark": "Amsterdam", "address": "10.0.0.1", "tag": "vless-in",
                        "protocol": "vless", "port": 443}]
        }))
        .expect("a node");
        assert_eq!(node.inbounds[0].rest["flow"], "xtls-rprx-vision");
        let text = node_details(&node);
        for needle in [
            "http://10.0.0.1:9000",
            "1.5",
            "10.0.0.1 (the endpoint's host)",
            "node.example.com",
            "8080",
            "ws",
            "Amsterdam",
            "10.0.0.1",
            "hidden; sni=front.example.com",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }
}
