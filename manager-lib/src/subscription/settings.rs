//! What the operator sets for subscriptions (`[subscription]` in the
//! manager's settings file; `XM_SUBSCRIPTION_*` in the environment): where the URL
//! lives, what clients show about the profile, and the rule table.

use serde::Deserialize;

use super::rules::{ClientRule, ClientRules, RuleError, default_rules};

/// The longest announce text clients show (Happ cuts at 200 characters).
pub const MAX_ANNOUNCE_CHARS: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// The public base URL of the subscription links the admin API shows
    /// (e.g. `https://sub.example.com`); unset: the links are shown as
    /// paths (`/sub/<token>`). Env: `XM_SUBSCRIPTION_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// The profile's name in client apps (`profile-title`); `{name}` is
    /// replaced with the user's name. Env: `XM_SUBSCRIPTION_TITLE`.
    pub title: String,
    /// Hours between a client's refreshes (`profile-update-interval`,
    /// default 12). Env: `XM_SUBSCRIPTION_UPDATE_INTERVAL_HOURS`.
    pub update_interval_hours: u32,
    /// A support link clients show (`support-url`). Env: `XM_SUBSCRIPTION_SUPPORT_URL`.
    pub support_url: Option<String>,
    /// The provider's page clients link to (`profile-web-page-url`).
    /// Env: `XM_SUBSCRIPTION_WEB_PAGE_URL`.
    pub web_page_url: Option<String>,
    /// A short text clients show above the list (`announce`, at most 200
    /// characters). Env: `XM_SUBSCRIPTION_ANNOUNCE`.
    pub announce: Option<String>,
    /// How many devices (client apps sending `x-hwid`) may fetch a user's
    /// subscription, for users without a limit of their own; 0: no limit.
    /// Env: `XM_SUBSCRIPTION_DEVICE_LIMIT`.
    pub device_limit: u32,
    /// Whether a fetch without `x-hwid` lists nothing for a user with a
    /// device limit (else it is not counted). Env:
    /// `XM_SUBSCRIPTION_REQUIRE_HWID`.
    pub require_hwid: bool,
    /// The User-Agent rule table, first match wins; replaces the default
    /// table when set (`[[subscription.rules]]` with `user_agent` and
    /// `format`). Env: `XM_SUBSCRIPTION_RULES`, the table as a JSON array.
    pub rules: Vec<ClientRule>,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            title: "{name}".into(),
            update_interval_hours: 12,
            support_url: None,
            web_page_url: None,
            announce: None,
            device_limit: 0,
            require_hwid: false,
            rules: default_rules(),
        }
    }
}

impl SubscriptionSettings {
    /// Refuses what cannot work: a rule that does not compile, a title or
    /// URL with control characters, a base URL that is not `http(s)://`, an
    /// announce text over [`MAX_ANNOUNCE_CHARS`], an interval of 0.
    pub fn validate(&self) -> Result<(), String> {
        self.client_rules().map_err(|e| e.to_string())?;
        let header_safe = |what: &str, v: &str| {
            if v.chars().any(char::is_control) {
                Err(format!("subscription {what} has control characters"))
            } else {
                Ok(())
            }
        };
        header_safe("title", &self.title)?;
        for (what, url) in [
            ("public_url", &self.public_url),
            ("support_url", &self.support_url),
            ("web_page_url", &self.web_page_url),
        ] {
            if let Some(url) = url {
                header_safe(what, url)?;
                let parsed = url::Url::parse(url)
                    .map_err(|e| format!("subscription {what} {url:?}: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!("subscription {what} must be http(s)://"));
                }
            }
        }
        if let Some(a) = &self.announce {
            if a.chars().count() > MAX_ANNOUNCE_CHARS {
                return Err(format!(
                    "subscription announce is over {MAX_ANNOUNCE_CHARS} characters"
                ));
            }
        }
        if self.update_interval_hours == 0 {
            return Err("subscription update_interval_hours must be above 0".into());
        }
        Ok(())
    }

    pub fn client_rules(&self) -> Result<ClientRules, RuleError> {
        ClientRules::new(&self.rules)
    }

    /// The device limit these settings set.
    pub fn device_policy(&self) -> crate::domain::DevicePolicy {
        crate::domain::DevicePolicy {
            default_limit: self.device_limit,
            require_hwid: self.require_hwid,
        }
    }

    /// The profile's name for a user.
    pub fn title_for(&self, user_name: &str) -> String {
        self.title.replace("{name}", user_name)
    }

    /// The URL (or path) of a subscription token.
    pub fn url_for(&self, token: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{}/sub/{token}", base.trim_end_matches('/')),
            None => format!("/sub/{token}"),
        }
    }

