//! `NodeTransport` over HTTP with the JWE envelope, built on the agent
//! library's `NodeClient` so both sides share one implementation of the wire
//! format. One `reqwest::Client` (one connection pool) serves every node.

use std::time::Duration;

use async_trait::async_trait;
use node_agent_lib::client::{ClientError, NodeClient};
use node_agent_lib::wire::{
    self, NodeStatus, StartResponse, UsageRequest, UsersEditRequest, WireUser,
};

use super::{JournalReport, NodeReport, NodeTransport, TransportError, UserPorts};
use crate::domain::usage::{UsageBatch, UsageCursor, UsagePage, UserUsage};
use crate::domain::{Node, NodeKey, NodeUser, Timestamp, UserId};

#[derive(Clone, Debug)]
pub struct HttpTransport {
    http: reqwest::Client,
    timeout: Duration,
}

impl HttpTransport {
    /// `timeout` bounds each call; a `/start` or an edit with many users
    /// gets 1 ms more per 10 users (see `start_timeout`).
    pub fn new(timeout: Duration) -> Self {
        // No redirects on the node channel (see `http_client_builder`).
        let http = node_agent_lib::client::http_client_builder()
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .build()
            .expect("a reqwest client with static settings builds");
        Self { http, timeout }
    }

    fn client(&self, node: &Node, timeout: Duration) -> Result<NodeClient, TransportError> {
        NodeClient::with_http(self.http.clone(), &node.endpoint, node.key.clone(), timeout)
            .map_err(map_error)
    }
}

/// `proxyId` only when it is not the id, so a manager sharing credentials
/// across nodes sends what agents older than the field read.
fn wire_user(u: &NodeUser) -> WireUser {
    WireUser {
        id: u.id.to_string(),
        name: u.name.clone(),
        secret: u.secret.expose().to_owned(),
        proxy_id: u.has_own_proxy_id().then(|| u.proxy_id.to_string()),
    }
}

fn map_error(e: ClientError) -> TransportError {
    match e {
        ClientError::Node { status, body } => TransportError::Node {
            status,
            error: body.error,
            message: body.message,
        },
        ClientError::Unreachable(m) => TransportError::Unreachable(m),
        e @ (ClientError::Unauthorized | ClientError::KeyMismatch { .. }) => {
            TransportError::KeyMismatch(e.to_string())
        }
        other => TransportError::Protocol(other.to_string()),
    }
}

/// The node's answer in the manager's terms; a user id that does not parse
/// refuses the whole page (storing part of a batch would lose the rest).
fn usage_page(answer: wire::UsageResponse) -> Result<UsagePage, TransportError> {
    let seconds = |s: i64| Timestamp(s.saturating_mul(1000));
    let batches = answer
        .batches
        .into_iter()
        .map(|b| {
            let users = b
                .users
                .into_iter()
                .map(|u| {
                    let user = u.id.parse::<UserId>().map_err(|e| {
                        TransportError::Protocol(format!("usage batch {}: {e}", b.seq))
                    })?;
                    Ok(UserUsage {
                        user,
                        up: u.up,
                        down: u.down,
                    })
                })
                .collect::<Result<Vec<_>, TransportError>>()?;
            if b.first_seq == 0 || b.first_seq > b.seq {
                return Err(TransportError::Protocol(format!(
                    "usage batch covers {}..={}",
                    b.first_seq, b.seq
                )));
            }
            Ok(UsageBatch {
                first_seq: b.first_seq,
                seq: b.seq,
                from: seconds(b.from),
                to: seconds(b.to),
                users,
            })
        })
        .collect::<Result<Vec<_>, TransportError>>()?;
    Ok(UsagePage {
        journal: answer.journal,
        batches,
        more: answer.more,
    })
}

/// `/start` sends every enabled user: give it time in proportion.
fn start_timeout(base: Duration, users: usize) -> Duration {
    base + Duration::from_millis(users as u64 / 10)
}

