//! The manager's settings: typed, with defaults, read from a TOML file and
//! then from `XM_*` environment variables (env wins). Secrets are redacted in
//! `Debug`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use node_agent_lib::listener::ListenerSettings;
use node_agent_lib::tls::TlsSettings;
use serde::Deserialize;

use crate::api::admin_auth::{self, FailureLimit};
use crate::api::client_addr::TrustedProxies;
use crate::seal::{KeySource, Sealer, SecretsSettings};
use crate::subscription::SubscriptionSettings;
use crate::webhook::WebhookSettings;

mod containment;

pub use containment::ContainmentSettings;

/// A secret setting; `Debug` never shows it (the agent's settings use the
/// same type).
pub use node_agent_lib::secret::Secret;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerConfig {
    /// Address of the HTTP API. Env: `XM_LISTEN`.
    pub listen: SocketAddr,
    /// Where the default SQLite file and the generated admin token live. Env: `XM_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `sqlite://FILE` or `postgres://…`; default: `sqlite://<data_dir>/manager.db`.
    /// Env: `XM_STORAGE_URL`. May hold a password: never logged.
    pub storage_url: Option<Secret>,
    /// `memory` (default) or `redis://…`. Env: `XM_CACHE_URL`.
    pub cache_url: Secret,
    /// Time between heartbeats, in milliseconds (default 5000). Env: `XM_HEARTBEAT_MS`.
    pub heartbeat_ms: u64,
    /// Timeout of one call to a node, in milliseconds (default 10000). Env: `XM_NODE_TIMEOUT_MS`.
    pub node_timeout_ms: u64,
    /// Nodes reconciled at once (default 32). Env: `XM_CONCURRENCY`.
    pub concurrency: usize,
    /// Days of usage history kept per user, per node, per day (default
    /// 400). Env: `XM_USAGE_DAYS_KEPT`.
    pub usage_days_kept: u32,
    /// Hours of usage history kept per node, per hour (default 2160, 90
    /// days). Env: `XM_USAGE_NODE_HOURS_KEPT`.
    pub usage_node_hours_kept: u32,
    /// Days of audit entries kept (default 365); older ones are pruned
    /// hourly. Env: `XM_AUDIT_DAYS_KEPT`.
    pub audit_days_kept: u32,
    /// The admin bearer token: at least 32 visible ASCII characters with at
    /// least 8 distinct ones (e.g. `openssl rand -hex 32`); anything weaker,
    /// or set but empty, is refused at start. When unset, one is generated on
    /// first start and stored in `<data_dir>/admin-token` (mode 0600); only
    /// that path is printed. Env: `XM_ADMIN_TOKEN`.
    pub admin_token: Option<Secret>,
    /// Failed admin calls (no or wrong token) a client address may make
    /// before its admin calls answer 429, 0 for no limit (default 10).
    /// Env: `XM_ADMIN_FAILURE_BURST`.
    pub admin_failure_burst: u32,
    /// Seconds after which a client may fail once more (default 60).
    /// Env: `XM_ADMIN_FAILURE_REFILL_SECS`.
    pub admin_failure_refill_secs: u64,
    /// Logs as JSON lines instead of text. Env: `XM_LOG_JSON`.
    pub log_json: bool,
    /// User node-list calls a client address may make per second, 0 for no
    /// limit (default 20). Env: `XM_NODE_LIST_RATE`.
    pub node_list_rate: u32,
    /// Calls a client may make at once before the rate applies (default 40).
    /// Env: `XM_NODE_LIST_BURST`.
    pub node_list_burst: u32,
    /// A second address serving only `GET /metrics`, without the admin
    /// token: keep it private. Unset (the default): metrics are on the API
    /// address, behind the token. Env: `XM_METRICS_LISTEN`.
    pub metrics_listen: Option<SocketAddr>,
    /// The reverse proxies (addresses or networks) whose `X-Forwarded-For`
    /// names the client for the per-client limits and the logs; empty (the
    /// default): the peer's address always. Env: `XM_TRUSTED_PROXIES`
    /// (comma-separated).
    pub trusted_proxies: TrustedProxies,
    /// Limits of the API and metrics listeners: header-read and idle
    /// timeouts, connection cap, header bytes, HTTP/2 streams (`[http]`;
    /// env `XM_HTTP_HEADER_READ_TIMEOUT_MS`, `XM_HTTP_IDLE_TIMEOUT_MS`,
    /// `XM_HTTP_MAX_CONNECTIONS`, `XM_HTTP_MAX_HEADER_BYTES`, `XM_HTTP_HTTP2`,
    /// `XM_HTTP_HTTP2_MAX_STREAMS`, `XM_HTTP_SHUTDOWN_GRACE_MS`).
    pub http: ListenerSettings,
    /// HTTPS on the API address (`[tls]`: `cert`, `key`,
    /// `reload_interval_secs`; env `XM_TLS_CERT`, `XM_TLS_KEY`,
    /// `XM_TLS_RELOAD_INTERVAL_SECS`); absent (the default): plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Subscriptions (`[subscription]`; env `XM_SUBSCRIPTION_*`): see
    /// [`SubscriptionSettings`].
    pub subscription: SubscriptionSettings,
    /// Signed webhooks (`[webhooks]`; env `XM_WEBHOOKS_*`): see
    /// [`WebhookSettings`].
    pub webhooks: WebhookSettings,
    /// The master key sealing node keys and user secrets at rest
    /// (`[secrets]`; env `XM_MASTER_KEY`, `XM_SECRETS_*`): see
    /// [`SecretsSettings`].
    pub secrets: SecretsSettings,
    /// What a compromised node can reach beyond itself (`[containment]`;
    /// env `XM_CONTAINMENT_*`): see [`ContainmentSettings`].
    pub containment: ContainmentSettings,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            storage_url: None,
            cache_url: Secret::new("memory"),
            heartbeat_ms: 5000,
            node_timeout_ms: 10_000,
            concurrency: 32,
            usage_days_kept: 400,
            usage_node_hours_kept: 24 * 90,
            audit_days_kept: 365,
            admin_token: None,
            admin_failure_burst: 10,
            admin_failure_refill_secs: 60,
            log_json: false,
            node_list_rate: 20,
            node_list_burst: 40,
            metrics_listen: None,
            trusted_proxies: TrustedProxies::default(),
            http: ListenerSettings::default(),
            tls: None,
            subscription: SubscriptionSettings::default(),
            webhooks: WebhookSettings::default(),
            secrets: SecretsSettings::default(),
            containment: ContainmentSettings::default(),
        }
    }
}

