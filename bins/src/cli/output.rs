//! What `xmctl` prints: tables for people, the API's JSON for scripts.

use std::collections::BTreeMap;
use std::io::Write;

use comfy_table::{Table, presets};
use serde::Serialize;
use serde_json::Value;

use super::client::{NodeCreated, NodeView, UsageEntry, UserView};
use super::import::ImportSummary;

/// The node statuses `status` always counts, even when none has them.
pub const NODE_STATUSES: [&str; 3] = ["Running", "Stopped", "Error"];
/// The user statuses `status` always counts.
pub const USER_STATUSES: [&str; 2] = ["Enabled", "Disabled"];

/// Writes `text` (plus a newline) to stdout. A closed pipe (`xmctl … | head`)
/// is not an error worth a panic.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Pretty JSON of any answer.
pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// A table in the house preset, with `header`.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

/// `node add`: the id, and the key the operator gives the node agent.
pub fn node_created(n: &NodeCreated) -> String {
    format!(
        "node id:  {}\nnode key: {}\n(give this key to the node agent; `xmctl node add` with the same endpoint shows it again)",
        n.node_id, n.node_key
    )
}

/// `node list`.
pub fn nodes_table(nodes: &[NodeView]) -> String {
    if nodes.is_empty() {
        return "no nodes".to_owned();
    }
    let mut t = table(&["ID", "ENDPOINT", "ACTUAL", "REQUIRED"]);
    for n in nodes {
        t.add_row(vec![
            &n.id,
            &n.endpoint,
            &n.actual_status,
            &n.required_status,
        ]);
    }
    format!("{t}\n{} node(s)", nodes.len())
}

/// `user add`.
pub fn user_created(u: &UserView) -> String {
    format!(
        "user id:   {}\nuser name: {}\n(new users start disabled: `xmctl user enable {}`)",
        u.id, u.name, u.id
    )
}

/// Bytes for people (IEC units).
fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).to_string()
}

/// Unix seconds for people (RFC 3339, UTC).
pub(crate) fn when(secs: i64) -> String {
    u64::try_from(secs)
        .ok()
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| secs.to_string())
}

fn used(u: &UserView) -> String {
    match (u.used_up, u.used_down) {
        (Some(up), Some(down)) => size(up.saturating_add(down)),
        _ => String::new(),
    }
}

/// `user list`.
pub fn users_table(users: &[UserView]) -> String {
    if users.is_empty() {
        return "no users".to_owned();
    }
    let mut t = table(&["ID", "NAME", "STATUS", "STATE", "USED", "LIMIT", "EXPIRES"]);
    for u in users {
        t.add_row(vec![
            u.id.clone(),
            u.name.clone(),
            u.status.clone().unwrap_or_default(),
            u.state.clone().unwrap_or_default(),
            used(u),
            u.data_limit.map(size).unwrap_or_default(),
            u.expire_at.map(when).unwrap_or_default(),
        ]);
    }
    format!("{t}\n{} user(s)", users.len())
}

/// `user show` / `user edit` / `user reset-usage`: one user, every field.
pub fn user_details(u: &UserView) -> String {
    let mut t = table(&["FIELD", "VALUE"]);
    let mut row = |k: &str, v: String| {
        t.add_row(vec![k.to_owned(), v]);
    };
    row("id", u.id.clone());
    row("name", u.name.clone());
    row("status", u.status.clone().unwrap_or_default());
    row("state", u.state.clone().unwrap_or_default());
    row("used up", u.used_up.map(size).unwrap_or_default());
    row("used down", u.used_down.map(size).unwrap_or_default());
    row("used", used(u));
    row("limit", u.data_limit.map_or_else(|| "none".into(), size));
    row("expires", u.expire_at.map_or_else(|| "never".into(), when));
    let reset = match (u.reset_strategy.as_deref(), u.reset_day) {
        (Some("month"), Some(day)) => format!("month, on day {day}"),
        (Some(period), _) => period.to_owned(),
        (None, _) => String::new(),
    };
    row("reset", reset);
    if let Some(hold) = u.on_hold_secs {
        row(
            "on hold",
            format!(
                "{} from the first byte",
                humantime::format_duration(std::time::Duration::from_secs(hold))
            ),
        );
    }
    if let Some(next) = u.next_reset_at {
        row("next reset", when(next));
    }
    if let Some(last) = u.last_reset_at {
        row("last reset", when(last));
    }
    if let Some(limit) = u.device_limit {
        let limit = match limit {
            0 => "no limit".to_owned(),
            n => n.to_string(),
        };
        row("devices", limit);
    }
    t.to_string()
}

/// `user usage` and `node usage`.
pub fn usage_table(usage: &[UsageEntry]) -> String {
    if usage.is_empty() {
        return "no traffic in this range".to_owned();
    }
    let by_day = usage.iter().any(|e| e.day.is_some());
    let mut t = table(&[if by_day { "DAY" } else { "NODE" }, "UP", "DOWN", "TOTAL"]);
    let (mut up, mut down) = (0u64, 0u64);
    for e in usage {
        let key = match (e.day, &e.node_id) {
            (Some(day), _) => when(day).chars().take(10).collect(),
            (None, Some(node)) => node.clone(),
            (None, None) => String::new(),
        };
        up = up.saturating_add(e.up);
        down = down.saturating_add(e.down);
        t.add_row(vec![
            key,
            size(e.up),
            size(e.down),
            size(e.up.saturating_add(e.down)),
        ]);
    }
    t.add_row(vec![
        "total".to_owned(),
        size(up),
        size(down),
        size(up.saturating_add(down)),
    ]);
    t.to_string()
}

