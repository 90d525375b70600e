//! Subscriptions on the admin API: a node's details with the inbounds it
//! described and what subscriptions list of it, the node's profile (what
//! the operator sets for subscriptions), and a user's subscription URL,
//! shown and rotated.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{JsonBody, node_id, user_id};
use super::responses::AdminErrors;
use super::state::ApiState;
use crate::domain::{InboundDescription, InboundOverride, Node, NodeProfile, User};
use crate::manager::ManagerError;

/// `POST /node/profile`: the node's whole profile (fields left out are
/// cleared).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NodeProfileBody {
    #[serde(rename = "nodeID", alias = "node_id", alias = "nodeId")]
    node_id: String,
    /// The address clients dial (a host name or IP); absent: the endpoint's host.
    #[serde(default)]
    address: Option<String>,
    /// The node's name in client apps; absent: the address.
    #[serde(default)]
    remark: Option<String>,
    /// Per inbound tag: `hidden`, `remark`, `addresses` (several for a
    /// CDN), `port`, `sni`, `host`, `path`, `fingerprint`, `alpn`,
    /// `allowInsecure`.
    #[serde(default)]
    #[schema(value_type = Object)]
    inbounds: std::collections::BTreeMap<String, InboundOverride>,
}

/// One entry a subscription lists for the node.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServedView {
    remark: String,
    address: String,
    tag: String,
    protocol: &'static str,
    port: u16,
}

/// A node with what subscriptions show of it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NodeDetails {
    id: String,
    endpoint: String,
    actual_status: &'static str,
    required_status: &'static str,
    traffic_multiplier: f64,
    /// What the agent described on the node's last start.
    #[schema(value_type = Vec<Object>)]
    inbounds: Vec<InboundDescription>,
    #[schema(value_type = Object)]
    profile: NodeProfile,
    /// What a user's subscription lists for this node (while it serves).
    served: Vec<ServedView>,
}

impl From<&Node> for NodeDetails {
    fn from(n: &Node) -> Self {
        let host = crate::domain::endpoint_host(&n.endpoint);
        Self {
            id: n.id.to_string(),
            endpoint: n.endpoint.clone(),
            actual_status: n.actual_status.as_str(),
            required_status: n.required_status.as_str(),
            traffic_multiplier: n.traffic_multiplier,
            served: n
                .profile
                .serve(&host, &n.inbounds)
                .into_iter()
                .map(|s| ServedView {
                    protocol: s.inbound.protocol.as_str(),
                    port: s.inbound.port,
                    tag: s.inbound.tag,
                    remark: s.remark,
                    address: s.address,
                })
                .collect(),
            inbounds: n.inbounds.clone(),
            profile: n.profile.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct NodeAnswer {
    node: NodeDetails,
}

#[utoipa::path(
    get,
    path = "/nodes/{id}",
    tag = "admin",
    summary = "A node with its described inbounds, its profile and what subscriptions list of it",
    params(("id" = String, Path, description = "The node id")),
    responses(
        (status = 200, body = NodeAnswer),
        (status = 400, description = "`node not exists`", body = super::error::ErrorBody),
        AdminErrors
    ),
    security(("admin_token" = []))
)]
pub(super) async fn node_get(
    State(st): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<NodeAnswer>, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::Manager(ManagerError::NodeNotFound))?;
    let node = st.manager.get_node(node_id(&raw)?).await?;
    Ok(Json(NodeAnswer {
        node: NodeDetails::from(&node),
    }))
}

#[utoipa::path(
    post,
    path = "/node/profile",
    tag = "admin",
    summary = "Set what subscriptions show of a node: address, name, per-inbound overrides, hidden inbounds",
    request_body = NodeProfileBody,
    responses(
        (status = 200, body = NodeAnswer),
        (status = 400, description = "`invalid profile` (the message names the value), `node not exists` or `bad request`", body = super::error::ErrorBody),
        AdminErrors
    ),
    security(("admin_token" = []))
)]
pub(super) async fn node_profile(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<NodeProfileBody>,
) -> Result<Json<NodeAnswer>, ApiError> {
    let id = node_id(&body.node_id)?;
    let profile = NodeProfile {
        address: body.address,
        remark: body.remark,
        inbounds: body.inbounds,
    };
    let node = st.manager.set_node_profile(id, profile).await?;
    Ok(Json(NodeAnswer {
        node: NodeDetails::from(&node),
    }))
}

/// A user's subscription: the token and the URL clients import.
#[derive(Serialize, ToSchema)]
pub(super) struct SubscriptionView {
    token: String,
    /// `public_url` of the settings + `/sub/<token>`, or the path alone.
    url: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct SubscriptionAnswer {
    subscription: SubscriptionView,
}

fn answer(st: &ApiState, user: &User) -> Json<SubscriptionAnswer> {
    let token = user.subscription_token();
    Json(SubscriptionAnswer {
        subscription: SubscriptionView {
            url: st.subscription.settings().url_for(token.expose()),
            token: token.expose().to_owned(),
        },
    })
}

#[utoipa::path(
    get,
    path = "/users/{id}/subscription",
    tag = "admin",
    summary = "A user's subscription URL",
    params(("id" = String, Path, description = "The user id")),
    responses(
        (status = 200, body = SubscriptionAnswer),
        (status = 400, description = "`user not exists`", body = super::error::ErrorBody),
        AdminErrors
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_subscription(
    State(st): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SubscriptionAnswer>, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::Manager(ManagerError::UserNotFound))?;
    let user = st.manager.get_user(user_id(&raw)?).await?;
    Ok(answer(&st, &user))
}

#[utoipa::path(
    post,
    path = "/user/subscription/rotate",
    tag = "admin",
    summary = "Give a user a new subscription URL; the old one answers 404 at once",
    request_body = super::handlers::UserIdBody,
    responses(
        (status = 200, body = SubscriptionAnswer),
        (status = 400, description = "`user not exists` or `bad request`", body = super::error::ErrorBody),
        AdminErrors
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_subscription_rotate(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<super::handlers::UserIdBody>,
) -> Result<Json<SubscriptionAnswer>, ApiError> {
    let user = st
        .manager
        .rotate_subscription(user_id(body.user_id())?)
        .await?;
    Ok(answer(&st, &user))
}