impl ManagerConfig {
    /// Reads `file` (when given) over the defaults, then the `XM_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let mut cfg: Self = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses settings that cannot work or would be unsafe; the error
    /// names the setting.
    fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("heartbeat_ms must be above 0".into());
        }
        if self.usage_days_kept == 0 || self.usage_node_hours_kept == 0 {
            return Err("usage_days_kept and usage_node_hours_kept must be above 0".into());
        }
        if self.audit_days_kept == 0 {
            return Err("audit_days_kept must be above 0".into());
        }
        if let Some(token) = &self.admin_token {
            admin_auth::check_strength(token.expose()).map_err(|e| {
                format!(
                    "the admin token (admin_token / XM_ADMIN_TOKEN) {e}: set a random one of at \
                     least {} characters (e.g. `openssl rand -hex 32`), or leave it unset \
                     (not empty) to have one generated in {}",
                    admin_auth::MIN_TOKEN_CHARS,
                    self.data_dir.join(ADMIN_TOKEN_FILE).display()
                )
            })?;
        }
        if self.admin_failure_burst > 0 && self.admin_failure_refill_secs == 0 {
            return Err(
                "admin_failure_refill_secs must be above 0 (or admin_failure_burst 0 for no limit)"
                    .into(),
            );
        }
        self.http.validate()?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        self.subscription.validate()?;
        self.webhooks.validate()?;
        self.secrets.validate()?;
        Ok(())
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        fn parse<T: std::str::FromStr>(k: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{k}: cannot parse {v:?}"))
        }
        if let Some(v) = var("XM_LISTEN") {
            self.listen = parse("XM_LISTEN", v)?;
        }
        if let Some(v) = var("XM_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("XM_STORAGE_URL") {
            self.storage_url = Some(Secret::new(v));
        }
        if let Some(v) = var("XM_CACHE_URL") {
            self.cache_url = Secret::new(v);
        }
        if let Some(v) = var("XM_HEARTBEAT_MS") {
            self.heartbeat_ms = parse("XM_HEARTBEAT_MS", v)?;
        }
        if let Some(v) = var("XM_NODE_TIMEOUT_MS") {
            self.node_timeout_ms = parse("XM_NODE_TIMEOUT_MS", v)?;
        }
        if let Some(v) = var("XM_CONCURRENCY") {
            self.concurrency = parse("XM_CONCURRENCY", v)?;
        }
        if let Some(v) = var("XM_USAGE_DAYS_KEPT") {
            self.usage_days_kept = parse("XM_USAGE_DAYS_KEPT", v)?;
        }
        if let Some(v) = var("XM_USAGE_NODE_HOURS_KEPT") {
            self.usage_node_hours_kept = parse("XM_USAGE_NODE_HOURS_KEPT", v)?;
        }
        if let Some(v) = var("XM_AUDIT_DAYS_KEPT") {
            self.audit_days_kept = parse("XM_AUDIT_DAYS_KEPT", v)?;
        }
        if let Some(v) = var("XM_ADMIN_TOKEN") {
            self.admin_token = Some(Secret::new(v));
        }
        if let Some(v) = var("XM_ADMIN_FAILURE_BURST") {
            self.admin_failure_burst = parse("XM_ADMIN_FAILURE_BURST", v)?;
        }
        if let Some(v) = var("XM_ADMIN_FAILURE_REFILL_SECS") {
            self.admin_failure_refill_secs = parse("XM_ADMIN_FAILURE_REFILL_SECS", v)?;
        }
        if let Some(v) = var("XM_NODE_LIST_RATE") {
            self.node_list_rate = parse("XM_NODE_LIST_RATE", v)?;
        }
        if let Some(v) = var("XM_NODE_LIST_BURST") {
            self.node_list_burst = parse("XM_NODE_LIST_BURST", v)?;
        }
        if let Some(v) = var("XM_METRICS_LISTEN") {
            self.metrics_listen = match v.trim() {
                "" => None,
                v => Some(parse("XM_METRICS_LISTEN", v.to_owned())?),
            };
        }
        if let Some(v) = var("XM_TRUSTED_PROXIES") {
            self.trusted_proxies =
                TrustedProxies::parse_list(&v).map_err(|e| format!("XM_TRUSTED_PROXIES: {e}"))?;
        }
        for key in TlsSettings::KEYS {
            if let Some(v) = var(&format!("XM_{key}")) {
                TlsSettings::set(&mut self.tls, key, &v).map_err(|e| format!("XM_{e}"))?;
            }
        }
        for key in ListenerSettings::KEYS {
            if let Some(v) = var(&format!("XM_HTTP_{key}")) {
                self.http.set(key, &v).map_err(|e| format!("XM_HTTP_{e}"))?;
            }
        }
        self.subscription.apply_env(&var)?;
        self.webhooks.apply_env(&var)?;
        self.secrets.apply_env(&var)?;
        self.containment.apply_env(&var)?;
        if let Some(v) = var("XM_LOG_JSON") {
            self.log_json = matches!(v.as_str(), "1" | "true" | "yes");
        }
        Ok(())
    }

    /// The per-client limit of the user node-list call, `None` when off.
    pub fn node_list_limit(&self) -> Option<crate::api::ratelimit::RateLimit> {
        (self.node_list_rate > 0).then(|| crate::api::ratelimit::RateLimit {
            per_second: self.node_list_rate,
            burst: self.node_list_burst.max(1),
            ..crate::api::ratelimit::RateLimit::default()
        })
    }

    /// The per-client budget of failed admin calls, `None` when off.
    pub fn admin_failure_limit(&self) -> Option<FailureLimit> {
        (self.admin_failure_burst > 0).then(|| FailureLimit {
            failures: self.admin_failure_burst,
            refill_every: Duration::from_secs(self.admin_failure_refill_secs.max(1)),
            ..FailureLimit::default()
        })
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    /// The storage URL, with the SQLite default under the data directory.
    pub fn storage_url(&self) -> String {
        match &self.storage_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("manager.db").display()),
        }
    }

    /// The sealer of the secret columns (see [`SecretsSettings::sealer`]):
    /// a key file is generated only for the embedded SQLite storage.
    pub fn sealer(&self) -> Result<(Sealer, KeySource), String> {
        let embedded = self.storage_url().starts_with("sqlite://");
        self.secrets.sealer(&self.data_dir, embedded)
    }

    /// Where a generated admin token is kept.
    pub fn admin_token_file(&self) -> PathBuf {
        self.data_dir.join(ADMIN_TOKEN_FILE)
    }

    /// Creates the data directory (and missing parents) readable by its
    /// owner only (0700), whatever the umask; an existing one is left as is.
    pub fn create_data_dir(&self) -> std::io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.data_dir)
    }

    /// The admin token: the configured one, else the one stored in the data
    /// directory, else a new random one that is stored (mode 0600). The flag
    /// says whether it was just generated (the caller says where it is; the
    /// token itself is never printed). A stored token weaker than
    /// [`admin_auth::check_strength`] allows is refused.
    pub fn admin_token(&self) -> std::io::Result<(Secret, bool)> {
        if let Some(token) = &self.admin_token {
            return Ok((token.clone(), false));
        }
        let path = self.admin_token_file();
        match std::fs::read_to_string(&path) {
            Ok(token) if !token.trim().is_empty() => {
                let token = token.trim();
                admin_auth::check_strength(token).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the token in {} {e}: replace it with a random one, or delete the file to have one generated",
                            path.display()
                        ),
                    )
                })?;
                return Ok((Secret::new(token), false));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.create_data_dir()?;
        let token = generate_token();
        write_private(&path, token.as_bytes())?;
        Ok((Secret::new(token), true))
    }
}

