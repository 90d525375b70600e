//! The manager's HTTP API (axum), exactly as the SPEC's table, plus delete
//! calls, paging and bearer-token admin authentication.
//!
//! Every error answer is `{"error": "<stable text>", "message": "<details>"}`
//! and comes from one table, [`ApiError::status_and_text`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::admin_auth::{self, AdminAuth, FailureLimit, TokenDigest};
use crate::domain::{Node, NodeId, PageRequest, User, UserId};
use crate::links::NodeLinks;
use crate::manager::{Manager, ManagerError};
use crate::metrics::{self, ManagerMetrics};
use crate::ratelimit::{self, RateLimit, RateLimiter};
use crate::storage::StorageError;
use crate::transport::TransportError;

/// The largest request body the manager reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Items in a list answer when the caller gives no `limit`.
pub const DEFAULT_PAGE: u32 = 1000;

/// Everything the API answers with other than success.
#[derive(Debug)]
pub enum ApiError {
    Service(ManagerError),
    BadRequest(String),
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    TooManyRequests,
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        Self::Service(e)
    }
}

/// Every error answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    /// A short stable text, e.g. `node not exists`.
    pub error: String,
    /// Details, when safe to show.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

impl ApiError {
    /// The one table from errors to status and stable error text.
    pub fn status_and_text(&self) -> (StatusCode, &str) {
        use ManagerError as S;
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            Self::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too many requests"),
            Self::Service(e) => match e {
                S::InvalidEndpoint(_) => (StatusCode::BAD_REQUEST, "invalid endpoint"),
                S::InvalidUserName(_) => (StatusCode::BAD_REQUEST, "invalid user name"),
                S::NodeNotFound => (StatusCode::BAD_REQUEST, "node not exists"),
                S::UserNotFound => (StatusCode::BAD_REQUEST, "user not exists"),
                S::UserMismatch => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "user id and name do not match",
                ),
                S::Node(TransportError::Node { status, error, .. }) => (
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                    error.as_str(),
                ),
                S::Node(TransportError::Unreachable(_)) => {
                    (StatusCode::BAD_GATEWAY, "node unreachable")
                }
                S::Node(_) => (StatusCode::BAD_GATEWAY, "bad node answer"),
                S::Storage(StorageError::Unavailable(_)) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "database unavailable")
                }
                S::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal server error"),
            },
        }
    }

    /// Details safe to show the caller; internal errors only go to the log.
    fn message(&self) -> Option<String> {
        use ManagerError as S;
        match self {
            Self::BadRequest(m) => Some(m.clone()),
            Self::Service(S::InvalidEndpoint(e)) => Some(e.to_string()),
            Self::Service(S::InvalidUserName(_)) => {
                Some("a user name must be 1 to 1024 bytes and not blank".into())
            }
            Self::Service(S::Node(TransportError::Node { message, .. })) => message.clone(),
            Self::Service(S::Node(e @ TransportError::Unreachable(_))) => Some(e.to_string()),
            // Not the answer's details (attacker-chosen on a plain-HTTP
            // channel), just what the operator must fix.
            Self::Service(S::Node(TransportError::KeyMismatch(_))) => {
                Some("node key mismatch".into())
            }
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, text) = self.status_and_text();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let body = ErrorBody {
            error: text.to_owned(),
            message: self.message(),
        };
        (status, Json(body)).into_response()
    }
}

/// A JSON body whose every failure (not JSON, wrong fields, too large) is a
/// 400 `bad request` in the API's error shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

#[derive(Clone)]
pub struct ApiState {
    pub manager: Arc<Manager>,
    admin_token: TokenDigest,
    admin_failures: Option<FailureLimit>,
    rate_limiter: Option<Arc<RateLimiter>>,
    metrics: Option<Arc<ManagerMetrics>>,
}

