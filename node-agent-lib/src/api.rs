//! The node HTTP API (axum): `POST /start`, `POST /stop`, `GET /status`,
//! `POST /users/edit`, each inside the JWE envelope of [`crate::envelope`].

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::{Agent, AgentError};
use crate::envelope::{self, NodeKey, OpenedRequest, Rejection, ReplayCache};
use crate::wire::{ErrorBody, StartRequest, StartResponse, UsersEditRequest};

/// The largest request accepted: `/start` with 100,000 users is ~15 MB sealed.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    agent: Arc<Agent>,
    key: NodeKey,
    replay: ReplayCache,
    body_limit: usize,
}

impl AppState {
    pub fn new(agent: Arc<Agent>, key: NodeKey) -> Self {
        Self {
            agent,
            key,
            replay: ReplayCache::default(),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    pub fn with_replay_cache(mut self, replay: ReplayCache) -> Self {
        self.replay = replay;
        self
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
    let limit = state.body_limit;
    // `any(refused)` first: a wrong method gets the bare 401, without the
    // `Allow` header a 405 would add.
    Router::new()
        .route("/start", any(refused).post(start))
        .route("/stop", any(refused).post(stop))
        .route("/status", any(refused).get(status))
        .route("/users/edit", any(refused).post(edit_users))
        .layer(DefaultBodyLimit::max(limit))
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
    /// Opens the request's envelope and records its `jti`; any failure is a
    /// bare 401 (the reason goes to the log only).
    fn open(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<OpenedRequest, Rejection> {
        let now = SystemTime::now();
        let opened = token(method, headers, body)
            .and_then(|token| envelope::open_request(&self.key, token, method.as_str(), path, now))
            .and_then(|opened| {
                self.replay.check_and_insert(&opened.jti, opened.exp, now)?;
                Ok(opened)
            });
        opened.inspect_err(|reason| {
            tracing::warn!(%method, path, %reason, "request refused");
        })
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

/// GET carries the token in `Authorization: JWE <token>`; POST in the body.
fn token<'a>(
    method: &Method,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> Result<&'a str, Rejection> {
    if method == Method::GET {
        let value = headers.get(AUTHORIZATION).ok_or(Rejection::Missing)?;
        let value = value.to_str().map_err(|_| Rejection::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(Rejection::Malformed)?;
        if !scheme.eq_ignore_ascii_case(envelope::AUTH_SCHEME) {
            return Err(Rejection::Malformed);
        }
        return Ok(token);
    }
    if body.is_empty() {
        return Err(Rejection::Missing);
    }
    std::str::from_utf8(body).map_err(|_| Rejection::Malformed)
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
    request_body(content = String, content_type = "application/jose", description = "A compact JWE (`dir`, `A256GCM`) whose plaintext is a `StartRequest`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is a `StartResponse`.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request`.", content_type = "application/jose", body = String),
        (status = 503, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service initializing` (a start or stop is in progress).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service error`.", content_type = "application/jose", body = String),
        (status = 401, description = "Not sealed: the request's envelope is missing, invalid, expired or replayed.", body = ErrorBody),
    ),
    security(("node_jwe" = []))
)]
async fn start(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match s.open(&Method::POST, "/start", &headers, &body) {
        Ok(request) => request,
        Err(_) => return unauthorized(),
    };
    drop(body);
    let result = async {
        let StartRequest { users } = parse(&request.payload)?;
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
    request_body(content = String, content_type = "application/jose", description = "A compact JWE (`dir`, `A256GCM`) whose plaintext is empty or `{}`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is empty.", content_type = "application/jose", body = String),
        (status = 503, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service initializing` (a start or stop is in progress).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service error`.", content_type = "application/jose", body = String),
        (status = 401, description = "Not sealed: the request's envelope is missing, invalid, expired or replayed.", body = ErrorBody),
    ),
    security(("node_jwe" = []))
)]
async fn stop(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match s.open(&Method::POST, "/stop", &headers, &body) {
        Ok(request) => request,
        Err(_) => return unauthorized(),
    };
    let result = s.agent.stop().await.map(|()| Vec::new());
    s.seal(&request, "/stop", result)
}

#[utoipa::path(
    get,
    path = "/status",
    summary = "Whether the core runs, and its users",
    params(("Authorization" = String, Header, description = "`JWE <compact JWE>` whose plaintext is empty; the envelope binds method, path, time and a single-use `jti`.")),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is a `StatusResponse`.", content_type = "application/jose", body = String),
        (status = 503, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service initializing` (a start or stop is in progress).", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service status error`.", content_type = "application/jose", body = String),
        (status = 401, description = "Not sealed: the request's envelope is missing, invalid, expired or replayed.", body = ErrorBody),
    ),
    security(("node_jwe" = []))
)]
async fn status(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let request = match s.open(&Method::GET, "/status", &headers, &[]) {
        Ok(request) => request,
        Err(_) => return unauthorized(),
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
    request_body(content = String, content_type = "application/jose", description = "A compact JWE (`dir`, `A256GCM`) whose plaintext is a `UsersEditRequest`."),
    responses(
        (status = 200, description = "Sealed: a compact JWE whose plaintext is empty.", content_type = "application/jose", body = String),
        (status = 400, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `bad request`.", content_type = "application/jose", body = String),
        (status = 500, description = "Sealed: a compact JWE whose plaintext is an `ErrorBody`: `xray service unavailable` (the core's API does not answer) or `xray service error`.", content_type = "application/jose", body = String),
        (status = 401, description = "Not sealed: the request's envelope is missing, invalid, expired or replayed.", body = ErrorBody),
    ),
    security(("node_jwe" = []))
)]
async fn edit_users(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match s.open(&Method::POST, "/users/edit", &headers, &body) {
        Ok(request) => request,
        Err(_) => return unauthorized(),
    };
    let result = async {
        let edit: UsersEditRequest = parse(&request.payload)?;
        s.agent.edit_users(edit).await.map(|()| Vec::new())
    }
    .await;
    s.seal(&request, "/users/edit", result)
}
