//! [`NodeClient`]: the typed, JWE-sealing client the manager uses to call a node.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::de::DeserializeOwned;

use crate::envelope::{self, AUTH_SCHEME, InvalidKey, NodeKey};
use crate::wire::{
    ErrorBody, StartRequest, StartResponse, StatusResponse, UsersEditRequest, WireUser,
};

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node answered one of its documented errors (authenticated); the
    /// manager passes it through with the same status and body.
    #[error("node answered {status}: {}", body.error)]
    Node { status: u16, body: ErrorBody },
    /// The node refused our envelope (wrong key, clock too far off, replay).
    #[error("node refused the request as unauthorized")]
    Unauthorized,
    /// Could not reach the node, or it did not answer in time. Retrying can help.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The answer is not an authentic answer to this request, or not the
    /// expected JSON.
    #[error("bad answer from node: {0}")]
    Protocol(String),
    /// The client was given an endpoint or key it cannot use.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// Whether trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Node { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

impl From<InvalidKey> for ClientError {
    fn from(e: InvalidKey) -> Self {
        Self::Config(e.to_string())
    }
}

/// A client for one node's HTTP API. Cheap to clone; clones share the
/// connection pool.
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: reqwest::Client,
    endpoint: String,
    key: NodeKey,
    timeout: Duration,
}

impl NodeClient {
    /// A client with its own connection pool. `key` is the node key as
    /// base64url; `timeout` bounds each whole call.
    pub fn new(endpoint: &str, key: &str, timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Self::with_http(http, endpoint, key, timeout)
    }

    /// A client on a shared `reqwest::Client`, so calls to many nodes reuse one
    /// pool of connections.
    pub fn with_http(
        http: reqwest::Client,
        endpoint: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let key: NodeKey = key.parse()?;
        Self::with_key(http, endpoint, key, timeout)
    }

    /// Like [`NodeClient::with_http`], with an already parsed key.
    pub fn with_key(
        http: reqwest::Client,
        endpoint: &str,
        key: NodeKey,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let url =
            url::Url::parse(endpoint).map_err(|e| ClientError::Config(format!("endpoint: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Config("endpoint must be http(s)".into()));
        }
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            key,
            timeout,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `POST /start`: run the core with exactly `users`.
    pub async fn start(&self, users: &[WireUser]) -> Result<StartResponse, ClientError> {
        let body = serde_json::to_vec(&StartRequest {
            users: users.to_vec(),
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let answer = self.call("POST", "/start", &body).await?;
        parse(&answer)
    }

    /// `POST /stop`: stop the core.
    pub async fn stop(&self) -> Result<(), ClientError> {
        self.call("POST", "/stop", &[]).await.map(drop)
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        let answer = self.call("GET", "/status", &[]).await?;
        parse(&answer)
    }

    /// `POST /users/edit`: add and remove users on the running core.
    pub async fn edit_users(&self, edit: &UsersEditRequest) -> Result<(), ClientError> {
        let body = serde_json::to_vec(edit).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call("POST", "/users/edit", &body).await.map(drop)
    }

    /// Seals `payload` for `method path`, sends it, and opens the answer. On
    /// success gives the answer's payload.
    async fn call(&self, method: &str, path: &str, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        let sealed = envelope::seal_request(&self.key, method, path, payload, SystemTime::now())
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let url = format!("{}{}", self.endpoint, path);
        let request = if method == "GET" {
            self.http
                .get(url)
                .header(AUTHORIZATION, format!("{AUTH_SCHEME} {}", sealed.token))
        } else {
            self.http
                .post(url)
                .header(CONTENT_TYPE, envelope::CONTENT_TYPE)
                .body(sealed.token)
        };
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(describe(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable(describe(&e)))?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized);
        }
        let text = std::str::from_utf8(&body)
            .map_err(|_| ClientError::Protocol(format!("unsealed answer with status {status}")))?;
        let payload = envelope::open_response(&self.key, text, &sealed.jti, status.as_u16())
            .map_err(|e| ClientError::Protocol(format!("status {status}: {e}")))?;
        if status.is_success() {
            return Ok(payload);
        }
        let body: ErrorBody = serde_json::from_slice(&payload)
            .map_err(|e| ClientError::Protocol(format!("error body: {e}")))?;
        Err(ClientError::Node {
            status: status.as_u16(),
            body,
        })
    }
}

fn parse<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(payload).map_err(|e| ClientError::Protocol(format!("answer: {e}")))
}

/// A transport error with its causes, without the URL's query (there is none)
/// or any body.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
