//! A user's devices (`user devices`, `user forget-device`) and device limit
//! (`user device-limit`): the client apps that fetched the user's
//! subscription with a hardware id.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{Client, UserAnswer};
use super::error::CliError;
use super::output::{table, when};

/// One device as the API shows it (times in Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub hwid: String,
    pub os: String,
    pub os_version: String,
    pub model: String,
    pub user_agent: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// The answer of `GET /users/{id}/devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevicesAnswer {
    pub devices: Vec<DeviceView>,
}

impl Client {
    /// `GET /users/{id}/devices`.
    pub async fn user_devices(&self, id: &str) -> Result<DevicesAnswer, CliError> {
        let url = self.url(&["users", id, "devices"]);
        self.call(Method::GET, url, None, true).await
    }

    /// `POST /user/device/delete`.
    pub async fn user_device_delete(&self, id: &str, hwid: &str) -> Result<(), CliError> {
        let _: serde_json::Value = self
            .post(
                &["user", "device", "delete"],
                json!({ "userID": id, "hwid": hwid }),
            )
            .await?;
        Ok(())
    }

    /// `POST /user/device-limit`: `None` for the settings' default.
    pub async fn user_device_limit(
        &self,
        id: &str,
        limit: Option<u32>,
    ) -> Result<UserAnswer, CliError> {
        self.post(
            &["user", "device-limit"],
            json!({ "userID": id, "deviceLimit": limit }),
        )
        .await
    }
}

/// `default` (the settings' limit) or a number (0: no limit).
pub fn parse_limit(text: &str) -> Result<Option<u32>, String> {
    match text {
        "default" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| format!("{n:?} is neither a number of devices nor `default`")),
    }
}

/// `user devices`: one row per device, oldest first.
pub fn devices_table(devices: &[DeviceView]) -> String {
    if devices.is_empty() {
        return "no devices".to_owned();
    }
    let mut t = table(&["HWID", "OS", "MODEL", "APP", "FIRST SEEN", "LAST SEEN"]);
    for d in devices {
        t.add_row(vec![
            d.hwid.clone(),
            format!("{} {}", d.os, d.os_version).trim().to_owned(),
            d.model.clone(),
            d.user_agent.clone(),
            when(d.first_seen),
            when(d.last_seen),
        ]);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_a_number_or_default() {
        assert_eq!(parse_limit("default"), Ok(None));
        assert_eq!(parse_limit("0"), Ok(Some(0)));
        assert_eq!(parse_limit("3"), Ok(Some(3)));
        assert!(parse_limit("-1").is_err());
        assert!(parse_limit("three").is_err());
    }

    #[test]
    fn the_table_shows_every_device() {
        let d = DeviceView {
            hwid: "device-aaaa-0001".into(),
            os: "Android".into(),
            os_version: "14".into(),
            model: "Pixel 8".into(),
            user_agent: "Happ/3.1".into(),
            first_seen: 1_800_000_000,
            last_seen: 1_800_003_600,
        };
        let text = devices_table(&[d]);
        assert!(
            text.contains("device-aaaa-0001") && text.contains("Android 14"),
            "{text}"
        );
        assert!(text.contains("2027-01-15T08:00:00Z"), "{text}");
        assert_eq!(devices_table(&[]), "no devices");
    }
}
