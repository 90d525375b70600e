//! The agent's settings: a TOML file, then `XNA_…` environment overrides.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! node_key_file = "/etc/xray-node-agent/node.key"   # or node_key = "…", or XNA_NODE_KEY
//! flavor = "xray"                                    # or "v2ray", "ss-manager" ([ss_manager])
//! user_config_template = "vless://{{.UserID}}@vpn.example.com:443?security=tls#{{.UserName}}"
//! state_dir = "/var/lib/xray-node-agent"             # the usage journal lives here
//! stats_interval_secs = 5                            # 0: no traffic accounting
//! usage_journal_max_batches = 720                    # never-pulled batches kept before merging
//!
//! [core]
//! binary = "/usr/local/bin/xray"
//! args = ["run", "-c", "{config}"]                   # {config}: the generated config
//! base_config = "/etc/xray-node-agent/base.json"
//! generated_config = "/var/lib/xray-node-agent/core.json"
//! api_address = "127.0.0.1:10085"
//!
//! [service]
//! backend = "process"                                # or "systemd" (unit), "launchctl" (label, domain, plist)
//!
//! [http]                                             # listener limits (defaults shown)
//! header_read_timeout_ms = 10000
//! idle_timeout_ms = 60000
//! max_connections = 64
//! max_header_bytes = 8192
//!
//! [tls]                                              # optional
//! cert = "/etc/xray-node-agent/cert.pem"
//! key = "/etc/xray-node-agent/key.pem"
//! reload_interval_secs = 10                          # re-read for a new certificate
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xray_core_client::Flavor;

use crate::envelope::NodeKey;
use crate::listener::ListenerSettings;
pub use crate::secret::Secret;
pub use crate::tls::TlsSettings;

mod ssmanager;
pub use ssmanager::{CoreKind, SS_MANAGER_FLAVOR, SsManagerSettings};

/// Settings could not be loaded or are inconsistent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid settings file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// Everything the agent needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the node API listens (`XNA_LISTEN`).
    pub listen: SocketAddr,
    /// The node key, inline (`XNA_NODE_KEY`).
    pub node_key: Option<Secret>,
    /// A file holding the node key (`XNA_NODE_KEY_FILE`).
    pub node_key_file: Option<PathBuf>,
    /// `xray`, `v2ray` or `ss-manager` (`XNA_FLAVOR`).
    pub flavor: String,
    /// Returned by `/start` (`XNA_USER_CONFIG_TEMPLATE`).
    pub user_config_template: String,
    /// VLESS flow given to every user, e.g. `xtls-rprx-vision` (`XNA_VLESS_FLOW`).
    pub vless_flow: String,
    pub core: CoreSettings,
    /// The `ss-manager` core's settings (`[ss_manager]`, `XNA_SS_*`).
    pub ss_manager: SsManagerSettings,
    pub service: ServiceSettings,
    pub tls: Option<TlsSettings>,
    /// Largest accepted request body in bytes (`XNA_BODY_LIMIT`).
    pub body_limit: usize,
    /// Coalescing window of the generated-config writer, ms (`XNA_CONFIG_FLUSH_MS`).
    pub config_flush_ms: u64,
    /// How often the agent checks whether the core restarted, s (`XNA_MONITOR_INTERVAL_SECS`).
    pub monitor_interval_secs: u64,
    /// How long one background pass that checks (and repairs) every user in
    /// the core takes, s; a divergence is repaired within two. 0: off
    /// (`XNA_VERIFY_PERIOD_SECS`).
    pub verify_period_secs: u64,
    /// Where Prometheus metrics are served, without authentication: keep it
    /// private (e.g. `127.0.0.1:9101`). Unset (the default): no metrics
    /// (`XNA_METRICS_LISTEN`).
    pub metrics_listen: Option<SocketAddr>,
    /// Where the node API's OpenAPI document (`/openapi.json`) and Swagger UI
    /// (`/docs`) are served, without authentication: keep it private (e.g.
    /// `127.0.0.1:9102`). Unset (the default): not served anywhere, so the
    /// public port names nothing (`XNA_DOCS_LISTEN`).
    pub docs_listen: Option<SocketAddr>,
    /// Limits of every listener of the agent: timeouts, connection cap,
    /// header bytes (`[http]`, `XNA_HTTP_*`; see [`ListenerSettings`]).
    pub http: ListenerSettings,
    /// Where the agent keeps state that must outlive it: the usage journal
    /// and the core's pid file (`XNA_STATE_DIR`).
    pub state_dir: PathBuf,
    /// How often the agent reads (and zeroes) the core's per-user traffic
    /// counters into the usage journal, s; 0: no accounting
    /// (`XNA_STATS_INTERVAL_SECS`).
    pub stats_interval_secs: u64,
    /// How many never-pulled batches the journal keeps before it merges the
    /// oldest into one (sums stay exact; only time attribution coarsens): at
    /// the default 5 s interval, an hour of the manager being away at full
    /// resolution (`XNA_USAGE_JOURNAL_MAX_BATCHES`).
    pub usage_journal_max_batches: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreSettings {
    /// The core binary, for the `process` backend (`XNA_CORE_BINARY`).
    pub binary: PathBuf,
    /// Its arguments; `{config}` stands for `generated_config`. Empty: the
    /// flavor's usual `run -c {config}` / `-config {config}` / (ss-manager)
    /// `-c {config} -D <state_dir>/ss-manager` (`XNA_CORE_ARGS`,
    /// space-separated).
    pub args: Vec<String>,
    /// The operator's base config; not read for ss-manager
    /// (`XNA_BASE_CONFIG`).
    pub base_config: PathBuf,
    /// Where the agent writes the config the core runs (`XNA_GENERATED_CONFIG`).
    pub generated_config: PathBuf,
    /// The core's gRPC API; ss-manager: its UDP manager address
    /// (`XNA_API_ADDRESS`).
    pub api_address: String,
    /// How long `/start` waits for the core's API, s (`XNA_START_TIMEOUT_SECS`).
    pub start_timeout_secs: u64,
    /// SIGTERM → SIGKILL delay for the `process` backend, s
    /// (`XNA_STOP_TIMEOUT_SECS`).
    pub stop_timeout_secs: u64,
    /// Timeout of one gRPC call to the core, ms (`XNA_API_TIMEOUT_MS`).
    pub api_timeout_ms: u64,
}

