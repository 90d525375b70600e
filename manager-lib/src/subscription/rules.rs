//! Which format a client gets: `?format=` when given, else the first rule
//! of the table whose pattern matches the User-Agent, else the HTML page
//! for a browser (`Accept: text/html`), else the base64 link list.
//!
//! The default table covers the common client apps; operators replace it in
//! the settings (`[[subscription.rules]]`). Patterns are case-insensitive
//! regular expressions (the `regex` crate: linear time, so a hostile
//! User-Agent cannot make matching slow).

use regex::RegexSet;
use serde::Deserialize;

use super::Format;

/// One row of the table: a pattern over the User-Agent and the format it
/// picks.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRule {
    /// A regular expression, matched case-insensitively anywhere in the
    /// User-Agent (anchor it with `^` for a prefix).
    pub user_agent: String,
    /// A format name ([`Format::as_str`]).
    pub format: String,
}

impl ClientRule {
    fn new(user_agent: &str, format: Format) -> Self {
        Self {
            user_agent: user_agent.to_owned(),
            format: format.as_str().to_owned(),
        }
    }
}

/// The default table, first match wins (the field's conventions, see
/// CLIENTS.md): Clash Meta / Mihomo apps get YAML, sing-box apps JSON, the
/// Xray-core apps the base64 list they all import.
pub fn default_rules() -> Vec<ClientRule> {
    vec![
        ClientRule::new(
            r"^(clash-verge|clash[-. ]?meta|clashmeta|flclash|mihomo|stash|clashx|koala-clash|clash-nyanpasu|clash)",
            Format::Clash,
        ),
        ClientRule::new(
            r"^(sfa|sfi|sfm|sft|karing|hiddify)|sing-box",
            Format::SingBox,
        ),
        ClientRule::new(
            r"^(v2rayn|v2rayng|v2raytun|v2box|streisand|happ|incy|nekobox|nekoray|shadowrocket|foxray|fair|npvtunnel|v2rayu|v2rayx)",
            Format::Base64,
        ),
    ]
}

/// The table, compiled once.
#[derive(Clone, Debug)]
pub struct ClientRules {
    set: RegexSet,
    formats: Vec<Format>,
}

/// A rule the table cannot use: a pattern that does not compile or a format
/// nobody knows.
#[derive(Debug, thiserror::Error)]
#[error("subscription rule {index} ({pattern:?}): {reason}")]
pub struct RuleError {
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

impl ClientRules {
    /// Compiles `rules`, in order.
    pub fn new(rules: &[ClientRule]) -> Result<Self, RuleError> {
        let mut formats = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let format = Format::parse(&rule.format).ok_or_else(|| RuleError {
                index,
                pattern: rule.user_agent.clone(),
                reason: format!("unknown format {:?}", rule.format),
            })?;
            formats.push(format);
            if let Err(e) = regex::Regex::new(&rule.user_agent) {
                return Err(RuleError {
                    index,
                    pattern: rule.user_agent.clone(),
                    reason: e.to_string(),
                });
            }
        }
        let set = regex::RegexSetBuilder::new(rules.iter().map(|r| &r.user_agent))
            .case_insensitive(true)
            .build()
            .map_err(|e| RuleError {
                index: 0,
                pattern: String::new(),
                reason: e.to_string(),
            })?;
        Ok(Self { set, formats })
    }

    /// The format of the first rule matching `user_agent`, if any.
    pub fn match_user_agent(&self, user_agent: &str) -> Option<Format> {
        let first = self.set.matches(user_agent).into_iter().next()?;
        Some(self.formats[first])
    }

    /// What a request gets: `format` (`?format=`) when it names one, else
    /// the table's choice for the User-Agent, else HTML when `accept`
    /// prefers `text/html`, else the base64 list.
    pub fn choose(&self, format: Option<&str>, user_agent: &str, accept: &str) -> Format {
        if let Some(f) = format.and_then(Format::parse) {
            return f;
        }
        if let Some(f) = self.match_user_agent(user_agent) {
            return f;
        }
        if accept.to_ascii_lowercase().contains("text/html") {
            return Format::Html;
        }
        Format::Base64
    }
}

