//! [`NodeClient`]: the typed, JWE-sealing client the manager uses to call a node.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use serde::de::DeserializeOwned;

use crate::envelope::{self, AUTH_SCHEME, InvalidKey, NodeKey};
use crate::wire::{
    ErrorBody, KeyRequest, KeyResponse, StartRequest, StartResponse, StatusResponse, UsageRequest,
    UsageResponse, UsersEditRequest, UsersEditResponse, WireUser,
};

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node answered one of its documented errors (authenticated); the
    /// manager passes it through with the same status and body.
    #[error("node answered {status}: {}", body.error)]
    Node { status: u16, body: ErrorBody },
    /// The node refused our envelope: most likely it holds another key for
    /// itself than we do (or the clocks are more than 30 s apart).
    #[error(
        "node key mismatch: the node refused our request as unauthorized (or the clocks are more than 30 s apart)"
    )]
    Unauthorized,
    /// The node's answer is well formed but does not decrypt under our key:
    /// the node holds another key (or the answer was altered on the way).
    #[error(
        "node key mismatch: the answer (status {status}) does not decrypt under this node's key"
    )]
    KeyMismatch { status: u16 },
    /// Could not reach the node, or it did not answer in time. Retrying can help.
    #[error("node unreachable: {0}")]
    Unreachable(String),
    /// The answer is not an authentic answer to this request, not the
    /// expected JSON, or larger than the call can legitimately return.
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

/// The most a node's answer to `/start` may be before it is authenticated:
/// it carries the node's user config template (a share link or config
/// pattern: kilobytes), sealed. Read as a stream and cut at this size, so a
/// fake node or a man in the middle cannot make the manager buffer more.
pub const MAX_START_ANSWER: usize = 1024 * 1024;
/// The most a node's answer to `/usage` may be: the agent stops a page at
/// [`USAGE_PAGE_BYTES`] of batches unless its first batch alone is larger,
/// so this leaves room for one batch of ~500,000 users (about 75 bytes
/// each), sealed (base64url: 4/3).
pub const MAX_USAGE_ANSWER: usize = 64 * 1024 * 1024;
/// Where the agent stops adding batches to a `/usage` answer (it always
/// answers at least one): 16 MiB of JSON, 21.4 MiB sealed.
pub const USAGE_PAGE_BYTES: u64 = 16 * 1024 * 1024;
/// The most any other answer may be (`/status`, `/stop`, `/users/edit` and
/// every error answer are under a kilobyte sealed).
pub const MAX_ANSWER: usize = 64 * 1024;

/// A `reqwest` client builder fit for the node channel: redirects are never
/// followed (a node, or whoever answers in its place, must not send our
/// sealed calls elsewhere). Every client given to [`NodeClient::with_http`]
/// must come from it.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
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
    /// A client with its own connection pool. `key` is the node key, parsed
    /// once by the caller (`"…".parse::<NodeKey>()`); `timeout` bounds each
    /// whole call.
    pub fn new(endpoint: &str, key: NodeKey, timeout: Duration) -> Result<Self, ClientError> {
        let http = http_client_builder()
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Self::with_http(http, endpoint, key, timeout)
    }

    /// A client on a shared `reqwest::Client`, so calls to many nodes reuse one
    /// pool of connections. Build it with [`http_client_builder`] (no
    /// redirects).
    pub fn with_http(
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
    /// An agent older than [`UsersEditResponse`] answers nothing: read as
    /// the empty answer.
    pub async fn edit_users(
        &self,
        edit: &UsersEditRequest,
    ) -> Result<UsersEditResponse, ClientError> {
        let body = serde_json::to_vec(edit).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let answer = self.call("POST", "/users/edit", &body).await?;
        if answer.is_empty() {
            return Ok(UsersEditResponse::default());
        }
        parse(&answer)
    }

    /// `POST /usage`: the node's usage batches after `request`'s cursor;
    /// naming the node's journal confirms `after`.
    pub async fn usage(&self, request: &UsageRequest) -> Result<UsageResponse, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let answer = self.call("POST", "/usage", &body).await?;
        parse(&answer)
    }

    /// `POST /key`: makes `new` the node's key; the key this client seals
    /// with stays accepted for `grace`. Delivering the node's current key
    /// again (sealed under it or under the previous one) changes nothing.
    pub async fn rotate_key(
        &self,
        new: &NodeKey,
        grace: Duration,
    ) -> Result<KeyResponse, ClientError> {
        let request = KeyRequest {
            key: new.expose_base64url(),
            grace_secs: grace.as_secs(),
        };
        let body =
            serde_json::to_vec(&request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let answer = self.call("POST", "/key", &body).await?;
        parse(&answer)
    }

    /// Seals `payload` for `method path`, sends it, and opens the answer. On
    /// success gives the answer's payload.
    async fn call(&self, method: &str, path: &str, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        let sealed = envelope::seal_request(&self.key, method, path, payload, SystemTime::now())
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let url = format!("{}{}", self.endpoint, path);
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        }
        .header(AUTHORIZATION, format!("{AUTH_SCHEME} {}", sealed.token));
        if !sealed.body.is_empty() {
            request = request
                .header(CONTENT_TYPE, envelope::CONTENT_TYPE)
                .body(sealed.body);
        } else if method != "GET" {
            request = request.header(CONTENT_LENGTH, 0);
        }
        let mut response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(describe(&e)))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized);
        }
        let cap = match path {
            "/start" => MAX_START_ANSWER,
            "/usage" => MAX_USAGE_ANSWER,
            _ => MAX_ANSWER,
        };
        let body = read_capped(&mut response, cap).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| ClientError::Protocol(format!("unsealed answer with status {status}")))?;
        let payload = envelope::open_response(&self.key, text, &sealed.jti, status.as_u16())
            .map_err(|e| match e {
                envelope::EnvelopeError::Decrypt => ClientError::KeyMismatch {
                    status: status.as_u16(),
                },
                e => ClientError::Protocol(format!("status {status}: {e}")),
            })?;
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

/// Reads an answer's body as it streams in and stops at `cap` bytes, before
/// anything authenticates it: a larger answer is an error at once, whatever
/// the node (or whoever answers in its place) keeps sending.
async fn read_capped(response: &mut reqwest::Response, cap: usize) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::Protocol(format!("answer too large (over {cap} bytes)"));
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ClientError::Unreachable(describe(&e)))?
    {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
