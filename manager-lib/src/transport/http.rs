//! `NodeTransport` over HTTP with the JWE envelope, built on the agent
//! library's `NodeClient` so both sides share one implementation of the wire
//! format. One `reqwest::Client` (one connection pool) serves every node.

use std::time::Duration;

use async_trait::async_trait;
use node_agent_lib::client::{ClientError, NodeClient};
use node_agent_lib::wire::{NodeStatus, UsersEditRequest, WireUser};

use super::{NodeReport, NodeTransport, TransportError};
use crate::domain::{Node, UserCredentials, UserId};

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

fn wire_user(u: &UserCredentials) -> WireUser {
    WireUser {
        id: u.id.to_string(),
        name: u.name.clone(),
        secret: u.secret.expose().to_owned(),
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

/// `/start` sends every enabled user: give it time in proportion.
fn start_timeout(base: Duration, users: usize) -> Duration {
    base + Duration::from_millis(users as u64 / 10)
}

#[async_trait]
impl NodeTransport for HttpTransport {
    async fn start(
        &self,
        node: &Node,
        users: &[UserCredentials],
    ) -> Result<String, TransportError> {
        let wire: Vec<WireUser> = users.iter().map(wire_user).collect();
        let client = self.client(node, start_timeout(self.timeout, users.len()))?;
        let answer = client.start(&wire).await.map_err(map_error)?;
        Ok(answer.user_config_template)
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
        })
    }

    async fn edit_users(
        &self,
        node: &Node,
        add: &[UserCredentials],
        del: &[UserId],
    ) -> Result<(), TransportError> {
        let edit = UsersEditRequest {
            add_users: add.iter().map(wire_user).collect(),
            del_users: del.iter().map(|id| id.to_string()).collect(),
        };
        self.client(node, start_timeout(self.timeout, add.len() + del.len()))?
            .edit_users(&edit)
            .await
            .map_err(map_error)
    }
}