/// Which backend starts and stops the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Process,
    Systemd,
    Launchctl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceSettings {
    /// `process`, `systemd` or `launchctl` (`XNA_SERVICE_BACKEND`).
    pub backend: Backend,
    /// systemd unit (`XNA_SERVICE_UNIT`).
    pub unit: String,
    /// launchd label, domain and property list (`XNA_SERVICE_LABEL`, …).
    pub label: String,
    pub domain: String,
    pub plist: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            node_key: None,
            node_key_file: None,
            flavor: "xray".into(),
            user_config_template: String::new(),
            vless_flow: String::new(),
            core: CoreSettings::default(),
            ss_manager: SsManagerSettings::default(),
            service: ServiceSettings::default(),
            tls: None,
            body_limit: crate::api::DEFAULT_BODY_LIMIT,
            config_flush_ms: 500,
            monitor_interval_secs: 5,
            verify_period_secs: crate::agent::DEFAULT_VERIFY_PERIOD_SECS,
            metrics_listen: None,
            docs_listen: None,
            http: ListenerSettings::agent(),
            state_dir: PathBuf::from("/var/lib/xray-node-agent"),
            stats_interval_secs: 5,
            usage_journal_max_batches: 720,
        }
    }
}

impl Default for CoreSettings {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("/usr/local/bin/xray"),
            args: Vec::new(),
            base_config: PathBuf::from("/etc/xray-node-agent/base.json"),
            generated_config: PathBuf::from("/var/lib/xray-node-agent/core.json"),
            api_address: "127.0.0.1:10085".into(),
            start_timeout_secs: 30,
            stop_timeout_secs: 5,
            api_timeout_ms: 5000,
        }
    }
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Process,
            unit: "xray.service".into(),
            label: "com.xray.core".into(),
            domain: "system".into(),
            plist: PathBuf::from("/Library/LaunchDaemons/com.xray.core.plist"),
        }
    }
}