    /// Applies the `XM_SUBSCRIPTION_*` variables.
    pub fn apply_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let text = |v: String| (!v.trim().is_empty()).then_some(v);
        if let Some(v) = var("XM_SUBSCRIPTION_PUBLIC_URL") {
            self.public_url = text(v);
        }
        if let Some(v) = var("XM_SUBSCRIPTION_TITLE") {
            self.title = v;
        }
        if let Some(v) = var("XM_SUBSCRIPTION_UPDATE_INTERVAL_HOURS") {
            self.update_interval_hours = v.parse().map_err(|_| {
                format!("XM_SUBSCRIPTION_UPDATE_INTERVAL_HOURS: cannot parse {v:?}")
            })?;
        }
        if let Some(v) = var("XM_SUBSCRIPTION_SUPPORT_URL") {
            self.support_url = text(v);
        }
        if let Some(v) = var("XM_SUBSCRIPTION_WEB_PAGE_URL") {
            self.web_page_url = text(v);
        }
        if let Some(v) = var("XM_SUBSCRIPTION_ANNOUNCE") {
            self.announce = text(v);
        }
        if let Some(v) = var("XM_SUBSCRIPTION_DEVICE_LIMIT") {
            self.device_limit = v
                .parse()
                .map_err(|_| format!("XM_SUBSCRIPTION_DEVICE_LIMIT: cannot parse {v:?}"))?;
        }
        if let Some(v) = var("XM_SUBSCRIPTION_REQUIRE_HWID") {
            self.require_hwid = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = var("XM_SUBSCRIPTION_RULES") {
            self.rules = serde_json::from_str(&v)
                .map_err(|e| format!("XM_SUBSCRIPTION_RULES: not a JSON array of rules: {e}"))?;
        }
        Ok(())
    }
}

/// The settings checked, with the rule table compiled: what the
/// subscription call reads, prepared once.
#[derive(Clone, Debug)]
pub struct Subscriptions {
    settings: SubscriptionSettings,
    rules: ClientRules,
}

impl Subscriptions {
    /// Settings that fail [`SubscriptionSettings::validate`] are refused.
    pub fn new(settings: SubscriptionSettings) -> Result<Self, String> {
        settings.validate()?;
        let rules = settings.client_rules().map_err(|e| e.to_string())?;
        Ok(Self { settings, rules })
    }

    pub fn settings(&self) -> &SubscriptionSettings {
        &self.settings
    }

    pub fn rules(&self) -> &ClientRules {
        &self.rules
    }
}

impl Default for Subscriptions {
    fn default() -> Self {
        Self::new(SubscriptionSettings::default()).expect("the defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_the_user() {
        let s = SubscriptionSettings::default();
        s.validate().unwrap();
        assert_eq!(s.title_for("alice"), "alice");
        assert_eq!(s.url_for("tok"), "/sub/tok");
    }

    #[test]
    fn a_settings_file_replaces_the_rule_table() {
        let s: SubscriptionSettings = toml::from_str(
            "public_url = \"https://sub.example.com/\"\n\
             [[rules]]\nuser_agent = \"^happ/\"\nformat = \"xray\"\n",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.rules.len(), 1);
        assert_eq!(s.url_for("t"), "https://sub.example.com/sub/t");
        let rules = s.client_rules().unwrap();
        assert_eq!(rules.choose(None, "Happ/3", ""), super::super::Format::Xray);
    }

    #[test]
    fn unusable_settings_are_refused() {
        for bad in [
            "[[rules]]\nuser_agent = \"(\"\nformat = \"xray\"",
            "[[rules]]\nuser_agent = \"x\"\nformat = \"yaml\"",
            "public_url = \"ftp://x\"",
            "title = \"a\\nb\"",
            "update_interval_hours = 0",
        ] {
            let s: SubscriptionSettings = toml::from_str(bad).unwrap();
            assert!(s.validate().is_err(), "{bad}");
        }
        let long = SubscriptionSettings {
            announce: Some("x".repeat(MAX_ANNOUNCE_CHARS + 1)),
            ..Default::default()
        };
        assert!(long.validate().is_err());
    }

    #[test]
    fn the_environment_overrides() {
        let mut s = SubscriptionSettings::default();
        s.apply_env(&|k| match k {
            "XM_SUBSCRIPTION_TITLE" => Some("VPN · {name}".into()),
            "XM_SUBSCRIPTION_UPDATE_INTERVAL_HOURS" => Some("6".into()),
            "XM_SUBSCRIPTION_ANNOUNCE" => Some("".into()),
            "XM_SUBSCRIPTION_RULES" => {
                Some(r#"[{"user_agent": "^happ/", "format": "xray"}]"#.into())
            }
            _ => None,
        })
        .unwrap();
        assert_eq!(s.title_for("bob"), "VPN · bob");
        assert_eq!(s.update_interval_hours, 6);
        assert_eq!(s.announce, None);
        assert_eq!(
            s.client_rules().unwrap().choose(None, "Happ/3", ""),
            super::super::Format::Xray
        );
        assert!(
            s.apply_env(&|k| (k == "XM_SUBSCRIPTION_RULES").then(|| "[1]".into()))
                .is_err()
        );
    }
}
