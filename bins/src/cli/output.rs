//! What `xmctl` prints: tables for people, the API's JSON for scripts.

use std::collections::BTreeMap;
use std::io::Write;

use comfy_table::{Table, presets};
use serde::Serialize;
use serde_json::Value;

use super::client::{NodeCreated, NodeView, UserView};
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

fn table(header: &[&str]) -> Table {
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

/// `user list`.
pub fn users_table(users: &[UserView]) -> String {
    if users.is_empty() {
        return "no users".to_owned();
    }
    let mut t = table(&["ID", "NAME", "STATUS"]);
    for u in users {
        t.add_row(vec![
            u.id.as_str(),
            u.name.as_str(),
            u.status.as_deref().unwrap_or(""),
        ]);
    }
    format!("{t}\n{} user(s)", users.len())
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
            },
            UserView {
                id: "u2".into(),
                name: "bob".into(),
                status: Some("Disabled".into()),
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
            "2 user(s)",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert_eq!(users_table(&[]), "no users");
    }
}
