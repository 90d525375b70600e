//! The handlers, one per route, with the JSON bodies they read and the views
//! they answer with; their OpenAPI annotations feed the API's document.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, node_id, user_id};
use super::responses::{AdminErrors, NodeErrors, ServerError};
use super::schemas;
use super::state::ApiState;
use crate::domain::{Node, PageRequest, User};
use crate::links::NodeLinks;
use crate::manager::ManagerError;

/// Items in a list answer when the caller gives no `limit`.
pub const DEFAULT_PAGE: u32 = 1000;

type ApiResult<T> = Result<T, ApiError>;

fn empty() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct EndpointBody {
    /// The node agent's base URL, e.g. `https://node1.example.com:8443`.
    endpoint: String,
}

/// `node_id` and `nodeId` are accepted too.
#[derive(Deserialize, ToSchema)]
pub(super) struct NodeIdBody {
    #[serde(rename = "nodeID", alias = "node_id", alias = "nodeId")]
    node_id: String,
}

/// `user_id` and `userId` are accepted too.
#[derive(Deserialize, ToSchema)]
pub(super) struct UserIdBody {
    #[serde(rename = "userID", alias = "user_id", alias = "userId")]
    user_id: String,
}

impl UserIdBody {
    pub(super) fn user_id(&self) -> &str {
        &self.user_id
    }
}

/// `user_name` and `name` are accepted too.
#[derive(Deserialize, ToSchema)]
pub(super) struct UserNameBody {
    /// 1 to 1024 bytes, not blank; names need not be unique.
    #[serde(rename = "userName", alias = "user_name", alias = "name")]
    #[schema(required = true, value_type = String)]
    user_name: Option<String>,
    /// Optional: a plan (limit, expiry, reset, hold); none limits nothing.
    #[serde(flatten)]
    plan: super::plans::PlanFields,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NodeCreated {
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
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn node_new(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<EndpointBody>,
) -> ApiResult<Json<NodeCreated>> {
    let node = st.manager.new_node(&body.endpoint).await?;
    Ok(Json(NodeCreated {
        node_id: node.id.to_string(),
        node_key: node.key.expose_base64url(),
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
        NodeErrors,
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn node_start(
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
        NodeErrors,
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn node_stop(
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
        NodeErrors,
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn node_delete(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<NodeIdBody>,
) -> ApiResult<impl IntoResponse> {
    st.manager.delete_node(node_id(&body.node_id)?).await?;
    Ok(empty())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NodeView {
    id: String,
    endpoint: String,
    #[schema(schema_with = schemas::actual_status)]
    actual_status: &'static str,
    #[schema(schema_with = schemas::required_status)]
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
pub(super) struct NodesView {
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
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn nodes(
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
pub(super) struct UserView {
    id: String,
    name: String,
    /// In lists only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schemas::user_status)]
    status: Option<&'static str>,
    /// In lists only: plan and usage.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    usage: Option<super::plans::UsageFields>,
}

impl UserView {
    fn full(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            name: u.name.clone(),
            status: Some(u.status.as_str()),
            usage: Some(super::plans::UsageFields::from(u)),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserCreated {
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
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_new(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<UserNameBody>,
) -> ApiResult<Json<UserCreated>> {
    let name = body
        .user_name
        .ok_or_else(|| ApiError::BadRequest("missing field `userName`".into()))?;
    let plan = body
        .plan
        .edit()?
        .apply(crate::domain::plan::Plan::default())
        .map_err(|e| ApiError::Manager(crate::manager::ManagerError::InvalidPlan(e)))?;
    let user = st.manager.new_user_with_plan(&name, plan).await?;
    Ok(Json(UserCreated {
        user: UserView {
            id: user.id.to_string(),
            name: user.name,
            status: None,
            usage: None,
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
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_enable(
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
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_disable(
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
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_delete(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<UserIdBody>,
) -> ApiResult<impl IntoResponse> {
    st.manager.delete_user(user_id(&body.user_id)?).await?;
    Ok(empty())
}

#[derive(Serialize, ToSchema)]
pub(super) struct UsersView {
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
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn users(
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
    description = "Authorised by knowing the user's id and name; rate-limited per client address. The settings can turn it off (`[containment] id_name_node_list = false`): it is then 404 for every caller, and users take their nodes from their subscription.",
    params(("id_name" = String, Path, description = "`<userID>-<userName>` (the id may itself contain `-`)")),
    responses(
        (status = 200, description = "one filled template per node the user can use now", body = Vec<String>),
        (status = 404, description = "`not found`: the call is turned off in the settings", body = ErrorBody),
        (status = 422, description = "`user id and name do not match`", body = ErrorBody),
        (status = 429, description = "`too many requests`", body = ErrorBody),
        ServerError,
    )
)]
pub(super) async fn user_nodes(
    State(st): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<NodeLinks>> {
    // A path that does not even decode names no user: same answer as a wrong name.
    let Path(id_name) = path.map_err(|_| ApiError::Manager(ManagerError::UserMismatch))?;
    Ok(Json(st.manager.user_node_links(&id_name).await?))
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Object))
)]
pub(super) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}
