//! The node HTTP API (axum): `POST /start`, `POST /stop`, `GET /status`,
//! `POST /users/edit`, each inside the JWE envelope of [`crate::envelope`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::{Agent, AgentError};
use crate::envelope::{self, BodyCheck, BodyError, NodeKey, OpenedRequest, Rejection, ReplayCache};
use crate::refusals::Refusals;
use crate::wire::{ErrorBody, StartRequest, StartResponse, UsersEditRequest};

/// The largest body an authenticated request may announce: `/start` with
/// 100,000 users is ~15 MB sealed. Nothing is read before the header token
/// that announces the length has been opened.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How long an authenticated request's body may take to arrive: a peer with
/// the key is trusted, but a half-sent body must not hold memory forever.
/// 15 MB (100,000 users) at 1 MB/s fits.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    agent: Arc<Agent>,
    key: NodeKey,
    replay: ReplayCache,
    body_limit: usize,
    body_timeout: Duration,
    /// Requests issued before this (Unix ms) are refused: the replay cache
    /// starts empty, so a request captured before a restart would otherwise
    /// be accepted again.
    started_ms: u64,
    refusals: Arc<Refusals>,
}

impl AppState {
    pub fn new(agent: Arc<Agent>, key: NodeKey) -> Self {
        Self {
            agent,
            key,
            replay: ReplayCache::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            started_ms: envelope::unix_millis(SystemTime::now()),
            refusals: Arc::new(Refusals::default()),
        }
    }

    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    pub fn with_replay_cache(mut self, replay: ReplayCache) -> Self {
        self.replay = replay;
        self
    }

    pub fn with_refusals(mut self, refusals: Arc<Refusals>) -> Self {
        self.refusals = refusals;
        self
    }

    /// The refused-request counter (for the metrics).
    pub fn refusals(&self) -> &Arc<Refusals> {
        &self.refusals
    }

    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }
}

/// Every route of [`router`] (method, path), in one place: the OpenAPI
/// document must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/start"),
    ("POST", "/stop"),
    ("GET", "/status"),
    ("POST", "/users/edit"),
];

/// The node API's routes; every call is JWE-only. Whatever else a peer asks
/// (another path, another method) gets the very answer of a refused
/// envelope, so an unauthenticated peer learns nothing, not even that this
/// is an agent. The API's documentation is served elsewhere
/// ([`crate::openapi::docs_router`], on `docs_listen`).
pub fn router(state: Arc<AppState>) -> Router {
    // The handlers stream the body themselves, up to the length the header
    // token announced (at most `body_limit`), so no body-limit layer.
    // `any(refused)` first: a wrong method gets the bare 401, without the
    // `Allow` header a 405 would add.
    Router::new()
        .route("/start", any(refused).post(start))
        .route("/stop", any(refused).post(stop))
        .route("/status", any(refused).get(status))
        .route("/users/edit", any(refused).post(edit_users))
        .fallback(refused)
        .with_state(state)
}

/// An unknown path or method: the same bare 401 as a refused envelope.
async fn refused() -> Response {
    unauthorized()
}

/// The one table from an agent error to the answer's status and stable text.
pub fn error_answer(error: &AgentError) -> (StatusCode, &'static str) {
    match error {
        AgentError::Initializing => (StatusCode::SERVICE_UNAVAILABLE, "xray service initializing"),
        AgentError::Service(_) | AgentError::CoreDidNotStart(_) | AgentError::Core(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "xray service error")
        }
        AgentError::ServiceStatus(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "xray service status error",
        ),
        AgentError::CoreUnavailable(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "xray service unavailable",
        ),
        AgentError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal server error"),
    }
}

/// The only answer that is not sealed: the caller may not hold the key.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(ErrorBody::new("unauthorized")),
    )
        .into_response()
}