#[async_trait]
impl NodeTransport for HttpTransport {
    async fn start(
        &self,
        node: &Node,
        users: &[NodeUser],
    ) -> Result<StartResponse, TransportError> {
        let wire: Vec<WireUser> = users.iter().map(wire_user).collect();
        let client = self.client(node, start_timeout(self.timeout, users.len()))?;
        client.start(&wire).await.map_err(map_error)
    }

    async fn stop(&self, node: &Node) -> Result<(), TransportError> {
        self.client(node, self.timeout)?
            .stop()
            .await
            .map_err(map_error)
    }

    async fn status(&self, node: &Node) -> Result<NodeReport, TransportError> {
        let s = self
            .client(node, self.timeout)?
            .status()
            .await
            .map_err(map_error)?;
        Ok(NodeReport {
            running: s.node_status == NodeStatus::Running,
            users: s.users,
            core_uptime_secs: s.core_uptime_secs,
            core_restarts: s.core_restarts,
            journal: s.usage_journal.map(|j| JournalReport {
                journal: j.journal,
                seq: j.seq,
                batches: j.batches,
            }),
        })
    }

    async fn edit_users(
        &self,
        node: &Node,
        add: &[NodeUser],
        del: &[UserId],
    ) -> Result<UserPorts, TransportError> {
        let edit = UsersEditRequest {
            add_users: add.iter().map(wire_user).collect(),
            del_users: del.iter().map(|id| id.to_string()).collect(),
        };
        self.client(node, start_timeout(self.timeout, add.len() + del.len()))?
            .edit_users(&edit)
            .await
            .map(|answer| answer.user_ports)
            .map_err(map_error)
    }

    async fn usage(
        &self,
        node: &Node,
        cursor: &UsageCursor,
        max_batches: u32,
    ) -> Result<UsagePage, TransportError> {
        let request = UsageRequest {
            journal: cursor.journal.clone(),
            after: cursor.seq,
            max_batches: Some(max_batches),
        };
        let answer = self
            .client(node, self.timeout)?
            .usage(&request)
            .await
            .map_err(map_error)?;
        usage_page(answer)
    }

    async fn rotate_key(
        &self,
        node: &Node,
        new: &NodeKey,
        grace: Duration,
    ) -> Result<(), TransportError> {
        self.client(node, self.timeout)?
            .rotate_key(new, grace)
            .await
            .map(drop)
            .map_err(map_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: &str, first_seq: u64, seq: u64) -> wire::UsageResponse {
        wire::UsageResponse {
            journal: "j".into(),
            batches: vec![wire::UsageBatch {
                first_seq,
                seq,
                from: 10,
                to: 15,
                users: vec![wire::UserUsage {
                    id: id.into(),
                    up: 1,
                    down: 2,
                }],
            }],
            more: true,
        }
    }

    #[test]
    fn a_usage_answer_becomes_a_page_in_the_managers_terms() {
        let id = UserId::random();
        let page = usage_page(answer(&id.to_string(), 3, 5)).unwrap();
        assert_eq!(page.journal, "j");
        assert!(page.more);
        let b = &page.batches[0];
        assert_eq!((b.first_seq, b.seq), (3, 5));
        assert_eq!((b.from, b.to), (Timestamp(10_000), Timestamp(15_000)));
        assert_eq!(
            b.users,
            vec![UserUsage {
                user: id,
                up: 1,
                down: 2
            }]
        );
    }

    #[test]
    fn a_usage_answer_with_a_bad_user_id_or_range_is_a_protocol_error() {
        let id = UserId::random().to_string();
        for bad in [
            answer("admin@example.com", 1, 1),
            answer(&id.to_uppercase(), 1, 1),
            answer(&id, 0, 0),
            answer(&id, 4, 3),
        ] {
            assert!(
                matches!(usage_page(bad), Err(TransportError::Protocol(_))),
                "accepted"
            );
        }
    }
}
