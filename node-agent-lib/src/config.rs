//! The core's configuration: the operator's base config, the inbounds the
//! agent manages in it, and the generated config (base + the agent's users)
//! the core is started with, which also carries what accounting needs
//! (module `accounting`), and how clients dial each managed inbound
//! (module `describe`).

mod accounting;
mod describe;
mod ssmanager;

pub use ssmanager::SsManagerConfig;

use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use xray_core_client::{Account, CoreUser, Flavor, ShadowsocksCipher};

use crate::wire::{InboundDescription, InboundProtocol, WireUser};

/// What the core is told of a user: its id (the core's `email`), its secret
/// and the id it presents to VLESS/VMess. The agent keeps its users
/// compactly; the API's [`WireUser`] is one too.
pub trait CoreCredentials {
    fn id(&self) -> &str;
    fn secret(&self) -> &str;
    /// The VLESS/VMess id: the proxy id when there is one, else `id`.
    fn vless_id(&self) -> &str;
}

impl CoreCredentials for WireUser {
    fn id(&self) -> &str {
        &self.id
    }

    fn secret(&self) -> &str {
        &self.secret
    }

    fn vless_id(&self) -> &str {
        WireUser::vless_id(self)
    }
}

/// An inbound of the base config whose users the agent manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedInbound {
    pub tag: String,
    pub protocol: InboundProtocol,
    /// VLESS flow given to every user (e.g. `xtls-rprx-vision`), or empty.
    pub flow: String,
    /// Shadowsocks only: the inbound's cipher, as in the config and as a type.
    pub method: String,
    cipher: Option<ShadowsocksCipher>,
    /// The operator's own clients, kept in the generated config but not
    /// counted as the agent's users.
    static_clients: Vec<String>,
}

impl ManagedInbound {
    /// How many clients the base config itself gives this inbound.
    pub fn static_clients(&self) -> u64 {
        self.static_clients.len() as u64
    }

    /// `user` as the core's API wants it for this inbound.
    pub fn core_user(&self, user: &(impl CoreCredentials + ?Sized)) -> CoreUser {
        let account = match self.protocol {
            InboundProtocol::Vless => Account::Vless {
                id: user.vless_id().to_owned(),
                flow: self.flow.clone(),
            },
            InboundProtocol::Vmess => Account::Vmess {
                id: user.vless_id().to_owned(),
            },
            InboundProtocol::Trojan => Account::Trojan {
                password: user.secret().to_owned(),
            },
            InboundProtocol::Shadowsocks => Account::Shadowsocks {
                password: user.secret().to_owned(),
                cipher: self.cipher.unwrap_or(ShadowsocksCipher::Aes256Gcm),
            },
        };
        CoreUser {
            email: user.id().to_owned(),
            level: 0,
            account,
        }
    }

    fn write_client(
        &self,
        out: &mut impl Write,
        user: &(impl CoreCredentials + ?Sized),
    ) -> io::Result<()> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Client<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            alter_id: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            flow: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            password: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            method: Option<&'a str>,
            email: &'a str,
            level: u32,
        }
        let mut client = Client {
            id: None,
            alter_id: None,
            flow: None,
            password: None,
            method: None,
            email: user.id(),
            level: 0,
        };
        match self.protocol {
            InboundProtocol::Vless => {
                client.id = Some(user.vless_id());
                client.flow = Some(self.flow.as_str()).filter(|f| !f.is_empty());
            }
            InboundProtocol::Vmess => {
                client.id = Some(user.vless_id());
                client.alter_id = Some(0);
            }
            InboundProtocol::Trojan => client.password = Some(user.secret()),
            InboundProtocol::Shadowsocks => {
                client.password = Some(user.secret());
                client.method = Some(&self.method);
            }
        }
        serde_json::to_writer(out, &client).map_err(io::Error::other)
    }
}

/// The base config is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("base config is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("base config: {0}")]
    Invalid(String),
    #[error("cannot read or write a config file: {0}")]
    Io(#[from] io::Error),
}

/// The operator's base config, prepared so that the generated config can be
/// written for 100,000 users without building it in memory.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The serialized base config cut where each managed inbound's
    /// `settings.clients` array goes: `pieces.len() == inbounds.len() + 1`.
    pieces: Vec<String>,
    inbounds: Vec<ManagedInbound>,
    /// How clients dial the managed inbounds that could be described, in
    /// config order.
    descriptions: Vec<InboundDescription>,
    /// Whether the generated config holds the users (Xray, V2Ray), so a
    /// core started from it has them; else (`ss-manager`) it is `pieces[0]`
    /// whole and the agent adds every user through the API after a start.
    users_in_file: bool,
}

fn placeholder(i: usize) -> String {
    format!("@@xray-node-agent:clients:{i}@@")
}