impl AppState {
    /// Opens the request's header token and records its `jti`; any failure
    /// is a bare 401 (the reason goes to the rate-limited log only). Reads
    /// nothing of the body.
    fn open(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<OpenedRequest, Rejection> {
        let now = SystemTime::now();
        let opened = token(headers)
            .and_then(|token| envelope::open_request(&self.key, token, method.as_str(), path, now))
            .and_then(|opened| {
                // Not `<=`: a request sealed in the very millisecond the
                // agent started was not sent to an earlier process.
                if opened.iat_ms < self.started_ms {
                    return Err(Rejection::BeforeStart);
                }
                self.replay.check_and_insert(&opened.jti, opened.exp, now)?;
                Ok(opened)
            });
        opened.inspect_err(|reason| self.refusals.record(method.as_str(), path, reason))
    }

    /// Authenticates the call from its header, then reads and opens its
    /// body. A refused header is a bare 401 before any body byte is read;
    /// a body that is not the one the header announced (length, digest,
    /// too slow, too large) is a sealed 400 `bad request`.
    async fn receive(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(OpenedRequest, Vec<u8>), Response> {
        let request = self
            .open(method, path, headers)
            .map_err(|_| unauthorized())?;
        match self.read_body(&request, headers, body).await {
            Ok(payload) => Ok((request, payload)),
            Err(e) => Err(self.seal(&request, path, Err(AgentError::BadRequest(e.to_string())))),
        }
    }

    /// Reads exactly the announced length (as `Content-Length` must say),
    /// within [`DEFAULT_BODY_TIMEOUT`] (or the set one), checking the
    /// digest as it streams in; decrypts only a body that matches.
    async fn read_body(
        &self,
        request: &OpenedRequest,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Vec<u8>, BodyError> {
        let declared = match headers.get(CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(BodyError::Length)?,
            ),
        };
        if declared.unwrap_or(0) != request.body_len {
            return Err(BodyError::Length);
        }
        let len = usize::try_from(request.body_len).map_err(|_| BodyError::TooLarge)?;
        if len > self.body_limit {
            return Err(BodyError::TooLarge);
        }
        let mut check = BodyCheck::new(request);
        let mut bytes = Vec::with_capacity(len);
        let mut stream = body.into_data_stream();
        let read = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|_| BodyError::Read)?;
                check.update(&chunk)?;
                bytes.extend_from_slice(&chunk);
            }
            Ok::<(), BodyError>(())
        };
        tokio::time::timeout(self.body_timeout, read)
            .await
            .map_err(|_| BodyError::Timeout)??;
        check.open(&self.key, &bytes)
    }

    /// Seals the answer to `request`: the payload on success, else the error
    /// body from [`error_answer`].
    fn seal(
        &self,
        request: &OpenedRequest,
        path: &str,
        result: Result<Vec<u8>, AgentError>,
    ) -> Response {
        let (status, payload) = match result {
            Ok(payload) => (StatusCode::OK, payload),
            Err(error) => {
                let (status, text) = error_answer(&error);
                if status.is_server_error() {
                    tracing::error!(path, error = %error, "request failed");
                } else {
                    tracing::info!(path, error = %error, "request refused");
                }
                let body = serde_json::to_vec(&ErrorBody::new(text)).unwrap_or_default();
                (status, body)
            }
        };
        match envelope::seal_response(&self.key, &request.jti, status.as_u16(), &payload) {
            Ok(token) => (
                status,
                [
                    (
                        CONTENT_TYPE,
                        HeaderValue::from_static(envelope::CONTENT_TYPE),
                    ),
                    (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                token,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(path, error = %e, "cannot seal the answer");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(ErrorBody::new("internal server error")),
                )
                    .into_response()
            }
        }
    }
}

/// Every call carries its header token in `Authorization: JWE <token>`.
fn token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let value = headers.get(AUTHORIZATION).ok_or(Rejection::Missing)?;
    let value = value.to_str().map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::Malformed)?;
    if !scheme.eq_ignore_ascii_case(envelope::AUTH_SCHEME) {
        return Err(Rejection::Malformed);
    }
    Ok(token)
}

fn parse<T: DeserializeOwned>(payload: &[u8]) -> Result<T, AgentError> {
    serde_json::from_slice(payload).map_err(|e| AgentError::BadRequest(e.to_string()))
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, AgentError> {
    serde_json::to_vec(value).map_err(|e| AgentError::Internal(e.to_string()))
}

#[utoipa::path(
    post,
    path = "/start",
    summary = "Run the core with exactly these users",
    params(("Authorization" = String, Header, description = "`JWE <header token>`: a compact JWE (`dir`, `A256GCM`) with an empty plaintext whose authenticated protected header binds method (`htm`), path (`htu`), time (`iat` with millisecond precision, `exp`), a single-use `jti`, and the body's exact length (`bln`) and SHA-256 digest (`bsh`, base64url). Checked before any body byte is read.")),
    request_body(content = String, content_type = "application/jose", description = "The payload sealed on its own: a compact JWE (`dir`, `A256GCM`) whose plaintext is a `StartRequest`, sent with `Content-Length` equal to the header token's `bln`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is a `StartResponse`.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (not the expected JSON, or a body that is not the one the header token announced: length, digest, too slow, too large).", content_type = "application/jose", body = String),
        (status = 503, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service initializing` (a start or stop is in progress).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service error`.", content_type = "application/jose", body = String),
        (status = 401, description = "Not sealed: the header token is missing, invalid, expired, issued before the agent started, or replayed; no body byte was read.", body = ErrorBody),
    ),
    security(("node_jwe" = []))
)]
async fn start(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (request, payload) = match s.receive(&Method::POST, "/start", &headers, body).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = async {
        let StartRequest { users } = parse(&payload)?;
        drop(payload);
        s.agent.start(users).await?;
        to_json(&StartResponse {
            user_config_template: s.agent.user_config_template().to_owned(),
        })
    }
    .await;
    s.seal(&request, "/start", result)
}