impl Settings {
    /// Defaults, then the TOML file if given, then `XNA_…` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut settings = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text)?
            }
            None => Self::default(),
        };
        settings.apply_env(std::env::vars())?;
        settings.http.validate().map_err(|e| invalid("http", e))?;
        if let Some(tls) = &settings.tls {
            tls.validate().map_err(|e| invalid("tls", e))?;
        }
        settings.validate_usage()?;
        Ok(settings)
    }

    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        Ok(toml::from_str(text)?)
    }

    /// Applies the `XNA_…` overrides found in `vars`.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), SettingsError> {
        let number = |name: &'static str, v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|e| invalid(name, e.to_string()))
        };
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("XNA_") else {
                continue;
            };
            match key {
                "LISTEN" => {
                    self.listen = value.parse().map_err(|e: std::net::AddrParseError| {
                        invalid("XNA_LISTEN", e.to_string())
                    })?;
                }
                "NODE_KEY" => self.node_key = Some(Secret::new(value)),
                "NODE_KEY_FILE" => self.node_key_file = Some(value.into()),
                "FLAVOR" => self.flavor = value,
                "USER_CONFIG_TEMPLATE" => self.user_config_template = value,
                "VLESS_FLOW" => self.vless_flow = value,
                "CORE_BINARY" => self.core.binary = value.into(),
                "CORE_ARGS" => {
                    self.core.args = value.split_whitespace().map(str::to_owned).collect()
                }
                "BASE_CONFIG" => self.core.base_config = value.into(),
                "GENERATED_CONFIG" => self.core.generated_config = value.into(),
                "API_ADDRESS" => self.core.api_address = value,
                "START_TIMEOUT_SECS" => {
                    self.core.start_timeout_secs = number("XNA_START_TIMEOUT_SECS", &value)?
                }
                "STOP_TIMEOUT_SECS" => {
                    self.core.stop_timeout_secs = number("XNA_STOP_TIMEOUT_SECS", &value)?
                }
                "API_TIMEOUT_MS" => {
                    self.core.api_timeout_ms = number("XNA_API_TIMEOUT_MS", &value)?
                }
                "SERVICE_BACKEND" => {
                    self.service.backend = match value.trim() {
                        "process" => Backend::Process,
                        "systemd" => Backend::Systemd,
                        "launchctl" => Backend::Launchctl,
                        other => {
                            return Err(invalid(
                                "XNA_SERVICE_BACKEND",
                                format!("unknown backend {other:?}"),
                            ));
                        }
                    }
                }
                "SERVICE_UNIT" => self.service.unit = value,
                "SERVICE_LABEL" => self.service.label = value,
                "SERVICE_DOMAIN" => self.service.domain = value,
                "SERVICE_PLIST" => self.service.plist = value.into(),
                tls if TlsSettings::KEYS.contains(&tls) => {
                    TlsSettings::set(&mut self.tls, tls, &value)
                        .map_err(|e| invalid("XNA_TLS_*", e))?;
                }
                "BODY_LIMIT" => {
                    self.body_limit = usize::try_from(number("XNA_BODY_LIMIT", &value)?)
                        .map_err(|e| invalid("XNA_BODY_LIMIT", e.to_string()))?;
                }
                "CONFIG_FLUSH_MS" => self.config_flush_ms = number("XNA_CONFIG_FLUSH_MS", &value)?,
                "MONITOR_INTERVAL_SECS" => {
                    self.monitor_interval_secs = number("XNA_MONITOR_INTERVAL_SECS", &value)?;
                }
                "VERIFY_PERIOD_SECS" => {
                    self.verify_period_secs = number("XNA_VERIFY_PERIOD_SECS", &value)?;
                }
                "METRICS_LISTEN" => {
                    self.metrics_listen = match value.trim() {
                        "" => None,
                        v => Some(v.parse().map_err(|e: std::net::AddrParseError| {
                            invalid("XNA_METRICS_LISTEN", e.to_string())
                        })?),
                    };
                }
                "DOCS_LISTEN" => {
                    self.docs_listen = match value.trim() {
                        "" => None,
                        v => Some(v.parse().map_err(|e: std::net::AddrParseError| {
                            invalid("XNA_DOCS_LISTEN", e.to_string())
                        })?),
                    };
                }
                "STATE_DIR" => self.state_dir = value.into(),
                "STATS_INTERVAL_SECS" => {
                    self.stats_interval_secs = number("XNA_STATS_INTERVAL_SECS", &value)?;
                }
                "USAGE_JOURNAL_MAX_BATCHES" => {
                    self.usage_journal_max_batches =
                        number("XNA_USAGE_JOURNAL_MAX_BATCHES", &value)?;
                }
                // Read by the binary's flag parser.
                "CONFIG" => {}
                ss if ss.starts_with("SS_") => {
                    if !self.ss_manager.set(&ss["SS_".len()..], value)? {
                        tracing::warn!(variable = %name, "unknown XNA_ variable ignored");
                    }
                }
                http if http.starts_with("HTTP_") => {
                    if !self
                        .http
                        .set(&http["HTTP_".len()..], &value)
                        .map_err(|e| invalid("XNA_HTTP_*", e))?
                    {
                        tracing::warn!(variable = %name, "unknown XNA_ variable ignored");
                    }
                }
                _ => tracing::warn!(variable = %name, "unknown XNA_ variable ignored"),
            }
        }
        Ok(())
    }

    pub fn flavor(&self) -> Result<Flavor, SettingsError> {
        self.flavor
            .parse()
            .map_err(|e: xray_core_client::ParseFlavorError| invalid("flavor", e.to_string()))
    }

    /// The node key: inline, else from `node_key_file`.
    pub fn node_key(&self) -> Result<NodeKey, SettingsError> {
        let text = match (&self.node_key, &self.node_key_file) {
            (Some(inline), _) => inline.expose().to_owned(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.clone(),
                    source,
                })?
            }
            (None, None) => {
                return Err(invalid(
                    "node_key",
                    "give node_key, node_key_file or XNA_NODE_KEY",
                ));
            }
        };
        text.trim()
            .parse()
            .map_err(|e: crate::envelope::InvalidKey| invalid("node_key", e.to_string()))
    }

    /// The core's arguments with `{config}` filled in.
    pub fn core_args(&self) -> Result<Vec<String>, SettingsError> {
        let config = self.core.generated_config.display().to_string();
        let args: Vec<String> = if self.core.args.is_empty() {
            match self.core_kind()? {
                CoreKind::Xray(Flavor::V2ray) => vec!["-config".into(), "{config}".into()],
                CoreKind::Xray(_) => vec!["run".into(), "-c".into(), "{config}".into()],
                CoreKind::SsManager => vec![
                    "-c".into(),
                    "{config}".into(),
                    "-D".into(),
                    self.ss_manager_work_dir().display().to_string(),
                ],
            }
        } else {
            self.core.args.clone()
        };
        Ok(args
            .into_iter()
            .map(|a| a.replace("{config}", &config))
            .collect())
    }

    /// The usage settings make sense: a journal holds at least 2 batches.
    pub fn validate_usage(&self) -> Result<(), SettingsError> {
        if self.usage_journal_max_batches < 2 {
            return Err(invalid(
                "usage_journal_max_batches",
                "at least 2 (the oldest never-pulled batches are merged to stay under it)",
            ));
        }
        Ok(())
    }

    /// The stats interval; `None` when accounting is off.
    pub fn stats_interval(&self) -> Option<Duration> {
        (self.stats_interval_secs > 0).then(|| Duration::from_secs(self.stats_interval_secs))
    }

    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.core.start_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_then_env_overrides() {
        let mut s = Settings::from_toml(
            r#"
            listen = "127.0.0.1:9000"
            flavor = "v2ray"
            [core]
            binary = "/usr/bin/v2ray"
            generated_config = "/tmp/gen.json"
            [service]
            backend = "systemd"
            unit = "v2ray.service"
            "#,
        )
        .unwrap();
        assert_eq!(s.core_args().unwrap(), ["-config", "/tmp/gen.json"]);
        s.apply_env([
            ("XNA_LISTEN".to_owned(), "127.0.0.1:9001".to_owned()),
            (
                "XNA_NODE_KEY".to_owned(),
                NodeKey::random().expose_base64url(),
            ),
            ("PATH".to_owned(), "/bin".to_owned()),
        ])
        .unwrap();
        assert_eq!(s.listen.port(), 9001);
        assert_eq!(s.service.backend, Backend::Systemd);
        assert!(s.node_key().is_ok());
        assert!(!format!("{s:?}").contains(s.node_key.as_ref().unwrap().expose()));
    }

    #[test]
    fn usage_settings_default_then_toml_then_env() {
        let d = Settings::default();
        assert_eq!(d.state_dir, PathBuf::from("/var/lib/xray-node-agent"));
        assert_eq!(d.stats_interval(), Some(Duration::from_secs(5)));
        assert_eq!(d.usage_journal_max_batches, 720);
        let mut s = Settings::from_toml(
            "state_dir = \"/srv/xna\"\nstats_interval_secs = 0\nusage_journal_max_batches = 10\n",
        )
        .unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/srv/xna"));
        assert_eq!(s.stats_interval(), None, "0 turns accounting off");
        assert_eq!(s.usage_journal_max_batches, 10);
        s.apply_env([
            ("XNA_STATE_DIR".to_owned(), "/srv/other".to_owned()),
            ("XNA_STATS_INTERVAL_SECS".to_owned(), "2".to_owned()),
            ("XNA_USAGE_JOURNAL_MAX_BATCHES".to_owned(), "30".to_owned()),
        ])
        .unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/srv/other"));
        assert_eq!(s.stats_interval(), Some(Duration::from_secs(2)));
        assert_eq!(s.usage_journal_max_batches, 30);
        assert!(
            s.apply_env([("XNA_STATS_INTERVAL_SECS".to_owned(), "often".to_owned())])
                .is_err()
        );
        s.usage_journal_max_batches = 1;
        assert!(s.validate_usage().is_err());
    }

    #[test]
    fn unknown_keys_and_bad_keys_are_refused() {
        assert!(Settings::from_toml("lisen = \"x\"").is_err());
        let s = Settings {
            node_key: Some(Secret::new("too-short")),
            ..Settings::default()
        };
        assert!(s.node_key().is_err());
    }
}