impl Default for ClientRules {
    fn default() -> Self {
        Self::new(&default_rules()).expect("the default rules compile")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// User-Agent strings real clients send (from their sources and
    /// trackers), with the format the documented table gives them.
    const REAL_AGENTS: &[(&str, Format)] = &[
        ("clash-verge/v2.0.3", Format::Clash),
        ("Clash-Verge/1.3.8", Format::Clash),
        ("ClashMetaForAndroid/2.10.1.Meta", Format::Clash),
        ("clash.meta", Format::Clash),
        (
            "FlClash/v0.8.76 clash-verge Platform/android",
            Format::Clash,
        ),
        ("mihomo/1.19.2", Format::Clash),
        ("Stash/2.4.6 Clash/1.9.0", Format::Clash),
        ("ClashX Meta/v1.3.0", Format::Clash),
        ("clash-nyanpasu/v1.6.1", Format::Clash),
        ("SFA/1.10.1 (Android 14; sing-box 1.10.1)", Format::SingBox),
        ("SFI/1.11.0 (iOS 17.5; sing-box 1.11.0)", Format::SingBox),
        ("SFM/1.9.3", Format::SingBox),
        ("sing-box 1.14.4", Format::SingBox),
        (
            "HiddifyNext/2.5.7 (android) like ClashMeta v2ray sing-box",
            Format::SingBox,
        ),
        ("karing/1.1.2.606 android", Format::SingBox),
        ("v2rayN/7.10.5", Format::Base64),
        ("v2rayNG/1.9.46", Format::Base64),
        ("Streisand", Format::Base64),
        ("Happ/3.1.1", Format::Base64),
        ("v2RayTun/5.16.60 (Android 14)", Format::Base64),
        ("INCY/2.2", Format::Base64),
        ("V2Box 8.4 (iPhone)", Format::Base64),
        (
            "Shadowrocket/2070 CFNetwork/1498.700.2 Darwin/23.6.0",
            Format::Base64,
        ),
        ("NekoBox/Android/1.3.4", Format::Base64),
        ("FoXray/3.1 (iOS)", Format::Base64),
        ("curl/8.5.0", Format::Base64),
        ("", Format::Base64),
    ];

    #[test]
    fn the_default_table_picks_the_documented_format_for_real_clients() {
        let rules = ClientRules::default();
        for (agent, want) in REAL_AGENTS {
            assert_eq!(rules.choose(None, agent, "*/*"), *want, "{agent:?}");
        }
    }

    #[test]
    fn the_query_wins_then_the_agent_then_a_browser() {
        let rules = ClientRules::default();
        let browser =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36";
        let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(rules.choose(None, browser, html), Format::Html);
        assert_eq!(rules.choose(Some("clash"), browser, html), Format::Clash);
        assert_eq!(rules.choose(Some("xray"), "v2rayN/7", ""), Format::Xray);
        assert_eq!(
            rules.choose(Some("unknown"), "v2rayN/7", ""),
            Format::Base64
        );
        assert_eq!(rules.choose(None, "mihomo/1", html), Format::Clash);
    }

    #[test]
    fn an_operators_table_replaces_the_default_and_bad_rules_are_refused() {
        let rules = ClientRules::new(&[
            ClientRule::new("^v2rayn/", Format::Xray),
            ClientRule::new(".", Format::Links),
        ])
        .unwrap();
        assert_eq!(rules.choose(None, "v2rayN/7.10", ""), Format::Xray);
        assert_eq!(rules.choose(None, "mihomo", ""), Format::Links);
        assert!(ClientRules::new(&[ClientRule::new("(", Format::Xray)]).is_err());
        let unknown = ClientRule {
            user_agent: "x".into(),
            format: "yaml".into(),
        };
        assert!(ClientRules::new(&[unknown]).is_err());
        assert_eq!(
            ClientRules::new(&[]).unwrap().choose(None, "x", ""),
            Format::Base64
        );
    }
}
