//! `POST /node/key/rotate`: a node gets a new key, shown in this answer
//! only (like `/node/new`); its agent keeps accepting the old key for the
//! grace period, then only the new one.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, node_id};
use super::responses::AdminErrors;
use super::state::ApiState;
use crate::domain::key_rotation::DEFAULT_GRACE;

/// `node_id` and `nodeId`, `grace_secs` are accepted too.
#[derive(Deserialize, ToSchema)]
pub(super) struct RotateKeyBody {
    #[serde(rename = "nodeID", alias = "node_id", alias = "nodeId")]
    node_id: String,
    /// How long the node's agent keeps accepting the old key once it took
    /// the new one: 0 (refused at once, for a key that leaked) to 2592000
    /// (30 days). Default 86400 (a day).
    #[serde(default, rename = "graceSecs", alias = "grace_secs")]
    grace_secs: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyRotatedView {
    #[serde(rename = "nodeID")]
    node_id: String,
    /// The node's new JWE key (base64url); not shown again. The agent has it
    /// once `delivered` (it keeps it in its state directory): put it in the
    /// agent's settings (`node_key_file`) too, for a reinstall.
    node_key: String,
    grace_secs: u64,
    /// Whether the node's agent took the new key already; if not, the
    /// heartbeat delivers it, and the manager uses it from then on.
    delivered: bool,
    /// Unix seconds after which the agent refuses the old key (absent
    /// until delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    grace_until: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/node/key/rotate",
    tag = "admin",
    summary = "Give a node a new key; the old one stays accepted for a grace period",
    description = "The new key is sent to the node's agent under its current key; once the agent took it, the manager uses it, and the agent accepts the old key until `graceUntil`, then only the new one. An agent that cannot be reached gets it from the heartbeat (`delivered` false). One rotation at a time: another one while a key waits to be delivered is 409 `key rotation pending`.",
    request_body = RotateKeyBody,
    responses(
        (status = 200, description = "the new key (shown once)", body = KeyRotatedView),
        (status = 400, description = "`node not exists`, `invalid grace period`, or a `bad request`", body = ErrorBody),
        (status = 409, description = "`key rotation pending`: the node's previous rotation is not delivered yet", body = ErrorBody),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn node_key_rotate(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<RotateKeyBody>,
) -> Result<Json<KeyRotatedView>, ApiError> {
    let grace = body
        .grace_secs
        .map_or(DEFAULT_GRACE, std::time::Duration::from_secs);
    let rotated = st
        .manager
        .rotate_node_key(node_id(&body.node_id)?, grace)
        .await?;
    Ok(Json(KeyRotatedView {
        node_id: rotated.node.to_string(),
        node_key: rotated.key.expose_base64url(),
        grace_secs: rotated.grace.as_secs(),
        delivered: rotated.grace_until.is_some(),
        grace_until: rotated.grace_until.map(|t| t.0.div_euclid(1000)),
    }))
}