impl std::fmt::Debug for ApiState {
    // Not even the token's digest: an unsalted hash of a short token can be guessed offline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("admin_token", &"<redacted>")
            .field("admin_failures", &self.admin_failures)
            .field("rate_limited", &self.rate_limiter.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The API of `manager` behind `admin_token`. The token is taken as
    /// given (the settings check its strength, see
    /// [`admin_auth::check_strength`]); an empty presented token is refused
    /// whatever it is. Failed admin calls are limited per client with
    /// [`FailureLimit::default`].
    pub fn new(manager: Arc<Manager>, admin_token: &str) -> Self {
        Self {
            manager,
            admin_token: TokenDigest::new(admin_token),
            admin_failures: Some(FailureLimit::default()),
            rate_limiter: Some(Arc::new(RateLimiter::new(RateLimit::default()))),
            metrics: None,
        }
    }

    /// Records every request in `metrics` and serves `GET /metrics` behind
    /// the admin token (for a tokenless scrape, serve
    /// [`metrics::router`] on a private address instead or as well).
    pub fn with_metrics(mut self, metrics: Arc<ManagerMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The per-client limit on the user's node-list call; `None` turns it
    /// off (e.g. behind a proxy that limits, or for a benchmark).
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limiter = limit.map(|l| Arc::new(RateLimiter::new(l)));
        self
    }

    /// The per-client budget of failed admin calls (past it, admin calls
    /// from that client answer 429); `None` turns it off.
    pub fn with_admin_failure_limit(mut self, limit: Option<FailureLimit>) -> Self {
        self.admin_failures = limit;
        self
    }
}

/// Every route of [`router`] (method, path template), in one place: the
/// OpenAPI document must list exactly these. `/metrics` is routed only with
/// [`ApiState::with_metrics`]; `/docs` also serves the UI's assets below it.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/node/new"),
    ("POST", "/node/start"),
    ("POST", "/node/stop"),
    ("POST", "/node/delete"),
    ("GET", "/nodes"),
    ("POST", "/user/new"),
    ("POST", "/user/enable"),
    ("POST", "/user/disable"),
    ("POST", "/user/delete"),
    ("GET", "/users"),
    ("GET", "/user/{id_name}/nodes"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

/// The route template of [`ROUTES`] that `path` names (placeholders match
/// one non-empty segment; everything under `/docs/` is `/docs`), or `None`.
/// For logs and labels: the raw path may hold a user's id and name, and
/// anyone can invent paths.
pub fn route_of(path: &str) -> Option<&'static str> {
    if path.starts_with("/docs/") {
        return Some("/docs");
    }
    let matches = |template: &str| {
        let (mut want, mut got) = (template.split('/'), path.split('/'));
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                    if g.is_empty() {
                        return false;
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    };
    ROUTES
        .iter()
        .map(|(_, template)| *template)
        .find(|template| matches(template))
}

/// The manager's router: admin calls behind the bearer token, the user's
/// node-list call, the health check and the API's documentation open.
pub fn router(state: ApiState) -> Router {
    let mut admin = Router::new()
        .route("/node/new", post(node_new))
        .route("/node/start", post(node_start))
        .route("/node/stop", post(node_stop))
        .route("/node/delete", post(node_delete))
        .route("/nodes", get(nodes))
        .route("/user/new", post(user_new))
        .route("/user/enable", post(user_enable))
        .route("/user/disable", post(user_disable))
        .route("/user/delete", post(user_delete))
        .route("/users", get(users));
    if let Some(m) = &state.metrics {
        admin = admin.route("/metrics", get(metrics::scrape).with_state(m.clone()));
    }
    let auth = AdminAuth::new(
        state.admin_token.clone(),
        state.admin_failures,
        state.metrics.clone(),
    );
    let admin = admin.route_layer(middleware::from_fn_with_state(
        Arc::new(auth),
        admin_auth::require_admin,
    ));
    let mut node_list = get(user_nodes);
    if let Some(limiter) = &state.rate_limiter {
        node_list = node_list.route_layer(middleware::from_fn_with_state(
            limiter.clone(),
            ratelimit::limit_by_client,
        ));
    }
    let mut app = Router::new()
        .merge(admin)
        .route("/user/{id_name}/nodes", node_list)
        .route("/health", get(health))
        .merge(crate::openapi::docs_router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    if let Some(m) = &state.metrics {
        app = app.layer(middleware::from_fn_with_state(
            m.clone(),
            metrics::track_requests,
        ));
    }
    app.with_state(state)
}

/// Serves the router on `listener` until `shutdown` resolves, with each
/// peer's address known to the node-list rate limit.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = node_agent_lib::listener::ListenerSettings::default();
    serve_with(listener, router, &settings, shutdown).await
}

/// [`serve`] with the listener limits of `settings` (timeouts, connection
/// cap, header bytes, HTTP/2 limits: [`node_agent_lib::listener`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    settings: &node_agent_lib::listener::ListenerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    node_agent_lib::listener::serve(listener, router, settings, None, shutdown).await
}

type ApiResult<T> = Result<T, ApiError>;

fn empty() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

#[derive(Deserialize, ToSchema)]
struct EndpointBody {
    /// The node agent's base URL, e.g. `https://node1.example.com:8443`.
    endpoint: String,
}

/// `node_id` and `nodeId` are accepted too.
#[derive(Deserialize, ToSchema)]
struct NodeIdBody {
    #[serde(rename = "nodeID", alias = "node_id", alias = "nodeId")]
    node_id: String,
}

/// `user_id` and `userId` are accepted too.
#[derive(Deserialize, ToSchema)]
struct UserIdBody {
    #[serde(rename = "userID", alias = "user_id", alias = "userId")]
    user_id: String,
}

/// `user_name` and `name` are accepted too.
#[derive(Deserialize, ToSchema)]
struct UserNameBody {
    /// 1 to 1024 bytes, not blank; names need not be unique.
    #[serde(rename = "userName", alias = "user_name", alias = "name")]
    #[schema(required = true, value_type = String)]
    user_name: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Items in the answer (default 1000).
    limit: Option<u32>,
    /// The `next` value of the previous page.
    after: Option<String>,
}

impl PageQuery {
    fn page(self) -> PageRequest {
        PageRequest {
            after: self.after,
            limit: self.limit.unwrap_or(DEFAULT_PAGE),
        }
    }
}

/// An id in a bad form names nothing that exists.
fn node_id(raw: &str) -> ApiResult<NodeId> {
    raw.parse()
        .map_err(|_| ApiError::Service(ManagerError::NodeNotFound))
}

fn user_id(raw: &str) -> ApiResult<UserId> {
    raw.parse()
        .map_err(|_| ApiError::Service(ManagerError::UserNotFound))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NodeCreated {
    #[serde(rename = "nodeID")]
    node_id: String,
    /// The node's JWE key (base64url): give it to the node's agent.
    node_key: String,
}

#[utoipa::path(
    post,
    path = "/node/new",
    tag = "admin",
    summary = "Register a node (idempotent by endpoint)",
    request_body = EndpointBody,
    responses(
        (status = 200, description = "the node (new, or the existing one with this endpoint)", body = NodeCreated),
        (status = 400, description = "`invalid endpoint`, or a `bad request`", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn node_new(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<EndpointBody>,
) -> ApiResult<Json<NodeCreated>> {
    let node = st.manager.new_node(&body.endpoint).await?;
    Ok(Json(NodeCreated {
        node_id: node.id.to_string(),
        node_key: node.key.expose().to_owned(),
    }))
}

#[utoipa::path(
    post,
    path = "/node/start",
    tag = "admin",
    summary = "Start a node's core with every enabled user",
    request_body = NodeIdBody,
    responses(
        (status = 200, description = "started", body = Object),
        (status = 400, description = "`node not exists`, or a `bad request`", body = ErrorBody),
        (status = 502, description = "`node unreachable` or `bad node answer`; a node's own error answer is passed through with its status", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn node_start(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<NodeIdBody>,
) -> ApiResult<impl IntoResponse> {
    st.manager.start_node(node_id(&body.node_id)?).await?;
    Ok(empty())
}

#[utoipa::path(
    post,
    path = "/node/stop",
    tag = "admin",
    summary = "Stop a node's core",
    request_body = NodeIdBody,
    responses(
        (status = 200, description = "stopped", body = Object),
        (status = 400, description = "`node not exists`, or a `bad request`", body = ErrorBody),
        (status = 502, description = "`node unreachable` or `bad node answer`; a node's own error answer is passed through with its status", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn node_stop(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<NodeIdBody>,
) -> ApiResult<impl IntoResponse> {
    st.manager.stop_node(node_id(&body.node_id)?).await?;
    Ok(empty())
}

#[utoipa::path(
    post,
    path = "/node/delete",
    tag = "admin",
    summary = "Stop (if possible) and forget a node",
    request_body = NodeIdBody,
    responses(
        (status = 200, description = "deleted", body = Object),
        (status = 400, description = "`node not exists`, or a `bad request`", body = ErrorBody),
        (status = 502, description = "`node unreachable` or `bad node answer`; a node's own error answer is passed through with its status", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn node_delete(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<NodeIdBody>,
) -> ApiResult<impl IntoResponse> {
    st.manager.delete_node(node_id(&body.node_id)?).await?;
    Ok(empty())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NodeView {
    id: String,
    endpoint: String,
    #[schema(schema_with = crate::openapi::actual_status)]
    actual_status: &'static str,
    #[schema(schema_with = crate::openapi::required_status)]
    required_status: &'static str,
}

impl From<&Node> for NodeView {
    fn from(n: &Node) -> Self {
        Self {
            id: n.id.to_string(),
            endpoint: n.endpoint.clone(),
            actual_status: n.actual_status.as_str(),
            required_status: n.required_status.as_str(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct NodesView {
    nodes: Vec<NodeView>,
    /// Present when there are more: pass it as `after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/nodes",
    tag = "admin",
    summary = "List nodes, in id order, a page at a time",
    params(PageQuery),
    responses(
        (status = 200, description = "a page of nodes", body = NodesView),
        (status = 400, description = "`bad request` (query)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn nodes(
    State(st): State<ApiState>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<NodesView>> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let page = st.manager.list_nodes(&q.page()).await?;
    Ok(Json(NodesView {
        nodes: page.items.iter().map(NodeView::from).collect(),
        next: page.next,
    }))
}

#[derive(Serialize, ToSchema)]
struct UserView {
    id: String,
    name: String,
    /// In lists only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::user_status)]
    status: Option<&'static str>,
}

impl UserView {
    fn full(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            name: u.name.clone(),
            status: Some(u.status.as_str()),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct UserCreated {
    user: UserView,
}

#[utoipa::path(
    post,
    path = "/user/new",
    tag = "admin",
    summary = "Create a user (Disabled, on no node); names may repeat",
    request_body = UserNameBody,
    responses(
        (status = 200, description = "the new user", body = UserCreated),
        (status = 400, description = "`invalid user name`, or a `bad request` (e.g. no name)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn user_new(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<UserNameBody>,
) -> ApiResult<Json<UserCreated>> {
    let name = body
        .user_name
        .ok_or_else(|| ApiError::BadRequest("missing field `userName`".into()))?;
    let user = st.manager.new_user(&name).await?;
    Ok(Json(UserCreated {
        user: UserView {
            id: user.id.to_string(),
            name: user.name,
            status: None,
        },
    }))
}

#[utoipa::path(
    post,
    path = "/user/enable",
    tag = "admin",
    summary = "Enable a user: on some nodes now, on the rest in the background",
    request_body = UserIdBody,
    responses(
        (status = 200, description = "enabled", body = Object),
        (status = 400, description = "`user not exists`, or a `bad request`", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn user_enable(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<UserIdBody>,
) -> ApiResult<impl IntoResponse> {
    st.manager.enable_user(user_id(&body.user_id)?).await?;
    Ok(empty())
}

#[utoipa::path(
    post,
    path = "/user/disable",
    tag = "admin",
    summary = "Disable a user",
    request_body = UserIdBody,
    responses(
        (status = 200, description = "disabled", body = Object),
        (status = 400, description = "`user not exists`, or a `bad request`", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn user_disable(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<UserIdBody>,
) -> ApiResult<impl IntoResponse> {
    st.manager.disable_user(user_id(&body.user_id)?).await?;
    Ok(empty())
}

#[utoipa::path(
    post,
    path = "/user/delete",
    tag = "admin",
    summary = "Disable and forget a user",
    request_body = UserIdBody,
    responses(
        (status = 200, description = "deleted", body = Object),
        (status = 400, description = "`user not exists`, or a `bad request`", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn user_delete(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<UserIdBody>,
) -> ApiResult<impl IntoResponse> {
    st.manager.delete_user(user_id(&body.user_id)?).await?;
    Ok(empty())
}

#[derive(Serialize, ToSchema)]
struct UsersView {
    users: Vec<UserView>,
    /// Present when there are more: pass it as `after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/users",
    tag = "admin",
    summary = "List users, in id order, a page at a time",
    params(PageQuery),
    responses(
        (status = 200, description = "a page of users", body = UsersView),
        (status = 400, description = "`bad request` (query)", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 429, description = "`too many requests`: this client failed the admin token too often; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
async fn users(
    State(st): State<ApiState>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<UsersView>> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let page = st.manager.list_users(&q.page()).await?;
    Ok(Json(UsersView {
        users: page.items.iter().map(UserView::full).collect(),
        next: page.next,
    }))
}

#[utoipa::path(
    get,
    path = "/user/{id_name}/nodes",
    tag = "user",
    summary = "The user's filled configs for the nodes usable now",
    description = "Authorised by knowing the user's id and name; rate-limited per client address.",
    params(("id_name" = String, Path, description = "`<userID>-<userName>` (the id may itself contain `-`)")),
    responses(
        (status = 200, description = "one filled template per node the user can use now", body = Vec<String>),
        (status = 422, description = "`user id and name do not match`", body = ErrorBody),
        (status = 429, description = "`too many requests`", body = ErrorBody),
        (status = 500, description = "`database unavailable` or `internal server error`", body = ErrorBody),
    )
)]
async fn user_nodes(
    State(st): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<NodeLinks>> {
    // A path that does not even decode names no user: same answer as a wrong name.
    let Path(id_name) = path.map_err(|_| ApiError::Service(ManagerError::UserMismatch))?;
    Ok(Json(st.manager.user_node_links(&id_name).await?))
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Object))
)]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}
