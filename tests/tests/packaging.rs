//! The packaging stays true to the binaries: the example settings parse with
//! the real settings types, name every key those types have with its real
//! default and variable, the agent image's edits of the example still apply,
//! the example core config is one the agent manages, and the systemd units
//! keep their hardening.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use manager_lib::seal::SecretsSettings;
use manager_lib::settings::ContainmentSettings;
use manager_lib::settings::ManagerConfig;
use manager_lib::subscription::SubscriptionSettings;
use manager_lib::webhook::WebhookSettings;
use node_agent_lib::Settings;
use node_agent_lib::listener::ListenerSettings;
use node_agent_lib::settings::{
    CoreKind, CoreSettings, ServiceSettings, SsManagerSettings, TlsSettings,
};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

// ---------------------------------------------------------------------------
// The field names of a settings struct, taken from its `Deserialize` impl so
// that a key added to the struct fails this test until the example has it.

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

struct FieldProbe<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn fields_of<T: DeserializeOwned>() -> Vec<&'static str> {
    let mut fields = None;
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields.expect("a struct with named fields").to_vec()
}

// ---------------------------------------------------------------------------
// The example files as documented keys: `key = …` or `# key = …` lines, each
// under its `[section]` (commented headers count: optional sections), with
// the comment block above it.

#[derive(Debug)]
struct DocumentedKey {
    section: String,
    /// Under a commented-out header: a section absent by default, whose
    /// keys' defaults apply only once it is written.
    optional: bool,
    key: String,
    /// The comment lines above the key, nearest first; other commented keys
    /// and headers in between are skipped (they share one explanation).
    doc: Vec<String>,
}

fn key_of(line: &str) -> Option<(&str, bool)> {
    let (text, commented) = match line.trim().strip_prefix('#') {
        Some(rest) => (rest.trim(), true),
        None => (line.trim(), false),
    };
    let (key, _) = text.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    .then_some((key, commented))
}

fn header_of(line: &str) -> Option<&str> {
    let text = line.trim().trim_start_matches('#').trim();
    text.strip_prefix('[')?.strip_suffix(']')
}

fn documented_keys(text: &str) -> Vec<DocumentedKey> {
    let lines: Vec<&str> = text.lines().collect();
    let mut section = String::new();
    let mut optional = false;
    let mut keys = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = header_of(line) {
            section = name.to_owned();
            optional = line.trim().starts_with('#');
            continue;
        }
        let Some((key, _)) = key_of(line) else {
            continue;
        };
        let mut doc = Vec::new();
        for above in lines[..i].iter().rev() {
            let above = above.trim();
            let Some(comment) = above.strip_prefix('#') else {
                break; // a blank line or an active key ends the block
            };
            if key_of(above).is_some() || header_of(above).is_some() {
                continue;
            }
            doc.push(comment.trim().to_owned());
        }
        keys.push(DocumentedKey {
            section: section.clone(),
            optional,
            key: key.to_owned(),
            doc,
        });
    }
    keys
}

impl DocumentedKey {
    fn name(&self) -> String {
        if self.section.is_empty() {
            self.key.clone()
        } else {
            format!("[{}] {}", self.section, self.key)
        }
    }

