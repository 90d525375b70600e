//! `xmctl node rotate-key ID [--grace SECS]`: the node's new key, printed
//! once (like `node add`), and until when its agent accepts the old one.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::Client;
use super::error::CliError;
use super::output::when;

/// The answer of `POST /node/key/rotate`. Its `Debug` hides the key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotated {
    #[serde(rename = "nodeID")]
    pub node_id: String,
    pub node_key: String,
    pub grace_secs: u64,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<i64>,
}

impl fmt::Debug for KeyRotated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRotated")
            .field("node_id", &self.node_id)
            .field("node_key", &"<redacted>")
            .field("grace_secs", &self.grace_secs)
            .field("delivered", &self.delivered)
            .field("grace_until", &self.grace_until)
            .finish()
    }
}

impl Client {
    /// `POST /node/key/rotate`; `grace_secs` `None`: the manager's default.
    pub async fn node_key_rotate(
        &self,
        id: &str,
        grace_secs: Option<u64>,
    ) -> Result<KeyRotated, CliError> {
        let mut body = json!({ "nodeID": id });
        if let Some(grace) = grace_secs {
            body["graceSecs"] = json!(grace);
        }
        self.post(&["node", "key", "rotate"], body).await
    }
}

/// What `node rotate-key` prints without `--json`.
pub fn rotated(r: &KeyRotated) -> String {
    let state = match r.grace_until {
        Some(until) if r.delivered => format!(
            "the agent has it; it accepts the old key until {}",
            when(until)
        ),
        _ => format!(
            "the agent could not be reached: the manager delivers it at the next heartbeat, \
             and the old key stays accepted for {} s from then",
            r.grace_secs
        ),
    };
    format!(
        "node id:      {}\nnew node key: {}\n{state}\n(shown once: put it in the agent's node_key_file too, for a reinstall)",
        r.node_id, r.node_key
    )
}
