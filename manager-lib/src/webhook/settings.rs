//! The `[webhooks]` settings: the endpoints (each with its secret, read
//! from a file or an environment variable, never from the settings file
//! itself) and the delivery worker's tuning.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Endpoint, Routes};
use crate::domain::EventKind;
// The one secret wrapper (re-exported as `settings::Secret`), from its
// home crate so that `settings` and `webhook` do not import each other.
use node_agent_lib::secret::Secret;

/// The fewest characters a webhook secret may have.
pub const MIN_SECRET_CHARS: usize = 24;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where events go (`[[webhooks.endpoints]]`); none (the default):
    /// no event is recorded. Env: `XM_WEBHOOKS_ENDPOINTS`, a JSON array.
    pub endpoints: Vec<EndpointSettings>,
    /// Days before a user's expiry that `user.expiring` is sent; 0: never.
    /// Env: `XM_WEBHOOKS_EXPIRING_WITHIN_DAYS`.
    pub expiring_within_days: u32,
    /// The first retry's delay, doubled at each failure. Env:
    /// `XM_WEBHOOKS_RETRY_INITIAL_SECS`.
    pub retry_initial_secs: u64,
    /// The longest delay between two attempts. Env:
    /// `XM_WEBHOOKS_RETRY_MAX_SECS`.
    pub retry_max_secs: u64,
    /// Timeout of one POST. Env: `XM_WEBHOOKS_TIMEOUT_MS`.
    pub timeout_ms: u64,
    /// How often the worker looks for due deliveries. Env:
    /// `XM_WEBHOOKS_POLL_MS`.
    pub poll_ms: u64,
    /// Days a delivered entry stays in the outbox (so that the same event
    /// noticed again is recognised and not sent twice). Env:
    /// `XM_WEBHOOKS_DELIVERED_DAYS_KEPT`.
    pub delivered_days_kept: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            expiring_within_days: 3,
            retry_initial_secs: 5,
            retry_max_secs: 3600,
            timeout_ms: 10_000,
            poll_ms: 1000,
            delivered_days_kept: 7,
        }
    }
}

/// One endpoint as configured.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSettings {
    /// A short name, unique among the endpoints (logs and the outbox).
    pub name: String,
    /// `https://…` (or `http://` to a receiver on the same host).
    pub url: String,
    /// A file holding the signing secret (trailing whitespace ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The events it gets (`user.limited`, …); empty: every event.
    #[serde(default)]
    pub events: Vec<EventKind>,
}