    /// The nearest `Default: …` line's value as TOML, `None` when the
    /// default is "unset"/"absent" or computed from other settings.
    fn default_literal(&self) -> Option<String> {
        let line = self
            .doc
            .iter()
            .find_map(|l| l.split_once("Default: ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("{}: no `Default:` in its comment", self.name()));
        let value = line
            .split(". Env:")
            .next()
            .and_then(|v| v.split(". No variable").next())
            .map(|v| v.trim_end_matches('.'))
            .unwrap_or(line);
        let value = value.split(" (").next().unwrap_or(value).trim();
        (!(value.starts_with("unset") || value.starts_with("absent") || value.contains('<')))
            .then(|| value.to_owned())
    }

    fn doc_text(&self) -> String {
        self.doc.join(" ")
    }
}

/// Every field of every section is documented, and nothing else is.
fn assert_complete(file: &str, keys: &[DocumentedKey], sections: &[(&str, Vec<&'static str>)]) {
    let documented: BTreeSet<(String, String)> = keys
        .iter()
        .map(|k| (k.section.clone(), k.key.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = sections
        .iter()
        .flat_map(|(section, fields)| {
            fields
                .iter()
                .map(move |f| ((*section).to_owned(), (*f).to_owned()))
        })
        .collect();
    let missing: Vec<_> = expected.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&expected).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "{file}: keys missing from the example: {missing:?}; keys the settings do not have: {unknown:?}"
    );
    assert_eq!(
        documented.len(),
        keys.len(),
        "{file}: a key is documented twice"
    );
}

/// A TOML document holding only the documented defaults (an optional
/// section's are left out: its absence is the default).
fn defaults_document(keys: &[DocumentedKey]) -> String {
    let mut out = String::new();
    let mut section = String::new();
    for key in keys {
        let Some(value) = key.default_literal().filter(|_| !key.optional) else {
            continue;
        };
        if key.section != section {
            section.clone_from(&key.section);
            out.push_str(&format!("[{section}]\n"));
        }
        out.push_str(&format!("{} = {value}\n", key.key));
    }
    out
}

// ---------------------------------------------------------------------------
// The manager's example.

const MANAGER_EXAMPLE: &str = "packaging/examples/manager.toml";

#[test]
fn the_manager_example_loads_with_the_real_settings() {
    let cfg = ManagerConfig::load(Some(&repo_file(MANAGER_EXAMPLE))).expect("manager.toml loads");
    assert_eq!(cfg.data_dir, Path::new("/var/lib/xray-manager"));
    assert_eq!(
        cfg.storage_url(),
        "sqlite:///var/lib/xray-manager/manager.db"
    );
    assert!(cfg.admin_token.is_none(), "no token in the example file");
}

#[test]
fn the_manager_example_documents_every_key_with_its_default_and_variable() {
    let text = read(MANAGER_EXAMPLE);
    let keys = documented_keys(&text);
    let top: Vec<_> = fields_of::<ManagerConfig>()
        .into_iter()
        .filter(|f| {
            ![
                "http",
                "tls",
                "subscription",
                "webhooks",
                "secrets",
                "containment",
            ]
            .contains(f)
        })
        .collect();
    assert_complete(
        MANAGER_EXAMPLE,
        &keys,
        &[
            ("", top),
            ("http", fields_of::<ListenerSettings>()),
            ("tls", fields_of::<TlsSettings>()),
            ("subscription", fields_of::<SubscriptionSettings>()),
            ("webhooks", fields_of::<WebhookSettings>()),
            ("secrets", fields_of::<SecretsSettings>()),
            ("containment", fields_of::<ContainmentSettings>()),
        ],
    );
    for key in &keys {
        let var = match key.section.as_str() {
            "" => format!("Env: XM_{}", key.key.to_uppercase()),
            section => format!(
                "Env: XM_{}_{}",
                section.to_uppercase(),
                key.key.to_uppercase()
            ),
        };
        assert!(
            key.doc_text().contains(&var),
            "{}: its comment must say `{var}`",
            key.name()
        );
    }
    let defaults = defaults_document(&keys);
    let documented: ManagerConfig = toml::from_str(&defaults)
        .unwrap_or_else(|e| panic!("the documented defaults do not parse: {e}\n{defaults}"));
    assert_eq!(
        format!("{documented:?}"),
        format!("{:?}", ManagerConfig::default()),
        "a `Default:` in {MANAGER_EXAMPLE} is not the real default"
    );
}

// ---------------------------------------------------------------------------
// The agent's example.

const AGENT_EXAMPLE: &str = "packaging/examples/agent.toml";

fn agent_sections() -> Vec<(&'static str, Vec<&'static str>)> {
    let sections = ["core", "ss_manager", "service", "tls", "http"];
    let top: Vec<_> = fields_of::<Settings>()
        .into_iter()
        .filter(|f| !sections.contains(f))
        .collect();
    vec![
        ("", top),
        ("core", fields_of::<CoreSettings>()),
        ("ss_manager", fields_of::<SsManagerSettings>()),
        ("service", fields_of::<ServiceSettings>()),
        ("tls", fields_of::<TlsSettings>()),
        ("http", fields_of::<ListenerSettings>()),
    ]
}

#[test]
fn the_agent_example_loads_with_the_real_settings() {
    let settings = Settings::load(Some(&repo_file(AGENT_EXAMPLE))).expect("agent.toml loads");
    settings.flavor().expect("a known flavor");
    assert_eq!(
        settings.core_args().unwrap(),
        ["run", "-c", "/var/lib/xray-node-agent/core.json"]
    );
    assert!(settings.user_config_template.contains("{{.UserID}}"));
}

/// The example of an ss-manager node.
const SS_AGENT_EXAMPLE: &str = "packaging/examples/agent-ss-manager.toml";

#[test]
fn the_ss_manager_agent_example_loads_with_the_real_settings() {
    let settings =
        Settings::load(Some(&repo_file(SS_AGENT_EXAMPLE))).expect("agent-ss-manager.toml loads");
    assert_eq!(settings.core_kind().unwrap(), CoreKind::SsManager);
    assert_eq!(
        settings.core_args().unwrap(),
        [
            "-c",
            "/var/lib/xray-node-agent/ss-manager.json",
            "-D",
            "/var/lib/xray-node-agent/ss-manager"
        ]
    );
    let range = settings.ss_ports().expect("a port range");
    assert!(range.size() >= 1000, "{range}");
    let (config, _) = node_agent_lib::config::CoreConfig::ss_manager(
        &settings.ss_manager_config().expect("ss-manager settings"),
    )
    .expect("a method ss-manager users can share");
    assert!(!config.restores_users());
    assert!(settings.user_config_template.starts_with("ss://"));
}

#[test]
fn the_agent_example_documents_every_key_with_its_default_and_variable() {
    let text = read(AGENT_EXAMPLE);
    let keys = documented_keys(&text);
    assert_complete(AGENT_EXAMPLE, &keys, &agent_sections());
    for key in &keys {
        let doc = key.doc_text();
        assert!(
            doc.contains("Env: XNA_") || doc.contains("No variable"),
            "{}: its comment must name its XNA_ variable or say `No variable`",
            key.name()
        );
    }
    let defaults = defaults_document(&keys);
    let documented = Settings::from_toml(&defaults)
        .unwrap_or_else(|e| panic!("the documented defaults do not parse: {e}\n{defaults}"));
    assert_eq!(
        format!("{documented:?}"),
        format!("{:?}", Settings::default()),
        "a `Default:` in {AGENT_EXAMPLE} is not the real default"
    );
}

#[test]
fn every_variable_the_agent_example_names_is_one_the_agent_reads() {
    let text = read(AGENT_EXAMPLE);
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("XNA_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // XNA_CONFIG is the binary's flag, not a setting.
        if name.len() > 4 && name != "XNA_CONFIG" {
            names.insert(name);
        }
    }
    assert!(names.len() >= 20, "found only {names:?}");
    let before = format!("{:?}", Settings::default());
    for name in names {
        let recognised = ["7", "127.0.0.1:9", "systemd", "/x", "true", "false"]
            .iter()
            .any(|value| {
                let mut s = Settings::default();
                s.apply_env([(name.clone(), (*value).to_owned())]).is_ok()
                    && format!("{s:?}") != before
            });
        assert!(
            recognised,
            "{AGENT_EXAMPLE} names {name}, which the agent ignores"
        );
    }
}

// ---------------------------------------------------------------------------
// The images copy the example settings and edit them with sed: those lines
// must still exist, and the edited settings must load.

/// The example as `dockerfile` leaves it, and how many `s|^…$|…|` edits it made.
fn image_settings(dockerfile: &str, example: &str) -> (String, usize) {
    let dockerfile = read(dockerfile);
    assert!(
        dockerfile.contains(&format!("COPY {example} ")),
        "the image does not copy {example}"
    );
    let mut text = read(example);
    let mut edits = 0;
    for line in dockerfile.lines() {
        let Some(rest) = line.trim().strip_prefix("-e 's|^") else {
            continue;
        };
        let (from, rest) = rest.split_once("$|").expect("an `s|^…$|…|` edit");
        let to = rest.split('|').next().unwrap();
        let whole = format!("\n{from}\n");
        assert!(
            text.contains(&whole),
            "the image's sed edit finds no line {from:?} in {example}"
        );
        text = text.replacen(&whole, &format!("\n{to}\n"), 1);
        edits += 1;
    }
    (text, edits)
}

#[test]
fn the_manager_image_edits_of_the_example_still_apply() {
    let (text, edits) = image_settings("packaging/docker/Dockerfile.manager", MANAGER_EXAMPLE);
    assert_eq!(edits, 1, "the Dockerfile's edits changed: update this test");
    let cfg: ManagerConfig = toml::from_str(&text).expect("the image's manager.toml parses");
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(cfg.data_dir, Path::new("/var/lib/xray-manager"));
}

#[test]
fn the_agent_image_edits_of_the_example_still_apply() {
    let (text, edits) = image_settings("packaging/docker/Dockerfile.agent", AGENT_EXAMPLE);
    assert_eq!(edits, 3, "the Dockerfile's edits changed: update this test");
    let settings = Settings::from_toml(&text).expect("the image's agent.toml parses");
    assert_eq!(settings.flavor, "v2ray");
    assert_eq!(settings.core.binary, Path::new("/usr/bin/v2ray"));
    assert!(settings.node_key_file.is_none());
    assert!(
        read("packaging/docker/Dockerfile.agent")
            .contains("COPY packaging/examples/base-core.json /etc/xray-node-agent/base.json"),
        "the image ships the example base config where agent.toml expects it"
    );
}

#[test]
fn the_example_base_config_has_a_managed_vless_inbound_and_the_agents_api_port() {
    let base = read("packaging/examples/base-core.json");
    let settings = Settings::load(Some(&repo_file(AGENT_EXAMPLE))).unwrap();
    for flavor in [
        xray_core_client::Flavor::Xray,
        xray_core_client::Flavor::V2ray,
    ] {
        let (config, warnings) = node_agent_lib::config::CoreConfig::parse(&base, flavor, "")
            .expect("the base config parses");
        assert!(warnings.is_empty(), "{flavor:?}: {warnings:?}");
        let tags: Vec<_> = config.inbounds().iter().map(|i| i.tag.as_str()).collect();
        assert_eq!(tags, ["vless-tls"]);
        let described: Vec<_> = config
            .descriptions()
            .iter()
            .map(|d| (d.tag.as_str(), d.port, d.security.as_str(), d.sni.as_str()))
            .collect();
        assert_eq!(described, [("vless-tls", 443, "tls", "vpn.example.com")]);
    }
    let json: serde_json::Value = serde_json::from_str(&base).unwrap();
    let api = json["inbounds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tag"] == json["api"]["tag"])
        .expect("the API's inbound");
    assert_eq!(api["protocol"], "dokodemo-door");
    assert_eq!(
        format!("{}:{}", api["listen"].as_str().unwrap(), api["port"]),
        settings.core.api_address
    );
}

// ---------------------------------------------------------------------------
// The systemd units.

/// The unit's `Key=Value` lines (all values of repeated keys).
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Checks `packaging/systemd/<name>.service` and that the user it runs as is
/// the one its `<name>.sysusers` file creates.
fn assert_hardened(name: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let file = format!("packaging/systemd/{name}.service");
    let found = directives(&read(&file));
    let has = |key: &str, value: &str| found.iter().any(|(k, v)| k == key && v == value);
    let sysusers = read(&format!("packaging/systemd/{name}.sysusers"));
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with(&format!("u {name} "))),
        "{name}.sysusers creates no user {name}"
    );
    let common = [
        ("User", name),
        ("Group", name),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("Restart", "on-failure"),
    ];
    for (key, value) in common.iter().chain(extra) {
        assert!(has(key, value), "{file} lacks {key}={value}");
    }
    assert!(
        found
            .iter()
            .any(|(k, v)| k == "StateDirectory" && !v.is_empty()),
        "{file} lacks StateDirectory="
    );
    found
}

fn value<'a>(found: &'a [(String, String)], key: &str) -> &'a str {
    found
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}="))
}