/// `user nodes`: one link a line.
pub fn links(links: &[String]) -> String {
    if links.is_empty() {
        return "no nodes serve this user right now".to_owned();
    }
    links.join("\n")
}

/// Counts by status, with every `known` status present (0 if none).
pub fn count_by<'a>(
    statuses: impl Iterator<Item = &'a str>,
    known: &[&str],
) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = known.iter().map(|s| ((*s).to_owned(), 0)).collect();
    for s in statuses {
        *counts.entry(s.to_owned()).or_default() += 1;
    }
    counts
}

/// `status`, as JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub url: String,
    pub health: Value,
    pub nodes: NodeCounts,
    pub users: UserCounts,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    pub total: usize,
    pub by_actual_status: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCounts {
    pub total: usize,
    pub by_status: BTreeMap<String, usize>,
}

impl StatusReport {
    pub fn new(url: &str, health: Value, nodes: &[NodeView], users: &[UserView]) -> Self {
        Self {
            url: url.to_owned(),
            health,
            nodes: NodeCounts {
                total: nodes.len(),
                by_actual_status: count_by(
                    nodes.iter().map(|n| n.actual_status.as_str()),
                    &NODE_STATUSES,
                ),
            },
            users: UserCounts {
                total: users.len(),
                by_status: count_by(
                    users
                        .iter()
                        .map(|u| u.status.as_deref().unwrap_or("Unknown")),
                    &USER_STATUSES,
                ),
            },
        }
    }

    /// `status`, for people.
    pub fn human(&self) -> String {
        let health = self
            .health
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.health.to_string());
        let mut t = table(&["WHAT", "STATUS", "COUNT"]);
        for (status, n) in &self.nodes.by_actual_status {
            t.add_row(vec!["nodes", status.as_str(), &n.to_string()]);
        }
        t.add_row(vec!["nodes", "total", &self.nodes.total.to_string()]);
        for (status, n) in &self.users.by_status {
            t.add_row(vec!["users", status.as_str(), &n.to_string()]);
        }
        t.add_row(vec!["users", "total", &self.users.total.to_string()]);
        format!("manager {}: {health}\n{t}", self.url)
    }
}

/// `user import`'s summary, for people.
pub fn import_summary(s: &ImportSummary) -> String {
    let mut out = format!(
        "created: {}, enabled: {}, failed: {}",
        s.created, s.enabled, s.failed
    );
    if s.skipped > 0 {
        out.push_str(&format!(", not attempted: {}", s.skipped));
    }
    if let Some(reason) = &s.aborted {
        out.push_str(&format!("\nimport stopped early: {reason}"));
    }
    if !s.failures.is_empty() {
        let mut t = table(&["LINE", "NAME", "REASON"]);
        for f in &s.failures {
            t.add_row(vec![
                f.line.to_string(),
                f.name.clone().unwrap_or_default(),
                f.reason(),
            ]);
        }
        out.push_str(&format!("\nfailures:\n{t}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_include_every_known_status() {
        let counts = count_by(["Running", "Running", "Weird"].into_iter(), &NODE_STATUSES);
        assert_eq!(counts["Running"], 2);
        assert_eq!(counts["Stopped"], 0);
        assert_eq!(counts["Error"], 0);
        assert_eq!(counts["Weird"], 1);
    }

    #[test]
    fn tables_show_every_row() {
        let users = vec![
            UserView {
                id: "u1".into(),
                name: "alice".into(),
                status: Some("Enabled".into()),
                state: Some("limited".into()),
                used_up: Some(1024),
                used_down: Some(1024 * 1024),
                data_limit: Some(1024 * 1024),
                expire_at: Some(1_801_353_600),
                ..UserView::default()
            },
            UserView {
                id: "u2".into(),
                name: "bob".into(),
                status: Some("Disabled".into()),
                ..UserView::default()
            },
        ];
        let text = users_table(&users);
        for needle in [
            "u1",
            "alice",
            "Enabled",
            "u2",
            "bob",
            "Disabled",
            "limited",
            "1.0 MiB",
            "2027-01-31T00:00:00Z",
            "2 user(s)",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert_eq!(users_table(&[]), "no users");
    }

    #[test]
    fn usage_tables_total_their_rows() {
        let rows = [
            UsageEntry {
                day: Some(1_801_353_600),
                node_id: None,
                up: 1024,
                down: 2048,
            },
            UsageEntry {
                day: Some(1_801_440_000),
                node_id: None,
                up: 1024,
                down: 2048,
            },
        ];
        let text = usage_table(&rows);
        for needle in [
            "DAY",
            "2027-01-31",
            "2027-02-01",
            "total",
            "2.0 KiB",
            "4.0 KiB",
            "6.0 KiB",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert_eq!(usage_table(&[]), "no traffic in this range");
    }
}