pub(crate) fn ss_cipher(method: &str) -> Option<ShadowsocksCipher> {
    match method.to_ascii_lowercase().as_str() {
        "aes-128-gcm" => Some(ShadowsocksCipher::Aes128Gcm),
        "aes-256-gcm" => Some(ShadowsocksCipher::Aes256Gcm),
        "chacha20-poly1305" | "chacha20-ietf-poly1305" => Some(ShadowsocksCipher::Chacha20Poly1305),
        "xchacha20-poly1305" | "xchacha20-ietf-poly1305" => {
            Some(ShadowsocksCipher::Xchacha20Poly1305)
        }
        _ => None,
    }
}

impl CoreConfig {
    /// Reads the base config, turns on the per-user traffic counters (see
    /// the `accounting` module) and finds the managed inbounds: every inbound
    /// with a tag whose protocol is VLESS, VMess, Trojan or (where the core
    /// holds several users in one inbound) Shadowsocks, except the API's.
    /// Describes how clients dial each of them ([`Self::descriptions`]).
    /// Gives the warnings about inbounds it skipped or could not describe.
    /// `vless_flow` is given to every VLESS user.
    pub fn parse(
        base: &str,
        flavor: Flavor,
        vless_flow: &str,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let mut root: Value = serde_json::from_str(base)?;
        let mut warnings = accounting::ensure_accounting(&mut root)?;
        let api_tag = root
            .pointer("/api/tag")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(inbounds) = root.get_mut("inbounds").and_then(Value::as_array_mut) else {
            return Err(ConfigError::Invalid("no `inbounds` array".into()));
        };
        let mut managed = Vec::new();
        let mut descriptions = Vec::new();
        for inbound in inbounds.iter_mut() {
            let protocol = inbound
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(protocol) = InboundProtocol::from_config(protocol) else {
                continue;
            };
            let tag = inbound
                .get("tag")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if tag.is_empty() {
                warnings.push(format!(
                    "a {protocol:?} inbound has no tag: its users cannot be managed; skipped"
                ));
                continue;
            }
            if api_tag.as_deref() == Some(tag.as_str()) {
                continue;
            }
            if !inbound.get("settings").is_some_and(Value::is_object) {
                inbound["settings"] = Value::Object(Default::default());
            }
            let settings = &mut inbound["settings"];
            let mut method = String::new();
            let mut cipher = None;
            if protocol == InboundProtocol::Shadowsocks {
                if flavor == Flavor::V2ray {
                    warnings.push(format!(
                        "shadowsocks inbound {tag}: V2Ray holds one user per Shadowsocks inbound; skipped"
                    ));
                    continue;
                }
                method = settings
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                cipher = ss_cipher(&method);
                if cipher.is_none() {
                    warnings.push(format!(
                        "shadowsocks inbound {tag}: method {method:?} cannot hold managed users \
                         (use aes-128-gcm, aes-256-gcm, chacha20-poly1305 or xchacha20-poly1305); skipped"
                    ));
                    continue;
                }
            }
            let static_clients = match settings.get("clients") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(clients)) => clients
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(ConfigError::Invalid(format!(
                        "inbound {tag}: settings.clients is not an array"
                    )));
                }
            };
            settings["clients"] = Value::String(placeholder(managed.len()));
            let inbound_managed = ManagedInbound {
                tag,
                protocol,
                flow: if protocol == InboundProtocol::Vless {
                    vless_flow.to_owned()
                } else {
                    String::new()
                },
                method,
                cipher,
                static_clients,
            };
            match describe::describe(inbound, &inbound_managed) {
                Ok(description) => descriptions.push(description),
                Err(why) => warnings.push(format!(
                    "inbound {}: {why}: clients are not told how to dial it \
                     (its users are still managed)",
                    inbound_managed.tag
                )),
            }
            managed.push(inbound_managed);
        }
        if managed.is_empty() {
            warnings.push("no managed inbound: users are accepted but go nowhere".into());
        }
        let text = serde_json::to_string_pretty(&root)?;
        let mut pieces = Vec::with_capacity(managed.len() + 1);
        let mut rest = text.as_str();
        for i in 0..managed.len() {
            let marker = format!("\"{}\"", placeholder(i));
            let (before, after) = rest.split_once(&marker).ok_or_else(|| {
                ConfigError::Invalid("the base config contains the agent's placeholder".into())
            })?;
            pieces.push(before.to_owned());
            rest = after;
        }
        pieces.push(rest.to_owned());
        Ok((
            Self {
                pieces,
                inbounds: managed,
                descriptions,
                users_in_file: true,
            },
            warnings,
        ))
    }

    pub fn inbounds(&self) -> &[ManagedInbound] {
        &self.inbounds
    }

    /// Whether a core started from the generated config already has the
    /// users written in it; when not, whoever starts it adds them through
    /// the core's API.
    pub fn restores_users(&self) -> bool {
        self.users_in_file
    }

    /// How clients dial each managed inbound, in config order; an inbound
    /// that could not be described (a warning of [`Self::parse`] says why)
    /// is not here.
    pub fn descriptions(&self) -> &[InboundDescription] {
        &self.descriptions
    }

    /// Whether some managed inbound takes the user id as a UUID credential.
    pub fn needs_uuid_ids(&self) -> bool {
        self.inbounds.iter().any(|i| i.protocol.uses_uuid())
    }

    /// Writes the generated config: the base config with `users` added to
    /// every managed inbound's clients.
    pub fn render<'a, I, U>(&self, out: &mut impl Write, users: I) -> io::Result<()>
    where
        I: IntoIterator<Item = &'a U> + Clone,
        U: CoreCredentials + 'a,
    {
        if !self.users_in_file {
            out.write_all(self.pieces[0].as_bytes())?;
            return out.write_all(b"\n");
        }
        for (i, inbound) in self.inbounds.iter().enumerate() {
            out.write_all(self.pieces[i].as_bytes())?;
            out.write_all(b"[")?;
            let mut first = true;
            for client in &inbound.static_clients {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                out.write_all(client.as_bytes())?;
            }
            for user in users.clone() {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                out.write_all(b"\n")?;
                inbound.write_client(out, user)?;
            }
            out.write_all(b"]")?;
        }
        out.write_all(self.pieces[self.inbounds.len()].as_bytes())?;
        out.write_all(b"\n")
    }

    /// Writes the generated config to `path` atomically (a temporary file in
    /// the same directory, made 0600 and synced, then renamed over `path`), so
    /// the core never reads half a file and nobody else reads the users'
    /// credentials.
    pub fn write_atomic<'a, I, U>(&self, path: &Path, users: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = &'a U> + Clone,
        U: CoreCredentials + 'a,
    {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".xna-config-")
            .tempfile_in(dir)?;
        set_private(tmp.path())?;
        {
            let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
            self.render(&mut out, users)?;
            out.flush()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| ConfigError::Io(e.error))?;
        Ok(())
    }
}