#[test]
fn the_manager_unit_is_hardened_and_matches_the_example() {
    let found = assert_hardened(
        "xray-manager",
        &[
            ("CapabilityBoundingSet", ""),
            ("EnvironmentFile", "-/etc/xray-manager/env"),
        ],
    );
    let state = format!("/var/lib/{}", value(&found, "StateDirectory"));
    let cfg = ManagerConfig::load(Some(&repo_file(MANAGER_EXAMPLE))).unwrap();
    assert_eq!(
        cfg.data_dir,
        Path::new(&state),
        "data_dir is the unit's state dir"
    );
    assert!(value(&found, "ExecStart").ends_with("--config /etc/xray-manager/manager.toml"));
}

#[test]
fn the_agent_unit_is_hardened_and_matches_the_example() {
    let found = assert_hardened(
        "xray-node-agent",
        &[
            ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
            ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
            ("EnvironmentFile", "-/etc/xray-node-agent/env"),
        ],
    );
    let state = format!("/var/lib/{}", value(&found, "StateDirectory"));
    let settings = Settings::load(Some(&repo_file(AGENT_EXAMPLE))).unwrap();
    assert!(
        settings.core.generated_config.starts_with(&state),
        "the generated config must be in the unit's writable state dir"
    );
    assert!(
        settings.state_dir.starts_with(&state),
        "the usage journal must be in the unit's writable state dir"
    );
    assert!(value(&found, "ExecStart").ends_with("--config /etc/xray-node-agent/agent.toml"));
}
