//! A user's devices: the client apps that fetched the user's subscription
//! with a hardware id (`x-hwid`, sent by Happ, v2RayTun and others), and
//! the per-user limit on how many may.

use serde::{Deserialize, Serialize};

use super::{ParseError, Timestamp};

/// The longest hardware id accepted (Remnawave's rule: 10 to 64 of
/// `A-Z a-z 0-9 = - _`).
pub const MAX_HWID_LEN: usize = 64;
/// The shortest.
pub const MIN_HWID_LEN: usize = 10;
/// What is kept of each descriptive header (OS, version, model, app).
pub const MAX_DEVICE_TEXT: usize = 128;

/// A device as a subscription fetch names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSighting {
    pub hwid: String,
    /// `x-device-os`, `x-ver-os`, `x-device-model`, `User-Agent`: kept
    /// for the admin's list (cut to [`MAX_DEVICE_TEXT`] characters, control
    /// characters dropped).
    pub os: String,
    pub os_version: String,
    pub model: String,
    pub user_agent: String,
}

fn tidy(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DEVICE_TEXT)
        .collect()
}

impl DeviceSighting {
    /// A sighting from the request's headers; a hardware id outside the
    /// rule is refused (the fetch then counts as without one).
    pub fn new(
        hwid: &str,
        os: &str,
        os_version: &str,
        model: &str,
        user_agent: &str,
    ) -> Result<Self, ParseError> {
        let ok = (MIN_HWID_LEN..=MAX_HWID_LEN).contains(&hwid.len())
            && hwid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'-' | b'_'));
        if !ok {
            return Err(ParseError {
                what: "hardware id",
                value: tidy(hwid).chars().take(64).collect(),
            });
        }
        Ok(Self {
            hwid: hwid.to_owned(),
            os: tidy(os),
            os_version: tidy(os_version),
            model: tidy(model),
            user_agent: tidy(user_agent),
        })
    }
}

/// A device recorded for a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub hwid: String,
    pub os: String,
    pub os_version: String,
    pub model: String,
    pub user_agent: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

/// Who may fetch a subscription, for users without a limit of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevicePolicy {
    /// Devices per user; 0: no limit.
    pub default_limit: u32,
    /// Whether a fetch without a hardware id is refused for a user with a
    /// limit (else it is not counted).
    pub require_hwid: bool,
}

/// What recording a sighting decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceVerdict {
    /// Known, or new and within the limit (now recorded).
    Allowed,
    /// New, and the user already has as many devices as the limit allows:
    /// not recorded.
    OverLimit,
}

/// How long a known device's `last_seen` may lag: a fetch within it
/// writes nothing (clients refresh every few hours; a write per fetch
/// would cost the storage for nothing).
pub const LAST_SEEN_STEP_MS: i64 = 60 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_ids_follow_the_rule() {
        for good in ["0123456789", "a-b_c=DEF0123456", &"x".repeat(64)] {
            assert!(DeviceSighting::new(good, "", "", "", "").is_ok(), "{good}");
        }
        for bad in [
            "short",
            &"x".repeat(65),
            "has space 123",
            "ünïcode12345",
            "",
        ] {
            assert!(DeviceSighting::new(bad, "", "", "", "").is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptive_headers_are_tidied() {
        let s = DeviceSighting::new("0123456789", "iOS\n", &"9".repeat(300), "Pixel", "Happ/3")
            .unwrap();
        assert_eq!(s.os, "iOS");
        assert_eq!(s.os_version.len(), MAX_DEVICE_TEXT);
        assert_eq!(s.user_agent, "Happ/3");
    }
}