/// The name of the generated admin token's file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// 32 random bytes as base64url (43 characters); drawn again in the
/// vanishingly rare case that it would fail the strength rules.
fn generate_token() -> String {
    loop {
        let token = crate::domain::NodeKey::random().expose_base64url();
        if admin_auth::check_strength(&token).is_ok() {
            return token;
        }
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_the_file_and_secrets_are_redacted() {
        let mut cfg: ManagerConfig =
            toml::from_str("heartbeat_ms = 3000\nadmin_token = \"hunter2\"").unwrap();
        assert_eq!(cfg.heartbeat(), Duration::from_secs(3));
        cfg.apply_env(|k| (k == "XM_HEARTBEAT_MS").then(|| "7000".to_owned()))
            .unwrap();
        assert_eq!(cfg.heartbeat(), Duration::from_secs(7));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(cfg.storage_url().starts_with("sqlite://"));
        assert!(toml::from_str::<ManagerConfig>("nope = 1").is_err());
        assert_eq!(cfg.metrics_listen, None);
        cfg.apply_env(|k| (k == "XM_METRICS_LISTEN").then(|| "127.0.0.1:9100".to_owned()))
            .unwrap();
        assert_eq!(
            cfg.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
        assert!(cfg.apply_env(|_| Some("x".into())).is_err());
    }

    /// The settings as `load` would finish them from these variables.
    fn from_env(vars: &[(&str, &str)]) -> Result<ManagerConfig, String> {
        let mut cfg = ManagerConfig::default();
        cfg.apply_env(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn an_empty_blank_short_or_patterned_admin_token_is_refused_with_a_clear_error() {
        for (value, why) in [
            ("", "is empty"),
            ("   ", "is empty"),
            ("tok", "has 3 characters; at least 32"),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "distinct characters",
            ),
            (" 2f5c0b1e9d8a7f6e5d4c3b2a19081726", "visible ASCII"),
        ] {
            let err = from_env(&[("XM_ADMIN_TOKEN", value)]).unwrap_err();
            assert!(err.contains("XM_ADMIN_TOKEN"), "{err}");
            assert!(err.contains(why), "{value:?}: {err}");
            assert!(err.contains("leave it unset"), "{err}");
        }
        let toml: ManagerConfig = toml::from_str("admin_token = \"\"").unwrap();
        assert!(toml.validate().unwrap_err().contains("is empty"));
        let strong = "2f5c0b1e9d8a7f6e5d4c3b2a19081726";
        let cfg = from_env(&[("XM_ADMIN_TOKEN", strong)]).unwrap();
        assert_eq!(cfg.admin_token.unwrap().expose(), strong);
        assert!(from_env(&[]).unwrap().admin_token.is_none());
    }

    #[test]
    fn a_weak_token_in_the_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ManagerConfig {
            data_dir: dir.path().to_owned(),
            ..ManagerConfig::default()
        };
        std::fs::write(cfg.admin_token_file(), "hunter2\n").unwrap();
        let err = cfg.admin_token().unwrap_err().to_string();
        assert!(err.contains("has 7 characters"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_admin_failure_budget_is_on_by_default_and_can_be_turned_off() {
        let cfg = from_env(&[]).unwrap();
        assert_eq!(cfg.admin_failure_limit(), Some(FailureLimit::default()));
        let cfg = from_env(&[
            ("XM_ADMIN_FAILURE_BURST", "3"),
            ("XM_ADMIN_FAILURE_REFILL_SECS", "5"),
        ])
        .unwrap();
        let limit = cfg.admin_failure_limit().unwrap();
        assert_eq!(
            (limit.failures, limit.refill_every),
            (3, Duration::from_secs(5))
        );
        assert_eq!(
            from_env(&[("XM_ADMIN_FAILURE_BURST", "0")])
                .unwrap()
                .admin_failure_limit(),
            None
        );
        assert!(from_env(&[("XM_ADMIN_FAILURE_REFILL_SECS", "0")]).is_err());
    }

    #[test]
    fn listener_limits_come_from_the_file_then_the_env() {
        let mut cfg: ManagerConfig =
            toml::from_str("[http]\nheader_read_timeout_ms = 2000\nmax_connections = 10").unwrap();
        assert_eq!(cfg.http.header_read_timeout_ms, 2000);
        assert_eq!(
            cfg.http.idle_timeout_ms,
            ListenerSettings::default().idle_timeout_ms
        );
        cfg.apply_env(|k| (k == "XM_HTTP_MAX_CONNECTIONS").then(|| "20".to_owned()))
            .unwrap();
        assert_eq!(cfg.http.max_connections, 20);
        let bad = cfg.apply_env(|k| (k == "XM_HTTP_IDLE_TIMEOUT_MS").then(|| "soon".to_owned()));
        assert!(bad.unwrap_err().contains("XM_HTTP_IDLE_TIMEOUT_MS"));
        assert!(toml::from_str::<ManagerConfig>("[http]\nnope = 1").is_err());
    }

    #[test]
    fn tls_and_trusted_proxies_come_from_the_file_then_the_env() {
        let cfg = from_env(&[]).unwrap();
        assert!(cfg.tls.is_none() && cfg.trusted_proxies.is_empty());
        let mut cfg: ManagerConfig = toml::from_str(
            "trusted_proxies = [\"10.0.0.0/8\"]\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"",
        )
        .unwrap();
        assert!(cfg.trusted_proxies.contains("10.2.3.4".parse().unwrap()));
        assert_eq!(cfg.tls.as_ref().unwrap().reload_interval_secs, 10);
        cfg.apply_env(|k| match k {
            "XM_TRUSTED_PROXIES" => Some("192.0.2.1, ::1".to_owned()),
            "XM_TLS_RELOAD_INTERVAL_SECS" => Some("60".to_owned()),
            _ => None,
        })
        .unwrap();
        assert!(!cfg.trusted_proxies.contains("10.2.3.4".parse().unwrap()));
        assert!(cfg.trusted_proxies.contains("::1".parse().unwrap()));
        assert_eq!(cfg.tls.as_ref().unwrap().reload_interval_secs, 60);
        let bad = from_env(&[("XM_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local")]);
        assert!(bad.unwrap_err().contains("proxy.local"));
        let half = from_env(&[("XM_TLS_CERT", "/etc/xm/cert.pem")]);
        assert!(half.unwrap_err().contains("tls.key"));
        assert!(toml::from_str::<ManagerConfig>("trusted_proxies = [\"x\"]").is_err());
    }

    #[test]
    fn a_generated_admin_token_is_stored_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ManagerConfig {
            data_dir: dir.path().to_owned(),
            ..ManagerConfig::default()
        };
        let (first, generated) = cfg.admin_token().unwrap();
        assert!(generated);
        assert_eq!(admin_auth::check_strength(first.expose()), Ok(()));
        let (again, generated) = cfg.admin_token().unwrap();
        assert!(!generated);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("admin-token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
