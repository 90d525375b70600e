//! [`CoreApi`] over Xray's and V2Ray's gRPC API: [`CoreClient`].

use std::collections::HashMap;

use async_trait::async_trait;

use super::{CoreApi, CoreClient, CoreError, CoreUser, Flavor, Stat};

#[async_trait]
impl CoreApi for CoreClient {
    async fn add_user(&self, inbound_tag: &str, user: &CoreUser) -> Result<(), CoreError> {
        CoreClient::add_user(self, inbound_tag, user).await
    }

    async fn remove_user(&self, inbound_tag: &str, email: &str) -> Result<(), CoreError> {
        CoreClient::remove_user(self, inbound_tag, email).await
    }

    async fn users_count(&self, inbound_tag: &str) -> Result<Option<u64>, CoreError> {
        if self.flavor() == Flavor::V2ray {
            return Ok(None);
        }
        match self.inbound_users_count(inbound_tag).await {
            Ok(n) => Ok(Some(n)),
            Err(CoreError::Unsupported(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn uptime_secs(&self) -> Result<u32, CoreError> {
        Ok(self.sys_stats().await?.uptime_secs)
    }

    async fn take_user_traffic(&self) -> Result<Vec<(String, u64, u64)>, CoreError> {
        Ok(sum_user_traffic(self.query_stats("user>>>", true).await?))
    }
}

/// Per-user `(email, uplink, downlink)` from `user>>>EMAIL>>>traffic>>>uplink`
/// and `…>>>downlink` counters; other counters and zero totals are left out.
/// The email is everything between the first `user>>>` and the last
/// `>>>traffic>>>`, so an email holding `>>>` still parses.
pub fn sum_user_traffic(stats: Vec<Stat>) -> Vec<(String, u64, u64)> {
    let mut sums: HashMap<String, (u64, u64)> = HashMap::with_capacity(stats.len() / 2);
    for Stat { name, value } in stats {
        let Some((email, uplink)) = user_traffic_counter(&name) else {
            continue;
        };
        // The core's counters are signed; a negative one is not traffic.
        let value = u64::try_from(value).unwrap_or(0);
        if value == 0 {
            continue;
        }
        let entry = sums.entry(email.to_owned()).or_default();
        if uplink {
            entry.0 = entry.0.saturating_add(value);
        } else {
            entry.1 = entry.1.saturating_add(value);
        }
    }
    sums.into_iter()
        .map(|(email, (up, down))| (email, up, down))
        .collect()
}

/// `(email, is uplink)` of a `user>>>EMAIL>>>traffic>>>uplink|downlink`
/// counter: the email is everything between the first `user>>>` and the
/// last `>>>traffic>>>`, so an email holding `>>>` still parses.
pub(crate) fn user_traffic_counter(name: &str) -> Option<(&str, bool)> {
    const PREFIX: &str = "user>>>";
    const TRAFFIC: &str = ">>>traffic>>>";
    let rest = name.strip_prefix(PREFIX)?;
    let at = rest.rfind(TRAFFIC)?;
    let uplink = match &rest[at + TRAFFIC.len()..] {
        "uplink" => true,
        "downlink" => false,
        _ => return None,
    };
    Some((&rest[..at], uplink))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(name: &str, value: i64) -> Stat {
        Stat {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn user_counters_are_summed_per_email_and_others_ignored() {
        let mut got = sum_user_traffic(vec![
            stat("user>>>a>>>traffic>>>uplink", 10),
            stat("user>>>a>>>traffic>>>downlink", 20),
            stat("user>>>b>>>traffic>>>downlink", 5),
            stat("user>>>c>>>traffic>>>uplink", 0),
            stat("user>>>d>>>traffic>>>uplink", -3),
            stat("user>>>e>>>online", 7),
            stat("inbound>>>vless-in>>>traffic>>>uplink", 99),
            stat("user>>>x>>>y>>>traffic>>>uplink", 1),
        ]);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("a".to_owned(), 10, 20),
                ("b".to_owned(), 0, 5),
                ("x>>>y".to_owned(), 1, 0),
            ]
        );
    }
}