#[cfg(unix)]
fn set_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{
      "api": {"tag": "api", "services": ["HandlerService", "StatsService"]},
      "inbounds": [
        {"tag": "api", "protocol": "dokodemo-door", "settings": {"address": "127.0.0.1"}},
        {"tag": "vless-in", "port": 1, "protocol": "vless", "settings": {"decryption": "none"}},
        {"tag": "vmess-in", "port": 2, "protocol": "vmess", "settings": {"clients": [{"id": "static", "email": "op"}]}},
        {"tag": "tr-in", "port": 3, "protocol": "trojan"},
        {"tag": "ss-in", "port": 4, "protocol": "shadowsocks", "settings": {"method": "aes-256-gcm"}},
        {"tag": "ss22", "port": 5, "protocol": "shadowsocks", "settings": {"method": "2022-blake3-aes-128-gcm"}}
      ],
      "outbounds": [{"protocol": "freedom"}]
    }"#;

    fn user(id: &str) -> WireUser {
        WireUser {
            id: id.into(),
            name: format!("name-{id}"),
            secret: format!("secret-{id}"),
            proxy_id: None,
        }
    }

    #[test]
    fn finds_managed_inbounds_and_skips_the_rest() {
        let (cfg, warnings) = CoreConfig::parse(BASE, Flavor::Xray, "xtls-rprx-vision").unwrap();
        let tags: Vec<_> = cfg.inbounds().iter().map(|i| i.tag.as_str()).collect();
        assert_eq!(tags, ["vless-in", "vmess-in", "tr-in", "ss-in"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let (cfg, warnings) = CoreConfig::parse(BASE, Flavor::V2ray, "").unwrap();
        assert_eq!(cfg.inbounds().len(), 3);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn generated_config_holds_every_user_in_every_inbound() {
        let (cfg, _) = CoreConfig::parse(BASE, Flavor::Xray, "xtls-rprx-vision").unwrap();
        let users = [user("a"), user("b")];
        let mut out = Vec::new();
        cfg.render(&mut out, users.iter()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let clients = |i: usize| {
            v["inbounds"][i]["settings"]["clients"]
                .as_array()
                .unwrap()
                .clone()
        };
        assert_eq!(clients(1)[0]["id"], "a");
        assert_eq!(clients(1)[0]["flow"], "xtls-rprx-vision");
        assert_eq!(clients(1)[1]["email"], "b");
        assert_eq!(clients(2).len(), 3, "static client kept");
        assert_eq!(clients(2)[1]["alterId"], 0);
        assert_eq!(clients(3)[0]["password"], "secret-a");
        assert_eq!(clients(4)[1]["method"], "aes-256-gcm");
        assert!(v["inbounds"][5]["settings"].get("clients").is_none());
        assert_eq!(v["outbounds"][0]["protocol"], "freedom");
    }

    #[test]
    fn a_per_node_proxy_id_is_the_vless_and_vmess_id_and_the_user_id_stays_the_key() {
        let (cfg, _) = CoreConfig::parse(BASE, Flavor::Xray, "").unwrap();
        let mut u = user("a");
        u.proxy_id = Some("p".into());
        let mut out = Vec::new();
        cfg.render(&mut out, [&u]).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        // The VMess inbound's static client comes first.
        for (inbound, at) in [(1, 0), (2, 1)] {
            let client = &v["inbounds"][inbound]["settings"]["clients"][at];
            assert_eq!(
                (&client["id"], &client["email"]),
                (&"p".into(), &"a".into())
            );
        }
        for inbound in cfg.inbounds() {
            let core = inbound.core_user(&u);
            assert_eq!(core.email, "a");
            match core.account {
                Account::Vless { id, .. } | Account::Vmess { id } => assert_eq!(id, "p"),
                Account::Trojan { password } | Account::Shadowsocks { password, .. } => {
                    assert_eq!(password, "secret-a")
                }
            }
        }
    }

    fn rendered(base: &str, flavor: Flavor) -> (Value, Vec<String>) {
        let (cfg, warnings) = CoreConfig::parse(base, flavor, "").unwrap();
        let mut out = Vec::new();
        cfg.render(&mut out, [user("a")].iter()).unwrap();
        (serde_json::from_slice(&out).unwrap(), warnings)
    }

    #[test]
    fn generated_config_counts_every_users_traffic_on_both_flavors() {
        for flavor in [Flavor::Xray, Flavor::V2ray] {
            let (v, _) = rendered(BASE, flavor);
            assert_eq!(v["stats"], serde_json::json!({}), "{flavor:?}");
            let services = v["api"]["services"].as_array().unwrap();
            assert_eq!(
                services.iter().filter(|s| *s == "StatsService").count(),
                1,
                "{flavor:?}: {services:?}"
            );
            assert_eq!(v["policy"]["levels"]["0"]["statsUserUplink"], true);
            assert_eq!(v["policy"]["levels"]["0"]["statsUserDownlink"], true);
            assert_eq!(v["inbounds"][1]["settings"]["clients"][0]["level"], 0);
        }
    }

    #[test]
    fn the_operators_policy_and_stats_are_kept() {
        let base = r#"{
          "api": {"tag": "api", "services": ["HandlerService"]},
          "stats": {"keep": 1},
          "policy": {
            "levels": {
              "0": {"handshake": 4, "statsUserUplink": false},
              "1": {"connIdle": 60}
            },
            "system": {"statsInboundUplink": true}
          },
          "inbounds": [{"tag": "vless-in", "port": 1, "protocol": "vless", "settings": {"decryption": "none"}}],
          "outbounds": [{"protocol": "freedom"}]
        }"#;
        for flavor in [Flavor::Xray, Flavor::V2ray] {
            let (v, warnings) = rendered(base, flavor);
            assert_eq!(v["stats"]["keep"], 1);
            assert_eq!(
                v["api"]["services"],
                serde_json::json!(["HandlerService", "StatsService"])
            );
            let levels = &v["policy"]["levels"];
            assert_eq!(levels["0"]["handshake"], 4);
            assert_eq!(levels["0"]["statsUserUplink"], true);
            assert_eq!(levels["0"]["statsUserDownlink"], true);
            assert_eq!(levels["1"], serde_json::json!({"connIdle": 60}));
            assert_eq!(v["policy"]["system"]["statsInboundUplink"], true);
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(warnings[0].contains("statsUserUplink"));
        }
    }

    #[test]
    fn a_policy_or_stats_of_the_wrong_shape_is_refused() {
        for bad in [
            r#"{"stats": [], "inbounds": []}"#,
            r#"{"policy": 3, "inbounds": []}"#,
            r#"{"policy": {"levels": []}, "inbounds": []}"#,
            r#"{"policy": {"levels": {"0": "x"}}, "inbounds": []}"#,
            r#"{"api": {"tag": "api", "services": "StatsService"}, "inbounds": []}"#,
        ] {
            assert!(
                matches!(
                    CoreConfig::parse(bad, Flavor::Xray, ""),
                    Err(ConfigError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn generated_config_with_no_users_is_valid_json() {
        let (cfg, _) = CoreConfig::parse(BASE, Flavor::Xray, "").unwrap();
        let mut out = Vec::new();
        cfg.render(&mut out, std::iter::empty::<&WireUser>())
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["inbounds"][1]["settings"]["clients"],
            Value::Array(vec![])
        );
    }
}