#[utoipa::path(
    post,
    path = "/stop",
    summary = "Stop the core",
    params(("Authorization" = String, Header, description = "`JWE <header token>`: a compact JWE (`dir`, `A256GCM`) with an empty plaintext whose authenticated protected header binds method (`htm`), path (`htu`), time (`iat` with millisecond precision, `exp`), a single-use `jti`, and the body's exact length (`bln`) and SHA-256 digest (`bsh`, base64url). Checked before any body byte is read.")),
    request_body(content = String, content_type = "application/jose", description = "Empty (`bln` 0), or a compact JWE (`dir`, `A256GCM`) whose plaintext is `{}`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is empty.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (the body is not the one the header token announced).", content_type = "application/jose", body = String),
        (status = 503, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service initializing` (a start or stop is in progress).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service error`.", content_type = "application/jose", body = String),
        (status = 401, description = "Not sealed: the header token is missing, invalid, expired, issued before the agent started, or replayed; no body byte was read.", body = ErrorBody),
    ),
    security(("node_jwe" = []))
)]
async fn stop(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (request, _) = match s.receive(&Method::POST, "/stop", &headers, body).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = s.agent.stop().await.map(|()| Vec::new());
    s.seal(&request, "/stop", result)
}

#[utoipa::path(
    get,
    path = "/status",
    summary = "Whether the core runs, and its users",
    params(("Authorization" = String, Header, description = "`JWE <header token>`: a compact JWE (`dir`, `A256GCM`) with an empty plaintext whose authenticated protected header binds method (`htm`), path (`htu`), time (`iat` with millisecond precision, `exp`), a single-use `jti`, and the body's exact length (`bln`) and SHA-256 digest (`bsh`, base64url). Checked before any body byte is read.")),
    request_body(content = String, content_type = "application/jose", description = "None: `bln` is 0."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is a `StatusResponse`.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (a body the header token did not announce).", content_type = "application/jose", body = String),
        (status = 503, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service initializing` (a start or stop is in progress).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service status error`.", content_type = "application/jose", body = String),
        (status = 401, description = "Not sealed: the header token is missing, invalid, expired, issued before the agent started, or replayed; no body byte was read.", body = ErrorBody),
    ),
    security(("node_jwe" = []))
)]
async fn status(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (request, _) = match s.receive(&Method::GET, "/status", &headers, body).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = match s.agent.status().await {
        Ok(status) => to_json(&status),
        Err(e) => Err(e),
    };
    s.seal(&request, "/status", result)
}

#[utoipa::path(
    post,
    path = "/users/edit",
    summary = "Add and remove users on the running core",
    params(("Authorization" = String, Header, description = "`JWE <header token>`: a compact JWE (`dir`, `A256GCM`) with an empty plaintext whose authenticated protected header binds method (`htm`), path (`htu`), time (`iat` with millisecond precision, `exp`), a single-use `jti`, and the body's exact length (`bln`) and SHA-256 digest (`bsh`, base64url). Checked before any body byte is read.")),
    request_body(content = String, content_type = "application/jose", description = "The payload sealed on its own: a compact JWE (`dir`, `A256GCM`) whose plaintext is a `UsersEditRequest`, sent with `Content-Length` equal to the header token's `bln`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is empty.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request` (not the expected JSON, or a body that is not the one the header token announced: length, digest, too slow, too large).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service unavailable` (the core's API does not answer) or `xray service error`.", content_type = "application/jose", body = String),
        (status = 401, description = "Not sealed: the header token is missing, invalid, expired, issued before the agent started, or replayed; no body byte was read.", body = ErrorBody),
    ),
    security(("node_jwe" = []))
)]
async fn edit_users(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (request, payload) = match s
        .receive(&Method::POST, "/users/edit", &headers, body)
        .await
    {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let result = async {
        let edit: UsersEditRequest = parse(&payload)?;
        s.agent.edit_users(edit).await.map(|()| Vec::new())
    }
    .await;
    s.seal(&request, "/users/edit", result)
}