impl WebhookSettings {
    /// Refuses what cannot work: a name empty or used twice, a URL that is
    /// not `http(s)://`, not exactly one secret source, a zero delay or
    /// timeout, a retention shorter than the expiring notice (an event
    /// pruned while still true would be sent again).
    pub fn validate(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for e in &self.endpoints {
            if e.name.trim().is_empty() || e.name.chars().any(char::is_control) {
                return Err("webhooks: every endpoint needs a name".into());
            }
            if !names.insert(e.name.as_str()) {
                return Err(format!("webhooks: endpoint name {:?} used twice", e.name));
            }
            let url = url::Url::parse(&e.url)
                .map_err(|err| format!("webhooks endpoint {:?} url: {err}", e.name))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "webhooks endpoint {:?} url must be http(s)://",
                    e.name
                ));
            }
            if e.secret_file.is_some() == e.secret_env.is_some() {
                return Err(format!(
                    "webhooks endpoint {:?}: set exactly one of secret_file and secret_env",
                    e.name
                ));
            }
        }
        if self.retry_initial_secs == 0 || self.retry_max_secs < self.retry_initial_secs {
            return Err(
                "webhooks: retry_initial_secs must be above 0 and at most retry_max_secs".into(),
            );
        }
        if self.timeout_ms == 0 || self.poll_ms == 0 {
            return Err("webhooks: timeout_ms and poll_ms must be above 0".into());
        }
        if self.delivered_days_kept == 0 || self.delivered_days_kept <= self.expiring_within_days {
            return Err(
                "webhooks: delivered_days_kept must be above 0 and above expiring_within_days"
                    .into(),
            );
        }
        Ok(())
    }

    /// Applies the `XM_WEBHOOKS_*` variables.
    pub fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        fn parse<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("{k}: cannot parse {v:?}"))
        }
        if let Some(v) = var("XM_WEBHOOKS_ENDPOINTS") {
            self.endpoints = serde_json::from_str(&v)
                .map_err(|e| format!("XM_WEBHOOKS_ENDPOINTS (a JSON array): {e}"))?;
        }
        if let Some(v) = var("XM_WEBHOOKS_EXPIRING_WITHIN_DAYS") {
            self.expiring_within_days = parse("XM_WEBHOOKS_EXPIRING_WITHIN_DAYS", &v)?;
        }
        if let Some(v) = var("XM_WEBHOOKS_RETRY_INITIAL_SECS") {
            self.retry_initial_secs = parse("XM_WEBHOOKS_RETRY_INITIAL_SECS", &v)?;
        }
        if let Some(v) = var("XM_WEBHOOKS_RETRY_MAX_SECS") {
            self.retry_max_secs = parse("XM_WEBHOOKS_RETRY_MAX_SECS", &v)?;
        }
        if let Some(v) = var("XM_WEBHOOKS_TIMEOUT_MS") {
            self.timeout_ms = parse("XM_WEBHOOKS_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("XM_WEBHOOKS_POLL_MS") {
            self.poll_ms = parse("XM_WEBHOOKS_POLL_MS", &v)?;
        }
        if let Some(v) = var("XM_WEBHOOKS_DELIVERED_DAYS_KEPT") {
            self.delivered_days_kept = parse("XM_WEBHOOKS_DELIVERED_DAYS_KEPT", &v)?;
        }
        Ok(())
    }

    /// The endpoints with their secrets read (from the file or the
    /// variable `var` gives). The error names the endpoint, never the
    /// secret.
    pub fn endpoints(
        &self,
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Endpoint>, String> {
        self.endpoints
            .iter()
            .map(|e| {
                let secret = match (&e.secret_file, &e.secret_env) {
                    (Some(path), _) => std::fs::read_to_string(path).map_err(|err| {
                        format!(
                            "webhooks endpoint {:?}: cannot read {}: {err}",
                            e.name,
                            path.display()
                        )
                    })?,
                    (None, Some(name)) => var(name).ok_or_else(|| {
                        format!("webhooks endpoint {:?}: {name} is not set", e.name)
                    })?,
                    (None, None) => {
                        return Err(format!("webhooks endpoint {:?}: no secret", e.name));
                    }
                };
                let secret = secret.trim_end();
                if secret.chars().count() < MIN_SECRET_CHARS {
                    return Err(format!(
                        "webhooks endpoint {:?}: the secret is under {MIN_SECRET_CHARS} \
                         characters (e.g. `openssl rand -hex 32`)",
                        e.name
                    ));
                }
                let url = url::Url::parse(&e.url)
                    .map_err(|err| format!("webhooks endpoint {:?} url: {err}", e.name))?;
                Ok(Endpoint {
                    name: e.name.clone(),
                    url,
                    secret: Secret::new(secret),
                    events: e.events.iter().copied().collect(),
                })
            })
            .collect()
    }

    /// The delivery worker's tuning.
    pub fn delivery(&self) -> super::DeliverySettings {
        super::DeliverySettings {
            retry_initial: Duration::from_secs(self.retry_initial_secs),
            retry_max: Duration::from_secs(self.retry_max_secs),
            timeout: Duration::from_millis(self.timeout_ms),
            poll: Duration::from_millis(self.poll_ms),
            delivered_days_kept: self.delivered_days_kept,
            ..super::DeliverySettings::default()
        }
    }

    /// Which endpoint gets which event (no secrets), for the manager.
    pub fn routes(&self) -> Routes {
        Routes::new(
            self.endpoints
                .iter()
                .map(|e| (e.name.clone(), e.events.iter().copied().collect())),
        )
    }
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
