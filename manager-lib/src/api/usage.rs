//! Reading usage on the API: one user's bytes over a time range, by day or
//! by node, and the bytes through each node. Times are Unix seconds.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::user_id;
use super::responses::AdminErrors;
use super::state::ApiState;
use crate::domain::Timestamp;
use crate::domain::usage::UsageGrouping;
use crate::manager::ManagerError;

/// The longest range one usage read covers: a bounded answer.
const MAX_RANGE_SECS: i64 = 400 * 86_400;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RangeQuery {
    /// Unix seconds, inclusive (default: 30 days before `to`).
    from: Option<i64>,
    /// Unix seconds, exclusive (default: now).
    to: Option<i64>,
    /// `day` (default) or `node`; only for a user's usage.
    group: Option<String>,
}

impl RangeQuery {
    fn range(&self) -> Result<(Timestamp, Timestamp), ApiError> {
        let to = self
            .to
            .unwrap_or_else(|| Timestamp::now().0.div_euclid(1000));
        let from = self.from.unwrap_or(to - 30 * 86_400);
        if from >= to {
            return Err(ApiError::BadRequest("`from` must be before `to`".into()));
        }
        if to - from > MAX_RANGE_SECS {
            return Err(ApiError::BadRequest(format!(
                "a range covers at most {} days",
                MAX_RANGE_SECS / 86_400
            )));
        }
        Ok((
            Timestamp(from.saturating_mul(1000)),
            Timestamp(to.saturating_mul(1000)),
        ))
    }
}

/// Bytes in one day (then `day` is the day's first second, UTC) or through
/// one node (then `nodeID`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<i64>,
    #[serde(rename = "nodeID", skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    up: u64,
    down: u64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct UsageAnswer {
    usage: Vec<UsageEntry>,
}

#[utoipa::path(
    get,
    path = "/users/{id}/usage",
    tag = "admin",
    summary = "A user's bytes over a time range, by day or by node (after node multipliers)",
    params(("id" = String, Path, description = "the user's id"), RangeQuery),
    responses(
        (status = 200, description = "the user's usage", body = UsageAnswer),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn user_usage(
    State(st): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<UsageAnswer>, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::Manager(ManagerError::UserNotFound))?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let id = user_id(&raw)?;
    let (from, to) = q.range()?;
    let group = match q.group.as_deref() {
        None | Some("day") => UsageGrouping::Day,
        Some("node") => UsageGrouping::Node,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "group {:?}: use `day` or `node`",
                other.chars().take(16).collect::<String>()
            )));
        }
    };
    let rows = st.manager.user_usage(id, from, to, group).await?;
    Ok(Json(UsageAnswer {
        usage: rows
            .into_iter()
            .map(|r| UsageEntry {
                day: r.day.map(|d| d.0.div_euclid(1000)),
                node_id: r.node.map(|n| n.to_string()),
                up: r.up,
                down: r.down,
            })
            .collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/nodes/usage",
    tag = "admin",
    summary = "Bytes through each node over a time range (raw, before multipliers)",
    params(RangeQuery),
    responses(
        (status = 200, description = "one entry per node with traffic in the range", body = UsageAnswer),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn nodes_usage(
    State(st): State<ApiState>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<UsageAnswer>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (from, to) = q.range()?;
    let rows = st.manager.node_usage(from, to).await?;
    Ok(Json(UsageAnswer {
        usage: rows
            .into_iter()
            .map(|r| UsageEntry {
                day: None,
                node_id: Some(r.node.to_string()),
                up: r.up,
                down: r.down,
            })
            .collect(),
    }))
}
